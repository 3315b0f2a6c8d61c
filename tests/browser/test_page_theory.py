"""The theory section in a real browser: the phase diagram and the Jacobian spectrum are drawn for
the view a link names, with the readings that tell a narrow spectrum from a wide one."""

from __future__ import annotations

import re

import pytest
from test_page import CHART, MAIN, open_tab, open_view, snap

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips or, under CI, fails every test
    pass

pytestmark = pytest.mark.browser

THEORY_CHARTS_JS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .map(chart => {
        const box = chart.getBoundingClientRect();
        const drawn = chart.querySelector('canvas, svg');
        return {drawn: drawn !== null && box.width > 100 && box.height > 100,
                title: chart.innerText};
    })"""
"""The charts on the page: the isometry preset opens on its Theory tab, the only one drawn."""


def test_isometry_link_draws_phase_diagram_and_both_spectra(page, artifacts):
    open_view(page, "?preset=isometry", charts=2)
    expect(page.get_by_role("tab", name="Theory")).to_have_attribute("aria-selected", "true")
    charts = page.evaluate(THEORY_CHARTS_JS)
    assert len(charts) == 2, f"the theory section should draw 2 charts, it has {charts}"
    assert all(chart["drawn"] for chart in charts), charts
    theory = page.locator(f"{MAIN} [data-testid='stMarkdownContainer']")
    expect(theory.filter(has_text=re.compile(r"orthogonal: Ill conditioned"))).to_have_count(1)
    expect(theory.filter(has_text=re.compile(r"xavier_normal: Singular"))).to_have_count(1)
    expect(page.locator(f"{MAIN} [data-testid='stMetric']").filter(has_text="χ₁").first) \
        .to_contain_text("1")
    expect(page.locator(CHART).filter(has_text="Singular values").first).to_be_visible()
    snap(page, artifacts, "05-theory-isometry")
    open_tab(page, "Code")  # and its code is drawn, not an empty box
    expect(page.locator(f"{MAIN} [data-testid='stCode']").first).to_contain_text(
        "nn.init.orthogonal_")
