"""Activation functions: the module, its gain, and when a unit counts as saturated or dead.

Both conditions are read off the pre-activation ``z`` (the input of the nonlinearity), so the probe
classifies units with two comparisons and no extra pass over the outputs:

* **saturated**: the output lies within 3% of a non-zero horizontal asymptote, where the slope has
  all but vanished. tanh: ``|tanh z| > 0.97`` ⇔ ``|z| > atanh 0.97 ≈ 2.09``; sigmoid: output below
  0.03 or above 0.97 ⇔ ``|z| > logit 0.97 ≈ 3.48``; elu: output below −0.97 ⇔ ``z < ln 0.03 ≈
  −3.51``; selu: output within 3% of its asymptote −λα, the same ``z < ln 0.03``.
* **dead**: the unit sits in the flat region at zero output, so it passes on (almost) no gradient.
  relu: the output is exactly 0 (``z ≤ 0``). For the smooth rectifiers gelu, silu and softplus
  there is no exact zero; a unit is dead where ``|φ'(z)| < 0.03`` holds for every input at or below
  ``z`` -- the same 3% as for saturation, applied to the slope. leaky_relu keeps slope 0.01
  everywhere by design, linear never flattens: neither can die or saturate (reported as n/a).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from initviz.errors import InvalidSpec

SATURATION_MARGIN = 0.03
DEAD_SLOPE = 0.03


@dataclass(frozen=True)
class Activation:
    """An activation function as initviz uses it.

    ``fn`` is the elementwise function (torch, any dtype), used both in the model and in the
    mean-field quadrature. ``saturated_outside`` is the interval of ``z`` outside which a unit is
    saturated (an infinite end never saturates); ``dead_at_or_below`` the ``z`` at or below which a
    unit is dead. ``gain`` is ``torch.nn.init.calculate_gain`` where torch defines one
    (``gain_source == "torch"``); otherwise the gain that keeps the second moment,
    ``1 / √E[φ(z)²]`` for ``z ~ N(0, 1)`` (``gain_source == "second moment"``).
    """

    name: str
    label: str
    module: Callable[[], nn.Module]
    fn: Callable[[torch.Tensor], torch.Tensor]
    gain: float
    gain_source: str
    recommended_scheme: str
    why: str
    saturated_outside: tuple[float, float] | None = None
    dead_at_or_below: float | None = None
    self_normalizing: bool = False
    recommended_params: tuple[tuple[str, float], ...] = ()
    instead: str | None = None
    """An activation to use in its place, where no initialization makes a deep stack of this one
    trainable (sigmoid)."""


def _second_moment_gain(fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    nodes, weights = np.polynomial.hermite_e.hermegauss(201)
    z = torch.as_tensor(nodes, dtype=torch.float64)
    second_moment = float((fn(z) ** 2 * torch.as_tensor(weights)).sum()) / math.sqrt(2 * math.pi)
    return 1.0 / math.sqrt(second_moment)


def _dead_threshold(fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """The largest ``z`` such that ``|φ'(t)| < DEAD_SLOPE`` for every ``t ≤ z`` (on a fine grid)."""
    z = torch.linspace(-30.0, 0.0, 30001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(fn(z).sum(), z)
    steep = (slope.abs() >= DEAD_SLOPE).nonzero()
    return float(z.detach()[int(steep[0]) - 1]) if len(steep) else 0.0


_ELU_SATURATED_BELOW = math.log(SATURATION_MARGIN)  # exp(z) − 1 < −0.97

_RELU_WHY = ("ReLU zeroes half of its inputs, so each layer halves E[x²]; Kaiming's gain √2 "
             "makes up for exactly that (He et al. 2015).")
_LEAKY_RELU_WHY = ("Leaky ReLU keeps 1% of its negative inputs, so E[φ(z)²] = (1 + 0.01²)/2 and "
                   "Kaiming's gain √2, ReLU's, keeps E[x²] to within 0.01%; kaiming_normal with "
                   "a = 0.01 makes it exact (He et al. 2015).")
_SMOOTH_RECTIFIER_WHY = (
    "{label} is close to ReLU away from 0 but not at it: E[φ(z)²] = {moment:.3g} for z ~ N(0, 1), "
    "so the gain that keeps E[x²] at 1 is {gain:.3g}, not Kaiming's √2, which lets the signal "
    "{kaiming}. xavier_normal with gain {gain:.3g} gives it on square layers{drift}.")
_UNSTABLE = ("; that fixed point is unstable for {label} (a larger variance grows, a smaller one "
             "fades), so over many layers the signal still drifts off, which a norm layer stops")
_TANH_WHY = ("tanh'(0) = 1, so on square layers Xavier's σ_w² = 1 puts tanh at the edge of chaos "
             "(χ₁ = 1): gradients neither vanish nor explode by a factor per layer. The signal "
             "still shrinks slowly, as tanh flattens away from 0: its variance falls about as "
             "1/(2·layer) (Glorot & Bengio 2010; Schoenholz et al. 2017).")
_SIGMOID_WHY = ("Glorot's argument for Xavier needs φ'(0) = 1; sigmoid's slope is at most 1/4 and "
                "its outputs have mean 1/2, so at Xavier's σ_w² = 1 each layer multiplies the "
                "gradient variance by χ₁ = 0.056. Larger weights do not rescue it: χ₁ reaches 1 "
                "only at σ_w² ≈ 103 (gain ≈ 10), where 61% of the units sit on a flat tail. "
                "tanh(z) = 2·sigmoid(2z) − 1 is the same curve centred, with slope 1 at 0, and "
                "xavier_normal puts it at χ₁ = 1.")
def _entries() -> list[Activation]:
    """Every activation as written down; :func:`_build` derives the numbers marked to derive.
    (A table: one entry per activation, longer than a function of steps should be.)"""
    tanh_limit = math.atanh(1 - SATURATION_MARGIN)
    sigmoid_limit = math.log((1 - SATURATION_MARGIN) / SATURATION_MARGIN)

    def torch_gain(name: str, param: float | None = None) -> float:
        return nn.init.calculate_gain(name, param)

    return [
        Activation("linear", "Linear (identity)", nn.Identity, lambda z: z,
                   torch_gain("linear"), "torch", "orthogonal",
                   "A deep linear network is a product of matrices; orthogonal ones keep every "
                   "singular value at 1, so signals neither shrink nor grow (Saxe et al. 2013)."),
        Activation("relu", "ReLU", nn.ReLU, torch.relu, torch_gain("relu"), "torch",
                   "kaiming_normal", _RELU_WHY, dead_at_or_below=0.0),
        Activation("leaky_relu", "Leaky ReLU (slope 0.01)", nn.LeakyReLU,
                   lambda z: torch.nn.functional.leaky_relu(z, 0.01),
                   torch_gain("leaky_relu", 0.01), "torch", "kaiming_normal", _LEAKY_RELU_WHY),
        Activation("tanh", "tanh", nn.Tanh, torch.tanh, torch_gain("tanh"), "torch",
                   "xavier_normal", _TANH_WHY, saturated_outside=(-tanh_limit, tanh_limit)),
        Activation("sigmoid", "Sigmoid", nn.Sigmoid, torch.sigmoid, torch_gain("sigmoid"),
                   "torch", "xavier_normal", _SIGMOID_WHY,
                   saturated_outside=(-sigmoid_limit, sigmoid_limit), instead="tanh"),
        Activation("selu", "SELU", nn.SELU, torch.selu, torch_gain("selu"), "torch",
                   "lecun_normal",
                   "With weights of variance 1/fan_in, SELU pulls activations to mean 0 and "
                   "variance 1 by itself, layer after layer (Klambauer et al. 2017). Its "
                   "gradients still grow slowly: χ₁ = 1.07 per layer in variance (Philipp, Song "
                   "& Carbonell 2018, The exploding gradient problem demystified).",
                   saturated_outside=(_ELU_SATURATED_BELOW, math.inf), self_normalizing=True),
        # How Kaiming's √2 moves each smooth rectifier's signal: mean field, 20 square layers.
        Activation("elu", "ELU", nn.ELU, torch.nn.functional.elu, 0.0, "second moment",
                   "xavier_normal", _SMOOTH_RECTIFIER_WHY.replace(
                       "{kaiming}", "grow (std ×2.5 over 20 layers)").replace("{drift}", ""),
                   saturated_outside=(_ELU_SATURATED_BELOW, math.inf)),
        Activation("gelu", "GELU", nn.GELU, torch.nn.functional.gelu, 0.0, "second moment",
                   "xavier_normal", _SMOOTH_RECTIFIER_WHY.replace(
                       "{kaiming}", "fade (std ×0.05 over 20 layers)").replace(
                       "{drift}", _UNSTABLE), dead_at_or_below=0.0),
        Activation("silu", "SiLU (swish)", nn.SiLU, torch.nn.functional.silu, 0.0,
                   "second moment", "xavier_normal", _SMOOTH_RECTIFIER_WHY.replace(
                       "{kaiming}", "fade (std ×0.005 over 20 layers)").replace(
                       "{drift}", _UNSTABLE), dead_at_or_below=0.0),
        Activation("softplus", "Softplus", nn.Softplus, torch.nn.functional.softplus, 0.0,
                   "second moment", "kaiming_normal",
                   "Softplus is close to ReLU away from 0, but all its outputs are positive "
                   "(mean 0.81 at unit input), like sigmoid's: at the gain that keeps E[x²], "
                   "{gain:.3g}, χ₁ is only 0.32. Kaiming's √2 brings χ₁ near 1 as the variance "
                   "grows, yet over 20 layers the gradients still fade (std ×0.07): a norm layer "
                   "suits it better than any scale.", dead_at_or_below=0.0),
    ]


def _build() -> dict[str, Activation]:
    """The table by name, with the gains, reasons and dead thresholds that follow from each
    activation's function filled in."""
    table = {}
    for act in _entries():
        updates = {}
        if act.gain_source == "second moment":
            gain = updates["gain"] = _second_moment_gain(act.fn)
            updates["why"] = act.why.format(label=act.label, moment=gain**-2, gain=gain)
            if act.recommended_scheme == "xavier_normal":
                updates["recommended_params"] = (("gain", round(gain, 4)),)
        if act.dead_at_or_below is not None and act.name != "relu":
            updates["dead_at_or_below"] = _dead_threshold(act.fn)
        table[act.name] = replace(act, **updates)
    return table


ACTIVATIONS: dict[str, Activation] = _build()


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise InvalidSpec("activation", name, "one of " + ", ".join(ACTIVATIONS)) from None


__all__ = ["ACTIVATIONS", "Activation", "get_activation", "SATURATION_MARGIN", "DEAD_SLOPE"]
