"""The network a user describes: a frozen, hashable spec, and the ``nn.Sequential`` built from it.

A network is ``depth`` hidden blocks, each ``Linear -> [norm] -> activation``; a training model adds
one output ``Linear``. Layers are numbered from 1 everywhere in initviz's output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from initviz.activations import Activation, get_activation
from initviz.errors import InvalidSpec, TooLarge, check_int, env_megabytes
from initviz.scheme_types import ParamValue, Scheme
from initviz.schemes import get_scheme, schemes_for

MAX_WIDTH = 4096
MAX_DEPTH = 500
MAX_INPUT_DIM = 4096
NORMS = ("none", "batchnorm", "layernorm")
LSUV_CALIBRATION_BATCH = 512

DEFAULT_MEMORY_BUDGET = 256 * 1024**2
"""Bytes one computation (a profile, a Jacobian, a training call) may use;
``INITVIZ_MEMORY_BUDGET_MB`` in the environment overrides it. The default fits a 1 GB host: the
server itself (Python, torch, Streamlit, pandas, scikit-learn) takes about 450 MB before any work,
which leaves room for one computation at the budget plus the bounded caches."""


def memory_budget() -> int:
    """Bytes one computation may use (see :data:`DEFAULT_MEMORY_BUDGET`)."""
    return env_megabytes("INITVIZ_MEMORY_BUDGET_MB", DEFAULT_MEMORY_BUDGET)


def _as_pairs(params: Mapping[str, ParamValue] | Sequence[tuple[str, ParamValue]]) -> dict:
    return dict(params.items() if isinstance(params, Mapping) else params)


@dataclass(frozen=True)
class NetworkSpec:
    """What the user chose. Validated and normalized on construction, hashable afterwards.

    ``scheme_params`` and ``bias_params`` may be given as a dict; they are stored as a sorted
    tuple of ``(name, value)`` with every default filled in.

    Args:
        sizes: the width of each hidden layer, in order (1 to :data:`MAX_DEPTH` of them, each in
            [1, :data:`MAX_WIDTH`]); :meth:`stack` builds equal widths.
        input_dim: the size of the input to layer 1, in [1, :data:`MAX_INPUT_DIM`].
        activation: a name of :data:`initviz.activations.ACTIVATIONS`.
        scheme, scheme_params: the weight scheme (:data:`initviz.schemes.SCHEMES`) and its
            parameters.
        bias, bias_params: the bias scheme (:data:`initviz.schemes.BIAS_SCHEMES`) and its
            parameters.
        norm: one of :data:`NORMS`, a normalization layer after each Linear.
        arch: the architecture, a name of :data:`initviz.archs.ARCHS` (``mlp``: the plain stack
            above; ``residual``: blocks ``h <- h + a*branch(h)``).
        arch_params: the architecture's own options (``residual`` for ``arch="residual"``),
            stored like ``scheme_params``: a sorted tuple with every default filled in.

    Raises:
        InvalidSpec: a field out of range or unknown, with a sentence that says which.

    Example::

        >>> spec = NetworkSpec.stack(256, 20, activation="tanh", scheme="normal",
        ...                          scheme_params={"std": 0.05})
        >>> spec.depth, spec.scheme_params
        (20, (('mean', 0.0), ('std', 0.05)))
    """

    sizes: tuple[int, ...]
    input_dim: int = 64
    activation: str = "relu"
    scheme: str = "kaiming_normal"
    scheme_params: tuple[tuple[str, ParamValue], ...] = ()
    bias: str = "zeros"
    bias_params: tuple[tuple[str, ParamValue], ...] = ()
    norm: str = "none"
    arch: str = "mlp"
    arch_params: tuple[tuple[str, str | int], ...] = ()

    def __post_init__(self) -> None:
        sizes = self.sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
            raise InvalidSpec("sizes", sizes, "one or more layer widths")
        architecture = self.architecture  # raises InvalidSpec for an unknown name
        if len(sizes) > architecture.max_depth:
            raise InvalidSpec("depth", len(sizes),
                              f"a whole number in [1, {architecture.max_depth}]")
        set_ = object.__setattr__
        set_(self, "sizes", tuple(check_int("width", s, 1, MAX_WIDTH) for s in sizes))
        set_(self, "input_dim", check_int("input_dim", self.input_dim, 1, MAX_INPUT_DIM))
        self.resolved_activation  # noqa: B018  (raises InvalidSpec for an unknown name)
        if self.norm not in NORMS:
            raise InvalidSpec("norm", self.norm, "one of " + ", ".join(NORMS))
        set_(self, "scheme_params",
             self.resolved_scheme.resolve(_as_pairs(self.scheme_params)))
        set_(self, "bias_params",
             self.resolved_bias.resolve(_as_pairs(self.bias_params), field=f"bias.{self.bias}"))
        set_(self, "arch_params", architecture.resolve(_as_pairs(self.arch_params)))
        scheme = self.resolved_scheme
        if not scheme.applies_to(self.arch):
            raise InvalidSpec("scheme", self.scheme, "one of " + ", ".join(schemes_for(self.arch)),
                              message=f"{self.scheme} ({scheme.label}) initializes only "
                                      f"{' and '.join(scheme.archs)} networks, not a "
                                      f"{architecture.label} ({self.arch})")
        architecture.check(self)

    @classmethod
    def stack(cls, width: int, depth: int, **kwargs) -> NetworkSpec:
        """A network of ``depth`` hidden layers (or blocks) of ``width`` units each."""
        from initviz.archs import get_arch

        depth = check_int("depth", depth, 1, get_arch(kwargs.get("arch", "mlp")).max_depth)
        return cls(sizes=(width,) * depth, **kwargs)

    @property
    def depth(self) -> int:
        return len(self.sizes)

    @property
    def architecture(self):
        """The :class:`initviz.archs.Architecture` :attr:`arch` names."""
        from initviz.archs import get_arch  # the architectures build on this module

        return get_arch(self.arch)

    def option(self, name: str) -> str | int:
        """The value of the architecture's option ``name`` (e.g. ``"residual"``, ``"heads"``)."""
        return dict(self.arch_params)[name]

    @property
    def fans(self) -> list[tuple[int, int]]:
        """``(fan_in, fan_out)`` of the weight each probe entry (layer or block) reports."""
        return self.architecture.fans(self)

    @property
    def resolved_scheme(self) -> Scheme:
        """The weight scheme :attr:`scheme` names."""
        return get_scheme(self.scheme)

    @property
    def resolved_bias(self) -> Scheme:
        """The bias scheme :attr:`bias` names."""
        return get_scheme(self.bias, bias=True)

    @property
    def resolved_activation(self) -> Activation:
        """The activation :attr:`activation` names."""
        return get_activation(self.activation)

    def parameter_count(self, out_features: int | None = None) -> int:
        return self.architecture.parameter_count(self, out_features)

    def to_dict(self) -> dict:
        """The configuration as JSON; an architecture other than ``mlp`` adds ``arch`` and its
        options."""
        other = {} if self.arch == "mlp" else {"arch": self.arch, **dict(self.arch_params)}
        return {
            "sizes": list(self.sizes), "input_dim": self.input_dim,
            "activation": self.activation, "scheme": self.scheme,
            "params": dict(self.scheme_params), "bias": self.bias,
            "bias_params": dict(self.bias_params), "norm": self.norm, **other,
        }


def estimate_bytes(spec: NetworkSpec, batch: int, *, models: int = 1,
                   out_features: int | None = None, parameter_copies: int = 2,
                   activation_copies: int = 4) -> int:
    """A conservative estimate of the memory a forward and backward pass needs, in bytes.

    Parameters are held ``parameter_copies`` times (weights and gradients; 4 with Adam's two
    moments), activations ``activation_copies`` times per unit (Linear output, activation output
    and the gradients of both, which autograd and the probe keep alive together). float32.
    """
    units = spec.architecture.units(spec) + (out_features or 0) + spec.input_dim
    per_model = (parameter_copies * spec.parameter_count(out_features)
                 + activation_copies * batch * units)
    return 4 * models * per_model


def peak_bytes(estimates: Sequence[int], budget: int | None = None) -> int:
    """The most that computations with these ``estimates`` hold at once when run by
    :func:`initviz.devices.side_by_side`: all together where their sum fits ``budget`` (default
    :func:`memory_budget`), else one at a time; never more than ``budget``, since a computation
    over it is refused before it allocates."""
    budget = memory_budget() if budget is None else budget
    together = sum(estimates)
    return min(together if together <= budget else max(estimates, default=0), budget)


def check_memory(what: str, needed: int, budget: int | None = None,
                 reduce: str = "width, depth or batch") -> None:
    """Refuse (:class:`TooLarge`, naming what to ``reduce``) where ``needed`` exceeds the budget."""
    budget = memory_budget() if budget is None else budget
    if needed > budget:
        raise TooLarge(what, needed, budget, reduce)


def norm_layer(kind: str, width: int) -> nn.Module | None:
    if kind == "batchnorm":
        return nn.BatchNorm1d(width)
    if kind == "layernorm":
        return nn.LayerNorm(width)
    return None


class Linear(nn.Linear):
    """``nn.Linear`` built without an initialization, for :func:`build_model` to draw one.

    ``nn.Linear`` draws a default initialization from torch's global RNG as it is built. Torch's
    own way around that, ``nn.utils.skip_init``, builds the layer on the meta device (running that
    default initialization there) and then moves it: about ten times the cost of the layer itself,
    most of the time it took to build a network at the page's sizes. This layer's
    ``reset_parameters`` does nothing: its parameters are uninitialized memory until the spec's
    schemes fill them.
    """

    def reset_parameters(self) -> None:
        pass


def init_linear(linear: nn.Linear, spec: NetworkSpec, generator: torch.Generator) -> None:
    """Apply the spec's weight and bias schemes to one Linear layer, drawing from ``generator``."""
    fans = (linear.in_features, linear.out_features)
    spec.resolved_scheme.apply(linear.weight, spec.scheme_params, generator)
    spec.resolved_bias.apply(linear.bias, spec.bias_params, generator, fans)


def build_model(spec: NetworkSpec, seed: int, *, out_features: int | None = None,
                device: torch.device | str = "cpu",
                calibration: torch.Tensor | None = None) -> nn.Module:
    """Build and initialize the network ``spec`` describes, through its architecture.

    Every parameter is drawn from one ``torch.Generator`` seeded with ``seed``, layer by layer
    (weight, then bias), on the CPU, so a seed gives the same network on every device.

    Args:
        spec: the network.
        seed: the seed of every weight and bias.
        out_features: where given, an output Linear (initialized the same way) follows the
            hidden layers or blocks.
        device: where the built model is moved to.
        calibration: the inputs LSUV rescales on (default: N(0, 1) inputs drawn from the same
            generator after the weights).

    Returns:
        The model (for ``mlp`` an ``nn.Sequential`` of blocks ``linear``, optionally ``norm``,
        and ``act``; see each module of :mod:`initviz.archs`).

    Example::

        >>> model = build_model(NetworkSpec.stack(64, 3), seed=0)
        >>> model(torch.randn(8, 64)).shape
        torch.Size([8, 64])
    """
    generator = torch.Generator().manual_seed(seed)
    model = spec.architecture.build(spec, generator, out_features=out_features,
                                    calibration=calibration)
    return model.to(device)


__all__ = [
    "DEFAULT_MEMORY_BUDGET", "MAX_DEPTH", "MAX_INPUT_DIM", "MAX_WIDTH", "NORMS", "NetworkSpec",
    "Linear", "build_model", "check_memory", "estimate_bytes", "init_linear", "memory_budget",
    "norm_layer", "peak_bytes",
]
