"""The page with an architecture other than the plain stack, and compared variants in its link.

Driven in-process with Streamlit's AppTest. Every control of an architecture comes from its
Option records (ui/sidebar.py); the verdict, the charts' words and the advice come from its
module (initviz/archs/).
"""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest
from test_app import _app

from initviz import served
from initviz.archs import ARCHS
from initviz.network import NetworkSpec
from initviz.presets import PRESETS, SECTIONS, network_of
from initviz.variants import network_for, parse_entry
from initviz.probe import profile
from ui.links import DEFAULTS
from ui.sidebar import Choices, train_spec

RESIDUAL = {"arch": "residual", "residual": "plain", "width": "64", "depth": "30",
            "compare": ["kaiming_normal(residual=fixup)", "kaiming_normal(residual=rezero)"]}


def _quiet(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning, [w.value for w in at.warning]


def test_a_residual_link_opens_the_residual_view_with_its_variants():
    at = _app(**RESIDUAL)
    _quiet(at)
    assert at.selectbox(key="arch").value == "residual"
    assert at.selectbox(key="residual").options == ["plain", "scaled", "fixup", "rezero"]
    assert at.multiselect(key="compare").value == RESIDUAL["compare"]
    headline = at.error[0].value
    assert headline.startswith("**Exploding: residual stream std grows from")
    assert "(block 1)" in headline and "(block 30)" in headline
    # the advice's per-block growth is the profile's own: (std_30 / std_1)^(2/29)
    stds = profile(NetworkSpec.stack(64, 30, arch="residual"), batch=256).layers["act_std"]
    growth = (stds.iloc[-1] / stds.iloc[0]) ** (2 / 29)
    quoted = re.search(r"grows by a factor of ([\d.]+) per block", headline)
    assert quoted and float(quoted.group(1)) == pytest.approx(growth, rel=5e-3)
    assert 1.8 < growth < 2.2  # ReLU + Kaiming: the stream's variance doubles per block
    titles = " ".join(chart.proto.spec for chart in at.get("vega_lite_chart"))
    assert "residual stream std per block" in titles and "1 = first block" in titles
    assert "What each block adds against the stream" in titles
    assert "gradient-to-weight ratio per block" in titles
    # the stream's recursion is drawn dashed: no caption may say the theory is not drawn
    assert not any("Theory not drawn" in caption.value for caption in at.caption)


def test_switching_the_architecture_shows_its_options_and_only_its_options():
    at = _app(width="32", depth="4")
    _quiet(at)
    assert not [box for box in at.selectbox if box.key == "residual"]
    at.selectbox(key="arch").set_value("residual").run()
    _quiet(at)
    at.selectbox(key="residual").set_value("fixup").run()
    _quiet(at)
    assert at.success[0].value.startswith("**Healthy: residual stream std stays")
    assert "every branch adds exactly zero at initialization" in at.success[0].value
    at.selectbox(key="arch").set_value("mlp").run()
    _quiet(at)
    assert not [box for box in at.selectbox if box.key == "residual"]
    assert "activation std" in (at.success or at.error)[0].value


def test_a_network_the_architecture_refuses_falls_back_to_the_plain_stack_with_a_sentence():
    at = _app(arch="residual", scheme="lsuv", width="16", depth="3")
    assert not at.exception
    assert any("The residual MLP cannot be built from these settings" in w.value
               and "lsuv" in w.value for w in at.warning)
    assert "over 3 layers" in (at.success or at.error)[0].value


def test_a_bad_variant_in_the_link_is_left_out_with_a_sentence():
    at = _app(width="16", depth="3", compare=["uniform(a=0,b=1)", "uniform(c=2)"])
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "uniform\\(c\\=2\\)" in warnings[0]
    assert "no parameter" in warnings[0]


@pytest.mark.parametrize("section", ["Signal", "Weights", "Theory", "Code"])
def test_every_section_draws_a_residual_network_with_variants(section):
    at = _app(**{**RESIDUAL, "depth": "6"}, section=section)
    _quiet(at)
    assert at.session_state["section"] == section


def test_the_race_trains_each_compared_entry_under_its_own_label():
    main = NetworkSpec.stack(16, 3, arch="residual")
    specs = {"kaiming_normal": main,
             "kaiming_normal(residual=fixup)": NetworkSpec.stack(16, 3, arch="residual",
                                                                 arch_params={"residual": "fixup"})}
    settings = {key: DEFAULTS[key] for key in ("dataset", "optimizer", "lr", "input_scale",
                                                "dropout", "output_init", "output_scale")}
    choices = Choices(preset="none", specs=specs, training={
        **settings, "steps": 20, "seeds": 1, "csv": None, "csv_problem": None},
        seed=0, batch=32, device="cpu", problems=())
    race, problem = train_spec(choices, "cpu")
    assert problem is None
    assert race.labels == tuple(specs)
    assert [race.run_network(choice).option("residual") for choice in race.schemes] == [
        "plain", "fixup"]
    assert SECTIONS[2] == "Training"


def test_a_variant_typed_into_the_add_box_joins_the_compared_entries():
    at = _app(width="16", depth="3")
    at.text_input(key="variant").set_value("uniform(a=-0.5, b=0.5)").run()
    _quiet(at)
    assert at.multiselect(key="compare").value == ["kaiming_normal", "xavier_normal",
                                                   "uniform(a=-0.5,b=0.5)"]
    assert at.text_input(key="variant").value == ""
    at.text_input(key="variant").set_value("uniform(a=-0.5").run()
    assert not at.exception
    assert any("was not added" in w.value and "uniform\\(a\\=\\-0" in w.value
               for w in at.warning)
    assert len(at.multiselect(key="compare").value) == 3


@pytest.mark.parametrize("arch", [name for name in ARCHS if name != "mlp"])
def test_every_architecture_opens_at_its_page_defaults_without_a_warning(arch):
    at = _app(arch=arch)
    _quiet(at)
    architecture = ARCHS[arch]
    for key, value in architecture.page_values.items():
        assert at.session_state[key] == value
    headline = (at.success or at.error)[0].value
    assert f"{architecture.output} std" in headline or "gradient std" in headline
    drawn = {box.key for box in [*at.selectbox, *at.number_input]}
    assert set(architecture.options) <= drawn


def test_choosing_an_architecture_sets_its_sizes_and_schemes():
    at = _app(width="16", depth="3")
    at.selectbox(key="arch").set_value("conv").run()
    _quiet(at)
    assert (at.slider(key="width").value, at.slider(key="depth").value) == (32, 10)
    assert "delta_orthogonal" in at.selectbox(key="scheme").options
    at.selectbox(key="scheme").set_value("delta_orthogonal").run()
    _quiet(at)
    at.selectbox(key="arch").set_value("lstm").run()
    _quiet(at)
    # a conv-only scheme gives way to the default; the LSTM's real option is a float control
    assert at.selectbox(key="scheme").value == "kaiming_normal"
    assert "delta_orthogonal" not in at.selectbox(key="scheme").options
    assert at.session_state["dataset"] == "digits_rows"
    at.number_input(key="forget_bias").set_value(1.0).run()
    _quiet(at)
    at.selectbox(key="arch").set_value("mlp").run()
    _quiet(at)
    assert at.session_state["dataset"] == "digits"
    assert (at.slider(key="width").value, at.slider(key="depth").value) == (256, 20)


def test_post_ln_signal_draws_the_classifier_gradient_its_story_quotes():
    at = _app(preset="post_ln", section="Signal")
    _quiet(at)
    titles = " ".join(chart.proto.spec for chart in at.get("vega_lite_chart"))
    assert "classifier's loss on 256 digits" in titles
    # What that chart draws, for the story's Post-LN entry: its last 3 blocks over its first 3
    values = PRESETS["post_ln"].values
    main = network_of(values)
    entries = {entry: network_for(main, *parse_entry(entry)) for entry in values["compare"]}
    norms = served.data_columns(tuple(entries.items()), 0)
    post = norms["xavier_normal(ln=post)"]["block_grad_norm"].to_numpy()
    pre = norms["xavier_normal(ln=pre)"]["block_grad_norm"].to_numpy()
    assert 1.26 <= post[-3:].sum() / post[:3].sum() <= 1.70  # "1.3 to 1.7"
    assert 0.5 <= pre[-3:].sum() / pre[:3].sum() <= 0.7  # "0.5 to 0.7"


def test_an_entry_that_builds_the_chosen_network_is_not_drawn_twice():
    # post_ln chooses xavier_normal with ln pre and compares xavier_normal(ln=pre) with
    # xavier_normal(ln=post): two networks, two lines, two entries in the race
    at = _app(preset="post_ln", section="Signal")
    _quiet(at)
    assert at.segmented_control(key="focus_scheme").options == ["xavier_normal",
                                                                "xavier_normal(ln=post)"]


def test_a_conv_kernel_s_histogram_title_counts_its_weights_not_its_fans():
    # 8 → 8 channels, 3×3: fans 72 and 72 (both count the taps), 8·8·9 = 576 weights
    at = _app(arch="conv", width="8", depth="4", input_dim="8", kernel="3", section="Weights")
    _quiet(at)
    def titles(page: AppTest) -> str:  # a long title is wrapped into a list of lines
        return " ".join(" ".join(title) if isinstance(title, list) else title
                        for title in (json.loads(chart.proto.spec).get("title", "")
                                      for chart in page.get("vega_lite_chart")))

    assert "layer 2 weights (576 weights, fan_in 72, fan_out 72)" in titles(at)
    assert "layer 2 weights (256×256)" in titles(_app(section="Weights"))
