"""What the phase diagram and the Jacobian spectrum cost, each against a bare baseline.

Phase grid (issue 4: a 100 × 100 grid well under a second on CPU): ``phase_grid`` solves every
``q*`` at once on splined moment tables. It is timed cold (the activation's table built inside the
timing) and warm, against two baselines:

* scalar: ``mean_field`` point by point (root search plus exact quadrature), the way one would
  do it without vectorizing; timed on ``--sample`` random grid points and scaled to the grid.
* one quadrature: a single vectorized ``slope_moment`` over the whole grid at known ``q`` -- the
  cost of evaluating the exact quadrature just once per point, a floor for any exact method.

Jacobian: ``jacobian_spectrum`` (build, ``torch.func.jacrev``, float64 ``svdvals``) against a
bare ``build_model`` + ``jacrev(model)(x)``; the sides alternate and medians are compared.

    python benchmarks/bench_theory.py
    python benchmarks/bench_theory.py --activation relu --width 512 --depth 50
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.func import jacrev  # noqa: E402

from initviz import meanfield, phase  # noqa: E402
from initviz.activations import get_activation  # noqa: E402
from initviz.devices import limit_threads, usable_cpus  # noqa: E402
from initviz.jacobian import jacobian_spectrum, probe_input  # noqa: E402
from initviz.network import NetworkSpec, build_model  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median_line(label: str, times: list[float]) -> str:
    return f"{label}: " + ", ".join(f"{t:.3f}" for t in times) + \
        f" s; median {statistics.median(times):.3f} s"


def bench_grid(activation: str, side: int, repeats: int, sample: int) -> None:
    act = get_activation(activation)
    w_axis, b_axis = phase.phase_axes(act, n=side)
    w, b = (a.ravel() for a in np.meshgrid(w_axis, b_axis, indexing="ij"))

    def cold():
        phase._moment_table.cache_clear()
        phase.phase_grid(act, w_axis, b_axis)

    cold_times = [_timed(cold) for _ in range(repeats)]
    warm_times = [_timed(lambda: phase.phase_grid(act, w_axis, b_axis)) for _ in range(repeats)]
    grid = phase.phase_grid(act, w_axis, b_axis)
    q = np.nan_to_num(grid["q_star"].to_numpy(), nan=1e12)
    once_times = [_timed(lambda: meanfield.slope_moment(act, q)) for _ in range(repeats)]
    picks = np.random.default_rng(0).choice(len(w), sample, replace=False)
    scalar = (_timed(lambda: [meanfield.mean_field(act, w[i], b[i]) for i in picks])
              * len(w) / sample)
    line_times = [_timed(lambda: phase.critical_line(act, b_axis, float(w_axis[-1])))
                  for _ in range(repeats)]
    spec = NetworkSpec.stack(256, 20, activation=activation, scheme="xavier_normal")
    diagram_times = [_timed(lambda: phase.phase_diagram(spec, n=side)) for _ in range(repeats)]

    warm = statistics.median(warm_times)
    print(f"phase grid: {activation}, {side} x {side} = {len(w)} points over sigma_w2 in "
          f"[0, {w_axis[-1]:.3g}], sigma_b2 in [0, {b_axis[-1]:.3g}]")
    print("  " + _median_line("grid, cold (builds the moment table)", cold_times))
    print("  " + _median_line("grid, warm", warm_times))
    print("  " + _median_line("one exact quadrature per point (floor)", once_times))
    print(f"  scalar mean_field per point: {scalar:.2f} s (from {sample} points, scaled)")
    once = statistics.median(once_times)
    print(f"  ratio warm grid / one quadrature per point: {warm / once:.2f}")
    print(f"  speed-up over scalar: {scalar / warm:.0f}x warm, "
          f"{scalar / statistics.median(cold_times):.0f}x cold")
    print("  " + _median_line(f"critical line ({side} sigma_b2 values)", line_times))
    print("  " + _median_line("phase_diagram(spec): grid + line + point + depth scale",
                              diagram_times))


def bench_jacobian(spec: NetworkSpec, repeats: int, seed: int) -> None:
    def bare():
        model = build_model(spec, seed)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        jacrev(model)(probe_input(spec, seed))

    jacobian_spectrum(NetworkSpec.stack(16, 2, input_dim=16), device="cpu")  # warm-up
    bare_times, full_times = [], []
    for _ in range(repeats):
        bare_times.append(_timed(bare))
        full_times.append(_timed(lambda: jacobian_spectrum(spec, seed=seed, device="cpu")))
    b, f = statistics.median(bare_times), statistics.median(full_times)
    print(f"jacobian: width {spec.sizes[0]}, depth {spec.depth}, {spec.activation}, "
          f"{spec.scheme}, square ({spec.input_dim} inputs), cpu")
    print("  " + _median_line("bare build + jacrev", bare_times))
    print("  " + _median_line("jacobian_spectrum (+ checks, float64 svdvals)", full_times))
    print(f"  ratio jacobian_spectrum / bare: {f / b:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--side", type=int, default=100, help="grid points per axis")
    parser.add_argument("--sample", type=int, default=100, help="points for the scalar baseline")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--scheme", default="orthogonal")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: the usable CPUs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    threads = limit_threads() if args.threads is None else args.threads
    torch.set_num_threads(threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({usable_cpus()} usable, "
          f"torch threads {threads}, load average {os.getloadavg()[0]:.1f}), torch "
          f"{torch.__version__}, python {platform.python_version()}")
    bench_grid(args.activation, args.side, args.repeats, args.sample)
    spec = NetworkSpec.stack(args.width, args.depth, input_dim=args.width,
                             activation=args.activation, scheme=args.scheme)
    bench_jacobian(spec, args.repeats, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
