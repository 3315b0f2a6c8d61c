"""Training races run by the server, shared by every session that asked for the same one.

A page cannot train inside its own reruns: a Stop pressed while the live view is inside the
training generator raced it ("generator already executing"), and a tab that stopped rerunning (a
closed lid, a background tab) held its share of the server's memory forever. Here a race is
owned by the server instead:

* :class:`Race`: one :class:`~initviz.training.TrainSpec` trained to its end by a worker thread.
  Only that thread touches the training stream; everyone else reads immutable snapshots
  (:class:`RaceView`) published under a lock.
* :class:`RaceBoard`: the process-wide registry. Identical specs in flight are trained once and
  watched by every session that asked (single flight); finished races are kept (a bounded LRU)
  and served again at once. Each watcher holds a *lease* that its page renews whenever it draws
  the race; a race nobody watches any more (every watcher stopped, or let its lease run out) is
  stopped between two steps and gives its memory back to the server's ledger.
* :class:`TrainingJob`: one session's hold on one race, the only training state a page keeps.
  ``stop()`` may be called from any thread at any moment, any number of times.

Example::

    board = RaceBoard(MemoryLedger())
    job = board.start(TrainSpec(NetworkSpec.stack(32, 3), steps=40))
    while job.view().running:
        time.sleep(0.1)
    print(job.view().state, job.view().step)
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import nnls

from initviz import training
from initviz.cache import LRU, MemoryLedger, finished_trainings, server_ledger
from initviz.devices import threads_here, usable_cpus
from initviz.errors import InitvizError
from initviz.records import RunRecord
from initviz.training import TrainSpec

LEASE_SECONDS = 90.0
"""A watcher that has not drawn its race for this long is gone. The page renews its lease at every
redraw, twice a second, but a redraw of a server busy with a room can take many seconds, and
Chrome slows a hidden tab's timers to once a minute: a shorter lease stopped the races of people
still watching. A closed tab leaves sooner: its session is dropped (``disconnectedSessionTTL``),
and with it its :class:`TrainingJob`, whose collection drops its lease at once."""
STOP_WAIT_SECONDS = 5.0
"""How long a stop waits for the worker to leave its current step and free its memory."""
FINISHED_RACES = 32
SWITCH_INTERVAL = 1e-4
"""Seconds a thread may hold the GIL while another waits (Python's default: 5 ms). A race's worker
releases the GIL in every torch op and must win it back to go on; while a page's script thread
runs Python, each of those hand-backs waited out the whole interval, hundreds per step: a
30-layer race beside a busy thread ran 14 times slower than alone at 5 ms, 1.45 times at 0.1 ms
(benchmarks/README.md)."""
TIMED_RACES = 16
"""The time estimate is fitted to this many of the server's latest finished races."""

log = logging.getLogger(__name__)


def race_threads() -> int:
    """Torch threads for a race's worker: one CPU fewer than the process may use, at least one.

    A race never has the CPUs to itself: the page that watches it reruns every half second, and
    a browser on the same machine draws it. With two threads on two CPUs, every matmul waited at
    MKL's barrier for a thread that the browser or another process held, spinning meanwhile: 40
    steps of a 30-layer race took 14-57 s (11-38 s of CPU) on two threads against 6-9 s on one,
    with other work on the machine (benchmarks/README.md).
    """
    return max(1, usable_cpus() - 1)


STATES = ("training", "finished", "diverged", "stopped", "failed", "refused")


@dataclass(frozen=True)
class RaceView:
    """What a race looked like at one moment: safe to read from any thread.

    ``state`` is one of :data:`STATES`: ``training`` while it runs; ``finished`` after its last
    step; ``diverged`` when it ended early because every run diverged; ``stopped`` when the viewer
    stopped it (or stopped watching it); ``failed`` when training raised (``error`` says why);
    ``refused`` when it never started (``error``: too large, or the server is busy).
    """

    spec: TrainSpec
    state: str
    records: tuple[RunRecord, ...] = ()
    step: int = 0
    seconds: float = 0.0
    device: str = ""
    notice: str | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state == "training"


def race_work(spec: TrainSpec) -> tuple[float, float]:
    """What a race computes, as the two numbers its time is fitted on.

    Returns:
        ``(multiply_adds, layer_steps)``: the multiply-adds of every update (forward and two
        backward products per weight, for every run) and evaluation, and the number of layer
        calls, which costs the same whatever the width (dispatch, elementwise work).
    """
    data = spec.load_data()
    evaluations = len(spec.eval_steps)
    weights = spec.network.parameter_count(data.n_classes)
    rows = 3 * spec.batch * spec.steps + len(data.y_val) * evaluations
    layers = spec.network.depth + 1
    return len(spec.runs) * weights * rows, layers * (spec.steps + evaluations)


def fitted_seconds(timings: list[tuple[float, float, float]],
                   work: tuple[float, float]) -> float | None:
    """Seconds for ``work`` by the races timed so far.

    Args:
        timings: ``(multiply_adds, layer_steps, seconds)`` of finished races.
        work: ``(multiply_adds, layer_steps)`` of the race to time (:func:`race_work`).

    Returns:
        ``a·multiply_adds + b·layer_steps`` with ``a, b ≥ 0`` fitted to ``timings`` by
        non-negative least squares; None without timings.
    """
    if not timings:
        return None
    measured = np.array(timings, dtype=float)
    scale = measured[:, :2].max(axis=0)  # both columns near 1, so neither dominates the fit
    rates, _ = nnls(measured[:, :2] / scale, measured[:, 2])
    return float(np.dot(np.array(work, dtype=float) / scale, rates))


class Race:
    """One spec trained by a worker thread; ``watch``/``unwatch`` tell it who still looks."""

    def __init__(self, spec: TrainSpec, ledger: MemoryLedger, watcher: str,
                 on_end: Callable[[Race, RaceView], None],
                 clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._watchers = {watcher: clock() + LEASE_SECONDS}  # token -> lease expiry
        self._left: deque[str] = deque()  # tokens of collected jobs, dropped under the lock
        self._cancelled = False
        self._on_end = on_end
        self._stream = training.stream(spec, stop=self._abandoned)  # validates, checks memory
        self._view = RaceView(spec=spec, state="training", device=self._stream.device,
                              notice=self._stream.device_notice)
        self._release = ledger.reserve("this training run", self._stream.needed_bytes, self)
        self._thread = threading.Thread(target=self._run, name=f"initviz-race-{id(self):x}",
                                        daemon=True)

    @property
    def spec(self) -> TrainSpec:
        return self._view.spec

    def view(self) -> RaceView:
        with self._lock:
            return self._view

    def start(self) -> None:
        self._thread.start()

    def watch(self, token: str) -> bool:
        """Add or renew ``token``'s lease; False once the race ended or is stopping."""
        with self._lock:
            if self._view.state != "training" or self._no_watchers():
                return False
            self._watchers[token] = self._clock() + LEASE_SECONDS
            return True

    def leave(self, token: str) -> None:
        """Drop ``token`` without waiting: the race stops at its next step if nobody is left.

        Called when a session's job is collected. The garbage collector runs on whatever thread
        allocates, possibly one inside this race's lock (the worker, asking whether anyone still
        watches): taking the lock here would deadlock that thread, so the token is only queued
        (``deque.append`` is atomic) and dropped by the next :meth:`_no_watchers`.
        """
        self._left.append(token)

    def unwatch(self, token: str) -> None:
        """Drop ``token``; with nobody left, the race stops and this waits for its memory."""
        with self._lock:
            self._watchers.pop(token, None)
            abandoned = self._no_watchers()
        if abandoned and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_WAIT_SECONDS)

    def cancel(self) -> None:
        """Stop whoever watches (the server shuts down) and wait for the worker to end."""
        with self._lock:
            self._cancelled = True
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_SECONDS)

    def _no_watchers(self) -> bool:
        """Drop the leases that ran out; True when none is left. Call with the lock held."""
        while self._left:
            self._watchers.pop(self._left.popleft(), None)
        now = self._clock()
        for token in [t for t, expiry in self._watchers.items() if expiry <= now]:
            del self._watchers[token]
        return not self._watchers

    def _abandoned(self) -> bool:
        with self._lock:
            return self._cancelled or self._no_watchers()

    def _publish(self, **changes) -> None:
        with self._lock:
            self._view = replace(self._view, **changes)

    def _run(self) -> None:
        records: tuple[RunRecord, ...] = ()
        end: dict = {}
        try:
            threads_here(race_threads())
            for checkpoint in self._stream:
                records += checkpoint.records
                self._publish(records=records, step=checkpoint.step, seconds=checkpoint.seconds)
            view = self.view()
            end = {"state": "stopped" if self._stream.stopped else
                            "finished" if view.step == view.spec.steps else "diverged"}
        except InitvizError as error:
            end = {"state": "failed", "error": str(error)}
        except Exception as error:  # a worker must always end its race and free its memory
            log.exception("training race failed")
            end = {"state": "failed",
                   "error": f"training failed ({type(error).__name__}); try other settings"}
        finally:
            self._stream = None  # the models and data go now, not when the race is forgotten
            self._release()
            # Filed with the board (finished, timed) and its memory back before any watcher can
            # see that it ended: one who presses Train again then gets it, not a second race.
            self._on_end(self, replace(self.view(), **end))
            self._publish(**end)


class RaceBoard:
    """The server's races: started once per spec, shared, leased, and kept when finished."""

    def __init__(self, ledger: MemoryLedger, finished: LRU | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._ledger = ledger
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[TrainSpec, Race] = {}
        self._finished = LRU(FINISHED_RACES) if finished is None else finished
        self._timings: deque[tuple[float, float, float]] = deque(maxlen=TIMED_RACES)
        self.started = 0
        """How many races this board has started: single flight keeps it at one per spec."""

    def start(self, spec: TrainSpec) -> TrainingJob:
        """A job on ``spec``: a finished race, the race in flight, or a new one (or a refusal)."""
        job = TrainingJob(self, spec)
        return job._attach(self._join(spec, job.token))

    def estimate(self, spec: TrainSpec) -> float | None:
        """Seconds ``spec`` would take here, fitted (non-negative least squares on
        :func:`race_work`) to this server's latest finished races; None before the first."""
        with self._lock:
            timings = list(self._timings)
        return fitted_seconds(timings, race_work(spec))

    def finished(self, spec: TrainSpec) -> RaceView | None:
        """The finished race of ``spec``, if this server has one."""
        return self._finished.get(spec)

    def _join(self, spec: TrainSpec, token: str) -> Race | RaceView:
        for _ in range(2):
            with self._lock:
                done = self._finished.get(spec)
                if done is not None:
                    return done
                race = self._running.get(spec)
                if race is None:
                    try:
                        race = Race(spec, self._ledger, token, self._ended, self._clock)
                    except InitvizError as error:
                        return RaceView(spec=spec, state="refused", error=str(error))
                    self._running[spec] = race
                    self.started += 1
                    race.start()
                    return race
                if race.watch(token):
                    return race
            race.unwatch(token)  # it is stopping: wait for it to end, then start anew
        return RaceView(spec=spec, state="refused",
                        error="the same training is still stopping; press Train again")

    def close(self) -> None:
        """Stop every race in flight and wait for them: a worker thread still inside torch when
        the interpreter exits aborts the process."""
        with self._lock:
            races = list(self._running.values())
        for race in races:
            race.cancel()

    def _ended(self, race: Race, view: RaceView) -> None:
        with self._lock:
            if self._running.get(view.spec) is race:
                del self._running[view.spec]
            if view.state in ("finished", "diverged"):
                self._finished.put(view.spec, view)
            if view.state == "finished":
                self._timings.append((*race_work(view.spec), view.seconds))


class TrainingJob:
    """One session's hold on a race: what its page shows, and its Stop button."""

    def __init__(self, board: RaceBoard, spec: TrainSpec):
        self.spec = spec
        self.token = uuid.uuid4().hex
        self._board = board
        self._lock = threading.Lock()
        self._race: Race | None = None
        self._final: RaceView | None = None

    def _attach(self, target: Race | RaceView) -> TrainingJob:
        if isinstance(target, Race):
            self._race = target
            weakref.finalize(self, target.leave, self.token)  # the session is gone
        else:
            self._final = target
        return self

    def view(self) -> RaceView:
        """The race as this session sees it now; renews this session's lease while it runs."""
        with self._lock:
            if self._final is not None:
                return self._final
            race = self._race
        view = race.view()
        if view.running and not race.watch(self.token):
            view = race.view()  # it ended between the two reads
        if not view.running:
            with self._lock:
                if self._final is None:
                    self._final = view
                return self._final
        return view

    @property
    def running(self) -> bool:
        return self.view().running

    def stop(self) -> None:
        """Stop watching: the view stays where it was, marked stopped. Safe at any moment."""
        with self._lock:
            if self._final is not None:
                return
            race = self._race
            view = race.view()
            self._final = view if not view.running else replace(view, state="stopped")
        race.unwatch(self.token)


_board: RaceBoard | None = None
_board_lock = threading.Lock()


def server_board() -> RaceBoard:
    """The process-wide board, on the server's memory ledger. Not in a Streamlit cache: a
    client's ``clear_cache`` message must not forget the races that hold the server's memory."""
    global _board
    with _board_lock:
        if _board is None:
            _board = RaceBoard(server_ledger(), finished_trainings())
            atexit.register(_board.close)
            # a server's races share the interpreter with its pages: see SWITCH_INTERVAL
            sys.setswitchinterval(SWITCH_INTERVAL)
        return _board


__all__ = ["LEASE_SECONDS", "Race", "RaceBoard", "RaceView", "STATES", "TrainingJob",
           "fitted_seconds", "race_threads", "race_work", "server_board"]
