"""Grand-Challenge sockets and algorithm interfaces (resources/grand-challenge.json), and the
choice of interface for one job by the set of input slugs in /input/inputs.json.

The platform has no optional inputs: each set of input sockets is its own interface, with its
own outputs. inputs.json is a list with one object per input socket, each holding the socket
(`socket`, or `interface` in older jobs: slug, kind, relative_path, ...) and a value, file or
image. An image input is a folder /input/<relative_path> holding exactly one file whose name we
do not control, so it is opened by content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathssl.errors import InputLayoutError
from pathssl.outputs.slide_outputs import OutputLayout

IMAGE_KINDS = frozenset({"Image", "Segmentation", "Heat Map"})
INPUT_ROLES = frozenset({"slide", "tissue_mask"})
OUTPUT_ROLES = frozenset(
    {"slide_embedding", "patch_embeddings", "feature_map", "tissue_mask", "preview", "run_record"}
)


@dataclass(frozen=True)
class Socket:
    slug: str
    kind: str
    relative_path: str

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS


@dataclass(frozen=True)
class Interface:
    """One set of input sockets and the outputs the algorithm writes for it."""

    name: str
    inputs: dict[str, str]  # socket slug -> role (slide, tissue_mask)
    outputs: dict[str, str]  # socket slug -> output (an OutputLayout field)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(sorted(self.inputs))


@dataclass(frozen=True)
class SocketConfig:
    sockets: dict[str, Socket]
    interfaces: tuple[Interface, ...]

    @classmethod
    def from_file(cls, path: Path) -> SocketConfig:
        try:
            raw = json.loads(Path(path).read_text())
            sockets = {
                slug: Socket(slug, s["kind"], s["relative_path"])
                for slug, s in raw["sockets"].items()
            }
            interfaces = tuple(
                Interface(i["name"], dict(i["inputs"]), dict(i["outputs"]))
                for i in raw["interfaces"]
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputLayoutError(f"{path}: not a valid socket configuration ({exc})") from exc
        config = cls(sockets, interfaces)
        problems = config.problems()
        if problems:
            raise InputLayoutError(f"{path}: {problems[0]}")
        return config

    def problems(self) -> list[str]:
        """What the platform would refuse, or this code could not run."""
        out: list[str] = []
        paths: dict[str, str] = {}
        for s in self.sockets.values():
            if s.relative_path in paths:
                out.append(f"sockets {paths[s.relative_path]} and {s.slug} share {s.relative_path}")
            paths[s.relative_path] = s.slug
            if s.is_image != s.relative_path.startswith("images/"):
                out.append(f"socket {s.slug} ({s.kind}): image sockets live under images/")
            try:
                inside(Path("/output"), s.relative_path, f"socket {s.slug}: path")
            except InputLayoutError as exc:
                out.append(str(exc))
        inputs = {slug for i in self.interfaces for slug in i.inputs}
        outputs = {slug for i in self.interfaces for slug in i.outputs}
        out += [f"socket {s} is both an input and an output" for s in sorted(inputs & outputs)]
        out += [
            f"socket {s} is used but not defined"
            for s in sorted((inputs | outputs) - set(self.sockets))
        ]
        keys = [i.key for i in self.interfaces]
        out += [f"two interfaces take the inputs {list(k)}" for k in set(keys) if keys.count(k) > 1]
        for i in self.interfaces:
            if sorted(i.inputs.values()).count("slide") != 1:
                out.append(f"interface {i.name}: needs exactly one input with role 'slide'")
            out += [
                f"interface {i.name}: unknown input role {r!r}"
                for r in set(i.inputs.values()) - INPUT_ROLES
            ]
            out += [
                f"interface {i.name}: unknown output {r!r}"
                for r in set(i.outputs.values()) - OUTPUT_ROLES
            ]
            for needed in ("slide_embedding", "run_record"):
                if needed not in i.outputs.values():
                    out.append(f"interface {i.name}: has no {needed} output")
        return out

    def choose(self, slugs: list[str], where: Path) -> Interface:
        key = tuple(sorted(slugs))
        for interface in self.interfaces:
            if interface.key == key:
                return interface
        known = " or ".join(f"[{', '.join(i.key)}]" for i in self.interfaces)
        raise InputLayoutError(
            f"{where}: input sockets [{', '.join(key)}] match no interface of this algorithm; "
            f"it takes {known}"
        )

    def layout(self, interface: Interface) -> OutputLayout:
        """Where each output of the interface goes under /output. An image socket is a folder
        holding one file: <slug>.mha."""
        files: dict[str, str | None] = {field: None for field in OUTPUT_ROLES}
        for slug, role in interface.outputs.items():
            socket = self.sockets[slug]
            files[role] = (
                f"{socket.relative_path}/{slug}.mha" if socket.is_image else socket.relative_path
            )
        return OutputLayout(features_h5=None, **files)


@dataclass(frozen=True)
class JobInputs:
    interface: Interface
    slide: Path
    tissue_mask: Path | None


def inside(root: Path, relative: str, what: str) -> Path:
    """root/relative, refusing absolute paths and any that leave root (.., symlinks)."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise InputLayoutError(f"{what} {relative!r} leaves {root}; give a relative path inside it")
    full = root / rel
    if root.exists() and not full.resolve().is_relative_to(root.resolve()):
        raise InputLayoutError(f"{what} {relative!r} resolves outside {root}")
    return full


def _single_file(folder: Path, slug: str) -> Path:
    if not folder.is_dir():
        raise InputLayoutError(f"{folder}: input folder for socket {slug!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(files) != 1:
        names = ", ".join(p.name for p in files) or "none"
        raise InputLayoutError(
            f"{folder}: socket {slug!r} must hold exactly one file, found {len(files)} ({names})"
        )
    return files[0]


def _socket_of(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    socket = value.get("socket", value.get("interface"))
    return socket if isinstance(socket, dict) and isinstance(socket.get("slug"), str) else None


def read_inputs_json(input_root: Path, config: SocketConfig) -> JobInputs:
    path = input_root / "inputs.json"
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputLayoutError(
            f"{path}: not readable JSON ({exc}); it must be a list of socket values"
        ) from exc
    if not isinstance(values, list) or any(_socket_of(v) is None for v in values):
        raise InputLayoutError(
            f"{path}: must be a list of objects, each with a socket and its slug"
        )
    sockets = [_socket_of(v) for v in values]
    interface = config.choose([s["slug"] for s in sockets], path)
    files: dict[str, Path] = {}
    for socket in sockets:
        slug = socket["slug"]
        known = config.sockets[slug]
        rel = socket.get("relative_path", known.relative_path)
        if not isinstance(rel, str):
            raise InputLayoutError(f"{path}: socket {slug!r} has no relative_path")
        target = inside(input_root, rel, "input path")
        files[interface.inputs[slug]] = _single_file(target, slug) if known.is_image else target
    return JobInputs(interface, files["slide"], files.get("tissue_mask"))
