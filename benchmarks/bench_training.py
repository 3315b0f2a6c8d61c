"""Training: all runs as one batched model against one model at a time, and the rate it reaches.

For each width, the same training (``--schemes`` × ``--seeds`` runs, depth ``--depth``, relu, SGD)
is run by the batched engine (``train(spec)``: one vmap'd call for all runs) and by the reference
(``train(spec, batched=False)``: one ``nn.Module`` and optimizer per run), alternating, so both see
the same machine state. Time per step is the time between the stream's first checkpoint (step 0:
models built, first batch, first evaluation) and its last, divided by the steps in between, so it
leaves out building the models. Its matmul work is counted exactly (per Linear ``in`` → ``out``
and batch ``B``: ``2·B·in·out`` forward, as much again for the weight gradient and, except in the
first layer, for the input gradient; plus the closing evaluation's forward pass on the validation
split); everything else (activations, loss, optimizer, the update statistics) is overhead that
the achieved rate has to carry. That rate is compared with the machine's matmul rate measured in
the same run: the best of ``torch.mm`` on 2048 × 2048 float32 matrices.

Issue 3's goals: on CPU, batched never slower than one by one and >= 60% of the matmul rate at
width >= 256; on a GPU, >= 5x faster than one by one at 24 runs (8 schemes x 3 seeds, width 256,
depth 10).

    python benchmarks/bench_training.py                          # widths 64, 256, 512; 24 runs
    python benchmarks/bench_training.py --threads 1 --widths 256 --steps 10
    python benchmarks/bench_training.py --device cuda

``--statistics``: the cost of the per-layer statistics recorded during training (activation std,
saturated share, gradient std at every evaluation step): the same race timed with them and with
them switched off (the engines keep no activations, the tracker measures nothing), alternating,
at the page's cadence of 40 evaluations per race. ``--tutorial``: the time of the
``tutorial_table`` preset's race as the page starts it (batch 256, one seed).

    python benchmarks/bench_training.py --threads 1 --statistics --widths 256 --steps 200
    python benchmarks/bench_training.py --threads 1 --tutorial
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import initviz  # noqa: E402, F401  (before torch: it makes OpenMP's idle threads sleep, not spin)
import torch  # noqa: E402
from bench_profile import _sync, threads_and_device  # noqa: E402

from initviz.datasets import load_dataset  # noqa: E402
from initviz.devices import usable_cpus  # noqa: E402
from initviz.network import NetworkSpec  # noqa: E402
from initviz.training import TrainSpec, stream  # noqa: E402

SCHEMES = ("kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "orthogonal",
           "lecun_normal", "lecun_uniform", "pytorch_default")


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of ``torch.mm`` on two n × n float32 matrices."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up: kernels, allocator
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def step_flops(spec: TrainSpec, n_classes: int, n_val: int) -> tuple[float, float]:
    """Matmul FLOPs of one training step, and of one evaluation, over all runs."""
    net = spec.network
    fans = net.fans + [(net.sizes[-1], n_classes)]
    train = sum((4 if layer == 0 else 6) * spec.batch * fan_in * fan_out
                for layer, (fan_in, fan_out) in enumerate(fans))
    evaluation = sum(2 * n_val * fan_in * fan_out for fan_in, fan_out in fans)
    runs = len(spec.runs)
    return train * runs, evaluation * runs


def seconds_per_step(spec: TrainSpec, batched: bool) -> float:
    """Seconds per step from the first checkpoint (step 0) to the last (see the docstring)."""
    checkpoints = list(stream(spec, batched=batched, memory_budget=2**40))
    first, last = checkpoints[0], checkpoints[-1]
    assert last.step == spec.steps and not any(r.diverged for r in last.records), \
        "a run diverged: the work would not be the same on both sides"
    return (last.seconds - first.seconds) / spec.steps


def bench_width(width: int, args: argparse.Namespace, device: torch.device, peak: float) -> None:
    spec = TrainSpec(NetworkSpec.stack(width, args.depth), schemes=SCHEMES[:args.schemes],
                     seeds=args.seeds, optimizer="sgd", lr=args.lr, steps=args.steps,
                     batch=args.batch, eval_every=args.steps, device=device.type)
    data = load_dataset(spec.dataset, spec.seed)
    train_flops, eval_flops = step_flops(spec, data.n_classes, len(data.y_val))
    # between the two checkpoints: steps - 1 forward/backward passes (step 0's came before the
    # first checkpoint), every update, and the closing evaluation
    flops_per_step = ((spec.steps - 1) * train_flops + eval_flops) / spec.steps
    seconds_per_step(spec, batched=True)  # warm-up at this size
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for batched in (True, False):
            times[batched].append(seconds_per_step(spec, batched))
    print(f"width {width}, depth {args.depth}, {len(spec.runs)} runs ({len(spec.schemes)} "
          f"schemes x {spec.seeds} seeds), batch {spec.batch}, {spec.steps} steps: "
          f"{flops_per_step / 1e9:.3f} GFLOP of matmuls per step")
    for batched, label in ((True, "batched   "), (False, "one by one")):
        best = min(times[batched])
        print(f"  {label}: " + ", ".join(f"{1e3 * t:.1f}" for t in times[batched])
              + f" ms/step (best {1e3 * best:.1f}); {flops_per_step / best / 1e9:.1f} GFLOP/s "
              f"= {flops_per_step / best / 1e9 / peak:.0%} of the matmul rate")
    speedup_best = min(times[False]) / min(times[True])
    # each repeat's two runs are back to back, so their ratio cancels the machine's slow drifts
    paired = sorted(one / batched for batched, one in zip(times[True], times[False]))
    print(f"  batched is {speedup_best:.2f}x as fast as one by one (best times); "
          f"repeat by repeat {statistics.median(paired):.2f}x (median; "
          f"{paired[0]:.2f}-{paired[-1]:.2f})")


def bench_statistics(width: int, args: argparse.Namespace, device: torch.device) -> None:
    """Seconds per step with and without the per-layer training statistics."""
    from unittest import mock

    from initviz import engines
    spec = TrainSpec(NetworkSpec.stack(width, args.depth, activation="tanh"),
                     schemes=SCHEMES[:args.schemes], seeds=args.seeds, optimizer="sgd",
                     lr=args.lr, steps=args.steps, batch=args.batch,
                     eval_every=max(1, args.steps // 40), device=device.type)
    off = [mock.patch.object(engines, "_keep", lambda kept, preact, output: None),
           mock.patch.object(engines.Tracker, "measure_hidden", lambda self: None)]
    seconds_per_step(spec, batched=True)  # warm-up at this size
    times = {True: [], False: []}
    for _ in range(args.repeats):
        times[True].append(seconds_per_step(spec, batched=True))
        for patch in off:
            patch.start()
        try:
            times[False].append(seconds_per_step(spec, batched=True))
        finally:
            for patch in off:
                patch.stop()
    paired = sorted(on / without for on, without in zip(times[True], times[False]))
    print(f"statistics: width {width}, depth {args.depth}, tanh, {len(spec.runs)} runs, batch "
          f"{spec.batch}, {spec.steps} steps, an evaluation every {spec.eval_every}: with "
          + ", ".join(f"{1e3 * t:.1f}" for t in times[True]) + " ms/step, without "
          + ", ".join(f"{1e3 * t:.1f}" for t in times[False])
          + f" ms/step; with/without {statistics.median(paired):.3f} (median of the repeats; "
          f"{paired[0]:.3f}-{paired[-1]:.3f})")


def bench_tutorial(device: torch.device) -> None:
    """The tutorial_table preset's race, as the page starts it."""
    from initviz.presets import PRESETS, network_of
    values = PRESETS["tutorial_table"].values
    spec = TrainSpec(network_of(values),
                     schemes=tuple(dict.fromkeys([values["scheme"], *values["compare"]])),
                     seeds=values["seeds"], dataset=values["dataset"],
                     optimizer=values["optimizer"], lr=values["lr"], steps=values["steps"],
                     batch=256, eval_every=values["steps"] // 40, device=device.type,
                     input_scale=values["input_scale"], dropout=values["dropout"])
    start = time.perf_counter()
    checkpoints = list(stream(spec, memory_budget=2**40))
    print(f"tutorial_table: {len(spec.runs)} runs x {spec.steps} steps of batch {spec.batch}: "
          f"{checkpoints[-1].seconds:.1f} s of training, {time.perf_counter() - start:.1f} s "
          "with the data and the models")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="64,256,512", help="comma-separated widths")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--schemes", type=int, default=8, choices=range(1, len(SCHEMES) + 1),
                        help="how many of: " + ", ".join(SCHEMES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="the page's default batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: usable CPUs)")
    parser.add_argument("--statistics", action="store_true",
                        help="time the per-layer training statistics (with / without)")
    parser.add_argument("--tutorial", action="store_true",
                        help="time the tutorial_table preset's race")
    args = parser.parse_args(argv)

    threads, device = threads_and_device(args)
    print(f"machine: {cpu_name()}, {platform.machine()}, {os.cpu_count()} CPUs "
          f"({usable_cpus()} usable, torch threads {threads}, load average "
          f"{os.getloadavg()[0]:.1f}), torch {torch.__version__}, python "
          f"{platform.python_version()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    if args.tutorial:
        bench_tutorial(device)
        return 0
    if args.statistics:
        for width in (int(w) for w in args.widths.split(",")):
            bench_statistics(width, args, device)
        return 0
    peak = matmul_rate(device)
    print(f"matmul rate: {peak:.1f} GFLOP/s (best torch.mm, 2048 x 2048, float32)")
    for width in (int(w) for w in args.widths.split(",")):
        bench_width(width, args, device, peak)
    print(f"matmul rate after: {matmul_rate(device):.1f} GFLOP/s (the machine's state changed "
          "during the run if this differs much)")
    return 0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
