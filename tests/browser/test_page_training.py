"""Train and Stop in a real browser, pressed as a room presses them: again and again, at odd
moments. A Stop that lands while the live view redraws used to replace the whole page with "This
app has encountered an error" and keep the race's memory booked, so the next Train anywhere was
refused as "the server is busy"."""

from __future__ import annotations

import random

import pytest
from test_page import MAIN, TRAINING_MS, assert_no_errors, open_view

try:
    from playwright.sync_api import Page, expect
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the `browser` fixture skips or, under CI, fails every test
    Page = object

pytestmark = pytest.mark.browser

LONG_RACE = "?depth=4&width=512&steps=2000&seeds=1&batch=256&seed={seed}&section=Training"
"""Long enough that every Stop below lands while the race runs: 2000 steps of a width-512 net
(a width-32 one finished in 10 s, within the 1.5-8 s a Stop click took on a loaded machine)."""


FRESH = ":not([data-stale='true'] *)"
"""Not inside a stale element: while a run replaces the tab, the last run's elements may stay a
moment, faded (a Stop that interrupts the live fragment's run can even draw the new run's tab
inside the old one until the run ends), and a locator must not count them."""


def _buttons(page: Page):
    # by widget key: while a script runs, Streamlit's own header shows a "Stop" button too
    return (page.locator(f".st-key-train_button button{FRESH}"),
            page.locator(f".st-key-stop_button button{FRESH}"))


def _progress(page: Page):
    return page.locator(f"{MAIN} [data-testid='stProgress']{FRESH}")


def test_train_and_stop_pressed_again_and_again_never_break_the_page(page, browser, app_server):
    rng = random.Random(12)
    open_view(page, LONG_RACE.format(seed=41), charts=0)
    train, stop = _buttons(page)
    for press in range(8):
        expect(train).to_be_enabled(timeout=TRAINING_MS)
        train.click()
        expect(_progress(page)).to_contain_text("training", timeout=TRAINING_MS)
        page.wait_for_timeout(rng.uniform(0, 1500))  # a Stop at a random moment of the race
        # as a person presses: without Playwright's wait for the button to hold still over two
        # animation frames, which the live redraws stretched to seconds on a loaded machine
        stop.click(timeout=TRAINING_MS, force=True)
        if press % 3 == 0:  # and a second press straight after the first
            try:
                stop.click(timeout=1_000)
            except PlaywrightTimeout:
                pass  # the first press has already disabled it: nothing to press twice
        expect(_progress(page)).to_contain_text("stopped", timeout=TRAINING_MS)
        assert_no_errors(page)
        expect(page.get_by_text("This app has encountered an error")).to_have_count(0)

    # Every stopped race gave its memory back: another visitor can train right away.
    other = browser.new_context(base_url=app_server.url).new_page()
    other.js_errors = []
    other.on("pageerror", lambda error: other.js_errors.append(str(error)))
    open_view(other, LONG_RACE.format(seed=42), charts=0)
    other_train, other_stop = _buttons(other)
    other_train.click()
    expect(_progress(other)).to_contain_text("training", timeout=TRAINING_MS)
    expect(other.get_by_text("the server is busy")).to_have_count(0)
    other_stop.click()
    expect(_progress(other)).to_contain_text("stopped", timeout=TRAINING_MS)
    other.context.close()
