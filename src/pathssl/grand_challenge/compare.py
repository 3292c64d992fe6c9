"""Compare a Grand-Challenge /output with the expected one: exact structure, a stated numeric
tolerance for floats. Used by test.sh (inside the container) and by the pytest suite.

    python -m pathssl.grand_challenge.compare EXPECTED ACTUAL [--rtol R] [--atol A]
                                              [--min-cosine C]

With --min-cosine (a GPU's bf16 autocast against the CPU's fp32 expected outputs), feature
vectors (numeric JSON lists, the feature map's per-tile vectors) are compared by direction
(cosine similarity >= C) and length (within rtol); single numbers still by rtol/atol.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Fields that differ between machines, runs and code versions by nature (the model hash,
# which decides the numbers, is compared).
VOLATILE_KEYS = frozenset(
    {
        "timings",
        "device",
        "engine",
        "tile_loader",
        "torch",
        "python",
        "path",
        "code_sha256",
        "pathssl_version",
    }
)
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


@dataclass(frozen=True)
class Tolerance:
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    min_cosine: float | None = None  # vectors by direction and length instead of elementwise

    def vectors_differ(self, exp: np.ndarray, act: np.ndarray) -> str | None:
        """Why the rows of `act` (one vector each) are not `exp`'s; None when they agree."""
        exp, act = np.atleast_2d(exp).astype(np.float64), np.atleast_2d(act).astype(np.float64)
        if self.min_cosine is None:
            if np.allclose(act, exp, rtol=self.rtol, atol=self.atol):
                return None
            return f"differ by up to {np.abs(act - exp).max():.3g}"
        ne, na = np.linalg.norm(exp, axis=1), np.linalg.norm(act, axis=1)
        both_zero = (ne == 0) & (na == 0)
        cos = np.where(both_zero, 1.0, (exp * act).sum(1) / np.maximum(ne * na, 1e-30))
        length = np.where(both_zero, 0.0, np.abs(na - ne) / np.maximum(ne, 1e-30))
        if cos.min() >= self.min_cosine and length.max() <= self.rtol:
            return None
        return f"cosine down to {cos.min():.5f}, length off by up to {length.max():.3g}"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _compare_json(exp: Any, act: Any, where: str, tol: Tolerance, out: list[str]) -> None:
    if isinstance(exp, dict) and isinstance(act, dict):
        if set(exp) != set(act):
            out.append(f"{where}: keys differ: {sorted(set(exp) ^ set(act))}")
        for key in sorted(set(exp) & set(act)):
            if key not in VOLATILE_KEYS:
                _compare_json(exp[key], act[key], f"{where}.{key}", tol, out)
    elif isinstance(exp, list) and isinstance(act, list):
        if len(exp) != len(act):
            out.append(f"{where}: length {len(act)}, expected {len(exp)}")
            return
        if exp and all(isinstance(v, float | int) and not isinstance(v, bool) for v in exp + act):
            e, a = np.asarray(exp, np.float64), np.asarray(act, np.float64)
            if tol.min_cosine is not None:
                why = tol.vectors_differ(e, a)
                if why:
                    out.append(f"{where}: {why}")
            elif not np.allclose(a, e, rtol=tol.rtol, atol=tol.atol):
                worst = int(np.argmax(np.abs(a - e)))
                out.append(f"{where}[{worst}]: {a[worst]!r} vs expected {e[worst]!r}")
            return
        for i, (e, a) in enumerate(zip(exp, act, strict=True)):
            _compare_json(e, a, f"{where}[{i}]", tol, out)
    elif isinstance(exp, float) or isinstance(act, float):
        if not (
            isinstance(act, float | int)
            and math.isclose(act, exp, rel_tol=tol.rtol, abs_tol=tol.atol)
        ):
            out.append(f"{where}: {act!r} vs expected {exp!r}")
    elif exp != act:
        out.append(f"{where}: {act!r} vs expected {exp!r}")


def _compare_image(exp: Path, act: Path, where: str, tol: Tolerance) -> list[str]:
    import SimpleITK as sitk

    e, a = sitk.ReadImage(str(exp)), sitk.ReadImage(str(act))
    problems = []
    if (
        e.GetSize() != a.GetSize()
        or e.GetNumberOfComponentsPerPixel() != a.GetNumberOfComponentsPerPixel()
    ):
        return [f"{where}: size {a.GetSize()} vs expected {e.GetSize()}"]
    for name in ("GetSpacing", "GetOrigin", "GetDirection"):
        if not np.allclose(getattr(a, name)(), getattr(e, name)(), rtol=1e-9, atol=1e-12):
            problems.append(
                f"{where}: {name[3:].lower()} {getattr(a, name)()} vs {getattr(e, name)()}"
            )
    if e.GetPixelIDValue() != a.GetPixelIDValue():
        problems.append(f"{where}: pixel type {a.GetPixelIDTypeAsString()} vs expected")
    ea, aa = sitk.GetArrayFromImage(e), sitk.GetArrayFromImage(a)
    components = e.GetNumberOfComponentsPerPixel()
    if components > 1:  # vector pixels: one feature vector each
        why = tol.vectors_differ(ea.reshape(-1, components), aa.reshape(-1, components))
    elif e.GetDimension() == 3:  # pathssl's feature map: features along z, one per grid cell
        dim = ea.shape[0]
        why = tol.vectors_differ(
            np.moveaxis(ea, 0, -1).reshape(-1, dim), np.moveaxis(aa, 0, -1).reshape(-1, dim)
        )
    else:  # masks: exact up to the elementwise tolerance
        why = Tolerance(tol.rtol, tol.atol).vectors_differ(ea.reshape(1, -1), aa.reshape(1, -1))
    if why:
        problems.append(f"{where}: pixels {why}")
    return problems


def _compare_png(exp: Path, act: Path, where: str) -> list[str]:
    from PIL import Image

    with Image.open(exp) as e, Image.open(act) as a:
        if (e.size, e.mode) != (a.size, a.mode):
            return [f"{where}: {a.size} {a.mode} vs expected {e.size} {e.mode}"]
    return []  # a picture for people: its colours follow a PCA, so only its form is compared


def compare_outputs(
    expected: Path,
    actual: Path,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    *,
    min_cosine: float | None = None,
) -> list[str]:
    """Differences between two output folders; empty when they agree."""
    expected, actual = Path(expected), Path(actual)
    tol = Tolerance(rtol, atol, min_cosine)
    exp_files, act_files = _files(expected), _files(actual)
    problems: list[str] = []
    if exp_files != act_files:
        problems.append(
            f"files differ: missing {sorted(set(exp_files) - set(act_files))}, "
            f"unexpected {sorted(set(act_files) - set(exp_files))}"
        )
    for rel in sorted(set(exp_files) & set(act_files)):
        e, a = expected / rel, actual / rel
        if rel.endswith(".json"):
            try:
                act_json = json.loads(a.read_text())
            except ValueError as exc:
                problems.append(f"{rel}: not valid JSON ({exc})")
                continue
            _compare_json(json.loads(e.read_text()), act_json, rel, tol, problems)
        elif rel.endswith((".mha", ".tif", ".tiff")):
            problems += _compare_image(e, a, rel, tol)
        elif rel.endswith(".png"):
            problems += _compare_png(e, a, rel)
        elif e.read_bytes() != a.read_bytes():
            problems.append(f"{rel}: bytes differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("expected", type=Path)
    p.add_argument("actual", type=Path)
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="relative float tolerance")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="absolute float tolerance")
    p.add_argument(
        "--min-cosine",
        type=float,
        default=None,
        help="compare feature vectors by cosine similarity (>= this) and length (within rtol)",
    )
    args = p.parse_args(argv)
    problems = compare_outputs(
        args.expected, args.actual, args.rtol, args.atol, min_cosine=args.min_cosine
    )
    for line in problems[:50]:
        print(f"  {line}")
    if problems:
        print(
            f"FAIL: {args.actual} differs from {args.expected} in {len(problems)} place(s) "
            f"(rtol {args.rtol}, atol {args.atol}, min cosine {args.min_cosine})"
        )
        return 1
    print(
        f"PASS: {args.actual} matches {args.expected} "
        f"(rtol {args.rtol}, atol {args.atol}, min cosine {args.min_cosine})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
