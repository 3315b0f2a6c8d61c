"""The page's sections: weights, signal through depth, theory, code. Layout only.

Each section draws what its tab shows from results computed in :mod:`initviz.served` (shared by
every session) with the chart builders of :mod:`initviz.charts`; the page calls a section only
while its tab is open.
"""

from __future__ import annotations

import json
from functools import partial

import pandas as pd
import streamlit as st

from initviz import charts, jacobian, report, served
from initviz.codegen import pytorch_code
from initviz.errors import ServerBusy
from initviz.export import FORMATS, render
from initviz.network import NetworkSpec
from initviz.phase import PhaseDiagram
from initviz.probe import Profile
from ui.links import BOUND, view_default


def draw(figure: charts.Figure, key: str, where=st, save: bool = True) -> None:
    """Draw a chart from its Vega-Lite spec, built once per structure, its tables sent as Arrow,
    with a menu that saves it as PNG or SVG.

    Every chart builder's spec is validated against the Vega-Lite schema in tests/test_charts.py;
    building and validating each chart again on every rerun (what ``st.altair_chart`` does) took
    most of drawing the page. The image is drawn only when its button is pressed; ``save`` False
    leaves the menu out (a live chart, redrawn twice a second, is saved once it is finished).
    """
    box = where.container()
    box.vega_lite_chart(spec=figure.vega_lite(), key=key, width="stretch")
    if not save:
        return
    with box.popover("Save", type="tertiary", help="Save this chart as an image"):
        for fmt, mime in FORMATS.items():
            st.download_button(f"{fmt.upper()} (for slides)" if fmt == "png" else fmt.upper(),
                               partial(_image, figure, fmt), file_name=f"initviz-{key}.{fmt}",
                               mime=mime, on_click="ignore", key=f"{key}-{fmt}")


def _image(figure: charts.Figure, fmt: str) -> bytes:
    return render(figure.to_dict(), fmt)


HALF_MIN_PX = 380
"""The narrowest half of a :func:`pair`: two that do not fit side by side wrap one under the
other, so that no chart's plot area shrinks to a sliver on a narrow screen."""
STYLE = f"""<style>
[data-testid="stMainBlockContainer"] {{ padding-top: 2.5rem; }}
div:has(> [class*="st-key-half-"]) {{ flex: 1 1 {HALF_MIN_PX}px !important;
                                     min-width: min(100%, {HALF_MIN_PX}px) !important; }}
</style>"""
"""The page's stylesheet: :func:`pair`, and a top margin that leaves the first screen of a
1280×720 projector to the story, the verdict and the open tab's first chart."""


def pair(name: str):
    """Two places side by side, ``name`` unique on the page, that wrap one under the other where
    the page is narrower than two halves of :data:`HALF_MIN_PX`."""
    row = st.container(horizontal=True, gap="medium")
    return (row.container(key=f"half-{name}-left"), row.container(key=f"half-{name}-right"))


def verdict_section(prof: Profile, brief: bool = False) -> None:
    """The verdict on the chosen network; ``brief``, its headline alone (presenter mode)."""
    verdict = report.verdict(prof)
    box = {"healthy": st.success, "saturated": st.warning, "dead": st.warning}.get(
        verdict.kind, st.error)
    box(f"**{verdict.headline}**" + ("" if brief else f"  \n{verdict.recommendation}"), icon={
        "healthy": ":material/check_circle:", "vanishing": ":material/trending_down:",
        "exploding": ":material/trending_up:", "saturated": ":material/horizontal_rule:",
        "dead": ":material/block:"}[verdict.kind])
    for detail in () if brief else verdict.details:
        st.caption(detail)


def or_dash(values: pd.Series, template: str) -> pd.Series:
    # the data grid writes "None" for a missing number whatever a Styler says
    return values.map(template.format).where(values.notna(), "—")


def weights_section(profiles: dict[str, Profile]) -> None:
    main = next(iter(profiles.values()))
    depth = main.spec.depth
    left, right = pair("weights")
    with left:
        layer = st.slider("layer", 1, depth, view_default("weight_layer", range(1, depth + 1),
                                                          min(2, depth)),
                          key="weight_layer", **BOUND) if depth > 1 else 1
        fan_in, fan_out = main.spec.fans[layer - 1]
        entries = main.spec.architecture.weight_entries(main.spec)[layer - 1]
        # a matrix is fan_out × fan_in; a conv kernel's fans count the kernel's taps on both
        # sides (3×3, 8 → 8 channels: fans 72 and 72, but 576 weights), so say its size instead
        size = (f"{fan_out}×{fan_in}" if entries == fan_in * fan_out else
                f"{entries:,} weights, fan_in {fan_in}, fan_out {fan_out}")
        draw(charts.weight_histogram(
            report.histogram_of(main, "weight", layer), report.weight_theory(main, layer),
            title=f"{main.spec.scheme}: layer {layer} weights ({size}), theory dashed"),
            key="weight_hist")
    with right:
        entry = main.spec.architecture.entry
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "weight_std"), "weight std", list(profiles),
            title=f"Weight std per {entry}: measured (points) vs theory (dashed)", entry=entry),
            key="weight_std")
    with st.expander("Per-layer table: fans, gain, theoretical std and bound"):
        table = report.weight_table(main)
        gaps = [f"{column}: {why}" for column, why in report.WEIGHT_TABLE_GAPS.items()
                if table[column].isna().any()]
        st.dataframe(table.assign(**{column: or_dash(table[column], "{:.4g}")
                                     for column in report.WEIGHT_TABLE_GAPS}), hide_index=True)
        if gaps:
            st.caption(f"— where {main.spec.scheme} has no such number: " + "; ".join(gaps) + ".")


def signal_section(profiles: dict[str, Profile]) -> None:
    schemes = list(profiles)
    main = next(iter(profiles.values()))
    # Where an architecture predicts its entries without a fixed point (the residual stream's
    # recursion), the dashed lines are drawn and its note is about the phase diagram only.
    notes = {p.theory_note for p in profiles.values()
             if p.theory_note and p.prediction is None}
    if notes:
        st.caption("Theory not drawn: " + "; ".join(sorted(notes)) + ".")
    architecture = main.spec.architecture
    entry, output = architecture.entry, architecture.output
    theory = "mean-field theory" if architecture.fixed_point else "theory"
    left, right = pair("signal")
    draw(charts.by_layer(
        report.by_layer_frame(profiles, "act_std"), f"{output} std (log)", schemes,
        title=f"Forward: {output} std per {entry}, {theory} dashed", entry=entry),
        key="act_std", where=left)
    draw(charts.by_layer(
        report.by_layer_frame(profiles, "grad_std"), "gradient std (log)", schemes,
        title=f"Backward: gradient std per {entry}, {theory} dashed", entry=entry),
        key="grad_std", where=right)
    if main.first_nonfinite_layer is not None:
        st.error(f"{main.spec.scheme}: the {main.nonfinite_pass} pass overflows to inf/NaN at "
                 f"{entry} {main.first_nonfinite_layer}; {entry}s from there on are not drawn.")
    _architecture_charts(profiles)
    _distributions(profiles)
    left, right = pair("distribution")
    with left:
        _fractions(profiles)
    with right:
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "grad_to_weight_ratio"),
            "‖∂ℓ/∂W‖ / ‖W‖, one input (log)", schemes,
            title=f"Backward: gradient-to-weight ratio per {architecture.entry}",
            entry=architecture.entry), key="ratio")
        st.caption("The probe's loss for one input b is ℓ_b = Σᵢ h[b, i] · r[b, i], the last "
                   "hidden layer h against fixed random numbers r ~ N(0, 1), so every gradient "
                   "starts with spread 1 at the top. Shown: the root mean square over the batch "
                   "of ‖∂ℓ_b/∂W‖, over ‖W‖ -- the batch's ‖∂L/∂W‖ (L = Σ_b ℓ_b) divided by "
                   "√batch, so it does not change with the batch size.")


def _architecture_charts(profiles: dict[str, Profile]) -> None:
    """The columns the architecture measures beyond the plain stack's (a residual branch's share
    of the stream, a transformer's attention entropy), then those it measures on real data (the
    classifier's gradient), one chart each, two to a row."""
    main = next(iter(profiles.values()))
    architecture = main.spec.architecture
    frames = {column: report.by_layer_frame(profiles, column) for column in architecture.charts}
    if architecture.data_charts:
        try:
            measured = served.data_columns(tuple((label, p.spec) for label, p in profiles.items()),
                                           main.seed)
        except ServerBusy as error:
            st.info(f"No gradient norms on data now: {error}.")
            measured = {}
        frames |= {f"data.{column}": report.columns_frame(measured, column)
                   for column in architecture.data_charts if measured}
    titles = {**architecture.charts,
              **{f"data.{column}": value for column, value in architecture.data_charts.items()}}
    shown = [key for key in titles if key in frames]
    for start in range(0, len(shown), 2):
        halves = pair(f"arch{start}")
        for where, key in zip(halves, shown[start:start + 2]):
            value_title, log, title = titles[key]
            draw(charts.by_layer(frames[key], value_title, list(profiles), log=log, title=title,
                                 entry=architecture.entry), key=key, where=where)


def _distributions(profiles: dict[str, Profile]) -> None:
    schemes = list(profiles)
    focus = st.segmented_control("Distribution of", schemes,
                                 default=view_default("focus_scheme", schemes, schemes[0]),
                                 key="focus_scheme", required=True, **BOUND) or schemes[0]
    focused = profiles[focus]
    architecture = focused.spec.architecture
    entry, output = architecture.entry, architecture.output
    left, right = pair("units")
    draw(charts.percentile_bands(
        report.percentiles_of(focused, "act"), value_title=f"{output} value",
        title=f"{focus}: {output} percentiles per {entry}",
        colour=charts.scheme_colour(schemes, focus), entry=entry), key="bands", where=left)
    draw(charts.histogram_heatmap(
        report.histogram_of(focused, "act"), value_title=f"{output} value",
        title=f"{focus}: {output} histograms, {entry} by {entry}", entry=entry), key="heatmap",
        where=right)


def _fractions(profiles: dict[str, Profile]) -> None:
    main = next(iter(profiles.values()))
    fractions = report.fractions_frame(profiles)
    if not fractions["value"].notna().any():
        st.info(report.fractions_note(main.spec.activation), icon=":material/info:")
        return
    entry = main.spec.architecture.entry
    draw(charts.fractions_by_layer(
        fractions, list(profiles),
        title=f"Saturated, off and dead units per {entry} ({main.spec.activation})",
        entry=entry), key="fractions")
    st.caption(f"Off: the share of (input, unit) pairs whose output is zero; dead: the share of "
               f"units off for all {main.batch} inputs of the batch, which pass on no gradient "
               "at all. " + report.fractions_note(main.spec.activation))


def _mean_field_metrics(theory, reach) -> None:
    # each number as wide as its text, wrapping onto a second row where five in equal columns
    # cut "diverges" or "none: scale only" short (800 px with the sidebar open)
    row = st.container(horizontal=True, wrap=True, gap="large")
    cols = [row.container(width="content") for _ in range(5)]
    cols[0].metric("σ_w²", f"{theory.sigma_w2:.3g}",
                   help="Weight scale: fan_in · Var(W), from the scheme. Each layer multiplies "
                        "the variance of what enters it by about this much, before the "
                        "activation.")
    cols[1].metric("σ_b²", f"{theory.sigma_b2:.3g}",
                   help="Bias variance Var(b), from the bias scheme: what every layer adds to "
                        "the variance of its pre-activations.")
    cols[2].metric("fixed point q*", "diverges" if theory.q_star is None else
                   f"{theory.q_star:.3g}",
                   help="The variance that deep layers' pre-activations settle at (0: the "
                        "signal dies out; diverges: it grows without bound).")
    cols[3].metric("χ₁", f"{theory.chi1:.3g}",
                   help="How much each layer multiplies a small change of its input, and a "
                        "gradient going back, in variance: σ_w² E[φ'(√q* z)²]. Below 1 they "
                        "fade (ordered), above 1 they grow (chaotic), at 1 they keep their size "
                        "(critical).")
    # the ξ_c of the sentence below the metrics: on the chaotic side it comes from c*, not χ₁
    xi = reach.depth_scale
    cols[4].metric("depth scale ξ_c", f"{xi:.3g} layers" if xi is not None else
                   "∞" if theory.phase == "critical" else
                   "none: scale only" if theory.scale_only else "none",
                   help="How many layers it takes the network to forget how two inputs "
                        "differed (ordered: −1/ln χ₁) or how alike they were (chaotic: −1/ln χ_c "
                        "at the correlation's fixed point c* < 1). Schoenholz et al. 2017 train "
                        "nets up to about 6 ξ_c deep. None where only the scale changes.")
    st.caption("Mean field: the theory of very wide random networks, where each layer's "
               "pre-activations are Gaussian, so two numbers per layer (σ_w², σ_b²) predict the "
               "whole stack. Ordered: deep layers map every input alike and gradients fade; "
               "chaotic: nearby inputs are pulled apart and gradients grow.")


def _phase_view(diagram: PhaseDiagram, profiles: dict[str, Profile]) -> None:
    points = served.phase_points(profiles)
    in_view = diagram.in_view(points)
    draw(charts.phase_diagram(
        diagram.grid, diagram.critical_line, points[in_view], list(profiles),
        title=f"Order and chaos for {diagram.activation}: χ₁ = 1 on the grey line"),
        key="phase")
    outside = ", ".join(f"{row.scheme} (σ_w² = {row.sigma_w2:.3g}, σ_b² = {row.sigma_b2:.3g})"
                        for row in points[~in_view].itertuples())
    st.caption(diagram.caption + (f" Off the map: {outside}." if outside else ""))


def _jacobian_view(specs: dict[str, NetworkSpec], seed: int, device: str) -> None:
    schemes = list(specs)
    square, refused = served.square(specs)
    for message, names in refused.items():
        which = "" if len(names) == len(specs) else " for " + ", ".join(names)
        st.info(f"No Jacobian spectrum{which}: {message}.")
    if not square:
        return
    try:
        spectra = served.jacobians(tuple(square), seed, device)
    except ServerBusy as error:
        st.info(f"No Jacobian spectrum now: {error}.")
        return
    drawn = {name: spectrum for name, spectrum in spectra.items() if spectrum.overflow is None}
    side = square[0][1].sizes[0]
    if drawn:
        draw(charts.singular_value_histogram(
            served.spectra_frame(drawn), [name for name in schemes if name in drawn],
            title=f"Singular values of the input–output Jacobian ({side} × {side})"),
            key="jacobian")
    for name, spectrum in spectra.items():
        st.markdown(f"**{name}**: {spectrum.reading}")
    st.caption("J = ∂(last hidden activation)/∂(input) at one N(0, I) input of a square network "
               f"(input size = first width, {side}), in float64; all s ≈ 1 is dynamical "
               "isometry: signals and gradients keep their size and shape through any depth "
               "(Saxe et al. 2014; Pennington et al. 2017). A singular value at most "
               "s_max · size · 2.2e-16 (float64's precision) is zero: that input direction is "
               "lost, e.g. through ReLU units that are off. Well conditioned means s_max / s_min "
               f"≤ {jacobian.WELL_CONDITIONED:g} over the nonzero ones; isometric, every s within "
               f"{jacobian.ISOMETRY_TOLERANCE:g} of 1.")


def theory_section(specs: dict[str, NetworkSpec], profiles: dict[str, Profile], seed: int,
                   device: str) -> None:
    main_spec, main = next(iter(specs.values())), next(iter(profiles.values()))
    try:
        diagram = served.phase_diagram(main_spec.activation, main.theory, main_spec.depth,
                                       main.theory_note, main_spec.architecture.entry)
    except ServerBusy as error:
        st.info(f"No phase diagram now: {error}.")
        return
    if diagram.summary is None:
        st.info(f"Mean-field theory does not describe this network: {diagram.note}. The map "
                f"shows {main_spec.activation} without normalization.")
    else:
        _mean_field_metrics(diagram.summary, diagram.reach)
        st.markdown(diagram.reach.sentence)
    left, right = pair("theory")
    with left:
        _phase_view(diagram, profiles)
    with right:
        _jacobian_view(specs, seed, device)


def code_section(spec: NetworkSpec, seed: int, batch: int, profiles: dict[str, Profile],
                 config: dict) -> None:
    st.caption("Builds this network and initializes it exactly as on this page (same generator, "
               "same order): running it prints the activation std of every layer shown here.")
    st.code(pytorch_code(spec, seed=seed, batch=batch), language="python")
    st.subheader("Downloads")
    row = st.container(horizontal=True)
    # The table is written when the button is pressed, not on every rerun.
    row.download_button("Per-layer statistics (CSV)", partial(served.statistics_csv, profiles),
                        file_name="initviz-statistics.csv", mime="text/csv", on_click="ignore")
    row.download_button("Configuration (JSON)", json.dumps(config, indent=2),
                        file_name="initviz-config.json", mime="application/json",
                        on_click="ignore")


__all__ = ["STYLE", "code_section", "draw", "or_dash", "pair", "signal_section", "theory_section",
           "verdict_section", "weights_section"]
