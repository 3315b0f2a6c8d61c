r"""Weight and bias initialization schemes.

Each scheme is described once, by the ``torch.nn.init`` call that applies it. That single
description is used three ways: to initialize a tensor (with a seeded ``torch.Generator``), to print
the PyTorch code that reproduces it, and -- together with the scheme's
:class:`~initviz.scheme_types.WeightLaw` -- to say what distribution the weights follow in
theory (the density drawn over the measured histogram, and the variance that mean-field theory
starts from).

Notation follows ``torch/nn/init.py``: a Linear weight has shape ``(fan_out, fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from scipy import special
from torch import nn

from initviz.errors import InvalidSpec
from initviz.scheme_types import FanExpr, Param, Params, Scheme, WeightLaw


def _require_less(owner: str, low: str, high: str) -> Callable[[Params], None]:
    def check(params: Params) -> None:
        if not params[low] < params[high]:
            raise InvalidSpec(f"{owner}.{high}", params[high],
                              f"a number greater than {low} ({params[low]:g})")

    return check


TRUNC_NORMAL_MIN_ACCEPTANCE = 0.3
"""The least share of its draws ``torch.nn.init.trunc_normal_`` may keep (the share below which
torch itself switches from normal to uniform proposals)."""


def _log_normal_mass(alpha: float, beta: float) -> float:
    """log(Φ(β) − Φ(α)) for α < β, accurate far out in either tail."""
    if alpha > 0:  # Φ(β) − Φ(α) = Φ(−α) − Φ(−β): keep both in the lower tail
        alpha, beta = -beta, -alpha
    log_a, log_b = special.log_ndtr(alpha), special.log_ndtr(beta)
    return float(log_b + np.log1p(-np.exp(log_a - log_b))) if log_a < log_b else -math.inf


def trunc_normal_acceptance(mean: float, std: float, a: float, b: float) -> float:
    """The share of draws that ``torch.nn.init.trunc_normal_`` keeps for these parameters.

    It draws N(mean, std²) while [a, b] holds more than 30% of that mass, else U(a, b) accepted
    with probability pdf(x) / pdf(mode) (mode: the point of [a, b] nearest the mean). Each round
    redraws what was rejected, so the rounds needed grow as log(n) / acceptance: with the mean a
    few std outside a wide [a, b] the acceptance is ~1e-6 and the call runs for hours.
    """
    log_mass = _log_normal_mass((a - mean) / std, (b - mean) / std)
    if log_mass > math.log(0.3):
        return math.exp(log_mass)
    z_mode = (max(a, min(mean, b)) - mean) / std
    return math.exp(min(0.0, log_mass + math.log(std * math.sqrt(2 * math.pi) / (b - a))
                        + 0.5 * z_mode**2))


def _check_trunc_normal(params: Params) -> None:
    _require_less("trunc_normal", "a", "b")(params)
    mean, std, a, b = (params[k] for k in ("mean", "std", "a", "b"))
    accepted = trunc_normal_acceptance(mean, std, a, b)
    if accepted < TRUNC_NORMAL_MIN_ACCEPTANCE:
        raise InvalidSpec("trunc_normal.mean", mean,
                          f"a mean nearer [a, b] = [{a:g}, {b:g}] for std={std:g}: "
                          f"torch.nn.init.trunc_normal_ would keep only {accepted:.2g} of its "
                          "draws and could run for hours")


def _gain(params: Params) -> float:
    return nn.init.calculate_gain(params["nonlinearity"], params["a"])


def _kaiming_std(fan_in: int, fan_out: int, params: Params) -> float:
    fan = fan_in if params["mode"] == "fan_in" else fan_out
    return _gain(params) / math.sqrt(fan)


def _uniform_law(std: float) -> WeightLaw:
    bound = math.sqrt(3.0) * std
    return WeightLaw("uniform", low=-bound, high=bound)


_MEAN = Param("mean", 0.0, -100.0, 100.0, doc="the average of the values drawn")
_STD_DOC = "the spread (standard deviation) of the values drawn around their mean"
_GAIN = Param("gain", 1.0, 0.0, 100.0,
               doc="multiplies the weights' spread (std): above 1 the signal grows from layer to "
                   "layer, below 1 it shrinks")
_KAIMING_PARAMS = (
    Param("a", 0.0, 0.0, 100.0,
          doc="the slope of leaky_relu for negative inputs (0 is plain ReLU); used only when "
              "nonlinearity is leaky_relu, where the gain is √(2 / (1 + a²))"),
    Param("mode", "fan_in", choices=("fan_in", "fan_out"),
          doc="which layer size sets the spread: fan_in (inputs per unit) keeps the signal's "
              "size going forward, fan_out (outputs per unit) the gradient's going backward"),
    Param("nonlinearity", "leaky_relu",
          choices=("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"),
          doc="the activation the weights are scaled for: its gain (√2 for relu, 5/3 for tanh, "
              "1 for linear) multiplies the std, as torch.nn.init.calculate_gain gives it"),
)
_KAIMING_REF = ("He, Zhang, Ren & Sun (2015), Delving Deep into Rectifiers: Surpassing "
                "Human-Level Performance on ImageNet Classification, ICCV")
_XAVIER_REF = ("Glorot & Bengio (2010), Understanding the difficulty of training deep "
               "feedforward neural networks, AISTATS")
_LECUN_REF = ("LeCun, Bottou, Orr & Müller (1998), Efficient BackProp; used for SELU by "
              "Klambauer et al. (2017), Self-Normalizing Neural Networks, NeurIPS")


def _kaiming_kwargs(p: Params) -> dict[str, object]:
    return {"a": p["a"], "mode": p["mode"], "nonlinearity": p["nonlinearity"]}


def sparse_(tensor: torch.Tensor, sparsity: float, std: float = 0.01,
            generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill the 2D ``tensor`` as a sparse matrix, drawing only from ``generator``.

    The non-zero elements are drawn from :math:`\mathcal{N}(0, \text{std}^2)` and
    :math:`\lceil \text{sparsity} \cdot \text{rows} \rceil` entries of every column, chosen
    uniformly at random, are set to zero, as described in `Deep learning via Hessian-free
    optimization` - Martens, J. (2010). This is ``torch.nn.init.sparse_``, whose zero positions
    come from ``torch.randperm`` on the process-wide generator: parallel sessions would advance it
    for one another. Here each column's zero rows are the ``num_zeros`` smallest of ``rows``
    uniform keys drawn from ``generator``, a uniformly random subset as ``randperm``'s prefix is.

    Args:
        tensor: a 2-dimensional ``torch.Tensor``, filled in place
        sparsity: the fraction of elements in each column to set to zero
        std: the standard deviation of the normal distribution of the non-zero values
        generator: the ``torch.Generator`` to sample from

    Returns:
        ``tensor``
    """
    if tensor.dim() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    with torch.no_grad():
        tensor.normal_(0, std, generator=generator)
        keys = torch.rand(rows, cols, generator=generator, device=tensor.device)
        zero_rows = keys.argsort(dim=0)[:num_zeros]
        tensor.scatter_(0, zero_rows, 0.0)
    return tensor


def _sparse_law(fan_in: int, fan_out: int, p: Params) -> WeightLaw:
    # torch.nn.init.sparse_ zeroes ceil(sparsity * rows) entries in every column.
    zeros = math.ceil(p["sparsity"] * fan_out)
    return WeightLaw("normal", scale=p["std"], zero_fraction=zeros / fan_out)


_SCHEME_LIST: tuple[Scheme, ...] = (
    Scheme(
        "zeros", "All zeros", "W = 0",
        "Every unit computes the same function and gets the same gradient: symmetry never "
        "breaks (e.g. Goodfellow, Bengio & Courville 2016, Deep Learning, §8.4)",
        "zeros_", lambda p: {}, lambda fi, fo, p: WeightLaw("point", loc=0.0),
    ),
    Scheme(
        "ones", "All ones", "W = 1",
        "A constant initialization: symmetric, so units never differentiate "
        "(Goodfellow, Bengio & Courville 2016, §8.4)",
        "ones_", lambda p: {}, lambda fi, fo, p: WeightLaw("point", loc=1.0),
    ),
    Scheme(
        "constant", "Constant", "W = val",
        "A constant initialization: symmetric, so units never differentiate "
        "(Goodfellow, Bengio & Courville 2016, §8.4)",
        "constant_", lambda p: {"val": p["val"]},
        lambda fi, fo, p: WeightLaw("point", loc=p["val"]),
        params=(Param("val", 0.1, -100.0, 100.0, doc="the value of every weight"),),
    ),
    Scheme(
        "uniform", "Uniform U(a, b)", "W ~ U(a, b)", "torch.nn.init.uniform_",
        "uniform_", lambda p: {"a": p["a"], "b": p["b"]},
        lambda fi, fo, p: WeightLaw("uniform", low=p["a"], high=p["b"]),
        params=(Param("a", 0.0, -100.0, 100.0, doc="the smallest value a weight can take"),
                Param("b", 1.0, -100.0, 100.0, doc="the largest value a weight can take")),
        check=_require_less("uniform", "a", "b"),
    ),
    Scheme(
        "normal", "Normal N(mean, std²)", "W ~ N(mean, std²)", "torch.nn.init.normal_",
        "normal_", lambda p: {"mean": p["mean"], "std": p["std"]},
        lambda fi, fo, p: WeightLaw("normal", loc=p["mean"], scale=p["std"]),
        params=(_MEAN, Param("std", 1.0, 0.0, 100.0, doc=_STD_DOC)),
    ),
    Scheme(
        "trunc_normal", "Truncated normal", "W ~ N(mean, std²) truncated to [a, b]",
        "torch.nn.init.trunc_normal_ (redraws until inside [a, b])",
        "trunc_normal_", lambda p: {"mean": p["mean"], "std": p["std"], "a": p["a"], "b": p["b"]},
        lambda fi, fo, p: WeightLaw("trunc_normal", loc=p["mean"], scale=p["std"],
                                    low=p["a"], high=p["b"]),
        params=(_MEAN, Param("std", 1.0, 1e-6, 100.0, doc=_STD_DOC),
                Param("a", -2.0, -100.0, 100.0, doc="the lower cut: a draw below it is drawn "
                                                      "again"),
                Param("b", 2.0, -100.0, 100.0, doc="the upper cut: a draw above it is drawn "
                                                     "again")),
        check=_check_trunc_normal,
    ),
    Scheme(
        "xavier_uniform", "Xavier / Glorot uniform",
        "W ~ U(−b, b), b = gain·√(6 / (fan_in + fan_out)); Var(W) = gain²·2 / (fan_in + fan_out)",
        _XAVIER_REF,
        "xavier_uniform_", lambda p: {"gain": p["gain"]},
        lambda fi, fo, p: _uniform_law(p["gain"] * math.sqrt(2.0 / (fi + fo))),
        params=(_GAIN,),
    ),
    Scheme(
        "xavier_normal", "Xavier / Glorot normal",
        "W ~ N(0, σ²), σ = gain·√(2 / (fan_in + fan_out))",
        _XAVIER_REF,
        "xavier_normal_", lambda p: {"gain": p["gain"]},
        lambda fi, fo, p: WeightLaw("normal", scale=p["gain"] * math.sqrt(2.0 / (fi + fo))),
        params=(_GAIN,),
    ),
    Scheme(
        "kaiming_uniform", "Kaiming / He uniform",
        "W ~ U(−b, b), b = gain·√(3 / fan_mode); gain = √(2 / (1 + a²)) for leaky_relu",
        _KAIMING_REF,
        "kaiming_uniform_", _kaiming_kwargs,
        lambda fi, fo, p: _uniform_law(_kaiming_std(fi, fo, p)),
        params=_KAIMING_PARAMS,
    ),
    Scheme(
        "kaiming_normal", "Kaiming / He normal",
        "W ~ N(0, σ²), σ = gain / √fan_mode; gain = √(2 / (1 + a²)) for leaky_relu",
        _KAIMING_REF,
        "kaiming_normal_", _kaiming_kwargs,
        lambda fi, fo, p: WeightLaw("normal", scale=_kaiming_std(fi, fo, p)),
        params=_KAIMING_PARAMS,
    ),
    Scheme(
        "orthogonal", "Orthogonal",
        "W = gain·Q, Q a (semi-)orthogonal matrix from the QR decomposition of a Gaussian one; "
        "entries ≈ N(0, gain² / max(fan_in, fan_out))",
        "Saxe, McClelland & Ganguli (2013), Exact solutions to the nonlinear dynamics of "
        "learning in deep linear neural networks, ICLR 2014",
        "orthogonal_", lambda p: {"gain": p["gain"]},
        lambda fi, fo, p: WeightLaw("normal", scale=p["gain"] / math.sqrt(max(fi, fo)),
                                    approximate=True),
        params=(_GAIN,),
    ),
    # eye: the identity, for the recurrent weights of an IRNN.
    Scheme(
        "eye", "Identity (eye)",
        "W = I: 1 on the diagonal, 0 elsewhere, so h_t = φ(h_{t−1} + U x_t + b) copies the "
        "state at init; a non-square W (fan_out × fan_in) gets the rectangular identity, the "
        "first min(fan_in, fan_out) inputs copied to as many outputs and the rest 0",
        "Le, Jaitly & Hinton (2015), A Simple Way to Initialize Recurrent Networks of Rectified "
        "Linear Units (the IRNN: identity recurrent weights, zero biases, ReLU); "
        "torch.nn.init.eye_",
        "eye_", lambda p: {},
        lambda fi, fo, p: WeightLaw("point", loc=1.0,
                                    zero_fraction=1.0 - min(fi, fo) / (fi * fo)),
    ),
    Scheme(
        "sparse", "Sparse",
        "W ~ N(0, std²), then ⌈sparsity·fan_out⌉ entries of every column set to 0",
        "Martens (2010), Deep learning via Hessian-free optimization, ICML",
        "sparse_", lambda p: {"sparsity": p["sparsity"], "std": p["std"]},
        _sparse_law,
        params=(Param("sparsity", 0.9, 0.0, 0.999, doc="fraction of zeros per column"),
                Param("std", 0.01, 0.0, 100.0, doc="spread of the weights that are not zero")),
        own_fn=sparse_,
        archs=("mlp", "residual", "transformer", "rnn", "lstm"),  # 2-D matrices only
    ),
    Scheme(
        "pytorch_default", "PyTorch default (nn.Linear)",
        "W ~ U(−1/√fan_in, 1/√fan_in), i.e. kaiming_uniform_(a=√5): Var(W) = 1 / (3·fan_in)",
        "What torch.nn.Linear.reset_parameters does (kept from Lua Torch's default); with ReLU "
        "it scales E[x²] by 1/6 per layer",
        "kaiming_uniform_", lambda p: {"a": math.sqrt(5)},
        lambda fi, fo, p: _uniform_law(1.0 / math.sqrt(3.0 * fi)),
    ),
    Scheme(
        "lecun_normal", "LeCun normal", "W ~ N(0, 1 / fan_in)", _LECUN_REF,
        "kaiming_normal_", lambda p: {"nonlinearity": "linear"},
        lambda fi, fo, p: WeightLaw("normal", scale=1.0 / math.sqrt(fi)),
    ),
    Scheme(
        "lecun_uniform", "LeCun uniform",
        "W ~ U(−√(3 / fan_in), √(3 / fan_in)): Var(W) = 1 / fan_in",
        _LECUN_REF,
        "kaiming_uniform_", lambda p: {"nonlinearity": "linear"},
        lambda fi, fo, p: _uniform_law(1.0 / math.sqrt(fi)),
    ),
    Scheme(
        "lsuv", "LSUV (layer-sequential unit variance)",
        "orthogonal W, then for each layer in order: W ← W / √Var(W·x) on a calibration batch "
        "until |Var − 1| < tol or max_iter rounds",
        "Mishkin & Matas (2016), All you need is a good init, ICLR",
        "orthogonal_", lambda p: {"gain": 1.0},
        lambda fi, fo, p: None,
        params=(Param("tol", 0.1, 1e-4, 1.0,
                      doc="how far from 1 each layer's output variance may end up"),
                Param("max_iter", 10, 1, 100, integer=True, doc="rescaling rounds per layer")),
    ),
)

# --------------------------------------------------------------------------------------------------
# Convolution-only schemes: a kernel that is zero except at its centre tap


def delta_orthogonal_(tensor: torch.Tensor, gain: float = 1.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill a convolution weight ``(c_out, c_in, k, ...)`` (odd ``k``) with a delta-orthogonal
    kernel, drawing only from ``generator``.

    Every tap is zero except the centre one, ``W[:, :, centre] = gain·Q``, with ``Q`` a
    (semi-)orthogonal ``c_out × c_in`` matrix from ``torch.nn.init.orthogonal_``, as described in
    `Dynamical Isometry and a Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla
    Convolutional Neural Networks` - Xiao, L. et al. (2018). Each position's channels are then
    mapped by ``gain·Q`` alone, so a linear stack of such convolutions is an orthogonal map for
    ``gain = 1`` (with circular padding; with zero padding too, since the padding is never read).
    A 2-D weight (a Linear, a 1×1 convolution) gets ``gain·Q`` itself.

    Args:
        tensor: an n-dimensional ``torch.Tensor``, n >= 2, filled in place
        gain: the factor on ``Q``
        generator: the ``torch.Generator`` to sample from

    Returns:
        ``tensor``
    """
    if tensor.dim() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    centre = tuple(side // 2 for side in tensor.shape[2:])
    with torch.no_grad():
        tensor.zero_()
        tap = torch.empty(tensor.shape[:2], dtype=tensor.dtype, device=tensor.device)
        tensor[(slice(None), slice(None), *centre)] = nn.init.orthogonal_(tap, gain=gain,
                                                                          generator=generator)
    return tensor


CONV_SCHEMES: tuple[Scheme, ...] = (
    Scheme(
        "dirac", "Dirac (identity convolution)",
        "W[i, i, centre] = 1 for i < min(c_out, c_in), every other entry 0: each output "
        "channel copies one input channel",
        "torch.nn.init.dirac_; the identity start of Zagoruyko & Komodakis (2017), DiracNets: "
        "Training Very Deep Neural Networks Without Skip-Connections",
        "dirac_", lambda p: {},
        # Its share of 1s depends on the channels and the kernel apart, which the fans do not
        # give: the conv architecture's weight_laws says it. Its mean is not 0: no mean field.
        lambda fi, fo, p: None,
        archs=("conv",),
    ),
    Scheme(
        "delta_orthogonal", "Delta-orthogonal",
        "W[:, :, centre] = gain·Q, Q a (semi-)orthogonal c_out × c_in matrix, every other tap "
        "0; Var(W) = gain² / max(fan_in, fan_out) over the whole kernel",
        "Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), Dynamical Isometry and a "
        "Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural "
        "Networks, ICML",
        "orthogonal_", lambda p: {"gain": p["gain"]},
        # The variance is exact; the shape is a normal only in the centre tap (zeros elsewhere),
        # which the conv architecture's weight_laws draws from the kernel size.
        lambda fi, fo, p: WeightLaw("normal", scale=p["gain"] / math.sqrt(max(fi, fo)),
                                    approximate=True),
        params=(_GAIN,),
        own_fn=delta_orthogonal_,
        archs=("conv",),
    ),
)


def schemes_for(arch: str) -> list[str]:
    """The names of the schemes that apply to the architecture ``arch``, in table order."""
    return [name for name, scheme in SCHEMES.items() if scheme.applies_to(arch)]


SCHEMES: dict[str, Scheme] = {s.name: s for s in (*_SCHEME_LIST, *CONV_SCHEMES)}

_PYTORCH_DEFAULT_BIAS = Scheme(
    "pytorch_default", "PyTorch default (nn.Linear)",
    "b ~ U(−1/√fan_in, 1/√fan_in)",
    "What torch.nn.Linear.reset_parameters does",
    "uniform_",
    lambda p: {"a": FanExpr("-1 / math.sqrt(m.in_features)", lambda fi, fo: -1 / math.sqrt(fi)),
               "b": FanExpr("1 / math.sqrt(m.in_features)", lambda fi, fo: 1 / math.sqrt(fi))},
    lambda fi, fo, p: WeightLaw("uniform", low=-1 / math.sqrt(fi), high=1 / math.sqrt(fi)),
)

BIAS_SCHEMES: dict[str, Scheme] = {
    "zeros": SCHEMES["zeros"],
    "constant": SCHEMES["constant"],
    # A bias of std 1 (the weight default) would swamp the signal; 0.05 is a sensible start.
    "normal": replace(SCHEMES["normal"], params=(_MEAN,
                                                 Param("std", 0.05, 0.0, 100.0, doc=_STD_DOC))),
    "pytorch_default": _PYTORCH_DEFAULT_BIAS,
}


def get_scheme(name: str, *, bias: bool = False) -> Scheme:
    table = BIAS_SCHEMES if bias else SCHEMES
    try:
        return table[name]
    except KeyError:
        raise InvalidSpec("bias" if bias else "scheme", name,
                          "one of " + ", ".join(table)) from None


# --------------------------------------------------------------------------------------------------
# LSUV: the one scheme that needs data


def lsuv_rescale(blocks: Sequence[nn.Module], x: torch.Tensor, tol: float,
                 max_iter: int) -> list[int]:
    """Rescale each block's Linear weight so its output variance on ``x`` is 1 within ``tol``.

    ``blocks`` are applied in order; ``block[0]`` must be the block's ``nn.Linear``. Returns the
    number of rescaling rounds each layer took. A layer whose output has zero or non-finite
    variance cannot be rescaled; it is left as it is and the next layer goes on from there.
    """
    rounds = []
    with torch.no_grad():
        h = x
        for block in blocks:
            linear = block[0]
            used = 0
            for _ in range(max_iter):
                var = float(linear(h).var())
                if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                    break
                linear.weight.div_(math.sqrt(var))
                used += 1
            rounds.append(used)
            h = block(h)
    return rounds


__all__ = [
    "BIAS_SCHEMES", "CONV_SCHEMES", "SCHEMES", "TRUNC_NORMAL_MIN_ACCEPTANCE",
    "delta_orthogonal_", "get_scheme", "lsuv_rescale", "schemes_for", "sparse_",
    "trunc_normal_acceptance",
]
