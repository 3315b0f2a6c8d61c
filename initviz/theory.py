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
only up to a depth of about 6ξ_c. A positively homogeneous φ (relu, leaky_relu, linear) without
bias is the exception: there σ_w² only rescales every layer by χ₁ and the correlation map does
not depend on it, so there is no depth scale (and above χ₁ = 1 no chaos, only growth).
Backwards, the variance of ``dL/dh`` is multiplied per layer by
``σ_w² · (fan_out/fan_in) · E[φ'(√q z)²]`` (Schoenholz et al. 2017, eq. 12).

Expectations over ``z`` use composite Gauss–Legendre quadrature against the Gaussian density on
``[−12, 12]``, with panels that grow geometrically away from the activation's kink at ``u = 0``.
A fixed Gauss–Hermite rule cannot resolve ``φ'(√q z)`` once ``√q`` exceeds its node spacing (tanh's
``E[φ'²]`` was half its value at ``q = 100``); the graded panels keep every moment to ~1e-10 for
``q`` up to 1e12, and a panel edge at the kink keeps rectifiers exact.

References: Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), Exponential expressivity in deep
neural networks through transient chaos, NeurIPS; Schoenholz, Gilmer, Ganguli & Sohl-Dickstein
(2017), Deep Information Propagation, ICLR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from scipy import interpolate, optimize

from initviz.activations import Activation, get_activation
from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec
from initviz.schemes import get_scheme

_PANELS = 16        # graded panels on each side of the kink
_PANEL_NODES = 12   # Gauss–Legendre nodes per panel
_Z_MAX = 12.0       # N(0, 1) puts under 1e-32 of its mass beyond ±12
_PAIR_RULE = (14, 10)  # coarser in 2-D: 300² nodes, the map to 1e-9 and χ_c to ~1e-6
_TINY_Q = 1e-30  # where the fixed point is 0, slopes are taken at this q (the limit q → 0)
_HUGE_Q = 1e12   # beyond this the length map is treated as diverging
_CRITICAL_TOL = 1e-9
_UNRESOLVED_Q = 1e-12
"""A fixed point below this is reported as 0. For φ(0) = 0, φ'(0) = 1 at σ_w² = 1, σ_b² = 0 (tanh
at criticality) the length map's gap to the diagonal is about −2q², under float64's resolution of
q itself once q < 1e-16: the root search then found "fixed points" like 9e-17 that are rounding,
where the true one is 0."""


@lru_cache(maxsize=None)
def _legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.as_tensor(nodes), torch.as_tensor(weights)


def _gaussian_rule(scale: torch.Tensor, center: torch.Tensor | None = None,
                   panels: int = _PANELS, per_panel: int = _PANEL_NODES
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``z`` and weights ``w`` (shape ``scale.shape + (n,)``) with ``Σ w g(z) ≈ E[g(z)]``.

    Built for ``g(z) = f(center·scale + scale·z)`` where ``f`` bends within about 1 of 0: the panels
    start at ``−center`` (the kink), ``0.25 / max(1, scale)`` wide, and grow geometrically to ±12.
    """
    center = torch.zeros_like(scale) if center is None else center
    kink = (-center).clamp(-_Z_MAX, _Z_MAX).unsqueeze(-1)
    first = (0.25 / scale.clamp(min=1.0)).unsqueeze(-1)
    grading = torch.linspace(1.0, 0.0, panels + 1, dtype=torch.float64)
    sides = []
    for reach in (_Z_MAX - kink, -_Z_MAX - kink):  # signed distance from the kink to each end
        ratio = (first / reach.abs().clamp(min=first)).clamp(max=1.0)
        offsets = reach * ratio**grading
        sides.append(torch.cat([kink, kink + offsets], -1))
    edges = torch.stack(sides, -2)  # (..., 2, panels + 1)
    low, high = edges[..., :-1].unsqueeze(-1), edges[..., 1:].unsqueeze(-1)
    nodes, weights = _legendre(per_panel)
    half = (high - low) / 2
    z = (low + half + half * nodes).flatten(-3)
    w = (half.abs() * weights).flatten(-3) * torch.exp(-z**2 / 2) / math.sqrt(2.0 * math.pi)
    return z, w


def _as_q(q) -> torch.Tensor:
    return torch.as_tensor(q, dtype=torch.float64)


def _moment(activation: Activation, q, power: int) -> torch.Tensor:
    scale = _as_q(q).sqrt()
    nodes, weights = _gaussian_rule(scale)
    return (activation.fn(scale.unsqueeze(-1) * nodes) ** power * weights).sum(-1)


def second_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ(√q z)²]`` for ``z ~ N(0, 1)``; ``q`` may be a scalar or an array."""
    return _moment(activation, q, 2)


def first_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ(√q z)]``: the mean of a unit's activation (nonzero for ReLU, sigmoid, ...)."""
    return _moment(activation, q, 1)


def _slope(activation: Activation, u: torch.Tensor) -> torch.Tensor:
    """``φ'(u)`` elementwise, by autograd."""
    u = u.detach().requires_grad_(True)
    (slope,) = torch.autograd.grad(activation.fn(u).sum(), u)
    return slope


def slope_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ'(√q z)²]`` for ``z ~ N(0, 1)``, the slope taken by autograd."""
    scale = _as_q(q).clamp(min=_TINY_Q).sqrt()
    nodes, weights = _gaussian_rule(scale)
    return (_slope(activation, scale.unsqueeze(-1) * nodes) ** 2 * weights).sum(-1)


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
    values = length_map(activation, grid, sigma_w2, sigma_b2).numpy() - grid
    crossings = np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0]
    if len(crossings) == 0:
        return None if start_gap > 0 else 0.0
    i = crossings[0]
    if values[i + 1] == 0.0:
        root = float(grid[i + 1])
    else:
        root = float(optimize.brentq(gap, min(grid[i], grid[i + 1]), max(grid[i], grid[i + 1]),
                                     xtol=1e-300, rtol=1e-12))
    return 0.0 if root < _UNRESOLVED_Q else root


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


def phase(chi: float, homogeneous: bool = False, sigma_b2: float = 0.0) -> str:
    """ordered / critical / chaotic by χ₁, the order-to-chaos transition (Poole et al. 2016).

    A positively homogeneous φ (:func:`positively_homogeneous`) has no chaos to enter: above
    critical the scale grows without bound ("growing") while correlations still rise to 1;
    below it, without a bias to hold a fixed variance, only the scale shrinks ("shrinking").
    """
    if abs(chi - 1.0) < 1e-6:
        return "critical"
    if homogeneous and chi > 1.0:
        return "growing"
    if homogeneous and sigma_b2 == 0.0:
        return "shrinking"
    return "ordered" if chi < 1.0 else "chaotic"


@lru_cache(maxsize=None)
def positively_homogeneous(activation: Activation) -> bool:
    """Whether ``φ(a·u) = a·φ(u)`` for every ``a > 0`` (relu, leaky_relu, linear).

    Then ``E[φ(√q z)²] = q·E[φ(z)²]``: σ_w² only multiplies the scale by the same factor at every
    layer, and the correlation map does not depend on q or σ_w² at all. Checked on a grid.
    """
    u = torch.linspace(-20.0, 20.0, 401, dtype=torch.float64)
    return all(torch.allclose(activation.fn(a * u), a * activation.fn(u), rtol=1e-12, atol=0.0)
               for a in (1e-3, 0.5, 3.0, 1e3))


@dataclass(frozen=True)
class MeanField:
    """The mean-field summary of a network: its fixed point, χ₁, depth scale and phase."""

    sigma_w2: float
    sigma_b2: float
    q_star: float | None
    chi1: float
    depth_scale: float | None
    phase: str
    scale_only: bool = False
    """σ_b² = 0 and a positively homogeneous φ: σ_w² sets nothing but the scale, which every
    layer multiplies by χ₁ (forward in variance, and backward), and no depth scale exists."""

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
    homogeneous = positively_homogeneous(act)
    # ξ_c = −1/ln χ₁ is how fast correlations reach a fixed point c* = 1 held by a q* > 0; with
    # a homogeneous φ and no bias q* is 0 (or every q) and correlations approach 1 polynomially
    # whatever σ_w² is (He et al. 2015 train such a 22-layer ReLU net at χ₁ = 1/2).
    scale_only = homogeneous and sigma_b2 == 0.0
    return MeanField(sigma_w2, sigma_b2, q_star, chi, None if scale_only else depth_scale(chi),
                     phase(chi, homogeneous, sigma_b2), scale_only)


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
        (_significant(fan_in * scheme.weight_std(fan_in, fan_out, spec.params) ** 2),
         _significant(bias.weight_std(fan_in, fan_out, spec.bias_param_dict) ** 2))
        for fan_in, fan_out in spec.fans
    ]


def _significant(value: float) -> float:
    """``value`` to 12 significant digits.

    ``fan_in · (gain/√fan_in)²`` is 2 for Kaiming at every width only up to a few ulps of rounding
    that change with the width; rounded, the σ's (and the summary, a cache key of the page's
    phase diagram) compare equal across widths, as the theory says they are.
    """
    return float(f"{value:.12g}")


@dataclass(frozen=True)
class Prediction:
    """Mean-field predictions for one network, layer by layer (index 0 is layer 1)."""

    preact_var: tuple[float, ...]
    act_var: tuple[float, ...]
    grad_var: tuple[float, ...]
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
    # The network enters only through its σ's and how much each layer widens the signal, so a
    # width change that keeps them (Kaiming, orthogonal on a uniform stack) costs nothing.
    widening = tuple(fan_out / fan_in for fan_in, fan_out in spec.fans[1:])
    return _predict(get_activation(spec.activation), tuple(sigmas), widening,
                    input_second_moment, output_grad_var)


@lru_cache(maxsize=256)
def _predict(act: Activation, sigmas: tuple[tuple[float, float], ...],
             widening: tuple[float, ...], input_second_moment: float,
             output_grad_var: float) -> Prediction:
    preact: list[float] = []
    carried = input_second_moment  # E[h²] of the layer's input
    for sw2, sb2 in sigmas:
        q = sw2 * carried + sb2
        preact.append(q)
        carried = float(second_moment(act, q)) if math.isfinite(q) else math.inf
    # Each quadrature call costs far more to set up than to evaluate: all layers at once.
    q = _as_q(preact)
    finite = torch.isfinite(q)
    act_var = torch.full_like(q, math.nan)
    slopes = torch.full_like(q, math.nan)
    if finite.any():
        act_var[finite] = second_moment(act, q[finite]) - first_moment(act, q[finite]) ** 2
        slopes[finite] = slope_moment(act, q[finite])
    act_var, slopes = act_var.tolist(), slopes.tolist()
    grad = [output_grad_var]
    for (sw2, _), ratio, slope in zip(sigmas[:0:-1], widening[::-1], slopes[:0:-1]):
        grad.append(grad[-1] * sw2 * ratio * slope)
    grad.reverse()
    sw2, sb2 = sigmas[-1]
    summary = mean_field(act, sw2, sb2, q_start=preact[0] if math.isfinite(preact[0]) else 1.0)
    return Prediction(tuple(preact), tuple(act_var), tuple(grad), summary)


__all__ = [
    "MeanField", "Prediction", "chi1", "depth_scale", "first_moment", "fixed_point",
    "layer_sigmas",
    "length_map", "mean_field", "phase", "positively_homogeneous", "predict", "second_moment",
    "slope_moment", "theory_unavailable_reason",
]


# --------------------------------------------------------------------------------------------------
# The order-to-chaos phase diagram (Poole et al. 2016, Fig. 2; Schoenholz et al. 2017, Fig. 1)
#
# The length map needs only E[φ²](q) and E[φ'²](q). Both are tabulated once per activation on a
# log grid of q and interpolated with cubic splines in ln q, so a whole grid of (σ_w², σ_b²) is
# solved at once: bracket q* on the table's nodes, then bisect on the splines.

_TABLE_PER_DECADE = 24   # spline knots per decade of q in [1e-8, 1e8]: error about 2e-7
_SPARSE_PER_DECADE = 8   # beyond, where the moments are nearly powers of q: about 2e-5
_BRACKET_EVERY = 8       # bracket q* on every 8th knot (3 per decade), then bisect
_BISECT_TOL = 1e-12      # in ln q
MAX_GRID_SIDE = 200
MAX_SIGMA2 = 1e4
DEFAULT_GRID_SIDE = 100
TRAINABLE_DEPTHS_PER_SCALE = 6.0  # Schoenholz et al. 2017, Fig. 5: trainable up to L ≈ 6ξ_c


@dataclass(frozen=True)
class _MomentTable:
    log_q: np.ndarray
    second: np.ndarray
    second_spline: interpolate.CubicSpline
    slope_spline: interpolate.CubicSpline


@lru_cache(maxsize=None)
def _moment_table(activation: Activation) -> _MomentTable:
    stops = [_TINY_Q, 1e-8, 1e8, _HUGE_Q]
    density = [_SPARSE_PER_DECADE, _TABLE_PER_DECADE, _SPARSE_PER_DECADE]
    log_q = np.unique(np.concatenate([
        np.linspace(math.log(a), math.log(b), round(math.log10(b / a) * per) + 1)
        for a, b, per in zip(stops, stops[1:], density)]))
    q = torch.as_tensor(np.exp(log_q))
    second = second_moment(activation, q).numpy()
    slope = slope_moment(activation, q).numpy()
    return _MomentTable(log_q, second, interpolate.CubicSpline(log_q, second),
                        interpolate.CubicSpline(log_q, slope))


def _as_activation(activation: str | Activation) -> Activation:
    return get_activation(activation) if isinstance(activation, str) else activation


def fixed_points(activation: str | Activation, sigma_w2, sigma_b2,
                 q_start: float = 1.0) -> np.ndarray:
    """:func:`fixed_point` for many ``(σ_w², σ_b²)`` at once (arrays broadcast); NaN where ``q``
    diverges, 0 where it collapses.

    Same rule as the scalar version -- the first root of ``σ_w² E[φ²](q) + σ_b² − q`` from
    ``q_start`` in the direction of the first step -- on the splined moments (relative error in
    ``q*`` about 1e-7 away from criticality).
    """
    act = _as_activation(activation)
    table = _moment_table(act)
    sw, sb = (a.astype(np.float64).ravel() for a in np.broadcast_arrays(sigma_w2, sigma_b2))
    shape = np.broadcast_shapes(np.shape(sigma_w2), np.shape(sigma_b2))
    start_gap = sw * float(second_moment(act, q_start)) + sb - q_start
    log_start = math.log(q_start)
    q = np.full(sw.shape, q_start)  # kept where the start is already fixed
    # ln q on either side of each root: the map lies above the diagonal at `above`, below at `below`
    above, below = np.zeros_like(sw), np.zeros_like(sw)
    open_ = np.zeros(sw.shape, dtype=bool)
    knots = table.log_q[::_BRACKET_EVERY]
    second = table.second[::_BRACKET_EVERY]
    for rising in (True, False):
        chosen = (start_gap > 0 if rising else start_gap < 0)
        chosen &= np.abs(start_gap) > 1e-12 * max(q_start, 1.0)
        if not chosen.any():
            continue
        ahead = knots > log_start if rising else knots < log_start
        outward = slice(None, None, 1 if rising else -1)
        steps, moments = knots[ahead][outward], second[ahead][outward]
        gaps = sw[chosen, None] * moments + sb[chosen, None] - np.exp(steps)
        crossed = gaps <= 0 if rising else gaps >= 0
        found = crossed.any(axis=1)
        k = crossed.argmax(axis=1)
        near = np.where(k == 0, log_start, steps[np.maximum(k - 1, 0)])
        far = steps[k]
        idx = np.flatnonzero(chosen)
        q[idx[~found]] = np.nan if rising else 0.0
        idx, near, far = idx[found], near[found], far[found]
        above[idx], below[idx] = (near, far) if rising else (far, near)
        open_[idx] = True
    idx = np.flatnonzero(open_)
    hi, lo = above[idx], below[idx]
    w, b = sw[idx], sb[idx]
    while len(idx) and np.max(np.abs(hi - lo)) > _BISECT_TOL:
        mid = (hi + lo) / 2
        up = w * table.second_spline(mid) + b - np.exp(mid) > 0
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    q[idx] = np.exp((hi + lo) / 2)
    q[q < _UNRESOLVED_Q] = 0.0
    return q.reshape(shape)


def chi1_many(activation: str | Activation, q_star, sigma_w2) -> np.ndarray:
    """``χ₁ = σ_w² E[φ'(√q* z)²]`` for arrays, read off the splined table; ``q*`` NaN (diverging)
    takes the large-``q`` limit and ``q* = 0`` the small-``q`` one, as :func:`chi1` does."""
    table = _moment_table(_as_activation(activation))
    q = np.asarray(q_star, dtype=np.float64)
    log_q = np.log(np.clip(np.nan_to_num(q, nan=_HUGE_Q), _TINY_Q, _HUGE_Q))
    return np.asarray(sigma_w2, dtype=np.float64) * table.slope_spline(log_q)


def phase_grid(activation: str | Activation, sigma_w2, sigma_b2,
               q_start: float = 1.0) -> pd.DataFrame:
    """χ₁ over the grid ``sigma_w2 × sigma_b2`` (two 1-D axes): one row per point, columns
    ``sigma_w2, sigma_b2, q_star, chi1`` (``q_star`` NaN where the length map diverges)."""
    w_axis, b_axis = _axis("sigma_w2", sigma_w2), _axis("sigma_b2", sigma_b2)
    w, b = (a.ravel() for a in np.meshgrid(w_axis, b_axis, indexing="ij"))
    q = fixed_points(activation, w, b, q_start)
    return pd.DataFrame({"sigma_w2": w, "sigma_b2": b, "q_star": q,
                         "chi1": chi1_many(activation, q, w)})


def _axis(name: str, values, most: int = MAX_GRID_SIDE) -> np.ndarray:
    axis = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if axis.ndim != 1 or not 1 <= len(axis) <= most:
        raise InvalidSpec(name, f"{axis.size} values", f"1 to {most} values")
    if not np.all(np.isfinite(axis)) or axis.min() < 0 or axis.max() > MAX_SIGMA2:
        shown = axis.tolist() if axis.size > 1 else float(axis[0])
        raise InvalidSpec(name, shown, f"a number in [0, {MAX_SIGMA2:g}]")
    return axis


def critical_line(activation: str | Activation, sigma_b2, sigma_w2_max: float,
                  q_start: float = 1.0, scan: int = 128) -> pd.DataFrame:
    """Where χ₁ = 1: columns ``sigma_b2, sigma_w2``, sorted by ``sigma_b2``.

    For each σ_b², χ₁ is scanned over ``scan`` values of σ_w² in (0, ``sigma_w2_max``] and every
    crossing of 1 is bisected to 1e-10·``sigma_w2_max``. A σ_b² with no crossing in range has no
    row; one with several has several. Where χ₁ jumps over 1 instead -- the stable ``q*`` vanishes
    and ``q`` runs off to infinity, as for GELU and SiLU at small σ_b² -- the phases meet but
    nothing is critical, and the jump is left out.
    """
    b_axis = _axis("sigma_b2", sigma_b2)
    w_scan = _axis("sigma_w2", np.linspace(0.0, sigma_w2_max, scan + 1)[1:], most=scan)

    def chi(w, b):
        return chi1_many(activation, fixed_points(activation, w, b, q_start), w)

    above = chi(w_scan[:, None], b_axis[None, :]) >= 1.0
    rows, cols = np.nonzero(above[1:] != above[:-1])
    lo, hi, b = w_scan[rows], w_scan[rows + 1], b_axis[cols]
    lo_chaotic = above[rows, cols]
    while len(lo) and np.max(hi - lo) > 1e-10 * sigma_w2_max:
        mid = (lo + hi) / 2
        same = (chi(mid, b) >= 1.0) == lo_chaotic
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    w = (lo + hi) / 2
    critical = np.abs(chi(w, b) - 1.0) < 1e-3
    line = pd.DataFrame({"sigma_b2": b[critical], "sigma_w2": w[critical]})
    return line.sort_values(["sigma_b2", "sigma_w2"], ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Correlations between two inputs, and the depth scale on the chaotic side


def _pair_expectation(activation: Activation, q: float, c: float, slope: bool) -> float:
    """``E[f(u₁) f(u₂)]`` for ``(u₁, u₂)`` Gaussian with variances ``q`` and correlation ``c``;
    ``f = φ'`` if ``slope`` else ``φ``.

    Written as ``E_{z₁}[f(√q z₁) E_{z₂}[f(√q (c z₁ + √(1−c²) z₂))]]`` (Poole et al. 2016, eq. 5),
    so each inner rule can put its panels at its own kink, ``z₂ = −c z₁ / √(1−c²)``.
    """
    def f(u: torch.Tensor) -> torch.Tensor:
        return _slope(activation, u) if slope else activation.fn(u)

    scale = torch.tensor(math.sqrt(q), dtype=torch.float64)
    z1, w1 = _gaussian_rule(scale, None, *_PAIR_RULE)
    mean = scale * c * z1
    spread = scale * math.sqrt(max(1.0 - c * c, 0.0))
    inner_scale = torch.full_like(z1, float(spread))
    z2, w2 = _gaussian_rule(inner_scale, mean / spread.clamp(min=_TINY_Q), *_PAIR_RULE)
    inner = (f(mean.unsqueeze(-1) + spread * z2) * w2).sum(-1)
    return float((f(scale * z1) * w1 * inner).sum())


def correlation_map(activation: str | Activation, c: float, q_star: float, sigma_w2: float,
                    sigma_b2: float) -> float:
    """The correlation of two inputs one layer deeper (Poole et al. 2016, eq. 5)::

        c^{l+1} = (σ_w² E[φ(u₁) φ(u₂)] + σ_b²) / q*,   u₁ = √q* z₁,  u₂ = √q* (c z₁ + √(1−c²) z₂)
    """
    act = _as_activation(activation)
    return (sigma_w2 * _pair_expectation(act, q_star, c, slope=False) + sigma_b2) / q_star


def correlation_slope(activation: str | Activation, c: float, q_star: float,
                      sigma_w2: float) -> float:
    """``χ_c = ∂c^{l+1}/∂c^l = σ_w² E[φ'(u₁) φ'(u₂)]`` (Schoenholz et al. 2017, eq. 8); at c = 1
    it is χ₁."""
    return sigma_w2 * _pair_expectation(_as_activation(activation), q_star, c, slope=True)


def correlation_fixed_point(activation: str | Activation, q_star: float, sigma_w2: float,
                            sigma_b2: float) -> float:
    """The correlation ``c*`` that two inputs settle at with depth: 1 in the ordered phase, the
    largest fixed point of the correlation map below 1 in the chaotic one.

    On [0, 1] the map is a power series in c with nonnegative coefficients (Mehler's expansion),
    hence convex; with ``c = 1`` repelling (slope χ₁ > 1) the map lies below the diagonal between
    ``c*`` and 1, which brackets ``c*`` from above.
    """
    act = _as_activation(activation)

    def gap(c: float) -> float:
        return correlation_map(act, c, q_star, sigma_w2, sigma_b2) - c

    if chi1(act, sigma_w2, q_star) <= 1.0 + _CRITICAL_TOL:
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
    act = _as_activation(activation)
    if q_star is None or q_star <= 0.0 or chi1(act, sigma_w2, q_star) <= 1.0 + _CRITICAL_TOL:
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


def _linear(act: Activation) -> bool:
    """A positively homogeneous φ that is also odd is the identity up to a factor."""
    one = torch.ones(1, dtype=torch.float64)
    return positively_homogeneous(act) and bool(torch.allclose(act.fn(-one), -act.fn(one)))


def _scale_only_sentence(act: Activation, summary: MeanField, depth: int) -> str:
    """What holds for a positively homogeneous φ without bias, in place of a depth scale."""
    chi = summary.chi1
    if chi == 0.0:
        return "σ_w² = 0: no signal passes even one layer."
    keep = 1.0 / float(second_moment(act, 1.0))
    shape = ("stay exactly as they are (the network is linear)" if _linear(act) else
             "rise towards 1 only polynomially with depth, whatever σ_w² is")
    sentence = (f"{act.name} with no bias is positively homogeneous (φ(a·u) = a·φ(u) for a > 0), "
                f"so σ_w² = {summary.sigma_w2:.3g} sets only the scale: every layer multiplies the "
                f"variance of the signal, and of the gradients going back, by χ₁ = σ_w²·E[φ(z)²] "
                f"= {_near_one(chi)}")
    limit = "no depth scale ξ_c limits how deep it trains"
    if summary.phase == "critical":
        sentence += ", which keeps it"
    elif depth > 1:
        sentence += (f", {_power(chi, depth - 1)} from layer 1 to layer {depth} "
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


def depth_reach(activation: str | Activation, summary: MeanField, depth: int) -> DepthReach:
    """Compare ``depth`` with the trainable depth 6 ξ_c, in numbers and in one sentence."""
    def reach(xi, trainable, ratio, sentence) -> DepthReach:
        return DepthReach(depth, summary.phase, xi, trainable, ratio, sentence)

    if summary.scale_only:
        return reach(None, None, None, _scale_only_sentence(_as_activation(activation), summary,
                                                            depth))
    if summary.phase == "critical":
        return reach(None, None, None,
                     f"At the edge of chaos (χ₁ = {summary.chi1:.4g}) correlations decay slower "
                     f"than exponentially: in the mean-field limit signals reach any depth, "
                     f"these {depth} layers included.")
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
    why = f"6 ξ_c with ξ_c = {xi:.3g}, {summary.phase} phase"
    if trainable == 0.0:
        return reach(xi, trainable, None,
                     f"χ₁ = {summary.chi1:.3g}: no signal passes even one layer ({why}).")
    ratio = depth / trainable
    if ratio > 1.0:
        sentence = (f"This network is {_times(ratio)}× deeper than signals can travel: {depth} "
                    f"layers against about {trainable:.3g} ({why}).")
    else:
        sentence = (f"Signals can travel about {trainable:.3g} layers ({why}): these {depth} "
                    "layers are within reach.")
    return reach(xi, trainable, ratio, sentence)


@lru_cache(maxsize=None)
def _critical_w_at_zero_bias(activation: Activation) -> float | None:
    line = critical_line(activation, [0.0], MAX_SIGMA2 / 10, scan=1000)
    return None if line.empty else float(line["sigma_w2"].iloc[0])


def phase_axes(activation: str | Activation, point: tuple[float, float] | None = None,
               n: int = DEFAULT_GRID_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Default axes: σ_w² on [0, W], σ_b² on [0, B], ``n`` values each.

    W is at least 4 and 1.5× the critical σ_w² at σ_b² = 0 (sigmoid's is above 100), so the
    critical line is in view; the window grows to take in ``point`` up to 3× that size, and
    leaves a farther point out (``PhaseDiagram.point_in_view``).
    """
    act = _as_activation(activation)
    critical = _critical_w_at_zero_bias(act)
    w_max, b_max = max(4.0, 1.5 * (critical or 0.0)), 0.5
    if point is not None:
        w_max = max(w_max, min(1.1 * point[0], 3 * w_max))
        b_max = max(b_max, min(1.1 * point[1], 3 * b_max))
    return np.linspace(0.0, w_max, n), np.linspace(0.0, b_max, n)


@dataclass(frozen=True)
class PhaseDiagram:
    """Everything the theory section shows for one network.

    ``grid``: ``sigma_w2, sigma_b2, q_star, chi1``; ``critical_line``: ``sigma_b2, sigma_w2``;
    ``point``: one row ``sigma_w2, sigma_b2, q_star, chi1, phase`` for the network (no rows
    when mean-field theory does not apply, and ``note`` says why).
    """

    activation: str
    grid: pd.DataFrame
    critical_line: pd.DataFrame
    point: pd.DataFrame
    summary: MeanField | None
    reach: DepthReach | None
    note: str | None

    @property
    def point_in_view(self) -> bool:
        if self.point.empty:
            return False
        row = self.point.iloc[0]
        return bool(row.sigma_w2 <= self.grid.sigma_w2.max()
                    and row.sigma_b2 <= self.grid.sigma_b2.max())

    @property
    def caption(self) -> str:
        """What the two colours of the map mean for this activation, read off its grid."""
        act = get_activation(self.activation)
        ordered = ("Blue: ordered (χ₁ < 1): with a bias, deep layers settle at one variance q* "
                   "and forget how inputs differ; gradients fade.")
        if positively_homogeneous(act):
            kept = "stays as it is" if _linear(act) else "still rises to 1"
            return (f"{ordered} Along the bottom edge (σ_b² = 0) only the scale shrinks, by χ₁ "
                    f"per layer. Orange (χ₁ > 1) is not chaos for {act.name}: it is positively "
                    f"homogeneous (φ(a·u) = a·φ(u) for a > 0), so a σ_w² above the black line "
                    f"only makes the scale grow by about χ₁ per layer, without bound, while the "
                    f"correlation of two inputs {kept}.")
        chaotic = self.grid["chi1"] > 1.0
        diverging = (chaotic & self.grid["q_star"].isna()).sum() / max(chaotic.sum(), 1)
        explodes = (f"the variance grows without bound ({act.name} is close to linear for large "
                    "inputs): the scale explodes, as for ReLU above σ_w² = 2")
        if diverging == 1.0:
            return f"{ordered} Orange (χ₁ > 1): everywhere on this map {explodes}."
        text = (f"{ordered} Orange: chaotic (χ₁ > 1): nearby inputs fly apart layer by layer, "
                "and gradients explode.")
        if diverging > 0.0:
            text += f" In {diverging:.0%} of the orange area, though, {explodes}."
        return text

    def to_json_dict(self) -> dict:
        """The ``theory --json`` document (DESIGN.md); ``depth_scale`` is null unless ordered, and
        for a positively homogeneous activation without bias."""
        summary, reach = self.summary, self.reach
        return {
            "activation": self.activation,
            "sigma_w2": None if summary is None else summary.sigma_w2,
            "sigma_b2": None if summary is None else summary.sigma_b2,
            "q_star": None if summary is None else summary.q_star,
            "chi1": None if summary is None else summary.chi1,
            "depth_scale": None if summary is None else summary.depth_scale,
            "phase": None if summary is None else summary.phase,
            "chaotic_depth_scale": (reach.depth_scale if reach and reach.phase == "chaotic"
                                    else None),
            "trainable_depth": None if reach is None else reach.trainable_depth,
            "depth": None if reach is None else reach.depth,
            "depth_ratio": None if reach is None else reach.ratio,
            "reach": None if reach is None else reach.sentence,
            "note": self.note,
            "grid": self.grid[["sigma_w2", "sigma_b2", "chi1"]].to_dict("records"),
            "critical_line": self.critical_line.to_dict("records"),
        }


def phase_diagram(spec: NetworkSpec, n: int = DEFAULT_GRID_SIDE,
                  sigma: tuple[float, float] | None = None) -> PhaseDiagram:
    """The phase diagram of ``spec.activation`` with the network's point on it.

    The point is ``sigma = (σ_w², σ_b²)`` when given, else the last hidden layer's from the
    scheme and bias (the summary :func:`predict` reports). The grid is ``n × n``.
    """
    act = get_activation(spec.activation)
    note = None
    if sigma is not None:
        sw2, sb2 = (float(_axis(name, [v])[0]) for name, v in zip(("sigma_w2", "sigma_b2"), sigma))
        summary = mean_field(act, sw2, sb2)
    else:
        prediction = predict(spec)
        summary = None if prediction is None else prediction.summary
        note = theory_unavailable_reason(spec)
    return phase_map(act, summary, spec.depth, note, n)


def phase_map(activation: str | Activation, summary: MeanField | None, depth: int,
              note: str | None = None, n: int = DEFAULT_GRID_SIDE) -> PhaseDiagram:
    """The diagram around a network already summarized (``summary`` None: the map alone, and
    ``note`` says why). It depends on nothing else, so callers may cache it by these arguments:
    networks of other widths with the same σ_w², σ_b² share it."""
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_GRID_SIDE:
        raise InvalidSpec("grid", n, f"a whole number in [2, {MAX_GRID_SIDE}]")
    act = _as_activation(activation)
    where = None if summary is None else (summary.sigma_w2, summary.sigma_b2)
    w_axis, b_axis = phase_axes(act, where, n)
    grid = phase_grid(act, w_axis, b_axis)
    line = critical_line(act, b_axis, float(w_axis[-1]))
    if summary is None:
        point = pd.DataFrame(columns=["sigma_w2", "sigma_b2", "q_star", "chi1", "phase"])
        reach = None
    else:
        point = pd.DataFrame([{"sigma_w2": summary.sigma_w2, "sigma_b2": summary.sigma_b2,
                               "q_star": summary.q_star, "chi1": summary.chi1,
                               "phase": summary.phase}])
        reach = depth_reach(act, summary, depth)
    return PhaseDiagram(act.name, grid, line, point, summary, reach, note)


__all__ += [
    "DepthReach", "PhaseDiagram", "chaotic_depth_scale", "chi1_many", "correlation_fixed_point",
    "correlation_map", "correlation_slope", "critical_line", "depth_reach", "fixed_points",
    "phase_axes", "phase_diagram", "phase_grid", "phase_map",
]
