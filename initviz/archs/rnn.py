"""``rnn`` and ``lstm``: recurrent networks of ``width`` hidden units run over ``depth`` time steps.

- ``rnn``, the Elman cell: ``h_t = φ(W h_{t−1} + U x_t + b)``.
- ``lstm`` (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000): gates
  ``i, f, g, o = W h_{t−1} + U x_t + b`` (PyTorch's order), ``c_t = σ(f)·c_{t−1} + σ(i)·φ(g)``,
  ``h_t = σ(o)·φ(c_t)``; φ is the chosen activation (tanh in the standard cell, Keras's
  ``activation``), σ the logistic sigmoid.

Both start from ``h_0 = c_0 = 0`` and read one ``x_t`` of ``input_dim`` numbers a step, so an input
has shape ``(depth, input_dim)``; a training model reads ``h_T`` into the output Linear.

The scheme initializes the recurrent weights ``W`` only, the LSTM's gate by gate (each
``width × width`` block on its own, as Keras and the orthogonal-per-gate recipes do), and the bias
scheme ``b`` (the LSTM's forget-gate block then starts at ``forget_bias``: 0 as in PyTorch, 1 as
Gers et al. 2000 and Jozefowicz, Zaremba & Sutskever 2015 recommend). The input weights ``U``
and the output Linear's weight take LeCun normal, ``N(0, 1/fan_in)``, whatever the scheme: the
schemes are compared on the recurrence alone, and every step's input arrives with variance
``E[x²]`` whatever ``input_dim`` is. (PyTorch's own ``nn.RNN`` default, ``U(±1/√hidden)``, would
give it ``input_dim/(3·hidden)`` of that: 1/192 for one pixel into 64 units.)

A probe entry is a time step: ``act_*`` is ``h_t``, ``grad_std`` the std of ``dL/dh_t`` for the
probe's loss at the last step only, ``L = Σ h_T·r``, so vanishing or exploding through time is
the same picture as through depth; ``preact_*`` is what φ reads (the Elman pre-activation, the
LSTM's cell state ``c_t``), where ``saturated``/``dead`` are read; the weight is ``W``.

Mean-field theory (``rnn``): at init ``W h_{t−1}``, ``U x_t`` and ``b`` are independent, so the
Elman pre-activation's variance follows the plain stack's length map with the recurrent σ's and
the input adding to the bias, ``q_t = σ_w²·E[φ(√q_{t−1} z)²] + σ_b² + E[x²]`` from
``q_1 = E[x²] + σ_b²``, and ``Var(dL/dh_{t−1}) = σ_w²·E[φ'(√q_t z)²]·Var(dL/dh_t)``. One
difference from a stack: W is the same matrix at every step, so the mean-field average over
fresh weights per layer describes one draw less well the longer the sequence (a linear net with
Gaussian W grows as its largest eigenvalue to the power T). The phase diagram places the
network at ``(σ_w², σ_b² + E[x²])``; with ``x_t = 0`` after the first step it is the MLP's own at
``(σ_w², σ_b²)``. The LSTM's gates have no such recursion here.

The Jacobian is ``∂h_T/∂h_0`` (state to state; the LSTM's ``c_0 = 0`` held fixed), through the
T step maps on one fixed input sequence: the first example of the probe's inputs at seed 0
(:func:`probe_sequence`). The model's classes and :func:`init_recurrent_` use torch only, so the
code export copies them as they are.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from initviz.archs import Architecture, Option, ProbePoint, check_one_width_without_lsuv
from initviz.datasets import sequence_steps
from initviz.errors import InvalidSpec
from initviz.meanfield import layer_sigmas, predict_layers
from initviz.network import MAX_DEPTH, Linear, NetworkSpec
from initviz.schemes import SCHEMES

INPUT_SCHEME = "lecun_normal"
"""The scheme of the input weights U and the output Linear's weight, whatever the chosen one."""
FORGET_BIAS_BOUNDS = (-10.0, 10.0)


class ElmanCell(nn.Module):
    """One step ``h_t = act(W h_{t-1} + U x_t + b)``; ``recurrent`` is W with b, ``input`` U."""

    gates = 1
    state_size = 1  # h

    def __init__(self, input_dim, width, act, linear=nn.Linear):
        super().__init__()
        self.recurrent = linear(width, width)
        self.input = linear(input_dim, width, bias=False)

    def forward(self, x, state, act):
        (h,) = state
        return (act(self.recurrent(h) + self.input(x)),)


class LSTMCell(nn.Module):
    """One LSTM step; gates ``i, f, g, o`` (PyTorch's order) from ``W h_{t-1} + U x_t + b``,
    ``c_t = sigmoid(f) c_{t-1} + sigmoid(i) candidate(g)``, ``h_t = sigmoid(o) act(c_t)``."""

    gates = 4
    state_size = 2  # h, c

    def __init__(self, input_dim, width, act, linear=nn.Linear):
        super().__init__()
        self.recurrent = linear(width, 4 * width)
        self.input = linear(input_dim, 4 * width, bias=False)
        self.candidate = act()

    def forward(self, x, state, act):
        h, c = state
        i, f, g, o = (self.recurrent(h) + self.input(x)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.candidate(g)
        return torch.sigmoid(o) * act(c), c


class RecurrentNet(nn.Module):
    """``cell`` run over ``steps`` time steps from a zero state, on inputs ``(batch, steps,
    input_dim)``; the output Linear reads ``h_T`` where ``out_features`` is given.

    Each step has its own activation module (``acts[t]``) and an identity marking ``h_t``
    (``outputs[t]``), so a hook on them sees that one step."""

    def __init__(self, cell, steps, act, out_features=None, linear=nn.Linear):
        super().__init__()
        self.cell = cell
        self.acts = nn.ModuleList(act() for _ in range(steps))
        self.outputs = nn.ModuleList(nn.Identity() for _ in range(steps))
        width = cell.recurrent.in_features
        self.head = None if out_features is None else linear(width, out_features)

    def hidden_states(self, x):
        """``h_1, ..., h_T`` of inputs ``x`` (batch, steps, input_dim), one at a time."""
        width = self.cell.recurrent.in_features
        state = tuple(x.new_zeros(x.shape[0], width) for _ in range(self.cell.state_size))
        for t, (act, output) in enumerate(zip(self.acts, self.outputs)):
            h, *rest = self.cell(x[:, t], state, act)
            h = output(h)
            state = (h, *rest)
            yield h

    def forward(self, x):
        *_, h = self.hidden_states(x)
        return h if self.head is None else self.head(h)


def init_recurrent_(model, init_weight, init_bias, init_input, forget_bias=None):
    """Initialize a :class:`RecurrentNet` in place, in this order: each gate's block of the
    recurrent weight W by ``init_weight(linear, block)`` and of its bias by ``init_bias``; the
    LSTM's forget-gate bias (the second block) set to ``forget_bias`` where given; the input
    weight U by ``init_input``; the output Linear's weight by ``init_input`` and bias by
    ``init_bias``."""
    cell = model.cell
    recurrent, width = cell.recurrent, cell.recurrent.in_features
    with torch.no_grad():
        for gate in range(cell.gates):
            rows = slice(gate * width, (gate + 1) * width)
            init_weight(recurrent, recurrent.weight[rows])
            init_bias(recurrent, recurrent.bias[rows])
        if forget_bias is not None:
            recurrent.bias[width:2 * width].fill_(forget_bias)
        init_input(cell.input, cell.input.weight)
        if model.head is not None:
            init_input(model.head, model.head.weight)
            init_bias(model.head, model.head.bias)


class _Step(nn.Module):
    """Time step ``t`` of a :class:`RecurrentNet` as a map of one example's state (no batch):
    ``h_{t-1}`` (the first step, the other state parts 0) or the state's parts concatenated, to
    the next state's (``h_t`` alone at the last step), with ``x_t`` held fixed."""

    def __init__(self, model: RecurrentNet, t: int, x_t: torch.Tensor):
        super().__init__()
        self.cell, self.act = model.cell, model.acts[t]
        self.first, self.last = t == 0, t == len(model.acts) - 1
        self.register_buffer("x_t", x_t)

    def forward(self, v):
        parts = self.cell.state_size
        state = ((v, *[torch.zeros_like(v)] * (parts - 1)) if self.first
                 else v.chunk(parts, dim=-1))
        new = self.cell(self.x_t.to(v), state, self.act)
        return new[0] if self.last else torch.cat(new, dim=-1)


def probe_sequence(steps: int, input_dim: int) -> torch.Tensor:
    """The input sequence the Jacobian's step maps read, ``(steps, input_dim)``: the first
    example of the probe's N(0, 1) inputs at seed 0."""
    from initviz.probe import input_generator  # the probe imports this package

    return torch.randn(steps, input_dim, generator=input_generator(0))


class Recurrent(Architecture):
    """What ``rnn`` and ``lstm`` share; a subclass names its cell."""

    cell: type[nn.Module]
    max_depth = MAX_DEPTH
    entry = "time step"
    output = "hidden state"
    page_values = {"width": 64, "dataset": "digits_rows"}
    code_input = "steps, input_dim"
    jacobian_input = "initial state h_0"
    values_per_step = 2
    """Per step and hidden unit, values autograd keeps (each also held as a gradient), as
    :meth:`units` counts them."""

    def check(self, spec: NetworkSpec) -> None:
        check_one_width_without_lsuv(spec, "every time step: the hidden state keeps its size")
        if spec.norm != "none":
            raise InvalidSpec("norm", spec.norm, "none: a norm layer inside the recurrence "
                              "makes a different cell")

    def input_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        return (spec.depth, spec.input_dim)

    def jacobian_input_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        return (spec.sizes[0],)

    def for_data(self, spec: NetworkSpec, features: int, dataset: str) -> NetworkSpec:
        """T and ``input_dim`` from a sequence data set; InvalidSpec for one of vectors (your
        own CSV is one)."""
        steps = sequence_steps(dataset)
        if steps is None:
            raise InvalidSpec("dataset", dataset, "a sequence data set (digits_rows, "
                              "digits_pixels)", message=(
                                  f"{dataset} is a data set of vectors, not of sequences: "
                                  f"{self.name} ({self.label}) trains on digits_rows or "
                                  "digits_pixels"))
        return replace(spec, sizes=spec.sizes[:1] * steps, input_dim=features // steps)

    def fans(self, spec: NetworkSpec) -> list[tuple[int, int]]:
        return [(spec.sizes[0], spec.sizes[0])] * spec.depth

    def parameter_count(self, spec: NetworkSpec, out_features: int | None) -> int:
        width, gates = spec.sizes[0], self.cell.gates
        head = width * out_features + out_features if out_features else 0
        return gates * width * (width + 1 + spec.input_dim) + head

    def units(self, spec: NetworkSpec) -> int:
        # The inputs of every step beyond the first (estimate_bytes counts one step's).
        return (self.values_per_step * spec.sizes[0] * spec.depth
                + spec.input_dim * (spec.depth - 1))

    def build(self, spec: NetworkSpec, generator: torch.Generator, *,
              out_features: int | None, calibration: torch.Tensor | None) -> RecurrentNet:
        """A :class:`RecurrentNet` initialized by :func:`init_recurrent_`, drawing from
        ``generator``: the scheme per gate block of W, the bias scheme, LeCun normal for U and
        the output Linear's weight."""
        width, act = spec.sizes[0], spec.resolved_activation.module
        cell = self.cell(spec.input_dim, width, act, linear=Linear)
        model = RecurrentNet(cell, spec.depth, act, out_features, linear=Linear)
        scheme, bias, lecun = spec.resolved_scheme, spec.resolved_bias, SCHEMES[INPUT_SCHEME]
        init_recurrent_(
            model,
            lambda m, w: scheme.apply(w, spec.scheme_params, generator, (width, width)),
            lambda m, b: bias.apply(b, spec.bias_params, generator,
                                    (m.in_features, m.out_features)),
            lambda m, w: lecun.apply(w, (), generator),
            self.forget_bias(spec))
        return model

    def forget_bias(self, spec: NetworkSpec) -> float | None:
        """The forget gate's bias at init, None for a cell without one."""
        return None

    def probe_points(self, model: RecurrentNet, spec: NetworkSpec) -> list[ProbePoint]:
        return [ProbePoint(output=output, preact=act, preact_input=True, region=act,
                           weight=model.cell.recurrent)
                for act, output in zip(model.acts, model.outputs)]

    def chain(self, model: RecurrentNet) -> nn.Sequential:
        """The T step maps ``h_{t-1} -> h_t`` on :func:`probe_sequence`."""
        sequence = probe_sequence(len(model.acts), model.cell.input.in_features)
        return nn.Sequential(*[_Step(model, t, x_t) for t, x_t in enumerate(sequence)])

    def code(self, spec: NetworkSpec, seed: int) -> list[str]:
        # codegen imports the probe, which imports this package: imported when first used.
        from initviz.codegen import model_comments, source_of

        scheme, bias = spec.resolved_scheme, spec.resolved_bias
        act = f"nn.{spec.resolved_activation.module.__name__}"
        return [
            *model_comments(spec, f"{self.label} of {spec.sizes[0]} hidden units over "
                            f"{spec.depth} time steps; the scheme initializes the recurrent "
                            "weights W (per gate), LeCun normal the input weights U and the "
                            "output layer"),
            *source_of(*([scheme.own_fn] if scheme.own_fn else []), self.cell, RecurrentNet,
                       init_recurrent_),
            f"input_dim, width, steps = {spec.input_dim}, {spec.sizes[0]}, {spec.depth}",
            f"model = RecurrentNet({self.cell.__name__}(input_dim, width, {act}), steps, {act})",
            f"g = torch.Generator().manual_seed({seed})",
            "",
            "",
            "def init_weight(m, w):",
            f"    {scheme.code(spec.scheme_params, 'w')}",
            "",
            "",
            "def init_bias(m, b):",
            f"    {bias.code(spec.bias_params, 'b')}",
            "",
            "",
            "def init_input(m, w):",
            f"    {SCHEMES[INPUT_SCHEME].code({}, 'w')}",
            "",
            "",
            f"init_recurrent_(model, init_weight, init_bias, init_input, "
            f"{self.forget_bias(spec)!r})",
        ]

    def measure_code(self) -> list[str]:
        return [
            "    for step, h in enumerate(model.hidden_states(x), start=1):",
            "        print(f\"time step {step}: hidden state std "
            "{h.std(correction=0).item():.4g}\")",
        ]


class RNN(Recurrent):
    name = "rnn"
    label = "Elman RNN"
    cell = ElmanCell
    fixed_point = True

    def predict(self, spec, input_second_moment, output_grad_var):
        """The length map over the steps, the input adding ``σ_U²·E[x²]`` (U is LeCun: σ_U² = 1)
        to σ_b² at every step; h_0 = 0 leaves step 1 the input and bias alone."""
        sigmas = layer_sigmas(spec)
        if sigmas is None:
            return None
        sw2, sb2 = sigmas[0]
        width, input_dim = spec.sizes[0], spec.input_dim
        su2 = input_dim * SCHEMES[INPUT_SCHEME].weight_std(input_dim, width, ()) ** 2
        drive = su2 * input_second_moment
        steps = ((su2, sb2),) + ((sw2, sb2 + drive),) * (spec.depth - 1)
        return predict_layers(spec.resolved_activation, steps, input_second_moment,
                              output_grad_var)


class LSTM(Recurrent):
    name = "lstm"
    label = "LSTM"
    cell = LSTMCell
    options = {"forget_bias": Option(0.0, bounds=FORGET_BIAS_BOUNDS, real=True,
                                     meaning="the forget gate's bias at init (0 as PyTorch, 1 "
                                             "as Jozefowicz et al. 2015 recommend)")}
    summary_note = ("an LSTM's gates multiply its signals, which the mean-field length map "
                    "does not model: the profile measures it time step by time step")
    # Per step and unit: both Linears' gate outputs and their sum (4 each), the three sigmoids,
    # the candidate and act(c), c and the products: about 20 values, counted as 10 (each
    # also held as a gradient).
    values_per_step = 10

    def forget_bias(self, spec: NetworkSpec) -> float:
        return spec.option("forget_bias")

    def predict(self, spec, input_second_moment, output_grad_var):
        return None


__all__ = ["ElmanCell", "FORGET_BIAS_BOUNDS", "INPUT_SCHEME", "LSTM", "LSTMCell", "RNN",
           "Recurrent", "RecurrentNet", "init_recurrent_", "probe_sequence"]
