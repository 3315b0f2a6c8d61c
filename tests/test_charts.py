"""Chart builders: valid Vega-Lite, the encodings users rely on, one colour per scheme everywhere.

Every chart is compiled with ``to_dict()``, which validates it against Altair's Vega-Lite schema.
"""

import math

import altair as alt
import numpy as np
import pandas as pd
import pytest

from initviz import NetworkSpec, charts, profile, report


@pytest.fixture(scope="module")
def profiles():
    specs = {name: NetworkSpec.stack(64, 6, scheme=name)
             for name in ("kaiming_normal", "xavier_normal", "orthogonal")}
    return {name: profile(spec, batch=64) for name, spec in specs.items()}


def _layers(chart_dict):
    return chart_dict.get("layer", [chart_dict])


def _encodings(chart_dict):
    return [layer["encoding"] for layer in _layers(chart_dict) if "encoding" in layer]


def test_scheme_colours_follow_the_palette_order_and_repeat_past_six():
    schemes = [f"s{i}" for i in range(8)]
    scale = charts.scheme_scale(schemes).to_dict()
    assert scale["domain"] == schemes
    assert scale["range"][:6] == list(charts.PALETTE)
    assert scale["range"][6:] == list(charts.PALETTE[:2])
    assert charts.scheme_colour(schemes, "s7") == charts.PALETTE[1]


def _contrast(colour: str, background: str) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    high, low = sorted([luminance(colour), luminance(background)], reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("background", ["#FFFFFF", "#0E1117"])  # Streamlit's light and dark
def test_every_colour_reads_on_a_light_and_a_dark_page(background):
    assert min(_contrast(c, background) for c in charts.PALETTE) >= 2.2
    assert _contrast(charts.REFERENCE, background) >= 3  # WCAG's minimum for graphics
    assert _contrast("#F0E442", "#FFFFFF") < 2.2 and _contrast("#000000", "#0E1117") < 2.2


def test_every_chart_keeps_its_plot_height_and_puts_legends_under_it(profiles):
    spec = charts.by_layer(report.by_layer_frame(profiles, "act_std"), "std", list(profiles),
                           title="t").to_dict()
    # Streamlit's own default ("fit") squeezes title, axes and legend into the height
    assert spec["autosize"] == {"type": "fit-x", "contains": "padding"}
    assert spec["config"]["legend"]["orient"] == "bottom"
    assert spec["height"] == charts.HEIGHT


def test_a_long_title_wraps_instead_of_being_cut(profiles):
    title = "Forward: activation std per layer, mean-field theory dashed"
    spec = charts.by_layer(report.by_layer_frame(profiles, "act_std"), "std", list(profiles),
                           title=title).to_dict()
    lines = spec["title"]
    assert " ".join(lines) == title and all(len(line) <= charts.TITLE_CHARS for line in lines)


@pytest.mark.parametrize("column,log", [("act_std", True), ("grad_std", True),
                                        ("weight_std", True), ("grad_to_weight_ratio", True)])
def test_by_layer_draws_measured_and_theory_with_a_log_axis(profiles, column, log):
    frame = report.by_layer_frame(profiles, column)
    spec = charts.by_layer(frame, column, list(profiles), log=log, title="t").to_dict()
    line = _encodings(spec)[0]
    assert line["y"]["scale"]["type"] == "log"
    assert line["y"]["axis"] == charts.VALUE_AXIS.to_dict()  # 1e-5, not 0.00001 beside 1e-7
    assert line["x"]["title"] == charts.LAYER_AXIS
    assert line["x"]["scale"]["nice"] is False  # the axis ends at the last layer
    assert line["color"]["scale"]["domain"] == list(profiles)
    assert line["strokeDash"]["scale"]["domain"] == ["measured", "theory"]
    assert all(enc.get("tooltip") for enc in _encodings(spec))


def test_by_layer_drops_values_a_log_axis_cannot_show():
    frame = pd.DataFrame({"layer": [1, 2, 3], "scheme": "a", "source": "measured",
                          "value": [1.0, 0.0, np.nan]})
    figure = charts.by_layer(frame, "std", ["a"])
    assert list(figure.tables["data"]["value"]) == [1.0]
    assert "data" in figure.vega_lite()  # shared by the layers, so held at the top


def test_by_layer_names_the_lines_a_log_axis_left_out():
    # all-zeros weights: std 0 at every layer, so that scheme's line is not drawn at all
    frame = pd.DataFrame({"layer": [1, 2, 3] * 2, "scheme": ["zeros"] * 3 + ["kaiming"] * 3,
                          "source": "measured", "value": [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]})
    title = charts.by_layer(frame, "std", ["zeros", "kaiming"], title="t").to_dict()["title"]
    assert title["text"] == "t"
    assert " ".join(title["subtitle"]) == ("Not drawn, 0 on a log axis: zeros at 3 of 3 layers; "
                                           "kaiming at 1 of 3 layers")
    # Vega cuts a long subtitle line short with an ellipsis: it comes in lines that fit
    assert all(len(line) <= charts.SUBTITLE_CHARS for line in title["subtitle"])
    drawn = frame.assign(value=frame["value"] + 1)
    assert charts.by_layer(drawn, "std", ["zeros", "kaiming"], title="t").to_dict()["title"] == "t"
    linear = charts.by_layer(frame, "std", ["zeros", "kaiming"], log=False, title="t")
    assert linear.to_dict()["title"] == "t"


def test_weight_histogram_overlays_the_theoretical_density(profiles):
    prof = profiles["kaiming_normal"]
    spec = charts.weight_histogram(report.histogram_of(prof, "weight", 2),
                                   report.weight_theory(prof, 2), title="w").to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["bar", "line"]
    assert spec["layer"][0]["encoding"]["y"]["title"] == "count (entries per bin)"


def test_weight_histogram_of_a_constant_scheme_draws_a_rule():
    prof = profile(NetworkSpec.stack(16, 2, scheme="constant"), batch=8)
    theory = report.weight_theory(prof, 1)
    spec = charts.weight_histogram(report.histogram_of(prof, "weight", 1), theory,
                                   title="c").to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "rule"]


def test_percentile_bands_nest_four_bands_and_a_median(profiles):
    spec = charts.percentile_bands(report.percentiles_of(profiles["kaiming_normal"], "act"),
                                   value_title="activation", title="p").to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["area"] * 4 + ["line"]
    opacities = [layer["mark"]["opacity"] for layer in spec["layer"][:4]]
    assert opacities == sorted(opacities)  # outer bands lighter, as in TensorBoard


def test_histogram_heatmap_colours_share_of_layer_on_a_log_scale(profiles):
    hist = report.histogram_of(profiles["xavier_normal"], "act")
    chart = charts.histogram_heatmap(hist, value_title="activation", title="h")
    encoding = chart.to_dict()["encoding"]
    color = encoding["color"]
    assert color["scale"]["type"] == "log"
    # a constant layer's ~1e-15 range is labelled in exponents, not "0.000000000000…"
    assert encoding["x"]["axis"] == charts.VALUE_AXIS.to_dict()
    shares = chart.tables["data"].groupby("layer")["share"].sum()
    np.testing.assert_allclose(shares, 1.0, rtol=1e-9)


def test_fractions_axis_is_a_percentage_from_0_to_1(profiles):
    spec = charts.fractions_by_layer(report.fractions_frame(profiles), list(profiles),
                                     title="f").to_dict()
    for encoding in _encodings(spec):
        assert encoding["y"]["scale"]["domain"] == [0, 1]
        assert encoding["y"]["axis"]["format"] == "%"


def test_coinciding_fraction_lines_both_stay_visible_and_are_named(profiles):
    # Kaiming and Xavier normal draw the same normal numbers at two scales: with ReLU the same
    # units are off for the same inputs, so their off and dead lines are one line.
    figure = charts.fractions_by_layer(report.fractions_frame(profiles), list(profiles),
                                       title="f")
    spec = figure.to_dict()
    subtitle = " ".join(spec["title"]["subtitle"])
    assert "kaiming_normal = xavier_normal (off, dead)" in subtitle
    assert "orthogonal" not in subtitle
    lines = [layer for layer in _layers(spec) if layer["mark"]["type"] == "line"]
    points = [layer for layer in _layers(spec) if layer["mark"]["type"] == "point"]
    widths = [layer["mark"]["strokeWidth"] for layer in lines]
    sizes = [layer["mark"]["size"] for layer in points]
    # drawn in the schemes' order, each narrower than the one below it
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 3
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3
    assert [layer["transform"][0]["filter"] for layer in lines] == [
        f"(datum.scheme === '{scheme}')" for scheme in profiles]


def _history(diverged_scheme=None):
    rows = []
    for scheme in ("a", "b"):
        for seed in (0, 1):
            for step in (0, 10, 20):
                diverged = scheme == diverged_scheme and step == 20
                rows.append({"scheme": scheme, "seed": seed, "step": step,
                             "train_loss": 2.0 / (1 + step) + seed * 0.1,
                             "val_loss": 2.0, "val_acc": 0.1 * (step / 10),
                             "diverged": diverged})
    return pd.DataFrame(rows)


def test_training_curves_draw_the_seed_range_as_a_band_around_the_mean():
    chart = charts.training_curves(_history(), ["a", "b"], metric="train_loss", title="t",
                                   log=True)
    summary = chart.tables["summary"].set_index(["scheme", "step"])
    assert summary.loc[("a", 0), "low"] == pytest.approx(2.0)
    assert summary.loc[("a", 0), "high"] == pytest.approx(2.1)
    assert summary.loc[("a", 0), "mean"] == pytest.approx(2.05)
    spec = chart.to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line"]
    assert spec["layer"][1]["encoding"]["y"]["scale"]["type"] == "log"
    # the legend's swatches are solid, not the band's 0.2 opacity
    assert spec["layer"][0]["encoding"]["color"]["legend"]["symbolOpacity"] == 1


def test_training_curves_mark_diverged_runs():
    chart = charts.training_curves(_history(diverged_scheme="b"), ["a", "b"],
                                   metric="val_acc", title="t")
    assert len(chart.chart().layer) == 3
    assert chart.to_dict()["layer"][2]["mark"]["shape"] == "cross"
    assert set(chart.tables["diverged"]["scheme"]) == {"b"}


def test_training_curves_draw_the_reference_line_as_a_dashed_rule():
    chart = charts.training_curves(_history(), ["a", "b"], metric="train_loss", title="t",
                                   log=True, reference=("ln 10: a uniform guess", math.log(10)))
    rule = chart.to_dict()["layer"][-1]
    assert rule["mark"]["type"] == "rule" and rule["mark"]["strokeDash"]
    assert chart.tables["reference"]["value"].tolist() == [pytest.approx(2.302585)]


def _hidden() -> pd.DataFrame:
    rows = [{"scheme": "a", "seed": seed, "step": step, "layer": layer,
             "act_std": 10.0 ** -layer, "saturated": step / 20 if layer == 2 else 0.0,
             "grad_std": 0.0 if step == 0 and layer == 1 else 1e-3 * (seed + 1)}
            for seed in (0, 1) for step in (0, 10, 20) for layer in (1, 2)]
    return pd.DataFrame(rows)


def test_training_heatmap_is_the_mean_over_seeds_per_layer_and_step():
    chart = charts.training_heatmap(_hidden(), "grad_std", title="g")
    data = chart.tables["data"].set_index(["step", "layer"])
    assert data.loc[(10, 1), "value"] == pytest.approx(1.5e-3)
    assert data.loc[(10, 1), "runs"] == 2
    assert (0, 1) not in data.index  # a zero std has no place on a log colour scale
    spec = chart.to_dict()
    assert spec["encoding"]["color"]["scale"]["type"] == "log"
    assert spec["encoding"]["y"]["sort"] == "descending"  # the top layer on top
    share = charts.training_heatmap(_hidden(), "saturated", title="s")
    assert share.to_dict()["encoding"]["color"]["scale"]["domain"] == [0, 1]
    assert share.tables["data"].set_index(["step", "layer"]).loc[(20, 2), "value"] == 1.0


def test_phase_diagram_centres_its_diverging_palette_on_chi1_equal_1():
    w, b = np.meshgrid(np.linspace(0.5, 4, 8), np.linspace(0, 1, 5))
    grid = pd.DataFrame({"sigma_w2": w.ravel(), "sigma_b2": b.ravel(), "chi1": w.ravel() / 2})
    critical = pd.DataFrame({"sigma_w2": [2.0, 2.0], "sigma_b2": [0.0, 1.0]})
    points = pd.DataFrame({"scheme": ["a", "b"], "sigma_w2": [2.0, 1.0], "sigma_b2": [0.0, 0.0],
                           "chi1": [1.0, 0.5]})
    spec = charts.phase_diagram(grid, critical, points, ["a", "b"], title="phase").to_dict()
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domainMid"] == 1 and scale["type"] == "log"
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "line", "point"]
    # each scheme's point wears that scheme's colour, as in every other chart of the page
    point = spec["layer"][2]
    assert point["encoding"]["color"]["scale"] == {"domain": ["a", "b"],
                                                   "range": list(charts.PALETTE[:2])}
    assert point["encoding"]["color"]["legend"]["orient"] == "top"  # apart from χ₁'s bar
    # two schemes at one point both stay visible: the later one is drawn smaller, on top
    sizes = [row["size"] for row in spec["datasets"][point["data"]["name"]]]
    assert sizes[0] > sizes[1]


def test_phase_diagram_without_a_point_draws_the_map_alone():
    grid = pd.DataFrame({"sigma_w2": [1.0, 2.0], "sigma_b2": [0.0, 0.0], "chi1": [0.5, 1.0]})
    critical = pd.DataFrame({"sigma_w2": [2.0], "sigma_b2": [0.0]})
    spec = charts.phase_diagram(grid, critical, pd.DataFrame(), ["a"], title="phase").to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "line"]


def test_singular_value_histogram_uses_log_bins():
    values = pd.DataFrame({"scheme": ["a"] * 4 + ["b"] * 4,
                           "singular_value": [1, 1, 1, 1, 0.01, 0.1, 1, 10], "zero": False})
    chart = charts.singular_value_histogram(values, ["a", "b"], title="s")
    np.testing.assert_allclose(chart.tables["data"]["log10_s"].tail(4), [-2, -1, 0, 1])
    assert chart.to_dict()["encoding"]["x"]["bin"] == {"maxbins": 40}
    assert chart.to_dict()["title"] == "s"  # nothing lost, nothing to say


def test_singular_value_histogram_leaves_zero_values_out_and_counts_them():
    # float64 rounding of a lost direction (1e-140) must not be drawn as a bar 140 decades down
    values = pd.DataFrame({"scheme": ["a"] * 3 + ["b"] * 3,
                           "singular_value": [2.0, 1.0, 1e-140, 1.0, 0.5, 0.25],
                           "zero": [False, False, True, False, False, False]})
    chart = charts.singular_value_histogram(values, ["a", "b"], title="s")
    assert chart.tables["data"]["log10_s"].min() == pytest.approx(np.log10(0.25))
    assert len(chart.tables["data"]) == 5
    title = chart.to_dict()["title"]
    assert title["text"] == "s" and title["subtitle"] == [
        "Not drawn, zero (directions lost): a 1 of 3"]


def _every_chart(profiles):
    prof = profiles["kaiming_normal"]
    schemes = list(profiles)
    grid = pd.DataFrame({"sigma_w2": [1.0, 2.0], "sigma_b2": [0.0, 0.0], "chi1": [0.5, 1.0]})
    points = pd.DataFrame({"scheme": ["kaiming_normal"], "sigma_w2": [2.0], "sigma_b2": [0.0],
                           "chi1": [1.0]})
    return {
        "by_layer": charts.by_layer(report.by_layer_frame(profiles, "act_std"), "a", schemes),
        "weight_histogram": charts.weight_histogram(
            report.histogram_of(prof, "weight", 2), report.weight_theory(prof, 2), title="w"),
        "percentile_bands": charts.percentile_bands(report.percentiles_of(prof, "act"),
                                                    value_title="a", title="p"),
        "histogram_heatmap": charts.histogram_heatmap(report.histogram_of(prof, "act"),
                                                      value_title="a", title="h"),
        "fractions_by_layer": charts.fractions_by_layer(report.fractions_frame(profiles),
                                                        schemes, title="f"),
        "training_curves": charts.training_curves(_history(diverged_scheme="b"), ["a", "b"],
                                                  metric="train_loss", title="t", log=True,
                                                  reference=("ln 10", math.log(10))),
        "training_heatmap": charts.training_heatmap(_hidden(), "grad_std", title="g"),
        "phase_diagram": charts.phase_diagram(grid, grid.iloc[:1], points, schemes, title="p"),
        "singular_value_histogram": charts.singular_value_histogram(
            pd.DataFrame({"scheme": "a", "singular_value": [0.5, 1.0, 2.0, 0.0],
                          "zero": [False, False, False, True]}), ["a"], title="s"),
    }


def _inline_data(spec: dict, rows_of) -> dict:
    """``spec`` with each named dataset reference replaced by that dataset's rows."""
    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"name"} and node["name"] in spec.get("datasets", {}):
                return rows_of(spec["datasets"][node["name"]])
            return {key: walk(value) for key, value in node.items() if key != "datasets"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node
    return walk(spec)


def _rows(frame: pd.DataFrame) -> list[dict]:
    return [{key: None if isinstance(value, float) and np.isnan(value) else value
             for key, value in row.items()} for row in frame.to_dict(orient="records")]


def test_the_page_spec_equals_altairs_validated_spec_with_tables_left_as_dataframes(profiles):
    for name, figure in _every_chart(profiles).items():
        fast = figure.vega_lite()
        assert all(isinstance(table, pd.DataFrame) for table in fast["datasets"].values()), name
        # What the browser receives: each table's rows, nulls where a value is missing
        records = _inline_data(fast, _rows)
        reference = _inline_data(figure.to_dict(), lambda rows: rows)  # validates the schema
        assert records == reference, name


def test_a_spec_is_built_once_per_structure_and_drawing_cannot_change_it(profiles):
    first = charts.by_layer(report.by_layer_frame(profiles, "act_std"), "a", list(profiles))
    again = charts.by_layer(report.by_layer_frame(profiles, "grad_std"), "a", list(profiles))
    spec = first.vega_lite()
    assert spec["layer"] is again.vega_lite()["layer"]  # one structure, one spec, built once
    spec.pop("datasets")
    spec["title"] = "changed by a consumer"  # Streamlit edits the top level of what it is given
    assert again.vega_lite()["title"] == ""
    assert _inline_data(again.vega_lite(), _rows) == _inline_data(again.to_dict(), lambda r: r)
    other = charts.by_layer(report.by_layer_frame(profiles, "act_std"), "b", list(profiles))
    assert other.vega_lite()["layer"][0]["encoding"]["y"]["title"] == "b"


def test_chart_builders_never_parse_shorthand_strings(profiles, monkeypatch):
    """A bare string encoding costs ~10 ms each time a chart is built: Altair hashes its whole
    schema to parse it (``_FromDict``); channel objects (``alt.Y2("f:Q")``) skip that."""
    def refuse(*args, **kwargs):
        raise AssertionError("a chart builder passed a bare shorthand string to Altair")
    monkeypatch.setattr(alt.utils.schemapi._FromDict, "__init__", refuse)
    built = [figure.chart() for figure in _every_chart(profiles).values()]
    assert len(built) == 9


def test_by_layer_draws_a_few_training_steps_dotted_to_solid_with_a_legend():
    frame = pd.DataFrame({"layer": [1, 2] * 3, "scheme": "a", "value": [1e-2, 2e-2, 1e-3,
                                                                         2e-3, 1e-4, 2e-4],
                          "source": ["step 10"] * 2 + ["step 150"] * 2 + ["step 300"] * 2})
    spec = charts.by_layer(frame, "ratio", ["a"], title="t",
                           sources=["step 10", "step 150", "step 300"]).to_dict()
    dash = _encodings(spec)[0]["strokeDash"]
    assert dash["scale"] == {"domain": ["step 10", "step 150", "step 300"],
                             "range": [[2, 3], [6, 3], [1, 0]]}
    assert dash["legend"] == {"columns": 0, "orient": "top",  # shown, in one row over the plot
                              "symbolSize": charts.DASH_SYMBOL_SIZE}
    assert _layers(spec)[1]["transform"][0]["filter"] == "(datum.source !== 'theory')"


def test_percentile_bands_say_which_share_of_the_values_each_band_holds(profiles):
    prof = next(iter(profiles.values()))
    spec = charts.percentile_bands(report.percentiles_of(prof, "act"), value_title="a",
                                   title="p").to_dict()
    assert " ".join(spec["title"]["subtitle"]) == charts.PERCENTILE_NOTE
    assert all(len(line) <= charts.SUBTITLE_CHARS for line in spec["title"]["subtitle"])
    # the named shares are those of the basis points: p6915 - p3085 = 38.3%, and so on
    for low, high, _, name in charts.PERCENTILE_BANDS[1:]:
        share = (int(high[1:]) - int(low[1:])) / 100
        assert f"middle {share:.0f}%" in name and f"{share:.0f}%" in charts.PERCENTILE_NOTE
    areas = [layer for layer in _layers(spec) if layer["mark"]["type"] == "area"]
    opacities = [layer["mark"]["opacity"] for layer in areas]
    assert opacities == sorted(opacities)  # the outer band lightest, as the note says
