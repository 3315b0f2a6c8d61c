"""The page's computations, shared by every session of one server.

Each result is keyed by frozen specs and kept in the server's one byte-bounded cache; while it is
computed, its estimated peak memory is held in the server's ledger (:mod:`initviz.cache`), so a
room of visitors cannot together allocate more than the server's budget. The tables the page
builds from these results live here too, so that the page only lays them out.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from initviz import jacobian, probe
from initviz.cache import computed
from initviz.errors import InitvizError
from initviz.jacobian import JacobianSpectrum
from initviz.meanfield import MeanField
from initviz.network import NetworkSpec, estimate_bytes, peak_bytes
from initviz.phase import PhaseDiagram, phase_map
from initviz.probe import Profile

PHASE_GRID_SIDE = 50
"""Cells per side of the phase map: 2,500 cells, a smooth map that a browser draws at once."""
PHASE_MAP_BYTES = 16 * 1024**2
"""The memory held for one phase map: about four times the peak that tracemalloc sees at
:data:`PHASE_GRID_SIDE`."""


def profiles(specs: tuple[tuple[str, NetworkSpec], ...], batch: int, seed: int, device: str,
             input_mean: float = 0.0, input_std: float = 1.0) -> dict[str, Profile]:
    """Every compared entry's profile, computed side by side on the same inputs.

    Args:
        specs: each compared entry's label and network (the entries differ in their scheme, its
            parameters, or the architecture options a variant sets).
        batch, seed, device, input_mean, input_std: as for :func:`initviz.probe.profiles`
            (the input's mean and std are part of the cache key).

    Returns:
        The profiles by label, in the order of ``specs``.

    Raises:
        ServerBusy: other sessions' computations keep the server's memory taken.
    """
    return computed(
        ("profiles", specs, batch, seed, device, float(input_mean), float(input_std)),
        "this profile", peak_bytes([estimate_bytes(spec, batch) for _, spec in specs]),
        lambda: dict(zip((label for label, _ in specs),
                         probe.profiles([spec for _, spec in specs], batch=batch, seed=seed,
                                        device=device, input_mean=input_mean,
                                        input_std=input_std))))


def phase_diagram(activation: str, summary: MeanField | None, depth: int,
                  note: str | None, entry: str = "layer") -> PhaseDiagram:
    """The phase map around a network's mean-field point (:func:`initviz.phase.phase_map`).

    Keyed by the mean-field summary, not the spec: a change of width keeps σ_w² and the map.
    """
    return computed(("phase_map", activation, summary, depth, note, entry), "this phase map",
                    PHASE_MAP_BYTES,
                    lambda: phase_map(activation, summary, depth, note, n=PHASE_GRID_SIDE,
                                      entry=entry))


def square(specs: dict[str, NetworkSpec]
           ) -> tuple[list[tuple[str, NetworkSpec]], dict[str, list[str]]]:
    """The square networks whose Jacobian spectrum can be computed, and why the others cannot.

    A network is made square by giving its input the first hidden width.

    Returns:
        The square specs with their labels, and the entries refused, by the sentence that says
        why (the entries share sizes and norm, so usually one sentence for all or none).
    """
    accepted, refused = [], {}
    for name, spec in specs.items():
        spec = replace(spec, input_dim=spec.sizes[0])
        try:
            jacobian.check(spec)
            accepted.append((name, spec))
        except InitvizError as error:
            refused.setdefault(str(error), []).append(name)
    return accepted, refused


def jacobians(specs: tuple[tuple[str, NetworkSpec], ...], seed: int, device: str
              ) -> dict[str, JacobianSpectrum]:
    """Each square network's input-output Jacobian spectrum, by label (see :func:`square`).

    Raises:
        ServerBusy: other sessions' computations keep the server's memory taken.
    """
    return computed(
        ("jacobians", specs, seed, device), "this Jacobian",
        peak_bytes([jacobian.jacobian_bytes(spec) for _, spec in specs]),
        lambda: dict(zip((label for label, _ in specs),
                         jacobian.jacobian_spectra([spec for _, spec in specs], seed=seed,
                                                   device=device))))


def data_columns(specs: tuple[tuple[str, NetworkSpec], ...], seed: int
                 ) -> dict[str, pd.DataFrame]:
    """Each compared entry's :meth:`~initviz.archs.Architecture.data_columns` (the measures of
    its training model on real data at init), by label.

    Raises:
        ServerBusy: other sessions' computations keep the server's memory taken.
    """
    return computed(
        ("data_columns", specs, seed), "these gradient norms",
        peak_bytes([estimate_bytes(spec, 256) for _, spec in specs]),
        lambda: {label: spec.architecture.data_columns(spec, seed) for label, spec in specs})


def spectra_frame(spectra: dict[str, JacobianSpectrum]) -> pd.DataFrame:
    """Every drawable spectrum's singular values (scheme, singular_value, zero), one table."""
    return pd.concat([spectrum.frame().assign(scheme=name) for name, spectrum in spectra.items()],
                     ignore_index=True)


def phase_points(profiles_: dict[str, Profile]) -> pd.DataFrame:
    """Each scheme's network on the phase diagram: scheme, sigma_w2, sigma_b2, chi1 (none where
    mean-field theory does not apply)."""
    return pd.DataFrame([{"scheme": name, "sigma_w2": p.theory.sigma_w2,
                          "sigma_b2": p.theory.sigma_b2, "chi1": p.theory.chi1}
                         for name, p in profiles_.items() if p.theory is not None],
                        columns=["scheme", "sigma_w2", "sigma_b2", "chi1"])


def statistics_csv(profiles_: dict[str, Profile]) -> str:
    """Every scheme's per-layer statistics as one CSV table, with a ``scheme`` column."""
    return pd.concat([p.layers.assign(scheme=name) for name, p in profiles_.items()],
                     ignore_index=True).to_csv(index=False)


__all__ = ["PHASE_GRID_SIDE", "PHASE_MAP_BYTES", "jacobians", "phase_diagram", "phase_points",
           "profiles", "spectra_frame", "square", "statistics_csv"]
