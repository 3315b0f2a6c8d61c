import gc
import threading

import pytest

from initviz.cache import DEFAULT_SERVER_MEMORY, LRU, MemoryLedger, server_memory_budget
from initviz.errors import ServerBusy


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
