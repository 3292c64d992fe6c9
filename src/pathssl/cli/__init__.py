"""The `pathssl` command line: one module per command (group), on shared option groups.
Expected failures print one line; --debug shows tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys

from pathssl.cli import embed, evaluate, export, models, precision, pretrain, slide_ssl
from pathssl.errors import PathsslError

log = logging.getLogger("pathssl")


def build_parser() -> argparse.ArgumentParser:
    from pathssl import __version__

    parser = argparse.ArgumentParser(prog="pathssl", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"pathssl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in (embed, models, pretrain, evaluate, precision, slide_ssl, export):
        commands.register(sub)
    for command in sub.choices.values():  # --debug also after the subcommand
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except PathsslError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
