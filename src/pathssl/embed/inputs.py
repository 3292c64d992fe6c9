"""From the paths a user gave to the slides of a run: each slide with its output folder name,
its tissue mask and the identity of its file; and every input left out, with the reason.

Names come from the slide's path relative to the input it was found under, never from its
position in a list: `slides/a/x.svs` given as `slides/` is `a--x`; a file given by itself is
its stem. Two files given by themselves with the same stem are told apart by their parent
folders (`a--x`, `b--x`), whatever their order. Names that would clash with the run's own
files (summary.json, index.html) or not fit a file name get a stable suffix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathssl.errors import PathsslError, SlideReadError
from pathssl.slide.opening import SLIDE_SUFFIXES

SEPARATOR = "--"  # between the folders of a relative path in an output name
MAX_NAME_BYTES = 160  # leaves room for a lock (.NAME.lock) and temporary names under 255
RESERVED = ("summary", "index")  # run-level files: summary.json, summary-rank0.json, index.html
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".mha", ".mhd", ".jpg", ".jpeg")
MASK_STEM_ENDINGS = ("", "_mask", "-mask", "_tissue", "-tissue")


@dataclass(frozen=True)
class SlideInput:
    path: Path  # as found (absolute)
    name: str  # its output folder under --output
    mask: Path | None = None


@dataclass(frozen=True)
class SkippedInput:
    path: str
    reason: str


@dataclass(frozen=True)
class InputPlan:
    slides: tuple[SlideInput, ...]
    skipped: tuple[SkippedInput, ...]
    notes: tuple[str, ...] = ()  # one line each: slides without a mask, renamed outputs


def file_identity(path: Path) -> dict[str, object]:
    """What tells this file from another and from its own older copy, cheaply: resolved path,
    size and modification time (ns)."""
    st = path.stat()
    return {"path": str(path.resolve()), "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_deepzoom_tiles(folder: Path) -> bool:
    """`x_files/` beside `x.dzi` holds the pyramid's tiles, which are no slides."""
    return folder.name.endswith("_files") and any(
        folder.with_name(folder.name[: -len("_files")] + s).exists() for s in (".dzi", ".DZI")
    )


def _walk(root: Path, exclude: Sequence[Path], skipped: list[SkippedInput]) -> list[Path]:
    """Slide files under `root` by suffix, sorted; unreadable folders and dangling links are
    reported in `skipped`, the output folder and DeepZoom tile folders are never entered."""
    found: list[Path] = []

    def on_error(err: OSError) -> None:
        skipped.append(SkippedInput(str(err.filename), f"folder not readable ({err.strerror})"))

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=True):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and (here / d).resolve() not in exclude
            and not _is_deepzoom_tiles(here / d)
        )
        for f in sorted(files):
            p = here / f
            if f.startswith(".") or p.suffix.lower() not in SLIDE_SUFFIXES:
                continue
            if not p.exists():
                skipped.append(SkippedInput(str(p), "dangling symbolic link"))
            elif not os.access(p, os.R_OK):
                skipped.append(SkippedInput(str(p), "not readable (permission denied)"))
            else:
                found.append(p)
    return found


def _one_per_dicom_folder(paths: list[Path]) -> list[Path]:
    """The files of a DICOM slide share a folder: keep the first (OpenSlide finds the rest)."""
    seen: set[Path] = set()
    kept = []
    for p in paths:
        if p.suffix.lower() == ".dcm":
            if p.parent in seen:
                continue
            seen.add(p.parent)
        kept.append(p)
    return kept


def _relative_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return SEPARATOR.join([*rel.parent.parts, rel.stem or "slide"])


def _fit(name: str) -> str:
    """Reserved and over-long names made safe, stably."""
    if name.split(".")[0].split("-rank")[0] in RESERVED or name.startswith("."):
        name = f"slide-{name.lstrip('.')}"
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[: MAX_NAME_BYTES - 13].decode(errors="ignore") + "-" + digest
    return name


def _disambiguate(found: list[tuple[Path, str, bool]]) -> list[str]:
    """Names for (path, name, given alone): clashing names take their parent folders, one
    more each round (`p--x`, then `a--p--x`), then their suffix, until unique; the result
    depends on the set of paths, never on their order."""
    names = [n for _, n, _ in found]
    for depth in range(1, 9):
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        clashing = [i for i, n in enumerate(names) if counts[n] > 1]
        if not clashing:
            return names
        for i in clashing:
            path = found[i][0].resolve()
            parents = [p.name for p in path.parents if p.name][:depth][::-1]
            stem = path.stem if depth < 8 else path.name
            names[i] = SEPARATOR.join([*parents, stem])
    if len(set(names)) != len(names):
        raise PathsslError("two inputs resolve to the same output name; give each once")
    return names


def match_mask(slide: Path, rel_parent: Path, mask_dir: Path) -> Path | None:
    """The mask for `slide` in `mask_dir`: a file named like the slide (without its suffix),
    optionally ending in _mask, -mask, _tissue or -tissue, with an image suffix; looked for
    first at the slide's relative folder inside mask_dir, then at its top. More than one
    candidate is an error."""
    for folder in dict.fromkeys([mask_dir / rel_parent, mask_dir]):
        hits = [
            folder / f"{slide.stem}{ending}{suffix}"
            for ending in MASK_STEM_ENDINGS
            for suffix in MASK_SUFFIXES
            if (folder / f"{slide.stem}{ending}{suffix}").is_file()
        ]
        hits = list(dict.fromkeys(p.resolve() for p in hits))
        if len(hits) > 1:
            raise PathsslError(
                f"{slide}: several tissue masks match it in {folder} "
                f"({', '.join(p.name for p in hits)}); keep one"
            )
        if hits:
            return hits[0]
    return None


def plan_inputs(
    paths: Iterable[str | Path], output_root: Path, tissue_mask: Path | None = None
) -> InputPlan:
    """Every slide under `paths` (sorted by path, de-duplicated), named, with its mask."""
    exclude = [output_root.resolve()]
    skipped: list[SkippedInput] = []
    found: list[tuple[Path, str, bool, Path]] = []  # path, name, given alone, relative folder
    for raw in paths:
        path = Path(raw).absolute()
        if path.is_symlink() and not path.exists():
            raise SlideReadError(f"{raw}: a symbolic link to a file that does not exist")
        if path.is_file():
            found.append((path, path.stem or "slide", True, Path()))
            continue
        if not path.is_dir():
            raise SlideReadError(f"{raw}: no such file or folder")
        in_folder = _one_per_dicom_folder(_walk(path, exclude, skipped))
        if not in_folder and not skipped:
            raise SlideReadError(
                f"{raw}: no slides found (looked for {', '.join(SLIDE_SUFFIXES)}); "
                "point to a folder that holds slides"
            )
        found += [
            (p, _relative_name(p, path), False, p.parent.relative_to(path)) for p in in_folder
        ]
    # one entry per file; found in a folder beats given alone, so the name is order-free
    by_file: dict[Path, tuple[Path, str, bool, Path]] = {}
    for item in sorted(found, key=lambda item: (str(item[0]), item[2], item[1])):
        by_file.setdefault(item[0].resolve(), item)
    unique = sorted(by_file.values(), key=lambda item: str(item[0]))
    names = [_fit(n) for n in _disambiguate([(p, n, a) for p, n, a, _ in unique])]
    return _with_masks(unique, names, skipped, tissue_mask)


def _with_masks(
    unique: list[tuple[Path, str, bool, Path]],
    names: list[str],
    skipped: list[SkippedInput],
    tissue_mask: Path | None,
) -> InputPlan:
    notes: list[str] = []
    slides: list[SlideInput] = []
    for (path, _, _, rel), name in zip(unique, names, strict=True):
        mask = tissue_mask
        if tissue_mask is not None and tissue_mask.is_dir():
            mask = match_mask(path, rel, tissue_mask)
            if mask is None:
                notes.append(
                    f"{path.name}: no mask named {path.stem}[_mask].png/.tif/... in "
                    f"{tissue_mask}: its tissue is detected instead"
                )
        elif tissue_mask is not None and len(unique) > 1:
            raise PathsslError(
                f"--tissue-mask {tissue_mask} is one file for {len(unique)} slides; give one "
                "slide, or a folder of masks named like the slides"
            )
        slides.append(SlideInput(path, name, mask))
    return InputPlan(tuple(slides), tuple(skipped), tuple(notes))
