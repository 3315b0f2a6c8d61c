"""Browser-test setup: one real app server and one headless Chromium for the whole session.

The server is ``python3 -m streamlit run app.py`` on a free loopback port (``tests/live_app.py``,
shared with the load test). The browser is Debian's Chromium driven by Playwright (Playwright's own
browser download does not work offline). Where Chromium or Playwright is missing the tests are
skipped locally and fail under CI (``CI`` set, as ``.ci/run`` does): CI must never pass by
skipping them.

Every test gets a fresh page (its own browser context) with a tall viewport, because Streamlit
scrolls inside its own container and a full-page screenshot would otherwise show one screen only.
A failed test leaves a screenshot of its page in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from live_app import REPO, Server, start_server

ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1500, "height": 5000}


def _missing(what: str) -> None:
    """A missing browser fails under CI and skips elsewhere."""
    message = (f"{what}; the browser tests need it (.ci/run installs Debian's chromium, "
               "requirements-dev.txt pins playwright)")
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {message}. They are required in CI, not optional.",
                    pytrace=False)
    pytest.skip(message)


def chromium_path() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/browser/, emptied first so that it shows this run only."""
    if ARTIFACTS.is_dir():
        for old in ARTIFACTS.iterdir():
            if old.is_file():
                old.unlink()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        _missing("Chromium is not installed (no /usr/bin/chromium, no `chromium` on PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the python package `playwright` is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                              timeout=60_000)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def app_server(browser, artifacts) -> Server:
    """The running app, one for the session. Depends on ``browser`` so that a missing browser
    skips (or fails) before a server is started for nothing."""
    server = start_server(artifacts / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, app_server, artifacts, request):
    """A fresh page in its own context; ``page.js_errors`` collects uncaught page errors."""
    app_server.check_alive()
    context = browser.new_context(viewport=VIEWPORT, base_url=app_server.url)
    context.set_default_timeout(60_000)
    new_page = context.new_page()
    new_page.js_errors = []
    new_page.on("pageerror", lambda error: new_page.js_errors.append(str(error)))
    yield new_page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        app_server.check_alive()
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
        try:
            new_page.screenshot(path=str(artifacts / f"FAILED-{name}.png"), full_page=True,
                                timeout=30_000)
        except Exception as error:  # noqa: BLE001 - a screenshot must not hide the real failure
            print(f"could not save the failure screenshot: {error}")
        # the server's side of the failure (a traceback the page redacts) into the test report
        print(app_server.log_tail())
    context.close()
