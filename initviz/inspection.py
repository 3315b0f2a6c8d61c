"""Your own model: the probe's statistics, verdict and charts for any ``nn.Module``.

:func:`inspect` runs one forward and one backward pass through a caller's model with forward hooks
on every module that holds weights (and on the activation modules that follow them), and returns
the same per-layer table as :func:`initviz.profile`, plus each layer's qualified name and class.
:func:`init_` applies any initviz scheme to every layer with weights, through ``torch.nn.init``
with a seeded ``torch.Generator``, with fans per layer type.

The caller's model is left as it was found: training mode, ``requires_grad`` flags, ``.grad``
tensors (the pass uses ``torch.autograd.grad``, which never writes them), buffers (BatchNorm's
running statistics are restored) and hooks (each one added is removed).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from initviz.activations import Activation, get_activation
from initviz.errors import InvalidSpec
from initviz.layers import Recognized, main_weight, recognize, weight_fans
from initviz.network import check_memory, memory_budget
from initviz.probe import LAYER_COLUMNS
from initviz.report import (DEAD_MIN_BATCH, DEAD_SHARE, SATURATED_SHARE, healthy_headline,
                            trend_finding)
from initviz.text import json_number

INSPECT_COLUMNS = ("name", "kind", *LAYER_COLUMNS)
# Activation modules whose input is a layer's pre-activation, by initviz's activation names.
_ACTIVATION_MODULES = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh",
                       nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.ELU: "elu", nn.GELU: "gelu",
                       nn.SiLU: "silu", nn.Softplus: "softplus"}


# --------------------------------------------------------------------------------------------------
# The result


@dataclass
class Inspection:
    """What :func:`inspect` measured: one row per module that holds weights, in forward order.

    ``layers`` has the columns of :data:`initviz.probe.LAYER_COLUMNS` plus ``name`` (the module's
    qualified name) and ``kind`` (its class name). ``recognized`` holds the scheme each layer's
    weight seems to carry; ``not_called`` the modules with weights whose forward never ran (their
    weights are used another way, like MultiheadAttention's ``out_proj``).
    """

    layers: pd.DataFrame
    recognized: dict[str, Recognized]
    not_called: tuple[str, ...]
    loss: str
    verdict_kind: str
    verdict: str

    def to_json_dict(self) -> dict:
        """``{"layers": [...], ...}``: profile's per-layer keys plus ``name`` and ``kind``."""
        return {
            "layers": [{k: json_number(v) for k, v in row.items()}
                       for row in self.layers.to_dict(orient="records")],
            "verdict": {"kind": self.verdict_kind, "headline": self.verdict},
            "recognized": [{"name": name, "scheme": r.scheme, "params": dict(r.params),
                            "note": r.note} for name, r in self.recognized.items()],
            "not_called": list(self.not_called),
            "loss": self.loss,
        }

    def to_csv(self) -> str:
        """The per-layer table as CSV, like the page's statistics download."""
        return self.layers.to_csv(index=False)

    def figures(self) -> list:
        """The per-layer charts (initviz.charts figures): weight, activation and gradient std."""
        from initviz import charts

        frame = self.layers
        label = "your model"

        def long(column: str, theory: str | None = None) -> pd.DataFrame:
            parts = [frame[["layer", column]].assign(source="measured")]
            if theory is not None:
                parts.append(frame[["layer", theory]].rename(columns={theory: column})
                             .assign(source="theory"))
            return (pd.concat(parts).rename(columns={column: "value"})
                    .assign(scheme=label)[["layer", "scheme", "source", "value"]])

        return [
            charts.by_layer(long("weight_std", "weight_std_theory"), "weight std", [label],
                            title="Weights: measured std, and the recognized scheme's"),
            charts.by_layer(long("act_std"), "activation std", [label],
                            title="Forward: std of each layer's output"),
            charts.by_layer(long("grad_std"), "gradient std", [label],
                            title="Backward: std of dLoss/d(output)"),
        ]

    def _repr_html_(self) -> str:
        import altair as alt

        from initviz import charts

        table = self.layers[["layer", "name", "kind", "fan_in", "fan_out", "weight_std",
                             "weight_std_theory", "act_std", "grad_std", "dead_frac"]]
        schemes = [self.recognized[name].scheme or "?" for name in self.layers["name"]]
        table = table.assign(recognized=schemes)
        chart = alt.hconcat(*(figure.part() for figure in self.figures())).configure_legend(
            **charts.LEGEND)
        return (f"<p><b>{html.escape(self.verdict, quote=False)}</b></p>"
                + chart.to_html(fullhtml=False)
                + table.to_html(index=False, float_format="{:.4g}".format))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self._repr_html_(), "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"Inspection({len(self.layers)} layers: {self.verdict})"


# --------------------------------------------------------------------------------------------------
# The pass


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _stats(x: torch.Tensor) -> tuple[float, float]:
    x = x.detach().double()
    return float(x.mean()), float(x.std(correction=0))


def _moments(x: torch.Tensor) -> tuple[int, float, float]:
    """``(n, mean, Σ(x − mean)²)`` in float64: what a layer keeps of each call's output, so no
    float64 copy of an activation outlives its hook."""
    x = x.detach().double()
    mean = x.mean()
    return x.numel(), float(mean), float((x - mean).pow(2).sum())


def _pooled(parts: Sequence[tuple[int, float, float]]) -> tuple[float, float]:
    """Mean and (population) std of several calls' outputs together (Chan et al. 1979)."""
    n, mean, m2 = parts[0]
    for n_b, mean_b, m2_b in parts[1:]:
        delta, total = mean_b - mean, n + n_b
        mean, m2, n = mean + delta * n_b / total, m2 + m2_b + delta**2 * n * n_b / total, total
    return mean, math.sqrt(m2 / n)


def _default_loss(output: torch.Tensor) -> torch.Tensor:
    # the mean over the batch (first dimension) of each sample's ||y||² / 2
    return output.double().pow(2).sum() / (2 * output.shape[0])


LOSS_DESCRIPTIONS = {
    "default": "mean over the batch (first dimension) of ||output||² / 2",
    "targets": "cross-entropy of the output against the targets, mean over the batch",
}


def _as_tuple(inputs) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def estimate_bytes(model: nn.Module, inputs) -> int:
    """Memory one :func:`inspect` pass needs, in bytes, from the model and the input shape.

    Runs the model once on the first entry of each input along its first dimension (in eval mode,
    so BatchNorm accepts a single input; buffers and modes are restored by the caller), adds up
    the bytes of every module's outputs, and scales them to the whole batch. Each output is held
    about three times: the copy autograd saves, its gradient, and the float64 copy the statistics
    read (one at a time, but as large as the largest output); the parameters three times too
    (weights, their gradients, and one temporary).
    """
    inputs = _as_tuple(inputs)
    batch = max((x.shape[0] for x in inputs if isinstance(x, torch.Tensor) and x.dim()), default=1)
    one = tuple(x[:1] if isinstance(x, torch.Tensor) and x.dim() else x for x in inputs)
    total = [0]

    def count(module, args, output):
        tensor = _first_tensor(output)
        if tensor is not None:
            total[0] += tensor.numel() * tensor.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules()]
    try:
        # with gradients on, as in the pass itself: without them nn.TransformerEncoderLayer
        # takes a fused path that calls none of its submodules
        model.eval()
        with torch.enable_grad():
            model(*one)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    given = sum(x.numel() * x.element_size() for x in inputs if isinstance(x, torch.Tensor))
    return 3 * total[0] * batch + 3 * params + given


@dataclass(eq=False)
class _Entry:
    name: str
    module: nn.Module
    weight_name: str
    weight: torch.Tensor
    preact: list
    act: list
    grad_tensors: list
    activation: Activation | None = None
    saturated: float = math.nan
    dead: float = math.nan
    zero: float = math.nan


class _State:
    """The caller's model state that one pass may change, to put back afterwards."""

    def __init__(self, model: nn.Module):
        self.modes = {m: m.training for m in model.modules()}
        self.flags = {p: p.requires_grad for p in model.parameters()}
        self.grads = {p: p.grad for p in model.parameters()}
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]

    def restore(self) -> None:
        for module, mode in self.modes.items():
            module.training = mode
        for param, flag in self.flags.items():
            param.requires_grad_(flag)
        for param, grad in self.grads.items():
            param.grad = grad
        with torch.no_grad():
            for buffer, saved in self.buffers:
                buffer.copy_(saved)


def inspect(model: nn.Module, inputs, loss: Callable | None = None, *, targets=None,
            memory_budget_bytes: int | None = None) -> Inspection:
    r"""Per-layer statistics of ``model`` on ``inputs``: one forward and one backward pass.

    Every module that holds weights (Linear, Conv1d/2d/3d, RNN/LSTM/GRU, MultiheadAttention,
    Embedding, norm layers, and any other module with parameters of its own) is one row, in the
    order its forward ran. ``preact_*`` is the statistics of the module's output, ``act_*`` those
    of the activation module (``nn.ReLU``, ``nn.Tanh``, ...) that follows it before the next layer
    with weights, or of the module's output where none does (a functional ``F.relu`` is not seen);
    ``saturated_frac`` and ``dead_frac`` are read off that activation's input by initviz's
    definitions (n/a without one); ``grad_std`` is the std of dLoss/d(act). Weight statistics are
    those of the layer's weight (the recurrent ``weight_hh_l0`` of an RNN, the packed
    ``in_proj_weight`` of attention), with its fans per gate (q/k/v) block and the theoretical std
    of the scheme it seems to carry (:func:`recognize`). All statistics are float64.

    The model runs in the mode it is in; afterwards its mode, ``requires_grad`` flags, ``.grad``
    tensors, buffers and hooks are as they were.

    Args:
        model: any ``nn.Module``.
        inputs: a tensor, or a tuple of tensors passed as ``model(*inputs)``; the first dimension
            is the batch.
        loss: ``loss(output) -> scalar tensor``. Default: the mean over the batch of
            ``||output||² / 2`` (so dLoss/d(output) = output / batch), or with ``targets`` the
            cross-entropy against them, mean over the batch; either is independent of the batch
            size. A tuple output (an LSTM's) counts its first tensor.
        targets: class indices for the cross-entropy default.
        memory_budget_bytes: default :func:`initviz.network.memory_budget`.

    Returns:
        An :class:`Inspection`.

    Raises:
        InvalidSpec: ``model`` is not an ``nn.Module``, has no layer with weights, or raises on
            the inputs.
        TooLarge: the pass would need more than the memory budget.
    """
    if not isinstance(model, nn.Module):
        raise InvalidSpec("model", type(model).__name__, "a torch.nn.Module")
    inputs = _as_tuple(inputs)
    _check_size(model, inputs, memory_budget_bytes)
    loss, description = _chosen_loss(loss, targets)
    recorder = _Recorder(model)
    state = _State(model)
    try:
        for param in model.parameters():
            param.requires_grad_(True)
        with torch.enable_grad():
            given = tuple(x.detach().requires_grad_(True) if isinstance(x, torch.Tensor)
                          and x.is_floating_point() else x for x in inputs)
            output = _first_tensor(model(*given))
            if output is None:
                raise InvalidSpec("model output", "no tensor", "a tensor (or a tuple with one)")
            value = loss(output)
            weights = [e.weight for e in recorder.entries.values()]
            grad_targets = [t for e in recorder.order for t in e.grad_tensors]
            grads = torch.autograd.grad(value, weights + grad_targets, allow_unused=True)
    finally:
        recorder.remove()
        state.restore()
    return _result(recorder, weights, grads, description)


def _check_size(model: nn.Module, inputs: tuple, memory_budget_bytes: int | None) -> None:
    """Refuse inputs the model does not accept, or a pass over the memory budget."""
    state = _State(model)
    try:
        needed = estimate_bytes(model, inputs)
    except Exception as error:  # the caller's model refused the input: say which input
        shapes = " and ".join("x".join(map(str, x.shape)) for x in inputs
                              if isinstance(x, torch.Tensor))
        raise InvalidSpec("inputs", shapes, "inputs the model accepts: on the first entry of "
                          f"each it raised {type(error).__name__}: "
                          f"{(str(error).splitlines() or [''])[0]}") from error
    finally:
        state.restore()
    check_memory("this inspection", needed,
                 memory_budget() if memory_budget_bytes is None else memory_budget_bytes,
                 reduce="the batch or the model")


def _chosen_loss(loss: Callable | None, targets) -> tuple[Callable, str]:
    """The loss function and the words that describe it."""
    if loss is not None:
        return loss, getattr(loss, "__name__", "the given loss")
    if targets is None:
        return _default_loss, LOSS_DESCRIPTIONS["default"]
    return (lambda y: F.cross_entropy(y, targets)), LOSS_DESCRIPTIONS["targets"]


class _Recorder:
    """Forward hooks on every layer with weights and every activation module: the moments of
    each layer's output and of the activation that follows it, in the order the forward ran."""

    def __init__(self, model: nn.Module):
        self.entries: dict[nn.Module, _Entry] = {}
        for name, module in model.named_modules():
            found = main_weight(module)
            if found is not None:
                self.entries[module] = _Entry(name, module, found[0], found[1], [], [], [])
        if not self.entries:
            raise InvalidSpec("model", type(model).__name__, "a model with at least one layer "
                              "that holds weights")
        self.order: list[_Entry] = []
        self.last: _Entry | None = None
        self.handles = [m.register_forward_hook(self._layer) for m in self.entries]
        self.handles += [m.register_forward_hook(self._activation) for m in model.modules()
                         if type(m) in _ACTIVATION_MODULES]

    def _layer(self, module: nn.Module, args: tuple, output) -> None:
        entry = self.entries[module]
        tensor = _first_tensor(output)
        if tensor is None:
            return
        if entry not in self.order:
            self.order.append(entry)
        entry.preact.append(_moments(tensor))
        entry.act.append(None)
        entry.grad_tensors.append(tensor)
        self.last = entry

    def _activation(self, module: nn.Module, args: tuple, output) -> None:
        entry = self.last
        if entry is None or not isinstance(output, torch.Tensor):
            return
        if entry.act[-1] is not None:  # a second activation in a row: the first one counts
            return
        entry.act[-1] = _moments(output)
        entry.grad_tensors[-1] = output
        entry.activation = get_activation(_ACTIVATION_MODULES[type(module)])
        z = args[0].detach()
        sat, dead_below = entry.activation.saturated_outside, entry.activation.dead_at_or_below
        if sat is not None:
            entry.saturated = float(((z < sat[0]) | (z > sat[1])).double().mean())
        if dead_below is not None:
            off = z <= dead_below
            entry.zero = float(off.double().mean())
            # a unit is one entry of a sample's output; dead when off for every sample
            entry.dead = float(off.all(dim=0).double().mean()) if off.dim() > 1 else math.nan

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _result(recorder: _Recorder, weights: list[torch.Tensor], grads: tuple,
            description: str) -> Inspection:
    """The table, recognized schemes and verdict from the pass's gradients (``grads``: the
    weights' first, then one per recorded output, in recording order)."""
    order = recorder.order
    weight_grads = dict(zip(map(id, weights), grads[:len(weights)]))
    act_grads = iter(grads[len(weights):])
    rows = []
    for number, entry in enumerate(order, start=1):
        per_call = [next(act_grads) for _ in entry.grad_tensors]
        rows.append(_row(number, entry, weight_grads[id(entry.weight)], per_call))
    recognized = {e.name: recognize(e.module, e.weight) for e in order}
    frame = pd.DataFrame(rows, columns=list(INSPECT_COLUMNS))
    frame["weight_std_theory"] = [np.nan if r.law is None else r.law.std()
                                  for r in recognized.values()]
    not_called = tuple(e.name for e in recorder.entries.values() if e not in order)
    sizes = [e.grad_tensors[0].numel() // max(e.grad_tensors[0].shape[0], 1)
             if e.grad_tensors[0].dim() else 1 for e in order]
    batch = order[0].grad_tensors[0].shape[0] if order and order[0].grad_tensors[0].dim() else 1
    kind, headline = _verdict(frame, sizes, batch)
    return Inspection(frame, recognized, not_called, description, kind, headline)


def _row(number: int, entry: _Entry, weight_grad, act_grads) -> dict:
    fan_in, fan_out = weight_fans(entry.module, entry.weight)
    w_mean, w_std = _stats(entry.weight)
    preact = _pooled(entry.preact)
    act = _pooled([a if a is not None else p for a, p in zip(entry.act, entry.preact)])
    used = [_moments(g) for g in act_grads if g is not None]
    grad_std = _pooled(used)[1] if used else math.nan
    weight_norm = float(torch.linalg.vector_norm(entry.weight.detach().double()))
    grad_norm = (math.nan if weight_grad is None
                 else float(torch.linalg.vector_norm(weight_grad.double())))
    return {
        "name": entry.name, "kind": type(entry.module).__name__, "layer": number,
        "fan_in": fan_in, "fan_out": fan_out, "weight_mean": w_mean, "weight_std": w_std,
        "weight_std_theory": math.nan,
        "preact_mean": preact[0], "preact_std": preact[1], "preact_var_theory": math.nan,
        "act_mean": act[0], "act_std": act[1],
        "saturated_frac": entry.saturated, "dead_frac": entry.dead, "zero_frac": entry.zero,
        "grad_std": grad_std,
        "weight_grad_norm": grad_norm,
        "grad_to_weight_ratio": grad_norm / weight_norm if weight_norm > 0 else math.nan,
    }


def _last_alike(sizes: Sequence[int]) -> int:
    """The last layer whose output has as many entries per input as the first's (else the last).

    Per-entry stds of outputs of different sizes differ by geometry alone: a mean pooling over 64
    positions divides each entry's gradient by 64 whatever the initialization, so the trend is read
    along the network's stream where it has one.
    """
    alike = [i for i, size in enumerate(sizes) if size == sizes[0]]
    return alike[-1] if len(alike) > 1 else len(sizes) - 1


def _verdict(layers: pd.DataFrame, sizes: Sequence[int], batch: int) -> tuple[str, str]:
    """The probe's verdict (initviz.report's thresholds) over the layers in forward order;
    ``sizes`` are the entries per input of each layer's output (see :func:`_last_alike`)."""
    n = len(layers)
    finite = np.isfinite(layers[["act_std", "grad_std"]].to_numpy(dtype=float)).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        return "exploding", (f"Exploding: values overflow to inf/NaN at layer {bad + 1} of {n} "
                             f"({layers['name'].iloc[bad]}).")
    dead = layers["dead_frac"].to_numpy(dtype=float)
    if batch >= DEAD_MIN_BATCH and np.nanmax(np.append(dead, 0)) > DEAD_SHARE:
        i = int(np.nanargmax(dead))
        return "dead", (f"Dead units: {dead[i]:.0%} of the units after layer {i + 1} "
                        f"({layers['name'].iloc[i]}) output nothing for any of the {batch} "
                        "inputs.")
    sat = layers["saturated_frac"].to_numpy(dtype=float)
    if np.nanmax(np.append(sat, 0)) > SATURATED_SHARE:
        i = int(np.nanargmax(sat))
        return "saturated", (f"Saturated: {sat[i]:.0%} of the units after layer {i + 1} "
                             f"({layers['name'].iloc[i]}) sit on a flat tail.")
    acts, grads = layers["act_std"].to_numpy(float), layers["grad_std"].to_numpy(float)
    last = _last_alike(sizes)
    where = "" if last == n - 1 else f", the last with as many entries per input ({sizes[0]})"
    first, final = "layer 1", f"layer {last + 1}{where}"
    for found in (trend_finding("activation std", "", acts[0], first, acts[last], final),
                  trend_finding("gradient std", " gradients", grads[last], final, grads[0], first,
                                " going backward")):
        if found is not None:
            return found
    return "healthy", healthy_headline(acts, grads)


__all__ = ["INSPECT_COLUMNS", "Inspection", "estimate_bytes", "inspect"]
