"""The page on a projector, a laptop's half screen and a phone, in light and dark, and in
presenter mode: no chart squeezed to a sliver, no text cut off, the story's chart on the first
screen. Each view is saved as a screenshot in test-artifacts/browser/.

Sizes (issue 14): 1280×720 (a projector), 800 px wide (half a laptop screen, sidebar open) and
390 px wide (a phone).
"""

from __future__ import annotations

import re

import pytest
from test_page import CHART, MAIN, RERUN_MS, SIGNAL_CHARTS, open_tab, open_view, settle

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips or, under CI, fails every test
    pass

pytestmark = pytest.mark.browser

SIZES = {"projector": (1280, 720), "half-screen": (800, 900), "phone": (390, 844)}
MIN_CHART_PX = 340
"""The narrowest a chart may be drawn: its plot keeps about 280 px beside the value axis. (Two
halves side by side wrap one under the other below 760 px, ui/sections.py.)"""

CHART_BOXES_JS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .filter(chart => chart.offsetParent !== null)  // a closed tab's charts are hidden
    .map(chart => {
        const drawing = chart.querySelector('canvas, svg');
        const box = chart.getBoundingClientRect();
        const drawn = drawing ? drawing.getBoundingClientRect() : {width: 0, right: 0};
        return {width: box.width, drawn: drawn.width, overhang: drawn.right - box.right,
                right: box.right, title: chart.innerText.slice(0, 40)};
    })"""

# Text that its box cuts off: wider than the box it is drawn in (Streamlit hides the overflow of
# tabs and buttons, and ellipsizes a label that does not fit).
OVERFLOW_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] :is(p, h1, h2, h3, '
        + '[role="tab"], button [data-testid="stMarkdownContainer"])')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => `${e.innerText.slice(0, 50)} (${e.scrollWidth} > ${e.clientWidth} px)`)"""


def _new_page(browser, app_server, size: str, colour_scheme: str = "light"):
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=colour_scheme, base_url=app_server.url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    return page


def _check_layout(page, where: str) -> None:
    viewport = page.viewport_size["width"]
    for chart in page.evaluate(CHART_BOXES_JS):
        assert chart["width"] >= MIN_CHART_PX, (where, chart)
        assert chart["right"] <= viewport + 1, (where, "a chart runs off the screen", chart)
        assert chart["overhang"] <= 1, (where, "a chart's drawing is cut by its box", chart)
    assert page.evaluate(OVERFLOW_JS) == [], where


@pytest.mark.parametrize("size", list(SIZES))
def test_every_section_keeps_its_charts_wide_and_its_text_whole(browser, app_server, artifacts,
                                                                 size):
    page = _new_page(browser, app_server, size)
    try:
        # a short race: the layout of its charts is what is checked here
        open_view(page, "?preset=he2015&steps=20&seeds=1", charts=SIGNAL_CHARTS)
        _check_layout(page, f"{size} Signal")
        page.screenshot(path=str(artifacts / f"06-{size}-Signal.png"))
        for name, charts in [("Weights", 2), ("Theory", 2), ("Training", 0)]:
            open_tab(page, name, charts)
            _check_layout(page, f"{size} {name}")
            page.screenshot(path=str(artifacts / f"06-{size}-{name}.png"))
        # the training charts too, once a short race has drawn them
        page.locator(".st-key-train_button button").click()
        expect(page.locator(f"{MAIN} [data-testid='stProgress']")).to_contain_text(
            "finished", timeout=300_000)
        settle(page, RERUN_MS, charts=3)
        _check_layout(page, f"{size} Training, finished")
        page.screenshot(path=str(artifacts / f"06-{size}-Training-finished.png"))
    finally:
        page.context.close()


def _luminance(css_colour: str) -> float:
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_a_dark_system_gets_the_dark_theme_with_readable_charts(browser, app_server, artifacts):
    page = _new_page(browser, app_server, "projector", colour_scheme="dark")
    try:
        open_view(page, "?preset=he2015", charts=SIGNAL_CHARTS)
        background = page.evaluate("() => getComputedStyle(document.querySelector("
                                   "'[data-testid=\"stApp\"]')).backgroundColor")
        assert _luminance(background) < 0.2, background
        # Vega draws its text in the theme's colour: light on the dark page
        label = page.locator(f"{CHART} svg text, {CHART} canvas").first
        expect(label).to_be_visible()
        title = page.locator(f"{MAIN} h1")
        assert _luminance(title.evaluate("e => getComputedStyle(e).color")) > 0.8
        page.screenshot(path=str(artifacts / "07-dark.png"))
    finally:
        page.context.close()


def test_presenter_mode_shows_the_story_and_its_chart_on_the_first_screen(browser, app_server,
                                                                           artifacts):
    page = _new_page(browser, app_server, "projector")
    try:
        open_view(page, "?preset=he2015&present=1", charts=SIGNAL_CHARTS)
        width, height = SIZES["projector"]
        expect(page.locator("[data-testid='stSidebar']")).to_have_attribute(
            "data-collapsed", "true")
        font = page.evaluate("() => getComputedStyle(document.documentElement).fontSize")
        assert font == "20px", font
        story = page.locator(f"{MAIN} [data-testid='stAlert']").filter(has_text="He et al. 2015")
        assert story.bounding_box()["y"] + story.bounding_box()["height"] <= height
        first_chart = page.locator(CHART).first.bounding_box()
        assert first_chart["y"] < height - 150, first_chart  # its plot starts on the first screen
        page.screenshot(path=str(artifacts / "08-presenter.png"))
        # N steps to the next preset, and the link follows
        page.locator("body").press("n")
        expect(page).to_have_url(re.compile(r"preset=glorot2010"), timeout=RERUN_MS)
        expect(page.locator(f"{MAIN} [data-testid='stAlert']").filter(
            has_text="Glorot & Bengio 2010").first).to_be_visible(timeout=RERUN_MS)
        assert "present=1" in page.url
        # T trains, on the Training tab
        open_tab(page, "Training")
        # The shortcut is the page's: with the focus left on the clicked tab, a key press went
        # to the tab list once in a full run and Train never started.
        expect(page.locator(".st-key-train_button button")).to_be_enabled(timeout=RERUN_MS)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.locator("body").press("t")
        expect(page.locator(f"{MAIN} [data-testid='stProgress']")).to_be_visible(timeout=RERUN_MS)
        page.locator(".st-key-stop_button button").click()
        assert not page.js_errors, page.js_errors
    finally:
        page.context.close()
