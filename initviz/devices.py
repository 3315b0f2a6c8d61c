"""Choosing where computation runs, and not oversubscribing the CPUs a process may use."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch

from initviz.errors import InvalidSpec

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceChoice:
    """The device that will be used, and a one-line notice when it is not the one asked for."""

    device: torch.device
    notice: str | None = None

    @property
    def name(self) -> str:
        return self.device.type


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return kind == "cpu"


def resolve_device(requested: str = "auto") -> DeviceChoice:
    """``auto`` takes cuda, then mps, then cpu; an unavailable device falls back to cpu."""
    if requested not in DEVICE_CHOICES:
        raise InvalidSpec("device", requested, "one of " + ", ".join(DEVICE_CHOICES))
    if requested == "auto":
        for kind in ("cuda", "mps"):
            if _available(kind):
                return DeviceChoice(torch.device(kind))
        return DeviceChoice(torch.device("cpu"))
    if _available(requested):
        return DeviceChoice(torch.device(requested))
    return DeviceChoice(torch.device("cpu"),
                        f"device {requested!r} is not available here; using cpu instead")


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    ``os.cpu_count()`` reports the host's CPUs, which in a small container can be many more than
    its quota; torch's default of one thread per host CPU then oversubscribes the quota.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def limit_threads() -> int:
    """Cap torch's intra-op threads to :func:`usable_cpus`; returns the number set."""
    threads = usable_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def threads_here(threads: int) -> None:
    """Run the calling thread's torch work on ``threads`` intra-op threads; other threads keep
    theirs, and threads started later still get the process's count.

    ``torch.set_num_threads`` sets the calling thread's own OpenMP and MKL thread counts, and also
    the process-wide count that every thread takes at its first torch op. A short helper thread
    sets that back to what it was; the helper's own counts die with it, this thread's stay.

    Args:
        threads: intra-op threads for this thread (at least 1).
    """
    process_wide = torch.get_num_threads()
    torch.set_num_threads(threads)
    if threads != process_wide:
        helper = threading.Thread(target=torch.set_num_threads, args=(process_wide,),
                                  name="initviz-threads")
        helper.start()
        helper.join()


Item = TypeVar("Item")
Result = TypeVar("Result")


def side_by_side(compute: Callable[[Item], Result], items: Sequence[Item], *,
                 needed_bytes: int, budget: int) -> list[Result]:
    """``[compute(item) for item in items]``, on one thread per usable CPU where they fit.

    Torch releases the GIL inside its kernels, and at the page's sizes a network's computation is
    hundreds of kernels each too short for torch's own threads to pay off: two of them on two
    threads take about 0.7 of the time of one after the other on two cores. ``needed_bytes`` is
    what all the items hold at once when run together; they run together only where it fits in
    ``budget``, so a caller never holds more than its budget. An error is raised for the first
    item (in order) that fails, as the one-by-one loop would raise it.
    """
    workers = min(len(items), usable_cpus())
    if workers < 2 or needed_bytes > budget:
        return [compute(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="initviz") as pool:
        return list(pool.map(compute, items))


__all__ = ["DEVICE_CHOICES", "DeviceChoice", "limit_threads", "resolve_device", "side_by_side",
           "threads_here", "usable_cpus"]
