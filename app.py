"""initviz: the page. Widgets -> specs -> initviz -> charts. Layout and widgets only, no maths.

Every sidebar control, the weight histogram's layer and the focused scheme are bound to the URL
(``bind="query-params"``) under their widget keys, so a view is shared by sharing its link.
Streamlit itself drops a bad or out-of-range URL value and falls back to the control's default
(the preset's value where the link names a preset); this page refuses a few more (see
_link_check) and names each such value in a warning, escaped for Markdown (initviz.text).

A query string of more than about 128,000 characters (measured on loopback) never reaches the
page: the HTTP server Streamlit 1.67 runs (uvicorn with h11) resets the connection ("Invalid HTTP
request received."), and Streamlit offers no setting for that limit.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.state.query_params import (CLIENT_STATE_QUERY_STRING_MAX_FIELDS,
                                                  CLIENT_STATE_QUERY_STRING_MAX_LENGTH)

from initviz import charts, jacobian, probe, report, training
from initviz.activations import ACTIVATIONS
from initviz.cache import computed
from initviz.codegen import pytorch_code
from initviz.datasets import DATASETS, MAX_SEED
from initviz.devices import DEVICE_CHOICES, limit_threads, resolve_device
from initviz.errors import InitvizError, InvalidSpec, ServerBusy
from initviz.jacobian import JacobianSpectrum
from initviz.meanfield import MeanField
from initviz.network import MAX_INPUT_DIM, NORMS, NetworkSpec, estimate_bytes, peak_bytes
from initviz.phase import PhaseDiagram, phase_map
from initviz.presets import PRESETS
from initviz.probe import Profile
from initviz.race import RaceView, TrainingJob, server_board
from initviz.scheme_types import Param, Scheme
from initviz.schemes import BIAS_SCHEMES, SCHEMES
from initviz.text import escape, quote

MAX_PAGE_WIDTH = 2048
MAX_PAGE_DEPTH = 200
MAX_PAGE_BATCH = 4096
DEFAULTS = {
    "preset": "none", "input_dim": 64, "width": 256, "depth": 20, "sizes": "", "activation": "relu",
    "scheme": "kaiming_normal", "bias": "zeros", "norm": "none", "seed": 0, "batch": 256,
    "compare": ["kaiming_normal", "xavier_normal"], "device": "auto",
    "dataset": "digits", "optimizer": "sgd", "lr": 0.05, "steps": 200, "seeds": 2,
}
TRAIN_REDRAW_SECONDS = 0.5  # the live curve redraws at least twice a second
CURVE_POINTS = 40           # evaluation steps per training run
PHASE_GRID_SIDE = 50        # 2,500 cells: a smooth map that the browser still draws at once
PHASE_MAP_BYTES = 16 * 1024**2  # about 4 times the peak that tracemalloc sees at this grid
BOUND = {"bind": "query-params"}

st.set_page_config(page_title="initviz: weight initialization, made visible", layout="wide",
                   page_icon="📐")


@st.cache_resource
def _threads() -> int:
    return limit_threads()


_threads()


# --------------------------------------------------------------------------------------------------
# Shared computation (keyed by frozen specs): every session's results in one byte-bounded cache,
# every computation's memory reserved in the server's one ledger (initviz.cache) while it runs.


def cached_profiles(specs: tuple[NetworkSpec, ...], batch: int, seed: int, device: str
                    ) -> dict[str, Profile]:
    """Every compared scheme's profile, computed side by side, by scheme name."""
    return computed(
        ("profiles", specs, batch, seed, device), "this profile",
        peak_bytes([estimate_bytes(spec, batch) for spec in specs]),
        lambda: {spec.scheme: result for spec, result in
                 zip(specs, probe.profiles(specs, batch=batch, seed=seed, device=device))})


def cached_phase_map(activation: str, summary: MeanField | None, depth: int,
                     note: str | None) -> PhaseDiagram:
    """Keyed by the mean-field summary, not the spec: a width change keeps σ_w² and the map."""
    return computed(("phase_map", activation, summary, depth, note), "this phase map",
                    PHASE_MAP_BYTES,
                    lambda: phase_map(activation, summary, depth, note, n=PHASE_GRID_SIDE))


def cached_jacobians(specs: tuple[NetworkSpec, ...], seed: int, device: str
                     ) -> dict[str, JacobianSpectrum]:
    """Each (square) network's spectrum, computed side by side, by scheme name."""
    return computed(
        ("jacobians", specs, seed, device), "this Jacobian",
        peak_bytes([jacobian.jacobian_bytes(spec) for spec in specs]),
        lambda: {spec.scheme: spectrum for spec, spectrum in
                 zip(specs, jacobian.jacobian_spectra(specs, seed=seed, device=device))})


def draw(figure: charts.Figure, key: str | None = None, width: str | None = None,
         where=st) -> None:
    """Draw a chart from its Vega-Lite spec, built once per structure, its tables sent as Arrow.

    Every chart builder's spec is validated against the Vega-Lite schema in tests/test_charts.py;
    building and validating each chart again on every rerun (what ``st.altair_chart`` does) took
    most of drawing the page.
    """
    where.vega_lite_chart(spec=figure.vega_lite(), key=key, width=width)


# --------------------------------------------------------------------------------------------------
# The URL: presets, link defaults and bad values
#
# Streamlit (1.67) keeps a bound control in the link only while its value differs from the
# default its widget call passes (the browser deletes the parameter when they are equal), while a
# link that leaves a parameter out reopens with what the page chooses for it: the preset's value
# where the link names a preset. A fixed page default therefore made `?preset=he2015` with depth
# moved back to 20 reopen at the preset's 30. Every bound widget takes as its default the value
# the link would reopen with (link_default), so "left out of the link" and "reopens the same"
# are one thing.

PARAM_DEFAULTS = {f"{name}.{p.name}": p.default for name, s in SCHEMES.items() for p in s.params}
PARAM_DEFAULTS |= {f"bias.{name}.{p.name}": p.default for name, s in BIAS_SCHEMES.items()
                   for p in s.params}
VIEW_KEYS = ("weight_layer", "focus_scheme")  # bound too, but chosen below the sidebar
NOT_SET_BY_PRESETS = ("preset", "seed", "device", "batch")
# Streamlit ignores a whole query string past these limits (runtime/state/query_params.py)
MAX_LINK_PARAMETERS = CLIENT_STATE_QUERY_STRING_MAX_FIELDS
MAX_LINK_CHARACTERS = CLIENT_STATE_QUERY_STRING_MAX_LENGTH


def _preset_values(name: str) -> dict:
    """Every control a preset decides: its own values, and for the controls it does not mention
    their defaults, so presets do not mix."""
    reset = {k: v for k, v in DEFAULTS.items() if k not in NOT_SET_BY_PRESETS}
    return {**reset, **PARAM_DEFAULTS, **PRESETS[name].values}


def link_default(key: str):
    """What control ``key`` shows when the link leaves it out, under the active preset."""
    state = st.session_state
    # before the preset control is drawn on a session's first run, the link names the preset
    preset = state["preset"] if "preset" in state else state.get("link", {}).get("preset")
    if preset in PRESETS and key in _preset_values(preset):
        return _preset_values(preset)[key]
    return DEFAULTS[key] if key in DEFAULTS else PARAM_DEFAULTS[key]


def _apply_preset(name: str, skip: set[str] = frozenset()) -> None:
    for key, value in _preset_values(name).items():
        if key not in skip:
            st.session_state[key] = value


def _on_preset_change() -> None:
    """Apply the chosen preset; with "none", keep every value but assign it again.

    The controls' defaults change with the preset, and Streamlit rewrites a bound control's
    parameter against its new default only for a value assigned in code: a depth of 30 left by
    he2015 must enter the link once "none" makes 20 the default.
    """
    name = st.session_state["preset"]
    if name in PRESETS:
        _apply_preset(name)
        return
    for key in (*DEFAULTS, *PARAM_DEFAULTS):
        if key != "preset" and key in st.session_state:
            st.session_state[key] = st.session_state[key]


def _link_check(key: str, value: str) -> str | None:
    """Why the page refuses a link's value before its control reads it, or None.

    Streamlit (1.67) seeds a bound integer input from the link as the session opens and crashes
    converting inf to an integer, and seeds a slider with a value off its step (steps=15 on a
    slider that moves in 10s) without complaint.
    """
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return "is not a finite number"
    if key == "steps" and number % 10:
        return "is not a multiple of 10 (the steps slider moves in 10s)"
    return None


def _first_run_from_url() -> None:
    """On a session's first run: read the link, refuse what its controls must not see, apply its
    preset. What was read is kept in ``link`` until the page has reported on it."""
    if "url_read" in st.session_state:
        return
    st.session_state["url_read"] = True
    raw = {key: st.query_params.get_all(key) for key in st.query_params}
    rejected = {key: reason for key, values in raw.items()
                for reason in [next(filter(None, (_link_check(key, v) for v in values)), None)]
                if reason}
    preset = raw.get("preset", [DEFAULTS["preset"]])[-1]
    link = st.session_state["link"] = {"raw": raw, "preset": preset, "rejected": rejected,
                                       "ignored": _ignored_query(raw)}
    if preset in PRESETS:
        _apply_preset(preset, skip=set(raw))
    problems = link["problems"] = []
    for prefix, scheme in _link_schemes(raw):
        given = {p.name: raw[prefix + p.name][-1] for p in scheme.params
                 if prefix + p.name in raw and prefix + p.name not in rejected}
        problem = _refused_together(prefix, scheme, _with_defaults(prefix, scheme, given))
        if problem:
            problems.append(problem)
            rejected.update(dict.fromkeys((prefix + name for name in given), None))
    for key in rejected:
        del st.query_params[key]  # off the link, warned about below


def _link_schemes(raw: dict) -> list[tuple[str, Scheme]]:
    """The weight and bias schemes a link opens with, with the prefix of their parameters."""
    def chosen(key: str, table: dict) -> str:
        name = raw.get(key, [None])[-1]
        return name if name in table else link_default(key)

    weights, bias = chosen("scheme", SCHEMES), chosen("bias", BIAS_SCHEMES)
    return [(f"{weights}.", SCHEMES[weights]), (f"bias.{bias}.", BIAS_SCHEMES[bias])]


def _with_defaults(prefix: str, scheme: Scheme, given: dict[str, str]) -> dict:
    """Every parameter of ``scheme``: the link's value where it is valid on its own (Streamlit
    replaces the others with their defaults), else what the control shows without it."""
    values = {}
    for param in scheme.params:
        try:
            values[param.name] = param.coerce(given[param.name], scheme.name)
        except (KeyError, InvalidSpec):
            values[param.name] = st.session_state.get(prefix + param.name,
                                                      link_default(prefix + param.name))
    return values


def _ignored_query(raw: dict) -> str | None:
    """Why Streamlit dropped the whole query string (too many parameters or characters), or
    None. It does so silently, before the page can read any of it."""
    ctx = get_script_run_ctx()
    query = ctx.query_string if ctx is not None else ""
    if raw or not query:
        return None
    parameters = query.count("&") + 1
    if parameters > MAX_LINK_PARAMETERS:
        return (f"The link has {parameters:,} parameters, more than the {MAX_LINK_PARAMETERS:,} "
                "Streamlit reads, so all of them were ignored and the page opened as it is "
                "by default.")
    if len(query) > MAX_LINK_CHARACTERS:
        return (f"The link's parameters are {len(query):,} characters long, more than the "
                f"{MAX_LINK_CHARACTERS:,} Streamlit reads, so all of them were ignored and the "
                "page opened as it is by default.")
    return None


def _binding(key: str) -> dict:
    """Bound to the URL, except on the run that refused this control's value from the link.

    Deleting a parameter does not reach Streamlit's first seeding of a bound control, so the
    control is left unbound for that run (its identity is its key, so nothing else changes) and
    takes its default.
    """
    return {} if key in st.session_state.get("link", {}).get("rejected", ()) else BOUND


def _view_default(key: str, valid: list, default):
    """The default of a bound view control whose choices follow the network (the weight layer,
    the focused scheme); a value the network no longer has goes back to it in code.

    Streamlit would show the default anyway but leave the old value in the link, where it
    reopens as a bad value with a warning.
    """
    if st.session_state.get(key, default) not in valid:
        st.session_state[key] = default
    return default


def _matches(raw: list[str], value) -> bool:
    if isinstance(value, list):
        return [str(v) for v in value] == raw
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return raw == [str(value)]
    try:
        return len(raw) == 1 and math.isclose(float(raw[0]), float(value), rel_tol=1e-9)
    except ValueError:
        return False


def _shown(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _whose(key: str, value) -> str:
    if key not in DEFAULTS and key not in PARAM_DEFAULTS:
        return ""  # the weight layer and the focused scheme: their defaults follow the network
    if value != link_default(key):
        return ""  # what Streamlit kept of it, e.g. a compare list without its unknown names
    preset = st.session_state["preset"]
    return (f" (the {preset} preset's value)" if key != "preset" and preset in PRESETS
            and key in _preset_values(preset) else " (the default)")


def url_warnings(link: dict) -> list[str]:
    """One sentence per link parameter the page did not take as given, saying what it shows."""
    if link["ignored"]:
        return [link["ignored"]]
    state, problems = st.session_state, list(link["problems"])
    for key, values in link["raw"].items():
        if key in link["rejected"] and link["rejected"][key] is None:
            continue  # refused with the other parameters of its scheme, in link["problems"]
        # a bound control that this run drew (session state also holds buttons and the job)
        known = (key in DEFAULTS or key in PARAM_DEFAULTS or key in VIEW_KEYS) and key in state
        if key in PARAM_DEFAULTS and not known:
            owner = key.removeprefix("bias.").split(".")[0]
            problems.append(f"The link's {key} belongs to the {owner} scheme, which the page "
                            "does not use now, so it was ignored.")
        elif not known:
            problems.append(f"The link's parameter {quote(key)} is not a setting of this page, "
                            "so it was ignored.")
        elif not _matches(values, state[key]):
            reason = link["rejected"].get(key, "is not a valid value")
            problems.append(f"The link's {key} {quote(values)} {reason}; showing "
                            f"{escape(_shown(state[key]))}{_whose(key, state[key])} instead.")
    return problems


# --------------------------------------------------------------------------------------------------
# Sidebar


def _param_widget(param: Param, prefix: str, scheme: Scheme, label_prefix: str = ""):
    key = prefix + param.name
    label, default = f"{label_prefix}{param.name}", link_default(key)
    common = dict(key=key, help=param.doc or None,
                  on_change=partial(_on_param_change, prefix, scheme))
    if param.choices:
        return st.selectbox(label, param.choices, index=param.choices.index(default),
                            **common, **BOUND)
    if param.integer:
        return st.number_input(label, int(param.low), int(param.high), int(default), step=1,
                               **common, **_binding(key))
    return st.number_input(label, float(param.low), float(param.high), float(default),
                           format="%.6g", **common, **_binding(key))


def _index(options: list, key: str) -> int:
    return list(options).index(link_default(key))


def sidebar() -> dict:
    with st.sidebar:
        # Bound selectboxes show raw names: the URL carries what the option displays.
        st.selectbox("Preset", ["none", *PRESETS], key="preset", on_change=_on_preset_change,
                     help="The classic results of the literature, one click each: "
                     + "; ".join(f"**{name}**: {p.title}" for name, p in PRESETS.items()),
                     **BOUND)
        st.header("Network")
        st.slider("width (units per hidden layer)", 2, MAX_PAGE_WIDTH, link_default("width"),
                  key="width", **_binding("width"))
        st.slider("depth (hidden layers)", 1, MAX_PAGE_DEPTH, link_default("depth"),
                  key="depth", **_binding("depth"))
        st.text_input("sizes (overrides width and depth)", link_default("sizes"), key="sizes",
                      placeholder="e.g. 64,256,128", help="One width per hidden layer.",
                      **BOUND)
        st.number_input("input_dim", 1, MAX_INPUT_DIM, link_default("input_dim"),
                        key="input_dim",
                        help="How many numbers each input has: the size of what layer 1 "
                             "reads (the probe feeds it random numbers from N(0, 1)).",
                        **_binding("input_dim"))
        st.selectbox("activation", list(ACTIVATIONS), key="activation",
                     index=_index(ACTIVATIONS, "activation"), **BOUND)
        st.selectbox("norm", NORMS, key="norm", index=_index(NORMS, "norm"),
                     help="A normalization layer after each Linear.", **BOUND)
        st.header("Initialization")
        scheme = st.selectbox("scheme", list(SCHEMES), key="scheme",
                              index=_index(SCHEMES, "scheme"),
                              help=SCHEMES[st.session_state.get("scheme", DEFAULTS["scheme"])
                                           ].formula, **BOUND)
        params = {p.name: _param_widget(p, f"{scheme}.", SCHEMES[scheme])
                  for p in SCHEMES[scheme].params}
        bias = st.selectbox("bias", list(BIAS_SCHEMES), key="bias",
                            index=_index(BIAS_SCHEMES, "bias"), **BOUND)
        bias_params = {p.name: _param_widget(p, f"bias.{bias}.", BIAS_SCHEMES[bias], "bias ")
                       for p in BIAS_SCHEMES[bias].params}
        compare = st.multiselect("compare (drawn and trained side by side)", list(SCHEMES),
                                 default=link_default("compare"), key="compare", **BOUND)
        st.number_input("seed", 0, MAX_SEED, link_default("seed"), key="seed",
                        **_binding("seed"))
        st.number_input("batch", 1, MAX_PAGE_BATCH, link_default("batch"), key="batch",
                        help="Inputs per probe pass, and the mini-batch size for training.",
                        **_binding("batch"))
        training_sidebar()
        st.header("Compute")
        st.selectbox("device", DEVICE_CHOICES, key="device", index=_index(DEVICE_CHOICES, "device"),
                     **BOUND)
    return {"scheme": scheme, "params": params, "bias": bias, "bias_params": bias_params,
            "compare": compare}


def _refused_together(prefix: str, scheme: Scheme, values: dict) -> str | None:
    """Why ``scheme`` refuses these parameter values together (uniform with a >= b, a
    trunc_normal mean far outside [a, b]), saying which defaults it uses instead; or None.

    Each value alone is in range, so Streamlit lets them through, and the network would fail to
    build; a link that kept them would fail again for everyone it is shared with.
    """
    try:
        scheme.resolve(values)
        return None
    except InvalidSpec as error:
        defaults = {name: link_default(prefix + name) for name in values}
        return (f"The {scheme.name} settings {_settings(values)} do not go together "
                f"({escape(error.field.removeprefix(prefix))} should be "
                f"{escape(error.allowed)}), so {scheme.name} uses {_settings(defaults)} instead.")


def _settings(values: dict) -> str:
    return ", ".join(f"{name} = {escape(_shown(value))}" for name, value in values.items())


def _on_param_change(prefix: str, scheme: Scheme) -> None:
    """A parameter changed in the sidebar: if the scheme refuses the new set of values, every
    one of its parameters goes back to its default (assigned here, in code, so Streamlit takes
    them out of the link too)."""
    state = st.session_state
    values = {p.name: state[prefix + p.name] for p in scheme.params}
    problem = _refused_together(prefix, scheme, values)
    if problem:
        for name in values:
            state[prefix + name] = link_default(prefix + name)
        state["param_problem"] = problem


def training_sidebar() -> None:
    st.header("Training")
    st.selectbox("dataset", list(DATASETS), key="dataset", index=_index(DATASETS, "dataset"),
                 help="; ".join(f"**{n}**: {d.description}" for n, d in DATASETS.items()),
                 **BOUND)
    st.selectbox("optimizer", training.OPTIMIZERS, key="optimizer",
                 index=_index(training.OPTIMIZERS, "optimizer"),
                 help="sgd; momentum = SGD with momentum 0.9; adam", **BOUND)
    st.number_input("lr (learning rate)", 1e-5, training.MAX_LR, link_default("lr"),
                    format="%.4g", key="lr", **_binding("lr"))
    st.slider("steps", 10, 2000, link_default("steps"), step=10, key="steps",
              **_binding("steps"))
    st.slider("seeds (runs per scheme)", 1, 5, link_default("seeds"), key="seeds",
              **_binding("seeds"))


# --------------------------------------------------------------------------------------------------
# Specs from widgets


def network_spec(scheme: str, params: dict, bias: str, bias_params: dict,
                 problems: list[str]) -> NetworkSpec:
    state = st.session_state
    common = dict(input_dim=state["input_dim"], activation=state["activation"], scheme=scheme,
                  scheme_params=params, bias=bias, bias_params=bias_params, norm=state["norm"])
    sizes_text = state["sizes"].strip()
    if sizes_text:
        sizes, problem = _sizes(sizes_text)
        if sizes:
            return NetworkSpec(sizes=sizes, **common)
        problems.append(f"The sizes field {quote(sizes_text)} {problem}, so the network uses "
                        "width × depth instead.")
    return NetworkSpec.stack(state["width"], state["depth"], **common)


def _sizes(text: str) -> tuple[tuple[int, ...], str]:
    """The widths of the sizes field, or () and what is wrong with it, in the page's limits."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        return (), "is not a list of whole numbers separated by commas (e.g. 64,256,128)"
    sizes = tuple(int(part) for part in parts)
    if len(sizes) > MAX_PAGE_DEPTH:
        return (), f"gives {len(sizes):,} layers, more than the page's {MAX_PAGE_DEPTH}"
    outside = [size for size in sizes if not 1 <= size <= MAX_PAGE_WIDTH]
    if outside:
        return (), (f"has a width of {outside[0]:,}, outside the page's 1 to {MAX_PAGE_WIDTH:,} "
                    "units per layer")
    return sizes, ""


def compare_specs(main: NetworkSpec, compare: list[str]) -> dict[str, NetworkSpec]:
    """The chosen scheme with its parameters, then each compared scheme with its defaults."""
    specs = {main.scheme: main}
    for name in compare:
        if name not in specs:
            specs[name] = NetworkSpec(
                sizes=main.sizes, input_dim=main.input_dim, activation=main.activation,
                scheme=name, bias=main.bias, bias_params=main.bias_params, norm=main.norm)
    return specs


# --------------------------------------------------------------------------------------------------
# Sections


def verdict_section(prof: Profile) -> None:
    verdict = report.verdict(prof)
    box = {"healthy": st.success, "saturated": st.warning, "dead": st.warning}.get(
        verdict.kind, st.error)
    box(f"**{verdict.headline}**  \n{verdict.recommendation}", icon={
        "healthy": ":material/check_circle:", "vanishing": ":material/trending_down:",
        "exploding": ":material/trending_up:", "saturated": ":material/horizontal_rule:",
        "dead": ":material/block:"}[verdict.kind])
    for detail in verdict.details:
        st.caption(detail)


def weights_section(profiles: dict[str, Profile], colours: list[str]) -> None:
    st.header("Weights", divider="gray")
    main = next(iter(profiles.values()))
    depth = main.spec.depth
    left, right = st.columns(2)
    with left:
        layer = st.slider("layer", 1, depth, _view_default("weight_layer", range(1, depth + 1),
                                                           min(2, depth)),
                          key="weight_layer", **BOUND) if depth > 1 else 1
        fan_in, fan_out = main.spec.fans[layer - 1]
        draw(charts.weight_histogram(
            report.histogram_of(main, "weight", layer), report.weight_theory(main, layer),
            title=f"{main.spec.scheme}: layer {layer} weights ({fan_out}×{fan_in}), "
                  "theory dashed"), key="weight_hist")
    with right:
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "weight_std"), "weight std", list(profiles),
            title="Weight std per layer: measured (points) vs theory (dashed)"),
            key="weight_std")
    with st.expander("Per-layer table: fans, gain, theoretical std and bound"):
        table = report.weight_table(main)
        gaps = [f"{column}: {why}" for column, why in report.WEIGHT_TABLE_GAPS.items()
                if table[column].isna().any()]
        st.dataframe(table.assign(**{column: _or_dash(table[column], "{:.4g}")
                                     for column in report.WEIGHT_TABLE_GAPS}), hide_index=True)
        if gaps:
            st.caption(f"— where {main.spec.scheme} has no such number: " + "; ".join(gaps) + ".")


def signal_section(profiles: dict[str, Profile], schemes: list[str]) -> None:
    st.header("Signal through depth", divider="gray")
    main = next(iter(profiles.values()))
    notes = {p.theory_note for p in profiles.values() if p.theory_note}
    if notes:
        st.caption("Theory not drawn: " + "; ".join(sorted(notes)) + ".")
    left, right = st.columns(2)
    with left:
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "act_std"), "activation std (log)", schemes,
            title="Forward: activation std per layer, mean-field theory dashed"), key="act_std")
    with right:
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "grad_std"), "gradient std (log)",
            schemes, title="Backward: gradient std per layer, mean-field theory dashed"),
            key="grad_std")
    focus = st.segmented_control("Distribution of", schemes,
                                 default=_view_default("focus_scheme", schemes, schemes[0]),
                                 key="focus_scheme", required=True, **BOUND) or schemes[0]
    focused = profiles[focus]
    colour = charts.OKABE_ITO[schemes.index(focus) % len(charts.OKABE_ITO)]
    left, right = st.columns(2)
    with left:
        draw(charts.percentile_bands(
            report.percentiles_of(focused, "act"), value_title="activation value",
            title=f"{focus}: activation percentiles per layer",
            colour=colour), key="bands")
    with right:
        draw(charts.histogram_heatmap(
            report.histogram_of(focused, "act"), value_title="activation value",
            title=f"{focus}: activation histograms, layer by layer"), key="heatmap")
    left, right = st.columns(2)
    with left:
        fractions = report.fractions_frame(profiles)
        if fractions["value"].notna().any():
            draw(charts.fractions_by_layer(
                fractions, schemes,
                title=f"Saturated, off and dead units per layer ({main.spec.activation})"),
                key="fractions")
            st.caption(f"Off: the share of (input, unit) pairs whose output is zero; dead: the "
                       f"share of units off for all {main.batch} inputs of the batch, which "
                       f"pass on no gradient at all. "
                       + report.fractions_note(main.spec.activation))
        else:
            st.info(report.fractions_note(main.spec.activation), icon=":material/info:")
    with right:
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "grad_to_weight_ratio"),
            "‖∂ℓ/∂W‖ / ‖W‖, one input (log)", schemes,
            title="Backward: gradient-to-weight ratio per layer"), key="ratio")
        st.caption("The probe's loss for one input b is ℓ_b = Σᵢ h[b, i] · r[b, i], the last "
                   "hidden layer h against fixed random numbers r ~ N(0, 1), so every gradient "
                   "starts with spread 1 at the top. Shown: the root mean square over the batch "
                   "of ‖∂ℓ_b/∂W‖, over ‖W‖ -- the batch's ‖∂L/∂W‖ (L = Σ_b ℓ_b) divided by "
                   "√batch, so it does not change with the batch size.")
    if main.first_nonfinite_layer is not None:
        st.error(f"{main.spec.scheme}: the {main.nonfinite_pass} pass overflows to inf/NaN at "
                 f"layer {main.first_nonfinite_layer}; layers from there on are not drawn.")


def train_spec(specs: dict[str, NetworkSpec], device: str, problems: list[str]
               ) -> training.TrainSpec | None:
    state = st.session_state
    main = next(iter(specs.values()))
    try:
        return training.TrainSpec(
            network=main, schemes=tuple((s.scheme, s.scheme_params) for s in specs.values()),
            seeds=state["seeds"], seed=state["seed"], dataset=state["dataset"],
            optimizer=state["optimizer"], lr=state["lr"], steps=state["steps"],
            batch=min(state["batch"], training.MAX_BATCH),
            eval_every=max(1, state["steps"] // CURVE_POINTS), device=device)
    except InitvizError as error:
        problems.append(f"Training is off until this is fixed: {escape(str(error))}.")
        return None


def _start_training(spec: training.TrainSpec) -> None:
    st.session_state["train_job"] = server_board().start(spec)


def _stop_training() -> None:
    job: TrainingJob | None = st.session_state.get("train_job")
    if job is not None:
        job.stop()  # safe at any moment: the race runs on the server's worker, not in this rerun


def training_section(spec: training.TrainSpec | None, schemes: list[str]) -> None:
    st.header("Training", divider="gray")
    if spec is None:
        st.info("Fix the training settings above to train.")
        return
    info = DATASETS[spec.dataset]
    st.caption(f"{len(spec.schemes)} schemes × {spec.seeds} seeds on **{spec.dataset}** "
               f"({info.description}; {info.n_classes} classes), {spec.optimizer}, lr "
               f"{spec.lr:g}, {spec.steps} steps of {spec.batch}. Every run sees the same "
               "batches in the same order; the band spans the seeds."
               + _race_time(server_board().estimate(spec)))
    job: TrainingJob | None = st.session_state.get("train_job")
    if job is not None and job.spec != spec:
        job.stop()
        del st.session_state["train_job"]
        job = None
    running = job is not None and job.running
    left, right, _ = st.columns([1, 1, 6])
    left.button("Train", type="primary", disabled=running, on_click=_start_training,
                args=(spec,), key="train_button")
    right.button("Stop", disabled=not running, on_click=_stop_training, key="stop_button")
    training_live(spec, schemes, running)


def training_live(spec: training.TrainSpec, schemes: list[str], running: bool) -> None:
    @st.fragment(run_every=TRAIN_REDRAW_SECONDS if running else None)
    def live() -> None:
        job: TrainingJob | None = st.session_state.get("train_job")
        shown = job.view() if job is not None else server_board().finished(spec)
        if shown is None:
            st.info("Press **Train** to train every scheme on the same data, side by side.")
            return
        if shown.error is not None:
            st.error(shown.error)
            return
        training_view(spec, schemes, shown)
        if running and not shown.running:
            st.rerun()  # the whole page, to stop this fragment's timer and free the buttons

    live()


def _race_time(seconds: float | None) -> str:
    if seconds is None:
        return " The first race on this server also measures how fast it trains."
    return f" It should take about {seconds:.0f} s here (fitted to this server's latest races)."


def _time_left(shown: RaceView, steps: int) -> str:
    if not shown.running or shown.step == 0:
        return ""
    return f", about {shown.seconds / shown.step * (steps - shown.step):.0f} s left"


RACE_STATUS = {"training": "training", "finished": "finished", "stopped": "stopped",
               "diverged": "ended early, every run diverged"}


def training_view(spec: training.TrainSpec, schemes: list[str], shown: RaceView) -> None:
    if shown.notice:
        st.warning(shown.notice)
    st.progress(shown.step / spec.steps,
                text=f"{RACE_STATUS[shown.state]}: step {shown.step} of {spec.steps}, "
                     f"{shown.seconds:.1f} s on {shown.device}{_time_left(shown, spec.steps)}")
    history = training.history_frame(shown.records)
    if history.empty:
        return
    left, right = st.columns(2)
    draw(where=left, figure=charts.training_curves(
        history, schemes, metric="train_loss", log=True, total_steps=spec.steps,
        title="Training loss (mean over seeds; band: min to max)"), key="train_loss")
    classes = DATASETS[spec.dataset].n_classes
    left.caption(f"Cross-entropy in nats (natural-log units): 0 is a perfect, sure prediction; "
                 f"guessing evenly among the {classes} classes gives ln {classes} = "
                 f"{math.log(classes):.2f}.")
    draw(where=right, figure=charts.training_curves(
        history, schemes, metric="val_acc", total_steps=spec.steps,
        title=f"Validation accuracy (chance: {1 / DATASETS[spec.dataset].n_classes:.0%})"),
        key="val_acc")
    ratio = training.update_ratio_steps(training.layer_frame(shown.records))
    if len(ratio):
        draw(where=left, figure=charts.by_layer(
            ratio, "‖ΔW‖ / ‖W‖ per update (log)", schemes,
            sources=[f"step {step}" for step in ratio["step"].unique()],
            title="Update-to-weight ratio over the run (≈1e-3 is healthy early on)"),
            key="update_ratio")
        left.caption("‖ΔW‖ / ‖W‖ of one update, mean over seeds, at the first update, mid-run and "
                     "the latest record; the last layer is the output layer. Early on, much "
                     "below 1e-3 a layer barely learns and much above it is being overwritten "
                     "(Karpathy, CS231n); once the loss settles, updates shrink, so a small ratio "
                     "late in a run is expected.")
    final = training.final_frame(history)
    finished = shown.state == "finished"
    when = "" if finished else f" at step {shown.step}"
    right.dataframe(final.assign(val_acc=_or_dash(final["val_acc"], "{:.1%}"),
                                 val_loss=_or_dash(final["val_loss"], "{:.3g}")).rename(
        columns={"val_acc": f"{'final ' * finished}val. accuracy{when}",
                 "val_loss": f"{'final ' * finished}val. loss{when}"}),
        hide_index=True)
    right.caption(f"{'Final v' if finished else 'V'}alidation accuracy and loss{when}: the means "
                  "over each scheme's runs that did not diverge"
                  + ("; — where every run diverged." if final["diverged"].any() else "."))


def _or_dash(values: pd.Series, template: str) -> pd.Series:
    # the data grid writes "None" for a missing number whatever a Styler says
    return values.map(template.format).where(values.notna(), "—")


def _mean_field_metrics(theory, reach) -> None:
    cols = st.columns(5)
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


def _phase_points(profiles: dict[str, Profile]) -> pd.DataFrame:
    return pd.DataFrame([{"scheme": name, "sigma_w2": p.theory.sigma_w2,
                          "sigma_b2": p.theory.sigma_b2, "chi1": p.theory.chi1}
                         for name, p in profiles.items() if p.theory is not None],
                        columns=["scheme", "sigma_w2", "sigma_b2", "chi1"])


def phase_view(diagram: PhaseDiagram, profiles: dict[str, Profile], schemes: list[str]) -> None:
    points = _phase_points(profiles)
    in_view = diagram.in_view(points)
    draw(charts.phase_diagram(
        diagram.grid, diagram.critical_line, points[in_view], schemes,
        title=f"Order and chaos for {diagram.activation}: χ₁ = 1 on the black line"),
        width="stretch")
    outside = ", ".join(f"{row.scheme} (σ_w² = {row.sigma_w2:.3g}, σ_b² = {row.sigma_b2:.3g})"
                        for row in points[~in_view].itertuples())
    st.caption(diagram.caption + (f" Off the map: {outside}." if outside else ""))


def jacobian_view(specs: dict[str, NetworkSpec], seed: int, device: str,
                  schemes: list[str]) -> None:
    square, refused = [], {}
    for name, spec in specs.items():
        spec = replace(spec, input_dim=spec.sizes[0])  # square: the input takes the first width
        try:
            jacobian.check(spec)
            square.append(spec)
        except InitvizError as error:
            refused.setdefault(str(error), []).append(name)
    for message, names in refused.items():  # the schemes share sizes and norm: usually one
        which = "" if len(names) == len(specs) else " for " + ", ".join(names)
        st.info(f"No Jacobian spectrum{which}: {message}.")
    if not square:
        return
    try:
        spectra = cached_jacobians(tuple(square), seed, device)
    except ServerBusy as error:
        st.info(f"No Jacobian spectrum now: {error}.")
        return
    drawn = {name: spectrum for name, spectrum in spectra.items() if spectrum.overflow is None}
    side = specs[schemes[0]].sizes[0]
    if drawn:
        values = pd.concat([spectrum.frame().assign(scheme=name) for name, spectrum in
                            drawn.items()], ignore_index=True)
        draw(charts.singular_value_histogram(
            values, [name for name in schemes if name in drawn],
            title=f"Singular values of the input–output Jacobian ({side} × {side})"),
            width="stretch")
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


def theory_section(specs: dict[str, NetworkSpec], profiles: dict[str, Profile],
                   schemes: list[str], seed: int, device: str) -> None:
    st.header("Theory", divider="gray")
    main_spec, main = specs[schemes[0]], profiles[schemes[0]]
    try:
        diagram = cached_phase_map(main_spec.activation, main.theory, main_spec.depth,
                                   main.theory_note)
    except ServerBusy as error:
        st.info(f"No phase diagram now: {error}.")
        return
    if diagram.summary is None:
        st.info(f"Mean-field theory does not describe this network: {diagram.note}. The map "
                f"shows {main_spec.activation} without normalization.")
    else:
        _mean_field_metrics(diagram.summary, diagram.reach)
        st.markdown(diagram.reach.sentence)
    left, right = st.columns(2)
    with left:
        phase_view(diagram, profiles, schemes)
    with right:
        jacobian_view(specs, seed, device, schemes)


def code_section(spec: NetworkSpec, seed: int, batch: int) -> None:
    st.header("PyTorch code", divider="gray")
    st.caption("Builds this network and initializes it exactly as above (same generator, same "
               "order): running it prints the activation std of every layer shown here.")
    st.code(pytorch_code(spec, seed=seed, batch=batch), language="python")


def _statistics_csv(profiles: dict[str, Profile]) -> str:
    return pd.concat([p.layers.assign(scheme=name) for name, p in profiles.items()],
                     ignore_index=True).to_csv(index=False)


def downloads_section(profiles: dict[str, Profile], config: dict) -> None:
    st.header("Downloads", divider="gray")
    left, right = st.columns(2)
    # The table is written when the button is pressed, not on every rerun.
    left.download_button("Per-layer statistics (CSV)", partial(_statistics_csv, profiles),
                         file_name="initviz-statistics.csv", mime="text/csv",
                         on_click="ignore")
    right.download_button("Configuration (JSON)", json.dumps(config, indent=2),
                          file_name="initviz-config.json", mime="application/json",
                          on_click="ignore")


# --------------------------------------------------------------------------------------------------
# The page


def main() -> None:
    _first_run_from_url()
    choices = sidebar()
    state = st.session_state
    problems = [state.pop("param_problem")] if "param_problem" in state else []

    st.title("initviz")
    st.caption("A neural network starts from random weights, and how large those random numbers "
               "are decides whether a signal passing through many layers fades away, blows up, "
               "or arrives intact. Choose a network and a rule for drawing its first weights (an "
               "initialization scheme, such as Kaiming's or Xavier's) and see what happens to the "
               "signal layer by layer, and whether the network then learns.")
    if state["preset"] in PRESETS:
        preset = PRESETS[state["preset"]]
        st.info(f"**{preset.title}.** {preset.story}", icon=":material/menu_book:")
    # filled last: the weight layer and the focused scheme, read from the link too, come later
    notices = st.container()

    device = resolve_device(state["device"])
    if device.notice:
        st.warning(device.notice)
    spec = network_spec(choices["scheme"], choices["params"], choices["bias"],
                        choices["bias_params"], problems)
    specs = compare_specs(spec, choices["compare"])
    schemes = list(specs)
    try:
        try:
            profiles = cached_profiles(tuple(specs.values()), state["batch"], state["seed"],
                                       device.name)
        except ServerBusy:
            raise
        except InitvizError as error:
            st.error(f"{escape(str(error))}. Showing the default network instead.")
            spec = NetworkSpec.stack(DEFAULTS["width"], DEFAULTS["depth"])
            specs, schemes = {spec.scheme: spec}, [spec.scheme]
            profiles = cached_profiles((spec,), DEFAULTS["batch"], 0, device.name)
    except ServerBusy as error:
        st.warning(f"Nothing computed: {error}.", icon=":material/hourglass_top:")
        return
    main_profile = profiles[spec.scheme]
    train_specification = train_spec(specs, device.name, problems)

    verdict_section(main_profile)
    weights_section(profiles, schemes)
    signal_section(profiles, schemes)
    training_section(train_specification, schemes)
    theory_section(specs, profiles, schemes, state["seed"], device.name)
    code_section(spec, state["seed"], state["batch"])
    downloads_section(profiles, {"network": spec.to_dict(), "compare": schemes,
                                 "seed": state["seed"], "batch": state["batch"],
                                 "device": device.name})
    link = state.pop("link", None)
    if link is not None:
        problems[:0] = url_warnings(link)
    for problem in problems:
        notices.warning(problem)

main()
