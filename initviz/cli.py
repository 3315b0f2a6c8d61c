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

import numpy as np
import pandas as pd

from initviz.devices import DEVICE_CHOICES, limit_threads
from initviz.errors import InitvizError
from initviz.network import NORMS, NetworkSpec
from initviz.schemes import BIAS_SCHEMES, SCHEMES, get_scheme
from initviz.activations import ACTIVATIONS

EXIT_USAGE = 2
DEFAULT_WIDTH = 256
DEFAULT_DEPTH = 20
DEFAULT_EVAL_EVERY = 10


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


def _cmd_theory(args: argparse.Namespace) -> None:
    from initviz.phase import phase_diagram

    given = (args.sigma_w2, args.sigma_b2)
    if (given[0] is None) != (given[1] is None):
        raise UsageError("give both --sigma-w2 and --sigma-b2, or neither")
    diagram = phase_diagram(network_spec(args), n=args.grid,
                            sigma=None if given[0] is None else given)
    document = diagram.to_json_dict()
    if args.json:
        print_json(document)
        return
    source = ("from --sigma-w2/--sigma-b2" if given[0] is not None
              else f"from {args.scheme} / {args.bias}, last hidden layer")
    if diagram.summary is None:
        print(f"{diagram.activation}: mean field does not apply ({diagram.note}); "
              "pass --sigma-w2 and --sigma-b2 to place a point")
    else:
        print(f"{diagram.activation}, sigma_w2 = {document['sigma_w2']:.4g}, sigma_b2 = "
              f"{document['sigma_b2']:.4g} ({source})")
        print(f"mean field: q* = {_fmt(document['q_star'])}, chi1 = {document['chi1']:.4g} "
              f"({document['phase']}), depth scale = {_fmt(document['depth_scale'])}, "
              f"chaotic depth scale = {_fmt(document['chaotic_depth_scale'])}")
        print(document["reach"])
    grid = diagram.grid
    print(f"phase grid: {args.grid} x {args.grid} over sigma_w2 in [0, "
          f"{grid.sigma_w2.max():.4g}], sigma_b2 in [0, {grid.sigma_b2.max():.4g}] "
          "(every point with --json)")
    line = diagram.critical_line
    if line.empty:
        print("critical line (chi1 = 1): not in this window")
        return
    print("critical line (chi1 = 1):")
    print(format_table(line.iloc[np.linspace(0, len(line) - 1, min(len(line), 11)).round()
                                 .astype(int)]))


def _add_theory(sub, common) -> None:
    cmd = sub.add_parser("theory", parents=[common],
                         help="mean-field fixed point, chi1, depth scale and phase diagram")
    cmd.add_argument("--sigma-w2", type=float, help="fan_in * Var(W), with --sigma-b2")
    cmd.add_argument("--sigma-b2", type=float, help="bias variance (with --sigma-w2)")
    cmd.add_argument("--grid", type=int, default=50, help="points per axis of the phase grid")
    cmd.set_defaults(run=_cmd_theory)


def _cmd_jacobian(args: argparse.Namespace) -> None:
    from initviz.jacobian import jacobian_spectrum

    width = args.sizes[0] if args.sizes else (DEFAULT_WIDTH if args.width is None else args.width)
    spec = network_spec(args, input_dim=width)
    result = jacobian_spectrum(spec, seed=args.seed, device=args.device)
    emit_notice(result.device_notice)
    if args.json:
        print_json(result.to_json_dict())
        return
    rows, cols = result.shape
    print(f"Jacobian of layer {spec.depth}'s activation by the input: {rows} x {cols} at one "
          f"N(0, I) input; {spec.activation}, {spec.scheme}; seed {args.seed}, device "
          f"{result.device}, {result.seconds:.3f} s")
    print(result.reading)
    quantiles = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
    print(format_table(pd.DataFrame({"quantile": quantiles, "singular_value":
                                     np.quantile(result.singular_values, quantiles)})))


def _add_jacobian(sub, common) -> None:
    cmd = sub.add_parser("jacobian", parents=[common],
                         help="singular values of the input-output Jacobian (square net: the "
                              "input has the first layer's width; --input-dim is not used)")
    cmd.set_defaults(run=_cmd_jacobian)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _train_schemes(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    """``--schemes`` (default: ``--scheme``), each with the ``--param`` values it has."""
    names = [args.scheme] if args.schemes is None else args.schemes
    if not names:
        raise UsageError("--schemes: give one or more scheme names, separated by commas")
    given = dict(args.param)
    schemes = [(name, {key: value for key, value in given.items()
                       if key in get_scheme(name).defaults}) for name in names]
    unused = sorted(set(given) - {key for _, params in schemes for key in params})
    if unused:
        key = unused[0]
        raise UsageError(f"--param {key}={given[key]}: none of {', '.join(names)} has a "
                         f"parameter {key!r}")
    return schemes


class _ProgressBar:
    """One line on stderr, redrawn at every checkpoint; ``close`` ends the line."""

    WIDTH = 30

    def __init__(self) -> None:
        self.drawn = False

    def __call__(self, checkpoint) -> None:
        filled = round(self.WIDTH * checkpoint.step / checkpoint.steps)
        sys.stderr.write(f"\rtraining [{'#' * filled}{'.' * (self.WIDTH - filled)}] step "
                         f"{checkpoint.step}/{checkpoint.steps}, {checkpoint.seconds:.1f} s")
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")


def _cmd_train(args: argparse.Namespace) -> None:
    from initviz.datasets import dataset_info
    from initviz.training import TrainSpec, train

    schemes = _train_schemes(args)
    first_name, first_params = schemes[0]
    # The scheme and input size of the network come from --schemes and the data set.
    network = network_spec(args, input_dim=dataset_info(args.dataset).input_dim,
                           scheme=first_name, scheme_params=first_params)
    spec = TrainSpec(
        network, schemes=tuple(schemes), seeds=args.seeds, seed=args.seed, dataset=args.dataset,
        optimizer=args.optimizer, lr=args.lr, steps=args.steps, batch=args.batch,
        eval_every=(min(DEFAULT_EVAL_EVERY, args.steps) if args.eval_every is None
                    else args.eval_every),
        device=args.device)
    bar = None if args.json else _ProgressBar()
    try:
        result = train(spec, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    emit_notice(result.device_notice)
    if args.json:
        print_json(result.to_json_dict())
        return
    data = dataset_info(spec.dataset)
    net = spec.network
    print(f"{len(spec.schemes)} scheme(s) x {spec.seeds} seed(s) from seed {spec.seed} on "
          f"{data.name} ({data.input_dim} inputs, {data.n_classes} classes); {net.depth} hidden "
          f"layers of {_sizes_text(net.sizes)}, {net.activation}, norm {net.norm}; {spec.optimizer} "
          f"lr {spec.lr:g}, {spec.steps} steps of batch {spec.batch}; device {result.device}, "
          f"{result.seconds:.2f} s")
    rows = [{"scheme": run.label, "seed": run.seed, "step": run.final.step,
             "train_loss": run.final.train_loss, "val_loss": run.final.val_loss,
             "val_acc": run.final.val_acc,
             "diverged_at": "-" if run.final.diverged_at is None else run.final.diverged_at}
            for run in result.runs]
    print(format_table(pd.DataFrame(rows)))


def _sizes_text(sizes: tuple[int, ...]) -> str:
    return f"width {sizes[0]}" if len(set(sizes)) == 1 else "widths " + ",".join(map(str, sizes))


def _add_train(sub, common) -> None:
    from initviz.datasets import DATASETS
    from initviz.training import MOMENTUM, OPTIMIZERS, TrainSpec

    defaults = TrainSpec.__dataclass_fields__
    cmd = sub.add_parser("train", parents=[common],
                         help="train several schemes side by side on the same data (--input-dim "
                              "is not used: the data set gives it)")
    cmd.add_argument("--schemes", type=_names, metavar="A,B,...",
                     help="the schemes to compare (default: --scheme); --param applies to each "
                          "that has the parameter")
    cmd.add_argument("--dataset", default=defaults["dataset"].default, help=", ".join(DATASETS))
    cmd.add_argument("--optimizer", default=defaults["optimizer"].default,
                     help=", ".join(OPTIMIZERS) + f" (momentum: SGD with momentum {MOMENTUM})")
    cmd.add_argument("--lr", type=float, default=defaults["lr"].default, help="learning rate")
    cmd.add_argument("--steps", type=int, default=defaults["steps"].default)
    cmd.add_argument("--batch", type=int, default=defaults["batch"].default)
    cmd.add_argument("--seeds", type=int, default=defaults["seeds"].default,
                     help="runs per scheme, with init seeds --seed, --seed+1, ...")
    cmd.add_argument("--eval-every", type=int,
                     help=f"steps between evaluations ({DEFAULT_EVAL_EVERY}, or --steps if "
                          "fewer)")
    cmd.set_defaults(run=_cmd_train)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_schemes, _add_profile, _add_theory, _add_jacobian, _add_train,
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
