r"""The order-to-chaos phase diagram (Poole et al. 2016, Fig. 2; Schoenholz et al. 2017, Fig. 1).

χ₁ over a grid of ``(σ_w², σ_b²)``, the critical line χ₁ = 1, and the network's point on it. The
length map needs only ``E[φ²](q)`` and ``E[φ'²](q)``: both are tabulated once per activation on a
log grid of ``q`` (by :mod:`initviz.meanfield`'s quadrature) and interpolated with cubic splines in
``ln q``, so a whole grid is solved at once: ``q*`` is bracketed on the table's nodes, then every
bracket is refined together by ``scipy.optimize.elementwise.find_root``.

For one ``(σ_w², σ_b²)`` call :func:`initviz.meanfield.mean_field` (exact quadrature, brentq);
for many, :func:`fixed_points` and :func:`chi1_many` here (splines, relative error ~1e-7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import torch
from scipy import interpolate
from scipy.optimize import elementwise

from initviz.activations import Activation, get_activation
from initviz.errors import InvalidSpec, check_int
from initviz.meanfield import (HUGE_Q, TINY_Q, UNRESOLVED_Q, MeanField, as_activation,
                               homogeneous_fixed_points, is_linear,
                               mean_field, positively_homogeneous, predict, second_moment,
                               slope_moment, theory_unavailable_reason)
from initviz.network import NetworkSpec
from initviz.reach import DepthReach, depth_reach

_TABLE_PER_DECADE = 24   # spline knots per decade of q in [1e-8, 1e8]: error about 2e-7
_SPARSE_PER_DECADE = 8   # beyond, where the moments are nearly powers of q: about 2e-5
_BRACKET_EVERY = 8       # bracket q* on every 8th knot (3 per decade), then refine
_ROOT_TOL = 1e-12        # in ln q
MAX_GRID_SIDE = 200
MAX_SIGMA2 = 1e4
DEFAULT_GRID_SIDE = 100


@dataclass(frozen=True)
class _MomentTable:
    log_q: np.ndarray
    second: np.ndarray
    second_spline: interpolate.CubicSpline
    slope_spline: interpolate.CubicSpline


@cache
def _moment_table(activation: Activation) -> _MomentTable:
    stops = [TINY_Q, 1e-8, 1e8, HUGE_Q]
    density = [_SPARSE_PER_DECADE, _TABLE_PER_DECADE, _SPARSE_PER_DECADE]
    log_q = np.unique(np.concatenate([
        np.linspace(math.log(a), math.log(b), round(math.log10(b / a) * per) + 1)
        for a, b, per in zip(stops, stops[1:], density)]))
    q = torch.as_tensor(np.exp(log_q))
    second = second_moment(activation, q).numpy()
    slope = slope_moment(activation, q).numpy()
    return _MomentTable(log_q, second, interpolate.CubicSpline(log_q, second),
                        interpolate.CubicSpline(log_q, slope))


def splined_moments(activation: str | Activation):
    """``q ↦ E[φ(√q z)²]`` and ``q ↦ E[φ'(√q z)²]`` for ``q`` in [TINY_Q, HUGE_Q], read off the
    splined table (relative error about 2e-7): a recursion over thousands of blocks calls them
    thousands of times, where the quadrature costs about a millisecond a call."""
    table = _moment_table(as_activation(activation))

    def at(spline):
        return lambda q: float(spline(math.log(min(max(q, TINY_Q), HUGE_Q))))

    return at(table.second_spline), at(table.slope_spline)


def fixed_points(activation: str | Activation, sigma_w2, sigma_b2,
                 q_start: float = 1.0) -> np.ndarray:
    """:func:`~initviz.meanfield.fixed_point` for many ``(σ_w², σ_b²)`` at once (arrays
    broadcast); NaN where ``q`` diverges, 0 where it collapses.

    Same rule as the scalar version -- the first root of ``σ_w² E[φ²](q) + σ_b² − q`` from
    ``q_start`` in the direction of the first step -- on the splined moments (relative error in
    ``q*`` about 1e-7 away from criticality), bracketed on the table's knots and refined by
    ``scipy.optimize.elementwise.find_root`` to 1e-12 in ``ln q``.

    Which to call: this one for a grid (the phase diagram, the critical line), where one table
    per activation serves every point; :func:`~initviz.meanfield.fixed_point` (brentq on the
    quadrature itself, ~1e-12) for one network's summary, where the splines' 1e-7 would show.
    """
    act = as_activation(activation)
    if positively_homogeneous(act):  # a line: closed form, as in the scalar version
        return homogeneous_fixed_points(float(second_moment(act, 1.0)), *np.broadcast_arrays(
            np.asarray(sigma_w2, dtype=np.float64), np.asarray(sigma_b2, dtype=np.float64)),
            q_start)
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

    def gap(log_q, w, b):
        return w * table.second_spline(log_q) + b - np.exp(log_q)

    q[idx] = np.exp(_root(gap, above[idx], below[idx], (sw[idx], sb[idx]), _ROOT_TOL))
    q[q < UNRESOLVED_Q] = 0.0
    return q.reshape(shape)


def _root(f, one_end, other_end, args: tuple, tolerance: float) -> np.ndarray:
    """Roots of ``f(x, *args)`` elementwise, each bracketed by ``one_end`` and ``other_end`` (in
    either order), to ``tolerance`` in ``x`` (Chandrupatla's method; a jump across 0 in ``f`` is
    found as if it were a root)."""
    if len(one_end) == 0:
        return np.asarray(one_end, dtype=np.float64)
    low, high = np.minimum(one_end, other_end), np.maximum(one_end, other_end)
    found = elementwise.find_root(f, (low, high), args=args,
                                  tolerances={"xatol": tolerance, "xrtol": 0.0, "fatol": 0.0,
                                              "frtol": 0.0})
    return found.x


def chi1_many(activation: str | Activation, q_star, sigma_w2) -> np.ndarray:
    """``χ₁ = σ_w² E[φ'(√q* z)²]`` for arrays, read off the splined table; ``q*`` NaN (diverging)
    takes the large-``q`` limit and ``q* = 0`` the small-``q`` one, as :func:`chi1` does."""
    table = _moment_table(as_activation(activation))
    q = np.asarray(q_star, dtype=np.float64)
    log_q = np.log(np.clip(np.nan_to_num(q, nan=HUGE_Q), TINY_Q, HUGE_Q))
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
    crossing of 1 is refined by ``find_root`` to 1e-10·``sigma_w2_max``. A σ_b² with no crossing
    in range has no row; one with several has several. Where χ₁ jumps over 1 instead -- the stable
    ``q*`` vanishes and ``q`` runs off to infinity, as for GELU and SiLU at small σ_b² -- the
    phases meet but nothing is critical, and the jump is left out.
    """
    b_axis = _axis("sigma_b2", sigma_b2)
    w_scan = _axis("sigma_w2", np.linspace(0.0, sigma_w2_max, scan + 1)[1:], most=scan)

    def chi(w, b):
        return chi1_many(activation, fixed_points(activation, w, b, q_start), w)

    above = chi(w_scan[:, None], b_axis[None, :]) >= 1.0
    rows, cols = np.nonzero(above[1:] != above[:-1])
    lo, hi, b = w_scan[rows], w_scan[rows + 1], b_axis[cols]
    w = _root(lambda w, b: chi(w, b) - 1.0, lo, hi, (b,), 1e-10 * sigma_w2_max)
    critical = np.abs(chi(w, b) - 1.0) < 1e-3
    line = pd.DataFrame({"sigma_b2": b[critical], "sigma_w2": w[critical]})
    return line.sort_values(["sigma_b2", "sigma_w2"], ignore_index=True)


@cache
def _critical_w_at_zero_bias(activation: Activation) -> float | None:
    line = critical_line(activation, [0.0], MAX_SIGMA2 / 10, scan=1000)
    return None if line.empty else float(line["sigma_w2"].iloc[0])


def phase_axes(activation: str | Activation, point: tuple[float, float] | None = None,
               n: int = DEFAULT_GRID_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Default axes: σ_w² on [0, W], σ_b² on [0, B], ``n`` values each.

    W is at least 4 and 1.5× the critical σ_w² at σ_b² = 0 (sigmoid's is above 100), so the
    critical line is in view; the window grows to take in ``point`` up to 3× that size, and
    leaves a farther point out (:meth:`PhaseDiagram.in_view`).
    """
    act = as_activation(activation)
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

    def in_view(self, points: pd.DataFrame) -> pd.Series:
        """Which rows of ``points`` (columns ``sigma_w2, sigma_b2``) lie inside the grid's
        window."""
        return ((points["sigma_w2"] <= self.grid["sigma_w2"].max())
                & (points["sigma_b2"] <= self.grid["sigma_b2"].max()))

    @property
    def caption(self) -> str:
        """What the two colours of the map mean for this activation, read off its grid."""
        act = get_activation(self.activation)
        ordered = ("Blue: ordered (χ₁ < 1): with a bias, deep layers settle at one variance q* "
                   "and forget how inputs differ; gradients fade.")
        if positively_homogeneous(act):
            kept = "stays as it is" if is_linear(act) else "still rises to 1"
            return (f"{ordered} Along the bottom edge (σ_b² = 0) only the scale shrinks, by χ₁ "
                    f"per layer. Orange (χ₁ > 1) is not chaos for {act.name}: it is positively "
                    f"homogeneous (φ(a·u) = a·φ(u) for a > 0), so a σ_w² above the grey line "
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
    r"""The phase diagram of ``spec.activation`` with the network's point on it.

    χ₁ = σ_w² E[φ'(√q* z)²] over a grid of ``(σ_w², σ_b²)``, with the critical line χ₁ = 1 between
    the ordered and the chaotic phase (Poole et al. 2016, Fig. 2; Schoenholz et al. 2017, Fig. 1).

    Args:
        spec: the network; only its activation, depth, scheme and bias enter
        n: the grid has ``n × n`` points, ``n`` in [2, :data:`MAX_GRID_SIDE`]
        sigma: the point ``(σ_w², σ_b²)`` to place; None: the last hidden layer's from the scheme
            and bias (the summary :func:`~initviz.meanfield.predict` reports)

    Returns:
        a :class:`PhaseDiagram`; its ``point`` has no rows and ``note`` says why where mean-field
        theory does not describe the network

    Examples:
        >>> diagram = phase_diagram(NetworkSpec.stack(64, 20, activation="tanh"), n=20)
        >>> diagram.summary.phase, len(diagram.grid)
        ('chaotic', 400)
    """
    act = spec.resolved_activation
    note = None
    if sigma is not None:
        sw2, sb2 = (float(_axis(name, [v])[0]) for name, v in zip(("sigma_w2", "sigma_b2"), sigma))
        summary = mean_field(act, sw2, sb2)
    else:
        prediction = predict(spec)
        summary = None if prediction is None else prediction.summary
        note = theory_unavailable_reason(spec) or (
            spec.architecture.theory_note(spec) if summary is None else None)
    return phase_map(act, summary, spec.depth, note, n, spec.architecture.entry)


def phase_map(activation: str | Activation, summary: MeanField | None, depth: int,
              note: str | None = None, n: int = DEFAULT_GRID_SIDE,
              entry: str = "layer") -> PhaseDiagram:
    """The diagram around a network already summarized (``summary`` None: the map alone, and
    ``note`` says why); ``depth`` counts ``entry``s (a recurrent net's time steps). It depends on
    nothing else, so callers may cache it by these arguments: networks of other widths with the
    same σ_w², σ_b² share it."""
    n = check_int("grid", n, 2, MAX_GRID_SIDE)
    act = as_activation(activation)
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
        reach = depth_reach(act, summary, depth, entry)
    return PhaseDiagram(act.name, grid, line, point, summary, reach, note)


__all__ = [
    "DEFAULT_GRID_SIDE", "MAX_GRID_SIDE", "MAX_SIGMA2", "PhaseDiagram", "chi1_many",
    "critical_line", "fixed_points", "phase_axes", "phase_diagram", "phase_grid", "phase_map",
    "splined_moments",
]
