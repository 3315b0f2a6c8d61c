"""A link cannot put a link or an image on the page: every value it carries is shown as text.

Streamlit renders warnings as Markdown; a value that closed the warning's code span used to
become a clickable link (phishing) or an image every visitor's browser fetched (a tracking pixel).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest
from test_page import MAIN, open_view

from initviz.text import WORD_JOINER

try:
    from playwright.sync_api import Page
except ImportError:  # the `browser` fixture skips or, under CI, fails every test
    Page = object

pytestmark = pytest.mark.browser

LINK = "x` [CLICK HERE](https://evil.example/phish) `"
PIXEL = "![PIX](http://evil.example/pixel.png)"
BARE = "www.evil.example https://evil.example me@evil.example"


def test_a_link_shows_markdown_payloads_as_text_and_fetches_nothing_outside(page: Page):
    outside = []
    page.on("request", lambda request: urlsplit(request.url).hostname == "evil.example" and
            outside.append(request.url))
    query = urlencode([(LINK, "1"), ("width", PIXEL), ("activation", LINK), ("compare", PIXEL),
                       ("sizes", LINK + PIXEL), ("depth", BARE)])
    open_view(page, f"?{query}")
    warnings = [text.replace(WORD_JOINER, "") for text in
                page.locator(f"{MAIN} [data-testid='stAlert']").all_inner_texts()]
    assert any("CLICK HERE](https://evil.example/phish)" in text for text in warnings), warnings
    assert any("![PIX](http://evil.example/pixel.png)" in text for text in warnings), warnings
    assert any(BARE in text for text in warnings), warnings
    assert page.locator("a[href*='evil.example']").count() == 0
    assert page.locator("img[src*='evil.example']").count() == 0
    assert outside == []
