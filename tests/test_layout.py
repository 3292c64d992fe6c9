"""The layout shows the data flow (issue #22): a stage never imports a later stage, the
library never imports the command line, and no modules import each other in a circle.

Stages in order: slide -> tissue -> tiles -> encoder -> aggregation (pretrained slide encoders)
-> outputs -> embed (drives them) -> grand_challenge -> cli. Beside them: training (the loop),
pretrain, slide_ssl and evaluation, which may use any stage up to embed. errors.py, runtime.py
and atomic.py are the base.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pathssl"
BASE = {"errors", "runtime", "atomic"}
FACADE = "__init__"  # pathssl.load_encoder: the public API may reach any stage, not the CLI
STAGES = [
    "slide",
    "tissue",
    "tiles",
    "encoder",
    "aggregation",
    "outputs",
    "embed",
    "grand_challenge",
    "cli",
]
BESIDE = {"training": 0, "pretrain": 6, "slide_ssl": 6, "evaluation": 6}  # highest stage used


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pathssl"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pathssl")}
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(package: str) -> float:
    if package == FACADE:
        return STAGES.index("embed") + 0.5
    if package in BASE:
        return -1
    if package in STAGES:
        return STAGES.index(package)
    return BESIDE[package] + 0.5


def test_every_package_has_a_place_in_the_flow() -> None:
    packages = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")}
    known = BASE | {FACADE} | set(STAGES) | set(BESIDE)
    assert packages <= known, packages - known


def test_no_stage_imports_a_later_stage_or_the_cli() -> None:
    """Module-level and deferred imports alike; one documented exception: the embedding's
    aggregation step loads a trained slide encoder from slide_ssl (beside it)."""
    allowed = {("embed/aggregation.py", "slide_ssl")}
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        here = rel.split("/")[0].removesuffix(".py")
        for module in _imports(path, module_level_only=False):
            there = _package(module)
            if module == "pathssl" or there == here or (rel, there) in allowed:  # __version__
                continue
            if there == "cli" or _rank(there) > _rank(here):
                wrong.append(f"{rel} imports {module}")
    assert wrong == []


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        graph[name] = {m for m in _imports(path, module_level_only=True) if m != name}
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_pipeline_and_cli_are_no_longer_single_files() -> None:
    assert not (SRC / "pipeline.py").exists() and not (SRC / "cli.py").exists()
    assert (SRC / "cli").is_dir() and (SRC / "embed").is_dir()


def test_functions_are_short_and_take_few_positional_parameters() -> None:
    """No function over 60 lines; none with more than 5 positional parameters (self/cls not
    counted): the rest are keyword-only."""
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = [*node.args.posonlyargs, *node.args.args]
            if args and args[0].arg in ("self", "cls"):
                args = args[1:]
            lines = node.end_lineno - node.lineno + 1
            if lines > 60 or len(args) > 5:
                rel = path.relative_to(SRC).as_posix()
                wrong.append(f"{rel}:{node.lineno} {node.name}: {lines} lines, {len(args)} args")
    assert wrong == []
