"""What a person waits for in the browser, against a minimal Streamlit page timed the same way.

Headless Debian Chromium, driven by Playwright and launched as the browser tests launch it
(``tests/browser/conftest.py``: same arguments, same tall viewport, so every chart is drawn); the
servers are started by the tests' own ``tests/live_app.start_server``. Each repeat starts a fresh
server for the minimal page (``benchmarks/minimal_app.py``: one slider, one chart) and then one for
the app, and times, wall clock from the action to the condition:

1. **cold first page**: a new browser context opens the URL of the just-started server (the first
   script run imports torch); until *fully drawn*: the script state is ``notRunning``, nothing is
   stale, and every visible Vega chart has its canvas or SVG, at least the open tab's count (the
   browser tests' own conditions, imported from ``tests/browser/test_page.py``; the app opens on
   its Signal tab, 6 charts, and a closed tab's charts are hidden), and until the first chart;
2. **warm visitor**: another new context on the same server, to fully drawn;
3. **slider change**: depth 20 -> 30 by one click on the slider's track where 30 lies (one
   committed value: ten arrow-key presses commit more than one), timed from the click until a
   script run has ended after it and the page is fully drawn again;
4. **open the Theory tab** (the app only): a click on the tab, until a script run has ended after
   it and the tab's two charts are drawn: only the open tab is computed and drawn, so a tab
   switch is a wait of its own;
5. **Train** (the app only, on the same server: the races differ from anything computed before,
   so no finished race is reused): on ``?section=Training`` and on
   ``?preset=he2015&section=Training``, from the click to the first training point drawn (the
   tab's first chart has a canvas) and to finished (the progress bar says so and the tab's three
   charts are drawn).

Browser-side cost, over the same windows: the main thread's long tasks (over 50 ms, from the
Long Tasks API; they include React, Arrow decoding and Vega), the JavaScript time sampled inside
the Vega bundle (a V8 CPU profile through CDP, self time in Streamlit's ``embed``,
``vega-interpreter``, ``ArrowVegaLiteChart`` and ``loadVegaEmbed`` chunks), the bytes the
server sent over the websocket, and the CPU time of the server and of this benchmark's own
browser (what competes with a race for the cores).

Each figure is the median over ``--repeats``, in seconds and as a ratio to the minimal page's
figure for the same action. The Theory tab and Train have no counterpart on the minimal page:
their ratios are to the minimal page's slider change (one trivial rerun). The machine (CPUs,
``uptime`` before and after) is printed with the table; ``--json PATH`` writes every sample.

    python benchmarks/bench_browser.py                      # 3 repeats, 10-45 minutes by load
    python benchmarks/bench_browser.py --repeats 1 --no-train --json /tmp/browser.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests" / "browser"), str(REPO / "tests")]

import live_app  # noqa: E402
import pytest  # noqa: E402  (live_app reports a server that does not start with pytest.fail)
import streamlit  # noqa: E402
from conftest import CHROMIUM_ARGS, VIEWPORT, chromium_path  # noqa: E402  (tests/browser's)
from test_page import CHART, CHARTS_DRAWN_JS, SETTLED_JS, SIGNAL_CHARTS  # noqa: E402

PAGE_S = 240
"""Bound on a page load or rerun (a cold server imports torch on its first run)."""
TRAIN_S = 600
"""Bound on a race (issue 14 measured 61 s for he2015 on this machine)."""
ELEMENT_S = 30
"""Bound on finding an element of a page that is already drawn."""
THEORY_CHARTS = 2
"""Charts of the Theory tab: the phase diagram and the Jacobian spectrum."""
TRAINING_CHARTS = 3
"""Charts a race draws in the Training tab: loss, validation accuracy, update:data ratio."""
TRAINING_VIEWS = (("Train, default view", "?section=Training"),
                  ("Train, ?preset=he2015", "?preset=he2015&section=Training"))
LOGS = REPO / "test-artifacts" / "bench-browser"
VEGA_CHUNKS = ("/embed.", "/vega-interpreter.", "/ArrowVegaLiteChart.", "/loadVegaEmbed.")
"""Streamlit's frontend chunks that hold Vega, Vega-Lite and vega-embed, and its chart element."""

# Installed in every page before its own scripts: counts the script runs that ended (any change of
# the app root's script state away from 'running': a fast rerun may start and end between two
# polls) and collects long tasks.
INSTRUMENT_JS = """
window.__bench = {runsEnded: 0, long: []};
new MutationObserver(records => {
    for (const r of records) if (r.oldValue === 'running') window.__bench.runsEnded += 1;
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
new PerformanceObserver(list => {
    for (const e of list.getEntries()) window.__bench.long.push([e.startTime, e.duration]);
}).observe({type: 'longtask', buffered: true});
"""
DRAWN_JS = f"""([minimum, runsBefore]) => window.__bench.runsEnded > runsBefore
    && ({SETTLED_JS})() && ({CHARTS_DRAWN_JS})(minimum)"""
"""Fully drawn, after at least one script run has ended since ``runsBefore`` was read."""
FIRST_CHART = f"{CHART} :is(canvas, svg)"
RACE_OVER_JS = f"""([minimum]) => {{
    const bar = document.querySelector('[data-testid="stMain"] [data-testid="stProgress"]');
    return bar !== null && /finished|stopped|ended early/.test(bar.innerText)
        && ({SETTLED_JS})() && ({CHARTS_DRAWN_JS})(minimum);
}}"""
TWO_FRAMES_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


@dataclass
class Sample:
    """One timed action: seconds to each milestone and what the browser did meanwhile."""

    seconds: dict[str, float] = field(default_factory=dict)
    long_task_s: float = 0.0
    vega_js_s: float = 0.0
    ws_bytes: int = 0
    server_cpu_s: float = 0.0
    browser_cpu_s: float = 0.0
    note: str = ""
    start: float = 0.0  # time.perf_counter() at the action


class Visitor:
    """A new browser context with one instrumented page: what a new visitor brings."""

    def __init__(self, browser, url: str, server_pid: int):
        self.server_pid = server_pid
        self.context = browser.new_context(viewport=VIEWPORT, base_url=url)
        self.context.set_default_timeout(PAGE_S * 1000)
        self.context.add_init_script(INSTRUMENT_JS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.received = 0
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._count))
        # Same-origin first, so that the profiler below attaches to the renderer that will draw
        # the page (a navigation from about:blank to another site may swap renderers).
        self.page.goto("/_stcore/health")
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.setSamplingInterval", {"interval": 500})

    def _count(self, payload: str | bytes) -> None:
        self.received += len(payload.encode() if isinstance(payload, str) else payload)

    def runs_ended(self) -> int:
        return self.page.evaluate("() => window.__bench.runsEnded")

    @contextlib.contextmanager
    def measured(self):
        """Time the block from its start; after it, add the browser-side cost of the window."""
        sample = Sample()
        self.received = 0
        origin, browser_start = self.page.evaluate(
            "() => [performance.timeOrigin, performance.now()]")
        self.cdp.send("Profiler.start")
        server_before, browser_before = cpu_seconds(self.server_pid), browser_cpu_seconds()
        sample.start = time.perf_counter()
        yield sample
        sample.server_cpu_s = cpu_seconds(self.server_pid) - server_before
        sample.browser_cpu_s = browser_cpu_seconds() - browser_before
        self.page.evaluate(TWO_FRAMES_JS)  # the last frame painted, its long task reported
        profile = self.cdp.send("Profiler.stop")["profile"]
        sample.vega_js_s = vega_seconds(profile)
        # A navigation starts a new document, whose clock starts at 0 again.
        sample.long_task_s = self.page.evaluate(
            "([origin, since]) => window.__bench.long"
            ".filter(([s]) => performance.timeOrigin !== origin || s >= since)"
            ".reduce((sum, [, d]) => sum + d, 0) / 1000", [origin, browser_start])
        sample.ws_bytes = self.received
        if self.errors:
            raise RuntimeError(f"the page raised: {self.errors}")
        exceptions = self.page.locator('[data-testid="stException"]').all_inner_texts()
        if exceptions:
            raise RuntimeError(f"the page shows an exception: {exceptions}")

    def close(self) -> None:
        self.context.close()


def _cpu(processes) -> float:
    import psutil

    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def cpu_seconds(pid: int) -> float:
    """User and system CPU time so far of a process and its children (the server)."""
    import psutil

    process = psutil.Process(pid)
    return _cpu([process, *process.children(recursive=True)])


def browser_cpu_seconds() -> float:
    """CPU time so far of this benchmark's own browser: Playwright's driver and the Chromium it
    started, not other Chromiums on the machine (nor the servers, also children of this one)."""
    import psutil

    return _cpu(p for p in psutil.Process().children(recursive=True)
                if p.name() == "node" or "chrom" in p.name())


def vega_seconds(profile: dict) -> float:
    """Self time of the samples whose function lies in one of the Vega chunks."""
    in_vega = {node["id"] for node in profile["nodes"]
               if any(chunk in node["callFrame"]["url"] for chunk in VEGA_CHUNKS)}
    return sum(delta for node, delta in zip(profile.get("samples", []),
                                            profile.get("timeDeltas", []))
               if node in in_vega) / 1e6


def since(sample: Sample) -> float:
    return time.perf_counter() - sample.start


def open_page(visitor: Visitor, query: str, minimum: int, first_chart: bool) -> Sample:
    """Open the page and wait until it is fully drawn (and, if asked, for its first chart)."""
    with visitor.measured() as sample:
        visitor.page.goto(f"/{query}", wait_until="commit")
        if first_chart:
            visitor.page.wait_for_selector(FIRST_CHART, timeout=PAGE_S * 1000)
            sample.seconds["first chart"] = since(sample)
        visitor.page.wait_for_function(DRAWN_JS, arg=[minimum, 0], timeout=PAGE_S * 1000)
        sample.seconds["drawn"] = since(sample)
    return sample


def change_depth(visitor: Visitor, minimum: int) -> Sample:
    """Depth 20 -> 30 by one click on the slider's track, to redraw complete."""
    slider = visitor.page.locator(".st-key-depth")
    value = slider.locator("input[type='range']")
    start = value.input_value(timeout=ELEMENT_S * 1000)
    if start != "20":
        raise RuntimeError(f"the depth slider starts at {start}, not 20")
    low, high = float(value.get_attribute("min")), float(value.get_attribute("max"))
    # the track: the element that positions the thumb (react-aria's, without a role)
    box = slider.locator("div[data-rac][data-orientation='horizontal']:not([role])"
                         ).bounding_box(timeout=ELEMENT_S * 1000)
    x = box["x"] + box["width"] * (30 - low) / (high - low)
    runs = visitor.runs_ended()
    with visitor.measured() as sample:
        visitor.page.mouse.click(x, box["y"] + box["height"] / 2)
        visitor.page.wait_for_function(DRAWN_JS, arg=[minimum, runs], timeout=PAGE_S * 1000)
        sample.seconds["drawn"] = since(sample)
    shown = value.input_value()
    if shown != "30" or "depth=30" not in visitor.page.url:
        raise RuntimeError(f"the slider shows {shown} and the URL is {visitor.page.url}")
    sample.note = f"{visitor.runs_ended() - runs} script run(s)"
    return sample


def open_tab(visitor: Visitor, name: str, minimum: int) -> Sample:
    """Click the tab of section ``name``, to its charts drawn: the tab's content is computed
    and sent only when it is chosen (a script run), so this is what a person waits for."""
    tab = visitor.page.get_by_role("tab", name=name, exact=True)
    runs = visitor.runs_ended()
    with visitor.measured() as sample:
        tab.click(timeout=ELEMENT_S * 1000)
        visitor.page.wait_for_function(DRAWN_JS, arg=[minimum, runs], timeout=PAGE_S * 1000)
        sample.seconds["drawn"] = since(sample)
    if tab.get_attribute("aria-selected") != "true" or f"section={name}" not in visitor.page.url:
        raise RuntimeError(f"the {name} tab is not open: the URL is {visitor.page.url}")
    sample.note = f"{visitor.runs_ended() - runs} script run(s)"
    return sample


def train(visitor: Visitor, bound_s: float = TRAIN_S) -> Sample:
    """Press Train on the open Training tab: to the first training point drawn and to finished.
    A race not seen finished ``bound_s`` after the click is stopped (if it still runs) and
    recorded without its finish, with what its progress bar says."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # Before the first point the Training tab draws no chart; with it, its curves appear.
    before = visitor.page.locator(f"{CHART}:visible").count()
    with visitor.measured() as sample:
        visitor.page.locator(".st-key-train_button button").click()
        visitor.page.wait_for_function(CHARTS_DRAWN_JS, arg=before + 1, timeout=bound_s * 1000)
        sample.seconds["first point"] = since(sample)
        try:
            visitor.page.wait_for_function(RACE_OVER_JS, arg=[TRAINING_CHARTS],
                                           timeout=max(bound_s - since(sample), 1) * 1000)
            sample.seconds["finished"] = since(sample)
        except PlaywrightTimeout:
            stop = visitor.page.locator(".st-key-stop_button button")
            if stop.is_enabled(timeout=ELEMENT_S * 1000):  # disabled: the race ended meanwhile
                stop.click(timeout=ELEMENT_S * 1000)
    progress = visitor.page.locator('[data-testid="stMain"] [data-testid="stProgress"]'
                                    ).inner_text(timeout=ELEMENT_S * 1000).strip()
    sample.note = progress if "finished" in sample.seconds else \
        f"not seen finished {bound_s:.0f} s after the click: {progress}"
    return sample


@contextlib.contextmanager
def server(minimal: bool, log: Path):
    """A fresh server of the app or of the minimal page, always stopped. ``start_server`` runs
    ``app.py`` in ``live_app.REPO``: for the minimal page that is a scratch directory holding it as
    ``app.py`` beside the repository's ``.streamlit`` configuration."""
    with tempfile.TemporaryDirectory() as scratch:
        home = live_app.REPO
        if minimal:
            (Path(scratch) / "app.py").symlink_to(HERE / "minimal_app.py")
            (Path(scratch) / ".streamlit").symlink_to(REPO / ".streamlit")
            live_app.REPO = Path(scratch)
        try:
            running = live_app.start_server(log)
        except pytest.fail.Exception as failure:
            raise RuntimeError(str(failure)) from None
        finally:
            live_app.REPO = home
        try:
            yield running
        finally:
            running.stop()


def show(action: str, sample: Sample) -> None:
    print(f"  {action}: " + ", ".join(f"{k} {v:.2f} s" for k, v in sample.seconds.items())
          + f"; long tasks {sample.long_task_s:.2f} s, Vega JS {sample.vega_js_s:.2f} s, "
          f"websocket {sample.ws_bytes / 1e3:.0f} kB, CPU: server {sample.server_cpu_s:.1f} s, "
          f"browser {sample.browser_cpu_s:.1f} s" + (f" ({sample.note})" if sample.note else ""),
          flush=True)


class Samples(dict):
    """Samples by action, each printed as it is taken (a run cut short keeps what it printed)."""

    def __setitem__(self, action: str, sample: Sample) -> None:
        show(action, sample)
        super().__setitem__(action, sample)


def one_repeat(browser, minimal: bool, with_training: bool, log: Path,
               train_bound_s: float = TRAIN_S) -> dict[str, Sample]:
    """The minimal page: cold, warm, slider. The app on the Signal tab (what it opens on): the
    same, then a click on the Theory tab; then, if asked, both races on their Training tabs."""
    minimum = 1 if minimal else SIGNAL_CHARTS
    samples: dict[str, Sample] = Samples()
    with server(minimal, log) as running:
        for name in ("cold first page", "warm visitor"):
            visitor = Visitor(browser, running.url, running.proc.pid)
            try:
                samples[name] = open_page(visitor, "", minimum, first_chart=True)
                if name == "warm visitor":
                    samples["slider change"] = change_depth(visitor, minimum)
                    if not minimal:
                        samples["open the Theory tab"] = open_tab(visitor, "Theory",
                                                                  THEORY_CHARTS)
            finally:
                visitor.close()
        if with_training:
            for name, query in TRAINING_VIEWS:
                visitor = Visitor(browser, running.url, running.proc.pid)
                try:
                    open_page(visitor, query, 0, first_chart=False)
                    samples[name] = train(visitor, train_bound_s)
                finally:
                    visitor.close()
    return samples


def median(values: list[float | None]) -> float:
    """The median of the values taken (a race that did not finish has none)."""
    taken = [value for value in values if value is not None]
    return statistics.median(taken) if taken else float("nan")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "cpu_model": cpu_model(), "platform": platform.platform(),
            "python": platform.python_version(), "streamlit": streamlit.__version__}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def uptime() -> str:
    """What ``uptime`` says (the load averages), or the load averages where it is missing."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    return "load average: " + ", ".join(f"{load:.2f}" for load in os.getloadavg())


def report(runs: dict[str, list[dict[str, Sample]]], minimal_unit: str = "slider change") -> list:
    """The table's rows: (action, milestone, app's median s, minimal page's median s, ratio,
    the minimal page's action it is taken against)."""
    rows = []
    for action in runs["app"][0]:
        baseline_action = action if action in runs["minimal"][0] else minimal_unit
        for milestone in dict.fromkeys(m for r in runs["app"] for m in r[action].seconds):
            seconds = median([r[action].seconds.get(milestone) for r in runs["app"]])
            base = median([r[baseline_action].seconds.get(milestone, r[baseline_action]
                                                          .seconds["drawn"])
                           for r in runs["minimal"]])
            rows.append((action, milestone, seconds, base, seconds / base, baseline_action))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers per page (3)")
    parser.add_argument("--no-train", action="store_true", help="skip the two races")
    parser.add_argument("--train-bound", type=float, default=TRAIN_S, metavar="S",
                        help=f"give up on a race this long after Train ({TRAIN_S} s)")
    parser.add_argument("--json", type=Path, help="write every sample and the medians here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    executable = chromium_path()
    if executable is None:
        print("Chromium is not installed (no /usr/bin/chromium, no `chromium` on PATH): "
              "install Debian's chromium to run this benchmark.")
        return 2
    from playwright.sync_api import sync_playwright

    LOGS.mkdir(parents=True, exist_ok=True)
    load_before = uptime()
    print(f"uptime before: {load_before}", flush=True)
    runs: dict[str, list[dict[str, Sample]]] = {"minimal": [], "app": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                             timeout=60_000)
        try:
            for repeat in range(args.repeats):
                for page in ("minimal", "app"):
                    print(f"repeat {repeat + 1}/{args.repeats}: {page} page ...", flush=True)
                    samples = one_repeat(browser, page == "minimal",
                                         not args.no_train and page == "app",
                                         LOGS / f"{page}-{repeat + 1}.log", args.train_bound)
                    runs[page].append(samples)
            version = browser.version
        finally:
            browser.close()
    load_after = uptime()

    rows = report(runs)
    print(f"\nmachine: {machine()}, Chromium {version}")
    print(f"uptime before: {load_before}\nuptime after:  {load_after}\n"
          f"medians of {args.repeats} repeat(s)\n")
    print(f"{'what a person does':<24} {'until':<12} {'app s':>7} {'minimal s':>10} {'ratio':>7}"
          f"  (ratio against the minimal page's)")
    for action, milestone, seconds, base, ratio, against in rows:
        print(f"{action:<24} {milestone:<12} {seconds:7.2f} {base:10.2f} {ratio:7.1f}  {against}")
    print(f"\n{'browser side':<24} {'page':<8} {'long tasks s':>13} {'Vega JS s':>10} "
          f"{'websocket kB':>13} {'server CPU s':>13} {'browser CPU s':>14}")
    for page, samples in runs.items():
        for action in samples[0]:
            print(f"{action:<24} {page:<8} "
                  f"{median([r[action].long_task_s for r in samples]):13.2f} "
                  f"{median([r[action].vega_js_s for r in samples]):10.2f} "
                  f"{median([r[action].ws_bytes for r in samples]) / 1e3:13.0f} "
                  f"{median([r[action].server_cpu_s for r in samples]):13.1f} "
                  f"{median([r[action].browser_cpu_s for r in samples]):14.1f}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {**machine(), "chromium": version, "load_before": load_before,
                        "load_after": load_after, "repeats": args.repeats},
            "samples": {page: [{action: {"seconds": s.seconds, "long_task_s": s.long_task_s,
                                         "vega_js_s": s.vega_js_s, "ws_bytes": s.ws_bytes,
                                         "server_cpu_s": s.server_cpu_s,
                                         "browser_cpu_s": s.browser_cpu_s, "note": s.note}
                                for action, s in run.items()}
                               for run in samples] for page, samples in runs.items()},
            "medians": [{"action": a, "until": m, "app_s": s, "minimal_s": b, "ratio": r,
                         "ratio_against": against} for a, m, s, b, r, against in rows],
        }, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
