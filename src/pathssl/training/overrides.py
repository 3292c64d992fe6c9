"""Training configs: a dataclass filled from a YAML file, then `--set key=value` overrides.

Values are YAML (`--set steps=50`, `--set image_dirs=[]`, `--set method_kwargs.n_local=2`);
a float field also takes what Python reads as a float (`--set lr=1e-3`, which YAML 1.1 reads
as a string). Unknown keys and values of the wrong type are errors that name the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pathssl.errors import PathsslError

C = TypeVar("C")
# the scalar field types checked and converted; other fields take the YAML value as it is
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PathsslError(f"{path}: cannot read config ({reason})") from exc
    if not isinstance(raw, dict):
        raise PathsslError(f"{path}: a config is a YAML mapping of key: value lines")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`raw` with each `key=value` (dotted keys reach into mappings) set to its YAML value."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PathsslError(f"--set {item!r}: expected key=value, e.g. --set steps=50")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise PathsslError(f"--set {item!r}: not a YAML value ({exc.problem})") from exc
        target = raw
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise PathsslError(f"--set {item!r}: {p} is not a mapping; set {p}=... whole")
        target[leaf] = parsed
    return raw


def given_keys(path: Path | None, overrides: Sequence[str]) -> set[str]:
    """The top-level keys that the YAML file at `path` or an override sets (set at all, to
    any value, the default's included): what a config states rather than leaves unset."""
    raw = read_yaml(path) if path is not None else {}
    return set(apply_overrides(dict(raw), overrides))


def _typed(name: str, value: Any, hint: Any, origin: str) -> Any:
    """`value` as the field's scalar type: float from int or a numeric string, str from a
    number (`--set output=2024`); `X | None` as X, or null; other field types are taken as
    YAML gives them."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
    if type(None) in options and len(options) == 2:  # optional: null, or the other type
        if value is None:
            return None
        hint = next(t for t in options if t is not type(None))
    if hint not in _KINDS:
        return value
    if hint is float and isinstance(value, int | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return float(value)
    elif hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    kind = _KINDS[hint]
    raise PathsslError(f"{origin}: {name}={value!r} is not {kind}; set {name} to {kind}")


def build_config(
    cls: type[C],
    *,
    path: Path | None = None,
    base: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> C:
    """`cls` from `base`, then the YAML file at `path`, then `overrides`, checked."""
    raw = dict(base or {})
    if path is not None:
        raw.update(read_yaml(path))
    apply_overrides(raw, overrides)
    origin = (
        " with ".join([str(path)] * (path is not None) + ["--set"] * bool(overrides))
        or cls.__name__
    )
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise PathsslError(f"{origin}: unknown config keys {unknown}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _typed(k, v, hints[k], origin) for k, v in raw.items()})
