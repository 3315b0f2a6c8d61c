r"""How far signals travel: the correlation map, its fixed point c*, the depth scale on the chaotic
side and the trainable depth of about 6 ξ_c, in numbers and in one sentence.

Two inputs whose pre-activations have variance ``q*`` and correlation ``c`` have, one layer deeper
(Poole et al. 2016, eq. 5)::

    c^{l+1} = (σ_w² E[φ(u₁) φ(u₂)] + σ_b²) / q*,   u₁ = √q* z₁,  u₂ = √q* (c z₁ + √(1−c²) z₂).

Its slope at the fixed point, ``χ_c = σ_w² E[φ'(u₁) φ'(u₂)]``, gives the depth scale
``ξ_c = −1/ln χ_c`` (Schoenholz et al. 2017, eqs. 8–9); at ``c = 1`` it is χ₁, so on the ordered
side ξ_c comes from :func:`initviz.meanfield.mean_field` alone. Networks train up to a depth of
about 6 ξ_c (Schoenholz et al. 2017, Fig. 5).

The expectations use the scalar theory's graded Gauss–Legendre rule (:func:`gaussian_rule`) in two
dimensions, one scalar root search (``scipy.optimize.brentq``) per network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize

from initviz.activations import Activation
from initviz.meanfield import (TINY_Q, TRAINABLE_DEPTHS_PER_SCALE, MeanField, as_activation,
                               chi1, depth_scale, derivative, gaussian_rule, is_critical,
                               is_linear, second_moment)

_PAIR_RULE = (14, 10)  # coarser in 2-D: 300² nodes, the map to 1e-9 and χ_c to ~1e-6


def _chaotic(chi: float) -> bool:
    """χ₁ above 1 and not critical: the point c = 1 repels, so a fixed point c* < 1 exists."""
    return chi > 1.0 and not is_critical(chi)


def _pair_expectation(activation: Activation, q: float, c: float, slope: bool) -> float:
    """``E[f(u₁) f(u₂)]`` for ``(u₁, u₂)`` Gaussian with variances ``q`` and correlation ``c``;
    ``f = φ'`` if ``slope`` else ``φ``.

    Written as ``E_{z₁}[f(√q z₁) E_{z₂}[f(√q (c z₁ + √(1−c²) z₂))]]`` (Poole et al. 2016, eq. 5),
    so each inner rule can put its panels at its own kink, ``z₂ = −c z₁ / √(1−c²)``.
    """
    def f(u: torch.Tensor) -> torch.Tensor:
        return derivative(activation, u) if slope else activation.fn(u)

    scale = torch.tensor(math.sqrt(q), dtype=torch.float64)
    z1, w1 = gaussian_rule(scale, None, *_PAIR_RULE)
    mean = scale * c * z1
    spread = scale * math.sqrt(max(1.0 - c * c, 0.0))
    inner_scale = torch.full_like(z1, float(spread))
    z2, w2 = gaussian_rule(inner_scale, mean / spread.clamp(min=TINY_Q), *_PAIR_RULE)
    inner = (f(mean.unsqueeze(-1) + spread * z2) * w2).sum(-1)
    return float((f(scale * z1) * w1 * inner).sum())


def correlation_map(activation: str | Activation, c: float, q_star: float, sigma_w2: float,
                    sigma_b2: float) -> float:
    """The correlation of two inputs one layer deeper (Poole et al. 2016, eq. 5)::

        c^{l+1} = (σ_w² E[φ(u₁) φ(u₂)] + σ_b²) / q*,   u₁ = √q* z₁,  u₂ = √q* (c z₁ + √(1−c²) z₂)
    """
    act = as_activation(activation)
    return (sigma_w2 * _pair_expectation(act, q_star, c, slope=False) + sigma_b2) / q_star


def correlation_slope(activation: str | Activation, c: float, q_star: float,
                      sigma_w2: float) -> float:
    """``χ_c = ∂c^{l+1}/∂c^l = σ_w² E[φ'(u₁) φ'(u₂)]`` (Schoenholz et al. 2017, eq. 8); at c = 1
    it is χ₁."""
    return sigma_w2 * _pair_expectation(as_activation(activation), q_star, c, slope=True)


def correlation_fixed_point(activation: str | Activation, q_star: float, sigma_w2: float,
                            sigma_b2: float) -> float:
    """The correlation ``c*`` that two inputs settle at with depth: 1 in the ordered phase, the
    largest fixed point of the correlation map below 1 in the chaotic one.

    On [0, 1] the map is a power series in c with nonnegative coefficients (Mehler's expansion),
    hence convex; with ``c = 1`` repelling (slope χ₁ > 1) the map lies below the diagonal between
    ``c*`` and 1, which brackets ``c*`` from above.
    """
    act = as_activation(activation)

    def gap(c: float) -> float:
        return correlation_map(act, c, q_star, sigma_w2, sigma_b2) - c

    if not _chaotic(chi1(act, sigma_w2, q_star)):
        return 1.0
    at_zero = gap(0.0)
    if abs(at_zero) <= 1e-12:  # odd φ without bias: inputs decorrelate completely
        return 0.0
    if at_zero > 0.0:
        step = 0.5
        while gap(1.0 - step) >= 0.0:
            step /= 2
            if step < 1e-10:
                return 1.0
        return float(optimize.brentq(gap, 0.0, 1.0 - step, xtol=1e-10))
    lows = np.linspace(0.0, -1.0, 21)
    values = [gap(c) for c in lows]
    k = next(i for i, v in enumerate(values) if v >= 0.0)  # gap(−1) ≥ 0 as |E[φ(u)φ(−u)]| ≤ q*
    return float(optimize.brentq(gap, lows[k], lows[k - 1], xtol=1e-10))


def chaotic_depth_scale(activation: str | Activation, sigma_w2: float, sigma_b2: float,
                        q_star: float | None) -> float | None:
    """``ξ_c = −1/ln χ_c`` with ``χ_c = σ_w² E[φ'(u₁) φ'(u₂)]`` at the correlation fixed point
    ``c* < 1`` (Schoenholz et al. 2017, eqs. 8–9): how fast correlations forget their start in
    the chaotic phase. None outside it, or where ``q`` diverges and no ``c*`` exists.
    """
    act = as_activation(activation)
    if q_star is None or q_star <= 0.0 or not _chaotic(chi1(act, sigma_w2, q_star)):
        return None
    c_star = correlation_fixed_point(act, q_star, sigma_w2, sigma_b2)
    return None if c_star >= 1.0 else depth_scale(correlation_slope(act, c_star, q_star, sigma_w2))


# --------------------------------------------------------------------------------------------------
# Trainable depth, and the whole diagram for one network


@dataclass(frozen=True)
class DepthReach:
    """How deep signals travel (about 6 ξ_c) against the network's depth.

    ``depth_scale`` is ξ_c on the network's side of the transition (χ₁ on the ordered side, χ_c
    at ``c*`` on the chaotic one); ``ratio`` is depth / trainable depth (> 1: too deep).
    """

    depth: int
    phase: str
    depth_scale: float | None
    trainable_depth: float | None
    ratio: float | None
    sentence: str


def _times(ratio: float) -> str:
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}".removesuffix(".0")


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _near_one(value: float) -> str:
    """``value`` with enough digits (3 to 8) not to read as 1 unless it is (leaky ReLU: 1.0001)."""
    for digits in range(3, 9):
        if float(f"{value:.{digits}g}") != 1.0 or value == 1.0:
            break
    return f"{value:.{digits}g}"


def _power(base: float, exponent: int) -> str:
    """``base^exponent`` written out and evaluated, as a power of 10 beyond float64's range."""
    return f"{_near_one(base)}{str(exponent).translate(_SUPERSCRIPT)} = {_value(base, exponent)}"


def _value(base: float, exponent: float) -> str:
    log10 = exponent * math.log10(base)
    if abs(log10) < 300:
        return _near_one(base**exponent)
    return f"10{str(round(log10)).translate(_SUPERSCRIPT)}"


_FLOAT32_RANGE = (float(torch.finfo(torch.float32).tiny), float(torch.finfo(torch.float32).max))


def _scale_only_sentence(act: Activation, summary: MeanField, depth: int, entry: str) -> str:
    """What holds for a positively homogeneous φ without bias, in place of a depth scale."""
    chi = summary.chi1
    if chi == 0.0:
        return f"σ_w² = 0: no signal passes even one {entry}."
    keep = 1.0 / float(second_moment(act, 1.0))
    shape = ("stay exactly as they are (the network is linear)" if is_linear(act) else
             "rise towards 1 only polynomially with depth, whatever σ_w² is")
    sentence = (f"{act.name} with no bias is positively homogeneous (φ(a·u) = a·φ(u) for a > 0), "
                f"so σ_w² = {summary.sigma_w2:.3g} sets only the scale: every {entry} multiplies "
                f"the variance of the signal, and of the gradients going back, by "
                f"χ₁ = σ_w²·E[φ(z)²] = {_near_one(chi)}")
    limit = "no depth scale ξ_c limits how deep it trains"
    if summary.phase == "critical":
        sentence += ", which keeps it"
    elif depth > 1:
        sentence += (f", {_power(chi, depth - 1)} from {entry} 1 to {entry} {depth} "
                     f"(std × {_value(math.sqrt(chi), depth - 1)})")
        log_std = (depth - 1) * math.log10(chi) / 2
        if log_std < math.log10(_FLOAT32_RANGE[0]):
            sentence += ", below float32's smallest normal number (1.2e-38): the signal rounds to 0"
            limit = "float32's range, not a depth scale ξ_c, limits how deep it trains"
        elif log_std > math.log10(_FLOAT32_RANGE[1]):
            sentence += ", beyond float32's largest number (3.4e38): the signal overflows to inf"
            limit = "float32's range, not a depth scale ξ_c, limits how deep it trains"
    sentence += f". Correlations between inputs {shape}, so {limit}"
    if summary.phase == "critical":
        return sentence + "."
    if summary.phase == "shrinking":
        sentence += " (He et al. 2015 train a 22-layer ReLU net at σ_w² = 1)"
    return sentence + f". σ_w² = {keep:.5g} (χ₁ = 1) keeps the scale, as does a norm layer."


def depth_reach(activation: str | Activation, summary: MeanField, depth: int,
                entry: str = "layer") -> DepthReach:
    """Compare ``depth`` with the trainable depth 6 ξ_c, in numbers and in one sentence;
    ``depth`` counts ``entry``s (a layer, a recurrent net's time step)."""
    entries = f"{entry}s"
    def reach(xi, trainable, ratio, sentence) -> DepthReach:
        return DepthReach(depth, summary.phase, xi, trainable, ratio, sentence)

    if summary.scale_only:
        return reach(None, None, None, _scale_only_sentence(as_activation(activation), summary,
                                                            depth, entry))
    if summary.phase == "critical":
        return reach(None, None, None,
                     f"At the edge of chaos (χ₁ = {summary.chi1:.4g}) correlations decay slower "
                     f"than exponentially: in the mean-field limit signals reach any depth, "
                     f"these {depth} {entries} included.")
    if summary.q_star is None:
        return reach(None, None, None,
                     f"The pre-activation variance grows without bound (χ₁ = {summary.chi1:.3g}), "
                     "so there is no fixed point for correlations to settle at and no depth "
                     "scale: signals explode with depth.")
    xi = summary.depth_scale if summary.phase == "ordered" else chaotic_depth_scale(
        activation, summary.sigma_w2, summary.sigma_b2, summary.q_star)
    if xi is None:
        return reach(None, None, None,
                     f"Correlations have no fixed point below 1 (χ₁ = {summary.chi1:.3g}), so "
                     "no depth scale is defined.")
    trainable = TRAINABLE_DEPTHS_PER_SCALE * xi
    why = f"{TRAINABLE_DEPTHS_PER_SCALE:g} ξ_c with ξ_c = {xi:.3g}, {summary.phase} phase"
    if trainable == 0.0:
        return reach(xi, trainable, None,
                     f"χ₁ = {summary.chi1:.3g}: no signal passes even one {entry} ({why}).")
    ratio = depth / trainable
    if ratio > 1.0:
        sentence = (f"This network is {_times(ratio)}× deeper than signals can travel: {depth} "
                    f"{entries} against about {trainable:.3g} ({why}).")
    else:
        sentence = (f"Signals can travel about {trainable:.3g} {entries} ({why}): these {depth} "
                    f"{entries} are within reach.")
    return reach(xi, trainable, ratio, sentence)


__all__ = ["DepthReach", "chaotic_depth_scale", "correlation_fixed_point", "correlation_map",
           "correlation_slope", "depth_reach"]
