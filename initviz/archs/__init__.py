"""The architectures a :class:`~initviz.network.NetworkSpec` can name, one module each.

An architecture is an :class:`Architecture`: it builds the model from the spec, says what one
probe entry is (a hidden layer of the plain stack, a block of the residual one) and which modules
hold that entry's statistics, predicts them by mean-field theory, writes the PyTorch code that
rebuilds the model, and counts what the model costs in memory. The rest of initviz calls these
methods through ``spec.architecture`` and never asks which architecture it has.

To add one: a module here with a subclass of :class:`Architecture`, registered in :data:`ARCHS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from initviz.datasets import sequence_steps
from initviz.errors import InvalidSpec, check_int, quote

if TYPE_CHECKING:
    import pandas as pd

    from initviz.meanfield import Prediction
    from initviz.network import NetworkSpec
    from initviz.probe import Profile
    from initviz.scheme_types import WeightLaw


@dataclass(frozen=True)
class ProbePoint:
    """Where the probe reads one entry (a layer or a block) of a built model.

    Attributes:
        output: the module whose forward output is the entry's output (``act_*``, and
            ``grad_std`` is the std of dL/d(that output)).
        preact: the module whose forward input (``preact_input``) or output is the entry's
            ``preact_*`` tensor.
        preact_input: read ``preact``'s input (True) or its output (False).
        region: the module whose input is checked against the activation's saturated and dead
            regions.
        weight: the Linear whose weight the entry's ``weight_*`` columns describe.
    """

    output: nn.Module
    preact: nn.Module
    preact_input: bool
    region: nn.Module
    weight: nn.Linear


@dataclass(frozen=True)
class Option:
    """One option of an architecture: a name among ``choices``, or a number in ``bounds`` (a
    whole number unless ``real``).

    Attributes:
        default: the value when the option is not given.
        choices: the names it may take (empty for a number).
        bounds: ``(low, high)``, both included, for a number option.
        meaning: what it sets, for help texts.
        real: the number may have a fraction (an LSTM's forget-gate bias); a float then.
    """

    default: str | int | float
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    meaning: str = ""
    real: bool = False

    def parse(self, name: str, value) -> str | int | float:
        """``value`` (a name, a number or its text, as a link or the CLI gives it) checked;
        InvalidSpec naming what is allowed otherwise."""
        if self.real:
            return _check_real(name, value, *self.bounds)
        if self.bounds is not None:
            return check_int(name, value, *self.bounds)
        if value not in self.choices:
            raise InvalidSpec(name, value, "one of " + ", ".join(self.choices))
        return value

    @property
    def step(self) -> int | float:
        """A number control's step, of the option's own type (Streamlit's ``number_input``
        refuses a whole-number step beside real bounds): 1, or 0.1 for a real option."""
        return 0.1 if self.real else 1

    def describe(self) -> str:
        """The allowed values in words, e.g. ``plain, scaled`` or ``a whole number in [1, 64]``."""
        if self.real:
            return f"a number in [{self.bounds[0]:g}, {self.bounds[1]:g}]"
        if self.bounds is not None:
            return f"a whole number in [{self.bounds[0]}, {self.bounds[1]}]"
        return ", ".join(self.choices)


def check_one_width_without_lsuv(spec: NetworkSpec, why: str) -> None:
    """The refusals of an architecture whose entries share one width (``why``: what keeps it)
    and that LSUV, which rescales a plain stack layer by layer, cannot initialize."""
    if len(set(spec.sizes)) != 1:
        raise InvalidSpec("sizes", ",".join(map(str, spec.sizes)), f"one width for {why}")
    if spec.scheme == "lsuv":
        raise InvalidSpec("scheme", spec.scheme, "a scheme without data-driven rescaling "
                          "(LSUV rescales a plain stack layer by layer)")


def _check_real(name: str, value, low: float, high: float) -> float:
    """``value`` (a number or its text, not a bool) as a float in [low, high]; InvalidSpec."""
    allowed = f"a number in [{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidSpec(name, value, allowed)
    try:
        number = float(value)
    except ValueError:
        raise InvalidSpec(name, value, allowed) from None
    if not low <= number <= high:  # NaN fails this too
        raise InvalidSpec(name, value, allowed)
    return number


class ExtraColumns:
    """Columns an architecture measures beyond :data:`initviz.probe.LAYER_COLUMNS`, from hooks
    it places on the model: one 0-d tensor per entry and column, left on the device."""

    def __init__(self):
        self.values: dict[str, list[torch.Tensor]] = {}
        self.handles: list = []

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class Architecture(ABC):
    """What the rest of initviz asks of an architecture (the plain stack is
    :class:`initviz.archs.mlp.MLP`).

    Attributes:
        name: its ``arch`` name (contract).
        label: a short description for sentences.
        max_depth: the most layers (blocks) a spec may have.
        options: its own :class:`Option` by name.
        entry: what one probe entry is called in output ("layer", "block").
        output: what an entry outputs, in sentences ("activation", "residual stream").
        fixed_point: whether deep layers settle at a mean-field fixed point q* (the ``theory``
            command's phase diagram describes such a stack).
        code_input: the exported script's name for the input's size.
        summary_note: where there is no fixed point, why the profile's q*, χ₁ and ξ_c are null
            and where its theory is instead.
        jacobian_input: what the Jacobian differentiates by, in sentences ("input"; a
            recurrent net's initial state).
        batched_training: whether :class:`initviz.engines.BatchedEngine` can train it (a plain
            chain of Linear, norm and activation modules); otherwise runs train one by one.
        charts: the columns of :meth:`table_columns` the page draws per entry, each with its
            axis title, whether the axis is logarithmic, and the chart's title.
        data_charts: like ``charts``, for the columns of :meth:`data_columns`: what the
            architecture measures under the classifier's loss on real data at initialization.
        page_values: the page's controls (by key) whose defaults differ for this architecture:
            a size whose profile fits the memory budget at the page's batch, a data set it
            reads. Choosing the architecture on the page sets them.
    """

    name: str
    label: str
    max_depth: int
    options: Mapping[str, Option] = {}
    entry: str = "layer"
    output: str = "activation"
    fixed_point: bool = False
    summary_note: str | None = None
    code_input: str = "input_dim"
    jacobian_input: str = "input"
    batched_training: bool = False
    charts: Mapping[str, tuple[str, bool, str]] = {}
    data_charts: Mapping[str, tuple[str, bool, str]] = {}
    page_values: Mapping[str, object] = {}

    def resolve(self, given: Mapping[str, str | int]) -> tuple[tuple[str, str | int], ...]:
        """Its options with every default filled in, sorted; InvalidSpec for a bad one."""
        for key in given:
            if key not in self.options:
                allowed = ", ".join(self.options) or "none"
                raise InvalidSpec(f"{self.name} option", key, f"one of its options ({allowed})",
                                  message=f"{self.label} ({self.name}) has no option "
                                          f"{quote(key)}; its options: {allowed}")
        chosen = {key: option.default for key, option in self.options.items()}
        chosen |= {key: self.options[key].parse(key, value) for key, value in given.items()}
        return tuple(sorted(chosen.items()))

    def check(self, spec: NetworkSpec) -> None:  # noqa: B027  (most architectures take any)
        """Raise InvalidSpec where ``spec`` is not a network of this architecture."""

    def theory_note(self, spec: NetworkSpec) -> str | None:
        """Why the profile's q*, χ₁ and ξ_c are null for ``spec`` where mean-field theory
        applies to it (:attr:`summary_note` unless the reason depends on the options)."""
        return self.summary_note

    def input_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        """The shape of one input example (the probe draws ``(batch, *shape)`` N(0, 1) inputs;
        training data are viewed as such examples)."""
        return (spec.input_dim,)

    def output_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        """The shape of one example's last-entry output (the probe's random projection)."""
        return (spec.sizes[-1],)

    def jacobian_input_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        """The shape of what :meth:`chain` takes (one example, no batch dimension): the
        Jacobian's input. The model's input by default; a recurrent net's chain takes h_0."""
        return self.input_shape(spec)

    def for_data(self, spec: NetworkSpec, features: int, dataset: str) -> NetworkSpec:
        """``spec`` fitted to a data set whose examples have ``features`` numbers (what the
        training race builds); InvalidSpec where this architecture cannot read them (by default
        a sequence data set, which is for the recurrent architectures)."""
        steps = sequence_steps(dataset)
        if steps is not None:
            raise InvalidSpec("dataset", dataset, "a data set of vectors", message=(
                f"{dataset} is a sequence of {steps} steps for the recurrent architectures "
                f"(rnn, lstm); a {self.label} ({self.name}) reads the same pixels as one "
                "vector from digits"))
        return replace(spec, input_dim=features)

    @abstractmethod
    def fans(self, spec: NetworkSpec) -> list[tuple[int, int]]:
        """``(fan_in, fan_out)`` of the weight each probe entry reports."""

    @abstractmethod
    def parameter_count(self, spec: NetworkSpec, out_features: int | None) -> int:
        """Parameters of the model, with an output layer of ``out_features`` where given."""

    @abstractmethod
    def units(self, spec: NetworkSpec) -> int:
        """Values per input a forward pass keeps for the backward one (beyond the input and the
        output layer), each also held as a gradient: what :func:`initviz.network.estimate_bytes`
        multiplies by the batch."""

    @abstractmethod
    def build(self, spec: NetworkSpec, generator: torch.Generator, *,
              out_features: int | None, calibration: torch.Tensor | None) -> nn.Module:
        """The initialized model, every parameter drawn from ``generator`` (on the CPU)."""

    @abstractmethod
    def probe_points(self, model: nn.Module, spec: NetworkSpec) -> list[ProbePoint]:
        """One :class:`ProbePoint` per entry of a model :meth:`build` made, in order."""

    @abstractmethod
    def chain(self, model: nn.Module) -> nn.Sequential:
        """The model as an ``nn.Sequential`` of the stages its input passes through in turn: the
        map whose Jacobian :mod:`initviz.jacobian` takes, on one example without a batch
        dimension (its overflow check walks the stages); the same modules, not copies."""

    def extra_columns(self, model: nn.Module, spec: NetworkSpec) -> ExtraColumns | None:
        """Hooks for the columns this architecture adds to the probe's table (None: none)."""
        return None

    @abstractmethod
    def predict(self, spec: NetworkSpec, input_second_moment: float,
                output_grad_var: float) -> Prediction | None:
        """The mean-field prediction of every entry (see :func:`initviz.meanfield.predict`)."""

    def weight_laws(self, spec: NetworkSpec) -> list[WeightLaw | None]:
        """The law of each entry of the weight each probe entry reports: the scheme's at that
        entry's fans (None where it depends on data, as LSUV's)."""
        scheme = spec.resolved_scheme
        return [scheme.weight_law(fan_in, fan_out, spec.scheme_params)
                for fan_in, fan_out in self.fans(spec)]

    def weight_entries(self, spec: NetworkSpec) -> list[int]:
        """How many numbers the weight of each probe entry holds (``fan_in · fan_out`` for a
        matrix)."""
        return [fan_in * fan_out for fan_in, fan_out in self.fans(spec)]

    def data_columns(self, spec: NetworkSpec, seed: int) -> pd.DataFrame:
        """The columns of :attr:`data_charts`, one row per entry (``layer`` from 1), measured
        with the training model (initialized from ``seed``) on training examples."""
        raise InvalidSpec("arch", self.name, "an architecture with data_charts")

    def advice(self, profile: Profile, kind: str) -> str | None:
        """What the verdict recommends for a measured network of this architecture whose signal
        is ``kind`` (:data:`initviz.report.VERDICTS`); None leaves it to the plain stack's
        advice (the scheme the activation needs)."""
        return None

    def weight_std_factor(self, spec: NetworkSpec) -> float:
        """What the architecture multiplies the scheme's std of each entry's weight by."""
        return 1.0

    def table_columns(self, columns: dict, extra: dict, prediction: Prediction | None
                      ) -> dict[str, list]:
        """Columns this architecture adds to the probe's table, from the table's ``columns``,
        the host values of :meth:`extra_columns` and the prediction."""
        return {}

    @abstractmethod
    def code(self, spec: NetworkSpec, seed: int) -> list[str]:
        """Script lines that build ``model`` and initialize it as :meth:`build` does, drawing
        from a generator ``g``; the probe's inputs have ``input_dim`` columns."""

    @abstractmethod
    def measure_code(self) -> list[str]:
        """Script lines that run ``x`` through ``model`` and print each entry's output std."""


# The architectures subclass Architecture above, so they are imported after it.
from initviz.archs.conv import Conv  # noqa: E402
from initviz.archs.mlp import MLP  # noqa: E402
from initviz.archs.residual import Residual  # noqa: E402
from initviz.archs.rnn import LSTM, RNN  # noqa: E402
from initviz.archs.transformer import Transformer  # noqa: E402

ARCHS: dict[str, Architecture] = {arch.name: arch for arch in (
    MLP(), Residual(), Transformer(), Conv(), RNN(), LSTM())}
"""Every architecture by name."""


def get_arch(name: str) -> Architecture:
    """The architecture called ``name``; InvalidSpec naming the choices otherwise."""
    if not isinstance(name, str) or name not in ARCHS:
        raise InvalidSpec("arch", name, "one of " + ", ".join(ARCHS))
    return ARCHS[name]


__all__ = ["ARCHS", "Architecture", "ExtraColumns", "Option", "ProbePoint",
           "check_one_width_without_lsuv", "get_arch"]
