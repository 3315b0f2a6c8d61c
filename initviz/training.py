r"""Short training runs: several schemes × seeds on one data set, trained side by side, streamed.

A :class:`TrainSpec` names the network (its hidden stack; the scheme comes from the list of schemes
to compare), the schemes, how many seeds, the data set, the optimizer and the schedule. Every
scheme × seed pair is a *run*: the hidden stack plus one output ``Linear`` (``build_model(...,
out_features=n_classes)``), initialized from the run's seed with its scheme, trained with
cross-entropy. Run ``j`` of every scheme uses the init seed ``seed + j``, so schemes are compared
on the same seeds.

**Same data.** All runs of one call see exactly the same batches in the same order
(:func:`batch_indices`): the batch order is drawn from the base seed alone.

**Engines and records.** The runs are trained as one batched model (:mod:`initviz.engines`, which
also keeps the per-run bookkeeping and the divergence check); each evaluation step yields one
:class:`~initviz.records.RunRecord` per run still training (:mod:`initviz.records` says what each
number means).

**Devices.** ``auto`` takes cuda, then mps, then cpu; an unavailable device falls back to cpu with
a notice. Models are initialized on the CPU (the same seed gives the same network on every device)
and moved; everything yielded or returned is on the CPU (plain Python numbers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from initviz.csvdata import CsvData
from initviz.datasets import (MAX_SEED, OWN_DATA, Dataset, DatasetInfo, check_scale, dataset_info,
                              load_csv, load_dataset)
from initviz.devices import DEVICE_CHOICES, resolve_device
from initviz.engines import (BatchedEngine, DropoutMasks, OneByOneEngine, Tracker, VmapEngine,
                             run_losses)
from initviz.errors import InvalidSpec, check_int
from initviz.network import (LSUV_CALIBRATION_BATCH, NetworkSpec, build_model, check_memory,
                             estimate_bytes)
from initviz.records import Checkpoint, RunRecord, RunResult, TrainResult
from initviz.variants import entry_text, network_for, parse_entry, resolve_entry
from initviz.scheme_types import ResolvedParams
from initviz.schemes import get_scheme

OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9
MAX_STEPS = 5000
MAX_BATCH = 2048
MAX_SEEDS = 10
MAX_RUNS = 64
"""At most this many runs (schemes × seeds) in one call."""
MAX_LR = 10.0
MAX_SCHEMES = 32
BATCH_STREAM = 0x5DEECE66D
"""Mixed into the base seed for the batch order, so it is drawn apart from the init seeds."""
MAX_DROPOUT = 0.9
OUTPUT_INITS = ("same", "zeros", "scaled")
MAX_OUTPUT_SCALE = 100.0

SchemeChoice = tuple[str, ResolvedParams]


def _entry_parts(entry: str | tuple) -> tuple[str, dict, str, str]:
    """A compared entry, written ``SCHEME(KEY=VALUE,...)`` or given as ``(name, params)`` or
    ``(name, params, text)``: its scheme, its parameters and options, its text as given (without
    spaces) and its label, which is that text where it has parameters of its own and otherwise
    the name with the values that differ from the scheme's defaults (``normal(std=0.1)`` for the
    CLI's ``normal`` with ``--param std=0.1``)."""
    if isinstance(entry, str):
        name, params = parse_entry(entry)
        text = "".join(entry.split())
    else:
        try:
            name, params, *given = entry
            params = dict(params.items() if isinstance(params, Mapping) else params)
            if len(given) > 1 or not all(isinstance(text, str) for text in given):
                raise ValueError
        except (TypeError, ValueError):
            raise InvalidSpec("schemes", entry, "a scheme name, or a (name, params) or "
                                                "(name, params, text) tuple") from None
        text = given[0] if given else ""
    defaults = get_scheme(name).defaults
    label = text if "(" in text else entry_text(
        name, {key: value for key, value in params.items()
               if key not in defaults or defaults[key] != value})
    return name, params, text or label, label


def engine_for(network: NetworkSpec, batched: bool = True) -> type:
    """The engine that trains the runs of ``network``: the hand-batched plain chain where the
    architecture is one, else vmap over the model, except with batch norm (running statistics
    updated in place) or where ``batched`` is False (the reference: one model at a time)."""
    if not batched or network.norm == "batchnorm" and not network.architecture.batched_training:
        return OneByOneEngine
    return BatchedEngine if network.architecture.batched_training else VmapEngine


@dataclass(frozen=True)
class TrainSpec:
    """What to train: validated and normalized on construction, hashable afterwards.

    ``network`` gives the hidden stack (sizes, activation, bias, norm); its scheme is replaced by
    the first of ``schemes`` and its ``input_dim`` by the data set's, so that specs that train
    the same thing compare equal. ``schemes`` entries are a name, a variant
    ``SCHEME(KEY=VALUE,...)`` (:mod:`initviz.variants`), or ``(name, params)`` with params a
    mapping or pairs, optionally with the text it was given as (a third item); they are stored
    as ``(name, resolved params and options)``, their texts and labels in :attr:`texts` and
    :attr:`labels`. Limits: at most
    :data:`MAX_SCHEMES` schemes, :data:`MAX_SEEDS` seeds, :data:`MAX_RUNS` runs,
    :data:`MAX_STEPS` steps, batch :data:`MAX_BATCH`, learning rate in (0, :data:`MAX_LR`].

    Args:
        network: the hidden stack.
        schemes: the schemes to compare.
        seeds: runs per scheme; run ``j`` is initialized from ``seed + j``.
        seed: the base seed (also of the data set and the batch order).
        dataset: a name of :data:`initviz.datasets.DATASETS`.
        optimizer: one of :data:`OPTIMIZERS`.
        lr: the learning rate.
        steps: optimizer steps of each run.
        batch: training examples per step.
        eval_every: steps between records.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        input_scale: how the data set's features are scaled, one of
            :data:`initviz.datasets.INPUT_SCALES` (``standardized`` or raw ``unit`` [0, 1]).
        dropout: the share of each hidden layer's outputs zeroed at every training step
            (inverted dropout: the kept ones are scaled by 1/(1 − rate); off for validation), in
            [0, :data:`MAX_DROPOUT`]; ``mlp`` only.
        output_init: the output layer's initialization, one of :data:`OUTPUT_INITS`: ``same``
            (the run's scheme, like the hidden layers), ``zeros`` (weight and bias 0: every
            class equally likely at step 0) or ``scaled`` (the run's scheme, weight times
            ``output_scale``, e.g. 0.01 for a near-uniform first prediction).
        output_scale: the factor of ``scaled``, in (0, :data:`MAX_OUTPUT_SCALE`]; normalized to
            1.0 for the other two, so that equal runs compare equal.
        data: your own data (:func:`initviz.csvdata.read_csv`) instead of ``dataset``, which
            becomes ``"csv"``; the spec compares and hashes by the file's content hash and label
            column, so the training cache keys by them.

    Raises:
        InvalidSpec: a field out of range or unknown, with a sentence that says which.

    Example::

        >>> spec = TrainSpec(NetworkSpec.stack(32, 4), schemes=("kaiming_normal", "zeros"),
        ...                  dataset="moons", steps=50)
        >>> len(spec.runs), spec.network.input_dim
        (2, 2)
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
    input_scale: str = "standardized"
    dropout: float = 0.0
    output_init: str = "same"
    output_scale: float = 1.0
    data: CsvData | None = None
    texts: tuple[str, ...] = field(default=(), init=False, compare=False)
    """Each entry of ``schemes`` as it was given (two spellings of one entry train the same, so
    they compare equal): ``runs[].scheme`` in ``train --json``."""
    labels: tuple[str, ...] = field(default=(), init=False, compare=False)
    """Each entry's label in legends and tables (see :func:`_entry_parts`)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.network, NetworkSpec):
            raise InvalidSpec("network", self.network, "a NetworkSpec")
        entries = self.schemes
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or not entries:
            raise InvalidSpec("schemes", entries, "one or more schemes")
        if len(entries) > MAX_SCHEMES:
            raise InvalidSpec("schemes", len(entries), f"at most {MAX_SCHEMES} schemes")
        parts = [_entry_parts(entry) for entry in entries]
        schemes = tuple((name, resolve_entry(name, given, self.network))
                        for name, given, _, _ in parts)
        set_(self, "texts", tuple(text for _, _, text, _ in parts))
        set_(self, "labels", tuple(label for _, _, _, label in parts))
        if len(set(schemes)) != len(schemes):
            raise InvalidSpec("schemes", [name for name, _ in schemes],
                              "each scheme (with its parameters) listed once")
        set_(self, "schemes", schemes)
        set_(self, "seeds", check_int("seeds", self.seeds, 1, MAX_SEEDS))
        if len(schemes) * self.seeds > MAX_RUNS:
            raise InvalidSpec("seeds", self.seeds,
                              f"at most {MAX_RUNS} runs (schemes × seeds) in one call")
        set_(self, "seed", check_int("seed", self.seed, 0, MAX_SEED))
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise InvalidSpec("seed", self.seed,
                              f"a whole number in [0, {MAX_SEED - self.seeds + 1}]")
        if self.data is not None:
            if not isinstance(self.data, CsvData):
                raise InvalidSpec("data", type(self.data).__name__, "a CsvData (read_csv)")
            set_(self, "dataset", OWN_DATA)
        info = self.data_info
        first_name, first_params = schemes[0]
        network = network_for(self.network, first_name, first_params)
        set_(self, "network", network.architecture.for_data(network, info.input_dim,
                                                            self.dataset))
        if self.optimizer not in OPTIMIZERS:
            raise InvalidSpec("optimizer", self.optimizer, "one of " + ", ".join(OPTIMIZERS))
        set_(self, "lr", _check_number("lr", self.lr, 0.0, MAX_LR, low_open=True))
        set_(self, "steps", check_int("steps", self.steps, 1, MAX_STEPS))
        set_(self, "batch", check_int("batch", self.batch, 1, MAX_BATCH))
        if self.network.norm == "batchnorm" and self.batch < 2:  # torch cannot normalize one input
            raise InvalidSpec("batch", self.batch, "at least 2 with batchnorm, which normalizes "
                              "over the batch")
        set_(self, "eval_every", check_int("eval_every", self.eval_every, 1, self.steps))
        if self.device not in DEVICE_CHOICES:
            raise InvalidSpec("device", self.device, "one of " + ", ".join(DEVICE_CHOICES))
        set_(self, "input_scale", check_scale(self.input_scale))
        set_(self, "dropout", _check_number("dropout", self.dropout, 0.0, MAX_DROPOUT))
        if self.dropout and self.network.arch != "mlp":
            raise InvalidSpec("dropout", self.dropout,
                              "0 for this architecture: dropout acts on the mlp's hidden layers")
        if self.output_init not in OUTPUT_INITS:
            raise InvalidSpec("output_init", self.output_init,
                              "one of " + ", ".join(OUTPUT_INITS))
        scale = _check_number("output_scale", self.output_scale, 0.0, MAX_OUTPUT_SCALE,
                              low_open=True)
        set_(self, "output_scale", scale if self.output_init == "scaled" else 1.0)

    @property
    def data_info(self) -> DatasetInfo:
        """What is known of the data set without drawing it (for your CSV, from the file)."""
        if self.data is None:
            return dataset_info(self.dataset)
        return DatasetInfo(OWN_DATA, self.data.description, self.data.x.shape[1],
                           len(self.data.classes), draw=None)

    def load_data(self) -> Dataset:
        """The data set this spec trains on, scaled as it says (cached)."""
        if self.data is not None:
            return load_csv(self.data, self.seed, self.input_scale)
        return load_dataset(self.dataset, self.seed, self.input_scale)

    @property
    def runs(self) -> list[tuple[SchemeChoice, int]]:
        """``(scheme, init seed)`` of every run, scheme by scheme; the run order of all output."""
        return [(scheme, self.seed + j) for scheme in self.schemes for j in range(self.seeds)]

    def run_network(self, scheme: SchemeChoice) -> NetworkSpec:
        """The network an entry trains: its scheme and the architecture options it sets."""
        return network_for(self.network, *scheme)

    def label(self, scheme: SchemeChoice) -> str:
        """The entry's label in legends and tables (``uniform(a=0,b=1)``)."""
        return self.labels[self.schemes.index(scheme)]

    def text(self, scheme: SchemeChoice) -> str:
        """The entry as it was given."""
        return self.texts[self.schemes.index(scheme)]

    @property
    def eval_steps(self) -> list[int]:
        return sorted({*range(0, self.steps, self.eval_every), self.steps})


def _check_number(name: str, value, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a float in [low, high] ((low, high] with ``low_open``), or InvalidSpec."""
    expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidSpec(name, value, expected) from None
    inside = low < number <= high if low_open else low <= number <= high  # NaN fails both
    if isinstance(value, bool) or not inside:
        raise InvalidSpec(name, value, expected)
    return number


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


_HIDDEN_COLUMNS = ["run", "scheme", "label", "seed", "step", "layer", "act_std", "saturated",
                   "grad_std"]


def hidden_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run, evaluation step and hidden layer (from 1): the activation std, the
    saturated share and the gradient std recorded there (:mod:`initviz.records`)."""
    return pd.DataFrame(
        [{"run": r.run, "scheme": r.scheme, "label": r.label, "seed": r.seed, "step": r.step,
          "layer": layer, "act_std": a, "saturated": s, "grad_std": g}
         for r in records
         for layer, (a, s, g) in enumerate(zip(r.act_std, r.saturated, r.grad_std), start=1)],
        columns=_HIDDEN_COLUMNS)


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
    ``diverged`` and ``runs``, how many of its runs diverged and how many there were; and
    ``initial_loss``, the mean validation loss at step 0 (at the initial weights: ln C for a
    uniform prediction over C classes)."""
    ordered = history.sort_values("step", kind="stable")
    last = ordered.groupby("run").tail(1)
    first = ordered[ordered["step"] == 0].groupby("scheme", sort=False)["val_loss"].mean()
    final = last.groupby("scheme", sort=False).agg(
        val_acc=("val_acc", "mean"), val_loss=("val_loss", "mean"),
        diverged=("diverged", "sum"), runs=("run", "size")).reset_index()
    return final.assign(initial_loss=final["scheme"].map(first))


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


def make_optimizer(kind: str, lr: float) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """The optimizer ``kind`` (one of :data:`OPTIMIZERS`) as a factory over a parameter list."""
    if kind == "adam":
        return lambda params: torch.optim.Adam(params, lr=lr)
    momentum = MOMENTUM if kind == "momentum" else 0.0
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


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
        self.data: Dataset = spec.load_data()
        # Parameter-sized tensors alive at once at the worst moment, an update that is measured:
        # weights, gradients, the optimizer's state and what its step makes in passing (Adam:
        # two moments, and √v and its scaled copy, counted whole on every device since even made
        # and freed a tensor at a time they raise the resident peak), the copy of the weights
        # taken before the update, and one layer's change (counted as a whole copy).
        optimizer_copies = {"sgd": 0, "momentum": 1, "adam": 4}[spec.optimizer]
        # Activations per unit that autograd keeps for the backward pass: what each layer's
        # Linear, activation and norm save, plus the gradients in flight (at most 3 without a
        # norm; the probe's 4, which also holds every gradient, with one). The figures behind
        # both counts: benchmarks/README.md, "Training memory".
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
        network = spec.network
        calibration = (data.x_train[:LSUV_CALIBRATION_BATCH]  # LSUV rescales on real inputs
                       .view(-1, *network.architecture.input_shape(network)))
        models = [build_model(spec.run_network(scheme), seed, out_features=data.n_classes,
                              calibration=calibration)
                  for scheme, seed in spec.runs]
        for model in models:
            init_output(model, spec.output_init, spec.output_scale)
        return models

    def _train(self) -> Iterator[Checkpoint]:
        # torch.optim imports torch._dynamo when the first optimizer is made, seconds on a small
        # machine: pay that before the clock starts, so ``seconds`` is the training's own time.
        import torch._dynamo  # noqa: F401
        spec, dev = self.spec, self._device
        start = time.perf_counter()
        engine_class = engine_for(spec.network, self._batched)
        engine = engine_class(self._build_models(), make_optimizer(spec.optimizer, spec.lr), dev)
        shape = spec.network.architecture.input_shape(spec.network)
        x_train, x_val = (x.view(len(x), *shape).to(dev)
                          for x in (self.data.x_train, self.data.x_val))
        y_train, y_val = self.data.y_train.to(dev), self.data.y_val.to(dev)
        tracker = Tracker(spec, engine, dev)
        dropout = (DropoutMasks(spec.dropout, spec.network.sizes, spec.seeds, spec.seed, dev)
                   if spec.dropout else None)
        batches = batch_indices(len(y_train), spec.batch, spec.steps, spec.seed)
        for step, index in enumerate(batches):
            if step > 0 and self._stop is not None and self._stop():
                self.stopped = True
                return
            index = index.to(dev, non_blocking=True)
            recording = (step + 1) in tracker.eval_steps
            masks = None if dropout is None else dropout.draw(len(index), tracker.seed_rows)
            losses = run_losses(engine.logits(x_train[index], train=True, masks=masks,
                                              keep=step == 0 or recording), y_train[index])
            tracker.observe(step, losses.detach())
            losses.sum().backward()
            if step == 0 or recording:
                tracker.measure_hidden()
            if step == 0:
                yield tracker.checkpoint(0, x_val, y_val, start)
                if not tracker.active:
                    return
            if recording:
                tracker.before_update()
            engine.step()
            if recording:
                tracker.after_update()
                yield tracker.checkpoint(step + 1, x_val, y_val, start)
                if not tracker.active:
                    return


def init_output(model: nn.Module, kind: str, scale: float) -> None:
    """Re-initialize the output layer (the model's last ``Linear``) as :class:`TrainSpec`'s
    ``output_init`` says: ``same`` leaves it, ``zeros`` sets its weight and bias to 0 (every
    logit 0, so the first prediction is uniform and the initial loss is exactly ln C), ``scaled``
    multiplies its weight by ``scale`` (a small scale makes the first prediction near uniform
    whatever the hidden layers do; Karpathy's "last layer × 0.01").
    """
    if kind == "same":
        return
    head = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
    with torch.no_grad():
        if kind == "zeros":
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
        else:
            head.weight.mul_(scale)


def stream(spec: TrainSpec, *, stop: Callable[[], bool] | None = None,
           batched: bool = True, memory_budget: int | None = None) -> TrainingStream:
    """Validate ``spec`` and return the stream that trains it (see :class:`TrainingStream`).

    Args:
        spec: what to train.
        stop: called between steps; training ends once it returns True.
        batched: train the runs as one batched model (False: one model at a time, the
            reference).
        memory_budget: bytes training may take (default :func:`initviz.network.memory_budget`).

    Returns:
        A :class:`TrainingStream`; iterating it trains and yields a :class:`Checkpoint` at
        every evaluation step.

    Example::

        >>> for checkpoint in stream(TrainSpec(NetworkSpec.stack(32, 4), dataset="moons")):
        ...     print(checkpoint.step, [round(r.val_acc, 2) for r in checkpoint.records])
    """
    return TrainingStream(spec, stop=stop, batched=batched, memory_budget=memory_budget)


def train(spec: TrainSpec, *, stop: Callable[[], bool] | None = None,
          progress: Callable[[Checkpoint], None] | None = None, batched: bool = True,
          memory_budget: int | None = None) -> TrainResult:
    """Train ``spec`` to the end (or until ``stop()``).

    Args:
        spec, stop, batched, memory_budget: as for :func:`stream`.
        progress: called with every :class:`Checkpoint` as it is made.

    Returns:
        A :class:`TrainResult`: every run's history, on the CPU.

    Example::

        >>> result = train(TrainSpec(NetworkSpec.stack(32, 4), dataset="moons", steps=50))
        >>> [(run.label, run.final.step) for run in result.runs]
        [('kaiming_normal', 50), ('xavier_normal', 50)]
    """
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
        RunResult(scheme=name, scheme_params=params, seed=seed, history=tuple(history[run]),
                  entry=spec.label((name, params)))
        for run, ((name, params), seed) in enumerate(spec.runs))
    return TrainResult(spec=spec, device=runs.device, device_notice=runs.device_notice,
                       seconds=seconds, stopped=runs.stopped, runs=results)

__all__ = [
    "BATCH_STREAM", "MAX_BATCH", "MAX_DROPOUT", "MAX_LR", "MAX_OUTPUT_SCALE", "MAX_RUNS",
    "MAX_SCHEMES", "MAX_SEEDS", "MAX_STEPS", "MOMENTUM", "OPTIMIZERS", "OUTPUT_INITS",
    "SchemeChoice", "TrainSpec", "TrainingStream", "batch_indices", "engine_for", "final_frame",
    "hidden_frame", "history_frame", "init_output", "layer_frame", "make_optimizer", "stream",
    "train", "update_ratio_steps",
]
