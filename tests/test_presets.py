"""Every preset is a valid configuration of the page's controls and tells its story."""

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
