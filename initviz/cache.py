"""What the sessions of one server share: a byte-bounded LRU of results, and one ledger of the
memory that every computation (profile, Jacobian, phase map, training run) holds at once.

Both live in this module, one per process (:func:`server_ledger`, :func:`results`,
:func:`finished_trainings`), not in Streamlit's caches: Streamlit clears every ``st.cache_*`` for
all sessions on a ``clear_cache`` message from any client, which would forget every reservation
held and let the room allocate the budget again.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from initviz.errors import ServerBusy, env_megabytes

DEFAULT_SERVER_MEMORY = 320 * 1024**2
"""Bytes that all sessions' computations may hold together; ``INITVIZ_SERVER_MEMORY_MB``
overrides it. With the cached results (:data:`RESULTS_BYTES`), the ~510 MB the server itself
takes and what the allocator keeps after a computation, this fits a 1 GB host (the rooms measured
on 384 and on 320 MiB: benchmarks/README.md). Any single computation (at most the 256 MiB
per-computation budget) still fits."""
BUSY_WAIT_SECONDS = 10.0
"""How long a page's computation waits for others to release memory before it is refused: a
profile at the page's largest sizes takes a few seconds, so a short queue clears within it."""
RESULTS_BYTES = 32 * 1024**2
"""Bytes of finished results (profiles, spectra, phase maps) kept for every session to reuse."""
TRAININGS_BYTES = 16 * 1024**2
"""Bytes of finished training curves kept for every session to reuse."""
_M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the most malloc arenas (malloc.h)."""


def nbytes_of(value, _seen: set[int] | None = None) -> int:
    """An estimate of the memory ``value`` holds: array and tensor buffers, DataFrames' columns
    (strings included), and everything reachable through dataclass fields, mappings and
    sequences; each object counted once."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(deep=True).sum())
    if isinstance(value, (pd.Series, pd.Index)):
        return int(value.memory_usage(deep=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(nbytes_of(getattr(value, f.name), seen)
                                          for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(nbytes_of(k, seen) + nbytes_of(v, seen)
                                          for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + sum(nbytes_of(item, seen) for item in value)
    return sys.getsizeof(value)


class LRU:
    """Keeps the most recently used entries, at most ``maxsize`` of them and, with ``max_bytes``,
    at most that many bytes (each value's size by :func:`nbytes_of`, taken once as it is put; a
    value larger than ``max_bytes`` alone is not kept). Safe to share between threads."""

    def __init__(self, maxsize: int, max_bytes: int | None = None):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        size = 0 if self.max_bytes is None else nbytes_of(value)
        with self._lock:
            self._forget(key)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._items[key] = value
            self._sizes[key] = size
            self._bytes += size
            while len(self._items) > self.maxsize or (
                    self.max_bytes is not None and self._bytes > self.max_bytes):
                self._forget(next(iter(self._items)))

    def _forget(self, key: Hashable) -> None:
        if key in self._items:
            del self._items[key]
            self._bytes -= self._sizes.pop(key)

    @property
    def nbytes(self) -> int:
        """The bytes of the values held, as measured when each was put."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def server_memory_budget() -> int:
    """Bytes all sessions' training runs may hold together (see :data:`DEFAULT_SERVER_MEMORY`)."""
    return env_megabytes("INITVIZ_SERVER_MEMORY_MB", DEFAULT_SERVER_MEMORY)


class _Hold:
    """The owner of a reservation held for the length of a ``with`` block."""


class MemoryLedger:
    """Admits computations while their estimated memory fits one shared budget.

    ``budget`` None reads :func:`server_memory_budget` at every reservation, so a long-running
    server follows its environment. A reservation lasts until its release function is called or
    its ``owner`` is garbage collected (a session that closes mid-training drops its stream, and
    with it the reservation), whichever comes first; releasing twice is harmless.
    """

    def __init__(self, budget: int | None = None):
        self._budget = budget
        self._used = 0
        self._freed = threading.Condition()

    @property
    def budget(self) -> int:
        return server_memory_budget() if self._budget is None else self._budget

    @property
    def used(self) -> int:
        with self._freed:
            return self._used

    def reserve(self, what: str, nbytes: int, owner: object, *, wait: float = 0.0
                ) -> Callable[[], None]:
        """Hold ``nbytes`` for ``owner``; returns the function that releases them.

        Args:
            what: the computation, as the refusal names it ("this profile").
            nbytes: its estimated peak memory.
            owner: the object whose collection releases the reservation too.
            wait: seconds to wait for other reservations to be released before refusing.

        Raises:
            ServerBusy: the budget stays taken for ``wait`` seconds, or ``nbytes`` alone exceeds
                it (then at once).
        """
        budget = self.budget
        deadline = time.monotonic() + wait
        with self._freed:
            while self._used + nbytes > budget:
                left = deadline - time.monotonic()
                if nbytes > budget or left <= 0:
                    raise ServerBusy(what, nbytes, self._used, budget)
                self._freed.wait(left)
            self._used += nbytes
        return weakref.finalize(owner, self._release, nbytes)

    @contextmanager
    def holding(self, what: str, nbytes: int, *, wait: float = BUSY_WAIT_SECONDS
                ) -> Iterator[None]:
        """Hold ``nbytes`` for the ``with`` block (see :meth:`reserve`)."""
        owner = _Hold()  # alive until the block ends: its collection would release too early
        release = self.reserve(what, nbytes, owner, wait=wait)
        try:
            yield
        finally:
            release()

    def _release(self, nbytes: int) -> None:
        with self._freed:
            self._used -= nbytes
            self._freed.notify_all()
        return_freed_memory()


_singletons: dict[str, object] = {}
_singletons_lock = threading.Lock()


def _process_wide(name: str, make: Callable[[], object]):
    with _singletons_lock:
        if name not in _singletons:
            _singletons[name] = make()
        return _singletons[name]


def _load_glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018  (AttributeError where absent: musl)
    except (OSError, AttributeError):
        return None
    return libc


_glibc = _load_glibc()


def cap_malloc_arenas(arenas: int | None = None) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas (default: one per core).

    glibc gives a thread that finds the arenas busy a new one, up to eight per core, and each keeps
    the memory freed in it for reuse. A server runs every session's script on its own thread, so a
    room of 30 spread its computations over 16 arenas on 2 cores, and the server's resident memory
    rose past what the ledger admits (the room with and without the cap: benchmarks/README.md). A
    ``MALLOC_ARENA_MAX`` in the environment is the operator's choice and is kept.

    Returns:
        Whether the cap was set: False off glibc (macOS, Windows, musl) or when the environment
        sets it.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or _glibc is None:
        return False
    return _glibc.mallopt(_M_ARENA_MAX, arenas or os.cpu_count() or 1) == 1


def return_freed_memory() -> None:
    """Hand the pages that malloc holds free back to the system (glibc's ``malloc_trim``).

    Called when a reservation is released: a finished computation's tensors are freed into its
    arena, which otherwise keeps them resident for the next allocation of that thread, so the
    server's memory would follow the room's largest moment rather than what it holds now.
    """
    if _glibc is not None:
        _glibc.malloc_trim(0)


def server_ledger() -> MemoryLedger:
    """The one ledger of this process: every session's computations reserve their memory here.

    Its creation also caps the allocator's arenas (:func:`cap_malloc_arenas`), before the room's
    script threads allocate: the ledger bounds what computations hold, the cap what malloc keeps.
    """
    def make() -> MemoryLedger:
        cap_malloc_arenas()
        return MemoryLedger()
    return _process_wide("ledger", make)


def results() -> LRU:
    """Finished results shared by every session of this process, bounded in bytes."""
    return _process_wide("results", lambda: LRU(maxsize=256, max_bytes=RESULTS_BYTES))


def finished_trainings() -> LRU:
    """Finished training results shared by every session of this process, by their TrainSpec."""
    return _process_wide("trainings", lambda: LRU(maxsize=32, max_bytes=TRAININGS_BYTES))


_MISSING = object()


def computed(key: Hashable, what: str, nbytes: int, compute: Callable[[], object]):
    """The shared result for ``key``, or ``compute()`` run while ``nbytes`` are reserved in
    :func:`server_ledger` (waiting up to :data:`BUSY_WAIT_SECONDS`), then kept in :func:`results`.

    Raises:
        ServerBusy: other sessions' computations keep the server's memory taken.
    """
    cache = results()
    value = cache.get(key, _MISSING)
    if value is _MISSING:
        with server_ledger().holding(what, nbytes):
            value = compute()
        cache.put(key, value)
    return value


__all__ = ["BUSY_WAIT_SECONDS", "DEFAULT_SERVER_MEMORY", "LRU", "MemoryLedger", "RESULTS_BYTES",
           "TRAININGS_BYTES", "cap_malloc_arenas", "computed", "finished_trainings", "nbytes_of",
           "results", "return_freed_memory", "server_ledger", "server_memory_budget"]
