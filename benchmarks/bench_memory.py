"""Peak memory of a profile at the largest configurations the memory budget allows.

The page and the command line refuse a computation whose estimate (``network.estimate_bytes``)
is over the per-computation budget (``network.memory_budget()``, 256 MiB unless
``INITVIZ_MEMORY_BUDGET_MB`` says otherwise). This takes the largest profile the page allows at
each corner of its controls (widest, deepest, largest batch; the others at their defaults or as
large as still fits), runs each in a fresh process, and compares the peak resident memory it
added with the estimate and the budget: the estimate must hold (measured / estimate <= 1) for the
budget to mean anything.

The same for training races (``TrainingStream.needed_bytes``, which the page also books against
the server's memory): the widest 4-layer race with Adam (parameters, gradients, two moments and
the step's temporaries dominate), the largest batch for the most runs (8 schemes × 5 seeds) with
GELU (whose backward keeps both the Linear's and the activation's output), and the most layers
with a layer norm, each as large as the budget allows.

Peak: the process's high-water mark (``ru_maxrss``) after the profile or training, less its
resident memory just before it (after the imports and a small warm-up run, so that allocator
pools and lazily loaded kernels are not counted against it).

    python benchmarks/bench_memory.py
    INITVIZ_MEMORY_BUDGET_MB=512 python benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from initviz.errors import format_bytes  # noqa: E402
from initviz.network import NetworkSpec, estimate_bytes, memory_budget  # noqa: E402
from initviz.training import MAX_BATCH, TrainSpec, stream  # noqa: E402

# The page's limits on its controls (app.py).
PAGE_MAX_WIDTH, PAGE_MAX_DEPTH, PAGE_MAX_BATCH = 2048, 200, 4096
DEFAULT_WIDTH, DEFAULT_DEPTH, DEFAULT_BATCH = 256, 20, 256


def _fits(width: int, depth: int, batch: int) -> bool:
    return estimate_bytes(NetworkSpec.stack(width, depth), batch) <= memory_budget()


def _largest(fits, high: int) -> int:
    """The largest n in [1, high] with fits(n) (fits is monotone), or 0."""
    low, best = 1, 0
    while low <= high:
        mid = (low + high) // 2
        if fits(mid):
            best, low = mid, mid + 1
        else:
            high = mid - 1
    return best


def corners() -> list[tuple[str, int, int, int]]:
    """The largest allowed profile at each corner of the page's controls."""
    widest = _largest(lambda d: _fits(PAGE_MAX_WIDTH, d, DEFAULT_BATCH), PAGE_MAX_DEPTH)
    deepest = _largest(lambda w: _fits(w, PAGE_MAX_DEPTH, DEFAULT_BATCH), PAGE_MAX_WIDTH)
    batch = _largest(lambda d: _fits(DEFAULT_WIDTH, d, PAGE_MAX_BATCH), PAGE_MAX_DEPTH)
    default = _largest(lambda b: _fits(DEFAULT_WIDTH, DEFAULT_DEPTH, b), PAGE_MAX_BATCH)
    found = [("widest", PAGE_MAX_WIDTH, widest, DEFAULT_BATCH),
             ("deepest", deepest, PAGE_MAX_DEPTH, DEFAULT_BATCH),
             ("largest batch", DEFAULT_WIDTH, batch, PAGE_MAX_BATCH),
             ("default shape, largest batch", DEFAULT_WIDTH, DEFAULT_DEPTH, default)]
    return [corner for corner in found if 0 not in corner[1:]]


TRAINING_SCHEMES = ("kaiming_normal", "xavier_normal", "orthogonal", "lecun_normal",
                    "kaiming_uniform", "xavier_uniform", "lecun_uniform", "pytorch_default")
TRAINING_STEPS = 5  # every step holds the same tensors; the last one is followed by an evaluation


def _race(width: int, depth: int, batch: int, *, schemes: int, seeds: int, activation: str = "relu",
          norm: str = "none", optimizer: str = "sgd") -> TrainSpec:
    return TrainSpec(NetworkSpec.stack(width, depth, activation=activation, norm=norm),
                     schemes=TRAINING_SCHEMES[:schemes], seeds=seeds, optimizer=optimizer,
                     batch=batch, steps=TRAINING_STEPS, eval_every=TRAINING_STEPS, device="cpu")


def _race_bytes(spec: TrainSpec) -> int:
    return stream(spec, memory_budget=2**62).needed_bytes


def training_corners() -> dict[str, TrainSpec]:
    """The largest allowed training race at each of three corners (see the module docstring)."""
    def adam(width):
        return _race(width, 4, DEFAULT_BATCH, schemes=2, seeds=1, optimizer="adam")

    def most_runs(batch):
        return _race(64, 10, batch, schemes=8, seeds=5, activation="gelu")

    def normed(depth):
        return _race(DEFAULT_WIDTH, depth, DEFAULT_BATCH, schemes=2, seeds=2, norm="layernorm",
                     optimizer="momentum")

    found = {}
    for name, build, high in (("training adam", adam, PAGE_MAX_WIDTH),
                              ("training most runs", most_runs, MAX_BATCH),
                              ("training layernorm", normed, PAGE_MAX_DEPTH)):
        largest = _largest(lambda n, build=build: _race_bytes(build(n)) <= memory_budget(), high)
        if largest:
            found[name] = build(largest)
    return found


def _peak_added(run, warm_up) -> dict:
    """The peak memory ``run()`` adds after ``warm_up()`` (see the module docstring)."""
    warm_up()
    before = psutil.Process().memory_info().rss
    high_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run()
    high_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"added": high_after - before, "exact": high_after > high_before}


def measure(width: int, depth: int, batch: int) -> dict:
    """Run in a child process: the peak memory one profile adds."""
    from initviz.probe import profile

    return _peak_added(
        lambda: profile(NetworkSpec.stack(width, depth), batch=batch, device="cpu"),
        lambda: profile(NetworkSpec.stack(16, 2), batch=8, device="cpu"))


def measure_training(corner: str) -> dict:
    """Run in a child process: the peak memory one training race adds."""
    spec = training_corners()[corner]
    small = _race(16, 2, 8, schemes=2, seeds=1, optimizer=spec.optimizer)
    return _peak_added(lambda: list(stream(spec, memory_budget=2**62)),
                       lambda: list(stream(small)))


def _report(name: str, what: str, estimate: int, child_args: list[str], budget: int) -> None:
    child = subprocess.run([sys.executable, __file__, *child_args], capture_output=True,
                           text=True, check=True)
    result = json.loads(child.stdout.splitlines()[-1])
    added = result["added"]
    bound = "" if result["exact"] else " (at most: the peak was not above the warm-up's)"
    print(f"  {name}: {what}: estimate {format_bytes(estimate)}, peak added "
          f"{format_bytes(added)}{bound}")
    print(f"  ratio peak / estimate, {name}: {added / estimate:.2f}")
    print(f"  ratio peak / budget, {name}: {added / budget:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the child processes' jobs
    parser.add_argument("--one", nargs=3, type=int, metavar=("WIDTH", "DEPTH", "BATCH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--training", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one)))
        return 0
    if args.training:
        print(json.dumps(measure_training(args.training)))
        return 0

    budget = memory_budget()
    print(f"memory budget per computation: {format_bytes(budget)}")
    for name, width, depth, batch in corners():
        _report(name, f"width {width}, depth {depth}, batch {batch}",
                estimate_bytes(NetworkSpec.stack(width, depth), batch),
                ["--one", str(width), str(depth), str(batch)], budget)
    for name, spec in training_corners().items():
        net = spec.network
        what = (f"{len(spec.runs)} runs of width {net.sizes[0]}, depth {net.depth}, "
                f"{net.activation}, norm {net.norm}, {spec.optimizer}, batch {spec.batch}")
        _report(name, what, _race_bytes(spec), ["--training", name], budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
