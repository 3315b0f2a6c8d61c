"""``conv``: a stack of ``depth`` same-size convolutions, ``Conv2d -> [norm] -> activation``.

Layer ``l`` is ``Conv2d(c_{l-1}, c_l, kernel, stride 1, padding kernel // 2)`` on
``image_size × image_size`` feature maps, ``c_0 = input_dim`` (the input's channels) and
``c_l = width`` (``sizes`` gives each layer its own). ``padding`` is ``zeros`` (PyTorch's default)
or ``circular`` (the image wraps around, a torus). A training model averages the last feature
map over its positions (global average pooling) and ends in an output Linear.

A conv weight has shape ``(c_out, c_in, k, k)``; ``torch.nn.init`` takes its fans as
``fan_in = c_in·k²`` and ``fan_out = c_out·k²`` (``mode='fan_out'`` uses the latter), and every
scheme draws through it. ``pytorch_default`` with a ``pytorch_default`` bias is exactly what
``nn.Conv2d.reset_parameters`` does. ``norm`` is ``nn.BatchNorm2d`` (per channel, over the batch
and the positions) or ``nn.LayerNorm`` over a whole feature map (channels and positions).

A probe entry is a conv layer; its statistics are taken over the batch, the channels and the
positions of the feature maps, and a unit of ``dead_frac`` and ``zero_frac`` is one channel at one
position. Mean-field theory is the plain stack's with ``fan_in = c·k²``:
each output sums ``c·k²`` products of independent weights and inputs. With circular padding every
position sees ``k²`` input positions, so the plain stack's recursion holds exactly (in
expectation). With zero padding a border position sees fewer (the padding's zeros): its variance
falls below the interior's, and since that loss reaches one ring further in with every layer the
whole map drifts below the plain stack's prediction. The prediction here follows the variance
position by position (:func:`spatial_field`) and reports the map's average, and
``border_to_interior_std`` (measured) against ``border_to_interior_std_theory`` shows the
border's loss. A scheme that puts weight only on the centre tap (``delta_orthogonal``,
``dirac``) never reads the padding, so neither effect exists there.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cache, lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import interpolate
from torch import nn

from initviz.activations import Activation
from initviz.archs import Architecture, ExtraColumns, Option, ProbePoint
from initviz.errors import InvalidSpec
from initviz.meanfield import (HUGE_Q, TINY_Q, Prediction, first_moment, layer_sigmas,
                               predict_stack)
from initviz.network import LSUV_CALIBRATION_BATCH, Linear, NetworkSpec
from initviz.phase import _moment_table
from initviz.scheme_types import WeightLaw
from initviz.schemes import lsuv_rescale

PADDINGS = ("zeros", "circular")
MAX_KERNEL = 15
MAX_IMAGE_SIZE = 32
IMAGE_DATASETS = {"digits": (1, 8)}
"""The data sets a conv stack reads as images: ``(channels, side)`` of each."""
CENTRE_ONLY = ("delta_orthogonal", "dirac")
"""Schemes whose weights are zero except at the kernel's centre tap."""


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` built without an initialization, for the spec's schemes to draw one (see
    :class:`initviz.network.Linear`, the same for ``nn.Linear``)."""

    def reset_parameters(self) -> None:
        pass


class ConvStack(nn.Module):
    """``layers``: an ``nn.Sequential`` of blocks ``conv -> [norm] -> act``; then, where
    ``head`` is given, the average over positions and ``head``."""

    def __init__(self, layers: nn.Sequential, head: nn.Linear | None = None):
        super().__init__()
        self.layers = layers
        self.head = head

    def forward(self, x):
        h = self.layers(x)
        return h if self.head is None else self.head(h.mean(dim=(-2, -1)))


class GlobalAveragePool(nn.Module):
    """The mean of each channel over the positions: ``(..., c, n, n) -> (..., c)``."""

    def forward(self, x):
        return x.mean(dim=(-2, -1))


def conv_norm(kind: str, channels: int, side: int) -> nn.Module | None:
    """``batchnorm``: ``nn.BatchNorm2d``; ``layernorm``: ``nn.LayerNorm`` over the whole map."""
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.LayerNorm((channels, side, side))
    return None


def init_conv(layer: nn.Module, spec: NetworkSpec, generator: torch.Generator,
              weight: torch.Tensor | None = None) -> None:
    """The spec's weight and bias schemes on one layer (a Conv2d, or the head as the 1×1
    convolution ``weight``, a view of its weight), with torch's fans of that weight."""
    weight = layer.weight if weight is None else weight
    fans = nn.init._calculate_fan_in_and_fan_out(weight)
    spec.resolved_scheme.apply(weight, spec.scheme_params, generator, fans)
    spec.resolved_bias.apply(layer.bias, spec.bias_params, generator, fans)


# --------------------------------------------------------------------------------------------------
# Mean-field theory, position by position


def _ring(side: int) -> torch.Tensor:
    """The outermost ring of a ``side × side`` map, as a boolean mask."""
    mask = torch.ones(side, side, dtype=torch.bool)
    mask[1:-1, 1:-1] = False
    return mask


def _spread(m: torch.Tensor, kernel: int, padding: str, centre_only: bool) -> torch.Tensor:
    """The mean of ``m`` (n, n) over each position's ``kernel × kernel`` window, the padding's
    positions counting as 0 (zeros) or wrapping around (circular); ``m`` itself for a centre-only
    scheme."""
    if centre_only or kernel == 1:
        return m
    c = kernel // 2
    padded = F.pad(m[None, None], (c, c, c, c), mode="circular" if padding == "circular"
                   else "constant")
    return F.avg_pool2d(padded, kernel, stride=1)[0, 0]


@dataclass(frozen=True)
class ConvPrediction(Prediction):
    """A :class:`~initviz.meanfield.Prediction` of a conv stack, with ``border_to_interior``:
    per layer, the predicted std of the pre-activations on the border ring over the std inside it
    (NaN where the map has no inside)."""

    border_to_interior: tuple[float, ...] = ()


def spatial_field(act: Activation, sigmas: tuple[tuple[float, float], ...],
                  widening: tuple[float, ...], side: int, kernel: int, padding: str,
                  centre_only: bool = False, input_second_moment: float = 1.0,
                  output_grad_var: float = 1.0) -> ConvPrediction:
    r"""The mean-field variance of a conv stack's pre-activations and gradients, position by
    position.

    A pre-activation at position ``p`` sums ``c·k²`` products ``W·φ(h)`` over the input channels
    and the window's taps ``t``; in the wide limit (many channels) it is Gaussian with variance::

        q^l(p) = σ_w²·(1/k²)·Σ_t E[φ(√q^{l−1}(p+t) z)²] + σ_b²,   σ_w² = c·k²·Var(W),

    a tap past the border contributing 0 with zero padding and wrapping around with circular
    padding (where every ``q^l(p)`` equals the plain stack's ``q^l``). Backward,
    ``Var(dL/dh^{l−1}(p)) = σ_w²·(c_out/c_in)·(1/k²)·Σ_t E[φ'²](q^l(p+t))·Var(dL/dh^l(p+t))``
    over the windows that contain ``p``. With weight only on the centre tap there is no sum:
    every position follows the plain stack.

    Args:
        act: the activation.
        sigmas: ``(σ_w², σ_b²)`` of every layer.
        widening: ``c_l / c_{l−1}`` of layers 2, 3, ...
        side, kernel, padding: the maps' side, the kernel's, and ``zeros`` or ``circular``.
        centre_only: the weights are zero except at the centre tap.
        input_second_moment: ``E[x²]`` at every position of the input.
        output_grad_var: ``Var(dL/dh)`` at every position of the last layer's output.

    Returns:
        a :class:`ConvPrediction` whose ``preact_var``, ``act_var`` and ``grad_var`` are each
        layer's averages over the positions (what the probe measures over the whole map) and
        ``summary`` None.
    """
    return _spatial_field(act, tuple(sigmas), tuple(widening), side, kernel, padding,
                          centre_only, input_second_moment, output_grad_var)


@cache
def _moment_splines(act: Activation):
    """``ln q ↦ E[φ(√q z)²]``, ``E[φ(√q z)]`` and ``E[φ'(√q z)²]`` as cubic splines on the phase
    diagram's table of ``ln q`` (relative error about 2e-7): a map of positions costs the
    quadrature about a millisecond per position and layer."""
    table = _moment_table(act)
    first = first_moment(act, torch.as_tensor(np.exp(table.log_q))).numpy()
    return table.second_spline, interpolate.CubicSpline(table.log_q, first), table.slope_spline


@lru_cache(maxsize=64)
def _spatial_field(act, sigmas, widening, side, kernel, padding, centre_only,
                   input_second_moment, output_grad_var) -> ConvPrediction:
    second, first, slope = _moment_splines(act)

    def spread(m: np.ndarray) -> np.ndarray:
        return _spread(torch.from_numpy(m), kernel, padding, centre_only).numpy()

    def at(spline, q: np.ndarray) -> np.ndarray:
        # q beyond the table has diverged: its moments are not finite
        inside = np.isfinite(q) & (q <= HUGE_Q)
        return np.where(inside, spline(np.log(np.clip(q, TINY_Q, HUGE_Q))), np.nan)

    ring = _ring(side).numpy()
    qs, act_var, ratio = [], [], []
    carried = np.full((side, side), float(input_second_moment))
    for sw2, sb2 in sigmas:
        q = sw2 * spread(carried) + sb2
        qs.append(q)
        carried = at(second, q)
        act_var.append(float(carried.mean() - at(first, q).mean() ** 2))
        ratio.append(float(np.sqrt(q[ring].mean() / q[~ring].mean())) if (~ring).any()
                     else math.nan)
    grads = [np.full((side, side), float(output_grad_var))]
    for (sw2, _), ratio_l, q in zip(sigmas[:0:-1], widening[::-1], qs[:0:-1]):
        grads.append(sw2 * ratio_l * spread(at(slope, q) * grads[-1]))
    grads.reverse()
    return ConvPrediction(tuple(float(q.mean()) for q in qs), tuple(act_var),
                          tuple(float(g.mean()) for g in grads), None, tuple(ratio))


class _BorderStd(ExtraColumns):
    """Per layer, the std of the pre-activations on the border ring over the std inside it."""

    def __init__(self, model: ConvStack, side: int):
        super().__init__()
        ratios = self.values.setdefault("border_to_interior_std", [])
        ring = _ring(side)

        def measure(module, inputs):
            z = inputs[0].detach().float()
            mask = ring.to(z.device)
            ratios.append(z[..., mask].std(correction=0) / z[..., ~mask].std(correction=0))

        self.handles = [block.act.register_forward_pre_hook(measure) for block in model.layers]


# --------------------------------------------------------------------------------------------------
# The architecture


class Conv(Architecture):
    name = "conv"
    label = "convolutional stack"
    max_depth = 500
    options = {
        "kernel": Option(3, bounds=(1, MAX_KERNEL),
                         meaning="the side of each square kernel (odd: a same-size convolution "
                                 "pads kernel // 2 on each side)"),
        "padding": Option(PADDINGS[0], PADDINGS,
                          meaning="what a kernel reads past the border (zeros: PyTorch's "
                                  "default; circular: the image wraps around)"),
        "image_size": Option(8, bounds=(1, MAX_IMAGE_SIZE),
                             meaning="the side of the square input images and feature maps"),
    }
    entry = "layer"
    output = "feature map"
    page_values = {"width": 32, "depth": 10}  # 97 MiB at the page's batch of 256
    fixed_point = True
    code_input = "sizes[0], image_size, image_size"

    def check(self, spec: NetworkSpec) -> None:
        kernel, side = spec.option("kernel"), spec.option("image_size")
        if kernel % 2 == 0:
            raise InvalidSpec("kernel", kernel, "an odd whole number: a same-size convolution "
                              "pads kernel // 2 on each side, which centres only an odd kernel")
        if kernel > 2 * side - 1:
            raise InvalidSpec("kernel", kernel, f"at most {2 * side - 1} for image_size {side}: "
                              "a wider kernel reaches past the whole image into the padding")

    def theory_note(self, spec: NetworkSpec) -> str | None:
        if self._spatial(spec):
            return ("with zero padding the border pixels see fewer inputs, so the feature maps "
                    "settle at no single fixed point: preact_var_theory follows the variance "
                    "position by position and averages it over the map "
                    "(border_to_interior_std_theory shows the border's loss)")
        return None

    def _spatial(self, spec: NetworkSpec) -> bool:
        """Whether the padding's zeros change the variance (zero padding, a kernel wider than 1,
        weights off the centre tap)."""
        return (spec.option("padding") == "zeros" and spec.option("kernel") > 1
                and spec.scheme not in CENTRE_ONLY)

    def advice(self, profile, kind: str) -> str | None:
        """Where zero padding drains a vanishing stack: the border's loss, by the numbers."""
        spec, prediction = profile.spec, profile.prediction
        if kind != "vanishing" or not self._spatial(spec) or prediction is None:
            return None
        honest, plain = prediction.preact_var[-1], predict_stack(spec).preact_var[-1]
        measured = float(profile.layers["preact_std"].iloc[-1]) ** 2
        return (f"With zero padding a border pixel sees fewer inputs, and the loss reaches one "
                f"ring further in with every layer: at layer {spec.depth} the theory puts the "
                f"pre-activation variance at {honest:.3g} (measured {measured:.3g}), "
                f"{honest / plain:.3g} of the {plain:.3g} the same scheme keeps without a "
                f"border. Circular padding, fewer layers, larger images, or a scheme that reads "
                f"only the centre tap (delta_orthogonal, Xiao et al. 2018) keep the signal.")

    def input_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        side = spec.option("image_size")
        return (spec.input_dim, side, side)

    def output_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        side = spec.option("image_size")
        return (spec.sizes[-1], side, side)

    def for_data(self, spec: NetworkSpec, features: int, dataset: str) -> NetworkSpec:
        """Digits as ``1 × 8 × 8`` images; InvalidSpec for a data set that is not images."""
        if dataset not in IMAGE_DATASETS:
            images = ", ".join(f"{name} ({c}×{n}×{n})" for name, (c, n) in IMAGE_DATASETS.items())
            raise InvalidSpec("dataset", dataset, f"an image data set ({images}): a "
                              "convolutional stack reads images, and these points have no "
                              "pixels to convolve")
        channels, side = IMAGE_DATASETS[dataset]
        return replace(spec, input_dim=channels,
                       arch_params=dict(spec.arch_params) | {"image_size": side})

    def fans(self, spec: NetworkSpec) -> list[tuple[int, int]]:
        k2 = spec.option("kernel") ** 2
        ins = (spec.input_dim, *spec.sizes[:-1])
        return [(c_in * k2, c_out * k2) for c_in, c_out in zip(ins, spec.sizes)]

    def weight_laws(self, spec: NetworkSpec) -> list[WeightLaw | None]:
        """The scheme's law at the conv fans, except where the weight's shape decides it:
        ``torch.nn.init.orthogonal_`` flattens a conv weight to ``(c_out, c_in·k²)``, so its
        law's other side is ``c_out``, not ``fan_out = c_out·k²``; ``dirac`` puts a 1 at the
        centre of ``min(c_in, c_out)`` of the ``c_in·c_out`` kernels and 0 everywhere else;
        ``delta_orthogonal`` puts ``gain·Q`` in the centre tap, whose entries are asymptotically
        normal with variance ``gain² / max(c_in, c_out)``, and 0 in the other ``1 − 1/k²`` of the
        entries."""
        scheme, params = spec.resolved_scheme, spec.scheme_params
        k2 = spec.option("kernel") ** 2
        laws = []
        for (fan_in, fan_out), c_out in zip(self.fans(spec), spec.sizes):
            if spec.scheme == "dirac":
                ones = min(fan_in // k2, c_out)
                laws.append(WeightLaw("point", loc=1.0,
                                      zero_fraction=1.0 - ones / (fan_in * c_out)))
            elif spec.scheme == "delta_orthogonal":
                centre = dict(params)["gain"] / math.sqrt(max(fan_in // k2, c_out))
                laws.append(WeightLaw("normal", scale=centre, zero_fraction=1.0 - 1.0 / k2,
                                      approximate=True))
            elif scheme.torch_fn == "orthogonal_" and scheme.own_fn is None:
                laws.append(scheme.weight_law(fan_in, c_out, params))
            else:
                laws.append(scheme.weight_law(fan_in, fan_out, params))
        return laws

    def weight_entries(self, spec: NetworkSpec) -> list[int]:
        return [fan_in * c_out for (fan_in, _), c_out in zip(self.fans(spec), spec.sizes)]

    def parameter_count(self, spec: NetworkSpec, out_features: int | None) -> int:
        k2 = spec.option("kernel") ** 2
        ins = (spec.input_dim, *spec.sizes[:-1])
        convs = sum(c_in * c_out * k2 + c_out for c_in, c_out in zip(ins, spec.sizes))
        norms = {"batchnorm": sum(2 * c for c in spec.sizes),
                 "layernorm": sum(2 * c * spec.option("image_size") ** 2 for c in spec.sizes),
                 "none": 0}[spec.norm]
        head = spec.sizes[-1] * out_features + out_features if out_features else 0
        return convs + norms + head

    def units(self, spec: NetworkSpec) -> int:
        side, c = spec.option("image_size"), spec.option("kernel") // 2
        # Each layer's output map; circular padding keeps a padded copy of each layer's input;
        # the input itself is counted once per channel by estimate_bytes, here the rest of it.
        padded = ((side + 2 * c) ** 2 * sum((spec.input_dim, *spec.sizes[:-1]))
                  if spec.option("padding") == "circular" else 0)
        return side * side * sum(spec.sizes) + padded + spec.input_dim * (side * side - 1)

    def build(self, spec: NetworkSpec, generator: torch.Generator, *,
              out_features: int | None, calibration: torch.Tensor | None) -> ConvStack:
        """A :class:`ConvStack` whose blocks are ``conv``, optionally ``norm``, and ``act``, each
        conv drawn in order (weight, then bias), then the head; LSUV rescales the convs on
        ``calibration`` (default: N(0, 1) images drawn from ``generator`` after the weights)."""
        kernel, padding = spec.option("kernel"), spec.option("padding")
        side = spec.option("image_size")
        blocks = []
        for c_in, c_out in zip((spec.input_dim, *spec.sizes[:-1]), spec.sizes):
            parts = OrderedDict(conv=Conv2d(c_in, c_out, kernel, padding=kernel // 2,
                                            padding_mode=padding))
            norm = conv_norm(spec.norm, c_out, side)
            if norm is not None:
                parts["norm"] = norm
            parts["act"] = spec.resolved_activation.module()
            init_conv(parts["conv"], spec, generator)
            blocks.append(nn.Sequential(parts))
        if spec.scheme == "lsuv":
            if calibration is None:
                calibration = torch.randn(LSUV_CALIBRATION_BATCH, *self.input_shape(spec),
                                          generator=generator)
            params = dict(spec.scheme_params)
            lsuv_rescale(blocks, calibration, params["tol"], params["max_iter"])
        head = None
        if out_features is not None:
            head = Linear(spec.sizes[-1], out_features)
            # The head is a 1×1 convolution of the pooled map: a conv-only scheme (dirac,
            # delta_orthogonal) applies to it as such, and any other draws exactly as on the
            # Linear (the same fans, the same entries in the same order).
            init_conv(head, spec, generator,
                      head.weight.view(out_features, spec.sizes[-1], 1, 1))
        return ConvStack(nn.Sequential(*blocks), head)

    def probe_points(self, model: ConvStack, spec: NetworkSpec) -> list[ProbePoint]:
        return [ProbePoint(output=block.act, preact=block.act, preact_input=True,
                           region=block.act, weight=block.conv)
                for block in model.layers]

    def chain(self, model: ConvStack) -> nn.Sequential:
        """The conv blocks (stage l is layer l), then the pooling and the head where there is
        one."""
        if model.head is None:
            return model.layers
        return nn.Sequential(*model.layers, GlobalAveragePool(), model.head)

    def extra_columns(self, model: ConvStack, spec: NetworkSpec) -> ExtraColumns:
        return _BorderStd(model, spec.option("image_size"))

    def table_columns(self, columns: dict, extra: dict, prediction) -> dict:
        """``border_to_interior_std`` (measured) and its theory."""
        depth = len(columns["layer"])
        return {"border_to_interior_std": extra["border_to_interior_std"],
                "border_to_interior_std_theory": (prediction.border_to_interior if prediction
                                                  else [None] * depth)}

    def predict(self, spec, input_second_moment, output_grad_var):
        stack = predict_stack(spec, input_second_moment, output_grad_var)
        if stack is None:
            return None
        if not self._spatial(spec):
            return ConvPrediction(stack.preact_var, stack.act_var, stack.grad_var, stack.summary,
                                  (1.0 if spec.option("image_size") > 2 else float("nan"),)
                                  * spec.depth)
        widening = tuple(fan_out / fan_in for fan_in, fan_out in spec.fans[1:])
        return spatial_field(spec.resolved_activation, tuple(layer_sigmas(spec)), widening,
                             spec.option("image_size"), spec.option("kernel"), "zeros", False,
                             input_second_moment, output_grad_var)

    def code(self, spec: NetworkSpec, seed: int) -> list[str]:
        # codegen imports the probe, which imports this package: imported when first used.
        from initviz.codegen import init_fn_code, lsuv_code, model_comments

        kernel, padding, side = (spec.option(k) for k in ("kernel", "padding", "image_size"))
        activation = spec.resolved_activation
        uniform = len(set(spec.sizes)) == 1
        sizes_code = (f"[{spec.input_dim}] + [{spec.sizes[0]}] * {spec.depth}" if uniform
                      else repr([spec.input_dim, *spec.sizes]))
        norm = {"batchnorm": "nn.BatchNorm2d(c_out), ",
                "layernorm": "nn.LayerNorm((c_out, image_size, image_size)), ",
                "none": ""}[spec.norm]
        lines = [
            *model_comments(spec, f"{spec.depth} conv layers ({kernel}x{kernel}, {padding} "
                                  f"padding) on {side}x{side} images"),
            f"sizes = {sizes_code}  # the input's channels, then each layer's",
            f"kernel, image_size = {kernel}, {side}",
            "model = nn.Sequential(*[",
            "    nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, "
            f"padding_mode={padding!r}), {norm}nn.{activation.module.__name__}())",
            "    for c_in, c_out in zip(sizes[:-1], sizes[1:])",
            "])",
            "",
            # A conv's fan_in is c_in·k², the numbers in one output channel's weight.
            *init_fn_code(spec, seed, layers="(nn.Conv2d, nn.Linear)",
                          fan_in="m.weight[0].numel()"),
        ]
        return lines + (lsuv_code(spec, shape="sizes[0], image_size, image_size")
                        if spec.scheme == "lsuv" else [])

    def measure_code(self) -> list[str]:
        return [
            "    for layer, block in enumerate(model, start=1):",
            "        x = block(x)",
            "        print(f\"layer {layer}: feature map std {x.std(correction=0).item():.4g}\")",
        ]


__all__ = ["CENTRE_ONLY", "Conv", "Conv2d", "ConvPrediction", "ConvStack", "GlobalAveragePool",
           "IMAGE_DATASETS", "MAX_IMAGE_SIZE", "MAX_KERNEL", "PADDINGS", "conv_norm",
           "init_conv", "spatial_field"]
