"""The conv presets (initviz/presets.toml: conv_fan_out, delta_orthogonal) tell their stories
from numbers the package computes for their values and compared entries."""

import math
from dataclasses import replace

import numpy as np
import pytest

from test_app import _app

from initviz.jacobian import jacobian_spectrum
from initviz.presets import PRESETS, network_of
from initviz.probe import profile
from initviz.variants import network_for, parse_entry


def test_conv_fan_out_story_numbers():
    values = PRESETS["conv_fan_out"].values
    fan_out = network_of(values)  # the chosen scheme, raced as compare's bare kaiming_normal
    assert values["compare"][0] == "kaiming_normal"
    fan_in = network_for(fan_out, *parse_entry(values["compare"][1]))
    assert dict(fan_out.scheme_params)["mode"] == "fan_out"
    assert fan_in == network_for(fan_out, "kaiming_normal", {"mode": "fan_in",
                                                              "nonlinearity": "relu"})
    assert fan_out.fans[0] == (27, 144) and fan_out.depth == 8 and fan_out.sizes[0] == 16
    assert fan_out.fans[1:] == [(144, 144)] * 7
    assert math.sqrt(27 / 144) == pytest.approx(0.433, abs=5e-4)
    for seed in (0, 1):
        out, into = (profile(spec, batch=64, seed=seed) for spec in (fan_out, fan_in))
        # ReLU is positively homogeneous and both modes draw the same normals, scaled: the ratio
        # is exact at every layer up to the float32 rounding of the probe's summaries (2e-5).
        assert (out.layers["act_std"] / into.layers["act_std"]).to_numpy() == pytest.approx(
            math.sqrt(27 / 144), rel=1e-4)
        assert out.layers["grad_std"].to_numpy() == pytest.approx(
            into.layers["grad_std"].to_numpy(), rel=1e-4)
    assert np.array(out.prediction.preact_var) / np.array(into.prediction.preact_var) == \
        pytest.approx(0.1875, rel=1e-6)
    assert out.prediction.grad_var == pytest.approx(into.prediction.grad_var, rel=1e-9)


def test_delta_orthogonal_story_numbers():
    spec = network_of(PRESETS["delta_orthogonal"].values)
    assert (spec.depth, spec.sizes[0], spec.option("image_size"), spec.option("kernel")) == (
        128, 8, 4, 3)
    for seed in (0, 1, 2):
        iso = jacobian_spectrum(spec, seed=seed)
        assert len(iso.singular_values) == 128
        assert np.abs(iso.singular_values - 1).max() < 1e-5
        gaussian = jacobian_spectrum(replace(spec, scheme="lecun_normal", scheme_params=()),
                                     seed=seed)
        assert 88 <= gaussian.zero_count <= 91
        assert 8 <= gaussian.spread <= 11
        assert gaussian.singular_values[0] < 1e-6


@pytest.mark.parametrize("name", ["conv_fan_out", "delta_orthogonal"])
def test_the_page_opens_each_conv_preset_without_a_warning(name):
    at = _app(preset=name, section=PRESETS[name].section)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning, [w.value for w in at.warning]  # e.g. the race refusing its entries
    assert at.selectbox(key="arch").value == "conv"
    assert at.multiselect(key="compare").value == PRESETS[name].values["compare"]
