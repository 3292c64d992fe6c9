"""Grand-Challenge sockets and algorithm interfaces (resources/grand-challenge.json), and one
job's inputs read from /input/inputs.json.

The platform has no optional inputs: each set of input sockets is its own interface, with its
own outputs, and a job's interface is the one whose input slugs equal those of inputs.json.
inputs.json is a list with one object per input socket, each holding the socket (`socket`, or
`interface` in older jobs: slug, kind, super_kind, relative_path, ...) and a value, file or
image. What each input *is* comes from the socket's kind and the file's content, never from
its slug: the one Image socket is the slide (UNICORN names it per task:
prostate-tissue-biopsy-whole-slide-image, ihc-staining-for-pd-l1, ...), a Segmentation socket
is the tissue mask, and a JSON file holding `task_type` is the UNICORN task description. An
image input is a folder /input/<relative_path> holding exactly one file whose name we do not
control, so it is opened by content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathssl.errors import InputLayoutError
from pathssl.outputs.slide_outputs import OutputLayout

IMAGE_KINDS = frozenset({"Image", "Segmentation", "Heat Map"})
MASK_KINDS = frozenset({"Segmentation"})
INPUT_ROLES = frozenset({"slide", "tissue_mask", "task_description"})
OUTPUT_ROLES = frozenset(
    {"slide_embedding", "patch_embeddings", "feature_map", "tissue_mask", "preview", "run_record"}
)
# What the UNICORN consumers read for each task type (unicorn-eval's MODEL_OUTPUT_SLUG_DICT,
# unicorn-baseline's save_feature_to_json): the slide-level vector for classification and
# regression, the patch-level vectors for detection and segmentation.
TASK_OUTPUTS = {
    "classification": "slide_embedding",
    "regression": "slide_embedding",
    "detection": "patch_embeddings",
    "segmentation": "patch_embeddings",
}
LEVEL_OUTPUTS = frozenset({"slide_embedding", "patch_embeddings"})


@dataclass(frozen=True)
class Socket:
    slug: str
    kind: str
    relative_path: str
    on_platform: bool = True  # False: a socket to request from the Grand-Challenge team
    overlay_segments: tuple[dict[str, Any], ...] = ()
    request: str = ""  # why it is requested, for the request text

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS


@dataclass(frozen=True)
class Interface:
    """One set of input sockets and the outputs the algorithm writes for it."""

    name: str
    inputs: dict[str, str]  # socket slug -> role (slide, tissue_mask, task_description)
    outputs: dict[str, str]  # socket slug -> output (an OutputLayout field)
    unicorn_tasks: tuple[str, ...] = ()

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
                slug: Socket(
                    slug,
                    s["kind"],
                    s["relative_path"],
                    bool(s.get("on_platform", True)),
                    tuple(s.get("overlay_segments", ())),
                    str(s.get("request", "")),
                )
                for slug, s in raw["sockets"].items()
            }
            interfaces = tuple(
                Interface(
                    i["name"],
                    dict(i["inputs"]),
                    dict(i["outputs"]),
                    tuple(i.get("unicorn_tasks", ())),
                )
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
            if s.kind in MASK_KINDS and not s.overlay_segments:
                out.append(f"socket {s.slug} ({s.kind}): declare its overlay_segments")
            if not s.on_platform and not s.request:
                out.append(f"socket {s.slug}: not on the platform and no request text")
        inputs = {slug for i in self.interfaces for slug in i.inputs}
        outputs = {slug for i in self.interfaces for slug in i.outputs}
        out += [f"socket {s} is both an input and an output" for s in sorted(inputs & outputs)]
        out += [
            f"socket {s} is used but not defined"
            for s in sorted((inputs | outputs) - set(self.sockets))
        ]
        keys = [i.key for i in self.interfaces]
        out += [f"two interfaces take the inputs {list(k)}" for k in set(keys) if keys.count(k) > 1]
        names = [i.name for i in self.interfaces]
        out += [f"two interfaces are named {n}" for n in set(names) if names.count(n) > 1]
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
            if not LEVEL_OUTPUTS & set(i.outputs.values()):
                out.append(
                    f"interface {i.name}: has neither image- nor patch-neural-representation"
                )
        return out

    def choose(self, slugs: list[str], where: Path, found: str = "") -> Interface:
        key = tuple(sorted(slugs))
        for interface in self.interfaces:
            if interface.key == key:
                return interface
        raise InputLayoutError(
            f"{where}: input sockets [{', '.join(key)}]{found} match no interface of this "
            f"algorithm ({len(self.interfaces)} known, listed in resources/grand-challenge.json "
            "and docs/grand-challenge-unicorn.md); add an interface for this set of inputs"
        )

    def layout(self, interface: Interface, roles: set[str] | None = None) -> OutputLayout:
        """Where each output of the interface goes under /output, for the output roles in
        `roles` (default: all the interface lists). An image socket is a folder holding one
        file: <slug>.mha. The slide embedding and the run record are always computed; when
        the interface does not list them they go to hidden names the caller discards."""
        files: dict[str, str | None] = {field: None for field in OUTPUT_ROLES}
        for slug, role in interface.outputs.items():
            if roles is not None and role not in roles:
                continue
            socket = self.sockets[slug]
            files[role] = (
                f"{socket.relative_path}/{slug}.mha" if socket.is_image else socket.relative_path
            )
        files["slide_embedding"] = files["slide_embedding"] or UNLISTED["slide_embedding"]
        files["run_record"] = files["run_record"] or UNLISTED["run_record"]
        return OutputLayout(features_h5=None, **files)


# Files every run computes, kept out of /output when the interface has no socket for them.
UNLISTED = {
    "slide_embedding": ".unlisted-image-neural-representation.json",
    "run_record": ".unlisted-run-record.json",
}


@dataclass(frozen=True)
class InputValue:
    """One input of a job as inputs.json names it."""

    slug: str
    kind: str
    super_kind: str
    path: Path  # the file (the one file of an image socket's folder)
    value: Any = None

    def describe(self) -> str:
        return f"{self.slug} ({self.kind})"


@dataclass(frozen=True)
class JobInputs:
    interface: Interface
    slide: Path
    tissue_mask: Path | None
    task: dict[str, Any] | None = None
    slugs: dict[str, str] = field(default_factory=dict)  # role -> slug used

    def describe(self) -> str:
        parts = [f"slide {self.slugs['slide']} ({self.slide.name})"]
        if self.tissue_mask:
            parts.append(f"tissue mask {self.slugs['tissue_mask']} ({self.tissue_mask.name})")
        if self.task:
            parts.append(
                f"task {self.slugs['task_description']}: "
                + ", ".join(f"{k} {self.task.get(k)}" for k in ("domain", "modality", "task_type"))
            )
        return "; ".join(parts)


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


def _is_image_socket(kind: str, super_kind: str) -> bool:
    return kind in IMAGE_KINDS or super_kind == "Image"


def read_input_values(input_root: Path, config: SocketConfig) -> list[InputValue]:
    """Every input of inputs.json with its file, checked to stay inside input_root."""
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
    out = []
    for value in values:
        socket = _socket_of(value)
        slug = socket["slug"]
        known = config.sockets.get(slug)
        kind = str(socket.get("kind") or (known.kind if known else ""))
        super_kind = str(socket.get("super_kind") or ("Image" if kind in IMAGE_KINDS else ""))
        rel = socket.get("relative_path", known.relative_path if known else None)
        if not isinstance(rel, str):
            raise InputLayoutError(f"{path}: socket {slug!r} has no relative_path")
        target = inside(input_root, rel, "input path")
        if _is_image_socket(kind, super_kind):
            target = _single_file(target, slug)
        out.append(InputValue(slug, kind, super_kind, target, value.get("value")))
    return out


def _task_description(value: InputValue) -> dict[str, Any] | None:
    """The UNICORN task description held by this input, if it is one (by content)."""
    content = value.value
    if not isinstance(content, dict) and value.path.is_file() and value.path.suffix == ".json":
        try:
            content = json.loads(value.path.read_text())
        except (OSError, ValueError) as exc:
            raise InputLayoutError(f"{value.path}: not readable JSON ({exc})") from exc
    if not isinstance(content, dict) or "task_type" not in content:
        return None
    task_type = content.get("task_type")
    if task_type not in TASK_OUTPUTS:
        raise InputLayoutError(
            f"{value.path}: task_type {task_type!r} is none of {', '.join(TASK_OUTPUTS)}; "
            "give a UNICORN task description"
        )
    return content


def read_inputs_json(input_root: Path, config: SocketConfig) -> JobInputs:
    """The job's interface (by its set of slugs) and its slide, mask and task description (by
    socket kind and content, whatever their slugs)."""
    path = input_root / "inputs.json"
    values = read_input_values(input_root, config)
    found = ", ".join(v.describe() for v in values) or "no inputs"
    images = [v for v in values if _is_image_socket(v.kind, v.super_kind)]
    slides = [v for v in images if v.kind not in MASK_KINDS]
    masks = [v for v in images if v.kind in MASK_KINDS]
    if not slides:
        raise InputLayoutError(
            f"{path}: no slide among the inputs (found {found}); a job needs one Image socket "
            "holding the slide"
        )
    if len(slides) > 1 or len(masks) > 1:
        raise InputLayoutError(
            f"{path}: {len(slides)} Image and {len(masks)} Segmentation inputs (found {found}); "
            "give one slide and at most one tissue mask"
        )
    tasks = [(v, t) for v in values if v not in images and (t := _task_description(v))]
    if len(tasks) > 1:
        raise InputLayoutError(f"{path}: {len(tasks)} task descriptions (found {found})")
    interface = config.choose([v.slug for v in values], path, f" (found {found})")
    slugs = {"slide": slides[0].slug}
    if masks:
        slugs["tissue_mask"] = masks[0].slug
    if tasks:
        slugs["task_description"] = tasks[0][0].slug
    return JobInputs(
        interface,
        slides[0].path,
        masks[0].path if masks else None,
        tasks[0][1] if tasks else None,
        slugs,
    )


def output_roles(interface: Interface, task: dict[str, Any] | None) -> tuple[set[str], str]:
    """The interface's outputs this job writes: the level the task type asks for (both with
    no task description), and every other output the interface lists. Returns the roles and
    a warning ('' when none)."""
    listed = set(interface.outputs.values())
    if task is None:
        return listed, ""
    wanted = TASK_OUTPUTS[task["task_type"]]
    if wanted not in listed:
        return listed, (
            f"task_type {task['task_type']} needs {wanted.replace('_', ' ')}, which interface "
            f"{interface.name} has no socket for; writing what it lists"
        )
    return (listed - LEVEL_OUTPUTS) | {wanted}, ""
