"""Choosing where computation runs, and not oversubscribing the CPUs a process may use."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

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


__all__ = ["DEVICE_CHOICES", "DeviceChoice", "limit_threads", "resolve_device", "usable_cpus"]
