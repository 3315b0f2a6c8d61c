"""Per-layer statistics of a freshly initialized network, forward and backward, from hooks.

One forward and one backward pass on a batch of N(mean, std²) inputs (N(0, 1) by default). The
probe's loss is a fixed random projection of the last hidden layer, ``L = Σ_{b,i} h_L[b,i] ·
r[b,i]`` with ``r ~ N(0, 1)``, so ``dL/dh_L = r`` has unit variance whatever the forward pass did:
the backward statistics show what the network does to a gradient, not what the loss did to it.

Per layer, besides the moments: ``dead_frac``, the share of units that are off (at or below the
activation's dead threshold, :mod:`initviz.activations`) for every input of the batch -- such a
unit passes on no gradient at all; ``zero_frac``, the share of (input, unit) pairs that are off
(about 1/2 for a healthy ReLU layer); ``weight_grad_norm``, ``‖∂L/∂W‖ / √batch``: L is a sum of
one term ``ℓ_b = h_L[b]·r[b]`` per input with independent ``r[b]``, so the batch's gradient norm
grows as √batch and this is the root mean square of one input's ``‖∂ℓ_b/∂W‖``, the same at any
batch size; ``grad_to_weight_ratio`` is that over ``‖W‖``.

Statistics stay on the device as 0-d tensors while the hooks collect them and are stacked and
copied to the host once at the end, so a profile costs one host sync however deep the network.
Histograms use each layer's own range (min to max), like TensorBoard's; the percentile bands are
read off those histograms at TensorBoard's basis points (min, the ±0.5/1/1.5 σ-equivalents of a
normal, the median, max).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn

from initviz.archs import ExtraColumns, ProbePoint
from initviz.datasets import MAX_SEED
from initviz.devices import resolve_device, side_by_side
from initviz.errors import InvalidSpec, check_int
from initviz.meanfield import MeanField, Prediction, predict, theory_unavailable_reason
from initviz.network import (NetworkSpec, build_model, check_memory, estimate_bytes,
                             memory_budget as memory_budget_bytes)
from initviz.text import json_number

LAYER_COLUMNS = (
    "layer", "fan_in", "fan_out", "weight_mean", "weight_std", "weight_std_theory",
    "preact_mean", "preact_std", "preact_var_theory", "act_mean", "act_std",
    "saturated_frac", "dead_frac", "zero_frac", "grad_std", "weight_grad_norm",
    "grad_to_weight_ratio",
)
KINDS = ("weight", "preact", "act", "grad")
BASIS_POINTS = (0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000)
"""TensorBoard's distribution basis points, in 1/100 of a percent."""

MAX_PROBE_BATCH = 8192  # inputs per profile; the training minibatch has its own limit
MAX_INPUT_MEAN = 100.0
"""The probe input's mean lies in [-this, this] and its std in [0, this]."""
MAX_BINS = 200
INPUT_STREAM = 0x9E3779B9  # the inputs' generator is seeded apart from the weights' one
_FLOAT32_TINY = torch.finfo(torch.float32).tiny


@dataclass
class Profile:
    """Everything one probe measured, as tidy tables ready for charts and export."""

    spec: NetworkSpec
    batch: int
    seed: int
    device: str
    device_notice: str | None
    seconds: float
    layers: pd.DataFrame
    histograms: pd.DataFrame
    percentiles: pd.DataFrame
    first_nonfinite_layer: int | None
    nonfinite_pass: str | None  # "forward" or "backward": the pass that overflowed first
    prediction: Prediction | None
    theory_note: str | None
    input_mean: float = 0.0
    input_std: float = 1.0

    @property
    def theory(self) -> MeanField | None:
        return None if self.prediction is None else self.prediction.summary

    def to_json_dict(self) -> dict:
        theory = self.theory
        return {
            "config": {**self.spec.to_dict(), "batch": self.batch, "seed": self.seed,
                       "input_mean": self.input_mean, "input_std": self.input_std},
            "device": self.device,
            "seconds": self.seconds,
            "first_nonfinite_layer": self.first_nonfinite_layer,
            "nonfinite_pass": self.nonfinite_pass,
            "theory": {
                "q_star": None if theory is None else theory.q_star,
                "chi1": None if theory is None else theory.chi1,
                "depth_scale": None if theory is None else theory.depth_scale,
                "phase": None if theory is None else theory.phase,
                "note": self.theory_note,
            },
            "layers": [
                {k: json_number(v) for k, v in row.items()}
                for row in self.layers.to_dict(orient="records")
            ],
        }


class TensorStats:
    """Collects on-device summaries of tensors, one kind and layer at a time, with no host sync.

    Statistics are memory-bound, so each tensor is read as few times as possible: aminmax, then
    one pass to each bin position ``(x − low)·bins/span`` (into a scratch buffer reused from tensor
    to tensor: fresh multi-megabyte temporaries cost page faults on a CPU), from which come the
    histogram, the mean (a sum) and the std (a norm of the deviations from that mean). Positions
    lie in [0, bins], so neither the sum nor the squares overflow float32 even where the values
    approach 1e38; the second pass over deviations avoids cancellation. (``torch.std_mean`` and
    ``torch.histc`` each cost several such passes on a CPU.) Per tensor only what needs the tensor
    is done; turning those sums into means, stds and histograms happens in :meth:`summaries`, for
    every tensor at once: at the page's sizes each small operation costs more to launch than to
    run, and the probe records 4 × depth tensors.

    Args:
        bins: histogram bins per tensor.
        scatter: bin with ``index_add_`` (True) or ``bincount`` (False); default: ``bincount``
            on a CPU only, since elsewhere it reads its output size back to the host.
    """

    def __init__(self, bins: int, scatter: bool | None = None):
        self.bins = bins
        self.scatter = scatter
        self.records: dict[tuple[str, int], tuple] = {}
        self._work: torch.Tensor | None = None
        self._index: torch.Tensor | None = None

    def _scratch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.numel()
        if self._work is None or self._work.numel() < n or self._work.device != x.device:
            self._work = torch.empty(n, device=x.device, dtype=torch.float32)
            # bincount of a uint8 index (bins <= MAX_BINS < 255) is the fastest histogram on a
            # CPU; elsewhere bincount would read its output size back to the host: scatter.
            scatter = x.device.type != "cpu" if self.scatter is None else self.scatter
            index_dtype = torch.int64 if scatter else torch.uint8
            self._index = torch.empty(n, device=x.device, dtype=index_dtype)
        return self._work[:n], self._index[:n]

    def add(self, kind: str, layer: int, x: torch.Tensor) -> None:
        """Record the summaries of ``x`` (any shape, flattened to (n,)) under ``(kind, layer)``."""
        x = x.detach().reshape(-1).float()  # (n,): every entry counts alike
        bins = self.bins
        work, index = self._scratch(x)
        value, high = torch.aminmax(x)
        # A constant tensor (zeros, dead layer) gets a narrow range around its value; so does one
        # whose range is too narrow for bins/span to be a float32 (subnormal values): its std is
        # then reported as 0 rather than as NaN.
        span = high - value
        constant = span <= bins * _FLOAT32_TINY
        pad = value.abs().clamp_(min=1e-12).mul_(1e-3)
        low = torch.where(constant, value - pad * 0.5, value)
        span = torch.where(constant, pad, span)
        position = torch.sub(x, low, out=work).mul_(bins / span)  # in [0, bins]
        mean_position = position.sum() / x.numel()
        if index.dtype == torch.uint8:
            # A NaN converts to an arbitrary byte: the slice keeps the shape; such a record is
            # marked non-finite in summaries() and never shown.
            index.copy_(position)
            counts = torch.bincount(index, minlength=bins + 1)[:bins + 1]
        else:  # clamped as integers: a non-finite x converts to an arbitrary integer
            index.copy_(position).clamp_(0, bins)
            counts = torch.zeros(bins + 1, device=x.device, dtype=torch.int64)
            counts.index_add_(0, index, torch.ones((), device=x.device,
                                                   dtype=torch.int64).expand_as(index))
        deviation = torch.linalg.vector_norm(position.sub_(mean_position))
        self.records[(kind, layer)] = (value, low, span, constant, mean_position, deviation,
                                       counts, x.numel())

    def summaries(self, order: Sequence[tuple[str, int]]) -> dict[str, torch.Tensor]:
        """``mean std low span counts finite`` of the records in ``order``, stacked."""
        value, low, span, constant, mean_position, deviation = (
            torch.stack(column) for column in zip(*(self.records[o][:6] for o in order)))
        counts = torch.stack([self.records[o][6] for o in order])
        n = torch.tensor([self.records[o][7] for o in order], device=low.device)
        bins = self.bins
        unit = span / bins
        return {
            "mean": torch.where(constant, value, low + unit * mean_position),  # exact if constant
            "std": torch.where(constant, 0.0, deviation * (unit / n.sqrt())),
            "low": low, "span": span,
            # The maximum sits at position `bins` and joins the last bin.
            "counts": torch.cat([counts[:, :bins - 1], counts[:, bins - 1:].sum(1, keepdim=True)],
                                dim=1),
            # Finite values whose range overflows float32 (about ±2e38) count as an overflow.
            "finite": torch.isfinite(low) & torch.isfinite(span),
        }


def input_generator(seed: int) -> torch.Generator:
    """The generator of the probe's inputs for ``seed``: seeded apart from the weights' stream, so
    the same seed gives the same inputs under every scheme (codegen's script writes it out)."""
    return torch.Generator().manual_seed(seed ^ INPUT_STREAM)


def _fraction_outside(z: torch.Tensor, low: float, high: float) -> torch.Tensor:
    count = torch.zeros((), device=z.device, dtype=torch.int64)
    if math.isfinite(low):
        count = count + torch.count_nonzero(z < low)
    if math.isfinite(high):
        count = count + torch.count_nonzero(z > high)
    return count.float() / z.numel()


def _percentiles(counts: torch.Tensor, low: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Values at :data:`BASIS_POINTS` from histograms ``counts`` (rows), interpolating in bins.

    ``counts`` (records, bins), ``low`` and ``span`` (records,) -> (records, len(BASIS_POINTS)).
    """
    bins = counts.shape[1]
    cdf = torch.cumsum(counts.double(), 1)  # (records, bins)
    total = cdf[:, -1:].clamp(min=1)  # (records, 1)
    cdf = torch.cat([torch.zeros_like(total), cdf], 1) / total  # (records, bins + 1): at the edges
    targets = torch.tensor(BASIS_POINTS, dtype=cdf.dtype, device=cdf.device) / 10000
    targets = targets.expand(cdf.shape[0], -1).contiguous()  # (records, points)
    right = torch.searchsorted(cdf, targets, side="left").clamp(1, bins)
    left = right - 1
    c_left, c_right = cdf.gather(1, left), cdf.gather(1, right)
    within = torch.where(c_right > c_left, (targets - c_left) / (c_right - c_left),
                         torch.zeros_like(targets))
    edge = left.to(cdf.dtype) + within
    values = (low[:, None] + span[:, None] * edge / bins).to(low.dtype)
    values[:, 0] = low
    values[:, -1] = low + span
    return values


def check_input(mean: float, std: float) -> tuple[float, float]:
    """The probe input's mean and std as floats, or InvalidSpec: a finite mean in
    [-:data:`MAX_INPUT_MEAN`, :data:`MAX_INPUT_MEAN`], a std in [0, :data:`MAX_INPUT_MEAN`]."""
    checked = []
    for name, value, low in (("input_mean", mean, -MAX_INPUT_MEAN), ("input_std", std, 0.0)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not low <= number <= MAX_INPUT_MEAN:  # NaN fails too
            raise InvalidSpec(name, value, f"a number in [{low:g}, {MAX_INPUT_MEAN:g}]")
        checked.append(number)
    return checked[0], checked[1]


def profile(spec: NetworkSpec, batch: int = 256, seed: int = 0, device: str = "auto",
            bins: int = 60, memory_budget: int | None = None, input_mean: float = 0.0,
            input_std: float = 1.0) -> Profile:
    """Measure ``spec`` freshly initialized from ``seed``, layer by layer, forward and backward.

    One forward pass of ``batch`` N(``input_mean``, ``input_std``²) inputs and one backward pass
    of the loss
    ``L = Σ h_last · r`` (``r ~ N(0, 1)`` drawn once), with hooks on every activation: the
    module docstring says what each column means.

    Args:
        spec: the network.
        batch: inputs in [1, :data:`MAX_PROBE_BATCH`] (at least 2 with batch norm).
        seed: the seed of the weights; the inputs and ``r`` are drawn apart from it
            (:func:`input_generator`), so every scheme sees the same inputs.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``; one that is not there falls back to cpu.
        bins: histogram bins per layer, in [2, :data:`MAX_BINS`].
        memory_budget: bytes the pass may take (default :func:`initviz.network.memory_budget`).
        input_mean, input_std: every input number is ``input_mean + input_std · N(0, 1)``
            (:func:`check_input`). The mean-field prediction starts from the input's second
            moment ``E[x²] = mean² + std²``, so layer 1's pre-activation variance is
            ``σ_w² (mean² + std²) + σ_b²`` (Poole et al. 2016's ``q¹``): a start at the fixed
            point ``q*`` or away from it (SELU's attraction) is a choice of mean and std.

    Returns:
        A :class:`Profile`: one row per layer (:data:`LAYER_COLUMNS`), histograms,
        percentiles, the mean-field prediction and where values first overflow.

    Example::

        >>> prof = profile(NetworkSpec.stack(256, 20, scheme="xavier_normal"), seed=0)
        >>> prof.layers["act_std"].iloc[-1] < prof.layers["act_std"].iloc[0]  # ReLU: fades
        True
    """
    batch = check_int("batch", batch, 1, MAX_PROBE_BATCH)
    if spec.norm == "batchnorm" and batch < 2:  # torch refuses to normalize over one input
        raise InvalidSpec("batch", batch, "at least 2 with batchnorm, which normalizes over "
                          "the batch")
    bins = check_int("bins", bins, 2, MAX_BINS)
    seed = check_int("seed", seed, 0, MAX_SEED)
    input_mean, input_std = check_input(input_mean, input_std)
    check_memory("this profile", estimate_bytes(spec, batch), memory_budget)
    choice = resolve_device(device)
    dev = choice.device

    start = time.perf_counter()
    model = build_model(spec, seed, device=dev)
    inputs = input_generator(seed)
    architecture = spec.architecture
    x = (input_mean + input_std
         * torch.randn(batch, *architecture.input_shape(spec), generator=inputs)).to(dev)
    projection = torch.randn(batch, *architecture.output_shape(spec), generator=inputs).to(dev)
    stats = TensorStats(bins)
    points = architecture.probe_points(model, spec)
    hooks = _ActivationHooks(points, spec, stats, dev)
    extra = architecture.extra_columns(model, spec)
    linears = [point.weight for point in points]
    for layer, linear in enumerate(linears, start=1):
        stats.add("weight", layer, linear.weight)
    try:
        with torch.enable_grad():
            hidden = model(x.requires_grad_(True))
            (hidden * projection).sum().backward()
    finally:
        hooks.remove()
        if extra is not None:
            extra.remove()
    host = _to_host(spec, stats, hooks, linears, dev, extra)
    seconds = time.perf_counter() - start
    return _assemble(spec, batch, seed, choice, seconds, bins, host, input_mean, input_std)


class _ActivationHooks:
    """Forward hooks at each entry's :class:`~initviz.archs.ProbePoint`: the pre-activation and
    output statistics, the saturated, dead and off shares, and a tensor hook for the gradient of
    the entry's output."""

    def __init__(self, points: Sequence[ProbePoint], spec: NetworkSpec, stats: TensorStats,
                 dev: torch.device):
        self.stats = stats
        self.activation = spec.resolved_activation
        self.saturated: list[torch.Tensor] = []
        self.dead: list[torch.Tensor] = []
        self.off: list[torch.Tensor] = []
        self.nan = torch.full((), math.nan, device=dev)
        self.handles = []
        for layer, point in enumerate(points, start=1):
            self.handles += [
                point.preact.register_forward_hook(partial(self._preact, layer=layer,
                                                           read_input=point.preact_input)),
                point.output.register_forward_hook(partial(self._output, layer=layer)),
                point.region.register_forward_hook(self._region),
            ]

    def _grad(self, grad: torch.Tensor, layer: int) -> None:
        self.stats.add("grad", layer, grad)  # returns None: the gradient flows on unchanged

    def _preact(self, module: nn.Module, inputs: tuple, output: torch.Tensor, layer: int,
                read_input: bool) -> None:
        self.stats.add("preact", layer, inputs[0] if read_input else output)

    def _output(self, module: nn.Module, inputs: tuple, output: torch.Tensor, layer: int) -> None:
        self.stats.add("act", layer, output)
        # dL/d(entry output), as a full backward hook on the module would see it; a tensor hook
        # skips the identity autograd nodes such a module hook wraps around it.
        output.register_hook(partial(self._grad, layer=layer))

    def _region(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        z = inputs[0]
        sat, dead_below = self.activation.saturated_outside, self.activation.dead_at_or_below
        self.saturated.append(self.nan if sat is None else _fraction_outside(z, *sat))
        if dead_below is None:
            self.dead.append(self.nan)
            self.off.append(self.nan)
        else:
            is_off = (z <= dead_below).reshape(z.shape[0], -1)  # (batch, units)
            # A unit that is off for one input still learns from the others; only one off
            # for every input of the batch passes on no gradient at all: that is dead.
            self.dead.append(is_off.all(dim=0).float().mean())
            self.off.append(torch.count_nonzero(is_off).float() / is_off.numel())

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _to_host(spec: NetworkSpec, stats: TensorStats, hooks: _ActivationHooks,
             linears: list[nn.Linear], dev: torch.device,
             extra: ExtraColumns | None) -> dict[str, np.ndarray]:
    """Every summary as NumPy arrays, in one transfer to the host."""
    weight_norms = torch.stack(torch._foreach_norm([lin.weight.detach() for lin in linears]))
    grad_norms = torch.stack(torch._foreach_norm([lin.weight.grad for lin in linears]))
    order = [(kind, layer) for kind in KINDS for layer in range(1, spec.depth + 1)]
    stacked = stats.summaries(order)
    percentiles = _percentiles(stacked["counts"], stacked["low"], stacked["span"])
    host = {k: v.cpu().numpy() for k, v in {
        **stacked, "percentiles": percentiles, "saturated": torch.stack(hooks.saturated),
        "dead": torch.stack(hooks.dead), "off": torch.stack(hooks.off),
        "weight_norms": weight_norms, "grad_norms": grad_norms,
        **({} if extra is None else {f"extra.{name}": torch.stack(values)
                                     for name, values in extra.values.items()}),
    }.items()}
    # Entries above ~2e19 overflow a float32 sum of squares though each is finite: such norms
    # (exploding networks only) are summed again in float64, which for every layer would cost a
    # float64 copy of each gradient. MPS has no float64: there they stay an overflow.
    if dev.type != "mps":
        host["grad_norms"] = host["grad_norms"].astype(np.float64)
        for i in np.flatnonzero(np.isinf(host["grad_norms"])):
            host["grad_norms"][i] = torch.linalg.vector_norm(
                linears[i].weight.grad, dtype=torch.float64).item()
    return host


def profiles(specs: Sequence[NetworkSpec], batch: int = 256, seed: int = 0,
             device: str = "auto", bins: int = 60,
             memory_budget: int | None = None, input_mean: float = 0.0,
             input_std: float = 1.0) -> list[Profile]:
    """:func:`profile` of each spec (the page's compared schemes), computed side by side where
    their memory fits the budget together (:func:`initviz.devices.side_by_side`).

    Args:
        specs: the networks, e.g. one per compared scheme.
        batch, seed, device, bins, memory_budget, input_mean, input_std: as for
            :func:`profile`; every spec is measured on the same inputs.

    Returns:
        One :class:`Profile` per spec, in the order of ``specs``.

    Example::

        >>> specs = [NetworkSpec.stack(64, 5, scheme=s) for s in ("kaiming_normal", "zeros")]
        >>> [p.spec.scheme for p in profiles(specs, batch=32)]
        ['kaiming_normal', 'zeros']
    """
    budget = memory_budget_bytes() if memory_budget is None else memory_budget
    batch = check_int("batch", batch, 1, MAX_PROBE_BATCH)
    return side_by_side(
        lambda spec: profile(spec, batch=batch, seed=seed, device=device, bins=bins,
                             memory_budget=budget, input_mean=input_mean, input_std=input_std),
        specs, needed_bytes=sum(estimate_bytes(spec, batch) for spec in specs), budget=budget)


def _assemble(spec: NetworkSpec, batch: int, seed: int, choice, seconds: float, bins: int,
              host: dict[str, np.ndarray], input_mean: float, input_std: float) -> Profile:
    first_nonfinite, nonfinite_pass = _first_nonfinite(host, spec.depth)
    prediction = predict(spec, input_second_moment=input_mean**2 + input_std**2)
    histograms, percentiles = _distributions(host, spec.depth, bins)
    return Profile(
        spec=spec, batch=batch, seed=seed, device=choice.name, device_notice=choice.notice,
        seconds=seconds, layers=_layer_table(spec, batch, host, prediction),
        histograms=histograms, percentiles=percentiles,
        first_nonfinite_layer=first_nonfinite, nonfinite_pass=nonfinite_pass,
        prediction=prediction,
        theory_note=theory_unavailable_reason(spec) or spec.architecture.theory_note(spec),
        input_mean=input_mean, input_std=input_std,
    )


def _first_nonfinite(host: dict[str, np.ndarray], depth: int) -> tuple[int | None, str | None]:
    """The first layer (numbered from 1) whose values are not finite, and in which pass."""
    finite = host["finite"].reshape(len(KINDS), depth).astype(bool)  # (kinds, layers)
    forward_bad = np.nonzero(~finite[:KINDS.index("grad")].all(axis=0))[0]
    # A weight's gradient (the outer product of a layer's input and its output's gradient) can
    # overflow where both factors are finite.
    backward_bad = np.nonzero(~finite[KINDS.index("grad")] | ~np.isfinite(host["grad_norms"]))[0]
    if len(forward_bad):
        return int(forward_bad[0]) + 1, "forward"
    if len(backward_bad):  # the backward pass meets the deepest layer first
        return int(backward_bad[-1]) + 1, "backward"
    return None, None


def _layer_table(spec: NetworkSpec, batch: int, host: dict[str, np.ndarray],
                 prediction) -> pd.DataFrame:
    """One row per layer with :data:`LAYER_COLUMNS`; NaN where a value is not finite or there is
    no theory."""
    depth = spec.depth

    def per_kind(key: str, kind: str) -> np.ndarray:
        i = KINDS.index(kind)
        return host[key][i * depth:(i + 1) * depth]

    fans = np.array(spec.fans)
    # The batch's weight gradient is a sum of one term per input, each with its own random
    # direction r[b]: its norm grows as √batch, like a random walk. Divided by √batch it is the
    # root mean square of one input's ‖∂ℓ_b/∂W‖, whatever the batch size.
    grad_norm = host["grad_norms"] / math.sqrt(batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = grad_norm / host["weight_norms"]
    measured = {
        "weight_mean": per_kind("mean", "weight"),
        "weight_std": per_kind("std", "weight"),
        "weight_std_theory": _weight_std_theory(spec),
        "preact_mean": per_kind("mean", "preact"),
        "preact_std": per_kind("std", "preact"),
        "preact_var_theory": prediction.preact_var if prediction else [None] * depth,
        "act_mean": per_kind("mean", "act"),
        "act_std": per_kind("std", "act"),
        "saturated_frac": host["saturated"],
        "dead_frac": host["dead"],
        "zero_frac": host["off"],
        "grad_std": per_kind("std", "grad"),
        "weight_grad_norm": grad_norm,
        "grad_to_weight_ratio": ratio,
    }
    columns = {"layer": np.arange(1, depth + 1), "fan_in": fans[:, 0], "fan_out": fans[:, 1]}

    def add(named: dict) -> None:
        for name, values in named.items():
            column = np.array(values, dtype=np.float64)  # None (no theory) becomes NaN
            column[~np.isfinite(column)] = np.nan
            columns[name] = column

    add(measured)
    extra = {k.removeprefix("extra."): v for k, v in host.items() if k.startswith("extra.")}
    own = spec.architecture.table_columns(columns, extra, prediction)
    add(own)
    return pd.DataFrame(columns, columns=[*LAYER_COLUMNS, *own])


def _weight_std_theory(spec: NetworkSpec) -> list[float | None]:
    """The scheme's std of each entry's weight, times what the architecture rescales it by."""
    factor = spec.architecture.weight_std_factor(spec)
    return [None if law is None else law.std() * factor
            for law in spec.architecture.weight_laws(spec)]


def _distributions(host: dict[str, np.ndarray], depth: int,
                   bins: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The histograms (one row per bin) and percentiles (one row per kind and layer) of every
    recorded tensor whose values are finite. Host arrays hold one row per (kind, layer), kind
    major, as :data:`KINDS` × layers."""
    kind_col = np.repeat(KINDS, depth)
    layer_col = np.tile(np.arange(1, depth + 1), len(KINDS))
    usable = host["finite"].astype(bool)
    with np.errstate(invalid="ignore", over="ignore"):  # rows of non-finite layers are dropped
        edges = host["low"][:, None] + host["span"][:, None] * np.arange(bins + 1) / bins
    histograms = pd.DataFrame({
        "layer": np.repeat(layer_col[usable], bins),
        "kind": np.repeat(kind_col[usable], bins),
        "bin_lo": edges[usable, :-1].ravel(),
        "bin_hi": edges[usable, 1:].ravel(),
        "count": host["counts"][usable].ravel().astype(np.int64),
    })
    percentiles = pd.DataFrame(host["percentiles"][usable],
                               columns=[f"p{bp}" for bp in BASIS_POINTS])
    percentiles.insert(0, "kind", kind_col[usable])
    percentiles.insert(0, "layer", layer_col[usable])
    return histograms, percentiles


__all__ = ["BASIS_POINTS", "INPUT_STREAM", "KINDS", "LAYER_COLUMNS", "MAX_BINS", "MAX_PROBE_BATCH",
           "MAX_INPUT_MEAN", "Profile", "TensorStats", "check_input", "input_generator", "profile",
           "profiles"]
