"""A fixture that runs a test module's tests on one torch thread.

The two cores of the shared test machine are often busy with other suites; OpenMP threads that
spin-wait for a busy core then make small QR and matmul calls a hundred times slower than a
single thread (measured: a 256-wide, 20-deep Jacobian in 8.5 s on two threads, 0.07 s on one).
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
