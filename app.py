"""initviz: the page. Widgets -> specs -> initviz -> charts. Layout and widgets only, no maths.

The page reads as its outline (:func:`main`): the link, the sidebar, the story and the verdict,
then one tab per section, of which only the open one is computed and drawn. The parts live in
``ui/``: the link and presets (``ui/links.py``), the sidebar (``ui/sidebar.py``), the sections
(``ui/sections.py``) and the training race (``ui/race.py``). docs/DESIGN.md has the contracts.
"""

from __future__ import annotations

import streamlit as st

from initviz import served
from initviz.devices import limit_threads, resolve_device
from initviz.errors import InitvizError, ServerBusy
from initviz.network import NetworkSpec
from initviz.presets import PRESETS, SECTIONS
from initviz.probe import Profile
from initviz.text import escape
from ui.links import DEFAULTS, PRESENT, link_default, link_problems, read_link, step_preset
from ui.race import training_section
from ui.sections import (STYLE, code_section, signal_section, theory_section,
                         verdict_section, weights_section)
from ui.sidebar import Choices, sidebar, train_spec

INTRO = ("A neural network starts from random weights, and how large those random numbers are "
         "decides whether a signal passing through many layers fades away, blows up, or arrives "
         "intact. Choose a network and a rule for drawing its first weights (an initialization "
         "scheme, such as Kaiming's or Xavier's) and see what happens to the signal layer by "
         "layer, and whether the network then learns.")
# Presenter mode: text a room reads from the back; the page's title and top margin give way to
# the story and its chart on the first screen.
PRESENTER_CSS = """<style>
html { font-size: 20px; }
[data-testid="stMainBlockContainer"] { padding-top: 1.5rem; }
</style>"""

present = st.query_params.get(PRESENT) in ("1", "true")
st.set_page_config(page_title="initviz: weight initialization, made visible", layout="wide",
                   page_icon="📐", initial_sidebar_state="collapsed" if present else "auto")


@st.cache_resource
def _threads() -> int:
    return limit_threads()


_threads()


def presenter_bar() -> None:
    """Previous/next preset (keys P and N), and a way out of presenter mode."""
    st.html(PRESENTER_CSS)
    row = st.container(horizontal=True)
    row.button("Previous preset", icon=":material/arrow_back:", on_click=step_preset,
               args=(-1,), shortcut="P", key="previous_preset")
    row.button("Next preset", icon=":material/arrow_forward:", on_click=step_preset,
               args=(1,), shortcut="N", key="next_preset")
    row.button("Leave presenter mode", type="tertiary", key="leave_present",
               on_click=lambda: st.query_params.pop(PRESENT, None))


def network_profiles(choices: Choices, device: str, problems: list[str]
                     ) -> tuple[dict[str, NetworkSpec], dict[str, Profile]]:
    """Every compared network and its profile; a network the probe refuses gives way to the
    default network, with a sentence in ``problems``."""
    specs = choices.specs
    try:
        return specs, served.profiles(tuple(specs.items()), choices.batch, choices.seed, device,
                                      choices.input_mean, choices.input_std)
    except ServerBusy:
        raise
    except InitvizError as error:
        problems.append(f"{escape(str(error))}. Showing the default network instead.")
        spec = NetworkSpec.stack(DEFAULTS["width"], DEFAULTS["depth"])
        return ({spec.scheme: spec},
                served.profiles(((spec.scheme, spec),), DEFAULTS["batch"], 0, device))


def main() -> None:
    read_link()
    st.html(STYLE)
    choices = sidebar()
    problems = list(choices.problems)
    if present:
        presenter_bar()
    else:
        st.title("initviz")
        st.caption(INTRO)
    if choices.preset in PRESETS:
        preset = PRESETS[choices.preset]
        st.info(f"**{preset.title}.** {preset.story}", icon=":material/menu_book:")
    notices = st.container()  # filled last: the sections' own controls are read from the link
    device = resolve_device(choices.device)
    if device.notice:
        st.warning(device.notice)
    try:
        specs, profiles = network_profiles(choices, device.name, problems)
    except ServerBusy as error:
        st.warning(f"Nothing computed: {error}.", icon=":material/hourglass_top:")
        return
    spec = next(iter(specs.values()))
    race, problem = train_spec(choices, device.name)
    problems += [problem] if problem else []

    verdict_section(next(iter(profiles.values())), brief=present)
    weights, signal, training, theory, code = st.tabs(
        SECTIONS, key="section", default=link_default("section"), bind="query-params")
    # Only the open tab is computed and drawn: a tab's content runs when it is chosen.
    if weights.open:
        with weights:
            weights_section(profiles)
    if signal.open:
        with signal:
            signal_section(profiles)
    if training.open:
        with training:
            training_section(race, list(specs))
    if theory.open:
        with theory:
            theory_section(specs, profiles, choices.seed, device.name)
    if code.open:
        with code:
            code_section(spec, choices.seed, choices.batch, profiles, {
                "network": spec.to_dict(), "compare": list(specs), "seed": choices.seed,
                "batch": choices.batch, "device": device.name})
    for problem in link_problems() + problems:
        notices.warning(problem)


main()
