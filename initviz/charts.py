"""Altair chart builders: tidy DataFrames in, a :class:`Figure` out. No Streamlit here.

Conventions shared by every chart, so a page reads as one: one colour per scheme everywhere
(:data:`PALETTE`, safe for the common colour-vision deficiencies and readable on a light and a
dark page, in the order the schemes are listed); measured values solid with points, theory
dashed, reference lines grey; log scales where values span decades; every axis titled with what
it measures; tooltips on every mark; legends under the plot and titles wrapped, so that a chart
keeps its plot area on a narrow screen.

Encodings are channel objects (``alt.X("f:Q")``), never bare shorthand strings: Altair turns each
bare string into a channel through ``from_dict``, which hashes its whole schema first (~10 ms a
string, every time a chart is built).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd

# The data are bounded by initviz's own limits (depth, bins, grid), not by Altair's default guard.
alt.data_transformers.disable_max_rows()

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
"""The Okabe–Ito colours (distinct under the common colour-vision deficiencies) that read on both
a white and Streamlit's dark page (#0E1117): at least 2.2:1 in contrast against each. Its yellow
(1.3:1 against white) and black (1.1:1 against the dark page) are left out."""
REFERENCE = "#888888"
"""Theory and reference lines (a density, the critical line): mid-grey, 3.5:1 against white and
5:1 against Streamlit's dark background."""
LAYER_AXIS = "layer (1 = first hidden layer)"
HEIGHT = 220
"""Pixels of a chart's plot area, its title, axes and legend not counted."""
TITLE_CHARS = 45  # a line of title that fits a chart on a 390-pixel phone
SUBTITLE_CHARS = 55
LEGEND = {"orient": "bottom", "columns": 3, "labelLimit": 220, "titleLimit": 300}
"""Every legend under its plot (beside it, a legend takes a fixed width from a narrow chart); the
line-style legend of measured and theory goes above it, in one row."""
DASH_SYMBOL_SIZE = 600  # a line-style legend's stroke about 25 px long: long enough to show a dash
DIAMOND_SIZE = 320  # square pixels of the first scheme's point on the phase diagram
# Axes of values that may sit far from 1 or span decades. Vega's default format writes a constant
# layer's range (~1e-15 around its value) as "0.000000000000…" and a log axis as 0.1, 0.00001,
# 1e-7 and 10,000,000,000 side by side, and any "g" format picks its style like JavaScript's
# toPrecision (0.00001 but 1e-7). So: plain below 1e4 and from 1e-3 up (0.5, -0.12), else
# exponents (1e-5, 5e-16, 1e+10). The precision is explicit, as Vega's own precision follows the
# tick step: "~g" wrote both -0.12 and -0.1 as "-0.1". A label that Vega leaves out (the minor
# ticks of a log axis) stays out.
VALUE_AXIS = alt.Axis(labelExpr=(
    "datum.label === '' ? '' : datum.value === 0 || abs(datum.value) >= 1e-3 && "
    "abs(datum.value) < 1e4 ? format(datum.value, '.3~g') : format(datum.value, '.2~e')"))


Tables = Mapping[str, "pd.DataFrame | alt.NamedData"]


@dataclass(frozen=True, eq=False)
class Figure:
    """A chart: how it is built from its tables, its structure, and the tables themselves.

    ``build(tables, *structure)`` returns the Altair chart. The structure (titles, schemes, scales,
    which layers are drawn) is hashable and decides the whole Vega-Lite spec apart from the rows,
    so :meth:`vega_lite` builds the spec once per structure, with a named reference in place of
    each table, and only attaches the tables on later draws: building and serializing an Altair
    chart is most of the time it takes to draw one, and a page draws ten on every rerun.
    """

    build: Callable[..., alt.TopLevelMixin]
    structure: tuple
    tables: Mapping[str, pd.DataFrame]

    def chart(self) -> alt.TopLevelMixin:
        """The Altair chart with its tables inline (for a notebook, or to save)."""
        return _configured(self.part())

    def part(self) -> alt.TopLevelMixin:
        """The chart without its top-level settings (legends, sizing), to be put beside others
        (``alt.hconcat``), which take those settings only at the top."""
        return self.build(self.tables, *self.structure)

    def to_dict(self) -> dict:
        """The whole Vega-Lite spec, rows inline, validated against the schema by Altair."""
        return self.chart().to_dict()

    def vega_lite(self) -> dict:
        """The spec to draw, unvalidated, with each table as a named dataset in ``datasets``.

        The datasets are the DataFrames themselves, for a consumer that serializes tables on its
        own (Streamlit sends them as Arrow); Altair's ``to_dict`` would turn every row into a
        dict and hash the table to name it. The top-level dict is the caller's; what it holds is
        shared with every figure of the same structure and must not be changed. The schema is
        checked by :meth:`to_dict` in the chart tests, not again on every draw.
        """
        template = _template(self.build, tuple(self.tables), self.structure)
        return {**template, "datasets": dict(self.tables)}


@functools.lru_cache(maxsize=256)
def _template(build: Callable[..., alt.TopLevelMixin], names: tuple[str, ...],
              structure: tuple) -> dict:
    return _configured(build({name: alt.NamedData(name=name) for name in names},
                             *structure)).to_dict(validate=False)


def _configured(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    # The width fits the page; the height is the plot's, with the title, axes and legend added
    # to it (Streamlit's default, "fit", squeezes all of them into the height, the plot last).
    return chart.configure_legend(**LEGEND).properties(
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def scheme_colour(schemes: Sequence[str], scheme: str) -> str:
    """The colour of ``scheme`` among ``schemes``: fixed by its position, for every chart."""
    return PALETTE[list(schemes).index(scheme) % len(PALETTE)]


def scheme_scale(schemes: Sequence[str]) -> alt.Scale:
    """The colour of each scheme (:func:`scheme_colour`) as an Altair scale."""
    return alt.Scale(domain=list(schemes), range=[scheme_colour(schemes, s) for s in schemes])


def _titled(title: str, subtitle: str | None = None) -> str | list[str] | alt.TitleParams:
    """``title`` with ``subtitle`` under it, each in lines that fit a narrow chart: Vega cuts a
    longer line short with an ellipsis."""
    lines = textwrap.wrap(title, TITLE_CHARS)
    text = lines if len(lines) > 1 else title
    if not subtitle:
        return text
    return alt.TitleParams(text, subtitle=textwrap.wrap(subtitle, SUBTITLE_CHARS))


def entry_axis(entry: str) -> str:
    """The x-axis title of per-entry charts: a hidden layer, a block, a time step."""
    return LAYER_AXIS if entry == "layer" else f"{entry} (1 = first {entry})"


def _layer_x(entry: str) -> alt.X:
    # not rounded out to a "nice" end: 31 layers drawn to 35 read as four missing layers
    return alt.X("layer:Q", title=entry_axis(entry), axis=alt.Axis(tickMinStep=1, format="d"),
                 scale=alt.Scale(nice=False))


def _by_layer(tables: Tables, value_title: str, schemes: tuple[str, ...], log: bool, title: str,
              subtitle: str | None, sources: tuple[str, ...], legend: bool,
              entry: str) -> alt.LayerChart:
    y = alt.Y("value:Q", title=value_title, axis=VALUE_AXIS,
              scale=alt.Scale(type="log") if log else alt.Scale(zero=False))
    color = alt.Color("scheme:N", scale=scheme_scale(schemes), title="scheme")
    # theory dashed; measured lines solid, or, where several were measured (a few training
    # steps), dotted, then dashed, up to the last one solid
    measured = [[1, 0], [6, 3], [2, 3]][len(sources) - 1 - ("theory" in sources)::-1]
    dash = alt.StrokeDash("source:N", title="", scale=alt.Scale(
        domain=list(sources),
        range=[[6, 4] if source == "theory" else measured.pop(0) for source in sources]),
        legend=alt.Legend(orient="top", columns=0, symbolSize=DASH_SYMBOL_SIZE) if legend else None)
    tooltip = [alt.Tooltip("scheme:N"), alt.Tooltip("source:N"), alt.Tooltip("layer:Q"),
               alt.Tooltip("value:Q", title=value_title, format=".3g")]
    base = alt.Chart().encode(x=_layer_x(entry), y=y, color=color, tooltip=tooltip)
    lines = base.mark_line().encode(strokeDash=dash, detail=alt.Detail("source:N"))
    points = base.transform_filter(alt.datum.source != "theory").mark_point(size=25, filled=True)
    return alt.layer(lines, points, data=tables["data"], height=HEIGHT,
                     title=_titled(title, subtitle))


def by_layer(frame: pd.DataFrame, value_title: str, schemes: Sequence[str], *,
             log: bool = True, title: str = "",
             sources: Sequence[str] = ("measured", "theory"), entry: str = "layer") -> Figure:
    """Per-layer lines, one colour per scheme: measured solid with points, theory dashed.

    ``frame`` columns: ``layer``, ``scheme``, ``source``, ``value``. ``sources`` lists the
    values of ``source`` in legend order: ``measured`` and ``theory``, or up to three measured
    series (e.g. ``step 10``, ``step 150``, ``step 300``), drawn dotted to solid, and ``theory``.
    Non-positive values are dropped on a log scale (a dead layer has std 0: the line stops there),
    and a subtitle names the schemes whose measured line lost layers that way. ``entry`` names
    what the x axis counts (:attr:`initviz.archs.Architecture.entry`).
    """
    data = frame.dropna(subset=["value"])
    subtitle = None
    if log:
        zero = data[(data["value"] <= 0) & (data["source"] != "theory")]
        data = data[data["value"] > 0]
        if len(zero):
            layers = frame[frame["source"] != "theory"].groupby("scheme")["layer"].nunique()
            hidden = zero.groupby("scheme", sort=False)["layer"].nunique()
            subtitle = "Not drawn, 0 on a log axis: " + "; ".join(
                f"{scheme} at {count} of {layers[scheme]} {entry}s"
                for scheme, count in hidden.items())
    legend = data["source"].nunique() > 1
    return Figure(_by_layer, (value_title, tuple(schemes), log, title, subtitle, tuple(sources),
                              legend, entry), {"data": data})


def _weight_histogram(tables: Tables, title: str, colour: str) -> alt.LayerChart:
    bars = alt.Chart(tables["bins"]).mark_bar(color=colour, opacity=0.75).encode(
        x=alt.X("bin_lo:Q", title="weight value", bin="binned", axis=VALUE_AXIS),
        x2=alt.X2("bin_hi:Q"),
        y=alt.Y("count:Q", title="count (entries per bin)"),
        tooltip=[alt.Tooltip("bin_lo:Q", format=".3g", title="from"),
                 alt.Tooltip("bin_hi:Q", format=".3g", title="to"),
                 alt.Tooltip("count:Q")],
    )
    layers = [bars]
    if "density" in tables:
        layers.append(alt.Chart(tables["density"]).mark_line(
            color=REFERENCE, strokeDash=[6, 4]).encode(
            x=alt.X("value:Q"), y=alt.Y("expected:Q"),
            tooltip=[alt.Tooltip("value:Q", format=".3g"),
                     alt.Tooltip("expected:Q", format=".1f", title="theory (count)")]))
    elif "point_mass" in tables:
        layers.append(alt.Chart(tables["point_mass"]).mark_rule(
            color=REFERENCE, strokeDash=[6, 4]).encode(
            x=alt.X("point_mass:Q"),
            tooltip=[alt.Tooltip("point_mass:Q", title="theory: all at")]))
    return alt.layer(*layers, title=_titled(title), height=HEIGHT)


def weight_histogram(bins: pd.DataFrame, theory: pd.DataFrame | None, *, title: str,
                     colour: str = PALETTE[0]) -> Figure:
    """Histogram of one layer's weights with the scheme's theoretical density drawn over it.

    ``bins``: ``bin_lo``, ``bin_hi``, ``count``. ``theory``: ``value``, ``expected`` (the density
    scaled to counts per bin), or a single row with ``point_mass`` for a constant scheme.
    """
    tables = {"bins": bins}
    if theory is not None and "expected" in theory:
        tables["density"] = theory
    elif theory is not None and "point_mass" in theory:
        tables["point_mass"] = theory
    return Figure(_weight_histogram, (title, colour), tables)


PERCENTILE_BANDS = (("p0", "p10000", 0.15, "min to max"),
                    ("p668", "p9332", 0.25, "middle 87% (±1.5σ)"),
                    ("p1587", "p8413", 0.35, "middle 68% (±1σ)"),
                    ("p3085", "p6915", 0.45, "middle 38% (±0.5σ)"))
"""Each band: its lower and upper percentile column (basis points), opacity and name; the σ are
those of a normal, the percentiles TensorBoard's."""
PERCENTILE_NOTE = ("Shaded, darkest to lightest: the middle 38%, 68% and 87% of the values "
                   "(within ±0.5, 1 and 1.5 σ for a normal), then min to max; line: the median.")


def _percentile_bands(tables: Tables, value_title: str, title: str,
                      colour: str, entry: str) -> alt.LayerChart:
    base = alt.Chart().encode(x=_layer_x(entry))
    layers = [
        base.mark_area(color=colour, opacity=opacity).encode(
            y=alt.Y(f"{low}:Q", title=value_title, axis=VALUE_AXIS), y2=alt.Y2(f"{high}:Q"),
            tooltip=[alt.Tooltip("layer:Q"),
                     alt.Tooltip(f"{low}:Q", format=".3g", title=f"{name}: from"),
                     alt.Tooltip(f"{high}:Q", format=".3g", title=f"{name}: to")])
        for low, high, opacity, name in PERCENTILE_BANDS
    ]
    layers.append(base.mark_line(color=colour).encode(
        y=alt.Y("p5000:Q"), tooltip=[alt.Tooltip("layer:Q"),
                              alt.Tooltip("p5000:Q", title="median", format=".3g")]))
    return alt.layer(*layers, data=tables["data"], height=HEIGHT,
                     title=_titled(title, PERCENTILE_NOTE))


def percentile_bands(percentiles: pd.DataFrame, *, value_title: str, title: str,
                     colour: str = PALETTE[0], entry: str = "layer") -> Figure:
    """TensorBoard's distribution view: nested percentile bands per layer and the median.

    ``percentiles`` columns: ``layer`` and ``p0 p668 p1587 p3085 p5000 p6915 p8413 p9332 p10000``
    (basis points). Outer bands are lighter, as in TensorBoard; the subtitle says which band
    holds which share of the values (:data:`PERCENTILE_BANDS`).
    """
    return Figure(_percentile_bands, (value_title, title, colour, entry), {"data": percentiles})


def _histogram_heatmap(tables: Tables, value_title: str, title: str, entry: str) -> alt.Chart:
    return alt.Chart(tables["data"], title=_titled(title), height=HEIGHT).mark_rect().encode(
        x=alt.X("bin_lo:Q", title=value_title, axis=VALUE_AXIS),
        x2=alt.X2("bin_hi:Q"),
        y=alt.Y("layer:O", title=entry, sort="descending"),
        color=alt.Color("share:Q", title=f"share of {entry}", scale=alt.Scale(
            type="log", scheme="viridis"), legend=alt.Legend(format=".1%")),
        tooltip=[alt.Tooltip("layer:O"), alt.Tooltip("bin_lo:Q", format=".3g", title="from"),
                 alt.Tooltip("bin_hi:Q", format=".3g", title="to"),
                 alt.Tooltip("share:Q", format=".1%")],
    )


def histogram_heatmap(histograms: pd.DataFrame, *, value_title: str, title: str,
                      entry: str = "layer") -> Figure:
    """Layer × value heatmap of per-layer histograms (TensorBoard's offset histograms, from above).

    Each layer's bins sit at their true values, so a vanishing layer shows as a thin bright line
    at zero and an exploding one as a wide faint band. Colour is the share of the layer's entries
    in the bin (log scale: a few percent and 80% are both visible).
    """
    data = histograms.copy()
    totals = data.groupby("layer")["count"].transform("sum").clip(lower=1)
    data["share"] = data["count"] / totals
    data = data[data["share"] > 0]
    return Figure(_histogram_heatmap, (value_title, title, entry), {"data": data})


def _fractions_by_layer(tables: Tables, schemes: tuple[str, ...], measures: tuple[str, ...],
                        title: str, subtitle: str | None, entry: str) -> alt.LayerChart:
    color = alt.Color("scheme:N", scale=scheme_scale(schemes), title="scheme")
    dash = alt.StrokeDash("measure:N", title="", legend=alt.Legend(orient="top", columns=0),
                          scale=alt.Scale(domain=list(measures),
                                          range=[[1, 0], [6, 4], [2, 2]][:len(measures)]))
    shape = alt.Shape("measure:N", title="", scale=alt.Scale(
        domain=list(measures), range=["circle", "square", "triangle-up"][:len(measures)]))
    tooltip = [alt.Tooltip("scheme:N"), alt.Tooltip("measure:N"), alt.Tooltip("layer:Q"),
               alt.Tooltip("value:Q", format=".1%")]
    # a short title: a vertical one longer than the plot makes Vega shrink the plot to fit it
    y = alt.Y("value:Q", title="share (see legend)",
              scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    # One layer per scheme, the first widest and drawn first: where two schemes' lines coincide
    # (both 0% dead), the later one's thinner line and smaller points sit inside the earlier
    # one's, so both colours stay visible.
    last = max(len(schemes) - 1, 1)
    layers = []
    for i, scheme in enumerate(schemes):
        base = alt.Chart().transform_filter(alt.datum.scheme == scheme).encode(
            x=_layer_x(entry), y=y, color=color, tooltip=tooltip)
        layers.append(base.mark_line(strokeWidth=1.5 + 3 * (last - i) / last).encode(
            strokeDash=dash))
        layers.append(base.mark_point(filled=True, opacity=1,
                                      size=25 + 75 * (last - i) / last).encode(shape=shape))
    return alt.layer(*layers, data=tables["data"], height=HEIGHT,
                     title=_titled(title, subtitle))


def fractions_by_layer(frame: pd.DataFrame, schemes: Sequence[str], *, title: str,
                       entry: str = "layer") -> Figure:
    """Saturated, off and dead shares per layer. ``frame``: layer, scheme, measure, value (0–1).

    Lines that coincide stay visible (see ``_fractions_by_layer``), and a subtitle names the
    schemes whose line of a measure is the same at every layer.
    """
    data = frame.dropna(subset=["value"])
    measures = tuple(data["measure"].unique())
    shown = [scheme for scheme in schemes if (data["scheme"] == scheme).any()]
    same: dict[tuple[str, ...], list[str]] = {}  # schemes whose lines coincide -> measures
    for measure, rows in data.groupby("measure", sort=False):
        lines = rows.pivot(index="layer", columns="scheme", values="value")
        groups: dict[tuple, list[str]] = {}
        for scheme in (s for s in shown if s in lines):
            groups.setdefault(tuple(lines[scheme].round(6)), []).append(scheme)
        for group in groups.values():
            if len(group) > 1:
                same.setdefault(tuple(group), []).append(measure.split(":")[0])
    subtitle = ("Drawn on top of each other, the first scheme widest: " + "; ".join(
        f"{' = '.join(group)} ({', '.join(measures_)})" for group, measures_ in same.items())
        if same else None)
    return Figure(_fractions_by_layer, (tuple(schemes), measures, title, subtitle, entry),
                  {"data": data})


_VALUE_TITLES = {"train_loss": "training loss (cross-entropy, nats)",
                 "val_loss": "validation loss (cross-entropy, nats)",
                 "val_acc": "validation accuracy"}


def _training_curves(tables: Tables, schemes: tuple[str, ...], metric: str, title: str,
                     log: bool, total_steps: int | None,
                     reference: str | None = None) -> alt.LayerChart:
    x = alt.X("step:Q", title="training step (mini-batches)",
              scale=alt.Scale(domain=[0, total_steps]) if total_steps else alt.Undefined)
    y_scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    axis = alt.Axis(format="%") if metric == "val_acc" else VALUE_AXIS
    # The band comes first, so the legend would take its 0.2 opacity: swatches too pale to read.
    color = alt.Color("scheme:N", scale=scheme_scale(schemes), title="scheme",
                      legend=alt.Legend(symbolOpacity=1))
    base = alt.Chart().encode(x=x, color=color)
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("low:Q", title=_VALUE_TITLES[metric], scale=y_scale, axis=axis),
        y2=alt.Y2("high:Q"))
    line = base.mark_line().encode(
        y=alt.Y("mean:Q", scale=y_scale),
        tooltip=[alt.Tooltip("scheme:N"), alt.Tooltip("step:Q"),
                 alt.Tooltip("mean:Q", format=".3g", title="mean"),
                 alt.Tooltip("low:Q", format=".3g", title="min over seeds"),
                 alt.Tooltip("high:Q", format=".3g", title="max over seeds")])
    layers = [band, line]
    if "diverged" in tables:
        layers.append(alt.Chart(tables["diverged"]).mark_point(
            shape="cross", size=120, filled=True).encode(
            x=alt.X("step:Q"), y=alt.Y("value:Q"), color=color,
            tooltip=[alt.Tooltip("scheme:N"), alt.Tooltip("seed:Q"), alt.Tooltip("step:Q"),
                     alt.Tooltip("value:Q", format=".3g")]))
    if reference is not None:
        layers.append(alt.Chart(tables["reference"]).mark_rule(
            color=REFERENCE, strokeDash=[6, 4], strokeWidth=1.5).encode(
            y=alt.Y("value:Q"), tooltip=[alt.Tooltip("label:N", title=reference),
                                         alt.Tooltip("value:Q", format=".3f")]))
    return alt.layer(*layers, data=tables["summary"], title=_titled(title), height=HEIGHT)


def training_curves(history: pd.DataFrame, schemes: Sequence[str], *, metric: str,
                    title: str, log: bool = False, total_steps: int | None = None,
                    reference: tuple[str, float] | None = None) -> Figure:
    """One curve per scheme (mean over seeds) with the seeds' range as a band.

    ``history`` columns: scheme, seed, step, ``metric``, diverged (bool). A diverged run's last
    point is marked with a cross. ``reference``: ``(label, value)`` of a dashed grey horizontal
    line, such as the loss of a uniform prediction, ln C.
    """
    data = history[["scheme", "seed", "step", metric]].rename(columns={metric: "value"})
    data = data[np.isfinite(data["value"])]
    if log:
        data = data[data["value"] > 0]
    tables = {"summary": data.groupby(["scheme", "step"], as_index=False)["value"].agg(
        mean="mean", low="min", high="max")}
    diverged = history[history["diverged"]].groupby(["scheme", "seed"], as_index=False).last()
    if len(diverged):
        diverged = diverged.assign(value=diverged[metric].where(np.isfinite(diverged[metric])))
        tables["diverged"] = diverged.dropna(subset=["value"])
    name = None
    if reference is not None:
        name, value = reference
        tables["reference"] = pd.DataFrame({"label": [name], "value": [value]})
    return Figure(_training_curves, (tuple(schemes), metric, title, log, total_steps, name),
                  tables)


HIDDEN_STATISTICS = {
    "act_std": ("activation std", True),
    "saturated": ("share saturated", False),
    "grad_std": ("gradient std, ∂L/∂(activation)", True),
}
"""Each per-layer training statistic: its colour title and whether its colour scale is log (the
stds span decades when a signal vanishes or explodes; a share lies in [0, 1])."""


def _training_heatmap(tables: Tables, statistic: str, title: str) -> alt.Chart:
    value_title, log = HIDDEN_STATISTICS[statistic]
    scale = (alt.Scale(type="log", scheme="viridis") if log
             else alt.Scale(domain=[0, 1], scheme="viridis"))
    legend = alt.Legend(format=".0%") if not log else alt.Legend(format=".1e")
    return alt.Chart(tables["data"], title=_titled(title), height=HEIGHT).mark_rect().encode(
        x=alt.X("step:O", title="training step"),
        y=alt.Y("layer:O", title="hidden layer", sort="descending"),
        color=alt.Color("value:Q", title=value_title, scale=scale, legend=legend),
        tooltip=[alt.Tooltip("step:O"), alt.Tooltip("layer:O", title="hidden layer"),
                 alt.Tooltip("value:Q", format=".3g", title=value_title),
                 alt.Tooltip("runs:Q", title="runs (mean over seeds)")])


def training_heatmap(hidden: pd.DataFrame, statistic: str, *, title: str) -> Figure:
    """Hidden layer × training step heatmap of one per-layer statistic, the mean over seeds.

    ``hidden`` columns: step, layer, ``statistic`` (one of :data:`HIDDEN_STATISTICS`) and seed,
    for one scheme. The top layer is drawn at the top, so Glorot & Bengio's saturating top sigmoid
    layer is the top row. Cells with no finite value (a share for an activation that cannot
    saturate; a zero std on a log scale) are left out.
    """
    _, log = HIDDEN_STATISTICS[statistic]
    data = (hidden.groupby(["step", "layer"], as_index=False)[statistic]
            .agg(value="mean", runs="count"))
    keep = np.isfinite(data["value"]) & ((data["value"] > 0) if log else True)
    return Figure(_training_heatmap, (statistic, title), {"data": data[keep]})


def _cell(axis: pd.Series) -> float:
    """The width of one grid cell along ``axis`` (a single value gets a nominal 0.1)."""
    steps = np.diff(np.unique(axis))
    return float(steps.min()) if len(steps) else 0.1


def _phase_diagram(tables: Tables, schemes: tuple[str, ...], title: str) -> alt.LayerChart:
    heat = alt.Chart(tables["grid"]).mark_rect().encode(
        x=alt.X("sigma_w2:Q", title="σ_w² = fan_in · Var(W)"), x2=alt.X2("w_hi:Q"),
        y=alt.Y("sigma_b2:Q", title="σ_b² = Var(b)"), y2=alt.Y2("b_hi:Q"),
        color=alt.Color("chi1:Q", title="χ₁ (log)", scale=alt.Scale(
            type="log", scheme="blueorange", domainMid=1)),
        tooltip=[alt.Tooltip("sigma_w2:Q", format=".2f", title="σ_w²"),
                 alt.Tooltip("sigma_b2:Q", format=".3f", title="σ_b²"),
                 alt.Tooltip("chi1:Q", format=".3g", title="χ₁")],
    )
    line = alt.Chart(tables["critical"]).mark_line(color=REFERENCE, strokeWidth=2).encode(
        x=alt.X("sigma_w2:Q"), y=alt.Y("sigma_b2:Q"), order=alt.Order("sigma_b2:Q"),
        tooltip=[alt.Tooltip("sigma_w2:Q", format=".3f", title="critical σ_w²"),
                 alt.Tooltip("sigma_b2:Q", format=".3f", title="σ_b²")])
    layers = [heat, line]
    if "points" in tables:
        layers.append(alt.Chart(tables["points"]).mark_point(
            shape="diamond", filled=True, opacity=1, stroke=REFERENCE, strokeWidth=1).encode(
                x=alt.X("sigma_w2:Q"), y=alt.Y("sigma_b2:Q"), size=alt.Size("size:Q", scale=None),
                color=alt.Color("scheme:N", scale=scheme_scale(schemes), title="scheme",
                                legend=alt.Legend(orient="top", symbolType="diamond",
                                                  symbolSize=160, symbolStrokeWidth=0)),
                tooltip=[alt.Tooltip("scheme:N"),
                         alt.Tooltip("sigma_w2:Q", format=".3f", title="σ_w²"),
                         alt.Tooltip("sigma_b2:Q", format=".3f", title="σ_b²"),
                         alt.Tooltip("chi1:Q", format=".3g", title="χ₁")]))
    return alt.layer(*layers, title=_titled(title), height=HEIGHT + 40).resolve_scale(
        color="independent")


def phase_diagram(grid: pd.DataFrame, critical: pd.DataFrame, points: pd.DataFrame,
                  schemes: Sequence[str], *, title: str) -> Figure:
    """χ₁ over (σ_w², σ_b²): diverging colours centred on 1, the critical line, and each scheme's
    network as a diamond in that scheme's colour.

    ``grid``: sigma_w2, sigma_b2, chi1; ``critical``: sigma_w2, sigma_b2; ``points``: scheme,
    sigma_w2, sigma_b2, chi1 (no rows where theory does not apply).
    """
    data = grid[np.isfinite(grid["chi1"]) & (grid["chi1"] > 0)]
    tables = {"grid": data.assign(w_hi=data["sigma_w2"] + _cell(data["sigma_w2"]),
                                  b_hi=data["sigma_b2"] + _cell(data["sigma_b2"])),
              "critical": critical}
    if len(points):
        # Schemes often share a point (Xavier and orthogonal both give σ_w² = 1): each later
        # scheme's diamond is drawn smaller, on top, so every one stays visible.
        tables["points"] = points.assign(size=[DIAMOND_SIZE / (1 + i) for i in range(len(points))])
    return Figure(_phase_diagram, (tuple(schemes), title), tables)


def _singular_value_histogram(tables: Tables, schemes: tuple[str, ...], title: str,
                              subtitle: str | None) -> alt.Chart:
    return alt.Chart(tables["data"], height=HEIGHT,
                     title=_titled(title, subtitle),
                     ).mark_bar(opacity=0.6, binSpacing=0).encode(
        x=alt.X("log10_s:Q", bin=alt.Bin(maxbins=40),
                title="log10 s, singular value s of J (0: s = 1)"),
        y=alt.Y("count():Q", title="count (singular values)", stack=None),
        color=alt.Color("scheme:N", scale=scheme_scale(schemes), title="scheme"),
        tooltip=[alt.Tooltip("scheme:N"), alt.Tooltip("count():Q", title="count")],
    )


def singular_value_histogram(values: pd.DataFrame, schemes: Sequence[str], *,
                             title: str) -> Figure:
    """Histogram of the input–output Jacobian's singular values, one colour per scheme.

    ``values``: scheme, singular_value, zero. Log-spaced bins: spectra span decades when they
    spread. The zero ones (lost directions, ``zero`` true) have no place on a log axis: they are
    not drawn, and a subtitle says how many each scheme has.
    """
    zero = values["zero"].astype(bool)
    data = values[~zero].assign(log10_s=lambda f: np.log10(f["singular_value"]))
    counts = values.groupby("scheme", sort=False)["zero"].agg(["sum", "size"])
    lost = [f"{name} {int(row['sum'])} of {int(row['size'])}" for name, row in counts.iterrows()
            if row["sum"]]
    subtitle = "Not drawn, zero (directions lost): " + "; ".join(lost) if lost else None
    return Figure(_singular_value_histogram, (tuple(schemes), title, subtitle), {"data": data})


__all__ = [
    "Figure", "LAYER_AXIS", "PALETTE", "REFERENCE", "by_layer", "fractions_by_layer",
    "histogram_heatmap", "percentile_bands", "phase_diagram", "scheme_colour", "scheme_scale",
    "singular_value_histogram", "training_curves", "weight_histogram",
]
