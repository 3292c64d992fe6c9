"""The README and the pages of docs/ say what is true of this repository.

- Every `pathssl ...` and `python process.py ...` line of their shell blocks, and every inline
  `pathssl SUBCOMMAND ARG...` they state, is parsed by the real command line (options renamed
  or removed since would fail here), and the repository files it names exist.
- The README is short (at most 260 lines) and opens with the two quick-start commands, which
  .ci/run runs line by line; the quick start itself runs in CI.
- Every relative link (and its #anchor, where it has one) points at something that exists,
  and the README links every page of docs/.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260
QUICK_START = [
    "python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt -r "
    "requirements-dev.txt && .venv/bin/pip install -e . && .venv/bin/pathssl embed "
    "tests/data/CMU-1-Small-Region.svs --output out",
    ".venv/bin/python -m pytest",
]
FENCE = re.compile(r"^ *```[^\n]*\n.*?^ *```", re.S | re.M)


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _block_lines(text: str) -> list[str]:
    """Lines of the ```bash blocks, comments dropped, continuations joined: a backslash at the
    end of a line, or an indented line opening with `[` (a usage line wrapped)."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split(" #", 1)[0].rstrip()
            if raw.startswith(" ") and line.strip().startswith("[") and lines:
                lines[-1] += " " + line.strip()
            elif line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def _commands(text: str) -> list[str]:
    commands = [part.strip() for line in _block_lines(text) for part in line.split("&&")]
    prose = FENCE.sub("", text)
    for span in re.findall(r"`([^`]+)`", prose):  # inline: `pathssl SUBCOMMAND ARG...`
        span = " ".join(span.split())
        if span.startswith("pathssl ") and len(span.split()) >= 3:
            commands.append(span)
    return [c for c in commands if c]


def _alternative(token: str) -> str:
    """The first choice of a usage alternative: `{a,b,c}` -> a, `cpu|cuda` -> cpu."""
    if re.fullmatch(r"\{[^{}]+\}", token):
        return token[1:-1].split(",")[0]
    if "|" in token and not token.startswith("|"):
        return token.split("|")[0]
    return token


def _argv(command: str) -> tuple[str, list[str]] | None:
    """(which parser, arguments) for a pathssl or process.py command; usage brackets opened."""
    tokens = [
        _alternative(t)
        for t in shlex.split(command.replace("[", " ").replace("]", " "))
        if t != "..."
    ]
    for i, token in enumerate(tokens):
        if (token.endswith("pathssl") and i == 0) or token.endswith("/pathssl"):
            return "pathssl", tokens[i + 1 :]
        if token == "pathssl.cli":
            return "pathssl", tokens[i + 1 :]
        if token == "process.py":
            return "process.py", tokens[i + 1 :]
    return None


COMMANDS = [
    (_name(page), c, a)
    for page in PAGES
    for c in _commands(page.read_text())
    if (a := _argv(c)) is not None
]


def test_pages_have_commands() -> None:
    per_page = {name: 0 for name in map(_name, PAGES)}
    for name, _, _ in COMMANDS:
        per_page[name] += 1
    assert len(COMMANDS) >= 30, per_page
    assert per_page["README.md"] >= 8, per_page
    for page in ("embedding", "presets", "pretraining", "slide-ssl", "grand-challenge"):
        assert per_page[f"docs/{page}.md"] >= 1, per_page


@pytest.mark.parametrize(
    ("page", "command", "parsed"), COMMANDS, ids=[f"{p}: {c[:50]}" for p, c, _ in COMMANDS]
)
def test_command_parses(page: str, command: str, parsed: tuple[str, list[str]]) -> None:
    from pathssl.cli import build_parser
    from pathssl.grand_challenge.run import build_parser as process_parser

    which, argv = parsed
    parser = build_parser() if which == "pathssl" else process_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{page}: command does not parse ({exc}): {command}")
    for token in argv:  # files of this repository that the command names
        if re.match(r"(configs|tests/data|test/input|resources)/", token):
            assert (ROOT / token).exists(), f"{token} named in {page} does not exist"


def test_readme_is_short_and_starts_with_the_quick_start() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    first_block = re.search(r"```[^\n]*\n(.*?)```", text, re.S)
    assert first_block is not None and first_block.group(0).startswith("```bash")
    assert _block_lines(first_block.group(0)) == QUICK_START
    assert re.findall(r"^## (.+)$", FENCE.sub("", text), re.M)[0] == "Quick start"


def test_ci_runs_the_quick_start() -> None:
    ci_lines = {line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()}
    for command in QUICK_START:
        for part in command.split("&&"):
            assert part.strip() in ci_lines, f".ci/run does not run `{part.strip()}`"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose = FENCE.sub("", page.read_text())
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose, re.M)}


LINKS = [
    (page, target)
    for page in PAGES
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", page.read_text()))
    if not re.match(r"[a-z]+:", target)  # http:, https:, mailto:
]


def test_pages_have_links() -> None:
    assert len(LINKS) >= 30


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{_name(p)}: {t}" for p, t in LINKS])
def test_relative_link_exists(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    assert linked.exists(), f"{_name(page)} links {target}: no such file"
    if anchor and linked.suffix == ".md":
        assert anchor in _anchors(linked), f"{_name(page)} links {target}: no such heading"


def test_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve() for page, target in LINKS if page == README
    }
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"README does not link {_name(page)}"
