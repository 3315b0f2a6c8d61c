"""The command line: ``python -m initviz SUBCOMMAND ... [--json]``.

Every subcommand prints one JSON document with ``--json`` and a readable table without. Any bad
input ends with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence

import pandas as pd

from initviz.devices import DEVICE_CHOICES, limit_threads
from initviz.errors import InitvizError
from initviz.network import NORMS, NetworkSpec
from initviz.schemes import BIAS_SCHEMES, SCHEMES
from initviz.activations import ACTIVATIONS

EXIT_USAGE = 2
DEFAULT_WIDTH = 256
DEFAULT_DEPTH = 20


class UsageError(InitvizError):
    """Bad command-line syntax (argparse's complaints, rephrased as one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage over several lines; we want one
        raise UsageError(message)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers, got {text!r}") from None


def _network_flags() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--sizes", type=_sizes, help="one width per hidden layer, e.g. 64,256,128")
    common.add_argument("--width", type=int, help=f"units per hidden layer ({DEFAULT_WIDTH})")
    common.add_argument("--depth", type=int, help=f"number of hidden layers ({DEFAULT_DEPTH})")
    common.add_argument("--input-dim", type=int, default=64, help="size of the input")
    common.add_argument("--activation", default="relu", help=", ".join(ACTIVATIONS))
    common.add_argument("--scheme", default="kaiming_normal", help=", ".join(SCHEMES))
    common.add_argument("--param", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="a scheme parameter (repeatable)")
    common.add_argument("--bias", default="zeros", help=", ".join(BIAS_SCHEMES))
    common.add_argument("--bias-param", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="a bias-scheme parameter (repeatable)")
    common.add_argument("--norm", default="none", help=", ".join(NORMS))
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--device", default="auto", help=", ".join(DEVICE_CHOICES))
    common.add_argument("--json", action="store_true", help="print one JSON document")
    return common


def network_spec(args: argparse.Namespace, **overrides) -> NetworkSpec:
    """The NetworkSpec the common flags describe (``overrides`` replace individual fields)."""
    fields = dict(
        input_dim=args.input_dim, activation=args.activation, scheme=args.scheme,
        scheme_params=dict(args.param), bias=args.bias, bias_params=dict(args.bias_param),
        norm=args.norm,
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


def format_table(frame: pd.DataFrame) -> str:
    def number(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    return frame.to_string(index=False, na_rep="n/a", formatters={c: number for c in frame.columns})


# --------------------------------------------------------------------------------------------------
# Subcommands


def _cmd_schemes(args: argparse.Namespace) -> None:
    rows = [{"name": s.name, "label": s.label, "params": s.defaults, "formula": s.formula,
             "reference": s.reference} for s in SCHEMES.values()]
    if args.json:
        print_json(rows)
        return
    table = pd.DataFrame([{**row, "params": ", ".join(f"{k}={v}" for k, v in
                                                    row["params"].items()) or "-"}
                          for row in rows])[["name", "params", "formula"]]
    print(table.to_string(index=False))


def _cmd_profile(args: argparse.Namespace) -> None:
    from initviz.probe import profile

    result = profile(network_spec(args), batch=args.batch, seed=args.seed, device=args.device,
                     bins=args.bins)
    emit_notice(result.device_notice)
    document = result.to_json_dict()
    if args.json:
        print_json(document)
        return
    theory = document["theory"]
    print(f"{result.spec.depth} layers, {result.spec.activation}, {result.spec.scheme}; "
          f"batch {result.batch}, seed {result.seed}, device {result.device}, "
          f"{result.seconds:.3f} s")
    if theory["chi1"] is not None:
        depth_scale = theory["depth_scale"]
        print(f"mean field: q* = {_fmt(theory['q_star'])}, chi1 = {theory['chi1']:.4g} "
              f"({theory['phase']}), depth scale = {_fmt(depth_scale)}")
    elif theory["note"]:
        print(f"mean field: not shown ({theory['note']})")
    if result.first_nonfinite_layer is not None:
        print(f"{result.nonfinite_pass} pass: values overflow to inf/NaN at layer "
              f"{result.first_nonfinite_layer}")
    print(format_table(result.layers))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _add_profile(sub, common) -> None:
    cmd = sub.add_parser("profile", parents=[common], help="per-layer statistics")
    cmd.add_argument("--batch", type=int, default=256)
    cmd.add_argument("--bins", type=int, default=60)
    cmd.set_defaults(run=_cmd_profile)


def _add_schemes(sub, common) -> None:
    cmd = sub.add_parser("schemes", help="list the initialization schemes")
    cmd.add_argument("--json", action="store_true", help="print one JSON document")
    cmd.set_defaults(run=_cmd_schemes)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_schemes, _add_profile,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m initviz",
                     description="See what weight initialization does to a neural network.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _network_flags()
    for add in SUBCOMMANDS:
        add(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        limit_threads()
        args.run(args)
    except InitvizError as error:
        print(f"initviz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print("initviz: error: out of memory: reduce width, depth or batch", file=sys.stderr)
        return EXIT_USAGE
    return 0


__all__ = ["build_parser", "main", "network_spec"]
