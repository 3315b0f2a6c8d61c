"""The conv presets (initviz/presets.toml: conv_fan_out, delta_orthogonal) tell their stories
from numbers the package computes for their values. Compared variants (``SCHEME(KEY=VALUE)``)
are not on main yet, so fan_in is profiled here directly beside the preset's fan_out."""

import math
from dataclasses import replace

import numpy as np
import pytest

from initviz.jacobian import jacobian_spectrum
from initviz.presets import PRESETS, network_of
from initviz.probe import profile


def test_conv_fan_out_story_numbers():
    preset = PRESETS["conv_fan_out"]
    fan_out = network_of(preset.values)
    assert fan_out.fans[0] == (27, 288) and fan_out.depth == 12 and fan_out.sizes[0] == 32
    fan_in = replace(fan_out, scheme_params={**dict(fan_out.scheme_params), "mode": "fan_in"})
    for seed in (0, 1):
        out, into = (profile(spec, batch=64, seed=seed).layers for spec in (fan_out, fan_in))
        # ReLU is positively homogeneous and both modes draw the same normals, scaled: the ratio
        # is exact at every layer up to the float32 rounding of the probe's summaries (2e-5).
        assert (out["act_std"] / into["act_std"]).to_numpy() == pytest.approx(
            math.sqrt(27 / 288), rel=1e-4)
        assert math.sqrt(27 / 288) == pytest.approx(0.306, abs=5e-4)
        assert out["grad_std"].to_numpy() == pytest.approx(into["grad_std"].to_numpy(), rel=1e-4)
    out_theory = profile(fan_out, batch=2).prediction
    in_theory = profile(fan_in, batch=2).prediction
    assert out_theory.preact_var == pytest.approx((0.1875,) * 12)
    assert in_theory.preact_var == pytest.approx((2.0,) * 12)
    assert out_theory.grad_var == pytest.approx((1.0,) * 12)
    assert in_theory.grad_var == pytest.approx((1.0,) * 12)


def test_delta_orthogonal_story_numbers():
    preset = PRESETS["delta_orthogonal"]
    spec = network_of(preset.values)
    assert (spec.depth, spec.sizes[0], spec.option("image_size")) == (128, 8, 4)
    iso = jacobian_spectrum(spec, seed=0)
    assert len(iso.singular_values) == 128
    assert np.abs(iso.singular_values - 1).max() < 1e-5
    for seed in (0, 1, 2):
        gaussian = jacobian_spectrum(replace(spec, scheme="lecun_normal", scheme_params=()),
                                     seed=seed)
        assert 75 <= gaussian.zero_count <= 85  # "about 80 of the 128"
        assert 5 <= gaussian.spread <= 8
