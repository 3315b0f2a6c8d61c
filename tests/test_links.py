"""The page's links: every view reopens from its link, bad values are refused in sentences, and
nothing a link carries can put Markdown (a link, an image) on the page.

Streamlit's AppTest runs the script but not the browser, and it is the browser that writes a
control the visitor moved into the address bar: it sets the parameter when the new value differs
from the widget's default and deletes it when they are equal (Streamlit 1.67, bind=
"query-params"). ``_move`` does the same, so ``at.query_params`` after a run is the address bar.
"""

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from initviz.presets import PRESETS
from initviz.text import MAX_SHOWN, escape, quote, shorten

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 180  # the first run imports torch; CI machines are small
MARKDOWN_KINDS = ("warning", "info", "error", "success", "markdown", "caption")


def _app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


# --------------------------------------------------------------------------------------------------
# The browser's side of a bound control


def _default(widget) -> object:
    """The default the widget call passed: what the browser compares a new value with."""
    proto = widget.proto
    kind = type(widget).__name__
    if kind == "Slider":
        return proto.default[0]
    if kind in ("Selectbox", "Multiselect", "ButtonGroup"):
        options = [getattr(o, "content", o) for o in proto.options]
        indices = proto.default if kind != "Selectbox" else [proto.default]
        chosen = [options[i] for i in indices]
        return chosen if kind == "Multiselect" else (chosen[0] if chosen else None)
    return proto.default


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _section_default(at: AppTest) -> str:
    preset = at.session_state["preset"]
    return PRESETS[preset].section if preset in PRESETS else "Signal"


def _move(at: AppTest, kind: str, key: str, value) -> bool:
    """Move a control as a visitor would, writing the address bar as the browser does; False
    where the control is not on the page or cannot take the value. A "tab" is the section."""
    if kind == "tab":
        at.session_state[key] = value
        if value == _section_default(at):
            at.query_params.pop(key, None)
        else:
            at.query_params[key] = value
        at.run()
        _no_exception(at)
        return True
    widgets = [w for w in getattr(at, kind) if w.key == key]
    if not widgets:
        return False
    widget = widgets[0]
    if kind == "segmented_control":
        if value >= len(widget.options):
            return False
        value = widget.options[value]
    if kind == "slider" and not widget.min <= value <= widget.max:
        return False
    widget.set_value(value)
    if _same(value, _default(widget)):
        at.query_params.pop(key, None)
    else:
        at.query_params[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
    at.run()
    _no_exception(at)
    return True


def _controls(at: AppTest) -> dict:
    """Every control's value, by key: the sidebar, the open section, and the weight layer and
    the focused scheme where their section is open."""
    kinds = ("slider", "selectbox", "multiselect", "number_input", "text_input",
             "segmented_control")
    return {"section": at.session_state["section"],
            **{w.key: w.value for kind in kinds for w in getattr(at, kind) if w.key}}


CHANGES = st.sampled_from([
    ("selectbox", "preset", "none"), ("selectbox", "preset", "he2015"),
    ("selectbox", "preset", "zeros"), ("selectbox", "preset", "small_weights"),
    ("slider", "depth", 20), ("slider", "depth", 30), ("slider", "depth", 3),
    ("slider", "width", 256), ("slider", "width", 64), ("slider", "width", 32),
    ("selectbox", "activation", "relu"), ("selectbox", "activation", "tanh"),
    ("selectbox", "scheme", "kaiming_normal"), ("selectbox", "scheme", "normal"),
    ("number_input", "normal.std", 1.0), ("number_input", "normal.std", 0.05),
    ("multiselect", "compare", ["kaiming_normal", "xavier_normal"]),
    ("multiselect", "compare", ["zeros", "xavier_normal"]),
    ("slider", "steps", 200), ("slider", "steps", 300), ("number_input", "lr", 0.05),
    ("number_input", "lr", 0.02), ("slider", "weight_layer", 1), ("slider", "weight_layer", 3),
    ("segmented_control", "focus_scheme", 0), ("segmented_control", "focus_scheme", 1),
    ("tab", "section", "Weights"), ("tab", "section", "Signal"), ("tab", "section", "Theory"),
])


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from([{}, {"preset": "he2015"}, {"preset": "small_weights"}]),
       changes=st.lists(CHANGES, min_size=1, max_size=4))
@example(start={"preset": "he2015"}, changes=[("slider", "depth", 20)])
@example(start={}, changes=[("selectbox", "preset", "he2015"), ("selectbox", "preset", "none")])
@example(start={}, changes=[("tab", "section", "Weights"), ("slider", "weight_layer", 3),
                           ("tab", "section", "Signal"), ("segmented_control", "focus_scheme", 1)])
@example(start={"preset": "zeros"}, changes=[("tab", "section", "Signal")])
def test_the_address_bar_reopens_every_control_as_it_was(start, changes):
    at = _app(start)
    for change in changes:
        _move(at, *change)
    link = dict(at.query_params)
    reopened = _app(link)
    _no_exception(reopened)
    assert _controls(reopened) == _controls(at), link


def test_a_preset_link_with_a_control_moved_back_to_the_page_default_keeps_it():
    """?preset=he2015 is 30 layers deep; 20 is the page's own default depth."""
    at = _app({"preset": "he2015"})
    _move(at, "slider", "depth", 20)
    assert dict(at.query_params) == {"preset": "he2015", "depth": "20"}
    _move(at, "slider", "depth", 30)
    assert dict(at.query_params) == {"preset": "he2015"}


def test_leaving_a_preset_puts_what_it_set_into_the_link():
    at = _app({"preset": "he2015"})
    _move(at, "selectbox", "preset", "none")
    link = dict(at.query_params)
    assert link["depth"] == "30" and link["steps"] == "300" and "preset" not in link


def test_a_bad_value_under_a_preset_falls_back_to_the_presets_value():
    at = _app({"preset": "he2015", "depth": "1e9"})
    _no_exception(at)
    assert at.slider(key="depth").value == 30
    assert _warnings(at) == ["The link's depth “1e9” is not a valid value; showing 30 (the "
                             "he2015 preset's value) instead."]


# --------------------------------------------------------------------------------------------------
# Scheme parameters that do not go together


@pytest.mark.parametrize("query,key,default", [
    ({"scheme": "uniform", "uniform.a": "2", "uniform.b": "1"}, "uniform.a", 0.0),
    ({"scheme": "uniform", "uniform.a": "1"}, "uniform.a", 0.0),
    ({"scheme": "trunc_normal", "trunc_normal.a": "3", "trunc_normal.b": "1"},
     "trunc_normal.a", -2.0),
    ({"scheme": "trunc_normal", "trunc_normal.mean": "5"}, "trunc_normal.mean", 0.0),
])
def test_scheme_parameters_refused_together_fall_back_and_leave_the_link(query, key, default):
    at = _app(query)
    _no_exception(at)
    assert at.number_input(key=key).value == default
    scheme = query["scheme"]
    assert dict(at.query_params) == {"scheme": scheme}
    assert len(_warnings(at)) == 1
    assert _warnings(at)[0].startswith(f"The {scheme} settings ")
    assert "do not go together" in _warnings(at)[0]


def test_a_scheme_parameter_moved_onto_a_refused_value_goes_back_to_the_defaults():
    at = _app({"scheme": "uniform"})
    _move(at, "number_input", "uniform.a", 1.0)  # = b
    assert at.number_input(key="uniform.a").value == 0.0
    assert "uniform.a" not in at.query_params
    assert any("do not go together" in w for w in _warnings(at))


# --------------------------------------------------------------------------------------------------
# Small things, each with a warning and a safe value


def test_steps_off_the_sliders_step_is_refused():
    at = _app({"steps": "15"})
    _no_exception(at)
    assert at.slider(key="steps").value == 200
    assert any("steps “15” is not a multiple of 10" in w for w in _warnings(at))
    assert "steps" not in at.query_params


def test_sizes_wider_than_the_page_allows_are_refused():
    at = _app({"sizes": "4096,4096", "section": "Code"})
    _no_exception(at)
    assert any("4,096" in w and "2,048" in w and "width × depth" in w for w in _warnings(at))
    assert "[64] + [256] * 20" in at.code[0].value


def test_a_link_streamlit_drops_whole_is_named():
    query = {f"p{i}": "1" for i in range(1001)}
    at = _app(query)
    _no_exception(at)
    assert any("1,001 parameters" in w and "1,000" in w for w in _warnings(at))


def test_messages_read_as_sentences_each_once():
    at = _app({"width": "abc", "compare": ["xavier_normal", "zz"], "sizes": "64,abc",
               "bogus": "1"})
    _no_exception(at)
    warnings = _warnings(at)
    assert len(warnings) == len(set(warnings)) == 4
    for text in warnings:
        assert text.startswith("The ") and text.endswith(".")
        for code in ("From the link", "invalid literal", "['", "base 10", "`"):
            assert code not in text, text


def test_a_bad_weight_layer_or_focused_scheme_is_named_where_its_section_is_open():
    query = {"depth": "5", "weight_layer": "9", "focus_scheme": "zz"}
    weights, signal = _app({**query, "section": "Weights"}), _app(query)
    _no_exception(weights)
    assert weights.slider(key="weight_layer").value == 2
    assert "weight_layer “9”" in " ".join(_warnings(weights))
    assert "focus_scheme" not in " ".join(_warnings(weights))  # its tab is not open
    assert signal.segmented_control(key="focus_scheme").value == "kaiming_normal"
    assert "focus_scheme “zz”" in " ".join(_warnings(signal))


def test_a_bad_section_is_named_and_the_default_one_opens():
    at = _app({"section": "Nowhere", "preset": "isometry"})
    _no_exception(at)
    assert at.session_state["section"] == "Theory"
    assert _warnings(at) == ["The link's section “Nowhere” is not a valid value; showing Theory "
                             "(the isometry preset's value) instead."]


def test_a_view_the_network_no_longer_has_leaves_the_link():
    at = _app({"depth": "4", "width": "32"})
    _move(at, "segmented_control", "focus_scheme", 1)
    _move(at, "multiselect", "compare", ["lecun_normal"])  # xavier_normal is no longer drawn
    assert dict(at.query_params) == {"depth": "4", "width": "32", "compare": "lecun_normal"}
    at = _app({"depth": "4", "width": "32", "section": "Weights"})
    _move(at, "slider", "weight_layer", 4)
    assert "weight_layer" in at.query_params
    _move(at, "slider", "depth", 3)  # layer 4 is no longer drawn
    assert dict(at.query_params) == {"depth": "3", "width": "32", "section": "Weights"}
    assert not _warnings(_app(dict(at.query_params)))


def test_a_long_value_gives_a_short_warning():
    at = _app({"sizes": "9," * 25_000})
    _no_exception(at)
    assert all(len(w) < 400 for w in _warnings(at))


# --------------------------------------------------------------------------------------------------
# Injection


def _markdown_skeleton(source: str) -> str:
    """``source`` without its backslash escapes: the characters Markdown reads as syntax."""
    return re.sub(r"\\.", "", source, flags=re.DOTALL)


def _injected(source: str) -> list[str]:
    """Markdown links, images and HTML in ``source``, and bare addresses that GitHub-flavoured
    Markdown would link in the text it shows (its patterns: www., http(s)://, e-mail)."""
    shown = re.sub(r"\\(.)", r"\1", source, flags=re.DOTALL)
    return (re.findall(r"\]\(|<[A-Za-z/!?]", _markdown_skeleton(source))
            + re.findall(r"(?i)https?://|www(?=\.)|[-.\w]+@[-\w]+\.", shown))


PAYLOADS = st.lists(st.sampled_from([
    "x` [CLICK HERE](https://evil.example/phish) `", "![PIX](http://evil.example/pixel.png)",
    "<img src=http://evil.example/p.png>", "<a href='https://evil.example'>a</a>",
    "<https://evil.example>", "www.evil.example", "a https://evil.example b", "me@evil.example",
    "[ref]: https://evil.example", "\\", "`",
    "\n\n# head", ":red[big]", "$x$", "**b**", "\\](http://evil.example)", "[x]", "(y)",
]), min_size=1, max_size=4).map("".join)
PARAMETERS = ("width", "depth", "activation", "compare", "sizes", "scheme", "preset", "steps",
              "lr", "uniform.a")


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
@example(payload="x` [CLICK HERE](https://evil.example/phish) `")
@example(payload="![PIX](http://evil.example/pixel.png)")
def test_no_link_or_image_can_be_put_on_the_page_through_a_link(payload):
    at = _app({payload: "1", **dict.fromkeys(PARAMETERS, payload)})
    _no_exception(at)
    for kind in MARKDOWN_KINDS:
        for element in getattr(at, kind):
            assert not _injected(element.value), (kind, element.value)


def test_the_pages_own_markdown_passes_the_injection_check():
    at = _app({"preset": "isometry"})
    shown = [e.value for kind in MARKDOWN_KINDS for e in getattr(at, kind)]
    assert shown and not [text for text in shown if _injected(text)]


# --------------------------------------------------------------------------------------------------
# initviz.text


@given(st.text())
def test_escaped_text_has_no_markdown_syntax_left(text):
    escaped = escape(text)
    assert not _injected(escaped)
    assert "\n" not in escaped
    assert not re.search(r"[!-/:-@\[-`{-~]", _markdown_skeleton(escaped))  # ASCII punctuation


def test_escaping_keeps_what_a_reader_sees():
    assert escape("a_b [c](d)") == r"a\_b \[c\]\(d\)"
    assert quote(["64", "abc"]) == "“64\\, abc”"


def test_shorten_says_how_much_it_left_out():
    assert shorten("abc") == "abc"
    long = "x" * 50_000
    assert shorten(long) == "x" * MAX_SHOWN + f"… ({50_000 - MAX_SHOWN:,} more characters)"
    assert len(quote(long)) < 3 * MAX_SHOWN
