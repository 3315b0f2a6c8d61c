"""Activations: gains against torch and against their definition, and the documented thresholds."""

import math

import pytest
import torch
from torch import nn

from initviz.activations import (ACTIVATIONS, DEAD_SLOPE, SATURATION_MARGIN, get_activation)
from initviz.errors import InvalidSpec
from initviz.schemes import SCHEMES

CONTRACT_ACTIVATIONS = ["linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu", "elu", "gelu",
                        "silu", "softplus"]
TORCH_GAINS = {
    "linear": nn.init.calculate_gain("linear"),
    "relu": nn.init.calculate_gain("relu"),
    "leaky_relu": nn.init.calculate_gain("leaky_relu", 0.01),  # the module's default slope
    "tanh": nn.init.calculate_gain("tanh"),
    "sigmoid": nn.init.calculate_gain("sigmoid"),
    "selu": nn.init.calculate_gain("selu"),
}
SECOND_MOMENT = sorted(set(CONTRACT_ACTIVATIONS) - set(TORCH_GAINS))
MC_SAMPLES = 2_000_000
Z = 5.0  # Monte Carlo tolerance: 5 standard errors of the sample mean


def _slope(fn, z: torch.Tensor) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(fn(z).sum(), z)
    return slope


def test_the_contract_activations_in_order():
    assert list(ACTIVATIONS) == CONTRACT_ACTIVATIONS


@pytest.mark.parametrize("name", CONTRACT_ACTIVATIONS)
def test_module_computes_fn_and_recommends_a_known_scheme(name):
    act = get_activation(name)
    z = torch.linspace(-8, 8, 1001)
    assert torch.allclose(act.module()(z), act.fn(z), rtol=0, atol=1e-6)
    assert act.recommended_scheme in SCHEMES and act.why


@pytest.mark.parametrize("name", sorted(TORCH_GAINS))
def test_gain_is_torchs_calculate_gain_where_torch_has_one(name):
    act = get_activation(name)
    assert act.gain_source == "torch"
    assert act.gain == TORCH_GAINS[name]


@pytest.mark.parametrize("name", SECOND_MOMENT)
def test_second_moment_gain_gives_unit_second_moment_by_monte_carlo(name):
    act = get_activation(name)
    assert act.gain_source == "second moment"
    z = torch.randn(MC_SAMPLES, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    squared = (act.gain * act.fn(z)) ** 2
    standard_error = float(squared.std()) / math.sqrt(MC_SAMPLES)
    assert float(squared.mean()) == pytest.approx(1.0, abs=Z * standard_error)


@pytest.mark.parametrize("name", ["elu", "gelu", "silu"])
def test_a_smooth_rectifier_is_recommended_the_gain_that_keeps_its_own_second_moment(name):
    # Kaiming's √2 is ReLU's: mean field takes GELU and SiLU to 0 with it, ELU upwards
    # (tests/test_report.py checks the quoted factors); the reason quotes the activation's own
    # E[φ²] and gain, and recommends xavier_normal with that gain.
    act = get_activation(name)
    assert act.recommended_scheme == "xavier_normal"
    assert act.recommended_params == (("gain", round(act.gain, 4)),)
    assert act.why.startswith(act.label) and "ReLU zeroes half" not in act.why
    assert f"E[φ(z)²] = {act.gain ** -2:.3g}" in act.why
    assert f"the gain that keeps E[x²] at 1 is {act.gain:.3g}," in act.why
    assert f"xavier_normal with gain {act.gain:.3g}" in act.why


def test_relus_torch_gain_also_keeps_the_second_moment():
    """He et al.: E[(√2 · relu z)²] = 1 exactly, so both definitions agree for ReLU."""
    z = torch.randn(MC_SAMPLES, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    squared = (get_activation("relu").gain * torch.relu(z)) ** 2
    assert float(squared.mean()) == pytest.approx(1.0, abs=Z * float(squared.std())
                                                  / math.sqrt(MC_SAMPLES))


def test_margins_are_three_percent():
    assert SATURATION_MARGIN == 0.03 and DEAD_SLOPE == 0.03


# The documented definitions: |tanh z| > 0.97; sigmoid below 0.03 or above 0.97.
@pytest.mark.parametrize("name, at_low, at_high", [("tanh", -0.97, 0.97),
                                                    ("sigmoid", 0.03, 0.97)])
def test_bounded_activations_saturate_within_3_percent_of_either_asymptote(name, at_low, at_high):
    act = get_activation(name)
    low, high = act.saturated_outside
    assert low == -high
    edge = act.fn(torch.tensor([low, high], dtype=torch.float64))
    assert edge.tolist() == pytest.approx([at_low, at_high], abs=1e-12)
    just_inside, just_outside = act.fn(torch.tensor([high - 1e-6, high + 1e-6],
                                                    dtype=torch.float64)).tolist()
    assert just_inside < 1 - SATURATION_MARGIN < just_outside


@pytest.mark.parametrize("name", ["elu", "selu"])
def test_exponential_units_saturate_within_3_percent_of_their_negative_asymptote(name):
    act = get_activation(name)
    low, high = act.saturated_outside
    assert high == math.inf
    asymptote = float(act.fn(torch.tensor(-100.0, dtype=torch.float64)))
    assert asymptote < 0
    at_low = float(act.fn(torch.tensor(low, dtype=torch.float64)))
    assert at_low == pytest.approx((1 - SATURATION_MARGIN) * asymptote, rel=1e-12)


def test_relu_is_dead_exactly_where_its_output_is_zero():
    act = get_activation("relu")
    assert act.dead_at_or_below == 0.0
    z = torch.linspace(-3, 3, 601, dtype=torch.float64)
    assert torch.equal(act.fn(z) == 0, z <= act.dead_at_or_below)


@pytest.mark.parametrize("name", ["gelu", "silu", "softplus"])
def test_smooth_rectifiers_are_dead_where_the_slope_stays_below_3_percent(name):
    act = get_activation(name)
    threshold = act.dead_at_or_below
    assert threshold < 0
    below = torch.linspace(-30.0, threshold, 30001, dtype=torch.float64)
    assert float(_slope(act.fn, below).abs().max()) < DEAD_SLOPE
    # ... and it is the largest such z: within 0.01 above it the slope reaches 3%.
    above = torch.linspace(threshold, threshold + 0.01, 101, dtype=torch.float64)[1:]
    assert float(_slope(act.fn, above).abs().max()) >= DEAD_SLOPE


def test_softplus_dead_threshold_is_logit_of_3_percent():
    """softplus' = sigmoid, so |φ'| < 0.03 exactly for z < logit(0.03) = −3.476."""
    expected = math.log(SATURATION_MARGIN / (1 - SATURATION_MARGIN))
    assert get_activation("softplus").dead_at_or_below == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("name", ["linear", "leaky_relu"])
def test_activations_that_never_flatten_neither_saturate_nor_die(name):
    act = get_activation(name)
    assert act.saturated_outside is None and act.dead_at_or_below is None


def test_unknown_activation_names_the_field_and_the_choices():
    with pytest.raises(InvalidSpec) as caught:
        get_activation("swish")
    assert caught.value.field == "activation" and "silu" in caught.value.allowed
