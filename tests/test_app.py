"""The page, driven in-process with Streamlit's AppTest: every control, preset and bad link.

AppTest does not fire ``run_every``; the live training view is redrawn by repeated runs, as its
timer would, while the server's worker trains.
"""

import gc
import math
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from initviz import cache, training
from initviz.datasets import DATASETS
from initviz.network import NetworkSpec
from initviz.presets import PRESETS, SECTIONS

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 180  # the first run imports torch; CI machines are small


def _app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart"))


def _texts(at: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(at, kind)]


def _verdict(at: AppTest) -> str:
    return " ".join(_texts(at, "success") + _texts(at, "error") + _texts(at, "warning"))


@pytest.fixture(scope="module")
def default_page() -> AppTest:
    return _app()


def _open(at: AppTest, section: str) -> AppTest:
    """Click the tab of ``section``. (AppTest sends its query parameters with every run, where a
    browser's address bar follows the page, so a tab opened by the link is changed there.)"""
    at.session_state["section"] = section
    if "section" in at.query_params:
        at.query_params["section"] = section
    at.run()
    assert at.session_state["section"] == section
    _no_exception(at)
    return at


def test_the_page_opens_on_the_signal_tab_and_draws_only_the_open_one(default_page):
    at = default_page
    _no_exception(at)
    assert "Healthy" in _verdict(at) and "kaiming_normal is the usual choice for relu" in \
        _verdict(at)
    assert [tab.label for tab in at.tabs] == list(SECTIONS)
    assert at.session_state["section"] == "Signal"
    assert _charts(at) == 6 and not at.metric and not at.code  # no theory, no code computed
    at = _open(_app(), "Theory")
    assert _charts(at) == 2 and len(at.metric) == 5
    at = _open(at, "Weights")
    assert _charts(at) == 2 and not at.metric
    at = _open(at, "Code")
    assert "nn.init.kaiming_normal_" in at.code[0].value and not _charts(at)
    assert len(at.get("download_button")) == 2
    at = _open(at, "Training")
    assert at.button(key="train_button").proto.label == "Train"


def test_the_page_opens_with_two_plain_sentences_and_explains_its_sidebar_jargon(default_page):
    intro = default_page.caption[0].value
    assert intro.startswith("A neural network starts from random weights")
    assert intro.count(". ") + intro.endswith(".") == 2
    helps = {key: default_page.number_input(key=key).help
             for key in ("input_dim", "kaiming_normal.a")}
    assert "How many numbers each input has" in helps["input_dim"]
    assert "slope of leaky_relu for negative inputs" in helps["kaiming_normal.a"]
    assert "fan_in (inputs per unit)" in default_page.selectbox(key="kaiming_normal.mode").help


def test_the_signal_section_defines_the_probe_loss_and_reads_dead_as_units(default_page):
    captions = " ".join(_texts(default_page, "caption"))
    assert "ℓ_b = Σᵢ h[b, i] · r[b, i]" in captions and "√batch" in captions
    assert "dead: the share of units off for all 256 inputs" in captions


def test_a_linear_network_says_why_it_has_no_saturated_or_dead_units():
    at = _app(activation="linear", depth="3", width="32")
    _no_exception(at)
    assert any("cannot saturate, and no unit can be off or dead" in text
               for text in _texts(at, "info"))


def test_the_weight_table_shows_a_dash_and_says_why_where_a_scheme_has_no_number():
    at = _app(scheme="lsuv", depth="3", width="32", section="Weights")
    _no_exception(at)
    table = at.dataframe[0].value
    assert (table[["gain", "std (theory)", "bound (theory)"]] == "—").all().all()
    assert "None" not in table.astype(str).to_numpy()
    assert any(text.startswith("— where lsuv has no such number: gain: the scheme takes no gain")
               for text in _texts(at, "caption"))


CONTROL_CHANGES = [
    ("slider", "width", 96), ("slider", "depth", 7), ("number_input", "input_dim", 32),
    ("selectbox", "activation", "tanh"), ("selectbox", "norm", "layernorm"),
    ("selectbox", "scheme", "orthogonal"), ("number_input", "orthogonal.gain", 1.5),
    ("selectbox", "bias", "normal"), ("number_input", "bias.normal.std", 0.1),
    ("multiselect", "compare", ["lecun_normal", "lsuv"]), ("number_input", "seed", 3),
    ("number_input", "batch", 64), ("selectbox", "dataset", "moons"),
    ("selectbox", "optimizer", "adam"), ("number_input", "lr", 0.003),
    ("slider", "steps", 50), ("slider", "seeds", 1), ("selectbox", "device", "cpu"),
    ("text_input", "sizes", "48,96,24"), ("slider", "weight_layer", 2),
]


def test_every_control_can_be_changed_without_an_error():
    at = _app(section="Weights")
    for widget, key, value in CONTROL_CHANGES:
        getattr(at, widget)(key=key).set_value(value)
        at.run()
        _no_exception(at)
        assert getattr(at, widget)(key=key).value == value, key
    _open(at, "Code")
    assert "orthogonal" in at.code[0].value and "nn.LayerNorm" in at.code[0].value
    assert "sizes = [32, 48, 96, 24]" in at.code[0].value


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_sets_its_controls_and_tells_its_story(name):
    at = _app()
    at.selectbox(key="preset").set_value(name).run()
    _no_exception(at)
    preset = PRESETS[name]
    for key, value in preset.values.items():
        if key != "compare":
            assert at.session_state[key] == value, key
    assert any(preset.title in text for text in _texts(at, "info"))
    assert at.session_state["section"] == preset.section  # the tab that tells its story
    # Train works as the preset stands: its race fits the memory budget, except for the deep
    # networks of presets whose story is not the race (48 transformer blocks, 128 conv layers),
    # where the Training tab says how much memory the race would need.
    _open(at, "Training").button(key="train_button").click().run()
    if name in RACE_TOO_LARGE:
        assert preset.section != "Training"
        assert any("this training run needs about" in text and "memory budget" in text
                   for text in _texts(at, "error"))
        return
    assert _progress_text(at).startswith("training"), _texts(at, "error")
    at.button(key="stop_button").click().run()


RACE_TOO_LARGE = ("gpt2_scaling", "delta_orthogonal")


@pytest.mark.parametrize("name,words", [
    ("he2015", "Healthy"), ("pytorch_default", "Vanishing"), ("zeros", "Dead units"),
    ("large_weights", "Exploding gradients"), ("selu", "Healthy"),
])
def test_a_preset_link_opens_that_view(name, words):
    at = _app(preset=name)
    _no_exception(at)
    assert words in _verdict(at)
    assert at.slider(key="depth").value == PRESETS[name].values["depth"]


def _markdown(at: AppTest) -> str:
    return " ".join(_texts(at, "markdown"))


def test_theory_places_the_network_on_the_phase_diagram_with_its_depth_reach():
    at = _app(section="Theory")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["χ₁"] == "1" and metrics["depth scale ξ_c"] == "∞"  # Kaiming + ReLU: critical
    # two values, not "σ_w² · σ_b² = 2 · 0", which read as a product; each term explained
    assert (metrics["σ_w²"], metrics["σ_b²"]) == ("2", "0")
    assert all(m.help for m in at.metric if m.label in {"σ_w²", "σ_b²", "fixed point q*", "χ₁",
                                                       "depth scale ξ_c"})
    assert any(c.startswith("Mean field: the theory of very wide") for c in _texts(at, "caption"))
    assert "sets only the scale" in _markdown(at) and "which keeps it" in _markdown(at)
    # Xavier ReLU without bias only rescales (χ₁ = 1/2 per layer): no depth limit is claimed
    scaled = _app(scheme="xavier_normal", depth="60", section="Theory")
    _no_exception(scaled)
    assert "sets only the scale" in _markdown(scaled)
    assert "deeper than signals can travel" not in _markdown(scaled)
    metrics = {m.label: m.value for m in scaled.metric}
    assert metrics["χ₁"] == "0.5" and metrics["depth scale ξ_c"] == "none: scale only"
    # tanh, σ_w² = 0.01: ξ_c = 0.22 against 10 layers
    ordered = _app(preset="small_weights", section="Theory")
    _no_exception(ordered)
    assert "deeper than signals can travel" in _markdown(ordered)
    # SELU with LeCun normal is slightly chaotic (χ₁ ≈ 1.07): its ξ_c comes from the correlation
    # fixed point c*, and the metric shows the same ξ_c as the sentence, not χ₁'s "∞"
    chaotic = _app(preset="selu", section="Theory")
    metrics = {m.label: m.value for m in chaotic.metric}
    xi = metrics["depth scale ξ_c"]
    assert float(metrics["χ₁"]) > 1 and xi.endswith(" layers")
    assert f"ξ_c = {xi.removesuffix(' layers')}, chaotic phase" in _markdown(chaotic)


def test_the_isometry_preset_shows_a_narrow_orthogonal_and_a_wide_gaussian_spectrum():
    # what its story says (tests/test_presets_jacobian.py): orthogonal keeps std/mean of s² near
    # 1.2 with every direction kept but is no isometry here; Gaussian loses directions
    at = _app(preset="isometry")
    _no_exception(at)
    readings = {line.split("**")[1]: line for line in _texts(at, "markdown")
                if line.startswith("**") and "s²" in line}
    assert readings["orthogonal"].split(": ")[1].startswith("Ill conditioned")
    assert "spread std/mean 1.23" in readings["orthogonal"]
    assert readings["xavier_normal"].split(": ")[1].startswith("Singular")


def test_theory_explains_what_it_cannot_show_instead_of_failing():
    at = _app(norm="batchnorm", section="Theory")
    _no_exception(at)
    infos = " ".join(_texts(at, "info"))
    assert "Mean-field theory does not describe this network" in infos
    # said once for all the compared schemes, not once per scheme
    refusals = [text for text in _texts(at, "info") if "No Jacobian spectrum" in text]
    assert refusals == ["No Jacobian spectrum: a network with batch norm has no Jacobian of one "
                        "input: batch norm couples the inputs of a batch (choose norm none or "
                        "layernorm)."]
    assert len(at.multiselect(key="compare").value) > 1


def test_an_overflowing_network_gets_a_sentence_in_place_of_its_spectrum():
    # normal(std=1), ReLU, width 256: the Jacobian grows about √128 a layer and leaves float64's
    # reach (s⁴ for the variance of s²) at layer 72; the other scheme is still drawn
    at = _app(scheme="normal", depth="80", compare=["normal", "kaiming_normal"],
              section="Theory")
    _no_exception(at)
    readings = {line.split("**")[1]: line for line in _texts(at, "markdown")
                if line.startswith("**") and ("s²" in line or "No spectrum" in line)}
    assert "No spectrum: the Jacobian grows past" in readings["normal"]
    assert "at layer 72 of 80" in readings["normal"]
    assert "No spectrum" not in readings["kaiming_normal"]


def test_a_link_with_parameters_opens_exactly_that_view():
    at = _app(activation="tanh", scheme="xavier_normal", depth="12", width="128",
              compare=["xavier_normal", "orthogonal"], section="Code")
    _no_exception(at)
    assert at.selectbox(key="activation").value == "tanh"
    assert at.slider(key="depth").value == 12
    assert at.multiselect(key="compare").value == ["xavier_normal", "orthogonal"]
    assert "xavier_normal is the usual choice for tanh" in _verdict(at)
    assert "[64] + [128] * 12" in at.code[0].value


def test_bad_link_values_fall_back_to_defaults_with_a_warning():
    at = _app(depth="9999", width="abc", activation="nope", compare=["xavier_normal", "zz"],
              bogus="1")
    _no_exception(at)
    warnings = " ".join(_texts(at, "warning"))
    for fragment in ("depth “9999”", "width “abc”", "activation “nope”", "“bogus”"):
        assert fragment in warnings
    assert at.slider(key="depth").value == 20
    assert at.selectbox(key="activation").value == "relu"
    assert at.multiselect(key="compare").value == ["xavier_normal"]


def test_non_finite_numbers_in_a_link_fall_back_to_defaults_with_a_warning():
    """Streamlit 1.67's bound integer inputs crash converting inf to an integer (found by the
    random-link property test): the page drops such values before the widgets read them."""
    at = _app(input_dim="1e999", seed="inf", batch="-inf", width="nan", lr="1e999")
    _no_exception(at)
    warnings = " ".join(_texts(at, "warning"))
    for fragment in ("input_dim “1e999”", "seed “inf”", "batch “\\-inf”", "width “nan”",
                     "lr “1e999”"):
        assert fragment in warnings
    assert at.number_input(key="input_dim").value == 64
    assert at.number_input(key="seed").value == 0
    assert at.slider(key="width").value == 256
    at.number_input(key="seed").set_value(7).run()  # bound to the link again from here on
    _no_exception(at)
    assert at.number_input(key="seed").value == 7


def test_bad_sizes_warn_and_use_width_and_depth():
    at = _app(sizes="64,abc")
    _no_exception(at)
    assert any("sizes" in w and "width × depth" in w for w in _texts(at, "warning"))


def test_too_large_a_network_is_refused_with_the_number():
    at = _app(width="2048", depth="200", batch="4096")
    _no_exception(at)
    warnings = " ".join(_texts(at, "warning"))
    assert "GiB" in warnings and "memory budget" in warnings
    assert "Showing the default network" in warnings


def test_asking_for_a_missing_gpu_falls_back_and_says_so():
    at = _app(device="cuda", depth="4", width="32")
    _no_exception(at)
    assert any("not available" in w for w in _texts(at, "warning"))


def _progress_text(at: AppTest) -> str:
    bars = at.get("progress")
    return bars[0].proto.text if bars else ""


def _train(at: AppTest, seconds: float = 600) -> list[str]:
    """Press Train, then rerun as the live view's timer would until the race has ended."""
    at.button(key="train_button").click().run()
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        _no_exception(at)
        seen.append(_progress_text(at))
        if seen[-1].startswith(("finished", "stopped", "ended early")):
            break
        time.sleep(0.25)
        at.run()
    return seen


SMALL_TRAINING = dict(depth="3", width="32", steps="40", seeds="1", batch="64", section="Training")


def test_training_runs_live_and_then_shows_the_finished_race():
    # 2000 steps take several of the live view's redraws even on a fast machine.
    at = _app(**{**SMALL_TRAINING, "steps": "2000"})
    charts_before = _charts(at)
    seen = _train(at)
    assert seen[-1].startswith("finished: step 2000 of 2000")
    classes = DATASETS[at.session_state["dataset"]].n_classes
    assert any(f"guessing evenly among the {classes} classes gives ln {classes} = "
               f"{math.log(classes):.2f}" in text for text in _texts(at, "caption"))
    assert "final val. accuracy" in at.dataframe[-1].value.columns
    assert any(text.startswith("training") for text in seen[:-1])  # drawn while it ran
    # loss, accuracy, update ratio, and the activation and gradient std heatmaps (relu cannot
    # saturate: a sentence instead of its heatmap)
    assert _charts(at) == charts_before + 5
    assert any("the activation has no saturated region" in t for t in _texts(at, "caption"))
    table = at.dataframe[-1].value
    assert set(table["scheme"]) == {"kaiming_normal", "xavier_normal"}
    # Leaving the tab and coming back keeps the finished result and trains nothing.
    _open(_open(at, "Weights"), "Training")
    assert _progress_text(at).startswith("finished")
    assert at.button(key="stop_button").proto.disabled is not False


def test_the_tutorial_controls_reach_the_race_and_its_results():
    at = _app(**SMALL_TRAINING, activation="sigmoid", input_scale="unit", dropout="0.2",
              output_init="zeros")
    _no_exception(at)
    assert at.number_input(key="output_scale").proto.disabled  # only for "scaled"
    charts_before = _charts(at)
    assert _train(at)[-1].startswith("finished")
    table = at.dataframe[-1].value
    # a zero output layer predicts every class evenly at step 0: ln 10 = 2.303 for digits
    assert list(table["initial val. loss (before training)"]) == ["2.3", "2.3"]
    assert _charts(at) == charts_before + 6  # sigmoid saturates: all three heatmaps
    race = at.session_state["train_job"].spec
    assert (race.input_scale, race.dropout, race.output_init) == ("unit", 0.2, "zeros")
    assert any("the dashed line" in text for text in _texts(at, "caption"))


def test_a_bad_dropout_in_the_link_falls_back_with_a_warning():
    at = _app(dropout="0.95", **SMALL_TRAINING)
    _no_exception(at)
    assert at.number_input(key="dropout").value == 0.0
    assert any(w.startswith("The link's dropout “0") for w in _texts(at, "warning"))


def test_the_probe_input_mean_and_std_come_from_the_link(monkeypatch):
    from initviz import served
    seen = []
    original = served.profiles

    def spy(specs, batch, seed, device, input_mean=0.0, input_std=1.0):
        seen.append((input_mean, input_std))
        return original(specs, batch, seed, device, input_mean, input_std)

    monkeypatch.setattr(served, "profiles", spy)
    at = _app(input_mean="1.5", input_std="0.5", depth="3", width="32")
    _no_exception(at)
    assert seen[-1] == (1.5, 0.5)
    at = _app(input_std="-1", depth="3", width="32")
    _no_exception(at)
    assert seen[-1] == (0.0, 1.0)
    assert any(w.startswith("The link's input_std") for w in _texts(at, "warning"))


def test_the_tutorial_table_preset_sets_up_the_tutorials_race():
    at = _app(preset="tutorial_table")
    _no_exception(at)
    assert at.selectbox(key="input_scale").value == "unit"
    assert at.number_input(key="dropout").value == 0.2
    assert at.selectbox(key="optimizer").value == "adam"
    assert at.multiselect(key="compare").value == [
        "zeros", "ones", "uniform(a=0,b=1)", "uniform(a=-0.5,b=0.5)", "pytorch_default",
        "lecun_normal"]
    assert any("36.7%" in text and "digits" in text for text in _texts(at, "info"))
    # the Training tab opens on the race of the six entries, one seed each
    assert any(text.startswith("6 schemes × 1 seed on **digits**")
               for text in _texts(at, "caption"))


def _upload(at: AppTest, content: bytes, name: str = "mine.csv") -> AppTest:
    at.file_uploader(key="csv_file").set_value((name, content, "text/csv")).run()
    _no_exception(at)
    return at


def _plain(markdown: str) -> str:
    """A warning's text without the escapes that keep it from being read as Markdown."""
    return markdown.replace("\u2060", "").replace("\\", "")


CSV = b"a,kind,b,score\n" + b"".join(
    f"{i % 7},{'pq'[i % 2]},{i % 5},{i % 3 * 0.5}\n".encode() for i in range(60))


def test_an_uploaded_csv_is_raced_with_its_label_column():
    at = _upload(_app(**SMALL_TRAINING), CSV)
    # the last column is the label by default: kind holds text, so the file is refused, named
    warnings = _plain(" ".join(_texts(at, "warning")))
    assert "Your CSV “mine.csv” is not used" in warnings
    assert "Feature column 'kind', row 2" in warnings
    at.selectbox(key="csv_label").set_value("kind").run()
    _no_exception(at)
    assert not any("Your CSV" in w for w in _texts(at, "warning"))
    assert any(text.startswith("2 schemes × 1 seed on **csv** (your CSV (60 rows, 3 features, "
                               "2 classes in column 'kind')") for text in _texts(at, "caption"))
    assert _train(at)[-1].startswith("finished")


@pytest.mark.parametrize("content, message", [
    (b"", "The file is empty"),
    (b"a,b\n1,p\n2,p\n3,p\n", "has one class only"),
    (b"a,b\n1,p\n,q\n3,p\n4,q\n", "Feature column 'a', row 3 of the file (the header is row 1) "
                                    "is empty (NaN)"),
    (b"a,b\ncaf\xe9,p\n", "not UTF-8 text"),
])
def test_a_bad_upload_gets_a_sentence_and_the_race_uses_the_dataset(content, message):
    at = _upload(_app(**SMALL_TRAINING), content)
    warnings = [w for w in _texts(at, "warning") if w.startswith("Your CSV")]
    assert len(warnings) == 1 and message in _plain(warnings[0])
    assert any(text.startswith("2 schemes × 1 seed on **digits**")
               for text in _texts(at, "caption"))


def test_a_finished_training_is_shared_by_its_spec():
    at = _app(**SMALL_TRAINING)
    _train(at)
    again = _app(**SMALL_TRAINING)  # a new session, the same spec: no need to train
    assert _progress_text(again).startswith("finished")
    # and the server, having timed a race, says how long one takes before it starts
    longer = _app(**{**SMALL_TRAINING, "steps": "80"})
    assert any("It should take about" in text for text in _texts(longer, "caption"))


def test_a_running_race_labels_its_results_with_the_step_it_reached():
    at = _app(**{**SMALL_TRAINING, "steps": "2000", "seed": "7"})
    at.button(key="train_button").click().run()
    text = _progress_text(at)
    for _ in range(40):  # ticks of the live fragment until the first records arrive
        if not text.startswith("training: step 0 "):
            break
        time.sleep(0.25)
        at.run()
        text = _progress_text(at)  # read from the same run as the table below
    assert text.startswith("training: step"), text
    step = text.split("step ")[1].split(" of")[0]
    columns = list(at.dataframe[-1].value.columns)
    assert f"val. accuracy at step {step}" in columns, columns
    assert not any("final" in column for column in columns)
    at.button(key="stop_button").click().run()  # frees the training memory for other tests


def test_stop_ends_training_between_steps():
    at = _app(**{**SMALL_TRAINING, "steps": "2000", "seed": "5"})
    at.button(key="train_button").click().run()
    at.button(key="stop_button").click().run()
    _no_exception(at)
    assert _progress_text(at).startswith("stopped")
    assert at.button(key="train_button").proto.disabled is False


def test_changing_the_network_during_training_abandons_that_run():
    at = _app(**{**SMALL_TRAINING, "steps": "2000", "seed": "6"})
    at.button(key="train_button").click().run()
    at.slider(key="depth").set_value(4).run()
    _no_exception(at)
    assert any("Press **Train**" in text for text in _texts(at, "info"))


def test_a_busy_server_refuses_training_until_another_session_frees_its_memory(monkeypatch):
    query = {**SMALL_TRAINING, "steps": "2000", "seed": "7"}
    needed = training.stream(training.TrainSpec(
        NetworkSpec.stack(32, 3), seeds=1, seed=7, batch=64, steps=2000)).needed_bytes
    gc.collect()  # sessions of earlier tests that ended mid-training release their memory
    monkeypatch.setenv("INITVIZ_SERVER_MEMORY_MB", str(1.5 * needed / 1024**2))
    first, second = _app(**query), _app(**{**query, "seed": "8"})
    first.button(key="train_button").click().run()
    assert _progress_text(first).startswith("training")
    second.button(key="train_button").click().run()
    _no_exception(second)
    assert "the server is busy" in " ".join(_texts(second, "error"))
    first.button(key="stop_button").click().run()  # stopping frees the first run's memory
    second.button(key="train_button").click().run()
    assert _progress_text(second).startswith("training")
    second.button(key="stop_button").click().run()


def test_a_race_where_every_run_diverges_says_so_instead_of_finished():
    # lr 0.05 is too fast for 50 SELU layers
    at = _app(preset="selu", steps="20", seeds="1", lr="0.05", section="Training")
    seen = _train(at)
    assert seen[-1].startswith("ended early, every run diverged: step"), seen[-1]
    # what a run measured before it diverged is not passed off as its final result
    table = at.dataframe[-1].value
    assert (table["diverged"] == table["runs"]).all()
    step = seen[-1].split("step ")[1].split(" of")[0]
    assert (table[f"val. accuracy at step {step}"] == "—").all()  # not "final": it ended early
    assert any("— where every run diverged" in text for text in _texts(at, "caption"))


def test_a_page_whose_computation_finds_the_server_full_says_so_and_caches_survive_a_clear(
        monkeypatch):

    class Holder:
        """Another session's computation, holding all but 1 KiB of the server's memory."""

    monkeypatch.setattr(cache, "BUSY_WAIT_SECONDS", 0.1)
    holder = Holder()
    ledger = cache.server_ledger()
    release = ledger.reserve("another session", ledger.budget - ledger.used - 1024, holder)
    try:
        at = _app(depth="4", width="48", seed="9191")  # no other test computes this page
        _no_exception(at)
        warned = " ".join(_texts(at, "warning"))
        assert "the server is busy: this profile needs about" in warned
        assert "try again in a moment" in warned
        held = ledger.used
        st.cache_data.clear()  # what a client's clear_cache message does, for every session
        st.cache_resource.clear()
        assert cache.server_ledger() is ledger and ledger.used == held
    finally:
        release()
    at = _app(depth="4", width="48", seed="9191")
    _no_exception(at)
    assert "the server is busy" not in " ".join(_texts(at, "warning"))
