"""The page in a real browser: it loads and draws, a link opens its exact view, a control
re-renders it, Train draws a live curve, the downloads hold the view's numbers. Every state is
saved as a screenshot in test-artifacts/.

Selectors are Streamlit's own: ``data-testid`` attributes, ``.st-key-<key>`` classes for the
sidebar widgets (their keys are docs/DESIGN.md contract), and ``data-test-script-state`` on the
app root for "the script run has finished". Nothing waits a fixed time: every wait is on a
selector or a condition, with a bounded timeout (generous: the machine is shared and the first
page imports torch).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips or, under CI, fails every test
    Page = object

pytestmark = pytest.mark.browser

FIRST_PAGE_MS = 150_000
"""The first page of the session imports torch and computes every profile: allow for that."""
RERUN_MS = 90_000
TRAINING_MS = 180_000
SIGNAL_CHARTS = 6
"""Charts of the Signal tab, the one the page opens on."""
SECTIONS = ("Weights", "Signal", "Training", "Theory", "Code")

CHART = '[data-testid="stVegaLiteChart"]'
MAIN = '[data-testid="stMain"]'
VERDICT_HEADLINE = re.compile(r"^(Healthy|Vanishing|Exploding|Saturated|Dead)\b[^:]*:")

SETTLED_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null && app.dataset.testScriptState === 'notRunning'
        && document.querySelector('[data-stale="true"]') === null;
}"""

CHARTS_DRAWN_JS = """(minimum) => {
    const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
        .filter(chart => chart.offsetParent !== null);  // a closed tab's charts are hidden
    return charts.length >= minimum && charts.every(c => c.querySelector('canvas, svg') !== null);
}"""
VERDICT_SHOWN_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] strong')]
    .some(s => /^(Healthy|Vanishing|Exploding|Saturated|Dead)\\b/.test(s.innerText))"""


# --------------------------------------------------------------------------------------------------
# Helpers


def settle(page: Page, timeout_ms: int = RERUN_MS, charts: int = 0) -> None:
    """Wait until the script run is over, nothing is stale, and every chart (at least
    ``charts``) is drawn."""
    page.wait_for_function(SETTLED_JS, timeout=timeout_ms)
    page.wait_for_function(CHARTS_DRAWN_JS, arg=charts, timeout=timeout_ms)


def open_view(page: Page, query: str = "", charts: int = 1) -> None:
    """Open the page at ``/{query}`` and wait until the verdict and at least ``charts`` charts
    are drawn (the open tab's: a Training or Code tab has none), without errors."""
    page.goto(f"/{query}", wait_until="domcontentloaded")
    page.wait_for_function(VERDICT_SHOWN_JS, timeout=FIRST_PAGE_MS)
    page.wait_for_selector("[data-testid='stSidebar'] .st-key-device", timeout=FIRST_PAGE_MS)
    settle(page, FIRST_PAGE_MS, charts)
    assert_no_errors(page)


def open_tab(page: Page, name: str, charts: int = 0) -> None:
    """Click the tab of section ``name`` and wait until it is drawn."""
    page.get_by_role("tab", name=name, exact=True).click()
    expect(page).to_have_url(re.compile(rf"[?&]section={name}(&|$)") if name != "Signal"
                             else re.compile(r"^(?!.*section=)"), timeout=RERUN_MS)
    settle(page, RERUN_MS, charts)
    assert_no_errors(page)


def assert_no_errors(page: Page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"the page shows an exception: {exceptions.all_inner_texts()}"
    assert not page.js_errors, f"uncaught errors in the page: {page.js_errors}"


def verdict(page: Page):
    """The verdict box: the alert in the main area whose bold headline names the diagnosis."""
    headline = page.locator("strong").filter(has_text=VERDICT_HEADLINE)
    return page.locator(f"{MAIN} [data-testid='stAlert']").filter(has=headline)


def widget_value(page: Page, key: str) -> str | list[str]:
    """What the sidebar widget with this key shows: a multiselect's chosen tags, else its input."""
    widget = page.locator(f"[data-testid='stSidebar'] .st-key-{key}")
    expect(widget).to_have_count(1)
    tags = widget.locator("[aria-label='Selected values'] [data-tag]")
    if tags.count():
        return [tag.get_attribute("aria-label") for tag in tags.all()]
    return widget.locator("input").first.input_value()


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def snap(page: Page, artifacts: Path, name: str) -> Path:
    """A screenshot of the page down to the end of its content (the viewport is taller)."""
    bottom = page.evaluate("""() => {
        const block = document.querySelector('[data-testid="stMainBlockContainer"]');
        const sidebar = document.querySelector('[data-testid="stSidebarUserContent"]');
        return Math.max(...[block, sidebar].filter(Boolean)
                        .map(e => e.getBoundingClientRect().bottom));
    }""")
    width = page.viewport_size["width"]
    height = min(page.viewport_size["height"], int(bottom) + 40)
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": width, "height": height},
                    timeout=30_000)
    return path


def choose(page: Page, key: str, option: str) -> None:
    """Pick an option of a sidebar selectbox the way a user does: open it, click the option."""
    page.locator(f"[data-testid='stSidebar'] .st-key-{key} input").click()
    page.get_by_role("option", name=option, exact=True).click()


# --------------------------------------------------------------------------------------------------
# 1. The page loads and draws


def test_page_loads_with_verdict_and_charts_and_each_tab_draws_its_section(page, artifacts):
    open_view(page, charts=SIGNAL_CHARTS)
    expect(page.locator(f"{MAIN} h1")).to_have_text("initviz")
    expect(verdict(page)).to_have_count(1)
    expect(verdict(page)).to_be_visible()
    expect(page.get_by_role("tab")).to_have_text(list(SECTIONS))
    expect(page.get_by_role("tab", name="Signal")).to_have_attribute("aria-selected", "true")
    charts = page.locator(CHART)
    assert charts.count() == SIGNAL_CHARTS  # only the open tab is drawn
    for chart in charts.all():
        expect(chart.locator("canvas, svg").first).to_be_visible()
    snap(page, artifacts, "01-default")
    for name, drawn, text in [("Weights", 2, "Per-layer table"), ("Theory", 2, "χ₁"),
                              ("Code", 0, "nn.init.kaiming_normal_"), ("Training", 0, "Train")]:
        open_tab(page, name, drawn)
        assert page.locator(f"{CHART}:visible").count() == drawn, name
        expect(page.locator(MAIN).get_by_text(text).first).to_be_visible()
        snap(page, artifacts, f"01-tab-{name}")


# --------------------------------------------------------------------------------------------------
# 2. A link opens exactly the view it names

SHAPE_128 = re.compile(r"128\s*[×x]\s*128")
VIEWS = [
    pytest.param(
        "?activation=tanh&scheme=xavier_normal&depth=12&width=128"
        "&compare=xavier_normal&compare=orthogonal&section=Weights",
        {"activation": "tanh", "scheme": "xavier_normal", "depth": "12", "width": "128",
         "compare": ["xavier_normal", "orthogonal"]},
        [("verdict", "xavier_normal"), ("verdict", re.compile(r"\b12 layers")),
         ("chart", re.compile(r"xavier_normal.*weights.*" + SHAPE_128.pattern)),
         ("chart", "orthogonal")],
        id="shared-link"),
    pytest.param(
        "?preset=he2015",
        {"preset": "he2015", "depth": "30", "activation": "relu", "scheme": "kaiming_normal",
         "compare": ["kaiming_normal", "xavier_normal"]},
        [("alert", "He et al. 2015"), ("verdict", re.compile(r"\b30 layers"))],
        id="preset-he2015"),
    pytest.param(
        "?depth=9999&bogus=1",
        {"depth": "20"},
        [("alert", "9999"), ("alert", "bogus"), ("verdict", re.compile(r"\b20 layers"))],
        id="bad-value"),
]


def _region(page: Page, where: str):
    return {"verdict": verdict(page), "alert": page.locator(f"{MAIN} [data-testid='stAlert']"),
            "chart": page.locator(CHART)}[where]


@pytest.mark.parametrize(("query", "widgets", "texts"), VIEWS)
def test_link_opens_that_view(page, artifacts, request, query, widgets, texts):
    open_view(page, query)
    shown = {key: widget_value(page, key) for key in widgets}
    assert shown == widgets, f"{query} opened the sidebar as {shown}"
    for where, text in texts:
        expect(_region(page, where).filter(has_text=text).first).to_be_visible()
    snap(page, artifacts, f"02-link-{request.node.callspec.id}")


# --------------------------------------------------------------------------------------------------
# 3. A control changed in the browser re-renders the page and updates the URL


def test_changing_activation_rerenders_and_updates_url(page, artifacts):
    open_view(page)
    before = verdict(page).inner_text()
    choose(page, "activation", "tanh")
    expect(page).to_have_url(re.compile(r"[?&]activation=tanh(&|$)"), timeout=RERUN_MS)
    expect(verdict(page)).to_have_count(1, timeout=RERUN_MS)
    expect(verdict(page)).not_to_have_text(before, use_inner_text=True, timeout=RERUN_MS)
    settle(page)
    assert_no_errors(page)
    assert verdict(page).inner_text() != before
    assert widget_value(page, "activation") == "tanh"
    assert query_of(page)["activation"] == ["tanh"]
    # The verdict recommends the scheme for the chosen activation: Xavier for tanh (issue 5).
    expect(verdict(page)).to_contain_text(re.compile("xavier", re.IGNORECASE))
    snap(page, artifacts, "03-activation-tanh")


# --------------------------------------------------------------------------------------------------
# 4. Train draws a live curve
#
# The training section is the part of the page from the heading "Training" to the next heading of
# the page. A MutationObserver in the page records every change of that section's charts (their
# rendered SVG, or canvas pixels) while the run is going, so no poll interval can miss a redraw.

WATCH_TRAINING_JS = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    const section = () => {
        const panel = main.querySelector('[role="tabpanel"]:not([hidden])');
        if (panel === null) return null;
        const inside = el => panel.contains(el);
        return {inside, text: () => panel.innerText};
    };
    const drawing = () => {
        const s = section();
        if (s === null) return '';
        return [...main.querySelectorAll('[data-testid="stVegaLiteChart"]')].filter(s.inside)
            .map(c => {
                const svg = c.querySelector('svg');
                if (svg) return svg.outerHTML;
                const canvas = c.querySelector('canvas');
                return canvas ? canvas.toDataURL() : '';
            }).join('\\n');
    };
    const watch = {changes: 0, finishedChanges: 0, last: drawing(), section, sawStop: false};
    watch.finished = () => {
        const s = section();
        const stop = [...main.querySelectorAll('button')].some(b => b.innerText.trim() === 'Stop');
        watch.sawStop = watch.sawStop || stop;
        return s !== null && (/finished/i.test(s.text()) || (watch.sawStop && !stop));
    };
    new MutationObserver(() => {
        const now = drawing();
        if (now !== '' && now !== watch.last) {
            if (watch.finished()) watch.finishedChanges += 1; else watch.changes += 1;
        }
        watch.last = now;
        watch.finished();
    }).observe(main, {subtree: true, childList: true, attributes: true, characterData: true});
    window.__training = watch;
}"""


TRAINING_VIEW = "?depth=8&width=256&batch=256&steps=60&section=Training"
"""A network small enough that training finishes in seconds on a CPU, with enough steps that the
page redraws the curve several times (it trains in time slices between redraws)."""


def test_train_draws_a_live_curve(page, artifacts):
    open_view(page, TRAINING_VIEW, charts=0)
    expect(page.get_by_role("tab", name="Training")).to_have_attribute("aria-selected", "true")
    # by widget key: its accessible name carries its keyboard shortcut ("Train T")
    train = page.locator(".st-key-train_button button")
    expect(train, "the Training section has no 'Train' button").to_be_visible(timeout=RERUN_MS)
    page.evaluate(WATCH_TRAINING_JS)
    train.click()
    page.wait_for_function("() => window.__training.changes >= 1", timeout=TRAINING_MS)
    snap(page, artifacts, "04-training-running")
    page.wait_for_function("() => window.__training.finished()", timeout=TRAINING_MS)
    changes = page.evaluate("() => window.__training.changes")
    print("changes", changes, page.locator("[data-testid='stProgress']").inner_text())
    assert changes >= 2, (f"the training chart changed {changes} time(s) while training ran; "
                          "a live curve redraws as it goes")
    settle(page, TRAINING_MS)
    assert_no_errors(page)
    snap(page, artifacts, "04-training-finished")


# --------------------------------------------------------------------------------------------------
# 5. The downloads hold this view's numbers


def _download(page: Page, label: str) -> str:
    button = page.locator(f"{MAIN} [data-testid='stDownloadButton'] button").filter(has_text=label)
    with page.expect_download(timeout=RERUN_MS) as download:
        button.click()
    return Path(download.value.path()).read_text()


def test_downloads_hold_the_statistics_and_configuration_of_this_view(page):
    open_view(page, "?depth=3&width=32&seed=5&compare=kaiming_normal&compare=orthogonal"
                    "&section=Code", charts=0)
    statistics = pd.read_csv(io.StringIO(_download(page, "Per-layer statistics (CSV)")))
    assert sorted(zip(statistics["scheme"], statistics["layer"])) == [
        (scheme, layer) for scheme in ("kaiming_normal", "orthogonal") for layer in (1, 2, 3)]
    assert (statistics["fan_out"] == 32).all() and statistics["act_std"].gt(0).all()
    config = json.loads(_download(page, "Configuration (JSON)"))
    assert config["network"]["sizes"] == [32, 32, 32]
    assert config["compare"] == ["kaiming_normal", "orthogonal"] and config["seed"] == 5
    assert_no_errors(page)
