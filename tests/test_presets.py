"""Every preset is a valid configuration of the page's controls and tells its story."""

import math

import pytest

from initviz import NetworkSpec, SCHEMES, profile
from initviz.presets import PRESETS
from initviz.report import verdict

PAGE_KEYS = {"preset", "input_dim", "width", "depth", "sizes", "activation", "scheme", "bias",
             "norm", "seed", "batch", "dataset", "optimizer", "lr", "steps", "seeds", "compare",
             "device"}


def _spec(values: dict) -> NetworkSpec:
    scheme = values["scheme"]
    params = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f"{scheme}.")}
    return NetworkSpec.stack(values["width"], values["depth"], activation=values["activation"],
                             scheme=scheme, scheme_params=params, bias=values["bias"],
                             input_dim=values.get("input_dim", 64), norm=values["norm"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_sets_only_page_controls_to_valid_values(name):
    preset = PRESETS[name]
    for key in preset.values:
        scheme_param = key.split(".")[0] in SCHEMES
        assert key in PAGE_KEYS or scheme_param, key
    assert all(s in SCHEMES for s in preset.values["compare"])
    assert preset.values["scheme"] in preset.values["compare"]
    _spec(preset.values)
    assert "(" in preset.story and any(ch.isdigit() for ch in preset.story)  # a reference


@pytest.mark.parametrize("name,kind", [
    ("he2015", "healthy"), ("pytorch_default", "vanishing"), ("zeros", "dead"),
    ("small_weights", "vanishing"), ("large_weights", "saturated"), ("selu", "healthy"),
    ("orthogonal_linear", "healthy"), ("glorot2010", "healthy"),
])
def test_preset_shows_what_its_story_says(name, kind):
    values = PRESETS[name].values
    assert verdict(profile(_spec(values), batch=128)).kind == kind


def test_he2015_contrast_vanishes_where_the_preset_scheme_holds():
    values = dict(PRESETS["he2015"].values, scheme="xavier_normal")
    assert verdict(profile(_spec(values), batch=128)).kind == "vanishing"


def test_pytorch_default_preset_has_the_floor_and_the_gradient_decay_its_story_gives():
    # The story's numbers, against the mean-field values. Forward: the default bias (variance
    # 1/(3·256)) holds q* = σ_b² / (1 - 1/6), where a ReLU output has std √(q* (1/2 - 1/2π)) =
    # 0.023. Backward: χ₁ = σ_w²/2 = 1/6, so 19 layers take the gradient std down by 6^-9.5 =
    # 4.1e-8. Measured at batch 256, seed 0: 0.020-0.024 from layer 5 on, and 4.4e-8.
    layers = profile(_spec(PRESETS["pytorch_default"].values), batch=256).layers
    q_star = (1 / (3 * 256)) / (1 - 1 / 6)
    floor = math.sqrt(q_star * (0.5 - 1 / (2 * math.pi)))
    assert layers["act_std"].iloc[4:].to_numpy() == pytest.approx(floor, rel=0.2)
    decay = layers["grad_std"].iloc[0] / layers["grad_std"].iloc[-1]
    assert decay == pytest.approx(6 ** -9.5, rel=0.5)
    story = PRESETS["pytorch_default"].story
    assert "std of about 0.02" in story and "4·10⁻⁸" in story


def test_the_orthogonal_linear_stack_keeps_its_activation_std_at_1():
    # orthogonal layers keep every input's norm: the std holds to four digits over 50 layers
    headline = verdict(profile(_spec(PRESETS["orthogonal_linear"].values), batch=256)).headline
    assert "activation std stays at 1 over 50 layers" in headline
