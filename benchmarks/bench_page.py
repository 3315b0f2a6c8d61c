"""How long the page takes to answer, against a bare forward and backward pass of its network.

The whole page runs in this process through Streamlit's own test driver (``AppTest``), which runs
the script exactly as the server does but draws nothing; a browser adds its own drawing time on
the user's machine. What is timed, wall clock, medians over ``--repeats``:

* **first visit**: a new session on the default view with every ``st.cache_data`` cache empty
  (torch and the app's modules already imported, as on a server that has been up a while);
* **width change** (256 → 257, 258, ...) and **seed change**: every profile, the theory and the
  Jacobian spectra recomputed, charts rebuilt: what a user waits for after moving a control;
* **cached rerun**: a control that needs no new computation (the weight histogram's layer).

The baseline, timed in the same run and alternating with the page: build + forward + backward of
the page's main network with the probe's loss and no statistics (``bench_profile.bare``). The
page computes more than that on purpose (every compared scheme's profile, the theory, the
Jacobian, the charts), so the ratio says what a rerun costs in units of the bare pass.

    python benchmarks/bench_page.py
    python benchmarks/bench_page.py --threads 1 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import initviz  # noqa: E402, F401  (before torch, as in the app: OpenMP's idle threads sleep)
import streamlit as st  # noqa: E402
import streamlit.logger  # noqa: E402
from streamlit import config  # noqa: E402
import torch  # noqa: E402
from bench_profile import bare  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from initviz.devices import limit_threads, usable_cpus  # noqa: E402
from initviz.network import NetworkSpec  # noqa: E402

APP = str(HERE.parent / "app.py")
TIMEOUT = 600
DEFAULT_WIDTH, DEFAULT_DEPTH, DEFAULT_BATCH = 256, 20, 256  # the page's default view

# Streamlit warns on every cache call outside a server ("No runtime found", "missing
# ScriptRunContext"): expected here, and it would bury the figures. Each of its loggers carries
# its own level (the parent logger's does not reach them), and AppTest sets them all again from
# the logger.level option on every run: so both are set.
config.set_option("logger.level", "error")
streamlit.logger.set_log_level("error")


def _run(at: AppTest) -> float:
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
    return seconds


def _line(label: str, times: list[float]) -> str:
    return (f"{label}: " + ", ".join(f"{t:.2f}" for t in times)
            + f" s; median {statistics.median(times):.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: the usable CPUs)")
    args = parser.parse_args(argv)

    # The page caps torch's threads itself on its first run; a --threads given here wins after.
    warm = AppTest.from_file(APP, default_timeout=TIMEOUT)
    cold_process = _run(warm)
    threads = args.threads or limit_threads()
    torch.set_num_threads(threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({usable_cpus()} usable, torch "
          f"threads {threads}, load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, "
          f"python {platform.python_version()}")
    spec = NetworkSpec.stack(DEFAULT_WIDTH, DEFAULT_DEPTH)
    schemes = warm.multiselect(key="compare").value
    print(f"page: default view, {DEFAULT_WIDTH} wide, {DEFAULT_DEPTH} deep, batch "
          f"{DEFAULT_BATCH}, {spec.activation}, {spec.scheme}; profiles of "
          f"{', '.join(dict.fromkeys([spec.scheme, *schemes]))}")
    print(f"  the very first run of this process (imports, compiles the app): {cold_process:.2f} s")

    first, width, seed, cached, baseline = [], [], [], [], []
    device = torch.device("cpu")
    for i in range(args.repeats):
        baseline.append(bare(spec, DEFAULT_BATCH, 0, device)[0])
        st.cache_data.clear()
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        first.append(_run(at))
        at.slider(key="width").set_value(DEFAULT_WIDTH + 1 + i)
        width.append(_run(at))
        at.number_input(key="seed").set_value(1 + i)
        seed.append(_run(at))
        at.slider(key="weight_layer").set_value(3 + i % 2)
        cached.append(_run(at))
        baseline.append(bare(spec, DEFAULT_BATCH, 0, device)[0])

    bare_median = statistics.median(baseline)
    print("  " + _line("bare build + forward + backward (baseline)", baseline))
    for label, times in (("first visit, empty caches", first), ("width change", width),
                         ("seed change", seed), ("cached rerun (weight layer)", cached)):
        print("  " + _line(label, times))
    for label, times in (("first visit", first), ("width change", width),
                         ("seed change", seed), ("cached rerun", cached)):
        print(f"  ratio {label} / bare: {statistics.median(times) / bare_median:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
