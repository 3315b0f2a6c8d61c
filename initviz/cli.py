"""The command line: ``python -m initviz SUBCOMMAND ... [--json]``.

Every subcommand prints one JSON document with ``--json`` and a readable table without. Any bad
input ends with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from initviz.devices import DEVICE_CHOICES, limit_threads
from initviz.errors import InitvizError, SettingIgnored, clip, quote
from initviz.network import NORMS, NetworkSpec
from initviz.schemes import BIAS_SCHEMES, SCHEMES, get_scheme
from initviz.activations import ACTIVATIONS

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 1
DEFAULT_WIDTH = 256
DEFAULT_DEPTH = 20
DEFAULT_EVAL_EVERY = 10


class UsageError(InitvizError):
    """Bad command-line syntax (argparse's complaints, rephrased as one line)."""


class _Parser(argparse.ArgumentParser):
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


def _key_value(text: str) -> tuple[str, str]:
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


_whole = _converter(int, "a whole number")
_number = _converter(float, "a number")


def _device(text: str) -> str:
    # Checked here as well as where a device is used, so that `theory`, which computes with
    # NumPy only, does not accept a device that does not exist.
    if text not in DEVICE_CHOICES:
        raise argparse.ArgumentTypeError(
            f"{quote(text)} is not a device: give one of {', '.join(DEVICE_CHOICES)}")
    return text


def _network_flags() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--sizes", type=_sizes, metavar="A,B,...",
                        help="one width per hidden layer, e.g. 64,256,128 (instead of "
                             "--width and --depth)")
    common.add_argument("--width", type=_whole,
                        help=f"units in each hidden layer (default: {DEFAULT_WIDTH})")
    common.add_argument("--depth", type=_whole,
                        help=f"number of hidden layers (default: {DEFAULT_DEPTH})")
    common.add_argument("--input-dim", type=_whole, default=64,
                        help="size of the input to layer 1; the probe feeds it N(0, 1) values")
    common.add_argument("--activation", default="relu",
                        help="the function after each layer: " + ", ".join(ACTIVATIONS))
    common.add_argument("--scheme", default="kaiming_normal",
                        help="how the weights are drawn: " + ", ".join(SCHEMES)
                             + " (the schemes command explains each)")
    common.add_argument("--param", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a parameter of the scheme, e.g. std=0.5 or gain=2 (repeatable)")
    common.add_argument("--bias", default="zeros",
                        help="how the biases are drawn: " + ", ".join(BIAS_SCHEMES))
    common.add_argument("--bias-param", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a parameter of the bias scheme, e.g. std=0.1 (repeatable)")
    common.add_argument("--norm", default="none",
                        help="a normalization layer after each Linear: " + ", ".join(NORMS))
    common.add_argument("--seed", type=_whole, default=0,
                        help="the random seed: the same seed draws the same weights, inputs and "
                             "data, so the same numbers")
    common.add_argument("--device", type=_device, default="auto",
                        help="where to compute: auto (cuda, then mps, then cpu), cpu, cuda or "
                             "mps; one that is not there falls back to cpu")
    common.add_argument("--json", action="store_true",
                        help="print one JSON document instead of text")
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


# --------------------------------------------------------------------------------------------------
# Subcommands


def _cmd_schemes(args: argparse.Namespace) -> None:
    rows = [{"name": s.name, "label": s.label, "params": s.defaults, "formula": s.formula,
             "reference": s.reference} for s in SCHEMES.values()]
    if args.json:
        print_json(rows)
        return
    # One block per scheme: a formula and a paper do not fit side by side in 100 columns.
    for row in rows:
        print(f"{row['name']}: {row['label']}")
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "none"
        for field, value in (("params", params), ("formula", row["formula"]),
                             ("reference", row["reference"])):
            print(textwrap.fill(value, TEXT_WIDTH, initial_indent=f"  {field:<9} ",
                                subsequent_indent=" " * 12, break_long_words=False,
                                break_on_hyphens=False))


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
    say(f"{result.spec.depth} layers, {result.spec.activation}, {result.spec.scheme}; "
          f"batch {result.batch}, seed {result.seed}, device {result.device}, "
          f"{result.seconds:.3f} s")
    if theory["chi1"] is not None:
        depth_scale = theory["depth_scale"]
        say(f"mean field: q* = {_fmt(theory['q_star'])}, chi1 = {theory['chi1']:.4g} "
              f"({theory['phase']}), depth scale = {_fmt(depth_scale)}")
    elif theory["note"]:
        say(f"mean field: not shown ({theory['note']})")
    if result.first_nonfinite_layer is not None:
        say(f"{result.nonfinite_pass} pass: values overflow to inf/NaN at layer "
              f"{result.first_nonfinite_layer}")
    print(format_table(result.layers))
    print()
    say(f"dead_frac: share of units off for all {result.batch} inputs; zero_frac: share of "
        "outputs at zero.")
    say("grad_std: std of dL/dh for the probe loss L = sum of h_last * r, r ~ N(0, 1).")
    say("weight_grad_norm: |dL/dW| / sqrt(batch), the root mean square gradient of one input, "
        "the same at any batch size.")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _add_profile(sub, common) -> None:
    cmd = sub.add_parser("profile", parents=[common], help="per-layer statistics")
    cmd.add_argument("--batch", type=_whole, default=256,
                     help="how many inputs the statistics are measured on")
    cmd.add_argument("--bins", type=_whole, default=60,
                     help="bins of each layer's histograms, as on the page (the output here gives "
                          "their statistics, not the histograms)")
    cmd.set_defaults(run=_cmd_profile)


def _add_schemes(sub, common) -> None:
    cmd = sub.add_parser("schemes", help="every initialization scheme: its parameters, formula "
                                               "and reference (the paper, where there is one)")
    cmd.add_argument("--json", action="store_true", help="print one JSON document instead of text")
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
        say(f"{diagram.activation}: mean field does not apply ({diagram.note}); "
              "pass --sigma-w2 and --sigma-b2 to place a point")
    else:
        say(f"{diagram.activation}, sigma_w2 = {document['sigma_w2']:.4g}, sigma_b2 = "
              f"{document['sigma_b2']:.4g} ({source})")
        say(f"mean field: q* = {_fmt(document['q_star'])}, chi1 = {document['chi1']:.4g} "
              f"({document['phase']}), depth scale = {_fmt(document['depth_scale'])}, "
              f"chaotic depth scale = {_fmt(document['chaotic_depth_scale'])}")
        say(document["reach"])
    grid = diagram.grid
    say(f"phase grid: {args.grid} x {args.grid} over sigma_w2 in [0, "
          f"{grid.sigma_w2.max():.4g}], sigma_b2 in [0, {grid.sigma_b2.max():.4g}] "
          "(every point with --json)")
    line = diagram.critical_line
    if line.empty:
        say("critical line (chi1 = 1): not in this window")
        return
    print("critical line (chi1 = 1):")
    print(format_table(line.iloc[np.linspace(0, len(line) - 1, min(len(line), 11)).round()
                                 .astype(int)]))


def _add_theory(sub, common) -> None:
    cmd = sub.add_parser("theory", parents=[common],
                         help="mean-field fixed point, chi1, depth scale and phase diagram")
    cmd.add_argument("--sigma-w2", type=_number, help="fan_in * Var(W), with --sigma-b2")
    cmd.add_argument("--sigma-b2", type=_number, help="bias variance (with --sigma-w2)")
    cmd.add_argument("--grid", type=_whole, default=50, help="points per axis of the phase grid")
    cmd.set_defaults(run=_cmd_theory)


def _cmd_jacobian(args: argparse.Namespace) -> None:
    from initviz.jacobian import jacobian_spectrum

    width = args.sizes[0] if args.sizes else (DEFAULT_WIDTH if args.width is None else args.width)
    spec = network_spec(args, input_dim=width)
    result = jacobian_spectrum(spec, seed=args.seed, device=args.device)
    emit_notice(result.device_notice)
    document = result.to_json_dict()  # NonFiniteJacobian (exit 2) where the network overflowed
    if args.json:
        print_json(document)
        return
    rows, cols = result.shape
    say(f"Jacobian of layer {spec.depth}'s activation by the input: {rows} x {cols} at one "
        f"N(0, I) input, float64; {spec.activation}, {spec.scheme}; seed {args.seed}, device "
        f"{result.device}, {result.seconds:.3f} s")
    say(result.reading)
    kept = result.nonzero
    if len(kept):
        quantiles = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        say(f"nonzero singular values by quantile ({len(kept)} of {len(kept) + result.zero_count}; "
            f"{result.zero_count} are zero):")
        print(format_table(pd.DataFrame({"quantile": quantiles, "singular_value":
                                         np.quantile(kept, quantiles)})))


def _add_jacobian(sub, common) -> None:
    cmd = sub.add_parser("jacobian", parents=[common],
                         help="singular values of the input-output Jacobian, in float64 (square "
                              "net: the input has the first layer's width; --input-dim is not "
                              "used); exit 2 where the network overflows")
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
        raise UsageError(f"--param {clip(key)}={clip(given[key])}: none of {quote(names)} has a "
                         f"parameter {quote(key)}")
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
    say(f"{len(spec.schemes)} scheme(s) x {spec.seeds} seed(s) from seed {spec.seed} on "
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
    cmd.add_argument("--dataset", default=defaults["dataset"].default,
                     help="the data set to train on: " + ", ".join(DATASETS))
    cmd.add_argument("--optimizer", default=defaults["optimizer"].default,
                     help=", ".join(OPTIMIZERS) + f" (momentum: SGD with momentum {MOMENTUM})")
    cmd.add_argument("--lr", type=_number, default=defaults["lr"].default, help="learning rate")
    cmd.add_argument("--steps", type=_whole, default=defaults["steps"].default,
                     help="optimizer steps of each run")
    cmd.add_argument("--batch", type=_whole, default=defaults["batch"].default,
                     help="training examples per step")
    cmd.add_argument("--seeds", type=_whole, default=defaults["seeds"].default,
                     help="runs per scheme, with init seeds --seed, --seed+1, ...")
    cmd.add_argument("--eval-every", type=_whole,
                     help=f"steps between evaluations (default: {DEFAULT_EVAL_EVERY}, or --steps "
                          "if fewer)")
    cmd.set_defaults(run=_cmd_train)


def _module_factory(text: str) -> Callable[[], object]:
    """``package.module:factory`` imported from the current directory or PYTHONPATH."""
    import importlib
    import os

    module_name, sep, factory_name = text.partition(":")
    if not sep or not module_name or not factory_name:
        raise UsageError(f"--model {text}: expected MODULE:FACTORY, e.g. mypkg.models:build")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--model {text}: cannot import {module_name} ({error})") from None
    except Exception as error:  # the user's module raised while importing
        raise UsageError(f"--model {text}: importing {module_name} raised "
                         f"{type(error).__name__}: {error}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"--model {text}: {module_name} has no callable {factory_name!r}")
    return factory


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers separated by commas (B,D[,...]), got {text!r}")
    return shape


INSPECT_TABLE = {"layer": "layer", "name": "name", "kind": "kind", "fan_in": "fan_in",
                 "fan_out": "fan_out", "weight_std": "w_std", "weight_std_theory": "w_theory",
                 "act_std": "act_std", "grad_std": "grad_std", "dead_frac": "dead"}
NAME_WIDTH = 19
TABLE_WIDTH = 100


def _cmd_inspect(args: argparse.Namespace) -> None:
    import torch

    from initviz.inspection import inspect
    from initviz.layers import init_

    factory = _module_factory(args.model)
    torch.manual_seed(args.seed)  # for a factory that draws torch's default initialization
    try:
        model = factory()
    except Exception as error:
        raise UsageError(f"--model {args.model}: the factory raised {type(error).__name__}: "
                         f"{error}") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {args.model}: the factory returned an object of type "
                         f"{type(model).__name__}, not a torch.nn.Module")
    if args.scheme is not None:
        init_(model, args.scheme, bias=args.bias, bias_params=dict(args.bias_param),
              seed=args.seed, **dict(args.param))
    elif args.param:
        raise UsageError("--param needs --scheme")
    x = torch.randn(*args.input_shape, generator=torch.Generator().manual_seed(args.seed))
    try:
        result = inspect(model, x)
    except InitvizError:
        raise
    except Exception as error:  # the model refused an input of this shape
        raise UsageError(f"the model failed on an input of shape "
                         f"{','.join(map(str, args.input_shape))}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if args.json:
        print_json(result.to_json_dict())
        return
    print(textwrap.fill(
        f"{args.model}, input {'x'.join(map(str, args.input_shape))} ~ N(0, 1), "
        f"{'scheme ' + args.scheme if args.scheme else 'as the factory built it'}; "
        f"loss: {result.loss}", TABLE_WIDTH))
    print(textwrap.fill(result.verdict, TABLE_WIDTH))
    table = result.layers[list(INSPECT_TABLE)].rename(columns=INSPECT_TABLE)
    table["name"] = [name if len(name) <= NAME_WIDTH else "…" + name[-NAME_WIDTH + 1:]
                     for name in table["name"]]
    print(format_table(table))
    for name in result.not_called:
        print(textwrap.fill(f"{name}: its forward never ran (its parent uses its weights "
                            "directly), so it has no row", TABLE_WIDTH))


def _add_inspect(sub, common) -> None:
    cmd = sub.add_parser("inspect", help="per-layer statistics of your own nn.Module")
    cmd.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                     help="FACTORY() in MODULE (from the current directory or PYTHONPATH) "
                          "returns the nn.Module")
    cmd.add_argument("--input-shape", type=_shape, required=True, metavar="B,D[,...]",
                     help="shape of the N(0, 1) input, batch first")
    cmd.add_argument("--scheme", help="apply this scheme first (initviz.init_): "
                                      + ", ".join(SCHEMES))
    cmd.add_argument("--param", type=_key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="a scheme parameter (repeatable)")
    cmd.add_argument("--bias", default="zeros", help=", ".join(BIAS_SCHEMES))
    cmd.add_argument("--bias-param", type=_key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="a bias-scheme parameter (repeatable)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the scheme and the input")
    cmd.add_argument("--json", action="store_true", help="print one JSON document")
    cmd.set_defaults(run=_cmd_inspect)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_schemes, _add_profile, _add_theory, _add_jacobian, _add_train, _add_inspect,
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
    parser = _Parser(prog="python -m initviz", formatter_class=_HelpFormatter,
                     description="See what weight initialization does to a neural network.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_HelpFormatter)
    common = _network_flags()
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


__all__ = ["build_parser", "main", "network_spec"]
