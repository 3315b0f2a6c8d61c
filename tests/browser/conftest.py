"""Browser-test setup: one real app server and one headless Chromium for the whole session.

The server is ``python3 -m streamlit run app.py`` on a free loopback port, started from the repo root
in its own process group and stopped (the whole group) at the end. The browser is Debian's Chromium
driven by Playwright (Playwright's own browser download does not work offline). Where Chromium or
Playwright is missing the tests are skipped locally and fail under CI (``CI`` set, as ``.ci/run``
does): CI must never pass by skipping them.

Every test gets a fresh page (its own browser context) with a tall viewport, because Streamlit
scrolls inside its own container and a full-page screenshot would otherwise show one screen only.
A failed test leaves a screenshot of its page in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1500, "height": 5000}
SERVER_START_S = 90
"""Seconds for the server to answer its health check (not the first page: that imports torch)."""
PORT_TRIES = 3


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listens(pid: int, port: int) -> bool:
    """Whether our own server process holds the port (not another app that happens to have it)."""
    import psutil

    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="tcp"))
    except psutil.Error:
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers; every wait bounded."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def _start_server(log) -> tuple[subprocess.Popen, str]:
    """Start the app on a free port; retry on a new port if another process took it first."""
    for _ in range(PORT_TRIES):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log.write(f"--- starting on port {port}\n")
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _listens(proc.pid, port) and _healthy(url):
                return proc, url
            time.sleep(0.5)
        _stop(proc)
    log.flush()
    pytest.fail(f"the app server did not come up in {PORT_TRIES} tries; {_log_tail()}",
                pytrace=False)


def _log_tail() -> str:
    return "its log ends:\n" + (ARTIFACTS / "streamlit.log").read_text(errors="replace")[-2000:]


class Server:
    """The running app: its base URL, and a check that it is still up."""

    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc, self.url = proc, url

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            pytest.fail(f"the app server has exited (code {code}); {_log_tail()}", pytrace=False)


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
    with open(artifacts / "streamlit.log", "w") as log:
        proc, url = _start_server(log)
        try:
            yield Server(proc, url)
        finally:
            _stop(proc)


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
    context.close()
