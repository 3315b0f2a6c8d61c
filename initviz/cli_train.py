"""The ``train`` subcommand: several schemes side by side on the same data."""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from initviz.cli_common import (DEFAULT_EVAL_EVERY, UsageError, emit_notice, format_table,
                                network_spec, parse_number, parse_whole, print_json, say)
from initviz.errors import clip, quote
from initviz.schemes import get_scheme
from initviz.variants import parse_entry, split_entries


def _train_schemes(args: argparse.Namespace) -> list[tuple[str, dict[str, str], str]]:
    """``--schemes`` (default: ``--scheme``): entries ``SCHEME`` or ``SCHEME(KEY=VALUE,...)``,
    each also with the ``--param`` values its scheme has and it does not set itself, and
    labelled as written."""
    entries = [args.scheme] if args.schemes is None else split_entries(args.schemes)
    given = dict(args.param)
    schemes = []
    for entry in entries:
        name, params = parse_entry(entry)
        defaults = get_scheme(name).defaults
        schemes.append((name, {key: value for key, value in given.items()
                               if key in defaults} | params, "".join(entry.split())))
    unused = sorted(set(given) - {key for _, params, _ in schemes for key in params})
    if unused:
        key = unused[0]
        names = [name for name, _, _ in schemes]
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
    data = _csv(args)
    # The scheme and input size of the network come from --schemes and the data set.
    input_dim = dataset_info(args.dataset).input_dim if data is None else data.x.shape[1]
    network = network_spec(args, input_dim=input_dim, scheme=schemes[0][0], scheme_params=())
    spec = TrainSpec(
        network, schemes=tuple(schemes), seeds=args.seeds, seed=args.seed, dataset=args.dataset,
        data=data,
        optimizer=args.optimizer, lr=args.lr, steps=args.steps, batch=args.batch,
        eval_every=(min(DEFAULT_EVAL_EVERY, args.steps) if args.eval_every is None
                    else args.eval_every),
        device=args.device, input_scale=args.input_scale, dropout=args.dropout,
        output_init=args.output_init, output_scale=args.output_scale)
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
    data = spec.data_info
    net = spec.network
    say(f"{len(spec.schemes)} scheme(s) x {spec.seeds} seed(s) from seed {spec.seed} on "
          f"{data.name} ({data.input_dim} inputs, {data.n_classes} classes); {net.depth} hidden "
          f"layers of {_sizes_text(net.sizes)}, {net.activation}, norm {net.norm}; "
          f"{spec.optimizer} lr {spec.lr:g}, {spec.steps} steps of batch {spec.batch}; "
          f"inputs {spec.input_scale}, dropout {spec.dropout:g}, output layer "
          f"{_output_text(spec)}; device {result.device}, {result.seconds:.2f} s")
    say(f"initial_loss: the validation loss at step 0; guessing evenly among the "
        f"{data.n_classes} classes gives ln {data.n_classes} = {math.log(data.n_classes):.3f}")
    rows = [{"scheme": run.label, "seed": run.seed,
             "initial_loss": run.history[0].val_loss, "step": run.final.step,
             "train_loss": run.final.train_loss, "val_loss": run.final.val_loss,
             "val_acc": run.final.val_acc,
             "diverged_at": "-" if run.final.diverged_at is None else run.final.diverged_at}
            for run in result.runs]
    print(format_table(pd.DataFrame(rows)))


def _csv(args: argparse.Namespace):
    """``--data FILE.csv`` read and checked (:func:`initviz.csvdata.read_csv`), or None."""
    from initviz.csvdata import MAX_CSV_BYTES, read_csv
    if args.data is None:
        if args.label is not None:
            raise UsageError("--label: give it with --data FILE.csv")
        return None
    try:
        with open(args.data, "rb") as file:
            raw = file.read(MAX_CSV_BYTES + 1)  # one byte more tells "too large" apart
    except OSError as error:
        raise UsageError(f"--data {clip(args.data)}: {error.strerror}") from None
    return read_csv(raw, args.label)


def _output_text(spec) -> str:
    if spec.output_init == "scaled":
        return f"scaled x {spec.output_scale:g}"
    return spec.output_init


def _sizes_text(sizes: tuple[int, ...]) -> str:
    return f"width {sizes[0]}" if len(set(sizes)) == 1 else "widths " + ",".join(map(str, sizes))


def add_train(sub, common) -> None:
    from initviz.datasets import DATASETS, INPUT_SCALES
    from initviz.training import MAX_DROPOUT, MOMENTUM, OPTIMIZERS, OUTPUT_INITS, TrainSpec

    defaults = TrainSpec.__dataclass_fields__
    cmd = sub.add_parser("train", parents=[common],
                         help="train several schemes side by side on the same data (--input-dim "
                              "is not used: the data set gives it)")
    cmd.add_argument("--schemes", metavar="A,B(KEY=VALUE),...",
                     help="the schemes to compare (default: --scheme), each a name or a variant "
                          "with its own parameters, e.g. 'zeros,uniform(a=0,b=1),"
                          "uniform(a=-0.5,b=0.5)'; a KEY may also be an option of the "
                          "architecture (kaiming_normal(residual=fixup)); --param applies to "
                          "each that has the parameter and does not set it")
    cmd.add_argument("--dataset", default=defaults["dataset"].default,
                     help="the data set to train on: " + ", ".join(DATASETS))
    cmd.add_argument("--optimizer", default=defaults["optimizer"].default,
                     help=", ".join(OPTIMIZERS) + f" (momentum: SGD with momentum {MOMENTUM})")
    cmd.add_argument("--lr", type=parse_number, default=defaults["lr"].default,
                     help="learning rate")
    cmd.add_argument("--steps", type=parse_whole, default=defaults["steps"].default,
                     help="optimizer steps of each run")
    cmd.add_argument("--batch", type=parse_whole, default=defaults["batch"].default,
                     help="training examples per step")
    cmd.add_argument("--seeds", type=parse_whole, default=defaults["seeds"].default,
                     help="runs per scheme, with init seeds --seed, --seed+1, ...")
    cmd.add_argument("--eval-every", type=parse_whole,
                     help=f"steps between evaluations (default: {DEFAULT_EVAL_EVERY}, or --steps "
                          "if fewer)")
    cmd.add_argument("--data", metavar="FILE.csv",
                     help="train on your own CSV instead of --dataset: a header row, numeric "
                          "feature columns and one label column (at most 1 MB, 20,000 rows, "
                          "256 features)")
    cmd.add_argument("--label", metavar="COLUMN",
                     help="the label column of --data (default: the last column)")
    cmd.add_argument("--input-scale", default=defaults["input_scale"].default,
                     choices=INPUT_SCALES,
                     help="standardized: each feature to mean 0, std 1 on the training split; "
                          "unit: raw values in [0, 1] (digits: pixels / 16; a 2-D set: min-max "
                          "on the training split)")
    cmd.add_argument("--dropout", type=parse_number, default=defaults["dropout"].default,
                     metavar="RATE",
                     help=f"share of each hidden layer's outputs dropped at every training step, "
                          f"0 to {MAX_DROPOUT:g} (not at validation)")
    cmd.add_argument("--output-init", default=defaults["output_init"].default,
                     choices=OUTPUT_INITS,
                     help="the output layer: same (the run's scheme), zeros, or scaled (the "
                          "run's scheme x --output-scale)")
    cmd.add_argument("--output-scale", type=parse_number, default=0.01, metavar="F",
                     help="the factor of --output-init scaled (default 0.01)")
    cmd.set_defaults(run=_cmd_train)


__all__ = ["add_train"]
