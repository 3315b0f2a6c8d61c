"""Results do not depend on who else is computing: Streamlit runs each session on its own thread, so
every random draw must come from the computation's own ``torch.Generator`` (or NumPy ``Generator``),
never from a process-wide state that another thread can seed or advance in between."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from initviz.datasets import dataset_info
from initviz.network import NetworkSpec, build_model
from initviz.probe import profile
from initviz.schemes import SCHEMES
from initviz.training import TrainSpec, history_frame, train

THREADS = 4
SEEDS = range(6)  # per scheme; each thread builds all of them, in a different order


def _weights(name: str, seed: int) -> list[torch.Tensor]:
    arch = "mlp" if SCHEMES[name].applies_to("mlp") else "conv"  # dirac, delta_orthogonal
    spec = NetworkSpec.stack(48, 3, input_dim=40, scheme=name, bias="normal", arch=arch)
    return [p.detach().clone() for p in build_model(spec, seed).parameters()]


def _at_once(task, jobs: list) -> list:
    """Run every job on each of ``THREADS`` threads at the same time (each in its own order)."""
    def worker(shift: int) -> list:
        order = jobs[shift:] + jobs[:shift]
        return [(job, task(*job)) for job in order]

    with ThreadPoolExecutor(THREADS) as pool:
        done = list(pool.map(worker, range(THREADS)))
    return [pair for results in done for pair in results]


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_scheme_builds_the_same_network_on_parallel_threads_as_alone(name):
    jobs = [(name, seed) for seed in SEEDS]
    alone = {job: _weights(*job) for job in jobs}
    differ = [job for job, weights in _at_once(_weights, jobs)
              if not all(torch.equal(a, b) for a, b in zip(weights, alone[job]))]
    assert differ == [], f"{len(differ)} of {THREADS * len(jobs)} builds differ"


def test_building_on_threads_leaves_torchs_global_generator_alone():
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    _at_once(_weights, [(name, 0) for name in SCHEMES])
    assert torch.equal(torch.random.get_rng_state(), before)


def _split(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return dataset_info(name).draw(seed)  # the draw itself, not load_dataset's cached copy


def test_data_sets_are_drawn_the_same_on_parallel_threads_as_alone():
    jobs = [(name, seed) for name in ("moons", "circles", "spirals", "xor", "gaussians", "digits")
            for seed in (0, 1)]
    alone = {job: _split(*job) for job in jobs}
    for job, parts in _at_once(_split, jobs):
        assert all(np.array_equal(a, b) for a, b in zip(parts, alone[job])), job


def _profile(name: str, seed: int) -> pd.DataFrame:
    spec = NetworkSpec.stack(32, 3, input_dim=24, scheme=name)
    return profile(spec, batch=16, seed=seed, device="cpu").layers


def test_profiles_are_the_same_on_parallel_threads_as_alone():
    # The probe's inputs and projection come from their own generator.
    jobs = [(name, seed) for name in ("sparse", "orthogonal", "lsuv") for seed in (0, 1)]
    alone = {job: _profile(*job) for job in jobs}
    for job, layers in _at_once(_profile, jobs):
        assert layers.equals(alone[job]), job


def _train(schemes: tuple[str, ...], seed: int) -> pd.DataFrame:
    network = NetworkSpec.stack(16, 2, input_dim=2)
    spec = TrainSpec(network, schemes=schemes, seed=seed, dataset="moons", steps=8, eval_every=4,
                     batch=16, device="cpu")
    return history_frame(train(spec).records)


def test_training_is_the_same_on_parallel_threads_as_alone():
    # Initialization, data and batch order each come from the run's own seed.
    jobs = [(("sparse", "kaiming_normal"), seed) for seed in (0, 1)]
    alone = {job: _train(*job) for job in jobs}
    for job, history in _at_once(_train, jobs):
        assert history.equals(alone[job]), job


def test_a_session_runs_one_script_thread_at_a_time(monkeypatch):
    """Streamlit's fast reruns start a click's run on a new thread while the old run (the
    Training tab's live fragment, every half second) is still finishing; both then change the
    session's widget state under separate locks. A Stop or Train pressed then failed with
    "dictionary changed size during iteration" and replaced the page with an error
    (tests/browser/test_page_training.py). The app's config turns them off; read here as
    Streamlit reads it, so that a misspelt option fails too."""
    from streamlit import config

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    config.get_config_options(force_reparse=True)
    try:
        assert config.get_option("runner.fastReruns") is False
        assert config.get_where_defined("runner.fastReruns").endswith(".streamlit/config.toml")
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)
