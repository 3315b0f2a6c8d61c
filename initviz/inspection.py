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

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from initviz.activations import Activation, get_activation
from initviz.errors import InvalidSpec
from initviz.network import check_memory, memory_budget
from initviz.probe import LAYER_COLUMNS
from initviz.report import DEAD_MIN_BATCH, DEAD_SHARE, SATURATED_SHARE, SIGNAL_FACTOR, _g, _span
from initviz.schemes import SCHEMES, WeightLaw, get_scheme

INSPECT_COLUMNS = ("name", "kind", *LAYER_COLUMNS)
RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_GATES = {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3}
# Activation modules whose input is a layer's pre-activation, by initviz's activation names.
_ACTIVATION_MODULES = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh",
                       nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.ELU: "elu", nn.GELU: "gelu",
                       nn.SiLU: "silu", nn.Softplus: "softplus"}
MATCH_SE = 4.0
"""A candidate law matches a weight whose mean and std lie within this many standard errors of
the law's (the std's standard error for n entries is σ·√((κ − 1) / 4n), κ the law's kurtosis)."""


# --------------------------------------------------------------------------------------------------
# Which tensor of a layer is "its weight", and its fans


def _main_weight(module: nn.Module) -> tuple[str, torch.Tensor] | None:
    """The parameter whose statistics stand for the layer (the recurrent one for RNNs)."""
    if isinstance(module, RECURRENT):
        return "weight_hh_l0", module.weight_hh_l0
    if isinstance(module, nn.MultiheadAttention):
        name = "in_proj_weight" if module.in_proj_weight is not None else "q_proj_weight"
        return name, getattr(module, name)
    own = [(n, p) for n, p in module.named_parameters(recurse=False) if p is not None]
    if not own:
        return None
    for name, param in own:
        if name == "weight":
            return name, param
    return next(((n, p) for n, p in own if p.dim() >= 2), own[0])


def _fans(module: nn.Module, weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of the layer as its schemes see it.

    Recurrent weights and MultiheadAttention's packed projection count one gate (q/k/v) block;
    Linear and ConvNd follow ``torch.nn.init`` (C·k² for a convolution); a vector (norm scale)
    counts its length both ways.
    """
    if isinstance(module, RECURRENT):
        return module.hidden_size, module.hidden_size
    if isinstance(module, nn.MultiheadAttention):
        return module.embed_dim, module.embed_dim
    if weight.dim() < 2:
        return weight.numel(), weight.numel()
    return nn.init._calculate_fan_in_and_fan_out(weight)


# --------------------------------------------------------------------------------------------------
# Recognizing the scheme a layer carries


@dataclass(frozen=True)
class Recognized:
    """The scheme a layer's weight seems to carry: ``scheme`` is an initviz scheme name (or
    ``pytorch_default``), ``law`` its distribution at this layer's fans, None where none fits."""

    scheme: str | None
    params: tuple[tuple[str, object], ...]
    law: WeightLaw | None
    note: str


def _uniform(bound: float) -> WeightLaw:
    return WeightLaw("uniform", low=-bound, high=bound)


def _default_law(module: nn.Module, weight: torch.Tensor) -> tuple[str, WeightLaw] | None:
    """PyTorch's own initialization of this layer type, as ``reset_parameters`` draws it."""
    if isinstance(module, RECURRENT):
        return "U(±1/√hidden)", _uniform(1 / math.sqrt(module.hidden_size))
    if isinstance(module, nn.MultiheadAttention):  # xavier_uniform_ over the packed (3E, E)
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
        return "xavier_uniform over the packed q/k/v", _uniform(math.sqrt(6 / (fan_in + fan_out)))
    if isinstance(module, nn.Embedding):
        return "N(0, 1)", WeightLaw("normal", scale=1.0)
    if isinstance(module, NORMS):
        return "ones", WeightLaw("point", loc=1.0)
    if isinstance(module, (nn.Linear, *CONVS)):
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
        return "U(±1/√fan_in)", _uniform(1 / math.sqrt(fan_in))
    return None


_CANDIDATES: tuple[tuple[str, dict], ...] = (
    ("kaiming_normal", {"nonlinearity": "relu"}), ("kaiming_uniform", {"nonlinearity": "relu"}),
    ("xavier_normal", {}), ("xavier_uniform", {}), ("lecun_normal", {}), ("lecun_uniform", {}),
    ("normal", {}), ("uniform", {}), ("zeros", {}), ("ones", {}),
)


def _misfit(law: WeightLaw, w: torch.Tensor) -> float | None:
    """How many standard errors the std of the float64 entries ``w`` lies from ``law``'s, or None
    where ``w`` cannot come from it (mean or std beyond :data:`MATCH_SE` standard errors, or the
    wrong shape: a uniform has no entry past its bounds, a normal 8% of its mass past √3·σ)."""
    n = w.numel()
    if law.kind == "point":
        return 0.0 if bool((w == law.loc).all()) else None
    mean, std = float(w.mean()), float(w.std(correction=0))
    expected_std = law.std()
    kurtosis = 1.8 if law.kind == "uniform" else 3.0
    std_se = expected_std * math.sqrt((kurtosis - 1) / (4 * n)) + 1e-12
    misfit = abs(std - expected_std) / std_se
    if abs(mean - law.mean()) > MATCH_SE * expected_std / math.sqrt(n) + 1e-12 or misfit > MATCH_SE:
        return None
    if law.kind == "uniform":
        inside = (w >= law.low - 1e-6 * abs(law.low)) & (w <= law.high + 1e-6 * abs(law.high))
        return misfit if bool(inside.all()) else None
    beyond = float(((w - law.loc).abs() > math.sqrt(3) * expected_std).double().mean())
    return misfit if n < 100 or beyond > 0.02 else None


def _orthogonal_gain(w: torch.Tensor) -> float | None:
    """The gain g where ``w`` (2-d) is g times a (semi-)orthogonal matrix, else None."""
    if w.dim() != 2 or min(w.shape) < 2:
        return None
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    scale = float(small.diagonal().mean())
    if scale <= 0:
        return None
    eye = torch.eye(small.shape[0], dtype=small.dtype)
    return math.sqrt(scale) if float((small / scale - eye).abs().max()) < 1e-4 else None


def recognize(module: nn.Module, weight: torch.Tensor) -> Recognized:
    """The scheme ``weight`` (a parameter of ``module``) seems to carry.

    Candidates, in order: PyTorch's own default for the layer type, an orthogonal matrix (checked
    exactly: WWᵀ = g²I within 1e-4), then Kaiming (ReLU gain), Xavier, LeCun, N(0, 1), U(0, 1),
    zeros and ones at the layer's fans. A candidate fits where the weight's mean and std lie within
    :data:`MATCH_SE` standard errors of its own and the shape agrees (a uniform has no entry past
    its bound, a normal has 8% past √3·σ). PyTorch's default wins if it fits; otherwise the
    candidate whose std is nearest in standard errors. Several laws coincide on square layers
    (Xavier = LeCun there); the earlier one in the list is named.
    """
    w = weight.detach().to("cpu", torch.float64)
    if w.numel() == 0:
        return Recognized(None, (), None, "empty weight")
    default = _default_law(module, weight)
    if default is not None and _misfit(default[1], w) is not None:
        return Recognized("pytorch_default", (), default[1],
                          f"PyTorch's default for {type(module).__name__}: {default[0]}")
    fans = _fans(module, weight)
    # Recurrent gates and attention's q/k/v are drawn block by block: each block must agree.
    blocked = isinstance(module, (*RECURRENT, nn.MultiheadAttention))
    found = [_recognize_block(block, fans) for block in (w.split(fans[1]) if blocked else [w])]
    if all((r.scheme, r.params) == (found[0].scheme, found[0].params) for r in found):
        return found[0]
    return Recognized(None, (), None, "its gate blocks carry different schemes: "
                      + ", ".join(str(r.scheme) for r in found))


def _recognize_block(w: torch.Tensor, fans: tuple[int, int]) -> Recognized:
    fan_in, fan_out = fans
    gain = _orthogonal_gain(w.reshape(w.shape[0], -1)) if w.dim() >= 2 else None
    if gain is not None:
        law = WeightLaw("normal", scale=gain / math.sqrt(max(w.shape[0], w[0].numel())),
                        approximate=True)
        return Recognized("orthogonal", (("gain", round(gain, 4)),), law,
                          f"orthogonal with gain {gain:.4g} (WWᵀ = g²I)")
    fits = []
    for name, given in _CANDIDATES:
        scheme = SCHEMES[name]
        law = scheme.weight_law(fan_in, fan_out, dict(scheme.resolve(given)))
        misfit = _misfit(law, w)
        if misfit is not None:
            fits.append((misfit, name, given, law))
    if fits:
        _, name, given, law = min(fits, key=lambda fit: fit[0])  # the first of equals
        return Recognized(name, tuple(sorted(given.items())), law,
                          f"{SCHEMES[name].label} at fan_in {fan_in}, fan_out {fan_out}")
    return Recognized(None, (), None,
                      f"no known scheme within {MATCH_SE:g} standard errors (mean "
                      f"{_g(float(w.mean()))}, std {_g(float(w.std(correction=0)))})")


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
            "layers": [{k: _json_value(v) for k, v in row.items()}
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

        table = self.layers[["layer", "name", "kind", "fan_in", "fan_out", "weight_std",
                             "weight_std_theory", "act_std", "grad_std", "dead_frac"]]
        schemes = [self.recognized[name].scheme or "?" for name in self.layers["name"]]
        table = table.assign(recognized=schemes)
        chart = alt.hconcat(*(figure.chart() for figure in self.figures()))
        return (f"<p><b>{_escape(self.verdict)}</b></p>" + chart.to_html(fullhtml=False)
                + table.to_html(index=False, float_format="{:.4g}".format))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self._repr_html_(), "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"Inspection({len(self.layers)} layers: {self.verdict})"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_value(value):
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


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
    if loss is None:
        description = LOSS_DESCRIPTIONS["default" if targets is None else "targets"]
        loss = _default_loss if targets is None else (lambda y: F.cross_entropy(y, targets))
    else:
        description = getattr(loss, "__name__", "the given loss")

    entries: dict[nn.Module, _Entry] = {}
    for name, module in model.named_modules():
        found = _main_weight(module)
        if found is not None:
            entries[module] = _Entry(name, module, found[0], found[1], [], [], [])
    if not entries:
        raise InvalidSpec("model", type(model).__name__, "a model with at least one layer that "
                          "holds weights")
    order: list[_Entry] = []
    last: list[_Entry] = []

    def layer_hook(module, args, output):
        entry = entries[module]
        tensor = _first_tensor(output)
        if tensor is None:
            return
        if entry not in order:
            order.append(entry)
        entry.preact.append(_moments(tensor))
        entry.act.append(None)
        entry.grad_tensors.append(tensor)
        last[:] = [entry]

    def activation_hook(module, args, output):
        if not last or not isinstance(output, torch.Tensor):
            return
        entry = last[0]
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

    handles = [m.register_forward_hook(layer_hook) for m in entries]
    handles += [m.register_forward_hook(activation_hook) for m in model.modules()
                if type(m) in _ACTIVATION_MODULES]
    weights = [e.weight for e in entries.values()]
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
            grad_targets = [t for e in order for t in e.grad_tensors]
            grads = torch.autograd.grad(value, weights + grad_targets, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        state.restore()
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
    not_called = tuple(e.name for e in entries.values() if e not in order)
    sizes = [e.grad_tensors[0].numel() // max(e.grad_tensors[0].shape[0], 1)
             if e.grad_tensors[0].dim() else 1 for e in order]
    batch = order[0].grad_tensors[0].shape[0] if order and order[0].grad_tensors[0].dim() else 1
    kind, headline = _verdict(frame, sizes, batch)
    return Inspection(frame, recognized, not_called, description, kind, headline)


def _row(number: int, entry: _Entry, weight_grad, act_grads) -> dict:
    fan_in, fan_out = _fans(entry.module, entry.weight)
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


def _trend(what: str, noun: str, start: float, at: str, end: float, to: str,
           direction: str = "") -> tuple[str, str] | None:
    """A vanishing or exploding verdict where ``what`` changes by more than SIGNAL_FACTOR from
    ``start`` (at ``at``) to ``end`` (at ``to``); None where it does not, or starts at 0."""
    if not start > 0:
        return None
    ratio = end / start
    trend = (f"{what} {'falls' if ratio < 1 else 'grows'} from {_g(start)} ({at}) to "
             f"{_g(end)} ({to}){direction}")
    if ratio < 1 / SIGNAL_FACTOR:
        return "vanishing", f"Vanishing{noun}: {trend}."
    if ratio > SIGNAL_FACTOR:
        return "exploding", f"Exploding{noun}: {trend}."
    return None


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
    for found in (_trend("activation std", "", acts[0], first, acts[last], final),
                  _trend("gradient std", " gradients", grads[last], final, grads[0], first,
                         " going backward")):
        if found is not None:
            return found
    return "healthy", (f"Healthy: activation std stays {_span(acts.min(), acts.max())} over "
                       f"{n} layers, and gradient std {_span(grads.min(), grads.max())}.")


# --------------------------------------------------------------------------------------------------
# init_


def _blocks(module: nn.Module) -> list[tuple[str, torch.Tensor, tuple[int, int]]]:
    """``(parameter name, tensor view, fans)`` of each weight block a scheme initializes."""
    if isinstance(module, RECURRENT):
        hidden, gates = module.hidden_size, _GATES[type(module)]
        out = []
        for name, param in module.named_parameters(recurse=False):
            if name.startswith("weight_hr"):
                out.append((name, param, nn.init._calculate_fan_in_and_fan_out(param)))
            elif name.startswith("weight"):
                out += [(f"{name}[{g * hidden}:{(g + 1) * hidden}]",
                         param[g * hidden:(g + 1) * hidden], (param.shape[1], hidden))
                        for g in range(gates)]
        return out
    if isinstance(module, nn.MultiheadAttention):
        e = module.embed_dim
        if module.in_proj_weight is not None:
            w = module.in_proj_weight
            return [(f"in_proj_weight[{i * e}:{(i + 1) * e}] ({part})", w[i * e:(i + 1) * e],
                     (e, e)) for i, part in enumerate("qkv")]
        return [(name, getattr(module, name), tuple(getattr(module, name).shape[::-1]))
                for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight")]
    if isinstance(module, (nn.Linear, *CONVS, nn.Embedding)):
        return [("weight", module.weight,
                 nn.init._calculate_fan_in_and_fan_out(module.weight))]
    return []


def _biases(module: nn.Module, blocks) -> list[tuple[str, torch.Tensor, tuple[int, int]]]:
    fans = blocks[0][2] if blocks else (1, 1)
    return [(name, param, fans) for name, param in module.named_parameters(recurse=False)
            if "bias" in name and param is not None]


def init_(model: nn.Module, scheme: str, *, bias: str = "zeros",
          bias_params: Mapping | None = None, generator: torch.Generator | None = None,
          seed: int = 0, **params) -> pd.DataFrame:
    r"""Apply an initviz scheme to every layer of ``model`` that has weights, in place.

    Each weight block is drawn by the scheme's ``torch.nn.init`` call from one generator, in
    ``model.named_modules()`` order (weights, then biases), with fans per layer type:
    Linear (in, out); ConvNd (C_in·k, C_out·k) with k the kernel's size, as torch computes them;
    RNN/LSTM/GRU each gate's block of ``weight_ih``/``weight_hh`` (rows ``hidden``) with fans
    (input or hidden, hidden), so the gates are alike whatever their number; MultiheadAttention's
    packed ``in_proj_weight`` per q/k/v block (E, E) (``out_proj`` is a Linear and is done as
    one); Embedding as torch sees its (num, dim) matrix. Biases follow ``bias`` (a bias scheme:
    zeros, constant, normal, pytorch_default) at the layer's fans. Norm layers keep their scale 1
    and shift 0. Any other module with parameters of its own is left alone, with a warning and a
    ``skipped`` row saying why.

    Args:
        model: any ``nn.Module``.
        scheme: an initviz scheme name (:data:`initviz.schemes.SCHEMES`); lsuv needs data and is
            refused.
        bias, bias_params: the bias scheme and its parameters.
        generator: the ``torch.Generator`` to draw from (default: one seeded with ``seed``).
        seed: the seed of the default generator.
        **params: the scheme's parameters (e.g. ``nonlinearity="relu"``).

    Returns:
        One row per block: ``module``, ``kind``, ``parameter``, ``action`` (``initialized``,
        ``kept`` or ``skipped``), ``fan_in``, ``fan_out``, ``std_theory``, ``note``.
    """
    chosen = get_scheme(scheme)
    if scheme == "lsuv":
        raise InvalidSpec("scheme", scheme, "a scheme that needs no data (lsuv rescales on "
                          "inputs: use inspect() to measure, then rescale yourself)")
    resolved = dict(chosen.resolve(params))
    bias_scheme = get_scheme(bias, bias=True)
    bias_resolved = dict(bias_scheme.resolve(bias_params or {}, field=f"bias.{bias}"))
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    rows = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False)]
        if not own:
            continue
        kind = type(module).__name__
        if isinstance(module, NORMS):
            rows.append(dict(module=name, kind=kind, parameter="weight, bias", action="kept",
                             note="a norm layer's scale 1 and shift 0 are what it needs"))
            continue
        with torch.no_grad():  # the blocks are views, drawn into in place
            blocks = _blocks(module)
        if not blocks:
            note = f"initviz does not know the fans of a {kind}; left as it was"
            warnings.warn(f"init_: {name or kind} skipped: {note}", stacklevel=2)
            rows.append(dict(module=name, kind=kind, parameter="all", action="skipped",
                             note=note))
            continue
        for pname, tensor, fans in blocks:
            rows.append(_apply(chosen, resolved, tensor, generator, fans, name, kind, pname))
        for pname, tensor, fans in _biases(module, blocks):
            rows.append(_apply(bias_scheme, bias_resolved, tensor, generator, fans, name, kind,
                               pname))
    columns = ["module", "kind", "parameter", "action", "fan_in", "fan_out", "std_theory",
               "note"]
    return pd.DataFrame(rows, columns=columns)


def _apply(scheme, params, tensor, generator, fans, module, kind, pname) -> dict:
    row = dict(module=module, kind=kind, parameter=pname, fan_in=fans[0], fan_out=fans[1])
    try:
        scheme.apply(tensor, params, generator, fans)
    except (ValueError, RuntimeError) as error:
        note = f"{scheme.name} cannot initialize this tensor ({error}); left as it was"
        warnings.warn(f"init_: {module}.{pname} skipped: {note}", stacklevel=3)
        return {**row, "action": "skipped", "note": note}
    law = scheme.weight_law(*fans, params)
    return {**row, "action": "initialized", "std_theory": None if law is None else law.std(),
            "note": scheme.label}


__all__ = ["INSPECT_COLUMNS", "Inspection", "Recognized", "estimate_bytes", "init_", "inspect",
           "recognize"]
