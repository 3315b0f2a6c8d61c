r"""Short training runs: several schemes × seeds on one data set, trained side by side, streamed.

A :class:`TrainSpec` names the network (its hidden stack; the scheme comes from the list of schemes
to compare), the schemes, how many seeds, the data set, the optimizer and the schedule. Every
scheme × seed pair is a *run*: the hidden stack plus one output ``Linear`` (``build_model(...,
out_features=n_classes)``), initialized from the run's seed with its scheme, trained with
cross-entropy. Run ``j`` of every scheme uses the init seed ``seed + j``, so schemes are compared
on the same seeds.

**Same data.** All runs of one call see exactly the same batches in the same order
(:func:`batch_indices`): the batch order is drawn from the base seed alone.

**One batched model.** All runs are trained as one model: their parameters are stacked along a
leading run dimension (``torch.func.stack_module_state``) and the network is called once per step
for all runs: each ``Linear`` is one batched matmul (``torch.baddbmm``), each norm layer one
``torch.func.vmap`` over ``torch.func.functional_call``, each activation one elementwise call. The
loss is the sum of the runs' mean cross-entropies, so each run's gradient is exactly its own; SGD,
momentum and Adam update each entry from its own gradient and state alone, so one optimizer over
the stacked tensors equals one optimizer per run. The result equals training each model alone
(``batched=False``, the reference), up to float rounding.

**What is recorded.** At step 0 and every ``eval_every`` updates (and after the last), each run
yields a :class:`RunRecord`; "step s" means after ``s`` updates.

* ``train_loss``: the mean of the minibatch losses of the updates since the previous record
  (each computed at the parameters before that update); at step 0 the loss of the first batch.
* ``val_loss``, ``val_acc``: on the whole validation split, at the parameters after ``s`` updates
  (batch norm in eval mode, i.e. with its running statistics).
* per layer ``l = 1 … depth + 1`` (the last is the output layer), from update ``s``: ``grad_norm``
  ``‖∂L/∂W_l‖_F`` of the minibatch gradient, and ``update_ratio`` ``‖ΔW_l‖_F / ‖W_l‖_F``, the
  "update:data ratio" (Karpathy, CS231n: around 1e-3 is healthy; much smaller and the layer
  barely learns, much larger and it is being overwritten). NaN at step 0, before any update.

**Divergence.** A run whose minibatch loss is not finite or exceeds :data:`DIVERGENCE_LOSS` is
*diverged* from that step (``diverged_at``). The check runs on the device every step without a host
sync; at the next record the run reports its last ``train_loss`` (which includes the offending
loss), no validation values, and is then removed from the batched model: it is no longer updated
nor computed, and the other runs go on. A stream ends early when every run has diverged.

**Devices.** ``auto`` takes cuda, then mps, then cpu; an unavailable device falls back to cpu with
a notice. Models are initialized on the CPU (the same seed gives the same network on every device)
and moved; everything yielded or returned is on the CPU (plain Python numbers).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from initviz.datasets import MAX_SEED, Dataset, dataset_info, load_dataset
from initviz.devices import DEVICE_CHOICES, resolve_device
from initviz.errors import InvalidSpec
from initviz.network import (LSUV_CALIBRATION_BATCH, NetworkSpec, _check_int, build_model,
                             check_memory, estimate_bytes)
from initviz.schemes import ParamValue, get_scheme

OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9
MAX_STEPS = 5000
MAX_BATCH = 2048
MAX_SEEDS = 10
MAX_RUNS = 64
"""At most this many runs (schemes × seeds) in one call."""
MAX_LR = 10.0
MAX_SCHEMES = 32
DIVERGENCE_LOSS = 1e4
"""A minibatch cross-entropy above this (nats) counts as diverged, like inf/NaN. Chance level is
ln(n_classes) ≤ 2.3; a loss of 1e4 means logit gaps of ~1e4 on average, far past what a few thousand
gradient steps undo, yet a large but sane initialization (losses in the tens to thousands at step 0)
may still train."""
NARROW_LINEAR = 16
"""The batched engine computes a Linear with at most this many outputs as ``W @ hᵀ``: the CPU
matmul kernels are slow when the product has so few columns. Measured on one thread, 24 runs of
batch 256, forward and both gradients: 256 → 10 took 10.1 ms as ``h @ Wᵀ`` against 6.6 ms, 64 → 10
1.9 against 0.6 ms, 256 → 16 6.8 against 5.8 ms; from 24 outputs up neither way was faster."""
BATCH_STREAM = 0x5DEECE66D
"""Mixed into the base seed for the batch order, so it is drawn apart from the init seeds."""

SchemeParams = tuple[tuple[str, ParamValue], ...]
SchemeChoice = tuple[str, SchemeParams]


def _scheme_choice(entry: str | tuple) -> SchemeChoice:
    if isinstance(entry, str):
        name, params = entry, ()
    else:
        try:
            name, params = entry
        except (TypeError, ValueError):
            raise InvalidSpec("schemes", entry, "a scheme name or a (name, params) pair") from None
    if isinstance(params, Mapping):
        params = tuple(params.items())
    return name, get_scheme(name).resolve(params)


def _check_seed(name: str, value: object) -> int:
    return _check_int(name, value, 0, MAX_SEED)


@dataclass(frozen=True)
class TrainSpec:
    """What to train: validated and normalized on construction, hashable afterwards.

    ``network`` gives the hidden stack (sizes, activation, bias, norm); its scheme is replaced by
    the first of ``schemes`` and its ``input_dim`` by the data set's, so that specs that train
    the same thing compare equal. ``schemes`` entries are a name or ``(name, params)`` with params
    a mapping or pairs; they are stored as ``(name, sorted resolved params)``. Limits: at most
    :data:`MAX_SCHEMES` schemes, :data:`MAX_SEEDS` seeds, :data:`MAX_RUNS` runs,
    :data:`MAX_STEPS` steps, batch :data:`MAX_BATCH`, learning rate in (0, :data:`MAX_LR`].
    """

    network: NetworkSpec
    schemes: tuple[SchemeChoice, ...] = (("kaiming_normal", ()), ("xavier_normal", ()))
    seeds: int = 1
    seed: int = 0
    dataset: str = "digits"
    optimizer: str = "sgd"
    lr: float = 0.05
    steps: int = 200
    batch: int = 64
    eval_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.network, NetworkSpec):
            raise InvalidSpec("network", self.network, "a NetworkSpec")
        entries = self.schemes
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or not entries:
            raise InvalidSpec("schemes", entries, "one or more schemes")
        if len(entries) > MAX_SCHEMES:
            raise InvalidSpec("schemes", len(entries), f"at most {MAX_SCHEMES} schemes")
        schemes = tuple(_scheme_choice(entry) for entry in entries)
        if len(set(schemes)) != len(schemes):
            raise InvalidSpec("schemes", [name for name, _ in schemes],
                              "each scheme (with its parameters) listed once")
        set_(self, "schemes", schemes)
        set_(self, "seeds", _check_int("seeds", self.seeds, 1, MAX_SEEDS))
        if len(schemes) * self.seeds > MAX_RUNS:
            raise InvalidSpec("seeds", self.seeds,
                              f"at most {MAX_RUNS} runs (schemes × seeds) in one call")
        set_(self, "seed", _check_seed("seed", self.seed))
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise InvalidSpec("seed", self.seed, f"a whole number in [0, {MAX_SEED - self.seeds + 1}]")
        info = dataset_info(self.dataset)
        first_name, first_params = schemes[0]
        set_(self, "network", replace(self.network, input_dim=info.input_dim, scheme=first_name,
                                      scheme_params=first_params))
        if self.optimizer not in OPTIMIZERS:
            raise InvalidSpec("optimizer", self.optimizer, "one of " + ", ".join(OPTIMIZERS))
        try:
            lr = float(self.lr)
        except (TypeError, ValueError):
            raise InvalidSpec("lr", self.lr, f"a number in (0, {MAX_LR:g}]") from None
        if isinstance(self.lr, bool) or not 0.0 < lr <= MAX_LR:  # NaN fails this too
            raise InvalidSpec("lr", self.lr, f"a number in (0, {MAX_LR:g}]")
        set_(self, "lr", lr)
        set_(self, "steps", _check_int("steps", self.steps, 1, MAX_STEPS))
        set_(self, "batch", _check_int("batch", self.batch, 1, MAX_BATCH))
        if self.network.norm == "batchnorm" and self.batch < 2:  # torch cannot normalize one input
            raise InvalidSpec("batch", self.batch, "at least 2 with batchnorm, which normalizes "
                              "over the batch")
        set_(self, "eval_every", _check_int("eval_every", self.eval_every, 1, self.steps))
        if self.device not in DEVICE_CHOICES:
            raise InvalidSpec("device", self.device, "one of " + ", ".join(DEVICE_CHOICES))

    @property
    def runs(self) -> list[tuple[SchemeChoice, int]]:
        """``(scheme, init seed)`` of every run, scheme by scheme; the run order of all output."""
        return [(scheme, self.seed + j) for scheme in self.schemes for j in range(self.seeds)]

    def run_network(self, scheme: SchemeChoice) -> NetworkSpec:
        name, params = scheme
        return replace(self.network, scheme=name, scheme_params=params)

    @property
    def eval_steps(self) -> list[int]:
        return sorted({*range(0, self.steps, self.eval_every), self.steps})

    def to_dict(self) -> dict:
        return {
            "network": self.network.to_dict(),
            "schemes": [{"name": name, "params": dict(params)} for name, params in self.schemes],
            "seeds": self.seeds, "seed": self.seed, "dataset": self.dataset,
            "optimizer": self.optimizer, "lr": self.lr, "steps": self.steps, "batch": self.batch,
            "eval_every": self.eval_every, "device": self.device,
        }


def scheme_label(name: str, params: SchemeParams) -> str:
    """``name``, with the parameters that differ from the scheme's defaults: ``normal(std=0.01)``."""
    defaults = get_scheme(name).defaults
    changed = [f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
               for key, value in params if defaults.get(key) != value]
    return f"{name}({', '.join(changed)})" if changed else name


# --------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class RunRecord:
    """One run at one evaluation step (see the module docstring for what each number means)."""

    run: int
    scheme: str
    scheme_params: SchemeParams
    seed: int
    step: int
    train_loss: float
    val_loss: float
    val_acc: float
    diverged_at: int | None
    grad_norm: tuple[float, ...]
    update_ratio: tuple[float, ...]

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def label(self) -> str:
        return scheme_label(self.scheme, self.scheme_params)


@dataclass(frozen=True)
class Checkpoint:
    """Everything one evaluation step produced: one record per run still training."""

    step: int
    steps: int
    seconds: float
    records: tuple[RunRecord, ...]


@dataclass(frozen=True)
class RunResult:
    scheme: str
    scheme_params: SchemeParams
    seed: int
    history: tuple[RunRecord, ...]

    @property
    def final(self) -> RunRecord:
        return self.history[-1]

    @property
    def diverged(self) -> bool:
        return self.final.diverged

    @property
    def label(self) -> str:
        return scheme_label(self.scheme, self.scheme_params)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _losses_dict(record: RunRecord) -> dict:
    return {"train_loss": _finite(record.train_loss), "val_loss": _finite(record.val_loss),
            "val_acc": _finite(record.val_acc)}


@dataclass(frozen=True)
class TrainResult:
    """All runs of one call, on the CPU. ``stopped`` says the caller stopped it early."""

    spec: TrainSpec
    device: str
    device_notice: str | None
    seconds: float
    stopped: bool
    runs: tuple[RunResult, ...]

    def to_json_dict(self) -> dict:
        """The ``train --json`` document; values that are not finite become null."""
        return {
            "device": self.device,
            "seconds": self.seconds,
            "runs": [{"scheme": run.scheme, "seed": run.seed, "diverged": run.diverged,
                      "history": [{"step": r.step, **_losses_dict(r)} for r in run.history],
                      "final": _losses_dict(run.final)} for run in self.runs],
        }

    @property
    def records(self) -> list[RunRecord]:
        return [record for run in self.runs for record in run.history]


_HISTORY_COLUMNS = ["run", "scheme", "label", "seed", "step", "train_loss", "val_loss", "val_acc",
                    "diverged"]
_LAYER_COLUMNS = ["run", "scheme", "label", "seed", "step", "layer", "grad_norm", "update_ratio"]


def history_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run and evaluation step: the tidy table the training chart draws."""
    return pd.DataFrame(
        [{"run": r.run, "scheme": r.scheme, "label": r.label, "seed": r.seed, "step": r.step,
          "train_loss": r.train_loss, "val_loss": r.val_loss, "val_acc": r.val_acc,
          "diverged": r.diverged} for r in records], columns=_HISTORY_COLUMNS)


def layer_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run, evaluation step and layer (numbered from 1; the last is the output)."""
    return pd.DataFrame(
        [{"run": r.run, "scheme": r.scheme, "label": r.label, "seed": r.seed, "step": r.step,
          "layer": layer, "grad_norm": g, "update_ratio": u}
         for r in records
         for layer, (g, u) in enumerate(zip(r.grad_norm, r.update_ratio), start=1)],
        columns=_LAYER_COLUMNS)


def update_ratio_steps(layers: pd.DataFrame, count: int = 3) -> pd.DataFrame:
    """The update-to-weight ratio per scheme and layer, mean over seeds, at ``count`` records
    spread evenly over the run so far: the first update, then up to the latest record.

    A ratio read only at the end of a run is small because the loss has settled; read early, it
    says whether each layer learns at all. ``layers``: a :func:`layer_frame`. Returns columns
    ``scheme``, ``step``, ``layer``, ``value`` and ``source`` (``"step N"``), sorted by step; no
    rows before the first update.
    """
    updated = layers[layers["step"] > 0]  # step 0 has had no update: its ratio is NaN
    steps = np.unique(updated["step"])
    picked = steps[np.unique(np.linspace(0, len(steps) - 1, count).round().astype(int))] \
        if len(steps) else steps
    ratio = (updated[updated["step"].isin(picked)]
             .groupby(["step", "scheme", "layer"], as_index=False, sort=True)["update_ratio"]
             .mean().rename(columns={"update_ratio": "value"}))
    return ratio.assign(source="step " + ratio["step"].astype(str))


def final_frame(history: pd.DataFrame) -> pd.DataFrame:
    """One row per scheme of a :func:`history_frame`, from each run's last record: ``val_acc``
    and ``val_loss``, the means over the runs that did not diverge (NaN where every run did),
    ``diverged`` and ``runs``, how many of its runs diverged and how many there were."""
    last = history.sort_values("step", kind="stable").groupby("run").tail(1)
    return last.groupby("scheme", sort=False).agg(
        val_acc=("val_acc", "mean"), val_loss=("val_loss", "mean"),
        diverged=("diverged", "sum"), runs=("run", "size")).reset_index()


# --------------------------------------------------------------------------------------------------
# Data order


def batch_indices(n: int, batch: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """The training batches of one call: ``steps`` CPU index tensors of ``batch`` points each.

    Each epoch is a random permutation of the ``n`` training points, drawn from ``seed``;
    batches are consecutive slices of the epochs laid end to end, so every point is used once per
    epoch and a batch may straddle two epochs (or more, if ``batch > n``).
    """
    generator = torch.Generator().manual_seed(seed ^ BATCH_STREAM)
    pending = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        while len(pending) < batch:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:batch]
        pending = pending[batch:]


# --------------------------------------------------------------------------------------------------
# Engines: the same runs, batched or one model at a time


def _make_optimizer(kind: str, lr: float) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    if kind == "adam":
        return lambda params: torch.optim.Adam(params, lr=lr)
    momentum = MOMENTUM if kind == "momentum" else 0.0
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


def _linear_weight_names(model: nn.Module) -> list[str]:
    return [f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, nn.Linear)]


class _Batched:
    """All runs as one model: parameters stacked on a leading run dimension.

    Every ``Linear`` is one ``torch.baddbmm`` over the runs, its bias added inside the matmul. Its
    weight is stored transposed, ``(runs, in, out)``, because that is the layout in which the
    backward matmul produces the weight gradient: stored as ``(runs, out, in)``, autograd copied
    every gradient into the parameter's layout, a tenth of a step at width 256 (profiled). A
    narrow ``Linear`` (at most :data:`NARROW_LINEAR` outputs: the output layer, one per class) is
    the exception: it is computed the other way round, ``W @ hᵀ``, with ``W`` in torch's own
    ``(runs, out, in)`` layout, and hands on its output as a transposed view.
    Modules with parameters or buffers of their own (the norms) run through ``vmap`` over
    ``functional_call`` with their slice of the stacked state; the activations are elementwise
    and stateless, so they apply to the stacked tensor as they are.
    """

    def __init__(self, models: list[nn.Module], make_optimizer, device: torch.device):
        params, buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        self.weight_names = _linear_weight_names(self.base)
        # build_model nests nn.Sequential only, so its leaves in module order are the forward pass.
        self.layers = [(name, module) for name, module in self.base.named_modules()
                       if not any(module.children())]
        self.narrow = {name for name, module in self.layers
                       if isinstance(module, nn.Linear) and module.out_features <= NARROW_LINEAR}
        transposed = {f"{name}.weight" for name, module in self.layers
                      if isinstance(module, nn.Linear) and name not in self.narrow}
        self.transposed = [name in transposed for name in self.weight_names]
        self.params = {k: (v.transpose(1, 2) if k in transposed else v).detach().contiguous()
                       .to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.stateful = {name: vmap(functools.partial(functional_call, module), in_dims=(0, 0))
                         for name, module in self.layers
                         if not isinstance(module, nn.Linear)
                         and [*module.parameters(), *module.buffers()]}
        self.make_optimizer = make_optimizer
        self.optimizer = make_optimizer(list(self.params.values()))

    def _state(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def logits(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        self.base.train(train)
        runs = len(self.params[self.weight_names[0]])
        hidden = x.expand(runs, *x.shape)
        for name, module in self.layers:
            if isinstance(module, nn.Linear):
                weight, bias = self.params[name + ".weight"], self.params[name + ".bias"]
                if name in self.narrow:
                    hidden = torch.baddbmm(bias.unsqueeze(2), weight, hidden.mT).mT
                else:
                    hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight)
            elif name in self.stateful:
                hidden = self.stateful[name]((self._state(name, self.params),
                                              self._state(name, self.buffers)), (hidden,))
            else:
                hidden = module(hidden)
        return hidden

    def _torch_layout(self, of: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        """``of`` each Linear weight, as ``(runs, out, in)`` views."""
        return [of(self.params[name]).mT if transposed else of(self.params[name])
                for name, transposed in zip(self.weight_names, self.transposed)]

    def weights(self) -> list[torch.Tensor]:
        return self._torch_layout(lambda p: p.detach())

    def weight_grads(self) -> list[torch.Tensor]:
        return self._torch_layout(lambda p: p.grad)

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every run not in ``rows``, with its gradients and optimizer state."""
        old = self.params
        self.params = {k: v.detach()[rows].requires_grad_() for k, v in old.items()}
        for name, param in old.items():
            if param.grad is not None:
                self.params[name].grad = param.grad[rows]
        self.buffers = {k: v[rows] for k, v in self.buffers.items()}
        optimizer = self.make_optimizer(list(self.params.values()))
        for name, param in old.items():
            state = self.optimizer.state.get(param)
            if state:
                # Adam's step count is a shared 0-d tensor; every other state tensor is per run.
                optimizer.state[self.params[name]] = {
                    key: value[rows] if torch.is_tensor(value) and value.dim() > 0 else value
                    for key, value in state.items()}
        self.optimizer = optimizer


class _OneByOne:
    """The reference: every run its own ``nn.Module`` with its own ``torch.optim`` optimizer."""

    def __init__(self, models: list[nn.Module], make_optimizer, device: torch.device):
        self.models = [model.to(device) for model in models]
        self.optimizers = [make_optimizer(list(model.parameters())) for model in self.models]
        self.weight_names = _linear_weight_names(models[0])

    def logits(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        return torch.stack([model.train(train)(x) for model in self.models])

    def _stacked(self, of: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        per_model = [dict(model.named_parameters()) for model in self.models]
        return [torch.stack([of(params[name]) for params in per_model])
                for name in self.weight_names]

    def weights(self) -> list[torch.Tensor]:
        return self._stacked(lambda p: p.detach())

    def weight_grads(self) -> list[torch.Tensor]:
        return self._stacked(lambda p: p.grad)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad()

    def keep(self, rows: torch.Tensor) -> None:
        kept = rows.tolist()
        self.models = [self.models[i] for i in kept]
        self.optimizers = [self.optimizers[i] for i in kept]


def _norms(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Frobenius norm of each run's slice of each tensor: shape (runs, len(tensors))."""
    # over the trailing dimensions in place: flatten would copy the batched engine's transposed views
    return torch.stack([torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())))
                        for t in tensors], dim=1)


def _run_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each run: logits (runs, batch, classes) -> (runs,)."""
    return F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1),
                           reduction="none").mean(dim=1)


# --------------------------------------------------------------------------------------------------
# The stream


class TrainingStream:
    """Iterate to train: yields a :class:`Checkpoint` at every evaluation step.

    Construction validates, checks memory and picks the device (``device`` and ``device_notice``
    are known before the first step); iterating builds the models and trains. Training happens
    only while the caller iterates, so it stops as soon as the caller stops iterating; ``stop``
    (called between steps, e.g. ``threading.Event().is_set``) ends it from elsewhere, after which
    :attr:`stopped` is true. A stream can be iterated once.
    """

    def __init__(self, spec: TrainSpec, *, stop: Callable[[], bool] | None = None,
                 batched: bool = True, memory_budget: int | None = None):
        self.spec = spec
        self.data: Dataset = load_dataset(spec.dataset, spec.seed)
        # Parameter-sized tensors alive at once at the worst moment, an update that is measured:
        # weights, gradients, the optimizer's state and what its step makes in passing (Adam:
        # two moments, and √v and its scaled copy, made a layer at a time on the CPU and for all
        # layers at once by the foreach step on a GPU), the copy of the weights taken before the
        # update, and one layer's change (counted as a whole copy). Before these counted Adam's
        # moments alone, two runs of width 2048 peaked at 1.12 times the estimate (measured).
        # Adam's √v copies count whole on the CPU too: made and freed a tensor at a time, they
        # still raise the process's resident peak (6 runs of 256 × 20 with a layer norm reached
        # 0.998 of an estimate that counted only the largest tensor's, measured).
        optimizer_copies = {"sgd": 0, "momentum": 1, "adam": 4}[spec.optimizer]
        # Activations per unit that autograd keeps for the backward pass: what each layer's
        # Linear, activation and norm save, plus the gradients in flight. Measured (bench_memory):
        # about 1 with ReLU or tanh, 2 with GELU or SELU (they save the Linear's output too), 3
        # with a layer norm. The probe's count of 4 (it also holds every gradient) stays for norms.
        activation_copies = 3 if spec.network.norm == "none" else 4
        needed = estimate_bytes(spec.network, spec.batch, models=len(spec.runs),
                                out_features=self.data.n_classes,
                                parameter_copies=4 + optimizer_copies,
                                activation_copies=activation_copies)
        # Validation runs without autograd: two activations per run alive at a time.
        widest = max(*spec.network.sizes, spec.network.input_dim, self.data.n_classes)
        needed += 4 * len(spec.runs) * len(self.data.y_val) * 2 * widest
        self.needed_bytes = needed
        check_memory("this training run", needed, memory_budget,
                     reduce="width, depth, batch, or the number of schemes and seeds")
        choice = resolve_device(spec.device)
        self.device = choice.name
        self.device_notice = choice.notice
        self._device = choice.device
        self._stop = stop
        self._batched = batched
        self._started = False
        self.stopped = False

    def __iter__(self) -> Iterator[Checkpoint]:
        if self._started:
            raise RuntimeError("a TrainingStream can be iterated only once")
        self._started = True
        with torch.enable_grad():
            yield from self._train()

    def _build_models(self) -> list[nn.Module]:
        spec, data = self.spec, self.data
        calibration = data.x_train[:LSUV_CALIBRATION_BATCH]  # LSUV rescales on real inputs
        return [build_model(spec.run_network(scheme), seed, out_features=data.n_classes,
                            calibration=calibration)
                for scheme, seed in spec.runs]

    def _train(self) -> Iterator[Checkpoint]:
        # torch.optim imports torch._dynamo when the first optimizer is made, seconds on a small
        # machine: pay that before the clock starts, so ``seconds`` is the training's own time.
        import torch._dynamo  # noqa: F401
        spec, dev = self.spec, self._device
        start = time.perf_counter()
        engine_class = _Batched if self._batched else _OneByOne
        engine = engine_class(self._build_models(), _make_optimizer(spec.optimizer, spec.lr), dev)
        x_train, y_train, x_val, y_val = (
            t.to(dev) for t in (self.data.x_train, self.data.y_train, self.data.x_val,
                                self.data.y_val))
        tracker = _Tracker(spec, engine, dev)
        batches = batch_indices(len(y_train), spec.batch, spec.steps, spec.seed)
        for step, index in enumerate(batches):
            if step > 0 and self._stop is not None and self._stop():
                self.stopped = True
                return
            index = index.to(dev, non_blocking=True)
            losses = _run_losses(engine.logits(x_train[index], train=True), y_train[index])
            tracker.observe(step, losses.detach())
            losses.sum().backward()
            if step == 0:
                yield tracker.checkpoint(0, x_val, y_val, start)
                if not tracker.active:
                    return
            recording = (step + 1) in tracker.eval_steps
            if recording:
                tracker.before_update()
            engine.step()
            if recording:
                tracker.after_update()
                yield tracker.checkpoint(step + 1, x_val, y_val, start)
                if not tracker.active:
                    return


class _Tracker:
    """Per-run bookkeeping kept on the device between evaluation steps (no host sync per step)."""

    def __init__(self, spec: TrainSpec, engine, device: torch.device):
        runs = len(spec.runs)
        self.spec = spec
        self.engine = engine
        self.eval_steps = set(spec.eval_steps)
        self.active = list(range(runs))  # run numbers of the engine's rows, in order
        self.alive = torch.ones(runs, dtype=torch.bool, device=device)
        self.diverged_at = torch.full((runs,), -1, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros(runs, device=device)
        self.loss_count = torch.zeros(runs, device=device)
        layers = len(engine.weight_names)
        self.layer_stats = torch.full((runs, 2 * layers), math.nan, device=device)
        self._before: list[torch.Tensor] = []

    def observe(self, step: int, losses: torch.Tensor) -> None:
        """Add one step's minibatch losses; mark the runs whose loss has diverged."""
        bad = ~(losses <= DIVERGENCE_LOSS)  # also true for NaN
        counted = self.alive  # the diverging loss itself is still reported
        self.loss_sum += torch.where(counted, losses, 0.0)
        self.loss_count += counted
        self.diverged_at = torch.where(counted & bad, step, self.diverged_at)
        self.alive = counted & ~bad

    def before_update(self) -> None:
        self._before = [w.clone() for w in self.engine.weights()]
        self._grad_norms = _norms(self.engine.weight_grads())

    def after_update(self) -> None:
        after = self.engine.weights()
        # one layer's change alive at a time, not all of them
        change = _norms(a - b for a, b in zip(after, self._before))
        self.layer_stats = torch.cat([self._grad_norms, change / _norms(self._before)], dim=1)
        self._before = []

    def checkpoint(self, step: int, x_val: torch.Tensor, y_val: torch.Tensor,
                   start: float) -> Checkpoint:
        with torch.no_grad():
            logits = self.engine.logits(x_val, train=False)
            val_loss = _run_losses(logits, y_val)
            val_acc = (logits.argmax(dim=2) == y_val).float().mean(dim=1)
        nan = torch.full_like(val_loss, math.nan)
        columns = torch.stack([
            self.loss_sum / self.loss_count,
            torch.where(self.alive, val_loss, nan),
            torch.where(self.alive, val_acc, nan),
            self.diverged_at.to(val_loss.dtype),
        ], dim=1)
        host = torch.cat([columns, self.layer_stats], dim=1).cpu().tolist()  # the one sync
        layers = len(self.engine.weight_names)
        runs = self.spec.runs
        records = []
        for run, row in zip(self.active, host):
            (name, params), seed = runs[run]
            records.append(RunRecord(
                run=run, scheme=name, scheme_params=params, seed=seed, step=step,
                train_loss=row[0], val_loss=row[1], val_acc=row[2],
                diverged_at=None if row[3] < 0 else int(row[3]),
                grad_norm=tuple(row[4:4 + layers]), update_ratio=tuple(row[4 + layers:])))
        self._drop_diverged([record.diverged for record in records])
        if step > 0:
            # The first batch's loss is also the loss of update 1, which the next record covers.
            self.loss_sum.zero_()
            self.loss_count.zero_()
        return Checkpoint(step=step, steps=self.spec.steps,
                          seconds=time.perf_counter() - start, records=tuple(records))

    def _drop_diverged(self, diverged: list[bool]) -> None:
        if not any(diverged):
            return
        keep = [i for i, gone in enumerate(diverged) if not gone]
        rows = torch.tensor(keep, dtype=torch.int64, device=self.alive.device)
        self.active = [self.active[i] for i in keep]
        if keep:
            self.engine.keep(rows)
        for name in ("alive", "diverged_at", "loss_sum", "loss_count", "layer_stats"):
            setattr(self, name, getattr(self, name)[rows])


def stream(spec: TrainSpec, *, stop: Callable[[], bool] | None = None,
           batched: bool = True, memory_budget: int | None = None) -> TrainingStream:
    """Validate ``spec`` and return the stream that trains it (see :class:`TrainingStream`)."""
    return TrainingStream(spec, stop=stop, batched=batched, memory_budget=memory_budget)


def train(spec: TrainSpec, *, stop: Callable[[], bool] | None = None,
          progress: Callable[[Checkpoint], None] | None = None, batched: bool = True,
          memory_budget: int | None = None) -> TrainResult:
    """Train ``spec`` to the end (or until ``stop()``); ``progress`` sees every checkpoint."""
    runs = stream(spec, stop=stop, batched=batched, memory_budget=memory_budget)
    history: dict[int, list[RunRecord]] = {run: [] for run in range(len(spec.runs))}
    seconds = 0.0
    for checkpoint in runs:
        seconds = checkpoint.seconds
        for record in checkpoint.records:
            history[record.run].append(record)
        if progress is not None:
            progress(checkpoint)
    results = tuple(
        RunResult(scheme=name, scheme_params=params, seed=seed, history=tuple(history[run]))
        for run, ((name, params), seed) in enumerate(spec.runs))
    return TrainResult(spec=spec, device=runs.device, device_notice=runs.device_notice,
                       seconds=seconds, stopped=runs.stopped, runs=results)


__all__ = [
    "Checkpoint", "DIVERGENCE_LOSS", "MAX_BATCH", "MAX_LR", "MAX_RUNS", "MAX_SCHEMES",
    "MAX_SEEDS", "MAX_STEPS", "MOMENTUM", "OPTIMIZERS", "RunRecord", "RunResult", "TrainResult",
    "TrainSpec", "TrainingStream", "batch_indices", "final_frame", "history_frame", "layer_frame",
    "scheme_label", "stream", "train", "update_ratio_steps",
]
