"""The ``detkit`` command: ``detkit data ...``, ``detkit train``, ``detkit plugins``, ...

The command groups live in the private command layer (``detkit._cli``) and add
themselves here through an ``add_commands(subparsers)`` function; a command's
handler returns the exit status. Errors that detkit raises on purpose are
printed as one line, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._base import distribution_version as _distribution_version
from ._cli import COMMAND_GROUPS
from .errors import DetkitError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detkit",
        description="Object detection on MXNet Gluon with swappable, pluggable components.",
    )
    parser.add_argument("--version", action="version", version=f"detkit {_distribution_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``detkit`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # No command, or a group without its subcommand: show the relevant help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except DetkitError as error:
        print(f"detkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `detkit ... | head`: the reader left; say nothing more
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
