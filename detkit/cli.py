"""The ``detkit`` command: ``detkit data ...``, ``detkit train``, ``detkit plugins``, ...

The command groups live in the private command layer (``detkit._cli``) and add
themselves here through an ``add_commands(subparsers)`` function; a command's
handler returns the exit status. Errors that detkit raises on purpose are
printed as one line, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from typing import Optional, Sequence, TextIO

from ._base import distribution_version as _distribution_version
from ._cli import COMMAND_GROUPS
from ._engine import note_failure as _note_failure, worker_label as _worker_label
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
        with warnings.catch_warnings():  # restores Python's own warning printer afterwards
            warnings.showwarning = _show_warning
            return int(handler(args) or 0)
    except DetkitError as error:
        _note_failure(error)  # in a distributed job: this worker leaves it at once, with this status
        where = _worker_label()  # and says which worker it is
        print(f"detkit: error: {where + ': ' if where else ''}{_in_flags(str(error), parser, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        _note_failure(error)
        print("detkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `detkit ... | head`: the reader left; say nothing more
        sys.stderr.close()
        return 0


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """A warning as one line, ``detkit: warning: ...``, instead of Python's file, line and source."""
    print(f"detkit: warning: {message}", file=file or sys.stderr)


def _in_flags(message: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """An error in the terms the user typed: ``The 'image_dir' argument`` becomes ``The --images option``.

    The names are those of the command's options and positional arguments, and
    the Python parameter names a command declares through ``set_defaults(flags={...})``
    where they differ (``image_dir`` -> ``--images``).
    """
    names = _command_names(parser, args)
    names.update(getattr(args, "flags", None) or {})

    def replace(match: re.Match[str]) -> str:
        name = names.get(match.group(1))
        if name is None:
            return match.group(0)
        return f"The {name} option" if name.startswith("-") else f"The {name} argument"

    return re.sub(r"The '(\w+)' (?:argument|parameter)", replace, message)


def _command_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """``dest -> --flag`` (or the METAVAR of a positional argument) of the command that ran."""
    names: dict[str, str] = {}
    current: Optional[argparse.ArgumentParser] = parser
    while current is not None:
        chosen = None
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(args, action.dest, None) or "")
            elif action.option_strings:
                names[action.dest] = max(action.option_strings, key=len)
            elif action.dest != argparse.SUPPRESS:
                names[action.dest] = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
        current = chosen
    return names


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
