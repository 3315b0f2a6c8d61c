"""The page's link: every control's value in the URL, presets, and what a link may not set.

Every sidebar control, the weight histogram's layer, the focused scheme and the open section are
bound to the URL (``bind="query-params"``) under their widget keys, so a view is shared by sharing
its link. Streamlit itself drops a bad or out-of-range URL value and falls back to the control's
default (the preset's value where the link names a preset); this page refuses a few more (see
_link_check) and names each such value in a warning, escaped for Markdown (initviz.text).

A query string of more than about 128,000 characters (measured on loopback) never reaches the
page: the HTTP server Streamlit 1.67 runs (uvicorn with h11) resets the connection ("Invalid HTTP
request received."), and Streamlit offers no setting for that limit.
"""

from __future__ import annotations

import math

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.state.query_params import (CLIENT_STATE_QUERY_STRING_MAX_FIELDS,
                                                  CLIENT_STATE_QUERY_STRING_MAX_LENGTH)

from initviz.archs import ARCHS
from initviz.errors import InvalidSpec
from initviz.presets import PRESETS, SECTIONS
from initviz.scheme_types import Scheme
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
    "input_mean": 0.0, "input_std": 1.0, "input_scale": "standardized", "dropout": 0.0,
    "output_init": "same", "output_scale": 0.01,
    "section": SECTIONS[1],
    "arch": "mlp",
}
# Each architecture option under its own key; an option two architectures share (residual) has
# one default.
DEFAULTS |= {name: option.default for arch in ARCHS.values()
             for name, option in arch.options.items()}
BOUND = {"bind": "query-params"}
PRESENT = "present"
"""The link parameter of presenter mode (``?present=1``): not a control, read by the page."""

# Presets, link defaults and bad values
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
VIEW_KEYS = ("weight_layer", "focus_scheme")  # bound too, chosen in their sections
NOT_SET_BY_PRESETS = ("preset", "seed", "device", "batch")
# Streamlit ignores a whole query string past these limits (runtime/state/query_params.py)
MAX_LINK_PARAMETERS = CLIENT_STATE_QUERY_STRING_MAX_FIELDS
MAX_LINK_CHARACTERS = CLIENT_STATE_QUERY_STRING_MAX_LENGTH


ARCH_PAGE_KEYS = tuple(sorted({key for arch in ARCHS.values() for key in arch.page_values}))
"""The controls whose defaults follow the architecture (its ``page_values``)."""


def _arch_defaults(arch: str) -> dict:
    """The page's defaults under the architecture ``arch``."""
    return {**DEFAULTS, **ARCHS[arch].page_values}


def _preset_values(name: str) -> dict:
    """Every control a preset decides: its own values, and for the controls it does not mention
    their defaults (under its architecture), so presets do not mix."""
    preset = PRESETS[name]
    defaults = _arch_defaults(preset.values.get("arch", DEFAULTS["arch"]))
    reset = {k: v for k, v in defaults.items() if k not in NOT_SET_BY_PRESETS}
    return {**reset, **PARAM_DEFAULTS, **preset.values, "section": preset.section}


def _current_arch(preset: str | None) -> str:
    """The architecture the page shows or is about to: the control's, else the link's, else the
    preset's, else the default."""
    state = st.session_state
    if state.get("arch") in ARCHS:
        return state["arch"]
    given = state.get("link", {}).get("raw", {}).get("arch", [None])[-1]
    if given in ARCHS:
        return given
    return PRESETS[preset].values.get("arch", DEFAULTS["arch"]) if preset in PRESETS \
        else DEFAULTS["arch"]


def link_default(key: str):
    """What control ``key`` shows when the link leaves it out, under the active preset and
    architecture."""
    state = st.session_state
    # before the preset control is drawn on a session's first run, the link names the preset
    preset = state["preset"] if "preset" in state else state.get("link", {}).get("preset")
    if preset in PRESETS and key in _preset_values(preset):
        return _preset_values(preset)[key]
    if key in ARCH_PAGE_KEYS:
        return _arch_defaults(_current_arch(preset))[key]
    return DEFAULTS[key] if key in DEFAULTS else PARAM_DEFAULTS[key]


def on_arch_change() -> None:
    """The controls whose defaults follow the architecture take the new one's (a size that fits
    the memory budget, a data set it reads), assigned in code so the link follows."""
    for key in ARCH_PAGE_KEYS:
        st.session_state[key] = link_default(key)


def apply_preset(name: str, skip: set[str] = frozenset()) -> None:
    for key, value in _preset_values(name).items():
        if key not in skip:
            st.session_state[key] = value


def step_preset(step: int) -> None:
    """Open the preset ``step`` places on in the list (presenter mode's N and P), round the end;
    from "none", the first or the last."""
    names = list(PRESETS)
    current = st.session_state.get("preset")
    index = names.index(current) + step if current in names else 0 if step > 0 else -1
    st.session_state["preset"] = names[index % len(names)]
    apply_preset(st.session_state["preset"])


def on_preset_change() -> None:
    """Apply the chosen preset; with "none", keep every value but assign it again.

    The controls' defaults change with the preset, and Streamlit rewrites a bound control's
    parameter against its new default only for a value assigned in code: a depth of 30 left by
    he2015 must enter the link once "none" makes 20 the default.
    """
    name = st.session_state["preset"]
    if name in PRESETS:
        apply_preset(name)
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


def read_link() -> None:
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
        apply_preset(preset, skip=set(raw))
    problems = link["problems"] = []
    for prefix, scheme in _link_schemes(raw):
        given = {p.name: raw[prefix + p.name][-1] for p in scheme.params
                 if prefix + p.name in raw and prefix + p.name not in rejected}
        problem = refused_together(prefix, scheme, _with_defaults(prefix, scheme, given))
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


def binding(key: str) -> dict:
    """Bound to the URL, except on the run that refused this control's value from the link.

    Deleting a parameter does not reach Streamlit's first seeding of a bound control, so the
    control is left unbound for that run (its identity is its key, so nothing else changes) and
    takes its default.
    """
    return {} if key in st.session_state.get("link", {}).get("rejected", ()) else BOUND


def view_default(key: str, valid: list, default):
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


def shown(value) -> str:
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


def link_problems() -> list[str]:
    """On a session's first run, once every control is drawn: one sentence per link parameter
    the page did not take as given (:func:`url_warnings`); later runs, none."""
    link = st.session_state.pop("link", None)
    return [] if link is None else url_warnings(link)


def url_warnings(link: dict) -> list[str]:
    """One sentence per link parameter the page did not take as given, saying what it shows."""
    if link["ignored"]:
        return [link["ignored"]]
    state, problems = st.session_state, list(link["problems"])
    for key, values in link["raw"].items():
        if key == PRESENT or (key in VIEW_KEYS and key not in state):
            continue  # presenter mode, or the control of a tab that is not open
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
                            f"{escape(shown(state[key]))}{_whose(key, state[key])} instead.")
    return problems




def refused_together(prefix: str, scheme: Scheme, values: dict) -> str | None:
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
    return ", ".join(f"{name} = {escape(shown(value))}" for name, value in values.items())


__all__ = ["BOUND", "DEFAULTS", "MAX_PAGE_BATCH", "MAX_PAGE_DEPTH", "MAX_PAGE_WIDTH", "PRESENT",
           "apply_preset", "binding", "link_default", "link_problems", "on_preset_change",
           "read_link", "step_preset",
           "refused_together", "shown", "url_warnings", "view_default"]
