"""The layers of any ``nn.Module``: which tensor is a layer's weight and its fans, the scheme it
seems to carry (:func:`recognize`), and :func:`init_`, which applies an initviz scheme to them.

:func:`init_` applies any initviz scheme to every layer with weights, through ``torch.nn.init``
with a seeded ``torch.Generator``, with fans per layer type.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from initviz.errors import InvalidSpec
from initviz.scheme_types import WeightLaw
from initviz.schemes import SCHEMES, get_scheme
from initviz.text import short_number

RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_GATES = {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3}
MATCH_SE = 4.0
"""A candidate law matches a weight whose mean and std lie within this many standard errors of
the law's (the std's standard error for n entries is σ·√((κ − 1) / 4n), κ the law's kurtosis)."""



# --------------------------------------------------------------------------------------------------
# Which tensor of a layer is "its weight", and its fans


def main_weight(module: nn.Module) -> tuple[str, torch.Tensor] | None:
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


def weight_fans(module: nn.Module, weight: torch.Tensor) -> tuple[int, int]:
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
    fans = weight_fans(module, weight)
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
                      f"{short_number(float(w.mean()))}, "
                      f"std {short_number(float(w.std(correction=0)))})")


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


__all__ = ["CONVS", "MATCH_SE", "NORMS", "RECURRENT", "Recognized", "init_", "main_weight",
           "recognize", "weight_fans"]
