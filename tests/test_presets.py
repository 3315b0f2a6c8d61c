"""Every preset is a valid configuration of the page's controls and tells its story."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from initviz import NetworkSpec, SCHEMES, profile
from initviz.activations import get_activation
from initviz.cli import main
from initviz.meanfield import predict
from initviz.phase import phase_diagram
from initviz.presets import ARCH_KEYS, PRESETS, network_of
from initviz.reach import correlation_fixed_point, depth_reach
from initviz.report import verdict
from initviz.variants import network_for, parse_entry

PAGE_KEYS = {"preset", "input_dim", "width", "depth", "sizes", "activation", "scheme", "bias",
             "norm", "seed", "batch", "dataset", "optimizer", "lr", "steps", "seeds", "compare",
             "device", "input_mean", "input_std", "input_scale", "dropout", "output_init",
             "output_scale", *ARCH_KEYS}
_spec = network_of


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_sets_only_page_controls_to_valid_values(name):
    preset = PRESETS[name]
    for key in preset.values:
        scheme_param = key.split(".")[0] in SCHEMES
        assert key in PAGE_KEYS or scheme_param, key
    network = _spec(preset.values)
    # A compared entry is a scheme, or a variant of one (SCHEME(KEY=VALUE,...)) valid for the
    # preset's network.
    entries = [parse_entry(entry) for entry in preset.values["compare"]]
    for name, params in entries:
        network_for(network, name, params)
    assert preset.values["scheme"] in [name for name, _ in entries]
    assert "(" in preset.story and any(ch.isdigit() for ch in preset.story)  # a reference


@pytest.mark.parametrize("name,kind", [
    ("he2015", "healthy"), ("pytorch_default", "vanishing"), ("zeros", "dead"),
    ("small_weights", "vanishing"), ("large_weights", "exploding"), ("selu", "healthy"),
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


# Each preset's story against the numbers it quotes: the mean-field value, and the measured one
# (one network of width 256 deviates from mean field by a few % per layer, so the measured
# checks allow for that).


def _with(name: str, **changes) -> NetworkSpec:
    return _spec(dict(PRESETS[name].values, **changes))


def _ratios(spec: NetworkSpec, seeds=(0,)) -> tuple[float, float]:
    """Activation std from layer 1 to the last, and gradient std from the last back to layer 1,
    as factors (the mean over ``seeds``)."""
    runs = [profile(spec, batch=256, seed=seed).layers for seed in seeds]
    act = np.mean([r["act_std"].iloc[-1] / r["act_std"].iloc[0] for r in runs])
    grad = np.mean([r["grad_std"].iloc[0] / r["grad_std"].iloc[-1] for r in runs])
    return float(act), float(grad)


def _predicted(spec: NetworkSpec) -> tuple[float, float]:
    p = predict(spec)
    return (math.sqrt(p.act_var[-1] / p.act_var[0]), math.sqrt(p.grad_var[0] / p.grad_var[-1]))


def test_he2015_story_numbers():
    story = PRESETS["he2015"].story
    assert "2^−14.5 ≈ 4·10⁻⁵" in story and "(χ₁ = 1)" in story
    xavier = _with("he2015", scheme="xavier_normal")
    assert predict(xavier).summary.chi1 == pytest.approx(0.5)
    assert _predicted(xavier) == pytest.approx((2 ** -14.5, 2 ** -14.5), rel=1e-3)
    act, grad = _ratios(xavier, seeds=range(3))
    assert act == pytest.approx(4e-5, rel=0.6) and grad == pytest.approx(4e-5, rel=0.6)
    assert predict(_with("he2015")).summary.chi1 == pytest.approx(1.0)


def test_glorot2010_story_numbers():
    story = PRESETS["glorot2010"].story
    assert "χ₁ = 1/3" in story and "about 0.65%" in story and "about 45%" in story
    old = _with("glorot2010", scheme="pytorch_default")
    assert predict(old).summary.chi1 == pytest.approx(1 / 3)
    for factor in (*_predicted(old), *_ratios(old)):
        assert factor == pytest.approx(0.0065, rel=0.1)
    xavier = _with("glorot2010")
    assert predict(xavier).summary.chi1 == pytest.approx(1.0)
    for factor in (*_predicted(xavier), *_ratios(xavier)):
        assert factor == pytest.approx(0.45, rel=0.1)


def test_zeros_story_numbers():
    # every unit computes the same output (tanh(0) = 0) and gets the same (zero) gradient
    layers = profile(_spec(PRESETS["zeros"].values), batch=64).layers
    assert (layers["act_std"] == 0).all() and (layers["weight_grad_norm"] == 0).all()


def test_small_weights_story_numbers():
    story = PRESETS["small_weights"].story
    assert "falls by √c = 0.1 per layer, 10⁻⁹ over these 10 layers" in story
    spec = _spec(PRESETS["small_weights"].values)
    assert predict(spec).summary.chi1 == pytest.approx(0.01, rel=1e-3)
    for factor in (*_predicted(spec), *_ratios(spec)):
        assert factor == pytest.approx(1e-9, rel=0.2)
    assert verdict(profile(_with("small_weights", scheme="lecun_normal"), batch=128)).kind == (
        "healthy")
    assert verdict(profile(_with("large_weights"), batch=128)).headline.startswith(
        "Exploding gradients")


def test_large_weights_story_numbers():
    # It quoted c = 100, a point off its own phase map, and "slope nearly 0" beside a page whose
    # gradients grew ×2350; c = 10 is on the map, and the story says what the numbers do.
    story = PRESETS["large_weights"].story
    spec = _spec(PRESETS["large_weights"].values)
    summary = predict(spec).summary
    assert f"√q* ≈ {math.sqrt(summary.q_star):.2g}" in story
    assert f"χ₁ = {summary.chi1:.3g}" in story
    limit = get_activation("tanh").saturated_outside[1]
    share = 2 * stats.norm.sf(limit / math.sqrt(summary.q_star))
    assert f"about {share:.0%} of the units" in story
    layers = profile(spec, batch=256).layers
    assert layers["saturated_frac"].iloc[-1] == pytest.approx(share, abs=0.03)
    _, grad = _ratios(spec)
    assert _predicted(spec)[1] == pytest.approx(20, rel=0.1) and grad == pytest.approx(20, rel=0.1)
    assert "×20 in std" in story
    assert correlation_fixed_point("tanh", summary.q_star, summary.sigma_w2, 0.0) == 0.0
    reach = depth_reach("tanh", summary, 10)
    assert f"ξ_c = {reach.depth_scale:.2g} layers" in story
    assert f"6 ξ_c ≈ {reach.trainable_depth:.0f} layers" in story and reach.ratio < 1
    diagram = phase_diagram(spec, n=10)
    assert diagram.in_view(diagram.point).tolist() == [True]


def test_selu_story_numbers():
    # It said Kaiming "pushes SELU into chaos" while the page put LeCun itself at χ₁ = 1.07,
    # "chaotic"; Kaiming has no fixed point at all.
    story = PRESETS["selu"].story
    lecun = _spec(PRESETS["selu"].values)
    summary = predict(lecun).summary
    assert summary.phase == "chaotic" and f"χ₁ = {summary.chi1:.3g}" in story
    act, grad = _ratios(lecun)
    assert _predicted(lecun)[0] == pytest.approx(1.0, abs=1e-6)
    assert act == pytest.approx(1, abs=0.05)
    assert "about 5× in std" in story
    assert _predicted(lecun)[1] == pytest.approx(5, rel=0.15)
    assert grad == pytest.approx(5, rel=0.25)
    kaiming = _with("selu", scheme="kaiming_normal")
    summary = predict(kaiming).summary
    assert summary.q_star is None and f"×{summary.chi1:.2f} per layer" in story
    p = predict(kaiming)
    assert "std to about 34" in story and math.sqrt(p.act_var[-1]) == pytest.approx(34, rel=0.05)
    assert "gradients' ×150" in story and _predicted(kaiming)[1] == pytest.approx(150, rel=0.05)
    layers = profile(kaiming, batch=256).layers
    assert layers["act_std"].iloc[-1] == pytest.approx(34, rel=0.1)
    assert layers["grad_std"].iloc[0] / layers["grad_std"].iloc[-1] == pytest.approx(150, rel=0.1)


def test_selu_kaiming_run_blows_up_as_soon_as_it_trains(capsys):
    # the story's last claim, at the preset's own learning rate: LeCun's loss falls within 10
    # steps, Kaiming's (initial loss ~50) diverges
    values = PRESETS["selu"].values
    assert main(["train", "--activation", "selu", "--width", "256", "--depth", "50",
                 "--schemes", "lecun_normal,kaiming_normal", "--dataset", values["dataset"],
                 "--optimizer", values["optimizer"], "--lr", str(values["lr"]), "--steps", "10",
                 "--seeds", "1", "--json"]) == 0
    runs = {run["scheme"]: run for run in json.loads(capsys.readouterr().out)["runs"]}
    lecun = runs["lecun_normal"]["history"]
    assert not runs["lecun_normal"]["diverged"] and lecun[-1]["train_loss"] < lecun[0]["train_loss"]
    assert runs["kaiming_normal"]["diverged"]
