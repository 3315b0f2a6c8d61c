"""Computing the compared schemes side by side: the same numbers as one at a time, within budget."""

import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from initviz import devices
from initviz.devices import side_by_side
from initviz.errors import InvalidSpec
from initviz.jacobian import jacobian_spectra, jacobian_spectrum
from initviz.network import NetworkSpec, estimate_bytes
from initviz.probe import profile, profiles

SCHEMES = ("kaiming_normal", "xavier_normal", "orthogonal", "lecun_normal")


@pytest.fixture
def two_cpus(monkeypatch):
    """As on a two-core host, whatever this machine has."""
    monkeypatch.setattr(devices, "usable_cpus", lambda: 2)


def _thread_of(item):
    return item, threading.current_thread().name


def test_items_run_on_worker_threads_in_order_where_they_fit(two_cpus):
    results = side_by_side(_thread_of, [1, 2, 3], needed_bytes=100, budget=100)
    assert [item for item, _ in results] == [1, 2, 3]
    assert all(name.startswith("initviz") for _, name in results)


def test_items_run_one_by_one_where_together_they_exceed_the_budget(two_cpus):
    results = side_by_side(_thread_of, [1, 2, 3], needed_bytes=101, budget=100)
    assert [name for _, name in results] == [threading.current_thread().name] * 3


def test_one_usable_cpu_runs_one_by_one(monkeypatch):
    monkeypatch.setattr(devices, "usable_cpus", lambda: 1)
    results = side_by_side(_thread_of, [1, 2], needed_bytes=0, budget=100)
    assert [name for _, name in results] == [threading.current_thread().name] * 2


def test_the_first_failure_in_order_is_raised(two_cpus):
    def fail_on_odd(item):
        if item % 2:
            raise ValueError(f"item {item}")
        return item
    with pytest.raises(ValueError, match="item 1"):
        side_by_side(fail_on_odd, [2, 1, 3], needed_bytes=0, budget=100)


def test_profiles_side_by_side_equal_each_profile_alone(two_cpus):
    specs = [NetworkSpec.stack(96, 8, activation="tanh", scheme=name) for name in SCHEMES]
    together = profiles(specs, batch=64, seed=3)
    for spec, shown in zip(specs, together):
        alone = profile(spec, batch=64, seed=3)
        assert shown.spec == spec
        # Exactly equal: each profile has its own generator and its own statistics.
        pd.testing.assert_frame_equal(shown.layers, alone.layers)
        pd.testing.assert_frame_equal(shown.histograms, alone.histograms)


def test_profiles_that_do_not_fit_together_still_run_one_after_the_other(two_cpus):
    specs = [NetworkSpec.stack(64, 4, scheme=name) for name in SCHEMES[:2]]
    one = estimate_bytes(specs[0], 32)
    shown = profiles(specs, batch=32, memory_budget=one + one // 2)  # each fits, both do not
    assert [p.spec.scheme for p in shown] == list(SCHEMES[:2])


def test_profiles_refuse_a_bad_batch_like_profile():
    with pytest.raises(InvalidSpec, match="batch"):
        profiles([NetworkSpec.stack(8, 2)], batch=0)


def test_jacobian_spectra_side_by_side_equal_each_spectrum_alone(two_cpus):
    specs = [replace(NetworkSpec.stack(64, 6, activation="tanh", scheme=name), input_dim=64)
             for name in SCHEMES]
    for spec, shown in zip(specs, jacobian_spectra(specs, seed=1)):
        np.testing.assert_array_equal(shown.singular_values,
                                      jacobian_spectrum(spec, seed=1).singular_values)
