"""Option groups and output lines shared by several commands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("pathssl")


def print_bundle(path: Path, config) -> None:
    print(f"wrote {path} ({config.name}, {config.embedding_dim}-d, sha256 {config.weights_sha256})")


def add_resume_arguments(p: argparse.ArgumentParser) -> None:
    """--no-resume and --stop-after of the training commands."""
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end this invocation after N steps (checkpointed; resume later)",
    )


def add_set_argument(p: argparse.ArgumentParser, example: str) -> None:
    """--set KEY=VALUE (repeatable) of the training commands: one YAML value each, read by
    `pathssl.training.overrides`."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value (a YAML value; a.b sets key b of mapping a; an "
        f"unknown key is an error that lists the known ones), e.g. {example}",
    )
