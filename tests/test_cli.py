"""The `pathssl` command line: exit codes and one-line errors, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pathssl.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_embed_with_bundled_model(cmu_slide: Path, tmp_path: Path) -> None:
    proc = run_cli("embed", str(cmu_slide), "--output", str(tmp_path), "--max-tiles", "6")
    assert proc.returncode == 0, proc.stderr
    assert "1 embedded, 0 reused (same slide, options and model), 0 failed" in proc.stdout
    run = json.loads((tmp_path / "CMU-1-Small-Region" / "run.json").read_text())
    config = json.loads((ROOT / "model" / "config.json").read_text())
    assert run["model"]["weights_sha256"] == config["weights_sha256"]
    assert run["tiling"]["tiles"] == 6
    if not config["trained"]:
        assert "UNTRAINED" in proc.stderr
    again = run_cli("embed", str(cmu_slide), "--output", str(tmp_path), "--max-tiles", "6")
    assert "0 embedded, 1 reused" in again.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "file is empty"),
        (b"GIF89a not really" * 50, "not a format"),
    ],
)
def test_bad_slide_one_line_error(tmp_path: Path, content: bytes, expected: str) -> None:
    bad = tmp_path / "bad.svs"
    bad.write_bytes(content)
    out = tmp_path / "out"
    proc = run_cli("embed", str(bad), "--output", str(out), "--model", str(ROOT / "model"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    failures = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1 and expected in failures[0] and str(bad) in failures[0]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.json"]


def test_missing_model_is_a_one_line_error(cmu_slide: Path, tmp_path: Path) -> None:
    proc = run_cli("embed", str(cmu_slide), "-o", str(tmp_path / "o"), "--model", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert "config.json" in proc.stderr


def test_folder_without_slides(tmp_path: Path) -> None:
    proc = run_cli("embed", str(tmp_path), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no slides found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = run_cli("--debug", "embed", str(tmp_path), "-o", str(tmp_path / "o"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    after = run_cli("embed", str(tmp_path), "-o", str(tmp_path / "o"), "--debug")
    assert after.returncode != 0 and "Traceback" in after.stderr
    plain = run_cli("embed", str(tmp_path), "-o", str(tmp_path / "o"))
    assert plain.returncode != 0 and "Traceback" not in plain.stderr


def test_version() -> None:
    import pathssl

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"pathssl {pathssl.__version__}"


def test_pretrain_help_names_every_method() -> None:
    from pathssl.pretrain.methods import METHODS

    proc = run_cli("pretrain", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert sorted(METHODS) == ["barlow", "byol", "dino", "moco", "simclr"]
    for key, name in [
        ("simclr", "SimCLR"),
        ("dino", "DINO"),
        ("byol", "BYOL"),
        ("moco", "MoCo v2"),
        ("barlow", "Barlow Twins"),
    ]:
        assert f"{key} ({name})" in text


def _options(parser, path=("pathssl",)):
    """(command, option, action) for every option of every subcommand."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.dest != "help":
            yield " ".join(path), "/".join(action.option_strings) or action.dest, action


def test_every_option_has_help_and_says_its_default() -> None:
    import argparse

    from pathssl.cli import build_parser
    from pathssl.grand_challenge.run import build_parser as process_parser

    missing, silent = [], []
    for parser in (build_parser(), process_parser()):
        for command, option, action in _options(parser, (parser.prog,)):
            if not action.help:
                missing.append(f"{command} {option}")
            elif (
                action.option_strings
                and action.default not in (None, False, [], argparse.SUPPRESS)
                and "default" not in action.help
                and not action.required
            ):
                silent.append(f"{command} {option} (default {action.default!r})")
    assert missing == [] and silent == []


def test_help_does_not_import_torch() -> None:
    """`pathssl --help` and the subcommands' help stay fast: PyTorch loads only to run."""
    code = (
        "import sys, contextlib, io\n"
        "from pathssl.cli import main\n"
        "for args in (['--help'], ['embed', '--help'], ['import-weights', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(args)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
