"""The GPU paths against the CPU: the same seed gives the same numbers on ``cuda``.

Every parameter and probe input is drawn on the CPU from a seeded generator and then moved, so a
profile, a Jacobian spectrum and a race on the GPU must agree with the CPU's up to the order of
floating-point sums (cuBLAS sums in another order than the CPU's BLAS). These tests run only where
``torch.cuda.is_available()``; the CI machine has no GPU, so they are run on a lent GPU machine
(see benchmarks/README.md, "GPU") and skip elsewhere. The fall-back to the CPU where there is no
GPU is tested in test_probe, test_training and test_cli.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from initviz.jacobian import jacobian_spectrum
from initviz.network import NetworkSpec
from initviz.probe import profile
from initviz.training import history_frame
from initviz.training import TrainSpec, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# float32 through 10 layers: measured agreement ~1e-6 relative; the bound leaves room for TF32-free
# cuBLAS kernels summing in another order.
PROFILE_RTOL = 1e-4
# A race compounds the difference over its steps (SGD at lr 0.05, 30 steps): measured ~1e-5.
TRAIN_RTOL = 1e-3


@pytest.mark.parametrize("arch", [{}, {"arch": "residual", "arch_params": {"residual": "fixup"}},
                                  {"arch": "transformer", "arch_params": {"ln": "post"}},
                                  {"arch": "conv"}, {"arch": "rnn"}, {"arch": "lstm"}])
def test_a_profile_on_the_gpu_equals_the_cpu_one(arch):
    spec = NetworkSpec.stack(64, 6, activation="tanh", scheme="xavier_normal", **arch)
    cpu = profile(spec, batch=512, seed=3, device="cpu")
    gpu = profile(spec, batch=512, seed=3, device="cuda")
    assert gpu.device == "cuda" and gpu.device_notice is None
    for column in ("act_std", "grad_std", "weight_std", "preact_std"):
        np.testing.assert_allclose(gpu.layers[column], cpu.layers[column], rtol=PROFILE_RTOL,
                                   atol=1e-12, err_msg=column)


def test_a_jacobian_spectrum_on_the_gpu_is_float64_and_equals_the_cpu_one():
    spec = NetworkSpec.stack(64, 20, activation="tanh", scheme="orthogonal")
    cpu = jacobian_spectrum(spec, seed=1, device="cpu")
    gpu = jacobian_spectrum(spec, seed=1, device="cuda")
    assert gpu.device == "cuda" and gpu.singular_values.dtype == np.float64
    np.testing.assert_allclose(gpu.singular_values, cpu.singular_values, rtol=1e-9, atol=1e-12)
    assert gpu.zero_count == cpu.zero_count


def test_a_race_on_the_gpu_trains_batched_as_on_the_cpu():
    network = NetworkSpec.stack(64, 6)
    spec = TrainSpec(network, schemes=("kaiming_normal", "xavier_uniform", "orthogonal"), seeds=2,
                     steps=30, eval_every=10, batch=64, lr=0.05, device="cuda")
    gpu = train(spec)
    assert gpu.device == "cuda" and gpu.device_notice is None
    cpu = train(replace(spec, device="cpu"))
    pd.testing.assert_frame_equal(history_frame(gpu.records), history_frame(cpu.records),
                                  rtol=TRAIN_RTOL, check_exact=False)


def test_the_batched_engine_on_the_gpu_equals_one_model_at_a_time():
    # Spirals at a moderate lr, as test_training's CPU check. Width 256, depth 10 on digits at lr
    # 0.02 is chaotic: the engines' rounding differences grow by step 20 to 4e-4 on the CPU and
    # 8e-3 on the GPU (measured), which would test the chaos, not the engine.
    network = NetworkSpec.stack(128, 4)
    spec = TrainSpec(network, schemes=("kaiming_normal", "orthogonal"), seeds=3, steps=20,
                     eval_every=10, batch=128, lr=0.05, dataset="spirals", device="cuda")
    pd.testing.assert_frame_equal(history_frame(train(spec).records),
                                  history_frame(train(spec, batched=False).records),
                                  rtol=TRAIN_RTOL, check_exact=False)


# conv is left out: on an H100 its vmapped and one-by-one races parted by more than 1e-3 within
# 12 steps (2026-11-26), where the other architectures agree; the cause (cuDNN's choice of
# algorithm for a batched convolution, or TF32, which cuDNN allows by default) is not established.
@pytest.mark.parametrize("arch, dataset", [("residual", "digits"), ("transformer", "digits"),
                                           ("lstm", "digits_rows")])
def test_vmapped_runs_on_the_gpu_equal_one_model_at_a_time(arch, dataset):
    network = NetworkSpec.stack(16, 4, arch=arch)
    spec = TrainSpec(network, schemes=("kaiming_normal", "orthogonal"), seeds=2, steps=12,
                     eval_every=4, batch=32, lr=0.05, dataset=dataset, device="cuda")
    pd.testing.assert_frame_equal(history_frame(train(spec).records),
                                  history_frame(train(spec, batched=False).records),
                                  rtol=TRAIN_RTOL, check_exact=False)
