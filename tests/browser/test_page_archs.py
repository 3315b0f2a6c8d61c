"""The architectures and compared variants in a real browser: a link opens each architecture's
view with its own controls and charts, choosing one in the sidebar re-renders the page and the
link, and a variant typed into the add box joins the compared entries and the link."""

from __future__ import annotations

import re

import pytest
from test_page import (RERUN_MS, assert_no_errors, choose, open_view, query_of, settle, snap,
                       verdict, widget_value)

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips or, under CI, fails every test
    pass

pytestmark = pytest.mark.browser

VIEWS = [
    # link, a control that only this architecture has, the verdict's word for its entries, and
    # the charts of its Signal tab (the plain stack's 6 and the architecture's own)
    ("?arch=residual&width=32&depth=30&compare=kaiming_normal(residual%3Dfixup)", "residual",
     "block", 7),
    ("?preset=post_ln&section=Signal", "ln", "block", 11),
    ("?arch=conv", "padding", "layer", 6),
    ("?arch=lstm", "forget_bias", "time step", 6),
]


@pytest.mark.parametrize(("query", "control", "entry", "charts"), VIEWS,
                         ids=["residual", "post_ln", "conv", "lstm"])
def test_an_architecture_link_opens_its_view(page, artifacts, query, control, entry, charts):
    open_view(page, query, charts=charts)
    expect(page.locator(f"[data-testid='stSidebar'] .st-key-{control}")).to_have_count(1)
    expect(verdict(page)).to_contain_text(re.compile(rf"\({entry} \d+\)|{entry}s"))
    snap(page, artifacts, f"09-arch-{control}")


def test_choosing_an_architecture_and_adding_a_variant_update_page_and_link(page, artifacts):
    open_view(page, "?width=32&depth=6", charts=4)
    choose(page, "arch", "residual")
    expect(page).to_have_url(re.compile(r"[?&]arch=residual(&|$)"), timeout=RERUN_MS)
    settle(page, RERUN_MS, 4)
    expect(page.locator("[data-testid='stSidebar'] .st-key-residual")).to_have_count(1)
    box = page.locator("[data-testid='stSidebar'] .st-key-variant input")
    box.fill("kaiming_normal(residual=fixup)")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"compare=kaiming_normal%28residual%3Dfixup%29"),
                             timeout=RERUN_MS)
    settle(page, RERUN_MS, 4)
    assert_no_errors(page)
    assert "kaiming_normal(residual=fixup)" in widget_value(page, "compare")
    assert query_of(page)["arch"] == ["residual"]
    snap(page, artifacts, "09-arch-variant-added")
