"""How much the probe costs over a bare forward and backward pass of the same network.

Both sides do the same work apart from the statistics: build the network from the seed
(``build_model``), draw the same N(0, 1) inputs and the same random projection, run one forward
pass, take the probe's loss ``Σ h_L · r`` and run one backward pass. The bare side registers no
hooks and computes no statistics; the probe side is ``initviz.probe.profile`` itself, timed around
the call (so it includes the mean-field prediction and building the tables). Each side runs
``--repeats`` times, alternating, so both see the same machine state; the ratio is given for the
best wall time of each side (the run least disturbed by other processes), the median wall times and
the median CPU times (the work done, which other processes on a shared machine disturb least).
Issue 2's goal: ratio < 1.5 at width 1024, depth 100, batch 1024.

    python benchmarks/bench_profile.py                      # the issue's size
    python benchmarks/bench_profile.py --width 256 --depth 20 --batch 256
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

import torch  # noqa: E402

from initviz.devices import limit_threads, resolve_device, usable_cpus  # noqa: E402
from initviz.network import NetworkSpec, build_model  # noqa: E402
from initviz.probe import INPUT_STREAM, profile  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def threads_and_device(args: argparse.Namespace) -> tuple[int, torch.device]:
    """Set torch's threads (``--threads``, default the usable CPUs) and resolve ``--device``."""
    threads = limit_threads()
    if args.threads:
        torch.set_num_threads(threads := args.threads)
    return threads, resolve_device(args.device).device


def bare(spec: NetworkSpec, batch: int, seed: int, device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds for build + forward + backward with the probe's loss, no hooks."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    model = build_model(spec, seed, device=device)
    inputs = torch.Generator().manual_seed(seed ^ INPUT_STREAM)
    x = torch.randn(batch, spec.input_dim, generator=inputs).to(device)
    projection = torch.randn(batch, spec.sizes[-1], generator=inputs).to(device)
    with torch.enable_grad():
        hidden = model(x.requires_grad_(True))
        (hidden * projection).sum().backward()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def probed(spec: NetworkSpec, batch: int, seed: int, device: torch.device,
           bins: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``profile`` (which ends with its host transfer), around the call."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    # The size needs about 2.4 GiB by estimate_bytes, over the default budget
    # (DEFAULT_MEMORY_BUDGET).
    profile(spec, batch=batch, seed=seed, device=device.type, bins=bins, memory_budget=2**40)
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--bins", type=int, default=60)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--scheme", default="kaiming_normal")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: usable CPUs)")
    args = parser.parse_args(argv)

    threads, device = threads_and_device(args)
    spec = NetworkSpec.stack(args.width, args.depth, input_dim=args.width,
                             activation=args.activation, scheme=args.scheme)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({usable_cpus()} usable, "
          f"torch threads {threads}), torch {torch.__version__}, python "
          f"{platform.python_version()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"network: width {args.width}, depth {args.depth}, batch {args.batch}, "
          f"{args.activation}, {args.scheme}, {args.bins} bins")

    # Warm-up on a small network: allocator, kernels, lazy imports.
    small = NetworkSpec.stack(64, 3, input_dim=64)
    bare(small, 32, args.seed, device)
    probed(small, 32, args.seed, device, args.bins)

    bare_times, probe_times = [], []
    for _ in range(args.repeats):
        bare_times.append(bare(spec, args.batch, args.seed, device))
        probe_times.append(probed(spec, args.batch, args.seed, device, args.bins))
    for label, times in (("bare    (build + forward + backward)", bare_times),
                         ("profile (the same + statistics)    ", probe_times)):
        walls, cpus = [wall for wall, _ in times], [cpu for _, cpu in times]
        print(f"{label}: wall " + ", ".join(f"{t:.2f}" for t in walls)
              + f" s (best {min(walls):.2f}); CPU median {statistics.median(cpus):.2f} s")

    def ratio(pick, i):
        return pick(t[i] for t in probe_times) / pick(t[i] for t in bare_times)

    print(f"ratio profile/bare: {ratio(min, 0):.2f} (best wall times), "
          f"{ratio(statistics.median, 0):.2f} (median wall), "
          f"{ratio(statistics.median, 1):.2f} (median CPU time); goal < 1.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
