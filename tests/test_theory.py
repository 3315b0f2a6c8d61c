"""Mean-field signal propagation against closed forms, values stated in the papers, and a wide
network simulated with plain torch.

References: Poole et al. (2016), Exponential expressivity in deep neural networks through transient
chaos; Schoenholz et al. (2017), Deep Information Propagation; Klambauer et al. (2017),
Self-Normalizing Neural Networks.
"""

import math

import numpy as np
import pytest
import torch
from scipy import optimize

from initviz.activations import get_activation
from initviz.network import NetworkSpec
from initviz.meanfield import (chi1, depth_scale, first_moment, fixed_point, mean_field, phase,
                               positively_homogeneous, predict, second_moment, slope_moment,
                               theory_unavailable_reason)
from initviz.phase import fixed_points

RELU, TANH = get_activation("relu"), get_activation("tanh")
QS = [1e-6, 1e-2, 0.5, 1.0, 7.0, 1e4]
WIDE = 1024
# At width 1024 one layer's E[z²] fluctuates by ≈ 0.8/√1024 ≈ 2.5% between draws of the weights
# (see test_probe.py); where the length map contracts (slope s < 1 at q*) the deviations stay
# bounded, ≈ 2.5%/√(1 − s²).
SPREAD = 0.8 / math.sqrt(WIDE)


@pytest.mark.parametrize("q", QS)
def test_relu_moments_are_exact(q):
    # φ = max(0, u): E[φ(√q z)²] = q/2, E[φ'²] = 1/2, E[φ] = √(q/2π): quadrature with a panel
    # edge at the kink integrates these polynomials pieces exactly.
    assert float(second_moment(RELU, q)) == pytest.approx(q / 2, rel=1e-10)
    assert float(slope_moment(RELU, q)) == pytest.approx(0.5, rel=1e-10)
    assert float(first_moment(RELU, q)) == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-10)


@pytest.mark.parametrize("q", QS)
def test_linear_and_symmetric_moments(q):
    linear = get_activation("linear")
    assert float(second_moment(linear, q)) == pytest.approx(q, rel=1e-10)
    assert float(slope_moment(linear, q)) == pytest.approx(1.0, rel=1e-10)
    assert float(first_moment(TANH, q)) == pytest.approx(0.0, abs=1e-12)  # odd function
    assert float(first_moment(get_activation("sigmoid"), q)) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("q", [1e-3, 1e-2, 3e-2])
def test_tanh_second_moment_small_q_series(q):
    # tanh²u = u² − (2/3)u⁴ + (17/45)u⁶ − …, E[z⁴] = 3, E[z⁶] = 15: E = q − 2q² + (17/3)q³ − …
    assert float(second_moment(TANH, q)) == pytest.approx(q - 2 * q**2 + 17 / 3 * q**3,
                                                          abs=40 * q**4)


def test_moments_accept_arrays():
    q = np.array([0.5, 2.0, 8.0])
    assert second_moment(RELU, q).numpy() == pytest.approx(q / 2, rel=1e-10)


def test_moments_against_monte_carlo_for_a_smooth_activation():
    # 1e6 samples: standard error ~1e-3 of the value; allowed 5 of them.
    z = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name in ("gelu", "elu", "softplus"):
        act = get_activation(name)
        for q in (0.3, 3.0):
            samples = act.fn(math.sqrt(q) * z) ** 2
            tol = 5 * float(samples.std()) / 1e3
            assert float(second_moment(act, q)) == pytest.approx(float(samples.mean()), abs=tol)


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.0, 0.1), (1.5, 0.2), (1.9, 0.01)])
def test_relu_fixed_point_and_chi1_closed_forms(sigma_w2, sigma_b2):
    # q = σ_w²·q/2 + σ_b²  ⇒  q* = σ_b² / (1 − σ_w²/2); χ₁ = σ_w²·E[φ'²] = σ_w²/2.
    summary = mean_field("relu", sigma_w2, sigma_b2)
    assert summary.q_star == pytest.approx(sigma_b2 / (1 - sigma_w2 / 2), rel=1e-9)
    assert summary.chi1 == pytest.approx(sigma_w2 / 2, rel=1e-10)
    assert summary.phase == "ordered"
    assert summary.depth_scale == pytest.approx(-1 / math.log(sigma_w2 / 2), rel=1e-9)
    assert summary.trainable_depth == pytest.approx(6 * summary.depth_scale)


def test_relu_at_kaiming_is_critical_at_every_q():
    summary = mean_field("relu", 2.0, 0.0, q_start=3.7)
    assert summary.q_star == pytest.approx(3.7)  # every q is a fixed point
    assert summary.chi1 == pytest.approx(1.0, rel=1e-10)
    assert (summary.phase, summary.depth_scale, summary.trainable_depth) == ("critical", None,
                                                                             None)


@pytest.mark.parametrize("activation, sigma_w2", [("relu", 2.0), ("leaky_relu", None),
                                                  ("linear", 1.0)])
@pytest.mark.parametrize("sigma_b2", [0.0025, 1.0])
def test_a_homogeneous_map_at_slope_1_with_bias_has_no_fixed_point(activation, sigma_w2,
                                                                   sigma_b2):
    # q ↦ q + σ_b² grows by σ_b² per layer for ever. A root search on the quadrature found a
    # "q*" of 9.3e8 (σ_b² = 0.0025) and 2.5e10 (an RNN's input variance, σ_b² = 1): where its
    # rounding, about 1e-12 of q, cancels σ_b².
    act = get_activation(activation)
    if sigma_w2 is None:
        sigma_w2 = 1.0 / float(second_moment(act, 1.0))  # leaky ReLU's Kaiming σ_w²
    assert fixed_point(act, sigma_w2, sigma_b2) is None
    assert math.isnan(float(fixed_points(activation, sigma_w2, sigma_b2)))
    summary = mean_field(activation, sigma_w2, sigma_b2)
    assert summary.q_star is None and summary.phase == "critical"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
def test_a_homogeneous_fixed_point_is_where_iterating_its_map_settles(activation):
    # Below slope 1 the iterated map converges geometrically: 2000 steps are exact to rounding.
    act = get_activation(activation)
    unit = float(second_moment(act, 1.0))
    for sigma_w2, sigma_b2 in ((0.5 / unit, 0.3), (0.99 / unit, 0.01), (0.2 / unit, 0.0)):
        q = 1.0
        for _ in range(2000):
            q = sigma_w2 * unit * q + sigma_b2
        assert fixed_point(act, sigma_w2, sigma_b2) == pytest.approx(q, rel=1e-9, abs=1e-300)
        assert float(fixed_points(activation, sigma_w2, sigma_b2)) == pytest.approx(
            q, rel=1e-9, abs=1e-300)


def test_relu_above_kaiming_diverges_and_only_its_scale_grows():
    # ReLU is positively homogeneous: above σ_w² = 2 the variance grows by χ₁ per layer while
    # correlations still rise to 1 -- no chaos, with or without a bias.
    summary = mean_field("relu", 2.5, 0.0)
    assert summary.q_star is None
    assert summary.chi1 == pytest.approx(1.25, rel=1e-9)
    assert (summary.phase, summary.depth_scale) == ("growing", None)
    assert mean_field("relu", 2.5, 0.1).phase == "growing"


@pytest.mark.parametrize("activation,homogeneous", [
    ("relu", True), ("leaky_relu", True), ("linear", True), ("tanh", False), ("elu", False),
    ("softplus", False), ("gelu", False), ("selu", False),
])
def test_positive_homogeneity_is_detected(activation, homogeneous):
    from initviz.activations import get_activation
    assert positively_homogeneous(get_activation(activation)) is homogeneous


@pytest.mark.parametrize("activation,sigma_w2", [("relu", 1.0), ("leaky_relu", 1.0),
                                                 ("linear", 0.5), ("relu", 3.0)])
def test_zero_bias_homogeneous_networks_have_no_depth_scale(activation, sigma_w2):
    # Off critical, σ_w² only rescales: q* is 0 (or diverges) and correlations approach 1
    # polynomially, so ξ_c = −1/ln χ₁ describes nothing (He et al. 2015 train Xavier ReLU nets).
    summary = mean_field(activation, sigma_w2, 0.0)
    assert summary.scale_only and summary.depth_scale is None
    assert summary.trainable_depth is None
    assert summary.phase == ("shrinking" if summary.chi1 < 1 else "growing")
    with_bias = mean_field(activation, min(sigma_w2, 0.9), 0.1)  # q* > 0: ξ_c holds
    assert not with_bias.scale_only and with_bias.depth_scale == pytest.approx(
        -1 / math.log(with_bias.chi1), rel=1e-9)


def test_linear_fixed_point():
    summary = mean_field("linear", 0.6, 0.2)
    assert summary.q_star == pytest.approx(0.2 / 0.4, rel=1e-9)
    assert summary.chi1 == pytest.approx(0.6, rel=1e-10)


def test_a_critical_summary_has_no_depth_scale():
    # One tolerance decides "critical" for the phase and for ξ_c: χ₁ = 1 − 1e-7 was "critical"
    # with a depth scale of 1e7 layers beside it.
    summary = mean_field("linear", 1.0 - 1e-7, 0.1)
    assert summary.chi1 == pytest.approx(1.0 - 1e-7, rel=1e-12)
    assert (summary.phase, summary.depth_scale, summary.trainable_depth) == ("critical", None,
                                                                              None)
    near = mean_field("linear", 1.0 - 1e-5, 0.1)
    assert near.phase == "ordered" and near.depth_scale == pytest.approx(1e5, rel=1e-4)


def test_tanh_is_critical_at_unit_weight_variance_and_zero_bias():
    # Poole et al. / Schoenholz et al.: for tanh with σ_b² = 0 the order–chaos transition is at
    # σ_w² = 1, where q* = 0 and χ₁ = φ'(0)² σ_w² = 1.
    critical = mean_field("tanh", 1.0, 0.0)
    # exactly 0: the root search used to stop at q ≈ 1e-16, where the map's gap to the diagonal
    # (−2q²) rounds to zero, and the page showed q* = 8.87e-17
    assert critical.q_star == 0.0 and fixed_points("tanh", 1.0, 0.0) == 0.0
    assert critical.chi1 == pytest.approx(1.0, abs=1e-6)
    assert (critical.phase, critical.depth_scale) == ("critical", None)
    ordered = mean_field("tanh", 0.8, 0.0)
    assert ordered.q_star == 0.0 and ordered.chi1 == pytest.approx(0.8, rel=1e-9)
    assert ordered.depth_scale == pytest.approx(-1 / math.log(0.8), rel=1e-9)
    chaotic = mean_field("tanh", 1.5, 0.0)
    assert chaotic.q_star > 0.1 and chaotic.chi1 > 1.0
    assert (chaotic.phase, chaotic.depth_scale) == ("chaotic", None)
    # χ₁ is continuous through the transition
    assert mean_field("tanh", 1.01, 0.0).chi1 == pytest.approx(1.0, abs=0.02)


def test_tanh_bias_moves_the_transition_to_larger_weight_variance():
    # Poole et al. 2016, Fig. 2 / Schoenholz et al. 2017, Fig. 1: the critical line σ_w²(σ_b²)
    # starts at (1, 0) and rises with σ_b².
    def critical_sigma_w2(sigma_b2):
        return optimize.brentq(lambda w: mean_field("tanh", w, sigma_b2).chi1 - 1.0, 1.0, 4.0,
                               xtol=1e-4)

    low, high = critical_sigma_w2(0.02), critical_sigma_w2(0.2)
    assert 1.0 < low < high < 4.0


def test_selu_fixed_point_is_mean_0_variance_1():
    # Klambauer et al. chose λ, α so that N(0, 1) in gives mean 0 and variance 1 out.
    selu = get_activation("selu")
    assert float(first_moment(selu, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(second_moment(selu, 1.0)) == pytest.approx(1.0, abs=1e-6)
    assert fixed_point(selu, 1.0, 0.0, q_start=3.0) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("chi, expected", [
    (0.5, -1 / math.log(0.5)), (0.99, -1 / math.log(0.99)), (0.0, 0.0), (1.0, None), (1.3, None),
])
def test_depth_scale(chi, expected):
    assert depth_scale(chi) == (pytest.approx(expected) if expected is not None else None)


def test_phase_names():
    assert [phase(c) for c in (0.5, 1.0, 1.5)] == ["ordered", "critical", "chaotic"]


def test_chi1_with_a_diverging_q_takes_the_large_q_limit():
    assert chi1(RELU, 3.0, None) == pytest.approx(1.5, rel=1e-9)


def _simulated_q(activation: str, sigma_w2: float, sigma_b2: float, depth: int,
                 batch: int = 64) -> np.ndarray:
    """E[z²] per layer of a random network of width WIDE, in plain torch."""
    g = torch.Generator().manual_seed(1)
    act = get_activation(activation)
    h = torch.randn(batch, WIDE, generator=g)
    qs = []
    for _ in range(depth):
        w = torch.randn(WIDE, WIDE, generator=g) * math.sqrt(sigma_w2 / WIDE)
        b = torch.randn(WIDE, generator=g) * math.sqrt(sigma_b2)
        z = h @ w.T + b
        qs.append(float((z.double() ** 2).mean()))
        h = act.fn(z)
    return np.array(qs)


@pytest.mark.parametrize("activation, sigma_w2, sigma_b2", [
    ("tanh", 2.0, 0.05),   # the chaotic side of Poole et al.'s phase diagram: q* ≈ 0.72
    ("relu", 1.5, 0.2),    # ordered: q* = 0.2 / (1 − 0.75) = 0.8
])
def test_fixed_point_matches_a_simulated_wide_network(activation, sigma_w2, sigma_b2):
    q_star = mean_field(activation, sigma_w2, sigma_b2).q_star
    # From q¹ = σ_w² + σ_b² the map approaches q* like χ^l with slope ≤ 0.75 (ReLU: exactly
    # 0.75, so by layer 13 the transient is under 0.75¹² ≈ 3% of q¹ − q*).
    deep = _simulated_q(activation, sigma_w2, sigma_b2, depth=18)[12:]
    # Both maps contract at q* with slope ≤ 0.75, so the wobble stays ≤ 1.5·SPREAD; allow 3 of it.
    assert deep == pytest.approx(np.full(len(deep), q_star), rel=3 * 1.5 * SPREAD)


def test_predict_runs_the_length_map_from_the_input_layer_by_layer():
    spec = NetworkSpec(sizes=(100, 200, 50), input_dim=10, activation="relu",
                       scheme="kaiming_normal", bias="normal", bias_params={"std": 0.5})
    prediction = predict(spec, input_second_moment=3.0)
    # σ_w² = 2 (Kaiming, fan_in), σ_b² = 0.25: q¹ = 2·3 + 0.25, q^{l+1} = 2·q^l/2 + 0.25
    assert prediction.preact_var == pytest.approx((6.25, 6.5, 6.75), rel=1e-10)
    # Backward, per layer ×σ_w²·(fan_out/fan_in)·E[φ'²] (Schoenholz et al. 2017, eq. 12),
    # from 1 at the last layer: fans (10,100), (100,200), (200,50).
    assert prediction.grad_var == pytest.approx((1 * (200 / 100) * (50 / 200), 50 / 200, 1.0),
                                                rel=1e-10)
    assert prediction.summary.sigma_w2 == pytest.approx(2.0)
    assert prediction.summary.sigma_b2 == pytest.approx(0.25)


def test_act_var_of_every_layer_is_the_second_moment_minus_the_squared_mean():
    spec = NetworkSpec(sizes=(64,) * 5, input_dim=8, activation="tanh", scheme="normal",
                       scheme_params={"std": 0.3})
    prediction = predict(spec)
    for q, var in zip(prediction.preact_var, prediction.act_var):
        expected = float(second_moment(TANH, q) - first_moment(TANH, q) ** 2)
        assert var == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scheme", ["kaiming_normal", "xavier_normal", "lecun_uniform"])
def test_sigmas_do_not_depend_on_the_width_where_the_scheme_says_they_do_not(scheme):
    """Kaiming's σ_w² is 2 at every width; fan_in·std² must not carry width-dependent rounding
    (the summary keys the page's cached phase diagram)."""
    summaries = {predict(NetworkSpec.stack(width, 3, scheme=scheme)).summary
                 for width in range(250, 300)}
    assert len(summaries) == 1


@pytest.mark.parametrize("kwargs, words", [
    ({"norm": "batchnorm"}, "batchnorm"),
    ({"norm": "layernorm"}, "layernorm"),
    ({"scheme": "lsuv"}, "LSUV"),
    ({"scheme": "normal", "scheme_params": {"mean": 0.5}}, "weights do not have mean 0"),
    ({"scheme": "uniform"}, "weights do not have mean 0"),  # U(0, 1)
    ({"scheme": "ones"}, "weights do not have mean 0"),
    ({"bias": "constant", "bias_params": {"val": 0.1}}, "biases do not have mean 0"),
])
def test_theory_says_why_it_does_not_apply(kwargs, words):
    spec = NetworkSpec(sizes=(8, 8), **kwargs)
    assert words in theory_unavailable_reason(spec)
    assert predict(spec) is None


@pytest.mark.parametrize("kwargs", [
    {}, {"scheme": "zeros"}, {"scheme": "uniform", "scheme_params": {"a": -1, "b": 1}},
    {"bias": "constant", "bias_params": {"val": 0.0}}, {"bias": "pytorch_default"},
])
def test_theory_applies_to_zero_mean_schemes(kwargs):
    spec = NetworkSpec(sizes=(8, 8), **kwargs)
    assert theory_unavailable_reason(spec) is None
    assert predict(spec) is not None


def test_a_width_change_that_keeps_every_sigma_reuses_the_prediction():
    # Kaiming keeps σ_w² = 2 at every width: the page's width slider must not redo the theory.
    kaiming = [predict(NetworkSpec.stack(width, 20)) for width in (256, 300)]
    assert kaiming[0] is kaiming[1]
    xavier = [predict(NetworkSpec.stack(width, 20, scheme="xavier_normal")) for width in (256, 300)]
    assert xavier[0] is not xavier[1]  # the first layer's σ_w² = 2·fan_in/(fan_in + width)
    assert xavier[0].preact_var[0] != xavier[1].preact_var[0]
