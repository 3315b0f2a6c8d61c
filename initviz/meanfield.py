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
from functools import lru_cache, cache

import numpy as np
import torch
from scipy import optimize

from initviz.activations import Activation, get_activation
from initviz.network import NetworkSpec

_PANELS = 16        # graded panels on each side of the kink
_PANEL_NODES = 12   # Gauss–Legendre nodes per panel
_Z_MAX = 12.0       # N(0, 1) puts under 1e-32 of its mass beyond ±12
TINY_Q = 1e-30  # where the fixed point is 0, slopes are taken at this q (the limit q → 0)
HUGE_Q = 1e12   # beyond this the length map is treated as diverging
CRITICAL_TOL = 1e-6
"""χ₁ within this of 1 is critical: :func:`phase` says so, :func:`depth_scale` has no ξ_c, and the
correlation map keeps c* = 1. One rule for all three, so no summary reads "critical" beside a
finite depth scale."""
TRAINABLE_DEPTHS_PER_SCALE = 6.0  # Schoenholz et al. 2017, Fig. 5: trainable up to L ≈ 6ξ_c
UNRESOLVED_Q = 1e-12
"""A fixed point below this is reported as 0. For φ(0) = 0, φ'(0) = 1 at σ_w² = 1, σ_b² = 0 (tanh
at criticality) the length map's gap to the diagonal is about −2q², under float64's resolution of
q itself once q < 1e-16: the root search then found "fixed points" like 9e-17 that are rounding,
where the true one is 0."""


@cache
def _legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.as_tensor(nodes), torch.as_tensor(weights)


def gaussian_rule(scale: torch.Tensor, center: torch.Tensor | None = None,
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
    nodes, weights = gaussian_rule(scale)
    return (activation.fn(scale.unsqueeze(-1) * nodes) ** power * weights).sum(-1)


def second_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ(√q z)²]`` for ``z ~ N(0, 1)``; ``q`` may be a scalar or an array."""
    return _moment(activation, q, 2)


def first_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ(√q z)]``: the mean of a unit's activation (nonzero for ReLU, sigmoid, ...)."""
    return _moment(activation, q, 1)


def derivative(activation: Activation, u: torch.Tensor) -> torch.Tensor:
    """``φ'(u)`` elementwise, by autograd."""
    u = u.detach().requires_grad_(True)
    (slope,) = torch.autograd.grad(activation.fn(u).sum(), u)
    return slope


def slope_moment(activation: Activation, q) -> torch.Tensor:
    """``E[φ'(√q z)²]`` for ``z ~ N(0, 1)``, the slope taken by autograd."""
    scale = _as_q(q).clamp(min=TINY_Q).sqrt()
    nodes, weights = gaussian_rule(scale)
    return (derivative(activation, scale.unsqueeze(-1) * nodes) ** 2 * weights).sum(-1)


def length_map(activation: Activation, q, sigma_w2: float, sigma_b2: float) -> torch.Tensor:
    return sigma_w2 * second_moment(activation, q) + sigma_b2


def fixed_point(activation: Activation, sigma_w2: float, sigma_b2: float,
                q_start: float = 1.0) -> float | None:
    """The fixed point ``q*`` that iterating the length map from ``q_start`` converges to.

    The map is increasing in ``q``, so iteration moves monotonically to the nearest fixed point in
    the direction of its first step: found here by a root search rather than by iterating, which
    near criticality converges only as 1/l. None if ``q`` grows without bound. Where every ``q``
    is a fixed point (ReLU at σ_w² = 2, σ_b² = 0), ``q_start`` itself is returned.

    Which to call: this one (brentq on the quadrature, relative error ~1e-12) for one network;
    :func:`initviz.phase.fixed_points` for many ``(σ_w², σ_b²)`` at once (splines, ~1e-7).
    """
    if positively_homogeneous(activation):
        q = homogeneous_fixed_points(float(second_moment(activation, 1.0)), np.float64(sigma_w2),
                                     np.float64(sigma_b2), q_start)
        return None if np.isnan(q) else float(q)

    def gap(q: float) -> float:
        return float(length_map(activation, q, sigma_w2, sigma_b2)) - q

    start_gap = gap(q_start)
    if abs(start_gap) <= 1e-12 * max(q_start, 1.0):
        return q_start
    if start_gap > 0:
        grid = np.geomspace(q_start, HUGE_Q, 400)
    else:
        grid = np.concatenate([np.geomspace(q_start, TINY_Q, 400), [0.0]])
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
    return 0.0 if root < UNRESOLVED_Q else root


HOMOGENEOUS_CRITICAL_TOL = 1e-9
"""How near 1 the slope ``σ_w² E[φ(z)²]`` of a positively homogeneous φ's length map counts as
1 (σ_w² = 2 for ReLU): its quadrature is good to about 1e-12."""


def homogeneous_fixed_points(unit_second: float, sigma_w2, sigma_b2, q_start: float = 1.0):
    """The fixed point of a positively homogeneous φ's length map, in closed form.

    There ``E[φ(√q z)²] = q·E[φ(z)²]``, so the map ``q ↦ a·q + σ_b²`` is a line of slope
    ``a = σ_w² E[φ(z)²]``: below slope 1, ``q* = σ_b² / (1 − a)`` (0 without bias); at slope 1,
    every ``q`` is fixed without bias (``q_start`` is returned) and ``q`` grows by σ_b² per layer
    with it; above, ``q`` grows without bound. A root search on the quadrature would instead
    find a false root far out, where its rounding (about 1e-12 of ``q``) cancels σ_b².

    Args:
        unit_second: ``E[φ(z)²]`` for ``z ~ N(0, 1)``.
        sigma_w2, sigma_b2: arrays (or scalars) that broadcast.
        q_start: the length the iteration starts from.

    Returns:
        ``q*`` elementwise, NaN where ``q`` grows without bound.

    Example:
        >>> float(homogeneous_fixed_points(0.5, 1.0, 0.5))  # ReLU, σ_w² = 1: q* = 0.5 / 0.5
        1.0
    """
    slope = np.asarray(sigma_w2, dtype=np.float64) * unit_second
    bias = np.asarray(sigma_b2, dtype=np.float64)
    critical = np.abs(slope - 1.0) <= HOMOGENEOUS_CRITICAL_TOL
    with np.errstate(divide="ignore", invalid="ignore"):
        below = bias / (1.0 - slope)
    at_one = np.where(bias > 0.0, np.nan, q_start)
    return np.where(critical, at_one, np.where(slope < 1.0, below, np.nan))


def chi1(activation: Activation, sigma_w2: float, q: float | None) -> float:
    """``χ₁ = σ_w² E[φ'(√q z)²]``; with ``q`` None (diverging), its limit at large ``q``."""
    return float(sigma_w2 * slope_moment(activation, HUGE_Q if q is None else q))


def is_critical(chi: float) -> bool:
    """Whether χ₁ is 1 within :data:`CRITICAL_TOL`: the edge of chaos."""
    return abs(chi - 1.0) < CRITICAL_TOL


def depth_scale(chi: float) -> float | None:
    """``ξ_c = −1/ln χ₁`` in the ordered phase; None at or beyond criticality."""
    if chi <= 0.0:
        return 0.0
    if chi >= 1.0 or is_critical(chi):
        return None
    return -1.0 / math.log(chi)


def phase(chi: float, homogeneous: bool = False, sigma_b2: float = 0.0) -> str:
    """ordered / critical / chaotic by χ₁, the order-to-chaos transition (Poole et al. 2016).

    A positively homogeneous φ (:func:`positively_homogeneous`) has no chaos to enter: above
    critical the scale grows without bound ("growing") while correlations still rise to 1;
    below it, without a bias to hold a fixed variance, only the scale shrinks ("shrinking").
    """
    if is_critical(chi):
        return "critical"
    if homogeneous and chi > 1.0:
        return "growing"
    if homogeneous and sigma_b2 == 0.0:
        return "shrinking"
    return "ordered" if chi < 1.0 else "chaotic"


def as_activation(activation: str | Activation) -> Activation:
    """The :class:`Activation` itself, or the one a name stands for."""
    return get_activation(activation) if isinstance(activation, str) else activation


@cache
def positively_homogeneous(activation: Activation) -> bool:
    """Whether ``φ(a·u) = a·φ(u)`` for every ``a > 0`` (relu, leaky_relu, linear).

    Then ``E[φ(√q z)²] = q·E[φ(z)²]``: σ_w² only multiplies the scale by the same factor at every
    layer, and the correlation map does not depend on q or σ_w² at all. Checked on a grid.
    """
    u = torch.linspace(-20.0, 20.0, 401, dtype=torch.float64)
    return all(torch.allclose(activation.fn(a * u), a * activation.fn(u), rtol=1e-12, atol=0.0)
               for a in (1e-3, 0.5, 3.0, 1e3))


def is_linear(act: Activation) -> bool:
    """A positively homogeneous φ that is also odd is the identity up to a factor."""
    one = torch.ones(1, dtype=torch.float64)
    return positively_homogeneous(act) and bool(torch.allclose(act.fn(-one), -act.fn(one)))


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
        if self.depth_scale is None:
            return None
        return TRAINABLE_DEPTHS_PER_SCALE * self.depth_scale


def mean_field(activation: str | Activation, sigma_w2: float, sigma_b2: float,
               q_start: float = 1.0) -> MeanField:
    r"""The mean-field summary of a deep stack of layers with one ``(σ_w², σ_b²)``.

    ``q*`` is the fixed point of the length map reached from ``q_start`` (:func:`fixed_point`),
    ``χ₁ = σ_w² E[φ'(√q* z)²]``, ``ξ_c = −1/ln χ₁`` on the ordered side, and the phase by χ₁
    (Poole et al. 2016; Schoenholz et al. 2017).

    Args:
        activation: an activation name (a key of :data:`initviz.activations.ACTIVATIONS`) or one
            :class:`~initviz.activations.Activation`
        sigma_w2: ``fan_in · Var(W)``
        sigma_b2: ``Var(b)``
        q_start: the pre-activation variance the recursion starts from

    Returns:
        a :class:`MeanField`; its ``q_star`` is None where ``q`` grows without bound

    Examples:
        >>> mean_field("tanh", 4.0, 0.0).phase  # χ₁ = 1.36
        'chaotic'
    """
    act = as_activation(activation)
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
    scheme, bias = spec.resolved_scheme, spec.resolved_bias
    for fan_in, fan_out in spec.fans:
        if scheme.weight_mean(fan_in, fan_out, spec.scheme_params) != 0.0:
            return "the weights do not have mean 0, which the mean-field theory assumes"
        if bias.weight_mean(fan_in, fan_out, spec.bias_params) != 0.0:
            return "the biases do not have mean 0, which the mean-field theory assumes"
    return None


def layer_sigmas(spec: NetworkSpec) -> list[tuple[float, float]] | None:
    """``(σ_w², σ_b²)`` of every layer: ``fan_in·Var(W)`` and ``Var(b)`` from the schemes' laws
    (the weights' as :meth:`~initviz.archs.Architecture.weight_laws` gives them)."""
    if theory_unavailable_reason(spec) is not None:
        return None
    bias = spec.resolved_bias
    return [
        (_significant(fan_in * law.std() ** 2),
         _significant(bias.weight_std(fan_in, fan_out, spec.bias_params) ** 2))
        for (fan_in, fan_out), law in zip(spec.fans, spec.architecture.weight_laws(spec))
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
    """Mean-field predictions for one network, entry by entry (index 0 is entry 1).

    For a plain stack ``preact_var`` is each layer's pre-activation variance and ``act_var`` the
    variance of its activation; for a residual one, ``preact_var`` is the variance of what each
    block adds to the stream (``a²·V_branch``) and ``act_var`` the stream's variance after it.
    ``summary`` is the deep-layer fixed point, χ₁ and ξ_c, None where the network has none (a
    residual stream does not settle at a fixed point)."""

    preact_var: tuple[float, ...]
    act_var: tuple[float, ...]
    grad_var: tuple[float, ...]
    summary: MeanField | None


def predict(spec: NetworkSpec, input_second_moment: float = 1.0,
            output_grad_var: float = 1.0) -> Prediction | None:
    r"""The mean-field prediction of every probe entry of ``spec``, by its architecture: the
    length map of a plain stack (:func:`predict_stack`), the residual stream's recursion
    (:func:`predict_residual`).

    Args:
        spec: the network
        input_second_moment: ``E[x²]`` of the input
        output_grad_var: the variance of ``dL/dh`` at the last entry's output

    Returns:
        a :class:`Prediction` (index 0 is entry 1), or None where mean-field theory does not
        apply (:func:`theory_unavailable_reason` says why)

    Examples:
        >>> p = predict(NetworkSpec.stack(64, 5, activation="tanh", scheme="xavier_normal"))
        >>> p.summary.phase  # σ_w² = 1, σ_b² = 0: tanh's edge of chaos
        'critical'
    """
    return spec.architecture.predict(spec, input_second_moment, output_grad_var)


def predict_stack(spec: NetworkSpec, input_second_moment: float = 1.0,
                  output_grad_var: float = 1.0) -> Prediction | None:
    r"""Per-layer pre-activation variance and gradient variance of a plain stack, and the
    deep-layer summary.

    Forward, ``q^l = σ_{w,l}² E[φ(√q^{l−1} z)²] + σ_{b,l}²`` from
    ``q^1 = σ_{w,1}² E[x²] + σ_{b,1}²``
    (Poole et al. 2016, eq. 3); backward, ``Var(dL/dh)`` is multiplied per layer by
    ``σ_w² (fan_out/fan_in) E[φ'(√q z)²]`` (Schoenholz et al. 2017, eq. 12).

    Args:
        spec: the network; its scheme and bias give every layer's ``(σ_w², σ_b²)``
        input_second_moment: ``E[x²]`` of the input
        output_grad_var: the variance of ``dL/dh`` at the last hidden layer

    Returns:
        a :class:`Prediction` (index 0 is layer 1) whose ``summary`` (``q*``, χ₁, ξ_c) uses the
        last layer's σ's, or None where mean-field theory does not apply
    """
    sigmas = layer_sigmas(spec)
    if sigmas is None:
        return None
    # The network enters only through its σ's and how much each layer widens the signal, so a
    # width change that keeps them (Kaiming, orthogonal on a uniform stack) costs nothing.
    widening = tuple(fan_out / fan_in for fan_in, fan_out in spec.fans[1:])
    return _predict(spec.resolved_activation, tuple(sigmas), widening,
                    input_second_moment, output_grad_var)


def predict_layers(activation: str | Activation, sigmas: tuple[tuple[float, float], ...],
                   input_second_moment: float = 1.0, output_grad_var: float = 1.0) -> Prediction:
    r""":func:`predict_stack` of layers of one width given by their ``(σ_w², σ_b²)``, one pair per
    layer (a recurrent net's time steps, whose σ's are not one scheme's at the layers' fans).

    Args:
        activation: an activation name or :class:`~initviz.activations.Activation`
        sigmas: ``(σ_w², σ_b²)`` of layer 1, 2, ...
        input_second_moment: ``E[x²]`` of layer 1's input
        output_grad_var: the variance of ``dL/dh`` at the last layer

    Returns:
        a :class:`Prediction` (index 0 is layer 1), its summary from the last layer's σ's
    """
    return _predict(as_activation(activation), tuple(sigmas), (1.0,) * (len(sigmas) - 1),
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


def residual_stream(second, slope, branch: tuple[tuple[float, float], tuple[float, float]],
                    alpha2: float, q0: float, depth: int, output_grad_var: float = 1.0,
                    homogeneous: bool = False) -> Prediction:
    r"""The residual stream's variance, block by block, for blocks ``h ← h + a·branch(h)`` with
    a two-layer pre-activation branch ``φ → Linear(σ_{w1}², σ_{b1}²) → φ → Linear(σ_{w2}²,
    σ_{b2}²)``.

    Forward, the branch is independent of the stream it reads at init (its weights are fresh),
    so the variances add (Hanin & Rolnick 2018; Zhang et al. 2019, Fixup)::

        q_{l+1} = q_l + a²·V_branch(q_l),
        V_branch(q) = σ_{w2}²·E[φ(√q₁ z)²] + σ_{b2}²,  q₁ = σ_{w1}²·E[φ(√q z)²] + σ_{b1}².

    Backward, ``dL/dh_l = dL/dh_{l+1}·(I + a·J_branch)``, so ``Var(dL/dh)`` is multiplied per
    block by ``1 + a²·σ_{w1}²E[φ'(√q_l z)²]·σ_{w2}²E[φ'(√q₁ z)²]``. With ReLU and Kaiming both
    factors are 1: a plain stream doubles per block, forward and backward; with the last Linear
    scaled by 1/√L it grows by (1 + 1/L)^L → e over L blocks.

    Args:
        second, slope: ``q ↦ E[φ(√q z)²]`` and ``q ↦ E[φ'(√q z)²]`` for float ``q``.
        branch: ``((σ_{w1}², σ_{b1}²), (σ_{w2}², σ_{b2}²))`` of the branch's Linears.
        alpha2: ``a²``, the square of the branch's multiplier.
        q0: the variance of the stream entering block 1.
        depth: the number of blocks.
        output_grad_var: ``Var(dL/dh)`` at the last block's output.
        homogeneous: φ positively homogeneous, so ``E[φ(√q z)²] = q·E[φ(z)²]`` and the slope
            moment is constant: both are taken from ``q = 1`` at every ``q``. Otherwise the
            moments are read at each ``q`` up to :data:`HUGE_Q`, and the stream is reported as
            diverged (inf) beyond.

    Returns:
        a :class:`Prediction`: ``preact_var`` what each block adds, ``act_var`` the stream after
        it, ``grad_var`` the gradient's variance at its output; ``summary`` None.
    """
    (sw1, sb1), (sw2, sb2) = branch

    unit_second, unit_slope = float(second(1.0)), float(slope(1.0))

    def moments(q: float) -> tuple[float, float]:
        if homogeneous:  # exact at every q, and no table to leave
            return (q * unit_second, unit_slope) if math.isfinite(q) else (math.inf, math.nan)
        if q <= HUGE_Q:
            return float(second(q)), float(slope(q))
        return math.inf, math.nan

    added, stream, gain = [], [], []
    q = q0
    for _ in range(depth):
        m_in, s_in = moments(q)
        q1 = sw1 * m_in + sb1
        m_mid, s_mid = moments(q1)
        v = alpha2 * (sw2 * m_mid + sb2) if alpha2 else 0.0  # a = 0 (ReZero) adds exactly 0
        gain.append(1.0 + (alpha2 * sw1 * s_in * sw2 * s_mid if alpha2 else 0.0))
        q = q + v
        added.append(v)
        stream.append(q)
    grad = [output_grad_var]
    for factor in gain[:0:-1]:
        grad.append(grad[-1] * factor)
    grad.reverse()
    return Prediction(tuple(added), tuple(stream), tuple(grad), None)


__all__ = [
    "CRITICAL_TOL", "HUGE_Q", "MeanField", "Prediction", "TINY_Q", "TRAINABLE_DEPTHS_PER_SCALE",
    "UNRESOLVED_Q", "as_activation", "chi1", "depth_scale", "derivative", "first_moment",
    "fixed_point", "gaussian_rule", "is_critical", "is_linear", "layer_sigmas", "length_map",
    "mean_field", "phase", "positively_homogeneous", "predict", "predict_layers", "predict_stack",
    "residual_stream", "second_moment", "slope_moment",
    "theory_unavailable_reason",
]
