"""Peak memory of a profile at the largest configurations the memory budget allows.

The page and the command line refuse a computation whose estimate (``network.estimate_bytes``)
is over the per-computation budget (``network.memory_budget()``, 256 MiB unless
``INITVIZ_MEMORY_BUDGET_MB`` says otherwise). This takes the largest profile the page allows at
each corner of its controls (widest, deepest, largest batch; the others at their defaults or as
large as still fits), runs each in a fresh process, and compares the peak resident memory it
added with the estimate and the budget: the estimate must hold (measured / estimate <= 1) for the
budget to mean anything.

Peak: the process's high-water mark (``ru_maxrss``) after the profile, less its resident memory
just before it (after the imports and a small warm-up profile, so that allocator pools and lazily
loaded kernels are not counted against the profile).

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


def measure(width: int, depth: int, batch: int) -> dict:
    """Run in a child process: the peak memory one profile adds (see the module docstring)."""
    from initviz.probe import profile

    profile(NetworkSpec.stack(16, 2), batch=8, device="cpu")  # warm-up
    before = psutil.Process().memory_info().rss
    high_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    profile(NetworkSpec.stack(width, depth), batch=batch, device="cpu")
    high_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"added": high_after - before, "exact": high_after > high_before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, type=int, metavar=("WIDTH", "DEPTH", "BATCH"),
                        help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one)))
        return 0

    budget = memory_budget()
    print(f"memory budget per computation: {format_bytes(budget)}")
    for name, width, depth, batch in corners():
        estimate = estimate_bytes(NetworkSpec.stack(width, depth), batch)
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(width), str(depth), str(batch)],
            capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.splitlines()[-1])
        added = result["added"]
        bound = "" if result["exact"] else " (at most: the peak was not above the warm-up's)"
        print(f"  {name}: width {width}, depth {depth}, batch {batch}: estimate "
              f"{format_bytes(estimate)}, peak added {format_bytes(added)}{bound}")
        print(f"  ratio peak / estimate, {name}: {added / estimate:.2f}")
        print(f"  ratio peak / budget, {name}: {added / budget:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
