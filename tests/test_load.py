"""A workshop room on one server: concurrent sessions, each on its own preset link, all training.

One app server on a loopback port and eight clients that speak Streamlit's own websocket protocol,
as a browser tab does: the same messages reach the server (reruns with widget states, the live
training fragment's timer ticks), but nothing is drawn, so on the test machine the CPU goes to the
server, as it does in a real room where every browser runs on its own laptop. (The page in a real
browser is the browser tests' job, tests/browser/.)

Every session opens a different preset link, changes its seed (so that no two sessions share a
training result), presses Train, and follows the live fragment until "finished". Then: every
session finished; each one was shown its own preset, network and seed, and nobody else's; the
server's resident memory stayed under budget and came back down after the room emptied.

Memory is the server's RSS with any children, sampled throughout. Its resting level is read the
same way before and after the room: once no session is active and the disconnected ones have been
dropped. Streamlit keeps a disconnected session for reconnects (``server.disconnectedSessionTTL``,
120 s by default, shortened here so that the test need not wait two minutes) and drops expired ones
when it next stores one, so a short session run after the time to live sweeps them out.

Figures (sessions, messages, peak memory, latencies) go to ``test-artifacts/load.json`` and are
printed; timings are reported, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import psutil
import pytest
import websockets
from live_app import REPO, start_server
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

from initviz.presets import PRESETS

pytestmark = [pytest.mark.load, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts"
ROOM = ["he2015", "glorot2010", "pytorch_default", "zeros", "large_weights", "selu",
        "orthogonal_linear", "isometry"]
"""One preset per person: eight concurrent sessions, each on a different link."""
WARM_UP = "small_weights"
"""The first visitor, before the room: imports torch and the data sets, starts every cache."""
STEPS = 10
TRAINING = f"steps={STEPS}&seeds=1&batch=64&section=Training"
"""Appended to every preset link, so that eight trainings at once fit a 2-core CI machine."""
FIRST_SEED = 101
"""Session i sets seed FIRST_SEED + i: a different training run for every session."""
SWEEP = "depth=1&width=2&compare=kaiming_normal"
"""The smallest page: the short session that makes the server drop expired sessions."""

RSS_BUDGET_MB = 1024
"""The whole server, eight sessions training at once, fits the 1 GB host the issue asks for."""
RESTING_TOLERANCE_MB = 200
"""How far the resting RSS after the room may sit above the resting RSS before it: the bounded
caches (profiles, Jacobians, finished trainings) filling up, plus memory the allocator keeps for
reuse. Measured on a 2-core VM: 5 to 140 MB, and no growth over three rooms in a row (+5, +117,
+40 MB), so it is noise around a plateau, not a leak; a leak of every session's training models
(about 20 MB each here) would add 160 MB a room."""

DISCONNECTED_TTL_S = 2
RUN_S = 300
"""One script run, answered: a first page or a rerun, with eight sessions sharing two cores."""
ROOM_S = 900
SAMPLE_S = 0.2
SESSIONS_GONE_S = 60


# --------------------------------------------------------------------------------------------------
# A client of the page


class PageClient:
    """One browser tab, as far as the server can tell: Streamlit's websocket protocol.

    ``rerun`` sends what the frontend sends when a widget changes (a rerun request with the
    changed widget states; the server keeps the others) and reads the server's messages until that
    run is over. ``elements`` is what the last full run drew, by position; a fragment's runs
    replace its own part. The frontend reruns a fragment with ``run_every`` on a timer that the
    server starts (``auto_rerun``) and stops (a full run that does not start it again, or
    ``stop_auto_rerun``); ``timers`` are the live ones.
    """

    def __init__(self, url: str, query: str):
        self.url = url.replace("http", "ws", 1) + "/_stcore/stream"
        self.query = query
        self.elements: dict[tuple[int, ...], object] = {}
        self.widget_ids: dict[str, str] = {}
        self.timers: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self.sent = self.received = 0

    async def __aenter__(self) -> PageClient:
        # No websocket pings: a browser sends none, and a busy server would answer them late.
        self._socket = await websockets.connect(self.url, subprotocols=["streamlit"],
                                                max_size=None, ping_interval=None)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._socket.close()

    def widget(self, key: str, **value) -> WidgetState:
        """The state of the widget with this key (Streamlit's id ends with ``-{key}``)."""
        return WidgetState(id=self.widget_ids[key], **value)

    async def rerun(self, *states: WidgetState, fragment: str = "") -> None:
        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        msg.rerun_script.widget_states.widgets.extend(states)
        if fragment:
            msg.rerun_script.fragment_id = fragment
            msg.rerun_script.is_auto_rerun = True
        else:
            self._full_run()
        await self._socket.send(msg.SerializeToString())
        self.sent += 1
        await asyncio.wait_for(self._until_finished(), RUN_S)

    async def clear_caches(self) -> None:
        """What the page menu's "Clear cache" sends: Streamlit clears every st.cache_* for all."""
        msg = BackMsg()
        msg.clear_cache = True
        await self._socket.send(msg.SerializeToString())
        self.sent += 1

    async def tick(self) -> float:
        """One tick of the live fragment's timer; returns the seconds left to the next one."""
        (fragment, interval), = self.timers.items()
        start = time.perf_counter()
        await self.rerun(fragment=fragment)
        return interval - (time.perf_counter() - start)

    def texts(self, kind: str, attribute: str) -> list[str]:
        return [getattr(getattr(element, kind), attribute)
                for _, element in sorted(self.elements.items())
                if element.WhichOneof("type") == kind]

    def _full_run(self) -> None:
        self.elements.clear()
        self._started = {}

    async def _until_finished(self) -> None:
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await self._socket.recv())
            self.received += 1
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                self.elements[tuple(msg.metadata.delta_path)] = element
                widget_id = getattr(getattr(element, element.WhichOneof("type")), "id", "")
                if widget_id.startswith("$$ID-"):
                    self.widget_ids[widget_id.split("-", 2)[2]] = widget_id
            elif kind == "delta" and msg.delta.WhichOneof("type") == "add_block" \
                    and msg.delta.add_block.WhichOneof("type") == "tab_container":
                tabs = msg.delta.add_block.tab_container  # the sections, a widget by its key
                self.widget_ids[tabs.id.split("-", 2)[2]] = tabs.id
            elif kind == "auto_rerun":
                self._started[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                for fragment in msg.stop_auto_rerun.fragment_ids:
                    self.timers.pop(fragment, None)
                    self._started.pop(fragment, None)
            elif kind == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    self._full_run()  # st.rerun(): a full run follows at once
                    continue
                if msg.script_finished != ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                    self.timers = dict(self._started)
                return


# --------------------------------------------------------------------------------------------------
# One person in the room


@dataclass
class Session:
    preset: str
    seed: int
    first_page_s: float = 0.0
    seed_rerun_s: float = 0.0
    training_s: float = 0.0
    fragment_reruns: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    code: str = ""
    alerts: list[str] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)


BUSY_RETRIES = 10
BUSY_PAUSE_S = 3


async def served(page: PageClient, *states: WidgetState) -> None:
    """Rerun as a visitor does who is told the server is busy: again in a moment, until served."""
    for _ in range(BUSY_RETRIES):
        await page.rerun(*states)
        if not any("the server is busy" in a for a in page.texts("alert", "body")):
            return
        await asyncio.sleep(BUSY_PAUSE_S)
    raise AssertionError(f"still busy after {BUSY_RETRIES} tries")


async def attend(url: str, session: Session) -> Session:
    """Open the preset link, set the seed, press Train, follow the live curve to "finished"."""
    async with PageClient(url, f"preset={session.preset}&{TRAINING}") as page:
        start = time.perf_counter()
        await served(page)
        session.first_page_s = time.perf_counter() - start

        start = time.perf_counter()
        await served(page, page.widget("seed", int_value=session.seed))
        session.seed_rerun_s = time.perf_counter() - start

        start = time.perf_counter()
        await page.rerun(page.widget("train_button", trigger_value=True))
        while page.timers:
            left = await page.tick()
            session.fragment_reruns += 1
            if page.timers and left > 0:
                await asyncio.sleep(left)  # the browser's timer, not a wait for a condition
        session.training_s = time.perf_counter() - start
        session.progress = page.texts("progress", "text")
        session.exceptions = page.texts("exception", "message")

        await served(page, page.widget("section", string_value="Code"))  # a click on its tab
        session.code = "\n".join(page.texts("code", "code_text"))
        session.alerts = page.texts("alert", "body")
        session.exceptions += page.texts("exception", "message")
        session.messages_sent, session.messages_received = page.sent, page.received
    return session


async def glance(url: str, query: str) -> None:
    """A visitor who opens a page and leaves."""
    async with PageClient(url, query) as page:
        await page.rerun()


# --------------------------------------------------------------------------------------------------
# The server's memory and counters


class RssSampler:
    """Samples the server's resident memory (with any children) until stopped; keeps the peak."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass  # a child that ended between the listing and the reading
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self.now()
            except psutil.NoSuchProcess:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def metrics(url: str) -> dict[str, float]:
    """Streamlit's own counters (``/_stcore/metrics``): sessions connected, active, ..."""
    with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r'(\w+)(?:\{type="(\w+)"\})? (\S+)', line)
        if match:
            name, kind, value = match.groups()
            values[f"{name}.{kind}" if kind else name] = float(value)
    return values


def wait_until_no_session(url: str) -> None:
    """A closed client's session ends when the server notices, which it does asynchronously."""
    deadline = time.monotonic() + SESSIONS_GONE_S
    while metrics(url)["active_sessions"] > 0:
        assert time.monotonic() < deadline, "sessions still active after every client left"
        time.sleep(0.2)


async def at_rest(url: str, sampler: RssSampler) -> int:
    """The server's RSS once every earlier session has been dropped (see the module docstring)."""
    await asyncio.to_thread(wait_until_no_session, url)
    await asyncio.sleep(DISCONNECTED_TTL_S + 0.5)
    await glance(url, SWEEP)
    await asyncio.to_thread(wait_until_no_session, url)
    return sampler.now()


async def workshop(url: str, sampler: RssSampler) -> dict:
    await attend(url, Session(WARM_UP, 1))
    before = await at_rest(url, sampler)
    sampler.peak = before
    start = time.perf_counter()
    room = [Session(name, FIRST_SEED + i) for i, name in enumerate(ROOM)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(attend(url, s) for s in room), return_exceptions=True), ROOM_S)
    room_s = time.perf_counter() - start
    peak = sampler.peak
    after = await at_rest(url, sampler)
    return {"outcomes": outcomes, "room_s": room_s, "before": before, "peak": peak,
            "after": after, "served": metrics(url)}


# --------------------------------------------------------------------------------------------------
# The test


def _mb(n: float) -> float:
    return round(n / 2**20, 1)


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def _summary(room: list[Session], result: dict) -> dict:
    served = result["served"]
    return {
        "sessions": len(room),
        "sessions_connected_in_all": int(served.get("session_events_total.connect", 0)),
        "reruns_requested": sum(s.messages_sent for s in room),
        "messages_received": sum(s.messages_received for s in room),
        "room_wall_s": round(result["room_s"], 1),
        "rss_mb": {"resting_before": _mb(result["before"]), "peak": _mb(result["peak"]),
                   "resting_after": _mb(result["after"]), "budget": RSS_BUDGET_MB,
                   "resting_tolerance": RESTING_TOLERANCE_MB},
        "latency_s": {"first_page": _spread([s.first_page_s for s in room]),
                      "seed_rerun": _spread([s.seed_rerun_s for s in room]),
                      f"training_{STEPS}_steps": _spread([s.training_s for s in room])},
        "per_session": [{k: v for k, v in asdict(s).items() if k not in ("code", "alerts")}
                        for s in room],
    }


def _own_state(session: Session) -> None:
    """This session was shown its own preset, network and seed, and its own finished training."""
    preset = PRESETS[session.preset]
    values = preset.values
    assert not session.exceptions, (session.preset, session.exceptions)
    assert any(alert.startswith(f"**{preset.title}.**") for alert in session.alerts), \
        (session.preset, session.alerts)
    others = [PRESETS[name].title for name in ROOM if name != session.preset]
    assert not any(title in alert for title in others for alert in session.alerts)
    assert f"manual_seed({session.seed})" in session.code, session.preset
    sizes = f"[{values.get('input_dim', 64)}] + [{values['width']}] * {values['depth']}"
    assert sizes in session.code, (session.preset, sizes)
    # A training ends early where every run has diverged (selu at this depth and learning rate).
    finished = rf"(finished|ended early, every run diverged): step \d+ of {STEPS}\b"
    assert len(session.progress) == 1 and re.match(finished, session.progress[0]), \
        (session.preset, session.progress, session.alerts)


def _on_a_server(log_name: str, run) -> dict:
    """``run(url, sampler)`` against a fresh server whose memory is sampled; the server stops
    whatever happens."""
    ARTIFACTS.mkdir(exist_ok=True)
    server = start_server(ARTIFACTS / log_name,
                          "--server.disconnectedSessionTTL", str(DISCONNECTED_TTL_S))
    sampler = RssSampler(server.proc.pid)
    try:
        # A thread of its own, so that this asyncio loop cannot meet the one the browser tests'
        # sync Playwright keeps in the main thread.
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(asyncio.run, run(server.url, sampler)).result()
        server.check_alive()
    finally:
        sampler.stop()
        server.stop()
    return result


def test_a_room_of_sessions_trains_at_once_without_leaking_state_or_memory():
    result = _on_a_server("load-streamlit.log", workshop)

    failed = [(name, o) for name, o in zip(ROOM, result["outcomes"])
              if isinstance(o, BaseException)]
    assert not failed, f"{len(failed)} of {len(ROOM)} sessions failed, first: {failed[0]!r}"
    room = result["outcomes"]
    summary = _summary(room, result)
    (ARTIFACTS / "load.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "per_session"}, indent=2))

    for session in room:
        _own_state(session)
    # The warm-up, the room, and the two sweeps each connected once.
    assert summary["sessions_connected_in_all"] == len(ROOM) + 3
    rss = summary["rss_mb"]
    assert rss["peak"] <= RSS_BUDGET_MB, rss
    assert rss["resting_after"] <= rss["resting_before"] + RESTING_TOLERANCE_MB, rss


# --------------------------------------------------------------------------------------------------
# The README's largest link, a browsing room of 30, and a visitor who clears every cache

WIDE = "width=1024&depth=20&batch=256"
"""The README's width-1024 link: about 250 MiB per profile, so two fit the server's budget."""
BROWSERS = 30
BROWSE_S = 60
"""How long the browsing room lasts; a visitor changes a control about every 5 s within it."""
BROWSE_LINKS = ["width=128&depth=10", "width=256&depth=20", "width=512&depth=10",
                "width=1024&depth=20", "width=64&depth=50&activation=tanh"]


@dataclass
class Visitor:
    query: str
    reruns_s: list[float] = field(default_factory=list)
    busy: int = 0
    exceptions: list[str] = field(default_factory=list)


async def browse(url: str, visitor: Visitor, seconds: float, rng: random.Random) -> Visitor:
    """Open a link, then change the seed every 5 s (± 2 s) until ``seconds`` have passed."""
    end = time.perf_counter() + seconds
    async with PageClient(url, visitor.query) as page:
        changes: list[WidgetState] = []
        while True:
            start = time.perf_counter()
            await page.rerun(*changes)
            visitor.reruns_s.append(time.perf_counter() - start)
            visitor.busy += sum("the server is busy" in a for a in page.texts("alert", "body"))
            visitor.exceptions += page.texts("exception", "message")
            pause = 5 + rng.uniform(-2, 2)
            if time.perf_counter() + pause > end:
                return visitor
            await asyncio.sleep(pause)
            changes = [page.widget("seed", int_value=rng.randrange(10_000))]


async def room_of_visitors(url: str, sampler: RssSampler, visitors: list[Visitor],
                           seconds: float, trainers: int) -> dict:
    await glance(url, SWEEP)  # imports and first caches, outside the measurement
    before = await at_rest(url, sampler)
    sampler.peak = before
    rng = random.Random(19)
    start = time.perf_counter()
    training = [Session(name, FIRST_SEED + i) for i, name in enumerate(ROOM[:trainers])]
    outcomes = await asyncio.wait_for(asyncio.gather(
        *(browse(url, v, seconds, random.Random(rng.random())) for v in visitors),
        *(attend(url, s) for s in training), return_exceptions=True), ROOM_S)
    room_s = time.perf_counter() - start
    latencies = sorted(t for v in visitors for t in v.reruns_s)
    return {
        "visitors": len(visitors), "training": trainers, "room_wall_s": round(room_s, 1),
        "failed": [repr(o) for o in outcomes if isinstance(o, BaseException)],
        "exceptions": [e for v in visitors for e in v.exceptions]
                      + [e for s in training for e in s.exceptions],
        "reruns": len(latencies), "busy_notices": sum(v.busy for v in visitors),
        "rerun_s": {"p50": round(statistics.median(latencies), 2),
                    "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
                    "max": round(latencies[-1], 2)} if latencies else {},
        "rss_mb": {"resting_before": _mb(before), "peak": _mb(sampler.peak),
                   "budget": RSS_BUDGET_MB},
    }


def _serve(name: str, run) -> dict:
    result = _on_a_server(f"load-{name}-streamlit.log", run)
    (ARTIFACTS / f"load-{name}.json").write_text(json.dumps(result, indent=2))
    print(name, json.dumps(result, indent=2))
    return result


def _held_a_room(result: dict) -> None:
    assert not result["failed"] and not result["exceptions"], result
    assert result["rss_mb"]["peak"] <= RSS_BUDGET_MB, result


def test_eight_visitors_open_the_width_1024_link_at_once_within_1_gb():
    visitors = [Visitor(f"{WIDE}&seed={i}") for i in range(8)]
    _held_a_room(_serve("wide", lambda url, sampler: room_of_visitors(
        url, sampler, visitors, 0, trainers=0)))


@pytest.mark.parametrize("trainers", [0, 8])
def test_a_browsing_room_of_30_stays_within_1_gb(trainers):
    rng = random.Random(trainers)
    visitors = [Visitor(f"{rng.choice(BROWSE_LINKS)}&seed={i}") for i in range(BROWSERS)]
    _held_a_room(_serve(f"browse-{trainers}", lambda url, sampler: room_of_visitors(
        url, sampler, visitors, BROWSE_S, trainers)))


async def _race_then_clear(url: str, sampler: RssSampler) -> dict:
    # 214.5 MiB a race: one fits the budget, two do not
    link = "width=512&depth=10&steps=2000&section=Training"
    async with PageClient(url, f"{link}&seed=1") as first, \
            PageClient(url, f"{link}&seed=2") as second:
        await first.rerun()
        await first.rerun(first.widget("train_button", trigger_value=True))
        # The first race holds its reservation: its tab never ticks its fragment here.
        await second.rerun()
        await second.clear_caches()
        await second.rerun(second.widget("train_button", trigger_value=True))
        return {"first": first.texts("progress", "text"),
                "second": second.texts("alert", "body") + second.texts("progress", "text"),
                "failed": [], "exceptions": [],
                "rss_mb": {"peak": _mb(sampler.peak)}}


def test_a_client_that_clears_every_cache_cannot_start_a_race_past_the_budget():
    result = _serve("clear-cache", _race_then_clear)
    assert result["first"] and result["first"][0].startswith("training"), result
    assert any("the server is busy: this training run" in a for a in result["second"]), result
