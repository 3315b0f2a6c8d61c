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
eigenvalues of ``J Jᵀ``, over all the singular values.

Everything is float64: a deep network's singular values span hundreds of decades, and float32's
rounding (1e-7 of ``s_max``) would be read as singular values. The Jacobian is computed with
``torch.func.jacrev`` (reverse mode, one ``vjp`` per output unit, vmapped) after a forward pass
that checks every layer; a network that overflows is reported with the first layer that did, and
never reaches the SVD (``torch.linalg.svdvals``). A singular value that is 0 or at most
``s_max · max(m, n) · ε`` (the numerical-rank tolerance of ``numpy.linalg.matrix_rank``) is
*zero*: its direction is lost (a ReLU unit that is off for the probe input zeroes a row) and its
computed value is rounding.
The condition number and the reading use the nonzero ones only and say how many are zero.

Both steps are bounded: a side of ``J`` may be at most :data:`MAX_JACOBIAN_SIDE`, and the memory
estimate :func:`jacobian_bytes` must fit the memory budget (``INITVIZ_MEMORY_BUDGET_MB``), or
:class:`~initviz.errors.TooLarge` says how much it would need.

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
from initviz.errors import InitvizError, InvalidSpec
from initviz.network import NetworkSpec, build_model, check_memory, memory_budget
from initviz.probe import input_generator

MAX_JACOBIAN_SIDE = 2048
"""Largest input or output size: an SVD of 2048 × 2048 takes a few seconds on a laptop CPU."""

ISOMETRY_TOLERANCE = 0.1
WELL_CONDITIONED = 10.0
"""Readings of the nonzero singular values: *isometric* where every one lies within
``ISOMETRY_TOLERANCE`` of 1, *well conditioned* where ``s_max / s_min ≤ WELL_CONDITIONED`` (no
direction is stretched more than ten times another), *ill conditioned* beyond, and *singular*
where some are zero. One square Gaussian layer is already ill conditioned (its ``s_min`` falls
like 1/N); orthogonal linear layers are isometric at any depth."""

LARGEST_SINGULAR_VALUE = float(np.finfo(np.float64).max) ** 0.25
"""About 1.2e77: the variance of ``s²`` needs ``s⁴``, which overflows float64 beyond it."""

_COTANGENT_COPIES = 2  # vmapped cotangents alive at once in jacrev's backward pass, per layer


class NonFiniteJacobian(InitvizError):
    """The network overflows before its Jacobian can be computed, so it has no spectrum."""


def jacobian_bytes(spec: NetworkSpec) -> int:
    """A conservative estimate of the memory :func:`jacobian_spectrum` needs, in bytes.

    float32 parameters as built and their float64 copy; ``jacrev``'s vmapped cotangents (a few
    ``out × width`` at once); ``J`` and LAPACK's copy of it for the SVD (measured peaks against
    it: benchmarks/README.md).
    """
    out, inp = jacobian_shape(spec)
    widest = max(*spec.sizes, inp)
    float64 = spec.parameter_count() + _COTANGENT_COPIES * out * widest + 2 * out * inp
    return 4 * spec.parameter_count() + 8 * float64


def jacobian_shape(spec: NetworkSpec) -> tuple[int, int]:
    """``(m, n)``: the Jacobian's rows (numbers in the last entry's output of one example) and
    columns (numbers in the chain's input)."""
    architecture = spec.architecture
    return (math.prod(architecture.output_shape(spec)),
            math.prod(architecture.jacobian_input_shape(spec)))


def check(spec: NetworkSpec) -> None:
    """Raise an InitvizError where :func:`jacobian_spectrum` would refuse ``spec``."""
    if spec.norm == "batchnorm":
        raise InitvizError("a network with batch norm has no Jacobian of one input: batch norm "
                           "couples the inputs of a batch (choose norm none or layernorm)")
    for side, size in zip(("output", "input"), jacobian_shape(spec)):
        if size > MAX_JACOBIAN_SIDE:
            field = ({"output": "width", "input": "input_dim"}[side] if spec.arch == "mlp"
                     else f"the Jacobian's {side} size")
            raise InvalidSpec(field, size, f"at most {MAX_JACOBIAN_SIDE} for the Jacobian")
    check_memory("this Jacobian", jacobian_bytes(spec), reduce="width or depth")


def probe_input(spec: NetworkSpec, seed: int) -> torch.Tensor:
    """The probe input ``x ~ N(0, I)`` of the architecture's chain, drawn apart from the weights'
    random stream."""
    return torch.randn(*spec.architecture.jacobian_input_shape(spec),
                       generator=input_generator(seed))


def _within_reach(jac: torch.Tensor) -> bool:
    """Whether ``J`` is finite and ``max|J| · √(m n)``, a bound on ``s_max``, is at most
    :data:`LARGEST_SINGULAR_VALUE`."""
    return float(jac.abs().max()) * math.sqrt(jac.numel()) <= LARGEST_SINGULAR_VALUE  # NaN: no


def input_output_jacobian(model: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``∂model(x)/∂x`` for one input ``x`` (any shape): shape ``(out, in)``, the numbers of the
    output and of ``x``, in ``x``'s dtype.

    Raises :class:`NonFiniteJacobian` naming the first block (from 1) whose activation is not
    finite, or else whose Jacobian ``∂h_l/∂x`` is not :func:`_within_reach`.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # only the input is differentiated
    h = x
    for layer, block in enumerate(model, start=1):
        h = block(h)
        if not bool(torch.isfinite(h).all()):
            raise NonFiniteJacobian(f"the activations overflow to inf/NaN at layer {layer} of "
                                    f"{len(model)}, so the network has no Jacobian there")
    jac = jacrev(model)(x).reshape(-1, x.numel())
    if _within_reach(jac):
        return jac
    # Which layer: accumulate J_l = ∂h_l/∂h_{l-1} · J_{l-1} until it leaves reach. Three times
    # the cost of one jacrev, so only here; forward mode (jacfwd) would be cheaper but keeps
    # its dual level in global state, which threads computing side by side would share.
    h, jac = x, torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    for layer, block in enumerate(model, start=1):
        jac = jacrev(block)(h).reshape(-1, h.numel()) @ jac
        h = block(h)
        if not _within_reach(jac):
            raise NonFiniteJacobian(
                f"the Jacobian grows past {LARGEST_SINGULAR_VALUE:.2g} at layer {layer} of "
                f"{len(model)}, too large for float64 to hold the variance of s² (it needs s⁴)")
    return jac  # only the whole-network backward pass overflowed, in a cotangent


def zero_tolerance(singular_values: np.ndarray, shape: tuple[int, int]) -> float:
    """``s_max · max(m, n) · ε`` (float64): at or below it a singular value counts as zero, the
    rule by which ``numpy.linalg.matrix_rank`` counts the rank."""
    largest = float(singular_values[0]) if len(singular_values) else 0.0
    return largest * max(shape) * float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class JacobianSpectrum:
    """The singular values of ``J`` (descending, float64), how many are zero, the moments of
    ``s²``; or, where the network overflows (``overflow`` set), none of them."""

    singular_values: np.ndarray
    zero_count: int
    mean_sq: float
    var_sq: float
    shape: tuple[int, int]
    device: str
    device_notice: str | None
    seconds: float
    overflow: str | None = None

    @classmethod
    def of(cls, singular_values: np.ndarray, shape: tuple[int, int], device: str = "cpu",
           device_notice: str | None = None, seconds: float = 0.0) -> JacobianSpectrum:
        """The spectrum of the singular values ``singular_values`` (any order) of a matrix of
        ``shape``, with its zeros counted and its moments taken without overflow."""
        s = np.sort(np.asarray(singular_values, dtype=np.float64))[::-1]
        zero_count = int(np.count_nonzero(s <= zero_tolerance(s, shape)))
        scale = float(s[0]) if len(s) and s[0] > 0 else 1.0
        relative = (s / scale) ** 2  # s² / s_max², so that s⁴ is never formed
        return cls(s, zero_count, scale**2 * float(relative.mean()),
                   scale**4 * float(relative.var()), shape, device, device_notice, seconds)

    @property
    def nonzero(self) -> np.ndarray:
        """The singular values that are not zero (descending)."""
        return self.singular_values[:len(self.singular_values) - self.zero_count]

    @property
    def spread(self) -> float:
        """``std(s²) / mean(s²)``: 0 for an isometry, about √L for a deep Gaussian linear net."""
        return math.sqrt(self.var_sq) / self.mean_sq if self.mean_sq > 0 else math.inf

    @property
    def condition(self) -> float:
        """``s_max / s_min`` over the nonzero singular values (NaN where all are zero)."""
        kept = self.nonzero
        return float(kept[0] / kept[-1]) if len(kept) else math.nan

    @property
    def conditioning(self) -> str:
        """``singular``, ``isometric``, ``well conditioned`` or ``ill conditioned``: the
        thresholds :data:`ISOMETRY_TOLERANCE` and :data:`WELL_CONDITIONED` applied to ``s``."""
        kept = self.nonzero
        if self.zero_count or not len(kept):
            return "singular"
        if abs(kept[0] - 1) <= ISOMETRY_TOLERANCE and abs(kept[-1] - 1) <= ISOMETRY_TOLERANCE:
            return "isometric"
        return "well conditioned" if self.condition <= WELL_CONDITIONED else "ill conditioned"

    @property
    def reading(self) -> str:
        """One line: the conditioning, with the numbers that say so."""
        if self.overflow is not None:
            return f"No spectrum: {self.overflow}."
        n, kept = len(self.singular_values), self.nonzero
        if not len(kept):
            return f"Every input direction is lost: all {n} singular values are 0 (J = 0)."
        moments = (f"s² has mean {self.mean_sq:.3g} and variance {self.var_sq:.3g} (spread "
                   f"std/mean {self.spread:.3g})")
        ratio = f"s_max / s_min = {self.condition:.3g}"
        word = self.conditioning
        if word == "singular":
            return (f"Singular: {self.zero_count} of {n} input directions are lost (s = 0 to "
                    f"float64 precision); over the other {len(kept)}, {ratio}; {moments}.")
        if word == "isometric":
            return (f"Isometric: every s is within {ISOMETRY_TOLERANCE:g} of 1 (from "
                    f"{kept[-1]:.4g} to {kept[0]:.4g}); {moments}.")
        if word == "well conditioned":
            return f"Well conditioned: {ratio}, at most {WELL_CONDITIONED:g}; {moments}."
        return (f"Ill conditioned: {ratio}, so some directions are stretched far more than "
                f"others; {moments}.")

    def frame(self) -> pd.DataFrame:
        """Columns ``index`` (1 = largest), ``singular_value``, ``squared``, ``zero``."""
        s = self.singular_values
        return pd.DataFrame({"index": np.arange(1, len(s) + 1), "singular_value": s,
                             "squared": s**2, "zero": np.arange(len(s)) >= len(self.nonzero)})

    def to_json_dict(self) -> dict:
        """The ``jacobian --json`` document (docs/DESIGN.md); NonFiniteJacobian where it
        overflowed."""
        if self.overflow is not None:
            raise NonFiniteJacobian(f"no Jacobian spectrum: {self.overflow}")
        return {"singular_values": self.singular_values.tolist(), "zero_count": self.zero_count,
                "mean_sq": self.mean_sq, "var_sq": self.var_sq, "shape": list(self.shape),
                "device": self.device, "seconds": self.seconds}


def jacobian_spectrum(spec: NetworkSpec, seed: int = 0, device: str = "auto") -> JacobianSpectrum:
    """Build ``spec`` from ``seed`` and return the spectrum of its Jacobian at the probe input.

    Args:
        spec: the network; batch norm (InitvizError) and a side over
            :data:`MAX_JACOBIAN_SIDE` (InvalidSpec) are refused, and so is a
            :func:`jacobian_bytes` over the memory budget (TooLarge).
        seed: the seed of the weights (and, apart from them, of the probe input).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``; MPS has no float64, so it computes on
            the CPU.

    Returns:
        The float64 spectrum, or one whose ``overflow`` says at which layer the network
        overflowed (and which has no singular values).

    Example::

        >>> result = jacobian_spectrum(NetworkSpec.stack(64, 10, activation="linear",
        ...                                              scheme="orthogonal", input_dim=64))
        >>> bool(abs(result.singular_values - 1).max() < 1e-5)  # an isometry (float32 weights)
        True
    """
    check(spec)
    choice = resolve_device(device)
    where, notice = choice.device, choice.notice
    if where.type == "mps":
        where, notice = torch.device("cpu"), "mps has no float64: the Jacobian is computed on cpu"
    start = time.perf_counter()
    model = spec.architecture.chain(build_model(spec, seed, device=where).to(torch.float64))
    x = probe_input(spec, seed).to(where, torch.float64)
    shape = jacobian_shape(spec)
    try:
        jac = input_output_jacobian(model, x)
    except NonFiniteJacobian as error:
        return JacobianSpectrum(np.empty(0), 0, math.nan, math.nan, shape, where.type, notice,
                                time.perf_counter() - start, overflow=str(error))
    s = torch.linalg.svdvals(jac.cpu()).numpy()
    return JacobianSpectrum.of(s, shape, where.type, notice, time.perf_counter() - start)


def jacobian_spectra(specs: Sequence[NetworkSpec], seed: int = 0,
                     device: str = "auto") -> list[JacobianSpectrum]:
    """:func:`jacobian_spectrum` of each spec, computed side by side where their memory fits the
    budget together (:func:`initviz.devices.side_by_side`)."""
    return side_by_side(lambda spec: jacobian_spectrum(spec, seed=seed, device=device), specs,
                        needed_bytes=sum(jacobian_bytes(spec) for spec in specs),
                        budget=memory_budget())


__all__ = [
    "ISOMETRY_TOLERANCE", "JacobianSpectrum", "LARGEST_SINGULAR_VALUE", "MAX_JACOBIAN_SIDE",
    "NonFiniteJacobian", "WELL_CONDITIONED", "check", "input_output_jacobian", "jacobian_bytes",
    "jacobian_shape", "jacobian_spectra", "jacobian_spectrum", "probe_input", "zero_tolerance",
]
