r"""Mean-field signal propagation through a deep random network.

For a wide network whose weights are i.i.d. with mean 0 and ``Var(W_l) = σ_{w,l}² / fan_in`` and
biases with mean 0 and ``Var(b_l) = σ_{b,l}²``, the pre-activations of layer ``l`` are Gaussian with
variance ``q^l`` given by the length map (Poole et al. 2016, eq. 3)::

    q^l = σ_{w,l}² · E_z[φ(√q^{l−1} z)²] + σ_{b,l}²,    z ~ N(0, 1),

starting from ``q^1 = σ_{w,1}² · E[x²] + σ_{b,1}²`` for the input ``x``. Its fixed point ``q*`` and

    χ₁ = σ_w² · E_z[φ'(√q* z)²]

decide the phase: χ₁ < 1 ordered (correlations converge to 1, gradients vanish), χ₁ > 1 chaotic
(gradients explode). Correlations approach their fixed point as ``exp(−l/ξ_c)`` with the depth
scale ``ξ_c = −1/ln χ₁`` on the ordered side (Schoenholz et al. 2017, eq. 9), and networks train
only up to a depth of about 6ξ_c. Backwards, the variance of ``dL/dh`` is multiplied per layer by
``σ_w² · (fan_out/fan_in) · E[φ'(√q z)²]`` (Schoenholz et al. 2017, eq. 12).

Expectations over ``z`` use Gauss–Hermite quadrature with an even number of nodes, so no node sits
at the kink of a rectifier (ReLU's moments come out exact).

References: Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), Exponential expressivity in deep
neural networks through transient chaos, NeurIPS; Schoenholz, Gilmer, Ganguli & Sohl-Dickstein
(2017), Deep Information Propagation, ICLR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy import optimize

from initviz.activations import Activation, get_activation
from initviz.network import NetworkSpec
from initviz.schemes import get_scheme

QUADRATURE_NODES = 240
_TINY_Q = 1e-30  # where the fixed point is 0, slopes are taken at this q (the limit q → 0)
_HUGE_Q = 1e12   # beyond this the length map is treated as diverging
_CRITICAL_TOL = 1e-9


@lru_cache(maxsize=1)
def _gauss_hermite() -> tuple[torch.Tensor, torch.Tensor]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    weights = weights / math.sqrt(2.0 * math.pi)
    return torch.as_tensor(nodes), torch.as_tensor(weights)


def _as_q(q) -> torch.Tensor:
    return torch.as_tensor(q, dtype=torch.float64)


def _moment(activation: Activation, q, power: int) -> torch.Tensor:
    nodes, weights = _gauss_hermite()
    z = _as_q(q).unsqueeze(-1).sqrt() * nodes
    return (activation.fn(z) ** power * weights).sum(-1)


def second_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ(√q z)²]`` for ``z ~ N(0, 1)``; ``q`` may be a scalar or an array."""
    return _moment(activation, q, 2)


def first_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ(√q z)]``: the mean of a unit's activation (nonzero for ReLU, sigmoid, ...)."""
    return _moment(activation, q, 1)


def slope_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ'(√q z)²]`` for ``z ~ N(0, 1)``, the slope taken by autograd."""
    nodes, weights = _gauss_hermite()
    z = (_as_q(q).clamp(min=_TINY_Q).unsqueeze(-1).sqrt() * nodes).requires_grad_(True)
    (slope,) = torch.autograd.grad(activation.fn(z).sum(), z)
    return (slope**2 * weights).sum(-1)


def length_map(activation: Activation, q, sigma_w2: float, sigma_b2: float) -> torch.Tensor:
    return sigma_w2 * second_moment(activation, q) + sigma_b2


def fixed_point(activation: Activation, sigma_w2: float, sigma_b2: float,
                q_start: float = 1.0) -> float | None:
    """The fixed point ``q*`` that iterating the length map from ``q_start`` converges to.

    The map is increasing in ``q``, so iteration moves monotonically to the nearest fixed point in
    the direction of its first step: found here by a root search rather than by iterating, which
    near criticality converges only as 1/l. None if ``q`` grows without bound. Where every ``q``
    is a fixed point (ReLU at σ_w² = 2, σ_b² = 0), ``q_start`` itself is returned.
    """

    def gap(q: float) -> float:
        return float(length_map(activation, q, sigma_w2, sigma_b2)) - q

    start_gap = gap(q_start)
    if abs(start_gap) <= 1e-12 * max(q_start, 1.0):
        return q_start
    if start_gap > 0:
        grid = np.geomspace(q_start, _HUGE_Q, 400)
    else:
        grid = np.concatenate([np.geomspace(q_start, _TINY_Q, 400), [0.0]])
    values = np.array([gap(q) for q in grid])
    crossings = np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0]
    if len(crossings) == 0:
        return None if start_gap > 0 else 0.0
    i = crossings[0]
    if values[i + 1] == 0.0:
        return float(grid[i + 1])
    return float(optimize.brentq(gap, min(grid[i], grid[i + 1]), max(grid[i], grid[i + 1]),
                                 xtol=1e-300, rtol=1e-12))


def chi1(activation: Activation, sigma_w2: float, q: float | None) -> float:
    """``χ₁ = σ_w² E[φ'(√q z)²]``; with ``q`` None (diverging), its limit at large ``q``."""
    return float(sigma_w2 * slope_moment(activation, _HUGE_Q if q is None else q))


def depth_scale(chi: float) -> float | None:
    """``ξ_c = −1/ln χ₁`` in the ordered phase; None at or beyond criticality."""
    if chi <= 0.0:
        return 0.0
    if chi >= 1.0 - _CRITICAL_TOL:
        return None
    return -1.0 / math.log(chi)


def phase(chi: float) -> str:
    if abs(chi - 1.0) < 1e-6:
        return "critical"
    return "ordered" if chi < 1.0 else "chaotic"


@dataclass(frozen=True)
class MeanField:
    """The mean-field summary of a network: its fixed point, χ₁, depth scale and phase."""

    sigma_w2: float
    sigma_b2: float
    q_star: float | None
    chi1: float
    depth_scale: float | None
    phase: str

    @property
    def trainable_depth(self) -> float | None:
        """About 6 ξ_c (Schoenholz et al. 2017, Fig. 5); None where signals reach any depth."""
        return None if self.depth_scale is None else 6.0 * self.depth_scale

    def to_dict(self) -> dict:
        return {"q_star": self.q_star, "chi1": self.chi1, "depth_scale": self.depth_scale,
                "phase": self.phase, "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2}


def mean_field(activation: str | Activation, sigma_w2: float, sigma_b2: float,
               q_start: float = 1.0) -> MeanField:
    act = get_activation(activation) if isinstance(activation, str) else activation
    q_star = fixed_point(act, sigma_w2, sigma_b2, q_start)
    chi = chi1(act, sigma_w2, q_star)
    return MeanField(sigma_w2, sigma_b2, q_star, chi, depth_scale(chi), phase(chi))


def theory_unavailable_reason(spec: NetworkSpec) -> str | None:
    """Why mean-field theory does not describe this network, or None when it does."""
    if spec.norm != "none":
        return f"{spec.norm} rescales every layer, which the mean-field recursion does not model"
    if spec.scheme == "lsuv":
        return "LSUV sets each layer's scale from data, so there is no fixed weight variance"
    scheme, bias = get_scheme(spec.scheme), get_scheme(spec.bias, bias=True)
    for fan_in, fan_out in spec.fans:
        if scheme.weight_mean(fan_in, fan_out, spec.params) != 0.0:
            return "the weights do not have mean 0, which the mean-field theory assumes"
        if bias.weight_mean(fan_in, fan_out, spec.bias_param_dict) != 0.0:
            return "the biases do not have mean 0, which the mean-field theory assumes"
    return None


def layer_sigmas(spec: NetworkSpec) -> list[tuple[float, float]] | None:
    """``(σ_w², σ_b²)`` of every layer: ``fan_in·Var(W)`` and ``Var(b)`` from the schemes."""
    if theory_unavailable_reason(spec) is not None:
        return None
    scheme, bias = get_scheme(spec.scheme), get_scheme(spec.bias, bias=True)
    return [
        (fan_in * scheme.weight_std(fan_in, fan_out, spec.params) ** 2,
         bias.weight_std(fan_in, fan_out, spec.bias_param_dict) ** 2)
        for fan_in, fan_out in spec.fans
    ]


@dataclass(frozen=True)
class Prediction:
    """Mean-field predictions for one network, layer by layer (index 0 is layer 1)."""

    preact_var: list[float]
    act_var: list[float]
    grad_var: list[float]
    summary: MeanField


def predict(spec: NetworkSpec, input_second_moment: float = 1.0,
            output_grad_var: float = 1.0) -> Prediction | None:
    """Per-layer pre-activation variance and gradient variance, and the deep-layer summary.

    The forward recursion starts from the input's ``E[x²]``; the backward one from the variance of
    ``dL/dh`` at the last hidden layer. The summary (``q*``, χ₁, ξ_c) uses the last layer's σ's.
    """
    sigmas = layer_sigmas(spec)
    if sigmas is None:
        return None
    act = get_activation(spec.activation)
    preact: list[float] = []
    carried = input_second_moment  # E[h²] of the layer's input
    for sw2, sb2 in sigmas:
        q = sw2 * carried + sb2
        preact.append(q)
        carried = float(second_moment(act, q)) if math.isfinite(q) else math.inf
    act_var = [float(second_moment(act, q) - first_moment(act, q) ** 2) if math.isfinite(q)
               else math.nan for q in preact]
    slopes = [float(slope_moment(act, q)) if math.isfinite(q) else math.nan for q in preact]
    grad = [output_grad_var]
    for (sw2, _), (fan_in, fan_out), slope in zip(sigmas[:0:-1], spec.fans[:0:-1], slopes[:0:-1]):
        grad.append(grad[-1] * sw2 * fan_out / fan_in * slope)
    grad.reverse()
    sw2, sb2 = sigmas[-1]
    summary = mean_field(act, sw2, sb2, q_start=preact[0] if math.isfinite(preact[0]) else 1.0)
    return Prediction(preact, act_var, grad, summary)


__all__ = [
    "MeanField", "Prediction", "chi1", "depth_scale", "first_moment", "fixed_point",
    "layer_sigmas",
    "length_map", "mean_field", "phase", "predict", "second_moment", "slope_moment",
    "theory_unavailable_reason",
]
