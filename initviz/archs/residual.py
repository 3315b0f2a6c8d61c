"""``residual``: a residual MLP, ``depth`` blocks ``h <- h + a·branch(h)`` on a stream of ``width``
units.

The input enters the stream through a Linear stem (``input_dim -> width``, no activation); each
block's branch is pre-activation, ``[norm] -> φ -> Linear -> [norm] -> φ -> Linear``, and its
Linears take the chosen scheme. ``residual`` chooses how the blocks start:

- ``plain``: ``a = 1``. With ReLU and Kaiming the branch adds as much variance as the stream
  has, so the stream doubles every block.
- ``scaled``: the branch's last Linear's weight × 1/√depth (GPT-2 scales its residual
  projections by 1/√(2·n_layer), two per block; here one): the stream grows by (1 + 1/L)^L ≈ e.
- ``fixup`` (Zhang, Dauphin & Ma 2019, Fixup Initialization: Residual Learning Without
  Normalization): the branch's last Linear zero (weight and bias), the first one's weight ×
  L^(−1/(2m−2)) = depth^(−1/2) for m = 2 layers per branch, the output layer zero; a scalar bias
  (0) before each activation and Linear of the branch (``bias1a``, ``bias1b``, ``bias2a``,
  ``bias2b``) and a scalar multiplier (1) at its end (``scale``). The authors'
  ``fixup_resnet_cifar.py`` places them the same way around its post-activation block (a bias
  before each conv and activation, the multiplier after the second conv) and adds one more bias
  after the multiplier, before the activation that follows the sum; in this pre-activation
  block that activation opens the next branch, behind that branch's first bias.
- ``rezero`` (Bachlechner et al. 2020, ReZero is All You Need): ``a`` a learnable scalar, 0 at
  init (SkipInit, De & Smith 2020, is the same with normalization).

Fixup and ReZero leave the stream unchanged at init. A probe entry is a block: ``act_*`` is the
stream after it, ``preact_*`` what it adds (``a·branch(h)``), ``dead``/``saturated`` are read at
the branch's second activation (its hidden units), the weight is the branch's first Linear;
``branch_to_stream_ratio`` is std(a·branch(h)) / std(h). The model's classes and
:func:`residual_init_` use torch only, so the code export copies them as they are.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

import torch
from torch import nn

from initviz.archs import (Architecture, ExtraColumns, Option, ProbePoint,
                           check_one_width_without_lsuv)
from initviz.errors import check_int
from initviz.meanfield import (layer_sigmas, positively_homogeneous, residual_stream,
                               theory_unavailable_reason)
from initviz.network import Linear, NetworkSpec, init_linear, norm_layer
from initviz.phase import splined_moments

MAX_BLOCKS = 1000
MAX_THEORY_BLOCKS = 10_000
RESIDUAL_INITS = ("plain", "scaled", "fixup", "rezero")


class Bias(nn.Module):
    """A scalar bias, 0 at init (Fixup)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x + self.bias


class Multiplier(nn.Module):
    """A learnable scalar multiplier: Fixup's, 1 at init; ReZero's a, 0 at init."""

    def __init__(self, initial):
        super().__init__()
        self.value = nn.Parameter(torch.full((1,), float(initial)))

    def forward(self, x):
        return x * self.value


class ResidualBlock(nn.Module):
    """``h + gate(branch(h))``, branch ``[norm] -> act -> Linear -> [norm] -> act -> Linear``;
    with ``fixup`` a scalar bias before each activation and Linear and a multiplier at the end;
    ``gate`` is ReZero's multiplier (0 at init) with ``rezero``, else the identity."""

    def __init__(self, width, act, norm=None, fixup=False, rezero=False, linear=nn.Linear):
        super().__init__()
        self.branch = nn.Sequential()
        for i in (1, 2):
            if norm is not None:
                self.branch.add_module(f"norm{i}", norm())
            if fixup:
                self.branch.add_module(f"bias{i}a", Bias())
            self.branch.add_module(f"act{i}", act())
            if fixup:
                self.branch.add_module(f"bias{i}b", Bias())
            self.branch.add_module(f"fc{i}", linear(width, width))
        if fixup:
            self.branch.add_module("scale", Multiplier(1.0))
        self.gate = Multiplier(0.0) if rezero else nn.Identity()

    def forward(self, h):
        return h + self.gate(self.branch(h))


class ResidualMLP(nn.Module):
    """A Linear stem into the stream, ``depth`` blocks made by ``block()``, and an output Linear
    where ``out_features`` is given."""

    def __init__(self, input_dim, width, depth, block, out_features=None, linear=nn.Linear):
        super().__init__()
        self.stem = linear(input_dim, width)
        self.blocks = nn.Sequential(*[block() for _ in range(depth)])
        self.head = None if out_features is None else linear(width, out_features)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return h if self.head is None else self.head(h)


def residual_init_(model, residual):
    """Rescale a :class:`ResidualMLP` whose Linears the scheme has drawn, in place, for the
    ``residual`` init: ``scaled`` multiplies each branch's last weight by 1/√depth; ``fixup``
    zeroes each branch's last Linear and the output layer and multiplies each branch's first
    weight by depth^(−1/2); ``plain`` and ``rezero`` keep the scheme's weights."""
    depth = len(model.blocks)
    with torch.no_grad():
        for block in model.blocks:
            if residual == "scaled":
                block.branch.fc2.weight.mul_(depth ** -0.5)
            elif residual == "fixup":
                block.branch.fc1.weight.mul_(depth ** -0.5)
                block.branch.fc2.weight.zero_()
                block.branch.fc2.bias.zero_()
        if residual == "fixup" and model.head is not None:
            model.head.weight.zero_()
            model.head.bias.zero_()


class _InputStd(ExtraColumns):
    """The std of the stream entering each block, for ``branch_to_stream_ratio``."""

    def __init__(self, model: ResidualMLP):
        super().__init__()
        stds = self.values.setdefault("stream_in_std", [])
        self.handles = [block.register_forward_pre_hook(
            lambda module, inputs: stds.append(inputs[0].detach().float().std(correction=0)))
            for block in model.blocks]


class Residual(Architecture):
    name = "residual"
    label = "residual MLP"
    max_depth = MAX_BLOCKS
    options = {"residual": Option(RESIDUAL_INITS[0], RESIDUAL_INITS,
                                  meaning="the residual init (plain: a = 1; scaled: the branch's "
                                          "last Linear x 1/sqrt(depth); fixup; rezero: a = 0)")}
    entry = "block"
    output = "residual stream"
    charts = {"branch_to_stream_ratio": (
        "std(a·branch(h)) / std(h) (log)", True,
        "What each block adds against the stream it adds to")}
    summary_note = ("the residual stream has no fixed point to settle at: stream_var_theory "
                    "gives its variance block by block")

    def check(self, spec: NetworkSpec) -> None:
        check_one_width_without_lsuv(spec, "every block: the residual stream keeps its width")

    def fans(self, spec: NetworkSpec) -> list[tuple[int, int]]:
        return [(spec.sizes[0], spec.sizes[0])] * spec.depth

    def weight_std_factor(self, spec: NetworkSpec) -> float:
        return spec.depth ** -0.5 if spec.option("residual") == "fixup" else 1.0

    def parameter_count(self, spec: NetworkSpec, out_features: int | None) -> int:
        width = spec.sizes[0]
        scalars = {"fixup": 5, "rezero": 1}.get(spec.option("residual"), 0)
        per_block = 2 * (width * width + width) + scalars
        head = width * out_features + out_features if out_features else 0
        return spec.input_dim * width + width + spec.depth * per_block + head

    def units(self, spec: NetworkSpec) -> int:
        # Per block autograd keeps the two activations' outputs (the Linears' inputs) and the
        # stream; each norm layer keeps its input as well (two more).
        per_block = 3 + (2 if spec.norm != "none" else 0)
        return spec.sizes[0] * (1 + per_block * spec.depth)

    def build(self, spec: NetworkSpec, generator: torch.Generator, *,
              out_features: int | None, calibration: torch.Tensor | None) -> ResidualMLP:
        """A :class:`ResidualMLP` whose Linears are drawn in module order (stem, each block's
        fc1 and fc2, the head; weight then bias), then rescaled by :func:`residual_init_`."""
        width, residual = spec.sizes[0], spec.option("residual")
        norm = None if spec.norm == "none" else partial(norm_layer, spec.norm, width)
        block = partial(ResidualBlock, width, spec.resolved_activation.module, norm=norm,
                        fixup=residual == "fixup", rezero=residual == "rezero", linear=Linear)
        model = ResidualMLP(spec.input_dim, width, spec.depth, block, out_features, Linear)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                init_linear(module, spec, generator)
        residual_init_(model, residual)
        return model

    def probe_points(self, model: ResidualMLP, spec: NetworkSpec) -> list[ProbePoint]:
        return [ProbePoint(output=block, preact=block.gate, preact_input=False,
                           region=block.branch.act2, weight=block.branch.fc1)
                for block in model.blocks]

    def chain(self, model: ResidualMLP) -> nn.Sequential:
        """The stem, then the blocks (stage l + 1 is block l)."""
        return nn.Sequential(model.stem, *model.blocks,
                             *([] if model.head is None else [model.head]))

    def extra_columns(self, model: ResidualMLP, spec: NetworkSpec) -> ExtraColumns:
        return _InputStd(model)

    def table_columns(self, columns: dict, extra: dict, prediction) -> dict:
        """``branch_to_stream_ratio`` (measured) and ``stream_var_theory`` (the recursion)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = columns["preact_std"] / extra["stream_in_std"]
        depth = len(ratio)
        return {"branch_to_stream_ratio": ratio,
                "stream_var_theory": (prediction.act_var if prediction else [None] * depth)}

    def advice(self, profile, kind: str) -> str | None:
        spec = profile.spec
        residual, stds = spec.option("residual"), profile.layers["act_std"].to_numpy()
        if residual == "plain" and kind == "exploding" and spec.depth > 1 and stds[0] > 0:
            growth = (stds[-1] / stds[0]) ** (2 / (spec.depth - 1))
            return (f"Each plain block adds its branch's variance to the stream, so the stream's "
                    f"variance grows by a factor of {growth:.3g} per block here (measured, block "
                    f"1 to {spec.depth}). Shrink what the branches add: residual scaled (the "
                    f"branch's last Linear × 1/√depth, as GPT-2 does), or start them at zero: "
                    f"fixup (Zhang et al. 2019) or rezero (Bachlechner et al. 2020).")
        if residual in ("fixup", "rezero") and kind == "healthy":
            return (f"With {residual} every branch adds exactly zero at initialization, so each "
                    f"block passes the stream on unchanged and the {spec.depth} blocks start as "
                    f"one identity map; training then grows the branches.")
        return None

    def predict(self, spec, input_second_moment, output_grad_var):
        return theory_line(spec, spec.depth, input_second_moment, output_grad_var)

    def code(self, spec: NetworkSpec, seed: int) -> list[str]:
        # codegen imports the probe, which imports this package: imported when first used.
        from initviz.codegen import init_fn_code, model_comments, norm_code, source_of

        width, residual = spec.sizes[0], spec.option("residual")
        norm = norm_code(spec, "width").removesuffix(", ")
        act = f"nn.{spec.resolved_activation.module.__name__}"
        return [
            *model_comments(spec, f"a residual MLP of {spec.depth} blocks h <- h + "
                            f"a*branch(h), {residual} residual init"),
            *source_of(Bias, Multiplier, ResidualBlock, ResidualMLP, residual_init_),
            f"input_dim, width, depth = {spec.input_dim}, {width}, {spec.depth}",
            "model = ResidualMLP(input_dim, width, depth, lambda: ResidualBlock(",
            f"    width, {act}, norm={f'lambda: {norm}' if norm else None}, "
            f"fixup={residual == 'fixup'}, rezero={residual == 'rezero'}))",
            "",
            *init_fn_code(spec, seed),
            f"residual_init_(model, {residual!r})",
        ]

    def measure_code(self) -> list[str]:
        return [
            "    h = model.stem(x)",
            "    for number, block in enumerate(model.blocks, start=1):",
            "        h = block(h)",
            "        print(f\"block {number}: stream std {h.std(correction=0).item():.4g}\")",
        ]


def theory_line(spec: NetworkSpec, depth: int, input_second_moment: float = 1.0,
                output_grad_var: float = 1.0):
    """The mean-field recursion of ``spec``'s residual stream over ``depth`` blocks (up to
    :data:`MAX_THEORY_BLOCKS`, beyond what a probe can measure), with its stem, branch σ's and
    residual init; ``scaled`` and ``fixup`` scale by this ``depth``.

    Args:
        spec: a residual network (its own depth is not used).
        depth: blocks, in [1, :data:`MAX_THEORY_BLOCKS`].
        input_second_moment: ``E[x²]`` of the input.
        output_grad_var: ``Var(dL/dh)`` at the last block's output.

    Returns:
        a :class:`initviz.meanfield.Prediction` (see :func:`initviz.meanfield.residual_stream`),
        or None where mean-field theory does not apply (a norm layer, weights of nonzero mean).
    """
    depth = check_int("depth", depth, 1, MAX_THEORY_BLOCKS)
    if theory_unavailable_reason(spec) is not None:
        return None
    stem = replace(spec, arch="mlp", arch_params=(), sizes=spec.sizes[:1])
    (stem_w2, stem_b2), = layer_sigmas(stem)
    (sw2, sb2) = layer_sigmas(spec)[0]
    residual = spec.option("residual")
    first = (sw2 / depth if residual == "fixup" else sw2, sb2)
    last = {"plain": (sw2, sb2), "rezero": (sw2, sb2), "scaled": (sw2 / depth, sb2),
            "fixup": (0.0, 0.0)}[residual]
    act = spec.resolved_activation
    second, slope = splined_moments(act)
    return residual_stream(second, slope, (first, last), 0.0 if residual == "rezero" else 1.0,
                           stem_w2 * input_second_moment + stem_b2, depth, output_grad_var,
                           positively_homogeneous(act))


__all__ = ["Bias", "MAX_BLOCKS", "MAX_THEORY_BLOCKS", "Multiplier", "RESIDUAL_INITS", "Residual",
           "ResidualBlock", "ResidualMLP", "residual_init_", "theory_line"]
