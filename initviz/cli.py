"""The command line: ``python -m initviz SUBCOMMAND ... [--json]``.

Every subcommand prints one JSON document with ``--json`` and a readable table without. Any bad
input ends with exit code 2 and one line on stderr, never a traceback. The subcommands live in
:mod:`initviz.cli_network` (schemes, profile, theory, jacobian), :mod:`initviz.cli_train` and
:mod:`initviz.cli_inspect`; what they share in :mod:`initviz.cli_common`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from initviz.cli_common import TEXT_WIDTH, Parser, emit_notice, network_flags
from initviz.cli_inspect import add_inspect
from initviz.cli_network import add_jacobian, add_profile, add_schemes, add_theory
from initviz.cli_train import add_train
from initviz.devices import limit_threads
from initviz.errors import InitvizError, SettingIgnored

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 1


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    add_schemes, add_profile, add_theory, add_jacobian, add_train, add_inspect,
]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, and wraps at :data:`TEXT_WIDTH` whatever the terminal says."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=TEXT_WIDTH)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == []:
            return action.help  # no default worth showing (or it is in the help already)
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m initviz", formatter_class=_HelpFormatter,
                     description="See what weight initialization does to a neural network.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_HelpFormatter)
    common = network_flags()
    for add in SUBCOMMANDS:
        add(sub, common)
    parser.commands = ", ".join(sub.choices)
    return parser


def _notice_ignored_setting(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, SettingIgnored):
        emit_notice(str(message))
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_SHOW_WARNING = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0, or 2 after a one-line error on stderr).

    A reader that closes the pipe early (``| head``) ends the command quietly with status 1, the
    way Python's documentation of SIGPIPE advises: stdout is pointed at devnull so the flush at
    interpreter exit cannot raise a second BrokenPipeError.
    """
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _notice_ignored_setting
            args = build_parser().parse_args(argv)
            limit_threads()
            args.run(args)
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except InitvizError as error:
        print(f"initviz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print("initviz: error: out of memory: reduce width, depth or batch", file=sys.stderr)
        return EXIT_USAGE
    return 0


__all__ = ["EXIT_BROKEN_PIPE", "EXIT_USAGE", "SUBCOMMANDS", "build_parser", "main"]
