"""Grand-Challenge jobs for the tests: the committed cases, and an input folder laid out as the
platform lays out a job (inputs.json, one folder per image socket, a JSON file per value)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "test" / "input"
EXPECTED = ROOT / "test" / "expected_output"
RESOURCES = ROOT / "resources" / "grand-challenge.json"
SLIDE = next((CASES / "wsi" / "images" / "whole-slide-image").iterdir())


def files_under(root: Path) -> list[str]:
    """Every file under root, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def job_case(tmp_path: Path, inputs: object, files: dict[str, Path | bytes]) -> Path:
    """An input folder: inputs.json (a JSON value, or raw text) and files copied or written."""
    case = tmp_path / "input"
    case.mkdir()
    (case / "inputs.json").write_text(inputs if isinstance(inputs, str) else json.dumps(inputs))
    for rel, content in files.items():
        target = case / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
    return case


def image_socket(
    slug: str = "whole-slide-image", kind: str = "Image", rel: str | None = None
) -> dict:
    """One inputs.json entry for an image socket (its older `interface` key)."""
    return {
        "interface": {
            "slug": slug,
            "kind": kind,
            "super_kind": "Image",
            "relative_path": rel or f"images/{slug}",
        },
        "value": None,
        "file": None,
        "image": {"pk": "x"},
    }


def task_value(task_type: str, slug: str = "unicorn-task-description") -> dict:
    """One inputs.json entry for a UNICORN task description."""
    return {
        "interface": {
            "slug": slug,
            "kind": "Anything",
            "super_kind": "Value",
            "relative_path": f"{slug}.json",
        },
        "value": {"domain": "pathology", "modality": "vision", "task_type": task_type},
        "file": None,
        "image": None,
    }
