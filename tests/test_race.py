"""Training races owned by the server: single flight, leases, Stop from any thread at any moment."""

import gc
import random
import threading
import time

import pytest
import torch

from initviz import race as race_module
from initviz.cache import MemoryLedger
from initviz.network import NetworkSpec
from initviz.race import LEASE_SECONDS, RaceBoard, fitted_seconds, race_work
from initviz.training import TrainSpec

SMALL = dict(network=NetworkSpec.stack(16, 2), seeds=1, batch=32, eval_every=10)


def spec(steps: int = 40, seed: int = 0) -> TrainSpec:
    return TrainSpec(**SMALL, steps=steps, seed=seed)


def wait_until(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Clock:
    """A monotonic clock the test moves by hand, to run leases out."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_race_trains_to_its_end_and_frees_its_memory():
    ledger = MemoryLedger(budget=2**40)
    job = RaceBoard(ledger).start(spec())
    assert job.view().state in ("training", "finished")
    wait_until(lambda: not job.running)
    view = job.view()
    assert view.state == "finished" and view.step == 40 and view.error is None
    # two schemes, one seed, records at steps 0, 10, ..., 40
    assert len(view.records) == 2 * 5
    assert ledger.used == 0


def test_identical_races_in_flight_are_computed_once_and_shared():
    board = RaceBoard(MemoryLedger(budget=2**40))
    jobs, barrier = [], threading.Barrier(30)

    def press_train():
        barrier.wait()
        jobs.append(board.start(spec(steps=200, seed=1)))

    threads = [threading.Thread(target=press_train) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: not any(job.running for job in jobs))
    assert board.started == 1
    views = [job.view() for job in jobs]
    assert {view.state for view in views} == {"finished"}
    assert len({view.records for view in views}) == 1
    # a finished race is served again without training
    again = board.start(spec(steps=200, seed=1))
    assert again.view().state == "finished" and board.started == 1


def test_one_watcher_stopping_leaves_the_race_to_the_others():
    board = RaceBoard(MemoryLedger(budget=2**40))
    leaving, staying = board.start(spec(steps=400, seed=2)), board.start(spec(steps=400, seed=2))
    wait_until(lambda: leaving.view().step > 0)
    leaving.stop()
    frozen = leaving.view()
    assert frozen.state == "stopped"
    wait_until(lambda: not staying.running)
    assert staying.view().state == "finished" and staying.view().step == 400
    assert leaving.view() == frozen  # a stopped view does not move on with the race
    assert board.started == 1


def test_stop_at_random_moments_never_raises_and_always_frees_the_memory():
    rng = random.Random(0)
    ledger = MemoryLedger(budget=2**40)
    board = RaceBoard(ledger)
    errors = []
    for attempt in range(12):
        job = board.start(spec(steps=2000, seed=100 + attempt))
        done = threading.Event()

        def redraw(job=job, done=done):  # the live view, reading the race as a fragment would
            try:
                while not done.is_set():
                    job.view()
            except Exception as error:  # pragma: no cover - what the test looks for
                errors.append(error)

        viewer = threading.Thread(target=redraw)
        viewer.start()
        time.sleep(rng.uniform(0, 0.2))
        presses = [threading.Thread(target=job.stop) for _ in range(rng.randint(1, 3))]
        for press in presses:
            press.start()
        for press in presses:
            press.join()
        done.set()
        viewer.join()
        assert job.view().state in ("stopped", "finished")
        job.stop()  # again, after the end: nothing happens
        wait_until(lambda: ledger.used == 0, seconds=10)
    assert not errors


def test_a_race_whose_watchers_stop_renewing_is_stopped_and_releases_its_memory():
    clock = Clock()
    ledger = MemoryLedger(budget=2**40)
    board = RaceBoard(ledger, clock=clock)
    job = board.start(spec(steps=5000, seed=3))
    wait_until(lambda: job.view().step > 0)  # viewing renews the lease
    assert ledger.used > 0
    clock.now += LEASE_SECONDS + 1  # the tab went quiet
    wait_until(lambda: ledger.used == 0, seconds=10)
    assert job.view().state == "stopped"
    # the spec can be trained again afterwards
    assert board.start(spec(steps=5000, seed=3)).running
    clock.now += LEASE_SECONDS + 1


def test_a_session_that_is_dropped_leaves_its_race_at_once():
    ledger = MemoryLedger(budget=2**40)
    board = RaceBoard(ledger, clock=Clock())  # leases never run out here
    long = TrainSpec(network=NetworkSpec.stack(128, 6), seeds=1, batch=64, steps=2000, seed=4)
    job = board.start(long)
    wait_until(lambda watched=job: watched.view().step > 0)
    other = board.start(long)  # a second watcher of the same race
    del job  # the first session closed: Streamlit dropped its state, and the job with it
    gc.collect()
    time.sleep(0.5)
    assert other.running and ledger.used > 0  # the other one still watches
    del other
    gc.collect()
    wait_until(lambda: ledger.used == 0, seconds=10)  # no lease to run out: stopped now
    assert board.finished(long) is None  # stopped, not run to its end


def test_a_job_collected_inside_its_race_s_lock_does_not_deadlock():
    """The garbage collector runs a collected job's finalizer on whatever thread allocates, also
    one that holds the race's lock (the worker asks under it, every step, whether anyone still
    watches). The finalizer must not wait for that lock: the thread would wait for itself."""
    ledger = MemoryLedger(budget=2**40)
    board = RaceBoard(ledger, clock=Clock())
    long = TrainSpec(network=NetworkSpec.stack(64, 4), seeds=1, batch=64, steps=5000, seed=6)
    jobs = [board.start(long)]
    race = jobs[0]._race
    wait_until(lambda: jobs[0].view().step > 0)

    def collect_inside_the_lock():
        with race._lock:
            jobs.clear()  # the last reference: the finalizer runs here, inside the lock
            gc.collect()

    thread = threading.Thread(target=collect_inside_the_lock, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the finalizer waited for a lock its own thread held"
    wait_until(lambda: ledger.used == 0, seconds=10)  # and the race, left alone, stopped
    assert board.finished(long) is None


def test_a_busy_server_refuses_a_race_until_the_memory_is_back():
    needed = race_module.training.stream(spec(steps=5000, seed=4)).needed_bytes
    board = RaceBoard(MemoryLedger(budget=int(1.5 * needed)))
    first = board.start(spec(steps=5000, seed=4))
    second = board.start(spec(steps=5000, seed=5))
    assert second.view().state == "refused" and "the server is busy" in second.view().error
    first.stop()  # the memory is free when stop returns
    third = board.start(spec(steps=5000, seed=5))
    assert third.running
    third.stop()


def test_a_race_that_fails_says_why_and_frees_its_memory(monkeypatch):
    class Broken:
        needed_bytes, device, device_notice, stopped = 1000, "cpu", None, False

        def __iter__(self):
            raise RuntimeError("boom")
            yield  # pragma: no cover

    monkeypatch.setattr(race_module.training, "stream", lambda spec, stop: Broken())
    ledger = MemoryLedger(budget=2**40)
    board = RaceBoard(ledger)
    job = board.start(spec(seed=6))
    wait_until(lambda: not job.running)
    assert job.view().state == "failed" and "RuntimeError" in job.view().error
    assert ledger.used == 0
    assert board.finished(spec(seed=6)) is None  # a failure is not served to others


def test_a_spec_too_large_is_refused_with_the_number():
    huge = TrainSpec(network=NetworkSpec.stack(2048, 60), seeds=10, batch=2048)
    view = RaceBoard(MemoryLedger(budget=2**40)).start(huge).view()
    assert view.state == "refused" and "over the memory budget" in view.error


def test_the_server_board_is_one_per_process():
    assert race_module.server_board() is race_module.server_board()


def test_the_time_estimate_is_fitted_to_the_races_this_server_finished():
    board = RaceBoard(MemoryLedger(budget=2**40))
    assert board.estimate(spec(steps=100, seed=7)) is None  # nothing measured yet
    job = board.start(spec(steps=40, seed=7))
    wait_until(lambda: not job.running)
    assert board.estimate(spec(steps=80, seed=7)) > 0


def test_the_fit_recovers_a_known_cost_per_multiply_add_and_per_layer_call():
    # races that cost 2 ns per multiply-add and 50 µs per layer call, exactly
    def seconds(work):
        return 2e-9 * work[0] + 5e-5 * work[1]

    works = [race_work(spec(steps=steps)) for steps in (40, 100)]
    works += [race_work(TrainSpec(network=NetworkSpec.stack(64, 8), seeds=2, batch=128,
                                  steps=60))]
    timings = [(*work, seconds(work)) for work in works]
    other = race_work(TrainSpec(network=NetworkSpec.stack(128, 5), seeds=3, batch=64, steps=500))
    assert fitted_seconds(timings, other) == pytest.approx(seconds(other), rel=1e-9)
    assert fitted_seconds([], other) is None


def test_a_race_computes_on_one_cpu_fewer_and_leaves_other_threads_theirs(monkeypatch):
    # On two CPUs a race's two torch threads spun at MKL's barriers whenever the page's browser
    # held one of the cores (benchmarks/README.md): the race takes one, the pages keep both.
    monkeypatch.setattr(race_module, "usable_cpus", lambda: 2)
    process_wide = torch.get_num_threads()
    torch.set_num_threads(2)
    real_stream, seen = race_module.training.stream, []

    class Counted:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __iter__(self):
            for checkpoint in self.inner:
                seen.append(torch.get_num_threads())
                yield checkpoint

    monkeypatch.setattr(race_module.training, "stream",
                        lambda spec, stop: Counted(real_stream(spec, stop=stop)))
    try:
        job = RaceBoard(MemoryLedger(budget=2**40)).start(spec(seed=8))
        wait_until(lambda: not job.running)
        later = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert job.view().state == "finished" and seen == [1] * 5
        assert torch.get_num_threads() == 2 and later == [2]
    finally:
        torch.set_num_threads(process_wide)


def test_a_race_is_filed_with_the_board_before_any_watcher_sees_it_end():
    class SlowToFile(RaceBoard):  # a worker descheduled between the last step and the filing
        def _ended(self, *args):
            time.sleep(0.5)
            super()._ended(*args)

    ledger = MemoryLedger(budget=2**40)
    board = SlowToFile(ledger)
    job = board.start(spec(seed=9))
    wait_until(lambda: not job.running)
    assert board.finished(spec(seed=9)) is not None and board.estimate(spec(seed=9)) > 0
    assert ledger.used == 0
    assert board.start(spec(seed=9)).view().state == "finished" and board.started == 1
