"""The Jacobian presets' stories against the numbers the page then shows (seeds 0-2; the page's
default seed is 0). Tolerances: the finite-width spread of one spectrum over these seeds (measured
std/mean of s² 1.14-1.23 orthogonal, 5.1-6.9 Gaussian at width 128, depth 32)."""

import numpy as np
import pytest

from initviz.activations import get_activation
from initviz.jacobian import jacobian_spectrum
from initviz.network import NetworkSpec
from initviz.presets import PRESETS
from initviz.meanfield import mean_field, second_moment
from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)

SEEDS = (0, 1, 2)


def _spectra(name, scheme):
    values = PRESETS[name].values
    params = {key.split(".", 1)[1]: value for key, value in values.items()
              if key.startswith(scheme + ".")}
    spec = NetworkSpec.stack(values["width"], values["depth"], input_dim=values["input_dim"],
                             activation=values["activation"], scheme=scheme,
                             scheme_params=params, bias=values["bias"], norm=values["norm"])
    return [jacobian_spectrum(spec, seed=seed, device="cpu") for seed in SEEDS]


def test_isometry_story_quotes_what_the_page_computes():
    values, story = PRESETS["isometry"].values, PRESETS["isometry"].story
    assert values["compare"] == ["orthogonal", "xavier_normal"]
    # "χ₁ = 1 at its fixed point q* = 0" for σ_w² = gain² = 1, σ_b² = 0
    sigma_w2 = values["orthogonal.gain"] ** 2
    assert "σ_w² = 1, σ_b² = 0" in story and sigma_w2 == 1.0 and values["bias"] == "zeros"
    theory = mean_field("tanh", sigma_w2, 0.0)
    assert theory.q_star == 0.0 and theory.chi1 == pytest.approx(1.0, abs=1e-9)
    # "its variance like 1/(2l)": the mean-field length map from the probe input's q = 1
    q, act = 1.0, get_activation("tanh")
    for _ in range(values["depth"]):
        q = float(second_moment(act, q))
    assert q * 2 * values["depth"] == pytest.approx(1.0, rel=0.05)

    orthogonal, gaussian = _spectra("isometry", "orthogonal"), _spectra("isometry", "xavier_normal")
    assert "std/mean of s² stays near 1.2" in story
    assert all(abs(r.spread - 1.2) < 0.1 for r in orthogonal)
    assert "it is about 6" in story and all(5.0 < r.spread < 7.0 for r in gaussian)
    assert "about a fifth of the 128 input directions are lost" in story
    assert all(r.zero_count == 0 for r in orthogonal)
    assert all(0.15 < r.zero_count / 128 < 0.25 for r in gaussian)
    assert "mean s² ≈ 0.02 after 32 layers" in story and values["depth"] == 32
    assert all(abs(r.mean_sq - 0.02) < 0.005 for r in orthogonal)
    assert "hundreds to thousands of times below" in story
    assert all(100 < r.condition < 10_000 for r in orthogonal)
    # "Neither is an isometry on this page": the readings say so too
    assert all(r.conditioning == "ill conditioned" for r in orthogonal)
    assert all(r.conditioning == "singular" for r in gaussian)


def test_orthogonal_linear_story_quotes_what_the_page_computes():
    values, story = PRESETS["orthogonal_linear"].values, PRESETS["orthogonal_linear"].story
    assert values["compare"] == ["orthogonal", "lecun_normal"] and values["depth"] == 50
    assert values["activation"] == "linear" and values["width"] == values["input_dim"] == 128
    assert "every singular value at 1 (here to within 1e-5" in story
    for result in _spectra("orthogonal_linear", "orthogonal"):
        assert np.max(np.abs(result.singular_values - 1.0)) < 1e-5
        assert result.conditioning == "isometric"
    assert "about a third of the 128 input directions are lost" in story
    gaussian = _spectra("orthogonal_linear", "lecun_normal")
    assert all(0.25 < r.zero_count / 128 < 0.4 for r in gaussian)
    # "more with every layer": the spread of s² at 50 layers against 10 of the same net
    shallow = [jacobian_spectrum(NetworkSpec.stack(128, 10, input_dim=128, activation="linear",
                                                   scheme="lecun_normal"), seed=seed,
                                 device="cpu").spread for seed in SEEDS]
    assert np.mean([r.spread for r in gaussian]) > 1.5 * np.mean(shallow)
