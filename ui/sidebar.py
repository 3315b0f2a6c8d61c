"""The sidebar: every control of the page, read once into a :class:`Choices` record.

Nothing below the sidebar reads ``st.session_state`` for a control: the sections get the specs
built here. A problem with a control's value (a sizes field that is not a list of numbers, a
training setting the spec refuses) becomes a sentence in ``Choices.problems`` and a safe default.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial

import streamlit as st

from initviz import training
from initviz.activations import ACTIVATIONS
from initviz.csvdata import MAX_CSV_FEATURES, MAX_CSV_ROWS, CsvProblem, csv_columns, read_csv
from initviz.datasets import DATASETS, INPUT_SCALES, MAX_SEED
from initviz.devices import DEVICE_CHOICES
from initviz.archs import ARCHS, Option
from initviz.errors import InitvizError, InvalidSpec
from initviz.network import MAX_INPUT_DIM, NORMS, NetworkSpec
from initviz.presets import PRESETS
from initviz.probe import MAX_INPUT_MEAN
from initviz.scheme_types import Param, Scheme
from initviz.schemes import BIAS_SCHEMES, SCHEMES, schemes_for
from initviz.text import escape, quote
from initviz.variants import network_for, parse_entry
from ui.links import (BOUND, DEFAULTS, MAX_PAGE_BATCH, MAX_PAGE_DEPTH, MAX_PAGE_WIDTH, binding,
                      link_default, on_arch_change, on_preset_change, refused_together)

CURVE_POINTS = 40
"""Evaluation steps per training run: the points of each training curve."""


@dataclass(frozen=True)
class Choices:
    """What the sidebar's controls chose, as the specs the sections compute from.

    ``specs`` holds the chosen scheme's network first, then each compared scheme's (the same
    network with that scheme's default parameters), by scheme name; ``training`` the training
    controls (dataset, optimizer, lr, steps, seeds) by key.
    """

    preset: str
    specs: dict[str, NetworkSpec] = field(hash=False)
    training: dict = field(hash=False)
    seed: int
    batch: int
    device: str
    problems: tuple[str, ...]
    input_mean: float = 0.0
    input_std: float = 1.0

    @property
    def spec(self) -> NetworkSpec:
        """The chosen scheme's network."""
        return next(iter(self.specs.values()))


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
                               **common, **binding(key))
    return st.number_input(label, float(param.low), float(param.high), float(default),
                           format="%.6g", **common, **binding(key))


def _on_param_change(prefix: str, scheme: Scheme) -> None:
    """A parameter changed in the sidebar: if the scheme refuses the new set of values, every
    one of its parameters goes back to its default (assigned here, in code, so Streamlit takes
    them out of the link too)."""
    state = st.session_state
    values = {p.name: state[prefix + p.name] for p in scheme.params}
    problem = refused_together(prefix, scheme, values)
    if problem:
        for name in values:
            state[prefix + name] = link_default(prefix + name)
        state["param_problem"] = problem


def _index(options, key: str) -> int:
    return list(options).index(link_default(key))


def _option_widget(name: str, option: Option):
    """The control of one architecture option, under the option's own key (its page key)."""
    label = name.replace("_", " ")
    if option.bounds is not None:
        kind = float if option.real else int  # Streamlit refuses mixed number types
        return st.number_input(label, *map(kind, option.bounds), kind(link_default(name)),
                               step=option.step, key=name, help=option.meaning or None,
                               **binding(name))
    choices = list(option.choices)
    # An option two architectures share (residual) may hold a value this one does not offer:
    # its own default then, assigned in code so the link drops the other's value too.
    if st.session_state.get(name, choices[0]) not in choices:
        st.session_state[name] = option.default
    default = link_default(name)
    return st.selectbox(label, choices, key=name, help=option.meaning or None,
                        index=choices.index(default) if default in choices else 0, **BOUND)


def _arch_controls() -> dict:
    arch = st.selectbox("architecture", list(ARCHS), key="arch", index=_index(ARCHS, "arch"),
                        on_change=on_arch_change,
                        help="; ".join(f"**{a.name}**: {a.label}, depth = {a.entry}s"
                                       for a in ARCHS.values()), **BOUND)
    return {"arch": arch, "options": {name: _option_widget(name, option)
                                      for name, option in ARCHS[arch].options.items()}}


def _network_controls() -> dict:
    st.header("Network")
    values = {
        **_arch_controls(),
        "width": st.slider("width (units per hidden layer)", 2, MAX_PAGE_WIDTH,
                           link_default("width"), key="width", **binding("width")),
        "depth": st.slider("depth (hidden layers)", 1, MAX_PAGE_DEPTH, link_default("depth"),
                           key="depth", **binding("depth")),
        "sizes": st.text_input("sizes (overrides width and depth)", link_default("sizes"),
                               key="sizes", placeholder="e.g. 64,256,128",
                               help="One width per hidden layer.", **BOUND),
        "input_dim": st.number_input(
            "input_dim", 1, MAX_INPUT_DIM, link_default("input_dim"), key="input_dim",
            help="How many numbers each input has: the size of what layer 1 reads (the probe "
                 "feeds it random numbers from N(input mean, input std²)).",
            **binding("input_dim")),
        "activation": st.selectbox("activation", list(ACTIVATIONS), key="activation",
                                   index=_index(ACTIVATIONS, "activation"), **BOUND),
        "norm": st.selectbox("norm", NORMS, key="norm", index=_index(NORMS, "norm"),
                             help="A normalization layer after each Linear.", **BOUND),
    }
    return values


def _probe_input_controls() -> dict:
    """The mean and std of the probe's random inputs."""
    help_text = ("Every number the probe feeds layer 1 is drawn from N(mean, std²). The theory "
                 "curve starts from E[x²] = mean² + std²: choose them to start at the fixed "
                 "point q* or away from it (SELU's attraction).")
    return {key: st.number_input(label, -MAX_INPUT_MEAN if key == "input_mean" else 0.0,
                                 MAX_INPUT_MEAN, float(link_default(key)), format="%.4g",
                                 key=key, help=help_text, **binding(key))
            for key, label in (("input_mean", "input mean (probe)"),
                               ("input_std", "input std (probe)"))}


def _init_controls(arch: str) -> dict:
    st.header("Initialization")
    schemes = schemes_for(arch)
    # A scheme of another architecture (delta_orthogonal after a conv stack) gives way to the
    # default, assigned in code so that the link drops it too.
    if st.session_state.get("scheme", schemes[0]) not in schemes:
        st.session_state["scheme"] = DEFAULTS["scheme"]
    chosen = st.session_state.get("scheme", link_default("scheme"))
    default = link_default("scheme")
    scheme = st.selectbox("scheme", schemes, key="scheme",
                          index=schemes.index(default) if default in schemes else 0,
                          help=SCHEMES[chosen].formula if chosen in SCHEMES else None, **BOUND)
    params = {p.name: _param_widget(p, f"{scheme}.", SCHEMES[scheme])
              for p in SCHEMES[scheme].params}
    bias = st.selectbox("bias", list(BIAS_SCHEMES), key="bias",
                        index=_index(BIAS_SCHEMES, "bias"), **BOUND)
    bias_params = {p.name: _param_widget(p, f"bias.{bias}.", BIAS_SCHEMES[bias], "bias ")
                   for p in BIAS_SCHEMES[bias].params}
    compare = _compare_control(schemes)
    seed = st.number_input("seed", 0, MAX_SEED, link_default("seed"), key="seed",
                           **binding("seed"))
    batch = st.number_input("batch", 1, MAX_PAGE_BATCH, link_default("batch"), key="batch",
                            help="Inputs per probe pass, and the mini-batch size for training.",
                            **binding("batch"))
    return {"scheme": scheme, "params": params, "bias": bias, "bias_params": bias_params,
            "compare": compare, "seed": seed, "batch": batch}


def _training_controls() -> dict:
    st.header("Training")
    return {
        "dataset": st.selectbox(
            "dataset", list(DATASETS), key="dataset", index=_index(DATASETS, "dataset"),
            help="; ".join(f"**{n}**: {d.description}" for n, d in DATASETS.items()), **BOUND),
        **_csv_controls(),
        "optimizer": st.selectbox("optimizer", training.OPTIMIZERS, key="optimizer",
                                  index=_index(training.OPTIMIZERS, "optimizer"),
                                  help="sgd; momentum = SGD with momentum 0.9; adam", **BOUND),
        "lr": st.number_input("lr (learning rate)", 1e-5, training.MAX_LR, link_default("lr"),
                              format="%.4g", key="lr", **binding("lr")),
        "steps": st.slider("steps", 10, 2000, link_default("steps"), step=10, key="steps",
                           **binding("steps")),
        "seeds": st.slider("seeds (runs per scheme)", 1, 5, link_default("seeds"), key="seeds",
                           **binding("seeds")),
        "input_scale": st.selectbox(
            "input scale", INPUT_SCALES, key="input_scale",
            index=_index(INPUT_SCALES, "input_scale"),
            help="**standardized**: every feature to mean 0, std 1 on the training split. "
                 "**unit**: raw values in [0, 1], as the PyTorch tutorials feed MNIST (digits: "
                 "pixels / 16; a 2-D set: min-max on the training split).", **BOUND),
        "dropout": st.number_input(
            "dropout (rate on hidden layers)", 0.0, training.MAX_DROPOUT,
            link_default("dropout"), step=0.05, format="%.2f", key="dropout",
            help="The share of each hidden layer's outputs zeroed at every training step (the "
                 "others scaled by 1/(1 − rate)); none at validation. Plain stack only.",
            **binding("dropout")),
        "output_init": st.selectbox(
            "output layer init", training.OUTPUT_INITS, key="output_init",
            index=_index(training.OUTPUT_INITS, "output_init"),
            help="**same**: the run's scheme, like the hidden layers. **zeros**: weight and bias "
                 "0, a uniform first prediction (initial loss exactly ln C). **scaled**: the "
                 "run's scheme × the output scale below.", **BOUND),
        "output_scale": st.number_input(
            "output scale (for scaled)", 1e-4, training.MAX_OUTPUT_SCALE,
            link_default("output_scale"), format="%.4g", key="output_scale",
            disabled=st.session_state.get("output_init", link_default("output_init"))
            != "scaled", **binding("output_scale")),
    }


def _csv_controls() -> dict:
    """Your own data: a CSV uploaded into this session, and its label column.

    ``csv`` is the checked :class:`~initviz.csvdata.CsvData` (None without a file or with a bad
    one) and ``csv_problem`` the sentence that says why a file is not used. The file lives in
    this session's uploader only; the parse is kept in the session by content hash and label,
    as reading 1 MB takes most of a second. Neither the file nor the label can be in a link.
    """
    upload = st.file_uploader(
        "your own data (CSV, instead of the dataset)", type=["csv"], key="csv_file",
        max_upload_size=1,
        help=f"A header row, numeric feature columns and one label column; at most 1 MB, "
             f"{MAX_CSV_ROWS:,} rows and {MAX_CSV_FEATURES} features. It stays in this session: "
             "a link cannot carry it and opens on the dataset above.")
    if upload is None:
        return {"csv": None, "csv_problem": None}
    raw = upload.getvalue()
    columns = csv_columns(raw)
    label = st.selectbox("label column", columns, index=len(columns) - 1, key="csv_label",
                         help="The classes to predict; every other column is a feature."
                         ) if columns else None
    key = (hashlib.sha256(raw).hexdigest(), label)
    cached = st.session_state.get("csv_parsed")
    if cached is None or cached[0] != key:
        try:
            cached = (key, read_csv(raw, label), None)
        except CsvProblem as error:
            cached = (key, None, f"Your CSV {quote(upload.name)} is not used, the race trains "
                                 f"on the dataset instead: {escape(str(error))}")
        st.session_state["csv_parsed"] = cached
    return {"csv": cached[1], "csv_problem": cached[2]}


def sidebar() -> Choices:
    """Draw every control; return what they chose."""
    with st.sidebar:
        # Bound selectboxes show raw names: the URL carries what the option displays.
        preset = st.selectbox(
            "Preset", ["none", *PRESETS], key="preset", on_change=on_preset_change,
            help="The classic results of the literature, one click each: "
                 + "; ".join(f"**{name}**: {p.title}" for name, p in PRESETS.items()), **BOUND)
        network = _network_controls() | _probe_input_controls()
        init = _init_controls(network["arch"])
        train = _training_controls()
        st.header("Compute")
        device = st.selectbox("device", DEVICE_CHOICES, key="device",
                              index=_index(DEVICE_CHOICES, "device"), **BOUND)
    state = st.session_state
    problems = [state.pop("param_problem")] if "param_problem" in state else []
    spec = network_spec(network, init, problems)
    specs = compare_specs(spec, init["compare"], problems)
    return Choices(preset=preset, specs=specs, training=train, seed=init["seed"],
                   batch=init["batch"], device=device, problems=tuple(problems),
                   input_mean=network["input_mean"], input_std=network["input_std"])


def _main_entry(spec: NetworkSpec) -> tuple[str, tuple]:
    """The chosen scheme as a race entry: its name and its parameters (the compared entries are
    their texts, which also carry the architecture options they set)."""
    return spec.scheme, spec.scheme_params


def train_spec(choices: Choices, device: str) -> tuple[training.TrainSpec | None, str | None]:
    """The training race of these choices on ``device`` (a resolved device name), or None and
    the sentence that says which setting the race refuses; with a race, the sentence that says
    why an uploaded CSV is not used, if one is not."""
    settings = choices.training
    try:
        return training.TrainSpec(
            network=choices.spec,
            schemes=(_main_entry(choices.spec), *list(choices.specs)[1:]),
            seeds=settings["seeds"], seed=choices.seed, dataset=settings["dataset"],
            optimizer=settings["optimizer"], lr=settings["lr"], steps=settings["steps"],
            batch=min(choices.batch, training.MAX_BATCH),
            eval_every=max(1, settings["steps"] // CURVE_POINTS), device=device,
            input_scale=settings["input_scale"], dropout=settings["dropout"],
            output_init=settings["output_init"], output_scale=settings["output_scale"],
            data=settings["csv"]), settings["csv_problem"]
    except InitvizError as error:
        return None, f"Training is off until this is fixed: {escape(str(error))}."


def network_spec(network: dict, init: dict, problems: list[str]) -> NetworkSpec:
    """The chosen scheme's network; a refused sizes field adds a sentence to ``problems`` and
    gives way to width × depth."""
    common = dict(input_dim=network["input_dim"], activation=network["activation"],
                  scheme=init["scheme"], scheme_params=init["params"], bias=init["bias"],
                  bias_params=init["bias_params"], norm=network["norm"])
    sizes_text = network["sizes"].strip()
    sizes = (network["width"],) * network["depth"]
    if sizes_text:
        given, problem = _sizes(sizes_text)
        if given:
            sizes = given
        else:
            problems.append(f"The sizes field {quote(sizes_text)} {problem}, so the network uses "
                            "width × depth instead.")
    try:
        return NetworkSpec(sizes=sizes, arch=network["arch"], arch_params=network["options"],
                           **common)
    except InvalidSpec as error:
        label = ARCHS[network["arch"]].label
        problems.append(f"The {escape(label)} cannot be built from these settings: "
                        f"{escape(str(error))}. The page shows the plain stack (mlp) instead.")
        return NetworkSpec(sizes=sizes, **common)


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


def compare_specs(main: NetworkSpec, compare: list[str],
                  problems: list[str]) -> dict[str, NetworkSpec]:
    """The chosen scheme with its parameters, then each compared entry (a scheme with its
    defaults, or a variant ``SCHEME(KEY=VALUE,...)`` that sets scheme parameters and architecture
    options) by its text, once per network; an entry the network refuses adds a sentence to
    ``problems``."""
    specs = {main.scheme: main}
    for entry in compare:
        if entry in specs:
            continue
        try:
            spec = network_for(main, *parse_entry(entry))
        except InvalidSpec as error:
            problems.append(f"The compared entry {quote(entry)} is left out: {escape(str(error))}.")
            continue
        # An entry that builds a network already shown (xavier_normal(ln=pre) beside the chosen
        # xavier_normal with ln pre) would draw and train the same runs twice under two names.
        if spec not in specs.values():
            specs[entry] = spec
    return specs


def _is_entry(text: str) -> bool:
    try:
        parse_entry(text)
    except InvalidSpec:
        return False
    return True


def _compare_control(schemes: list[str]) -> list[str]:
    """The compared entries: scheme names, and the variants added below the box."""
    state = st.session_state
    given = [*link_default("compare"), *state.get("compare", ()), *state.get("variants", ()),
             *state.get("link", {}).get("raw", {}).get("compare", ())]
    # A variant from the link, a preset or the add box is one of the offered entries, so the
    # bound control takes it from the link like a scheme name; text that is no entry at all
    # (an unknown name) is not, so Streamlit drops it and the link warning names it.
    options = list(dict.fromkeys([*schemes, *filter(_is_entry, given)]))
    compare = st.multiselect("compare (drawn and trained side by side)", options,
                             default=link_default("compare"), key="compare", **BOUND)
    st.text_input("add a variant", key="variant", on_change=_add_variant,
                  placeholder="e.g. uniform(a=0,b=1)",
                  help="A scheme with its own parameters, added to compare when you press "
                       "Enter: `uniform(a=-0.5,b=0.5)`, `kaiming_normal(mode=fan_out)`; a key "
                       "may also be an option of the architecture: "
                       "`kaiming_normal(residual=fixup)`.")
    return compare


def _add_variant() -> None:
    """The add box's entry joins the compared ones; one that does not parse stays in the box,
    with the sentence that says why."""
    state = st.session_state
    text = "".join(state["variant"].split())
    if not text:
        return
    try:
        parse_entry(text)
    except InvalidSpec as error:
        state["param_problem"] = f"The variant {quote(text)} was not added: {escape(str(error))}."
        return
    state["variants"] = [*state.get("variants", ()), text]
    if text not in state.get("compare", ()):
        state["compare"] = [*state.get("compare", ()), text]
    state["variant"] = ""


__all__ = ["CURVE_POINTS", "Choices", "compare_specs", "network_spec", "sidebar", "train_spec"]
