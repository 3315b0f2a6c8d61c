"""The page with an architecture other than the plain stack, and compared variants in its link.

Driven in-process with Streamlit's AppTest. Every control of an architecture comes from its
Option records (ui/sidebar.py); the verdict, the charts' words and the advice come from its
module (initviz/archs/).
"""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest
from test_app import _app

from initviz.network import NetworkSpec
from initviz.probe import profile
from initviz.presets import SECTIONS
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
    choices = Choices(preset="none", specs=specs, training={
        "dataset": "digits", "optimizer": "sgd", "lr": 0.05, "steps": 20, "seeds": 1},
        seed=0, batch=32, device="cpu", problems=())
    race, problem = train_spec(choices, "cpu")
    assert problem is None
    assert race.labels == tuple(specs)
    assert [race.run_network(choice).option("residual") for choice in race.schemes] == [
        "plain", "fixup"]
    assert SECTIONS[2] == "Training"
