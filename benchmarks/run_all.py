"""Every benchmark in one command, and one table of their ratios, with the machine they ran on.

Each benchmark runs in its own process (one cannot warm the caches or the allocator of the next)
with small defaults, so the whole run takes a few minutes on a laptop-class CPU; its full output
goes to ``--log``. The table keeps only the ratios, each against a baseline timed in the same
process and the same minute, so they compare across machines better than the absolute times do.

    python benchmarks/run_all.py
    python benchmarks/run_all.py --threads 1     # on a shared machine (see README.md)
    python benchmarks/run_all.py --only page,memory
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench_training import cpu_name  # noqa: E402

from initviz.devices import limit_threads, usable_cpus  # noqa: E402

NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
# name, script and its arguments, and for each ratio the table keeps: (label, pattern in the output)
BENCHMARKS: list[tuple[str, list[str], list[tuple[str, str]]]] = [
    ("profile", ["bench_profile.py", "--width", "256", "--depth", "20", "--batch", "256",
                 "--repeats", "5"],
     [("profile / bare forward+backward (256 x 20, batch 256; median wall)",
       rf"ratio profile/bare: .*?{NUMBER} \(median wall\)")]),
    ("theory", ["bench_theory.py", "--repeats", "3"],
     [("phase grid 100 x 100 (warm) / one quadrature per point",
       rf"ratio warm grid / one quadrature per point: {NUMBER}"),
      ("Jacobian spectrum / bare jacrev (256 x 20)",
       rf"ratio jacobian_spectrum / bare: {NUMBER}")]),
    ("training", ["bench_training.py", "--widths", "256", "--steps", "10", "--repeats", "3"],
     [("one by one / batched training (24 runs, 256 x 10; median of paired repeats)",
       rf"batched is .*?repeat by repeat {NUMBER}x"),
      ("batched training: share of the matmul rate", rf"batched *:.*?= {NUMBER}% of the matmul")]),
    ("page", ["bench_page.py", "--repeats", "3"],
     [(f"page {what} / bare forward+backward", rf"ratio {what} / bare: {NUMBER}")
      for what in ("first visit", "width change", "seed change", "cached rerun")]),
    ("memory", ["bench_memory.py"],
     [(f"profile peak memory / estimate, {corner}", rf"ratio peak / estimate, {corner}: {NUMBER}")
      for corner in ("widest", "deepest", "largest batch")]
     + [("profile peak memory / budget, widest", rf"ratio peak / budget, widest: {NUMBER}")]
     + [(f"{corner} race: peak memory / estimate",
         rf"ratio peak / estimate, {corner}: {NUMBER}")
        for corner in ("training adam", "training most runs", "training layernorm")]),
]
TIMEOUT_S = 900


def machine(threads: int) -> str:
    return (f"{cpu_name()}, {platform.machine()}, {os.cpu_count()} CPUs ({usable_cpus()} usable), "
            f"torch threads {threads}, torch {torch.__version__}, python "
            f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")


def run(script: list[str], threads: int | None, log) -> tuple[str, float, str | None]:
    """The benchmark's output, its wall time, and what went wrong (None if nothing)."""
    command = [sys.executable, str(HERE / script[0]), *script[1:]]
    if threads:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return "", time.perf_counter() - start, f"did not finish in {TIMEOUT_S} s"
    seconds = time.perf_counter() - start
    log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    log.flush()
    problem = None if done.returncode == 0 else \
        f"exit code {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return done.stdout, seconds, problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch threads for every benchmark")
    parser.add_argument("--only", help="comma-separated names: " +
                        ", ".join(name for name, _, _ in BENCHMARKS))
    parser.add_argument("--log", default=str(HERE.parent / "test-artifacts" / "benchmarks.log"))
    args = parser.parse_args(argv)
    chosen = set(args.only.split(",")) if args.only else {name for name, _, _ in BENCHMARKS}
    unknown = chosen - {name for name, _, _ in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine(args.threads or limit_threads())}")
    rows, failed = [], False
    with open(args.log, "w") as log:
        for name, script, ratios in BENCHMARKS:
            if name not in chosen:
                continue
            print(f"running {script[0]} ...", flush=True)
            output, seconds, problem = run(script, args.threads, log)
            for label, pattern in ratios:
                match = re.search(pattern, output)
                rows.append((name, label, match.group(1) if match else problem or "not found"))
                failed |= match is None
            print(f"  {seconds:.0f} s" + (f": {problem}" if problem else ""))

    width = max(len(label) for _, label, _ in rows)
    print(f"\n{'benchmark':<10} {'ratio':<{width}} value")
    for name, label, value in rows:
        print(f"{name:<10} {label:<{width}} {value}")
    print(f"\nfull output: {args.log}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
