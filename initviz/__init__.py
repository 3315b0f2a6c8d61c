"""initviz: see what weight initialization does to a neural network.

The backend of the app, importable without Streamlit: schemes and activations, the network spec,
the probe (per-layer statistics forward and backward), mean-field theory, and the command line.
"""

import os

# OpenMP threads that spin while they wait make torch several times slower whenever the cores are
# busy with anything else: other sessions of the same server, a test suite, a browser
# (benchmarks/README.md). Sleeping waiters cost nothing measurable on an idle machine. libgomp reads
# this when torch loads it, so it is set before initviz imports torch, and a user's own setting
# wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Torch's CPU allocator gets every block from malloc, and glibc returns large freed blocks to the
# kernel, so each training step or probe faults its activations in afresh, 4 KiB at a time (a fifth
# of a training step at width 256: benchmarks/README.md). With this torch backs blocks of 2 MiB and
# more with transparent huge pages (where the kernel allows them), 512 times fewer faults; nothing
# smaller changes, and freed memory still goes back. Read by torch at its first large allocation.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from initviz.activations import ACTIVATIONS, Activation, get_activation
from initviz.errors import InitvizError, InvalidSpec, TooLarge
from initviz.inspection import Inspection, inspect
from initviz.layers import init_
from initviz.network import NetworkSpec, build_model
from initviz.probe import Profile, profile
from initviz.scheme_types import Scheme
from initviz.schemes import BIAS_SCHEMES, SCHEMES, get_scheme

__all__ = [
    "ACTIVATIONS", "Activation", "BIAS_SCHEMES", "Inspection", "InitvizError", "InvalidSpec",
    "NetworkSpec", "Profile", "SCHEMES", "Scheme", "TooLarge", "build_model", "get_activation",
    "get_scheme", "init_", "inspect", "profile",
]
