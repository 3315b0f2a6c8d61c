import gc
import platform
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from initviz import cache as shared
from initviz.cache import (DEFAULT_SERVER_MEMORY, LRU, MemoryLedger, cap_malloc_arenas, computed,
                           nbytes_of, server_ledger, server_memory_budget)
from initviz.errors import ServerBusy
from initviz.network import peak_bytes


class Owner:
    """Anything a weak reference can point at, like a training stream."""


def test_least_recently_used_entry_goes_first():
    cache = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2


def test_size_stays_bounded_under_concurrent_writers():
    cache = LRU(8)

    def write(offset):
        for i in range(500):
            cache.put((offset, i), i)
            cache.get((offset, i - 1))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 8


def test_maxsize_must_be_positive():
    with pytest.raises(ValueError):
        LRU(0)
    with pytest.raises(ValueError):
        LRU(4, max_bytes=0)


def test_a_byte_bounded_cache_forgets_the_oldest_until_its_values_fit():
    mib = np.zeros(1024**2 // 8)
    cache = LRU(maxsize=100, max_bytes=3 * 1024**2 + 10_000)
    for key in "abcd":
        cache.put(key, mib.copy())
    assert len(cache) == 3 and cache.get("a") is None and cache.get("d") is not None
    assert 3 * 1024**2 <= cache.nbytes <= 3 * 1024**2 + 10_000
    cache.put("huge", np.zeros(1024**2))  # 8 MiB alone: not kept, and nothing else lost for it
    assert cache.get("huge") is None and len(cache) == 3
    cache.put("d", b"")  # replacing a value gives its bytes back
    assert cache.nbytes < 2 * 1024**2 + 10_000


def test_the_size_of_a_result_counts_its_arrays_and_tables_once():
    table = pd.DataFrame({"x": np.arange(1000, dtype=np.float64), "s": ["abc" * 10] * 1000})
    array = np.ones(5000)
    size = nbytes_of({"t": table, "a": (array, array)})
    columns = table.memory_usage(deep=True).sum()
    assert columns > 16_000  # the strings, not only their pointers
    assert columns + 40_000 <= size <= columns + 40_000 + 2000  # the shared array once


def test_the_ledger_admits_while_the_budget_lasts_and_says_who_holds_what():
    ledger = MemoryLedger(budget=100)
    first, second = Owner(), Owner()
    release_first = ledger.reserve("a run", 60, first)
    ledger.reserve("a run", 40, second)
    assert ledger.used == 100
    with pytest.raises(ServerBusy) as caught:
        ledger.reserve("this training run", 1, Owner())
    assert "needs about 1 B" in str(caught.value) and "hold 100 B of its 100 B" in str(caught.value)
    release_first()
    release_first()  # a second release changes nothing
    assert ledger.used == 40
    ledger.reserve("a run", 60, Owner())


def test_a_reservation_waits_for_memory_freed_by_another_thread():
    ledger = MemoryLedger(budget=100)
    release = ledger.reserve("a profile", 80, Owner())
    threading.Timer(0.2, release).start()
    second = Owner()
    ledger.reserve("a second profile", 50, second, wait=30)  # admitted once the first is freed
    assert ledger.used == 50


def test_a_reservation_that_cannot_fit_is_refused_after_its_wait_or_at_once():
    ledger = MemoryLedger(budget=100)
    first = Owner()
    ledger.reserve("a profile", 80, first)
    started = time.monotonic()
    with pytest.raises(ServerBusy, match="try again in a moment"):
        ledger.reserve("this profile", 50, Owner(), wait=0.2)
    assert time.monotonic() - started >= 0.2
    with pytest.raises(ServerBusy):  # more than the whole budget never fits: no wait
        ledger.reserve("this profile", 101, Owner(), wait=3600)
    assert ledger.used == 80


def test_a_held_block_releases_its_memory_even_when_it_fails():
    ledger = MemoryLedger(budget=100)
    with pytest.raises(RuntimeError), ledger.holding("a profile", 60):
        assert ledger.used == 60
        raise RuntimeError
    assert ledger.used == 0


def test_one_ledger_per_process_whichever_thread_asks_first(monkeypatch):
    monkeypatch.setattr(shared, "_singletons", {})
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(server_ledger())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(ledger) for ledger in seen}) == 1 and seen[0] is server_ledger()


def test_a_shared_result_is_computed_once_under_a_reservation(monkeypatch):
    monkeypatch.setattr(shared, "_singletons", {"ledger": MemoryLedger(budget=100)})
    calls = []

    def compute():
        calls.append(server_ledger().used)
        return "result"

    assert computed(("k", 1), "this profile", 70, compute) == "result"
    assert computed(("k", 1), "this profile", 70, compute) == "result"
    assert calls == [70] and server_ledger().used == 0
    other = Owner()
    server_ledger().reserve("another session's profile", 50, other)
    monkeypatch.setattr(shared, "BUSY_WAIT_SECONDS", 0.05)
    with pytest.raises(ServerBusy, match="the server is busy: this profile needs about 70 B"):
        computed(("k", 2), "this profile", 70, compute)


def test_a_reservation_ends_when_its_owner_is_collected():
    # A session that closes mid-training never calls release; dropping its stream must.
    ledger = MemoryLedger(budget=100)
    owner = Owner()
    ledger.reserve("a run", 70, owner)
    del owner
    gc.collect()
    assert ledger.used == 0


def test_the_server_budget_is_configurable(monkeypatch):
    monkeypatch.setenv("INITVIZ_SERVER_MEMORY_MB", "1.5")
    assert server_memory_budget() == int(1.5 * 1024**2)
    monkeypatch.delenv("INITVIZ_SERVER_MEMORY_MB")
    assert server_memory_budget() == DEFAULT_SERVER_MEMORY


def test_a_computation_reserves_what_side_by_side_holds_at_once():
    assert peak_bytes([30, 40], budget=100) == 70   # together: both at once
    assert peak_bytes([60, 70], budget=100) == 70   # one at a time: the larger
    assert peak_bytes([60, 300], budget=100) == 100  # over the budget: refused before allocating


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the arena cap is glibc's")
def test_the_server_caps_glibc_arenas_unless_the_environment_chose(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert cap_malloc_arenas() is True  # glibc accepted the mallopt call
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
