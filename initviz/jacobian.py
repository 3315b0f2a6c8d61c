r"""The input–output Jacobian of a freshly initialized network, and its singular values.

``J = ∂h^L/∂x`` is the derivative of the last hidden layer's activation with respect to the input,
taken at one probe input ``x ~ N(0, I)``. Its singular values ``s`` say how the network stretches
a small change of the input: if all of them are near 1 (*dynamical isometry*), signals and
gradients keep their size and their geometry through any depth.

* A deep **linear** network with **orthogonal** weights is an isometry: every ``s = 1`` exactly
  (Saxe, McClelland & Ganguli 2014).
* With **Gaussian** weights of variance ``1/N`` the squared singular values of a depth-``L`` linear
  network have mean 1 but variance ``L``: the spectrum widens linearly with depth, in the
  wide-network limit (the Fuss–Catalan moments; Pennington, Schoenholz & Ganguli 2017, eq. 16).
* With tanh at the edge of chaos (χ₁ = 1) orthogonal weights keep the spectrum narrow where
  Gaussian ones do not (Pennington et al. 2017, Fig. 2); ReLU cannot be made isometric.

``mean_sq`` and ``var_sq`` are the mean and the (population) variance of ``s²``, i.e. of the
eigenvalues of ``J Jᵀ``.

The Jacobian is computed with ``torch.func.jacrev`` (reverse mode, one ``vjp`` per output unit,
vmapped), then ``torch.linalg.svdvals`` in float64 on the CPU. Both are bounded: a side of ``J``
may be at most :data:`MAX_JACOBIAN_SIDE`, and the memory estimate :func:`jacobian_bytes` must fit
the memory budget (``INITVIZ_MEMORY_BUDGET_MB``), or :class:`~initviz.errors.TooLarge` says how
much it would need.

References: Saxe, McClelland & Ganguli (2014), Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks, ICLR; Pennington, Schoenholz & Ganguli (2017),
Resurrecting the sigmoid in deep learning through dynamical isometry: theory and practice, NeurIPS.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import jacrev

from initviz.devices import resolve_device, side_by_side
from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec, build_model, check_memory, memory_budget
from initviz.probe import input_generator

MAX_JACOBIAN_SIDE = 2048
"""Largest input or output size: an SVD of 2048 × 2048 takes a few seconds on a laptop CPU."""

ISOMETRY_SPREAD = 0.05
WELL_CONDITIONED_SPREAD = 2.0
"""Readings of the spread ``std(s²) / mean(s²)``: one Gaussian layer has 1 (Marchenko–Pastur),
``L`` Gaussian linear layers about √L, orthogonal tanh at the edge of chaos stays near 1.5 at
any depth, orthogonal linear has 0."""

_COTANGENT_COPIES = 4  # vmapped cotangents alive at once in jacrev's backward pass, per layer


def jacobian_bytes(spec: NetworkSpec) -> int:
    """A conservative estimate of the memory :func:`jacobian_spectrum` needs, in bytes.

    float32 parameters twice (measured: the vmapped backward pass holds about one more copy of
    the weights' size at its peak), ``J`` itself (``out × in``) and ``jacrev``'s vmapped
    cotangents (a few ``out × width`` at once), plus the float64 copy of ``J`` and LAPACK's
    workspace for the SVD.
    """
    out, inp = spec.sizes[-1], spec.input_dim
    widest = max(*spec.sizes, inp)
    float32 = 2 * spec.parameter_count() + _COTANGENT_COPIES * out * widest + out * inp
    return 4 * float32 + 8 * 3 * out * inp


def check(spec: NetworkSpec) -> None:
    """Raise InvalidSpec or TooLarge where :func:`jacobian_spectrum` would refuse ``spec``."""
    if spec.norm == "batchnorm":
        raise InvalidSpec("norm", spec.norm, "none or layernorm for the Jacobian: batch norm "
                          "couples the inputs of a batch, so one input has no Jacobian of its own")
    for field, size in (("input_dim", spec.input_dim), ("width", spec.sizes[-1])):
        if size > MAX_JACOBIAN_SIDE:
            raise InvalidSpec(field, size, f"at most {MAX_JACOBIAN_SIDE} for the Jacobian")
    check_memory("this Jacobian", jacobian_bytes(spec), reduce="width or depth")


def probe_input(spec: NetworkSpec, seed: int) -> torch.Tensor:
    """The probe input ``x ~ N(0, I)``, drawn apart from the weights' random stream."""
    return torch.randn(spec.input_dim, generator=input_generator(seed))


def input_output_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``∂model(x)/∂x`` for one input vector ``x``: shape ``(out, in)``."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # only the input is differentiated
    return jacrev(model)(x)


@dataclass(frozen=True)
class JacobianSpectrum:
    """The singular values of ``J`` (descending) and the moments of ``s²``."""

    singular_values: np.ndarray
    mean_sq: float
    var_sq: float
    shape: tuple[int, int]
    device: str
    device_notice: str | None
    seconds: float

    @property
    def spread(self) -> float:
        """``std(s²) / mean(s²)``: 0 for an isometry, about √L for a deep Gaussian linear net."""
        return math.sqrt(self.var_sq) / self.mean_sq if self.mean_sq > 0 else math.inf

    @property
    def condition(self) -> float:
        """``s_max / s_min`` (inf where a direction is lost)."""
        smallest = float(self.singular_values[-1])
        return float(self.singular_values[0]) / smallest if smallest > 0 else math.inf

    @property
    def reading(self) -> str:
        """One line: well conditioned or spread, with the numbers that say so."""
        moments = f"s² has mean {self.mean_sq:.3g} and variance {self.var_sq:.3g}"
        ratio = ("some input directions are lost (smallest s = 0)" if math.isinf(self.condition)
                 else f"s_max / s_min = {self.condition:.3g}")
        spread = f"spread std/mean of s² = {self.spread:.3g}"
        if self.spread <= ISOMETRY_SPREAD:
            return f"Isometric: every s ≈ {math.sqrt(self.mean_sq):.3g} ({moments})."
        if self.spread <= WELL_CONDITIONED_SPREAD:
            return f"Well conditioned: {moments} ({spread}); {ratio}."
        return (f"Spread: {moments} ({spread}), so some directions are stretched far more than "
                f"others; {ratio}.")

    def frame(self) -> pd.DataFrame:
        """Columns ``index`` (1 = largest), ``singular_value``, ``squared``."""
        s = self.singular_values
        return pd.DataFrame({"index": np.arange(1, len(s) + 1), "singular_value": s,
                             "squared": s**2})

    def to_json_dict(self) -> dict:
        """The ``jacobian --json`` document (DESIGN.md)."""
        return {"singular_values": self.singular_values.tolist(), "mean_sq": self.mean_sq,
                "var_sq": self.var_sq, "shape": list(self.shape), "device": self.device,
                "seconds": self.seconds}


def jacobian_spectrum(spec: NetworkSpec, seed: int = 0, device: str = "auto") -> JacobianSpectrum:
    """Build ``spec`` from ``seed`` and return the spectrum of its Jacobian at the probe input.

    Raises InvalidSpec for batch norm or a side over :data:`MAX_JACOBIAN_SIDE`, TooLarge where
    :func:`jacobian_bytes` exceeds the memory budget.
    """
    check(spec)
    choice = resolve_device(device)
    start = time.perf_counter()
    model = build_model(spec, seed, device=choice.device)
    jac = input_output_jacobian(model, probe_input(spec, seed).to(choice.device))
    # float64 on the CPU: MPS has no float64, and s² near 1 must not drown in float32 rounding.
    s = torch.linalg.svdvals(jac.detach().to("cpu", torch.float64)).numpy()
    seconds = time.perf_counter() - start
    squared = s**2
    return JacobianSpectrum(s, float(squared.mean()), float(squared.var()), tuple(jac.shape),
                            choice.name, choice.notice, seconds)


def jacobian_spectra(specs: Sequence[NetworkSpec], seed: int = 0,
                     device: str = "auto") -> list[JacobianSpectrum]:
    """:func:`jacobian_spectrum` of each spec, computed side by side where their memory fits the
    budget together (:func:`initviz.devices.side_by_side`)."""
    return side_by_side(lambda spec: jacobian_spectrum(spec, seed=seed, device=device), specs,
                        needed_bytes=sum(jacobian_bytes(spec) for spec in specs),
                        budget=memory_budget())


__all__ = [
    "ISOMETRY_SPREAD", "JacobianSpectrum", "MAX_JACOBIAN_SIDE", "WELL_CONDITIONED_SPREAD",
    "check", "input_output_jacobian", "jacobian_bytes", "jacobian_spectra", "jacobian_spectrum",
    "probe_input",
]
