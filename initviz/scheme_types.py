r"""What a scheme is made of: its parameters (:class:`Param`), the distribution it draws each entry
from (:class:`WeightLaw`) and the ``torch.nn.init`` call that applies it (:class:`Scheme`).

The schemes themselves, one entry each, are in :mod:`initviz.schemes`. Notation follows
``torch/nn/init.py``: a Linear weight has shape ``(fan_out, fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats
from torch import nn

from initviz.errors import InvalidSpec, check_int, quote

ParamValue = float | int | str
Params = Mapping[str, ParamValue]
ResolvedParams = tuple[tuple[str, ParamValue], ...]
"""What :meth:`Scheme.resolve` returns: every parameter, sorted by name (hashable)."""


# --------------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class Param:
    """One scheme parameter: its default and what values it accepts."""

    name: str
    default: ParamValue
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    integer: bool = False
    doc: str = ""

    def coerce(self, value: object, owner: str) -> ParamValue:
        """Return ``value`` converted to this parameter's type, or raise :class:`InvalidSpec`."""
        where = f"{owner}.{self.name}"
        if self.choices:
            if isinstance(value, str) and value in self.choices:
                return value
            raise InvalidSpec(where, value, "one of " + ", ".join(self.choices))
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidSpec(where, value, "a number") from None
        if not math.isfinite(number):
            raise InvalidSpec(where, value, "a finite number")
        if self.integer:  # the rule of every whole-number field (an integer Param has a range)
            return check_int(where, number, math.ceil(self.low), math.floor(self.high))
        if (self.low is not None and number < self.low) or (
            self.high is not None and number > self.high
        ):
            raise InvalidSpec(where, value, f"a number in [{self.low:g}, {self.high:g}]")
        return number

    @property
    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return f"[{self.low:g}, {self.high:g}]"


# --------------------------------------------------------------------------------------------------
# The theoretical distribution of one weight entry


@dataclass(frozen=True)
class WeightLaw:
    """The distribution a scheme draws each entry from.

    ``kind`` is the continuous part (``point`` for a constant), and ``zero_fraction`` an extra point
    mass at zero (``sparse``). ``approximate`` marks laws that hold only for large layers
    (orthogonal matrices: each entry of a Haar-random orthogonal matrix is asymptotically normal).
    """

    kind: Literal["normal", "uniform", "trunc_normal", "point"]
    loc: float = 0.0
    scale: float = 0.0
    low: float = -math.inf
    high: float = math.inf
    zero_fraction: float = 0.0
    approximate: bool = False

    def _moments(self) -> tuple[float, float]:
        """Mean and variance of the continuous part (of the point, for ``point``)."""
        if self.kind == "normal":
            return self.loc, self.scale**2
        if self.kind == "uniform":
            return (self.low + self.high) / 2, (self.high - self.low) ** 2 / 12
        if self.kind == "trunc_normal":
            dist = self._truncnorm()
            return float(dist.mean()), float(dist.var())
        return self.loc, 0.0

    def _truncnorm(self):
        alpha, beta = (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale
        return stats.truncnorm(alpha, beta, loc=self.loc, scale=self.scale)

    def mean(self) -> float:
        return (1.0 - self.zero_fraction) * self._moments()[0]

    def std(self) -> float:
        mean, var = self._moments()
        keep = 1.0 - self.zero_fraction
        return math.sqrt(max(keep * (var + mean**2) - (keep * mean) ** 2, 0.0))

    def pdf(self, x: np.ndarray) -> np.ndarray | None:
        """Density of the continuous part (scaled by its mass); None for a point mass."""
        keep = 1.0 - self.zero_fraction
        if self.kind == "normal" and self.scale > 0:
            return keep * stats.norm.pdf(x, self.loc, self.scale)
        if self.kind == "uniform":
            return keep * stats.uniform.pdf(x, self.low, self.high - self.low)
        if self.kind == "trunc_normal":
            return keep * self._truncnorm().pdf(x)
        return None


# --------------------------------------------------------------------------------------------------
# Schemes


@dataclass(frozen=True)
class FanExpr:
    """A ``torch.nn.init`` argument that depends on the layer's fans (pytorch_default's bias bound).

    ``source`` is the same expression written against an ``nn.Linear`` called ``m``.
    """

    source: str
    value: Callable[[int, int], float]


@dataclass(frozen=True)
class Scheme:
    r"""An initialization scheme.

    ``torch_fn`` and ``torch_kwargs`` name the ``torch.nn.init`` call that applies it; ``law`` gives
    the theoretical distribution of an entry for given fans and parameters (None where it depends
    on data, as for LSUV).
    """

    name: str
    label: str
    formula: str
    reference: str
    torch_fn: str
    torch_kwargs: Callable[[Params], dict[str, object]]
    law: Callable[[int, int, Params], WeightLaw | None]
    params: tuple[Param, ...] = ()
    check: Callable[[Params], None] | None = None
    # initviz's own function where torch.nn.init's would draw from the process-wide RNG
    # (sparse_); the code export then includes its source.
    own_fn: Callable[..., torch.Tensor] | None = None
    # The architectures (their ``arch`` names) it applies to; None: every one.
    archs: tuple[str, ...] | None = None

    def applies_to(self, arch: str) -> bool:
        """Whether the scheme can initialize a network of the architecture ``arch``."""
        return self.archs is None or arch in self.archs

    @property
    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def resolve(self, given: Params | Sequence[tuple[str, ParamValue]] = (),
                field: str | None = None) -> ResolvedParams:
        """Validate ``given`` and fill in defaults: a sorted tuple of ``(name, value)`` pairs.

        The tuple form keeps specs hashable, so they can serve as cache keys. Errors name each
        parameter ``field.param`` (default: the scheme's name; ``bias.normal`` for a bias).
        """
        given = dict(given)
        field = field or self.name
        known = {p.name: p for p in self.params}
        for name in given:
            if name not in known:
                allowed = ", ".join(known) if known else "no parameters"
                raise InvalidSpec(f"{field}.{name}", given[name], allowed,
                                  message=f"{field} has no parameter {quote(name)} (set to "
                                          f"{quote(given[name])}): " + (
                                              f"its parameters are {allowed}" if known
                                              else "it takes no parameters"))
        values = {
            name: param.coerce(given.get(name, param.default), field)
            for name, param in known.items()
        }
        if self.check is not None:
            self.check(values)
        return tuple(sorted(values.items()))

    def _call_kwargs(self, params: Params, fan_in: int, fan_out: int) -> dict[str, object]:
        return {
            key: value.value(fan_in, fan_out) if isinstance(value, FanExpr) else value
            for key, value in self.torch_kwargs(params).items()
        }

    # Every method below takes the parameters as a mapping or as resolve()'s pairs.

    def apply(self, tensor: torch.Tensor, params: Params | ResolvedParams,
              generator: torch.Generator, fans: tuple[int, int] | None = None) -> torch.Tensor:
        """Initialize ``tensor`` in place through ``torch.nn.init``, drawing from ``generator``.

        ``fans`` is ``(fan_in, fan_out)`` of the layer; it is needed for a bias, whose own shape
        does not say what layer it belongs to.
        """
        fan_in, fan_out = fans if fans is not None else _fans(tensor)
        fn = self.own_fn or getattr(nn.init, self.torch_fn)
        kwargs = self._call_kwargs(dict(params), fan_in, fan_out)
        if self.torch_fn not in _DETERMINISTIC:
            kwargs["generator"] = generator
        with torch.no_grad():
            return fn(tensor, **kwargs)

    def code(self, params: Params | ResolvedParams, target: str, generator: str = "g") -> str:
        """The PyTorch code that does what :meth:`apply` does, e.g. for ``target='m.weight'``
        (calling ``own_fn`` by its name, where the scheme has one)."""
        args = [target]
        for key, value in self.torch_kwargs(dict(params)).items():
            args.append(f"{key}={value.source if isinstance(value, FanExpr) else _literal(value)}")
        if self.torch_fn not in _DETERMINISTIC:
            args.append(f"generator={generator}")
        name = self.own_fn.__name__ if self.own_fn else f"nn.init.{self.torch_fn}"
        return f"{name}({', '.join(args)})"

    def gain(self, params: Params | ResolvedParams) -> float | None:
        """The gain its ``torch.nn.init`` call scales the std by: its ``gain`` argument, or
        ``torch.nn.init.calculate_gain(nonlinearity, a)`` for a ``kaiming_*`` call (with torch's
        defaults, so 1 for LeCun's ``nonlinearity="linear"``); None for a call without one."""
        kwargs = self.torch_kwargs(dict(params))
        if "gain" in kwargs:
            return float(kwargs["gain"])
        if self.torch_fn.startswith("kaiming_"):
            return nn.init.calculate_gain(kwargs.get("nonlinearity", "leaky_relu"),
                                          kwargs.get("a", 0.0))
        return None

    def weight_law(self, fan_in: int, fan_out: int,
                   params: Params | ResolvedParams) -> WeightLaw | None:
        """The distribution of one entry; None where it depends on data (LSUV)."""
        return self.law(fan_in, fan_out, dict(params))

    def weight_std(self, fan_in: int, fan_out: int,
                   params: Params | ResolvedParams) -> float | None:
        """Theoretical std of one entry; None where it depends on data (LSUV)."""
        law = self.weight_law(fan_in, fan_out, params)
        return None if law is None else law.std()

    def weight_mean(self, fan_in: int, fan_out: int,
                    params: Params | ResolvedParams) -> float | None:
        law = self.weight_law(fan_in, fan_out, params)
        return None if law is None else law.mean()


_DETERMINISTIC = {"zeros_", "ones_", "constant_", "dirac_", "eye_"}


def _fans(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        raise InvalidSpec("tensor", tuple(tensor.shape), "a weight with at least 2 dimensions")
    return nn.init._calculate_fan_in_and_fan_out(tensor)


def _literal(value: object) -> str:
    if isinstance(value, float) and value == math.sqrt(5):
        return "math.sqrt(5)"
    return repr(value)


__all__ = ["FanExpr", "Param", "ParamValue", "Params", "ResolvedParams", "Scheme", "WeightLaw"]
