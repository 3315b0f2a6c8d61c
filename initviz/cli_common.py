"""What every subcommand of the command line shares: the network flags and how they become a
:class:`NetworkSpec`, argparse's complaints as one sentence, and the JSON and text output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd

from initviz.activations import ACTIVATIONS
from initviz.archs import ARCHS, Option
from initviz.devices import DEVICE_CHOICES
from initviz.errors import InitvizError, clip, quote
from initviz.network import NORMS, NetworkSpec
from initviz.schemes import BIAS_SCHEMES, SCHEMES

DEFAULT_WIDTH = 256
DEFAULT_DEPTH = 20
DEFAULT_EVAL_EVERY = 10


class UsageError(InitvizError):
    """Bad command-line syntax (argparse's complaints, rephrased as one line)."""


class Parser(argparse.ArgumentParser):
    commands = ""  # the subcommands' names, for the messages of the top-level parser

    def error(self, message: str):
        """One sentence instead of argparse's usage block, quoting the user's text in short."""
        raise UsageError(_rephrase(message, self.prog, self.commands))


def _rephrase(message: str, prog: str, commands: str) -> str:
    head, _, rest = message.partition(": ")
    if head == "unrecognized arguments":
        return f"{prog} does not take {quote(rest)}; see {prog} COMMAND --help"
    if head == "the following arguments are required" and rest == "command":
        return f"give a command: {commands}; see {prog} --help"
    if head == "argument command" and rest.startswith("invalid choice: "):
        return f"there is no command {quote(_given_choice(rest))}: give one of {commands}"
    if head.startswith("argument "):  # a flag's own sentence (its type function) or argparse's
        return f"{head.removeprefix('argument ')}: {clip(rest, 200)}"
    return clip(message, 200)


def _given_choice(rest: str) -> str:
    # argparse writes "invalid choice: 'VALUE' (choose from ...)".
    return rest.removeprefix("invalid choice: ").rsplit(" (choose from", 1)[0].strip("'")


def parse_key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"{quote(text)} is not of the form KEY=VALUE (for example std=0.5)")
    return key.strip(), value.strip()


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes:
        raise argparse.ArgumentTypeError(
            f"{quote(text)} is not a list of whole numbers separated by commas (for example "
            "64,256,128)")
    return sizes


def _converter(convert: Callable[[str], object], noun: str) -> Callable[[str], object]:
    """An argparse ``type`` that says "VALUE is not NOUN" instead of "invalid int value"."""
    def parse(text: str):
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{quote(text)} is not {noun}") from None

    return parse


parse_whole = _converter(int, "a whole number")
parse_number = _converter(float, "a number")


def _device(text: str) -> str:
    # Checked here as well as where a device is used, so that `theory`, which computes with
    # NumPy only, does not accept a device that does not exist.
    if text not in DEVICE_CHOICES:
        raise argparse.ArgumentTypeError(
            f"{quote(text)} is not a device: give one of {', '.join(DEVICE_CHOICES)}")
    return text


def network_flags() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--sizes", type=_sizes, metavar="A,B,...",
                        help="one width per hidden layer, e.g. 64,256,128 (instead of "
                             "--width and --depth)")
    common.add_argument("--width", type=parse_whole,
                        help=f"units in each hidden layer (default: {DEFAULT_WIDTH})")
    common.add_argument("--depth", type=parse_whole,
                        help=f"number of hidden layers (default: {DEFAULT_DEPTH})")
    common.add_argument("--input-dim", type=parse_whole, default=64,
                        help="size of the input to layer 1; the probe feeds it N(0, 1) values")
    common.add_argument("--activation", default="relu",
                        help="the function after each layer: " + ", ".join(ACTIVATIONS))
    common.add_argument("--scheme", default="kaiming_normal",
                        help="how the weights are drawn: " + ", ".join(SCHEMES)
                             + " (the schemes command explains each)")
    common.add_argument("--param", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a parameter of the scheme, e.g. std=0.5 or gain=2 (repeatable)")
    common.add_argument("--bias", default="zeros",
                        help="how the biases are drawn: " + ", ".join(BIAS_SCHEMES))
    common.add_argument("--bias-param", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a parameter of the bias scheme, e.g. std=0.1 (repeatable)")
    common.add_argument("--norm", default="none",
                        help="a normalization layer after each Linear: " + ", ".join(NORMS))
    common.add_argument("--arch", default="mlp",
                        help="the architecture: " + ", ".join(ARCHS) + " (mlp: the plain stack; "
                             "residual: blocks h <- h + a*branch(h), depth = blocks)")
    for name, owners in arch_options().items():
        common.add_argument(f"--{name.replace('_', '-')}", default=None, help="; ".join(
            f"with --arch {arch}: {option.meaning}, {option.describe()} (default {option.default})"
            for arch, option in owners))
    common.add_argument("--seed", type=parse_whole, default=0,
                        help="the random seed: the same seed draws the same weights, inputs and "
                             "data, so the same numbers")
    common.add_argument("--device", type=_device, default="auto",
                        help="where to compute: auto (cuda, then mps, then cpu), cpu, cuda or "
                             "mps; one that is not there falls back to cpu")
    common.add_argument("--json", action="store_true",
                        help="print one JSON document instead of text")
    return common


def arch_options() -> dict[str, list[tuple[str, Option]]]:
    """Every architecture option by name: each architecture that has it, with its Option."""
    options: dict[str, list[tuple[str, Option]]] = {}
    for arch in ARCHS.values():
        for name, option in arch.options.items():
            options.setdefault(name, []).append((arch.name, option))
    return options


def network_spec(args: argparse.Namespace, **overrides) -> NetworkSpec:
    """The NetworkSpec the common flags describe (``overrides`` replace individual fields)."""
    given = {name: getattr(args, name) for name in arch_options()
             if getattr(args, name) is not None}
    fields = dict(
        input_dim=args.input_dim, activation=args.activation, scheme=args.scheme,
        scheme_params=dict(args.param), bias=args.bias, bias_params=dict(args.bias_param),
        norm=args.norm, arch=args.arch, arch_params=given,
    )
    fields.update(overrides)
    if args.sizes is not None:
        if args.width is not None or args.depth is not None:
            raise UsageError("give either --sizes or --width/--depth, not both")
        return NetworkSpec(sizes=args.sizes, **fields)
    return NetworkSpec.stack(DEFAULT_WIDTH if args.width is None else args.width,
                             DEFAULT_DEPTH if args.depth is None else args.depth, **fields)


def emit_notice(notice: str | None) -> None:
    if notice:
        print(f"initviz: notice: {notice}", file=sys.stderr)


def print_json(document) -> None:
    json.dump(document, sys.stdout, indent=2, allow_nan=False, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


TEXT_WIDTH = 100
"""Columns the readable output may take: a terminal of 100 columns shows it without wrapping."""


def say(text: str) -> None:
    """Print a sentence of the readable output, wrapped to :data:`TEXT_WIDTH` columns."""
    print(textwrap.fill(text, TEXT_WIDTH, subsequent_indent="  ", break_long_words=False,
                        break_on_hyphens=False))


def format_table(frame: pd.DataFrame, keys: int = 1) -> str:
    """``frame`` as text no wider than :data:`TEXT_WIDTH`: where its columns do not fit side by
    side, they are printed as several tables one under another, each led by the first ``keys``
    columns (the layer, say) so that every row can still be read off."""
    def number(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    def text(columns: list) -> str:
        return frame[columns].to_string(index=False, na_rep="n/a",
                                        formatters={c: number for c in columns})

    def width(columns: list) -> int:
        return max(map(len, text(columns).splitlines()))

    lead, rest = list(frame.columns[:keys]), list(frame.columns[keys:])
    blocks: list[list] = []
    for column in rest:
        if blocks and width(lead + blocks[-1] + [column]) <= TEXT_WIDTH:
            blocks[-1].append(column)
        else:
            blocks.append([column])
    # As many blocks as filling each in turn needs, but of even length where they still fit
    # (profile: 5 + 5 + 5 columns rather than 7 + 7 + 1).
    even = [list(part) for part in np.array_split(np.array(rest, dtype=object), len(blocks))]
    if blocks and all(width(lead + block) <= TEXT_WIDTH for block in even):
        blocks = even
    return "\n\n".join(text(lead + block) for block in blocks or [[]])


def format_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


__all__ = [
    "DEFAULT_DEPTH", "DEFAULT_EVAL_EVERY", "DEFAULT_WIDTH", "Parser", "TEXT_WIDTH", "UsageError",
    "arch_options", "emit_notice", "format_number", "format_table", "network_flags", "network_spec",
    "parse_key_value", "parse_number", "parse_whole", "print_json", "say",
]
