"""The subcommands about one network spec: ``schemes``, ``profile``, ``theory``, ``jacobian``."""

from __future__ import annotations

import argparse
import textwrap

import numpy as np
import pandas as pd

from initviz.cli_common import (DEFAULT_WIDTH, TEXT_WIDTH, UsageError, emit_notice, format_number,
                                format_table, network_spec, parse_number, parse_whole,
                                print_json, say)
from initviz.schemes import SCHEMES


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
                     bins=args.bins, input_mean=args.input_mean, input_std=args.input_std)
    emit_notice(result.device_notice)
    document = result.to_json_dict()
    if args.json:
        print_json(document)
        return
    theory = document["theory"]
    architecture = result.spec.architecture
    # A plain stack is all its layers say; any other names itself and its options.
    shape = (f"{result.spec.depth} layers" if not result.spec.arch_params else
             f"{architecture.label}, {result.spec.depth} {architecture.entry}s, "
             + ", ".join(f"{k} {v}" for k, v in result.spec.arch_params))
    say(f"{shape}, {result.spec.activation}, {result.spec.scheme}; "
          f"batch {result.batch} of N({result.input_mean:g}, {result.input_std:g}^2) inputs, "
          f"seed {result.seed}, device {result.device}, {result.seconds:.3f} s")
    if theory["chi1"] is not None:
        depth_scale = theory["depth_scale"]
        say(f"mean field: q* = {format_number(theory['q_star'])}, chi1 = {theory['chi1']:.4g} "
              f"({theory['phase']}), depth scale = {format_number(depth_scale)}")
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


def add_profile(sub, common) -> None:
    cmd = sub.add_parser("profile", parents=[common], help="per-layer statistics")
    cmd.add_argument("--batch", type=parse_whole, default=256,
                     help="how many inputs the statistics are measured on")
    cmd.add_argument("--bins", type=parse_whole, default=60,
                     help="bins of each layer's histograms, as on the page (the output here gives "
                          "their statistics, not the histograms)")
    cmd.add_argument("--input-mean", type=parse_number, default=0.0, metavar="F",
                     help="mean of every input number (default 0)")
    cmd.add_argument("--input-std", type=parse_number, default=1.0, metavar="F",
                     help="std of every input number (default 1); the mean-field prediction "
                          "starts from E[x^2] = mean^2 + std^2")
    cmd.set_defaults(run=_cmd_profile)


def add_schemes(sub, common) -> None:
    cmd = sub.add_parser("schemes", help="every initialization scheme: its parameters, formula "
                                               "and reference (the paper, where there is one)")
    cmd.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    cmd.set_defaults(run=_cmd_schemes)


def _cmd_theory(args: argparse.Namespace) -> None:
    from initviz.meanfield import predict
    from initviz.phase import phase_diagram

    given = (args.sigma_w2, args.sigma_b2)
    if (given[0] is None) != (given[1] is None):
        raise UsageError("give both --sigma-w2 and --sigma-b2, or neither")
    spec = network_spec(args)
    if not spec.architecture.fixed_point:
        entry = spec.architecture.entry
        where = (f"profile --arch {spec.arch} gives its theory {entry} by {entry}"
                 if predict(spec) is not None else spec.architecture.summary_note)
        raise UsageError(f"theory draws the phase diagram of a plain stack's fixed point, which "
                         f"this {spec.architecture.label} does not settle at; {where}")
    diagram = phase_diagram(spec, n=args.grid,
                            sigma=None if given[0] is None else given)
    document = diagram.to_json_dict()
    if args.json:
        print_json(document)
        return
    entry = spec.architecture.entry
    source = ("from --sigma-w2/--sigma-b2" if given[0] is not None
              else f"from {args.scheme} / {args.bias}, last "
                   f"{'hidden layer' if entry == 'layer' else entry}")
    if diagram.summary is None:
        say(f"{diagram.activation}: mean field does not apply ({diagram.note}); "
              "pass --sigma-w2 and --sigma-b2 to place a point")
    else:
        say(f"{diagram.activation}, sigma_w2 = {document['sigma_w2']:.4g}, sigma_b2 = "
              f"{document['sigma_b2']:.4g} ({source})")
        q_star = ("none (q grows without bound)" if document["q_star"] is None
                  else format_number(document["q_star"]))
        say(f"mean field: q* = {q_star}, chi1 = {document['chi1']:.4g} "
              f"({document['phase']}), depth scale = {format_number(document['depth_scale'])}, "
              f"chaotic depth scale = {format_number(document['chaotic_depth_scale'])}")
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


def add_theory(sub, common) -> None:
    cmd = sub.add_parser("theory", parents=[common],
                         help="mean-field fixed point, chi1, depth scale and phase diagram")
    cmd.add_argument("--sigma-w2", type=parse_number, help="fan_in * Var(W), with --sigma-b2")
    cmd.add_argument("--sigma-b2", type=parse_number, help="bias variance (with --sigma-w2)")
    cmd.add_argument("--grid", type=parse_whole, default=50,
                     help="points per axis of the phase grid")
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
    architecture = spec.architecture
    wrt = architecture.jacobian_input
    say(f"Jacobian of {architecture.entry} {spec.depth}'s {architecture.output} by the {wrt}: "
        f"{rows} x {cols} at one N(0, I) {wrt}, float64; {spec.activation}, {spec.scheme}; "
        f"seed {args.seed}, device {result.device}, {result.seconds:.3f} s")
    say(result.reading)
    kept = result.nonzero
    if len(kept):
        quantiles = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        say(f"nonzero singular values by quantile ({len(kept)} of {len(kept) + result.zero_count}; "
            f"{result.zero_count} are zero):")
        print(format_table(pd.DataFrame({"quantile": quantiles, "singular_value":
                                         np.quantile(kept, quantiles)})))


def add_jacobian(sub, common) -> None:
    cmd = sub.add_parser("jacobian", parents=[common],
                         help="singular values of the input-output Jacobian, in float64 (square "
                              "net: the input has the first layer's width; --input-dim is not "
                              "used); exit 2 where the network overflows")
    cmd.set_defaults(run=_cmd_jacobian)


__all__ = ["add_jacobian", "add_profile", "add_schemes", "add_theory"]
