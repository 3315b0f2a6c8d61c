"""initviz: the page. Widgets -> specs -> initviz -> charts. Layout and widgets only, no maths.

Every sidebar control is bound to the URL (``bind="query-params"``) under its DESIGN.md key, so a
view is shared by sharing its link. Streamlit itself drops a bad or out-of-range URL value and
falls back to the default; this page names each such value in a warning.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from initviz import charts, jacobian, probe, report, training
from initviz.activations import ACTIVATIONS
from initviz.cache import computed, finished_trainings, server_ledger
from initviz.codegen import pytorch_code
from initviz.datasets import DATASETS
from initviz.devices import DEVICE_CHOICES, limit_threads, resolve_device
from initviz.errors import InitvizError, ServerBusy
from initviz.jacobian import JacobianSpectrum
from initviz.network import MAX_INPUT_DIM, NORMS, NetworkSpec, estimate_bytes, peak_bytes
from initviz.presets import PRESETS
from initviz.probe import Profile
from initviz.schemes import BIAS_SCHEMES, SCHEMES, Param
from initviz.theory import MeanField, PhaseDiagram, phase_map

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
TRAIN_SLICE_SECONDS = 0.3   # compute per redraw, so the page stays responsive
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
# The URL: presets and bad values


def _apply_preset(name: str, skip: set[str] = frozenset()) -> None:
    preset = PRESETS.get(name)
    if preset is None:
        return
    for key, value in {**_preset_reset(), **preset.values}.items():
        if key not in skip:
            st.session_state[key] = value


def _preset_reset() -> dict:
    """Controls a preset does not mention go back to their defaults, so presets do not mix."""
    return {k: v for k, v in DEFAULTS.items() if k not in ("preset", "seed", "device", "batch")}


def _on_preset_change() -> None:
    _apply_preset(st.session_state["preset"])


def _first_run_from_url() -> dict[str, list[str]] | None:
    """On a session's first run: the link's parameters, with its preset applied. Later: None."""
    if "url_read" in st.session_state:
        st.session_state.pop("unreadable_in_url", None)
        return None
    st.session_state["url_read"] = True
    raw = {key: st.query_params.get_all(key) for key in st.query_params}
    unreadable = {key for key, values in raw.items()
                  if any(_non_finite_number(value) for value in values)}
    for key in unreadable:
        del st.query_params[key]  # no control takes inf or NaN: off the link, warned about below
    st.session_state["unreadable_in_url"] = unreadable
    preset = raw.get("preset", ["none"])[-1]
    if preset in PRESETS:
        _apply_preset(preset, skip=set(raw))
    return raw


def _number_binding(key: str) -> dict:
    """Bound to the URL, except on the first run of a link that gave this input inf or NaN.

    Streamlit (1.67) seeds a bound integer input from the link as the session opens and crashes
    converting inf to an integer; deleting the parameter does not reach that first seeding, so
    the input is left unbound for that one run (its identity is its key, so nothing else
    changes) and takes its default.
    """
    return {} if key in st.session_state.get("unreadable_in_url", ()) else BOUND


def _non_finite_number(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _matches(raw: list[str], value) -> bool:
    if isinstance(value, list):
        return [str(v) for v in value] == raw
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return raw == [str(value)]
    try:
        return len(raw) == 1 and math.isclose(float(raw[0]), float(value), rel_tol=1e-9)
    except ValueError:
        return False


def url_warnings(raw: dict[str, list[str]], known_keys: set[str]) -> list[str]:
    problems = []
    for key, values in raw.items():
        shown = values[0] if len(values) == 1 else values
        if key not in known_keys:
            problems.append(f"`{key}` is not a parameter of this page; it was ignored.")
        elif key in st.session_state and not _matches(values, st.session_state[key]):
            problems.append(f"`{key}={shown}` is not a valid value; using "
                            f"`{st.session_state[key]}` instead.")
    return problems


# --------------------------------------------------------------------------------------------------
# Sidebar


def _param_widget(param: Param, key: str, label_prefix: str = ""):
    label = f"{label_prefix}{param.name}"
    if param.choices:
        return st.selectbox(label, param.choices, index=param.choices.index(param.default),
                            key=key, help=param.doc or None, **BOUND)
    if param.integer:
        return st.number_input(label, int(param.low), int(param.high), int(param.default),
                               step=1, key=key, help=param.doc or None, **_number_binding(key))
    return st.number_input(label, float(param.low), float(param.high), float(param.default),
                           format="%.6g", key=key, help=param.doc or None,
                           **_number_binding(key))


def sidebar() -> dict:
    with st.sidebar:
        # Bound selectboxes show raw names: the URL carries what the option displays.
        st.selectbox("Preset", ["none", *PRESETS], key="preset", on_change=_on_preset_change,
                     help="The classic results of the literature, one click each: "
                     + "; ".join(f"**{name}**: {p.title}" for name, p in PRESETS.items()),
                     **BOUND)
        st.header("Network")
        st.slider("width (units per hidden layer)", 2, MAX_PAGE_WIDTH, DEFAULTS["width"],
                  key="width", **BOUND)
        st.slider("depth (hidden layers)", 1, MAX_PAGE_DEPTH, DEFAULTS["depth"], key="depth",
                  **BOUND)
        st.text_input("sizes (overrides width and depth)", DEFAULTS["sizes"], key="sizes",
                      placeholder="e.g. 64,256,128", help="One width per hidden layer.",
                      **BOUND)
        st.number_input("input_dim", 1, MAX_INPUT_DIM, DEFAULTS["input_dim"], key="input_dim",
                        help="Size of the input to layer 1 (probe inputs are N(0, 1)).",
                        **_number_binding("input_dim"))
        st.selectbox("activation", list(ACTIVATIONS), key="activation",
                     index=list(ACTIVATIONS).index(DEFAULTS["activation"]), **BOUND)
        st.selectbox("norm", NORMS, key="norm", help="A normalization layer after each Linear.",
                     **BOUND)
        st.header("Initialization")
        scheme = st.selectbox("scheme", list(SCHEMES), key="scheme",
                              index=list(SCHEMES).index(DEFAULTS["scheme"]),
                              help=SCHEMES[st.session_state.get("scheme", DEFAULTS["scheme"])
                                           ].formula, **BOUND)
        params = {p.name: _param_widget(p, f"{scheme}.{p.name}") for p in SCHEMES[scheme].params}
        bias = st.selectbox("bias", list(BIAS_SCHEMES), key="bias", **BOUND)
        bias_params = {p.name: _param_widget(p, f"bias.{bias}.{p.name}", "bias ")
                       for p in BIAS_SCHEMES[bias].params}
        compare = st.multiselect("compare (drawn and trained side by side)", list(SCHEMES),
                                 default=DEFAULTS["compare"], key="compare", **BOUND)
        st.number_input("seed", 0, 2**31 - 1, DEFAULTS["seed"], key="seed",
                        **_number_binding("seed"))
        st.number_input("batch", 1, MAX_PAGE_BATCH, DEFAULTS["batch"], key="batch",
                        help="Inputs per probe pass, and the mini-batch size for training.",
                        **_number_binding("batch"))
        training_sidebar()
        st.header("Compute")
        st.selectbox("device", DEVICE_CHOICES, key="device", **BOUND)
    return {"scheme": scheme, "params": params, "bias": bias, "bias_params": bias_params,
            "compare": compare}


def training_sidebar() -> None:
    st.header("Training")
    st.selectbox("dataset", list(DATASETS), key="dataset",
                 help="; ".join(f"**{n}**: {d.description}" for n, d in DATASETS.items()),
                 **BOUND)
    st.selectbox("optimizer", training.OPTIMIZERS, key="optimizer",
                 help="sgd; momentum = SGD with momentum 0.9; adam", **BOUND)
    st.number_input("lr (learning rate)", 1e-5, training.MAX_LR, DEFAULTS["lr"], format="%.4g",
                    key="lr", **_number_binding("lr"))
    st.slider("steps", 10, 2000, DEFAULTS["steps"], step=10, key="steps", **BOUND)
    st.slider("seeds (runs per scheme)", 1, 5, DEFAULTS["seeds"], key="seeds", **BOUND)


# --------------------------------------------------------------------------------------------------
# Specs from widgets


def network_spec(scheme: str, params: dict, bias: str, bias_params: dict,
                 problems: list[str]) -> NetworkSpec:
    state = st.session_state
    common = dict(input_dim=state["input_dim"], activation=state["activation"], scheme=scheme,
                  scheme_params=params, bias=bias, bias_params=bias_params, norm=state["norm"])
    sizes_text = state["sizes"].strip()
    if sizes_text:
        try:
            return NetworkSpec(sizes=tuple(int(s) for s in sizes_text.split(",") if s.strip()),
                               **common)
        except (ValueError, InitvizError) as error:
            problems.append(f"sizes `{sizes_text}`: {error}. Using width × depth instead.")
    return NetworkSpec.stack(state["width"], state["depth"], **common)


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
        layer = st.slider("layer", 1, depth, min(2, depth), key="weight_layer") if depth > 1 else 1
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
        st.dataframe(report.weight_table(main), hide_index=True)


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
    focus = st.segmented_control("Distribution of", schemes, default=schemes[0],
                                 key="focus_scheme", required=True) or schemes[0]
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
        draw(charts.fractions_by_layer(
            report.fractions_frame(profiles), schemes,
            title=f"Saturated and dead units per layer ({main.spec.activation})"),
            key="fractions")
    with right:
        draw(charts.by_layer(
            report.by_layer_frame(profiles, "grad_to_weight_ratio"),
            "‖dL/dW‖ / ‖W‖ (log)", schemes,
            title="Backward: gradient-to-weight ratio per layer"), key="ratio")
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
        problems.append(f"training: {error}")
        return None


def _start_training(spec: training.TrainSpec) -> None:
    try:
        stream = training.stream(spec)
        release = server_ledger().reserve("this training run", stream.needed_bytes, stream)
    except InitvizError as error:
        st.session_state["train_job"] = {"spec": spec, "error": str(error)}
        return
    st.session_state["train_job"] = {
        "spec": spec, "stream": iter(stream), "release": release, "device": stream.device,
        "notice": stream.device_notice, "records": [], "step": 0, "seconds": 0.0,
        "done": False, "stopped": False}


def _end(job: dict, **outcome) -> None:
    job["stream"].close()
    job["release"]()
    job.update(done=True, **outcome)


def _stop_training() -> None:
    job = st.session_state.get("train_job")
    if job and not job.get("done", True):
        _end(job, stopped=True)


def _advance(job: dict) -> None:
    """Train for one time slice; on the last checkpoint, publish the result to every session."""
    started = time.perf_counter()
    while not job["done"] and time.perf_counter() - started < TRAIN_SLICE_SECONDS:
        checkpoint = next(job["stream"], None)
        if checkpoint is None:
            _end(job)
            finished_trainings().put(job["spec"], {k: job[k] for k in (
                "records", "device", "notice", "seconds", "step")})
            break
        job["records"].extend(checkpoint.records)
        job["step"], job["seconds"] = checkpoint.step, checkpoint.seconds


def training_section(spec: training.TrainSpec | None, schemes: list[str]) -> None:
    st.header("Training", divider="gray")
    if spec is None:
        st.info("Fix the training settings above to train.")
        return
    info = DATASETS[spec.dataset]
    st.caption(f"{len(spec.schemes)} schemes × {spec.seeds} seeds on **{spec.dataset}** "
               f"({info.description}; {info.n_classes} classes), {spec.optimizer}, lr "
               f"{spec.lr:g}, {spec.steps} steps of {spec.batch}. Every run sees the same "
               "batches in the same order; the band spans the seeds.")
    job = st.session_state.get("train_job")
    if job is not None and job["spec"] != spec:
        _stop_training()
        job = None
    cached = finished_trainings().get(spec)
    running = job is not None and not job.get("done", True)
    left, right, _ = st.columns([1, 1, 6])
    left.button("Train", type="primary", disabled=running, on_click=_start_training,
                args=(spec,), key="train_button")
    right.button("Stop", disabled=not running, on_click=_stop_training, key="stop_button")
    training_live(spec, schemes, cached)


def _training_fragment_interval() -> float | None:
    job = st.session_state.get("train_job")
    return TRAIN_REDRAW_SECONDS if job is not None and not job.get("done", True) else None


def training_live(spec: training.TrainSpec, schemes: list[str], cached: dict | None) -> None:
    @st.fragment(run_every=_training_fragment_interval())
    def live() -> None:
        job = st.session_state.get("train_job")
        if job is not None and job["spec"] == spec and "error" in job:
            st.error(job["error"])
            return
        mine = job is not None and job["spec"] == spec
        shown = job if mine else cached
        if shown is None:
            st.info("Press **Train** to train every scheme on the same data, side by side.")
            return
        training_view(spec, schemes, shown)
        # Train after drawing: the charts on screen stay current while the next slice runs.
        if mine and not job["done"]:
            _advance(job)
            if job["done"]:
                st.rerun()  # the whole page, to stop this fragment's timer and free the buttons

    live()


def training_view(spec: training.TrainSpec, schemes: list[str], shown: dict) -> None:
    if shown.get("notice"):
        st.warning(shown["notice"])
    status = ("stopped" if shown.get("stopped") else
              "training" if not shown.get("done", True) else
              "finished" if shown["step"] == spec.steps else
              "ended early, every run diverged")
    st.progress(shown["step"] / spec.steps,
                text=f"{status}: step {shown['step']} of {spec.steps}, "
                     f"{shown['seconds']:.1f} s on {shown['device']}")
    history = training.history_frame(shown["records"])
    if history.empty:
        return
    left, right = st.columns(2)
    draw(where=left, figure=charts.training_curves(
        history, schemes, metric="train_loss", log=True, total_steps=spec.steps,
        title="Training loss (mean over seeds; band: min to max)"), key="train_loss")
    draw(where=right, figure=charts.training_curves(
        history, schemes, metric="val_acc", total_steps=spec.steps,
        title=f"Validation accuracy (chance: {1 / DATASETS[spec.dataset].n_classes:.0%})"),
        key="val_acc")
    layers = training.layer_frame(shown["records"])
    latest = layers[layers["step"] == layers["step"].max()]
    ratio = latest.groupby(["scheme", "layer"], as_index=False)["update_ratio"].mean()
    draw(where=left, figure=charts.by_layer(
        ratio.assign(source="measured").rename(columns={"update_ratio": "value"}),
        "‖ΔW‖ / ‖W‖ per update (log)", schemes,
        title=f"Update-to-weight ratio at step {int(latest['step'].max())} (≈1e-3 is healthy)"),
        key="update_ratio")
    left.caption("‖ΔW‖ / ‖W‖ of the last update, mean over seeds; the last layer is the output "
                 "layer. Much below 1e-3 a layer barely learns; much above, it is being "
                 "overwritten (Karpathy, CS231n).")
    final = training.final_frame(history)
    right.dataframe(final.assign(val_acc=_or_dash(final["val_acc"], "{:.1%}"),
                                 val_loss=_or_dash(final["val_loss"], "{:.3g}")).rename(
        columns={"val_acc": "final val. accuracy", "val_loss": "final val. loss"}),
        hide_index=True)
    right.caption("Final values: the means over each scheme's runs that did not diverge"
                  + ("; — where every run diverged." if final["diverged"].any() else "."))


def _or_dash(values: pd.Series, template: str) -> pd.Series:
    # the data grid writes "None" for a missing number whatever a Styler says
    return values.map(template.format).where(values.notna(), "—")


def _mean_field_metrics(theory, reach) -> None:
    cols = st.columns(4)
    cols[0].metric("σ_w² · σ_b²", f"{theory.sigma_w2:.3g} · {theory.sigma_b2:.3g}",
                   help="σ_w² = fan_in · Var(W) and σ_b² = Var(b), from the scheme and the bias")
    cols[1].metric("fixed point q*", "diverges" if theory.q_star is None else
                   f"{theory.q_star:.3g}", help="the pre-activation variance deep layers settle at")
    cols[2].metric("χ₁", f"{theory.chi1:.3g}", help="σ_w² E[φ'(√q* z)²]: < 1 ordered "
                   "(gradients vanish), > 1 chaotic (gradients explode)")
    # the ξ_c of the sentence below the metrics: on the chaotic side it comes from c*, not χ₁
    xi = reach.depth_scale
    cols[3].metric("depth scale ξ_c", f"{xi:.3g} layers" if xi is not None else
                   "∞" if theory.phase == "critical" else "none",
                   help="Ordered phase: −1/ln χ₁, over which correlations between inputs fade. "
                        "Chaotic phase: −1/ln χ_c, the slope of the correlation map at its fixed "
                        "point c* < 1, over which nearby inputs come apart. About 6 ξ_c layers "
                        "can be trained (Schoenholz et al. 2017).")


def _phase_points(profiles: dict[str, Profile]) -> pd.DataFrame:
    return pd.DataFrame([{"scheme": name, "sigma_w2": p.theory.sigma_w2,
                          "sigma_b2": p.theory.sigma_b2, "chi1": p.theory.chi1}
                         for name, p in profiles.items() if p.theory is not None],
                        columns=["scheme", "sigma_w2", "sigma_b2", "chi1"])


def phase_view(diagram: PhaseDiagram, profiles: dict[str, Profile], schemes: list[str]) -> None:
    points = _phase_points(profiles)
    in_view = (points["sigma_w2"] <= diagram.grid["sigma_w2"].max()) & (
        points["sigma_b2"] <= diagram.grid["sigma_b2"].max())
    draw(charts.phase_diagram(
        diagram.grid, diagram.critical_line, points[in_view], schemes,
        title=f"Order and chaos for {diagram.activation}: χ₁ = 1 on the black line"),
        width="stretch")
    outside = ", ".join(f"{row.scheme} (σ_w² = {row.sigma_w2:.3g}, σ_b² = {row.sigma_b2:.3g})"
                        for row in points[~in_view].itertuples())
    st.caption("Blue: ordered (χ₁ < 1, signals and gradients fade); orange: chaotic (χ₁ > 1, "
               "nearby inputs fly apart, gradients explode)."
               + (f" Off the map: {outside}." if outside else ""))


def jacobian_view(specs: dict[str, NetworkSpec], seed: int, device: str,
                  schemes: list[str]) -> None:
    square, refused = [], []
    for name, spec in specs.items():
        spec = replace(spec, input_dim=spec.sizes[0])  # square: the input takes the first width
        try:
            jacobian.check(spec)
            square.append(spec)
        except InitvizError as error:
            refused.append(f"{name}: {error}")
    for message in dict.fromkeys(refused):
        st.info(f"No Jacobian spectrum for {message}")
    if not square:
        return
    try:
        spectra = cached_jacobians(tuple(square), seed, device)
    except ServerBusy as error:
        st.info(f"No Jacobian spectrum now: {error}.")
        return
    values = pd.concat([spectrum.frame().assign(scheme=name) for name, spectrum in
                        spectra.items()], ignore_index=True)
    side = specs[schemes[0]].sizes[0]
    draw(charts.singular_value_histogram(
        values, schemes, title=f"Singular values of the input–output Jacobian ({side} × {side})"),
        width="stretch")
    for name, spectrum in spectra.items():
        st.markdown(f"**{name}**: {spectrum.reading}")
    st.caption("J = ∂(last hidden activation)/∂(input) at one N(0, I) input of a square network "
               f"(input size = first width, {side}); all s ≈ 1 is dynamical isometry: signals "
               "and gradients keep their size and shape through any depth (Saxe et al. 2014; "
               "Pennington et al. 2017).")


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
    raw_url = _first_run_from_url()
    choices = sidebar()
    state = st.session_state
    bound_keys = set(DEFAULTS) | {
        k for k in state if isinstance(k, str) and "." in k}
    problems = url_warnings(raw_url, bound_keys) if raw_url else []

    st.title("initviz")
    st.caption("What weight initialization does to a deep network: the weights it draws, the "
               "signal it lets through, and whether the network then learns.")
    if state["preset"] in PRESETS:
        preset = PRESETS[state["preset"]]
        st.info(f"**{preset.title}.** {preset.story}", icon=":material/menu_book:")

    device = resolve_device(state["device"])
    if device.notice:
        st.warning(device.notice)
    spec = network_spec(choices["scheme"], choices["params"], choices["bias"],
                        choices["bias_params"], problems)
    for problem in problems:
        st.warning(f"From the link or the sizes field: {problem}")
    shown_problems = list(problems)

    specs = compare_specs(spec, choices["compare"])
    schemes = list(specs)
    try:
        try:
            profiles = cached_profiles(tuple(specs.values()), state["batch"], state["seed"],
                                       device.name)
        except ServerBusy:
            raise
        except InitvizError as error:
            st.error(f"{error}. Showing the default network instead.")
            spec = NetworkSpec.stack(DEFAULTS["width"], DEFAULTS["depth"])
            specs, schemes = {spec.scheme: spec}, [spec.scheme]
            profiles = cached_profiles((spec,), DEFAULTS["batch"], 0, device.name)
    except ServerBusy as error:
        st.warning(f"Nothing computed: {error}.", icon=":material/hourglass_top:")
        return
    main_profile = profiles[spec.scheme]
    train_specification = train_spec(specs, device.name, problems)
    for problem in problems[len(shown_problems):]:
        st.warning(problem)

    verdict_section(main_profile)
    weights_section(profiles, schemes)
    signal_section(profiles, schemes)
    training_section(train_specification, schemes)
    theory_section(specs, profiles, schemes, state["seed"], device.name)
    code_section(spec, state["seed"], state["batch"])
    downloads_section(profiles, {"network": spec.to_dict(), "compare": schemes,
                                 "seed": state["seed"], "batch": state["batch"],
                                 "device": device.name})


main()
