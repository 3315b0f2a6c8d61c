"""The verdict names the classic failure modes, with the numbers that justify it."""

import dataclasses
import math

import numpy as np
import pytest

from scipy import stats

from initviz import NetworkSpec, profile
from initviz.activations import ACTIVATIONS, get_activation
from initviz.meanfield import first_moment, mean_field, predict
from initviz.phase import critical_line
from initviz.report import (FRACTION_MEASURES, WEIGHT_TABLE_GAPS, by_layer_frame, fractions_frame,
                            fractions_note, recommendation, verdict, weight_table,
                            weight_theory)
from initviz.text import span


def _verdict(activation, scheme, params=None, depth=20, width=256):
    spec = NetworkSpec.stack(width, depth, activation=activation, scheme=scheme,
                             scheme_params=params or {})
    return verdict(profile(spec, batch=128))


@pytest.mark.parametrize("activation,scheme,params,kind,words", [
    ("relu", "kaiming_normal", None, "healthy", "Healthy"),
    ("selu", "lecun_normal", None, "healthy", "Healthy"),
    ("relu", "xavier_normal", None, "vanishing", "activation std falls"),
    ("relu", "pytorch_default", None, "vanishing", "activation std falls"),
    ("relu", "normal", {"std": 1.0}, "exploding", "activation std grows"),
    ("relu", "normal", {"std": 20.0}, "exploding", "overflow to inf/NaN at layer"),
    ("tanh", "normal", {"std": 1.0}, "saturated", "flat tail of tanh"),
    ("relu", "zeros", None, "dead", "output nothing"),
    ("sigmoid", "xavier_normal", None, "vanishing", "gradient std falls"),
])
def test_classic_configurations_get_their_textbook_verdict(activation, scheme, params, kind,
                                                          words):
    result = _verdict(activation, scheme, params)
    assert result.kind == kind
    assert words in result.headline


def test_a_saturated_net_whose_gradients_grow_says_so():
    # tanh with N(0, 1) weights on 256 units (σ_w² = 256): most units sit on a flat tail, and
    # "slope nearly 0" alone suggested vanishing gradients, while they grow layer after layer
    result = _verdict("tanh", "normal", {"std": 1.0}, depth=10)
    assert result.kind == "saturated"
    assert "The gradients still grow going backward, from 1 (layer 10) to" in result.headline
    assert "gradients still grow" not in _verdict("tanh", "xavier_normal", depth=10).headline


def test_half_the_outputs_at_zero_is_healthy_but_half_the_units_off_for_every_input_is_dead():
    prof = profile(NetworkSpec.stack(256, 20, activation="relu", scheme="kaiming_normal"),
                   batch=128)
    assert prof.layers["zero_frac"].iloc[-1] > 0.45 and verdict(prof).kind == "healthy"
    layers = prof.layers.copy()
    layers.loc[19, "dead_frac"] = 0.6
    result = verdict(dataclasses.replace(prof, layers=layers))
    assert result.kind == "dead"
    assert "60% of the units of layer 20 output nothing for any of the 128 inputs" in (
        result.headline)


def test_a_batch_too_small_to_tell_dead_from_off_gives_no_dead_verdict():
    # One input: a healthy Kaiming ReLU unit is off for it half the time, and here 55% of the
    # last layer's units happen to be.
    prof = profile(NetworkSpec.stack(256, 20, activation="relu", scheme="kaiming_normal"),
                   batch=1)
    assert prof.layers["dead_frac"].iloc[-1] > 0.5
    assert verdict(prof).kind == "healthy"


def test_the_vanishing_headline_quotes_first_and_last_layer():
    result = _verdict("relu", "xavier_normal")
    assert "(layer 1)" in result.headline and "(layer 20)" in result.headline


@pytest.mark.parametrize("low, high, text", [
    (0.47, 0.84, "between 0.47 and 0.84"),
    (0.9953, 1.0042, "between 0.995 and 1"),  # two digits wrote "between 1 and 1"
    (0.99991, 0.99994, "at 1"),
    (1e-5, 3e-5, "between 1.0e-05 and 3.0e-05"),
])
def test_a_healthy_range_is_written_with_the_digits_that_tell_its_ends_apart(low, high, text):
    assert span(low, high) == text


def test_constant_weights_explain_the_symmetry():
    assert any("symmetry never breaks" in d for d in _verdict("tanh", "zeros").details)
    assert not _verdict("relu", "kaiming_normal").details


@pytest.mark.parametrize("activation,scheme,recommended", [
    ("tanh", "kaiming_normal", "xavier_normal"), ("relu", "xavier_normal", "kaiming_normal"),
    ("selu", "kaiming_normal", "lecun_normal"), ("linear", "xavier_normal", "orthogonal"),
    ("gelu", "kaiming_normal", "xavier_normal with gain 1.53"),
])
def test_recommendation_follows_the_lore(activation, scheme, recommended):
    result = _verdict(activation, scheme, depth=3, width=32)
    assert result.recommended_scheme == recommended.split()[0]
    assert result.recommendation.startswith(f"For {activation}, the usual choice is {recommended}")


@pytest.mark.parametrize("scheme", ["xavier_normal", "normal"])
def test_sigmoid_is_told_to_switch_to_tanh_not_that_xavier_keeps_its_signal(scheme):
    # It said Xavier "keeps the variance of forward and backward signals near 1" for sigmoid,
    # beside χ₁ = 0.056 and gradients vanishing 1e-6 over 10 layers.
    result = _verdict("sigmoid", scheme, depth=10)
    assert result.recommendation.startswith("For sigmoid, no initialization keeps a deep stack "
                                            "trainable; use tanh with xavier_normal")
    assert "near 1" not in result.recommendation and "usual choice" not in result.recommendation


def test_every_number_a_recommendation_quotes_is_the_mean_field_one():
    why = {name: get_activation(name).why for name in ACTIVATIONS}
    # sigmoid: χ₁ at Xavier's σ_w² = 1; critical only at σ_w² ≈ 103, where 61% saturate
    assert f"χ₁ = {mean_field('sigmoid', 1.0, 0.0).chi1:.2g}" in why["sigmoid"]
    critical = critical_line("sigmoid", [0.0], 200.0, scan=400)["sigma_w2"].iloc[0]
    assert f"σ_w² ≈ {critical:.0f} (gain ≈ {math.sqrt(critical):.0f})" in why["sigmoid"]
    q = mean_field("sigmoid", critical, 0.0).q_star
    limit = get_activation("sigmoid").saturated_outside[1]
    assert f"{2 * stats.norm.sf(limit / math.sqrt(q)):.0%} of the units" in why["sigmoid"]
    # tanh, ReLU and linear (orthogonal, gain 1) at their schemes are critical; leaky ReLU
    # within 0.01%; SELU at 1.07
    assert mean_field("linear", 1.0, 0.0).phase == "critical"
    assert mean_field("tanh", 1.0, 0.0).phase == "critical"
    assert mean_field("relu", 2.0, 0.0).phase == "critical"
    assert mean_field("leaky_relu", 2.0, 0.0).chi1 == pytest.approx(1.0001, abs=1e-6)
    assert f"χ₁ = {mean_field('selu', 1.0, 0.0).chi1:.3g}" in why["selu"]
    # tanh at Xavier: the variance falls about as 1/(2·layer)
    tanh = predict(NetworkSpec.stack(128, 50, input_dim=128, activation="tanh",
                                       scheme="xavier_normal"))
    assert tanh.preact_var[-1] * 2 * 50 == pytest.approx(1.0, rel=0.2)
    # smooth rectifiers: what Kaiming's √2 does over 20 square layers, and the gain's fixed point
    for name, factor in (("elu", "×2.5"), ("gelu", "×0.05"), ("silu", "×0.005")):
        act = get_activation(name)
        kaiming = predict(NetworkSpec.stack(256, 20, input_dim=256, activation=name))
        drift = math.sqrt(kaiming.preact_var[-1] / kaiming.preact_var[0])
        assert f"(std {factor} over 20 layers)" in why[name]
        assert drift == pytest.approx(float(factor[1:]), rel=0.1), name
        assert mean_field(act, act.gain**2, 0.0, q_start=1.0).q_star == pytest.approx(1.0,
                                                                                 rel=1e-3)
        above = mean_field(act, act.gain**2, 0.0, q_start=1.2).q_star
        stable = above is not None and above == pytest.approx(1.0, rel=1e-3)
        assert stable == ("unstable" not in why[name]), name
    softplus = get_activation("softplus")
    assert f"mean {float(first_moment(softplus, 1.0)):.2f} at unit input" in why["softplus"]
    chi = mean_field(softplus, softplus.gain**2, 0.0).chi1
    assert f"χ₁ is only {chi:.2f}" in why["softplus"]
    kaiming = predict(NetworkSpec.stack(256, 20, input_dim=256, activation="softplus"))
    fade = math.sqrt(kaiming.grad_var[0] / kaiming.grad_var[-1])
    assert f"(std ×{fade:.1g})" in why["softplus"]


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_a_norm_layer_verdict_says_the_scheme_divides_out_and_never_recommends_it(norm):
    # Batch norm gave "Exploding gradients ... kaiming_normal is the usual choice" with Kaiming
    # already chosen. The norm rescales every layer, so the statistics do not depend on the
    # weights' scale: Kaiming and N(0, 0.5²) give the same gradients to 0.1%.
    results = {}
    for scheme, params in (("kaiming_normal", {}), ("normal", {"std": 0.5})):
        spec = NetworkSpec.stack(256, 20, scheme=scheme, scheme_params=params, norm=norm)
        results[scheme] = profile(spec, batch=256)
    grads = [r.layers["grad_std"].to_numpy() for r in results.values()]
    assert grads[0] == pytest.approx(grads[1], rel=1e-3)
    assert results["kaiming_normal"].layers["preact_std"].to_numpy() == pytest.approx(1, rel=1e-3)
    result = verdict(results["kaiming_normal"])
    assert "usual choice" not in result.recommendation
    assert "the scheme's scale divides out" in result.recommendation
    assert "measured: 1, layer by layer" in result.recommendation
    growth = grads[0][0] / grads[0][-1]
    if norm == "batchnorm":  # batch norm's own gradient explosion (Yang et al. 2019): ×37
        assert result.kind == "exploding" and growth > 10
        assert "Batch norm itself makes gradients grow" in result.recommendation
    else:
        assert result.kind == "healthy" and growth < 10
        assert "Batch norm itself" not in result.recommendation


def test_the_chosen_scheme_is_never_the_fix_for_what_the_verdict_found():
    prof = profile(NetworkSpec.stack(32, 3, scheme="kaiming_normal"), batch=32)
    for kind in ("vanishing", "exploding", "saturated", "dead"):
        text = recommendation(prof, kind)
        assert "already the usual choice" in text and "is not the fix" in text


def test_a_scheme_of_the_recommended_family_is_acknowledged():
    result = _verdict("relu", "kaiming_uniform", depth=3, width=32)
    assert result.recommendation.startswith("kaiming_uniform is the usual choice for relu")


@pytest.fixture(scope="module")
def two_profiles():
    return {name: profile(NetworkSpec.stack(64, 4, scheme=name), batch=32)
            for name in ("kaiming_normal", "lsuv")}


def test_by_layer_frame_adds_theory_only_where_the_theory_applies(two_profiles):
    frame = by_layer_frame(two_profiles, "act_std")
    sources = frame.groupby("scheme")["source"].unique()
    assert set(sources["kaiming_normal"]) == {"measured", "theory"}
    assert set(sources["lsuv"]) == {"measured"}
    assert len(frame) == 4 * 3


def test_weight_std_theory_comes_from_the_scheme(two_profiles):
    frame = by_layer_frame(two_profiles, "weight_std")
    theory = frame[(frame.scheme == "kaiming_normal") & (frame.source == "theory")]
    assert theory["value"].iloc[1] == pytest.approx(math.sqrt(2 / 64))


def test_fractions_frame_has_every_measure_for_every_layer(two_profiles):
    frame = fractions_frame(two_profiles)
    assert set(frame["measure"]) == set(FRACTION_MEASURES.values())
    assert len(frame) == 2 * 3 * 4
    dead = frame[frame["measure"] == FRACTION_MEASURES["dead_frac"]]
    assert dead["value"].tolist() == [
        v for p in two_profiles.values() for v in p.layers["dead_frac"]]


@pytest.mark.parametrize("activation,words", [
    ("linear", "cannot saturate, and no unit can be off or dead"),
    ("leaky_relu", "slope of 0.01"),
    ("relu", "cannot saturate"),
    ("tanh", "never off or dead"),
    ("sigmoid", "never off or dead"),
    ("gelu", "cannot saturate"),
])
def test_fractions_note_says_why_a_measure_is_missing(activation, words):
    spec = NetworkSpec.stack(16, 2, activation=activation)
    frame = fractions_frame({"s": profile(spec, batch=8)}).dropna()
    measures = set(frame["measure"])
    assert words in fractions_note(activation)
    assert bool(measures) == (activation not in ("linear", "leaky_relu"))
    assert len(measures) < len(FRACTION_MEASURES)



def test_weight_theory_expected_counts_add_up_to_the_number_of_weights():
    prof = profile(NetworkSpec.stack(128, 2, scheme="xavier_uniform"), batch=16)
    theory = weight_theory(prof, 2, points=2001)
    bin_width = float(prof.histograms.query("kind == 'weight' and layer == 2")
                      .eval("bin_hi - bin_lo").mean())
    # Riemann sum of the density over the support, in counts: within 2% of 128*128 entries.
    step = theory["value"].diff().mean()
    total = theory["expected"].sum() * step / bin_width
    assert total == pytest.approx(128 * 128, rel=0.02)


def test_weight_table_lists_gain_std_and_uniform_bound():
    prof = profile(NetworkSpec.stack(100, 2, scheme="kaiming_uniform",
                                     scheme_params={"nonlinearity": "relu"}), batch=16)
    table = weight_table(prof)
    row = table.iloc[1]
    assert row["gain"] == pytest.approx(math.sqrt(2))
    assert row["std (theory)"] == pytest.approx(math.sqrt(2 / 100))
    assert row["bound (theory)"] == pytest.approx(math.sqrt(6 / 100))
    assert row["std (measured)"] == pytest.approx(row["std (theory)"], rel=0.05)


@pytest.mark.parametrize("scheme", ["lecun_normal", "lecun_uniform", "kaiming_normal",
                                    "kaiming_uniform", "pytorch_default"])
def test_weight_table_gain_is_the_one_the_std_follows_from(scheme):
    """Schemes scaled by fan_in: std = gain / √fan_in, so LeCun's gain is 1 (and is shown)."""
    table = weight_table(profile(NetworkSpec.stack(64, 2, input_dim=32, scheme=scheme), batch=16))
    assert table["gain"].notna().all()
    assert (table["gain"] / np.sqrt(table["fan_in"])).to_list() == pytest.approx(
        table["std (theory)"].to_list())
    if scheme.startswith("lecun"):
        assert (table["gain"] == 1.0).all()


def test_weight_table_leaves_a_number_a_scheme_does_not_have_as_nan():
    table = weight_table(profile(NetworkSpec.stack(16, 2, scheme="lsuv"), batch=16))
    assert table[list(WEIGHT_TABLE_GAPS)].isna().all().all()
    assert table["std (measured)"].notna().all()
