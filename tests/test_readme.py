"""The README's commands run as written: every `pathssl ...` and `python process.py ...` line
of its shell blocks is parsed by the real command line (options renamed or removed since would
fail here), and the repository files it names exist. The quick start itself runs in CI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in line.split("&&"):
                lines.append(part.strip())
    return [c for c in lines if c]


def _argv(command: str) -> tuple[str, list[str]] | None:
    """(which parser, arguments) for a pathssl or process.py command; usage brackets opened."""
    tokens = [t for t in shlex.split(command.replace("[", " ").replace("]", " ")) if t != "..."]
    for i, token in enumerate(tokens):
        if (token.endswith("pathssl") and i == 0) or token.endswith("/pathssl"):
            return "pathssl", tokens[i + 1 :]
        if token == "pathssl.cli":
            return "pathssl", tokens[i + 1 :]
        if token == "process.py":
            return "process.py", tokens[i + 1 :]
    return None


COMMANDS = [(c, a) for c in _commands() if (a := _argv(c)) is not None]


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize(("command", "parsed"), COMMANDS, ids=[c[:60] for c, _ in COMMANDS])
def test_readme_command_parses(command: str, parsed: tuple[str, list[str]]) -> None:
    from pathssl.cli import build_parser
    from pathssl.grand_challenge.run import build_parser as process_parser

    which, argv = parsed
    parser = build_parser() if which == "pathssl" else process_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command does not parse ({exc}): {command}")
    for token in argv:  # files of this repository that the command names
        if re.match(r"(configs|tests/data|test/input|resources)/", token):
            assert (ROOT / token).exists(), f"{token} named in the README does not exist"
