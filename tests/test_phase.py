"""The phase diagram, the depth scales and the trainable depth, against the papers and simulation.

Tolerances: critical points 1e-6 (find_root to 1e-10 of the window); the vectorized grid against
the scalar theory 1e-5 relative (splined moments, ~2e-7); correlation decay in a simulated
network of width 1000 against ξ_c 15% (finite-width noise on the correlation is about 1/√1000).
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate, optimize

from initviz.activations import get_activation
from initviz.errors import InvalidSpec
from initviz.meanfield import chi1, fixed_point, mean_field, predict, slope_moment
from initviz.network import NetworkSpec, build_model
from initviz.phase import (MAX_GRID_SIDE, chi1_many, critical_line, fixed_points, phase_axes,
                           phase_diagram, phase_grid, phase_map)
from initviz.reach import (chaotic_depth_scale, correlation_fixed_point, correlation_map,
                           correlation_slope, depth_reach)
from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)


# ----------------------------------------------------------------------------------------------
# Critical points (Poole et al. 2016; Schoenholz et al. 2017)


def test_tanh_is_critical_at_unit_weight_variance_without_bias():
    line = critical_line("tanh", [0.0], 4.0)
    assert line["sigma_w2"].tolist() == pytest.approx([1.0], abs=1e-6)


def test_relu_is_critical_at_two_for_every_bias():
    # χ₁ = σ_w² E[1{z > 0}] = σ_w²/2 whatever q* is; (2, 0) is He et al.'s initialization.
    line = critical_line("relu", [0.0, 0.1, 0.4], 4.0)
    assert line["sigma_b2"].tolist() == [0.0, 0.1, 0.4]
    assert line["sigma_w2"].tolist() == pytest.approx([2.0] * 3, abs=1e-6)


def test_linear_is_critical_at_unit_weight_variance():
    line = critical_line("linear", [0.0, 0.2], 4.0)
    assert line["sigma_w2"].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("activation, biases", [
    ("tanh", [0.02, 0.2]), ("selu", [0.02, 0.2]), ("gelu", [0.25, 0.45])])
def test_points_on_the_critical_line_have_chi1_one(activation, biases):
    line = critical_line(activation, biases, 4.0)
    assert line["sigma_b2"].tolist() == biases
    for row in line.itertuples():
        mf = mean_field(activation, row.sigma_w2, row.sigma_b2)
        assert mf.chi1 == pytest.approx(1, abs=1e-5)


def test_a_jump_of_chi1_over_one_is_not_a_critical_point():
    # GELU at small σ_b²: past σ_w² ≈ 2.305 the stable q* vanishes and q diverges, so χ₁ leaps
    # from about 0.65 to 1.15 without passing through 1.
    assert critical_line("gelu", [0.02], 4.0).empty
    before, after = (mean_field("gelu", w, 0.02) for w in (2.30, 2.31))
    assert before.chi1 < 0.7 and after.q_star is None and after.chi1 > 1.1


def test_tanh_critical_line_rises_with_bias():
    # Poole et al. 2016, Fig. 2: more bias variance needs more weight variance to reach chaos.
    line = critical_line("tanh", np.linspace(0.0, 0.5, 11), 4.0)
    assert np.all(np.diff(line["sigma_w2"]) > 0)


# ----------------------------------------------------------------------------------------------
# The vectorized grid agrees with the scalar theory


@pytest.mark.parametrize("activation", ["tanh", "relu", "selu", "sigmoid", "softplus"])
def test_grid_chi1_matches_scalar_theory_at_sample_points(activation):
    w_axis, b_axis = np.linspace(0.0, 4.0, 100), np.linspace(0.0, 0.5, 100)
    grid = phase_grid(activation, w_axis, b_axis)
    assert len(grid) == 10_000
    assert list(grid.columns) == ["sigma_w2", "sigma_b2", "q_star", "chi1"]
    act = get_activation(activation)
    rows = grid.iloc[np.random.default_rng(4).choice(len(grid), 12, replace=False)]
    for row in rows.itertuples():
        q = fixed_point(act, row.sigma_w2, row.sigma_b2)
        assert row.chi1 == pytest.approx(chi1(act, row.sigma_w2, q), rel=1e-5, abs=1e-9)
        if q is None:
            assert math.isnan(row.q_star)
        elif abs(row.chi1 - 1) > 0.05:  # q* is ill-conditioned at criticality; χ₁ is not
            assert row.q_star == pytest.approx(q, rel=1e-4, abs=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "gelu", "elu", "sigmoid"])
def test_vectorized_fixed_points_match_the_scalar_root_search(activation):
    # find_root on the splined length map against brentq on the quadrature: 1e-6 relative (the
    # splines' error; ~5e-7 at worst here), NaN where q diverges, 0 where it collapses.
    w = np.array([0.3, 0.9, 1.3, 2.5, 4.0, 9.0])
    b = np.array([0.0, 0.01, 0.2, 0.5, 0.05, 0.3])
    vectorized = fixed_points(activation, w, b)
    scalar = [fixed_point(get_activation(activation), wi, bi) for wi, bi in zip(w, b)]
    for many, one in zip(vectorized, scalar):
        if one is None:
            assert math.isnan(many)
        else:
            assert many == pytest.approx(one, rel=1e-6, abs=0.0)


@pytest.mark.parametrize("activation, window", [("tanh", 4.0), ("elu", 4.0), ("sigmoid", 200.0)])
def test_critical_line_is_where_the_splined_chi1_crosses_one(activation, window):
    # Each crossing refined by find_root to 1e-10 of the window; brentq on the same χ₁(σ_w²)
    # agrees to 1e-9 of it.
    line = critical_line(activation, [0.05, 0.3], window)
    assert line["sigma_b2"].tolist() == [0.05, 0.3]
    for row in line.itertuples():
        def gap(w, b=row.sigma_b2):
            return float(chi1_many(activation, fixed_points(activation, w, b), w)) - 1.0
        step = window / 128
        root = optimize.brentq(gap, row.sigma_w2 - step, row.sigma_w2 + step, xtol=1e-14)
        assert abs(row.sigma_w2 - root) < 1e-9 * window


def test_fixed_points_follow_the_scalar_rules_at_the_edges():
    q = fixed_points("relu", [0.0, 2.0, 3.0, 1.0], [0.3, 0.0, 0.1, 0.1])
    assert q[0] == pytest.approx(0.3)        # no weights: q* = σ_b²
    assert q[1] == 1.0                       # every q is fixed: the start is kept
    assert math.isnan(q[2])                  # σ_w² > 2: q grows without bound
    assert q[3] == pytest.approx(0.2, rel=1e-6)  # q = q/2 + 0.1
    assert fixed_points("tanh", 0.5, 0.0) == 0.0  # ordered without bias: q* collapses to 0


def test_grid_rejects_bad_axes():
    with pytest.raises(InvalidSpec, match="sigma_w2"):
        phase_grid("tanh", [-1.0, 1.0], [0.0])
    with pytest.raises(InvalidSpec, match="sigma_b2"):
        phase_grid("tanh", [1.0], np.zeros(MAX_GRID_SIDE + 1))


@pytest.mark.parametrize("q", [30.0, 100.0, 1e4])
def test_slope_moment_is_accurate_at_large_q(q):
    # A fixed Gauss–Hermite rule halved tanh's E[φ'²] at q = 100; χ₁ of N(0, 1) weights needs it.
    def integrand(z):
        return math.cosh(math.sqrt(q) * z) ** -4 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    reach = 40 / math.sqrt(q)
    exact = 2 * integrate.quad(integrand, 0, reach, limit=200, epsrel=1e-12)[0]
    assert float(slope_moment(get_activation("tanh"), q)) == pytest.approx(exact, rel=1e-8)


# ----------------------------------------------------------------------------------------------
# Correlations and depth scales


def test_correlation_map_fixes_one_with_slope_chi1():
    mf = mean_field("tanh", 2.0, 0.05)
    assert correlation_map("tanh", 1.0, mf.q_star, 2.0, 0.05) == pytest.approx(1, abs=1e-8)
    assert correlation_slope("tanh", 1.0, mf.q_star, 2.0) == pytest.approx(mf.chi1, rel=1e-5)


def test_depth_scale_is_null_in_the_chaotic_phase_and_named_apart():
    mf = mean_field("tanh", 4.0, 0.0)
    assert mf.phase == "chaotic" and mf.depth_scale is None
    xi = chaotic_depth_scale("tanh", 4.0, 0.0, mf.q_star)
    assert xi is not None and xi > 0
    ordered = mean_field("tanh", 1.2, 0.2)
    assert chaotic_depth_scale("tanh", 1.2, 0.2, ordered.q_star) is None


def _simulated_correlations(activation, sigma_w2, sigma_b2, starts, depth, seeds=3, pairs=64,
                            width=1000):
    """Correlation of pre-activations between two inputs, layer by layer (rows), for input pairs
    starting at each correlation in ``starts`` (columns), averaged over ``pairs`` pairs and
    ``seeds`` networks built by initviz with N(0, σ_w²/width) weights and N(0, σ_b²) biases.

    All starts share the networks and the underlying noise, so their differences are measured
    with little sampling noise.
    """
    q = mean_field(activation, sigma_w2, sigma_b2).q_star
    spec = NetworkSpec.stack(width, depth, input_dim=width, activation=activation,
                             scheme="normal", scheme_params={"std": math.sqrt(sigma_w2 / width)},
                             bias="normal", bias_params={"std": math.sqrt(sigma_b2)})
    scale = math.sqrt((q - sigma_b2) / sigma_w2)  # first-layer pre-activations at variance q*
    curves = []
    for seed in range(seeds):
        model = build_model(spec, seed)
        za, zb = torch.randn(2, pairs, width, generator=torch.Generator().manual_seed(100 + seed))
        inputs = []
        for c in starts:
            rho = (c * q - sigma_b2) / (q - sigma_b2)
            inputs += [za, rho * za + math.sqrt(1 - rho**2) * zb]
        h = scale * torch.cat(inputs)
        curve = []
        with torch.no_grad():
            for block in model:
                z = block.linear(h)
                a, b = z.view(len(starts), 2, pairs, width).unbind(1)
                corr = (a * b).mean(-1) / ((a * a).mean(-1) * (b * b).mean(-1)).sqrt()
                curve.append(corr.mean(-1).tolist())
                h = block.act(z)
        curves.append(curve)
    return q, np.mean(curves, axis=0)


def _mean_field_correlations(activation, sigma_w2, sigma_b2, q, start, depth):
    curve, c = [], start
    for _ in range(depth):
        curve.append(c)
        c = correlation_map(activation, c, q, sigma_w2, sigma_b2)
    return np.array(curve)


def _fitted_depth_scale(distance, floor):
    """−1/slope of ln(distance) against the layer, over the layers where it is above ``floor``
    (below it, finite-width noise dominates)."""
    layers = np.arange(1, len(distance) + 1)
    keep = distance > floor
    assert keep.sum() >= 6, distance
    return -1.0 / np.polyfit(layers[keep], np.log(distance[keep]), 1)[0]


def test_chaotic_depth_scale_matches_correlation_decay_in_a_wide_network():
    # tanh, σ_w² = 6, σ_b² = 0.2: chaotic, c* = 0.25, ξ_c = 4.9 (Schoenholz et al. 2017, eq. 9).
    # Two input pairs at c* ± 0.2 approach each other as exp(−l/ξ_c); their symmetric
    # difference cancels the map's second-order term, and shared noise cancels too.
    w, b, depth = 6.0, 0.2, 16
    mf = mean_field("tanh", w, b)
    c_star = correlation_fixed_point("tanh", mf.q_star, w, b)
    xi = chaotic_depth_scale("tanh", w, b, mf.q_star)
    q, measured = _simulated_correlations("tanh", w, b, [c_star + 0.2, c_star - 0.2], depth)
    for column, start in enumerate([c_star + 0.2, c_star - 0.2]):
        predicted = _mean_field_correlations("tanh", w, b, q, start, depth)
        assert np.max(np.abs(measured[:, column] - predicted)) < 0.03
    gap = measured[:, 0] - measured[:, 1]
    assert _fitted_depth_scale(gap, floor=0.01) == pytest.approx(xi, rel=0.15)


def test_ordered_depth_scale_matches_correlation_decay_in_a_wide_network():
    # tanh, σ_w² = 1.2, σ_b² = 0.2: ordered, c* = 1, ξ_c = −1/ln χ₁ = 2.7: 1 − c^l ∝ exp(−l/ξ_c).
    w, b, depth = 1.2, 0.2, 14
    mf = mean_field("tanh", w, b)
    q, measured = _simulated_correlations("tanh", w, b, [0.2], depth)
    predicted = _mean_field_correlations("tanh", w, b, q, 0.2, depth)
    assert np.max(np.abs(measured[:, 0] - predicted)) < 0.03
    assert _fitted_depth_scale(1 - measured[:, 0], floor=0.004) == pytest.approx(
        mf.depth_scale, rel=0.15)


# ----------------------------------------------------------------------------------------------
# Trainable depth and the diagram for a network


def test_depth_reach_says_how_much_too_deep():
    # tanh, σ_w² = 1/2, no bias: q* = 0, χ₁ = 1/2, ξ_c = 1/ln 2, trainable depth 6/ln 2 ≈ 8.7.
    reach = depth_reach("tanh", mean_field("tanh", 0.5, 0.0), 35)
    assert reach.depth_scale == pytest.approx(1 / math.log(2), rel=1e-9)
    assert reach.trainable_depth == pytest.approx(6 / math.log(2), rel=1e-9)
    assert reach.ratio == pytest.approx(35 * math.log(2) / 6, rel=1e-9)
    assert reach.sentence.startswith("This network is 4× deeper than signals can travel")
    shallow = depth_reach("tanh", mean_field("tanh", 0.5, 0.0), 4)
    assert shallow.ratio < 1 and "within reach" in shallow.sentence


def test_a_zero_bias_relu_net_off_critical_is_told_its_scale_not_a_depth_limit():
    # `theory --activation relu --scheme xavier_normal --depth 22` said "2.5× deeper than signals
    # can travel"; He et al. 2015 train that net. χ₁ = 1/2 per layer, 21 steps from layer 1.
    reach = depth_reach("relu", mean_field("relu", 1.0, 0.0), 22)
    assert (reach.depth_scale, reach.trainable_depth, reach.ratio) == (None, None, None)
    assert "deeper than signals can travel" not in reach.sentence
    assert "χ₁ = σ_w²·E[φ(z)²] = 0.5, 0.5²¹ = 4.77e-07" in reach.sentence
    assert f"std × {math.sqrt(0.5) ** 21:.3g}" in reach.sentence
    assert "rise towards 1 only polynomially" in reach.sentence and "σ_w² = 2 (χ₁ = 1)" in (
        reach.sentence)
    linear = depth_reach("linear", mean_field("linear", 2.0, 0.0), 5).sentence
    assert "2⁴ = 16" in linear and "stay exactly as they are" in linear
    tiny = depth_reach("relu", mean_field("relu", 0.01, 0.0), 400).sentence
    assert "0.005³⁹⁹ = 10⁻⁹¹⁸" in tiny and "rounds to 0" in tiny
    assert "float32's range, not a depth scale ξ_c, limits how deep it trains" in tiny


def test_the_scale_the_zero_bias_relu_sentence_quotes_is_the_measured_one():
    # the claim against the probe: 22 Xavier ReLU layers of width 256, std × 0.5^10.5 = 6.9e-4.
    # One network of width 256 lands within a factor 0.6-1.1 of it (each layer's gain
    # fluctuates by ~6%); the mean over four seeds is the mean-field value.
    from initviz import profile
    spec = NetworkSpec.stack(256, 22, scheme="xavier_normal")
    runs = [profile(spec, batch=256, seed=seed).layers for seed in range(4)]
    forward = np.mean([layers["act_std"].iloc[-1] / layers["act_std"].iloc[0] for layers in runs])
    backward = np.mean([layers["grad_std"].iloc[0] / layers["grad_std"].iloc[-1]
                        for layers in runs])
    assert forward == pytest.approx(math.sqrt(0.5) ** 21, rel=0.3)
    assert backward == pytest.approx(math.sqrt(0.5) ** 21, rel=0.3)


def test_depth_reach_at_criticality_and_when_q_diverges():
    assert depth_reach("relu", mean_field("relu", 2.0, 0.0), 50).trainable_depth is None
    exploding = depth_reach("relu", mean_field("relu", 3.0, 0.1), 50)
    assert exploding.depth_scale is None and "without bound" in exploding.sentence
    chaotic = depth_reach("tanh", mean_field("tanh", 4.0, 0.0), 50)
    assert chaotic.phase == "chaotic" and chaotic.trainable_depth == pytest.approx(
        6 * chaotic_depth_scale("tanh", 4.0, 0.0, mean_field("tanh", 4.0, 0.0).q_star))


def test_phase_diagram_places_kaiming_relu_at_the_critical_point():
    diagram = phase_diagram(NetworkSpec.stack(64, 10), n=20)
    assert len(diagram.grid) == 400
    point = diagram.point.iloc[0]
    assert (point.sigma_w2, point.sigma_b2) == pytest.approx((2.0, 0.0))
    assert point.phase == "critical" and diagram.in_view(diagram.point).tolist() == [True]
    assert diagram.to_json_dict()["depth_scale"] is None


def test_phase_diagram_without_theory_keeps_the_grid_and_says_why():
    diagram = phase_diagram(NetworkSpec.stack(64, 3, scheme="lsuv"), n=10)
    assert diagram.point.empty and diagram.summary is None and "LSUV" in diagram.note
    assert len(diagram.grid) == 100 and not diagram.critical_line.empty
    placed = phase_diagram(NetworkSpec.stack(64, 3, scheme="lsuv"), n=10, sigma=(1.5, 0.1))
    assert placed.point.iloc[0].sigma_w2 == 1.5 and placed.note is None


def test_phase_axes_show_the_critical_line_and_a_nearby_point():
    w_axis, _ = phase_axes("sigmoid", n=5)
    assert critical_line("sigmoid", [0.0], float(w_axis[-1]))["sigma_w2"].iloc[0] < w_axis[-1]
    w_axis, b_axis = phase_axes("tanh", point=(6.0, 0.8), n=5)
    assert w_axis[-1] >= 6.0 and b_axis[-1] >= 0.8
    far, _ = phase_axes("tanh", point=(256.0, 0.0), n=5)
    assert far[-1] < 256.0  # a far point stays out rather than squashing the diagram


def test_the_map_from_a_summary_is_the_diagram_of_every_network_with_that_summary():
    # Kaiming + ReLU has σ_w² = 2 at every width: one cached map serves them all.
    narrow, wide = NetworkSpec.stack(64, 12), NetworkSpec.stack(512, 12)
    shared = phase_map("relu", predict(wide).summary, 12, n=20)
    for spec in (narrow, wide):
        alone = phase_diagram(spec, n=20)
        pd.testing.assert_frame_equal(alone.grid, shared.grid)
        pd.testing.assert_frame_equal(alone.point, shared.point)
        assert alone.reach == shared.reach
    for bad in (1, MAX_GRID_SIDE + 1, 2.5, True, "x"):
        with pytest.raises(InvalidSpec, match="grid"):
            phase_map("relu", None, 12, n=bad)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
def test_the_caption_of_a_homogeneous_activation_says_orange_is_growth_not_chaos(activation):
    diagram = phase_map(activation, None, 10, n=24)
    grid = diagram.grid
    # what the caption says, on the map's own numbers: above χ₁ = 1 the variance diverges
    assert grid.loc[grid.chi1 > 1 + 1e-6, "q_star"].isna().all()
    assert "fly apart" not in diagram.caption and "is not chaos" in diagram.caption
    assert ("stays as it is" in diagram.caption) == (activation == "linear")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "selu", "gelu"])
def test_the_caption_of_other_activations_matches_where_the_variance_diverges(activation):
    diagram = phase_map(activation, None, 10, n=24)
    grid = diagram.grid
    chaotic = grid.chi1 > 1
    share = (chaotic & grid.q_star.isna()).sum() / chaotic.sum()
    caption = diagram.caption
    if share == 0:  # bounded φ: a finite q* everywhere, true chaos
        assert "fly apart" in caption and "without bound" not in caption
    elif share == 1:
        assert "fly apart" not in caption and "everywhere on this map" in caption
    else:
        assert "fly apart" in caption and f"In {share:.0%} of the orange area" in caption
    assert activation not in ("tanh", "sigmoid") or share == 0
