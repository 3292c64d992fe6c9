"""A digest of one slide's outputs that a code change must not move: the sha256 of every
array's bytes (features.h5 datasets, .mha pixels, preview pixels) and of every JSON file and
attribute, less what names the code itself (code_sha256, version) or the clock (timings).

    python tests/output_digest.py OUT/SLIDE [--write tests/data/embed-reference.json]

The reference in tests/data/embed-reference.json was written before the package regroup
(issue 22) from `pathssl embed tests/data/CMU-1-Small-Region.svs`; test_regroup.py checks
that today's outputs still give it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

# what names the code or the clock, or records where and how the run happened, not what it made
VOLATILE = {
    "code_sha256",
    "pathssl_version",
    "timings",
    "seconds",
    "output_dir",
    "torch",
    "python",
    "device",
    "run_identity",
    "digest",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _array(a: np.ndarray) -> str:
    return _sha(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())


def slide_digest(slide_dir: Path) -> dict[str, str]:
    import SimpleITK as sitk

    out: dict[str, str] = {}
    for path in sorted(slide_dir.rglob("*")):
        rel = path.relative_to(slide_dir).as_posix()
        if path.suffix == ".h5":
            with h5py.File(path) as h5:
                for name, ds in h5.items():
                    out[f"{rel}:{name}"] = _array(ds[()])
                attrs = {k: np.asarray(v).tolist() for k, v in h5.attrs.items()}
                out[f"{rel}:attrs"] = _sha(json.dumps(_strip(attrs), sort_keys=True).encode())
        elif path.suffix == ".mha":
            image = sitk.ReadImage(str(path))
            out[f"{rel}:pixels"] = _array(sitk.GetArrayFromImage(image))
            geometry = [image.GetSpacing(), image.GetOrigin(), image.GetDirection()]
            out[f"{rel}:geometry"] = _sha(json.dumps(geometry).encode())
        elif path.suffix == ".png":
            out[f"{rel}:pixels"] = _array(np.asarray(Image.open(path)))
        elif path.suffix == ".json":
            text = json.dumps(_strip(json.loads(path.read_text())), sort_keys=True)
            out[rel] = _sha(text.encode())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("slide_dir", type=Path)
    p.add_argument("--write", type=Path, default=None)
    args = p.parse_args()
    digest = slide_digest(args.slide_dir)
    text = json.dumps(digest, indent=1, sort_keys=True) + "\n"
    if args.write:
        args.write.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
