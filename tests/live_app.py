"""The real app server, for the tests that talk to it over HTTP: the browser and load tests.

``start_server`` runs ``python3 -m streamlit run app.py`` on a free loopback port, from the repo
root, in its own process group, so that ``Server.stop`` ends it and anything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_START_S = 90
"""Seconds for the server to answer its health check (not the first page: that imports torch)."""
PORT_TRIES = 3


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


class Server:
    """The running app: its process, base URL and log; a check that it is still up."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path, log):
        self.proc, self.url, self.log_path, self._log = proc, url, log_path, log

    def log_tail(self) -> str:
        self._log.flush()
        return "its log ends:\n" + self.log_path.read_text(errors="replace")[-6000:]

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            pytest.fail(f"the app server has exited (code {code}); {self.log_tail()}",
                        pytrace=False)

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


def start_server(log_path: Path, *options: str) -> Server:
    """Start the app on a free port, logging to ``log_path``; ``options`` are more
    ``streamlit run`` flags. Retries on a new port if another process took the port first."""
    log = open(log_path, "w")
    for _ in range(PORT_TRIES):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log.write(f"--- starting on port {port}\n")
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false",
             # Streamlit reloads edited modules; a file saved mid-test (on a shared machine) would
             # then make its cached objects unpicklable ("not the same object as ...").
             "--server.fileWatcherType", "none", *options],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _listens(proc.pid, port) and _healthy(url):
                return Server(proc, url, log_path, log)
            time.sleep(0.5)
        _stop(proc)
    log.close()
    pytest.fail(f"the app server did not come up in {PORT_TRIES} tries; its log ends:\n"
                + log_path.read_text(errors="replace")[-2000:], pytrace=False)
