"""What the sessions of one server share: a bounded LRU of results, and a ledger of the memory
that their long-lived computations (training runs, which keep their models between redraws) hold
at once."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

from initviz.errors import ServerBusy, env_megabytes

DEFAULT_SERVER_MEMORY = 384 * 1024**2
"""Bytes that all sessions' training runs may hold together; ``INITVIZ_SERVER_MEMORY_MB``
overrides it. With the per-computation budget (256 MiB) and the ~450 MB the server itself takes,
this fits a 1 GB host: the estimates it counts run 5–40% above the measured peaks."""


class LRU:
    """Keeps the ``maxsize`` most recently used entries; safe to share between threads."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def server_memory_budget() -> int:
    """Bytes all sessions' training runs may hold together (see :data:`DEFAULT_SERVER_MEMORY`)."""
    return env_megabytes("INITVIZ_SERVER_MEMORY_MB", DEFAULT_SERVER_MEMORY)


class MemoryLedger:
    """Admits long-lived computations while their estimated memory fits one shared budget.

    ``budget`` None reads :func:`server_memory_budget` at every reservation, so a long-running
    server follows its environment. A reservation lasts until its release function is called or
    its ``owner`` is garbage collected (a session that closes mid-training drops its stream, and
    with it the reservation), whichever comes first; releasing twice is harmless.
    """

    def __init__(self, budget: int | None = None):
        self._budget = budget
        self._used = 0
        self._lock = threading.Lock()

    @property
    def budget(self) -> int:
        return server_memory_budget() if self._budget is None else self._budget

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    def reserve(self, what: str, nbytes: int, owner: object) -> Callable[[], None]:
        """Hold ``nbytes`` for ``owner`` or raise :class:`ServerBusy`; returns the release."""
        budget = self.budget
        with self._lock:
            if self._used + nbytes > budget:
                raise ServerBusy(what, nbytes, self._used, budget)
            self._used += nbytes
        return weakref.finalize(owner, self._release, nbytes)

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._used -= nbytes


_server_ledger: MemoryLedger | None = None
_server_ledger_lock = threading.Lock()


def server_ledger() -> MemoryLedger:
    """The one ledger of this process, created on first use. A module global, not a Streamlit
    cache: any client may clear those, and a cleared ledger would forget what is held."""
    global _server_ledger
    with _server_ledger_lock:
        if _server_ledger is None:
            _server_ledger = MemoryLedger()
        return _server_ledger


__all__ = ["DEFAULT_SERVER_MEMORY", "LRU", "MemoryLedger", "server_ledger",
           "server_memory_budget"]
