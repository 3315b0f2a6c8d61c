r"""The engines that train the runs of one call, and the bookkeeping between evaluation steps.

**One batched model.** All runs are trained as one model: their parameters are stacked along a
leading run dimension (``torch.func.stack_module_state``) and the network is called once per step
for all runs: each ``Linear`` is one batched matmul (``torch.baddbmm``), each norm layer one
``torch.func.vmap`` over ``torch.func.functional_call``, each activation one elementwise call. The
loss is the sum of the runs' mean cross-entropies, so each run's gradient is exactly its own; SGD,
momentum and Adam update each entry from its own gradient and state alone, so one optimizer over
the stacked tensors equals one optimizer per run. The result equals training each model alone
(``batched=False``, the reference), up to float rounding.

**Any other architecture** (a residual block, attention, a convolution, a recurrent loop) is
trained by :class:`VmapEngine`: ``torch.func.vmap`` over ``functional_call`` of one model, one call
per group of runs that share a layout. With batch norm, or when asked for the reference, every run
is its own ``nn.Module`` (:class:`OneByOneEngine`).

**Divergence.** A run whose minibatch loss is not finite or exceeds :data:`DIVERGENCE_LOSS` is
*diverged* from that step (``diverged_at``). The check runs on the device every step without a host
sync; at the next record the run reports its last ``train_loss`` (which includes the offending
loss), no validation values, and is then removed from the batched model: it is no longer updated
nor computed, and the other runs go on. A stream ends early when every run has diverged.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from initviz.records import Checkpoint, RunRecord

if TYPE_CHECKING:
    from initviz.training import TrainSpec

DIVERGENCE_LOSS = 1e6
"""A minibatch cross-entropy above this (nats) counts as diverged, like inf/NaN. Chance level is
ln(n_classes) ≤ 2.3. A large but sane initialization may still train from far above it: the
tutorial table's U(0, 1) weights (64-256-128-10 ReLU on digits in [0, 1]) start at losses of 5.7e3
to 1.03e4 (seeds 0-4) and, under Adam at lr 0.001, leave chance after about 300 steps; a loss of
1e6 (logit gaps of ~1e6) is past what a few thousand steps undo."""
DROPOUT_STREAM = 0x2545F4914F6CDD1D
"""Mixed into each seed for the dropout masks, so they are drawn apart from the init and batches."""
NARROW_LINEAR = 16
"""The batched engine computes a Linear with at most this many outputs as ``W @ hᵀ``: the CPU
matmul kernels are slow when the product has so few columns (benchmarks/README.md)."""


def _linear_weight_names(model: nn.Module) -> list[str]:
    """The weights whose gradient and update each record reports per layer, in order: every
    Linear's and every Conv2d's (a conv stack's layers, then its output Linear)."""
    return [f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))]


class _StackedRuns:
    """Every run's parameters stacked on a leading run dimension (``params``, ``buffers``), one
    optimizer over the stacked tensors."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]

    def _stack(self, params: dict, buffers: dict, make_optimizer, device: torch.device,
               transposed: frozenset[str] = frozenset()) -> None:
        self.params = {k: (v.transpose(1, 2) if k in transposed else v).detach().contiguous()
                       .to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.make_optimizer = make_optimizer
        self.optimizer = make_optimizer(list(self.params.values()))

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


class BatchedEngine(_StackedRuns):
    """All runs as one model: parameters stacked on a leading run dimension.

    Every ``Linear`` is one ``torch.baddbmm`` over the runs, its bias added inside the matmul. Its
    weight is stored transposed, ``(runs, in, out)``, because that is the layout in which the
    backward matmul produces the weight gradient: stored as ``(runs, out, in)``, autograd copied
    every gradient into the parameter's layout (benchmarks/README.md, "Training"). A
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
        transposed = frozenset(f"{name}.weight" for name, module in self.layers
                               if isinstance(module, nn.Linear) and name not in self.narrow)
        self.transposed = [name in transposed for name in self.weight_names]
        self._stack(params, buffers, make_optimizer, device, transposed)
        self.stateful = {name: vmap(functools.partial(functional_call, module), in_dims=(0, 0))
                         for name, module in self.layers
                         if not isinstance(module, nn.Linear)
                         and [*module.parameters(), *module.buffers()]}

    def _state(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def logits(self, x: torch.Tensor, train: bool, masks: list[torch.Tensor] | None = None,
               keep: bool = False) -> torch.Tensor:
        """Every run's output for the same inputs: x (batch, in) -> (runs, batch, classes).

        ``masks``: one dropout mask per Linear after the first, (runs, batch, in) each, that
        multiplies the Linear's input. ``keep``: keep each hidden activation's output in
        :attr:`kept`, with its gradient once the loss is backpropagated.
        """
        self.base.train(train)
        runs = len(self.params[self.weight_names[0]])
        hidden = x.expand(runs, *x.shape)  # (runs, batch, in), a view: no copy per run
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        linears = 0
        for name, module in self.layers:
            if isinstance(module, nn.Linear):
                if masks is not None and linears:
                    hidden = hidden * masks[linears - 1]
                linears += 1
                weight, bias = self.params[name + ".weight"], self.params[name + ".bias"]
                if name in self.narrow:
                    # weight (runs, out, in) @ hidden.mT (runs, in, batch) + bias (runs, out, 1)
                    # = (runs, out, batch), handed on as its (runs, batch, out) view
                    hidden = torch.baddbmm(bias.unsqueeze(2), weight, hidden.mT).mT
                else:
                    # hidden (runs, batch, in) @ weight (runs, in, out) + bias (runs, 1, out)
                    hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight)
            elif name in self.stateful:
                hidden = self.stateful[name]((self._state(name, self.params),
                                              self._state(name, self.buffers)), (hidden,))
            else:
                preact, hidden = hidden, module(hidden)
                if keep:
                    _keep(self.kept, preact, hidden)
        return hidden

    def take_kept(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each kept hidden layer's ``(pre-activation, output, gradient of the output)``, every
        one (runs, batch, units), after the backward pass of a ``keep`` forward; forgets them."""
        kept, self.kept = self.kept, []
        return [(preact, output.detach(), output.grad) for preact, output in kept]

    def _torch_layout(self, of: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        """``of`` each Linear weight, as ``(runs, out, in)`` views."""
        return [of(self.params[name]).mT if transposed else of(self.params[name])
                for name, transposed in zip(self.weight_names, self.transposed)]

    def weights(self) -> list[torch.Tensor]:
        return self._torch_layout(lambda p: p.detach())

    def weight_grads(self) -> list[torch.Tensor]:
        return self._torch_layout(lambda p: p.grad)


class _VmapGroup(_StackedRuns):
    """Runs whose models have the same parameters and buffers, called as one: ``vmap`` over
    ``functional_call`` of one model with each run's slice of the stacked state."""

    def __init__(self, models: list[nn.Module], make_optimizer, device: torch.device):
        params, buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        self.weight_names = _linear_weight_names(self.base)
        self._stack(params, buffers, make_optimizer, device)
        self._call = vmap(self._one, in_dims=(0, 0, None), randomness="different")

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def logits(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        self.base.train(train)
        return self._call(self.params, self.buffers, x)


def _layout(model: nn.Module) -> tuple:
    """What two models must share to be stacked: every parameter's and buffer's name and shape."""
    return tuple((name, tuple(t.shape)) for name, t in
                 [*model.named_parameters(), *model.named_buffers()])


class VmapEngine:
    """Any architecture's runs, each group of runs with the same layout as one call.

    Where :class:`BatchedEngine` writes the plain chain's matmuls out by hand, this one lets
    ``torch.func.vmap`` batch whatever the model does (a residual block, attention, a convolution,
    a recurrent loop), so a group of runs of a deep network costs one forward and backward pass
    per step, not one per run. Consecutive runs whose models have the same parameters form a
    group (the seeds of one entry always do; a Fixup net and a plain one do not); the groups'
    outputs are joined in run order. Each run's loss gradient is its own, so the result equals
    training the models one by one up to float rounding. Not for batch norm, whose running
    statistics are updated in place.
    """

    def __init__(self, models: list[nn.Module], make_optimizer, device: torch.device):
        blocks: list[list[nn.Module]] = []
        for model in models:
            if blocks and _layout(blocks[-1][0]) == _layout(model):
                blocks[-1].append(model)
            else:
                blocks.append([model])
        self.groups = [_VmapGroup(block, make_optimizer, device) for block in blocks]
        self.sizes = [len(block) for block in blocks]
        self.weight_names = self.groups[0].weight_names

    def logits(self, x: torch.Tensor, train: bool, masks: list[torch.Tensor] | None = None,
               keep: bool = False) -> torch.Tensor:
        """Every run's output for the same inputs: x (batch, ...) -> (runs, batch, classes).

        Dropout (``masks``) and the per-layer statistics during training (``keep``) are the
        plain stack's: TrainSpec refuses dropout here, and nothing is kept.
        """
        assert masks is None, "TrainSpec refuses dropout for architectures other than mlp"
        return torch.cat([group.logits(x, train) for group in self.groups])

    def take_kept(self) -> list:
        """Nothing: the hidden layers' statistics during training are the plain stack's."""
        return []

    def _joined(self, of: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat([of(group.params[name]) for group in self.groups])
                for name in self.weight_names]

    def weights(self) -> list[torch.Tensor]:
        return self._joined(lambda p: p.detach())

    def weight_grads(self) -> list[torch.Tensor]:
        return self._joined(lambda p: p.grad)

    def step(self) -> None:
        for group in self.groups:
            group.step()

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every run not in ``rows`` (ascending), group by group."""
        kept, start, groups, sizes = rows.tolist(), 0, [], []
        for group, size in zip(self.groups, self.sizes):
            local = [row - start for row in kept if start <= row < start + size]
            start += size
            if local:
                group.keep(torch.tensor(local, device=rows.device))
                groups.append(group)
                sizes.append(len(local))
        self.groups, self.sizes = groups, sizes


class OneByOneEngine:
    """The reference: every run its own ``nn.Module`` with its own ``torch.optim`` optimizer.

    Dropout masks and kept activations go through hooks: a forward pre-hook on every Linear after
    the first multiplies its input by the run's mask, a forward hook on every hidden activation
    (``act`` of the plain stack's blocks) keeps its output.
    """

    def __init__(self, models: list[nn.Module], make_optimizer, device: torch.device):
        self.models = [model.to(device) for model in models]
        self.optimizers = [make_optimizer(list(model.parameters())) for model in self.models]
        self.weight_names = _linear_weight_names(models[0])
        self._masks: list[torch.Tensor] | None = None
        self._keep = False
        self._run = 0
        self._kept_runs: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for model in self.models:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            for number, linear in enumerate(linears[1:]):
                linear.register_forward_pre_hook(functools.partial(self._mask, number=number))
            for name, module in model.named_modules():
                if name.endswith(".act") or name == "act":
                    module.register_forward_hook(self._kept)

    def _mask(self, module: nn.Module, inputs: tuple, number: int):
        if self._masks is not None:
            return (inputs[0] * self._masks[number][self._run],)
        return None

    def _kept(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self._keep:
            _keep(self._kept_runs[self._run], inputs[0], output)

    def logits(self, x: torch.Tensor, train: bool, masks: list[torch.Tensor] | None = None,
               keep: bool = False) -> torch.Tensor:
        """x (batch, in) -> (runs, batch, classes), as :meth:`BatchedEngine.logits`."""
        self._masks, self._keep = masks, keep
        self._kept_runs = [[] for _ in self.models]
        outputs = []
        for run, model in enumerate(self.models):
            self._run = run
            outputs.append(model.train(train)(x))
        self._masks, self._keep = None, False
        return torch.stack(outputs)

    def take_kept(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """As :meth:`BatchedEngine.take_kept`: every run's tensors stacked."""
        kept, self._kept_runs = self._kept_runs, []
        return [tuple(torch.stack(parts) for parts in zip(
                    *((preact, output.detach(), output.grad) for preact, output in layer)))
                for layer in zip(*kept)]

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


class DropoutMasks:
    """Inverted-dropout masks for every Linear after the first, drawn on the device.

    Each seed index ``j`` has its own generator, seeded from the base seed plus ``j`` mixed with
    :data:`DROPOUT_STREAM`, and every run of seed ``j`` (whatever its scheme) gets the same masks:
    schemes are compared under the same dropout noise, as they are on the same batches, and a
    run's masks do not depend on which other runs train beside it or diverge. Both engines take
    the same mask tensors, so the batched model still equals one model at a time.
    """

    def __init__(self, rate: float, sizes: tuple[int, ...], seeds: int, seed: int,
                 device: torch.device):
        self.rate, self.sizes, self.device = rate, sizes, device
        self.generators = [torch.Generator(device=device).manual_seed((seed + j) ^ DROPOUT_STREAM)
                           for j in range(seeds)]

    def draw(self, batch: int, rows: torch.Tensor) -> list[torch.Tensor]:
        """One step's masks, (len(rows), batch, size) each: 0 or 1 / (1 − rate); ``rows``: the
        seed index of each run being trained."""
        masks = []
        for size in self.sizes:
            uniform = torch.stack([torch.rand(batch, size, generator=g, device=self.device)
                                   for g in self.generators])
            masks.append(((uniform >= self.rate) / (1.0 - self.rate))[rows])
        return masks


def _keep(kept: list, preact: torch.Tensor, output: torch.Tensor) -> None:
    """Keep a hidden activation's input and output, the output with its gradient once
    backpropagated."""
    output.retain_grad()
    kept.append((preact.detach(), output))


def _norms(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Frobenius norm of each run's slice of each tensor: shape (runs, len(tensors))."""
    # over the trailing dimensions in place: flatten would copy the batched engine's transposed
    # views
    return torch.stack([torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())))
                        for t in tensors], dim=1)


def _saturated_share(preact: torch.Tensor, outside: tuple[float, float] | None) -> torch.Tensor:
    """Per run, the share of ``preact`` (runs, ...) outside ``outside``; NaN for None."""
    runs = len(preact)
    if outside is None:
        return torch.full((runs,), math.nan, device=preact.device)
    low, high = outside
    flat = preact.reshape(runs, -1)
    return ((flat < low) | (flat > high)).float().mean(dim=1)  # an infinite end never counts


def run_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each run: logits (runs, batch, classes) -> (runs,)."""
    return F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1),
                           reduction="none").mean(dim=1)


# --------------------------------------------------------------------------------------------------
# Bookkeeping between evaluation steps


class Tracker:
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
        self.hidden_stats = torch.full((runs, 0), math.nan, device=device)
        self._before: list[torch.Tensor] = []
        # the seed index of each engine row: the dropout masks are drawn per seed
        self.seed_rows = torch.arange(runs, device=device) % spec.seeds
        self.saturated_outside = spec.network.resolved_activation.saturated_outside

    def observe(self, step: int, losses: torch.Tensor) -> None:
        """Add one step's minibatch losses; mark the runs whose loss has diverged."""
        bad = ~(losses <= DIVERGENCE_LOSS)  # also true for NaN
        counted = self.alive  # the diverging loss itself is still reported
        self.loss_sum += torch.where(counted, losses, 0.0)
        self.loss_count += counted
        self.diverged_at = torch.where(counted & bad, step, self.diverged_at)
        self.alive = counted & ~bad

    def measure_hidden(self) -> None:
        """Per hidden layer and run, from the kept forward and backward pass just made: the std
        of the activation's output, the share of units in its saturated region (as the probe
        counts it: the pre-activation outside ``saturated_outside``; NaN where the activation
        has none) and the std of the loss's gradient with respect to the output."""
        columns = {"act": [], "saturated": [], "grad": []}
        for preact, output, grad in self.engine.take_kept():
            runs = len(output)
            columns["act"].append(output.reshape(runs, -1).std(dim=1, correction=0))
            columns["grad"].append(grad.reshape(runs, -1).std(dim=1, correction=0))
            columns["saturated"].append(_saturated_share(preact, self.saturated_outside))
        if columns["act"]:  # none for architectures other than the plain stack
            self.hidden_stats = torch.stack([*columns["act"], *columns["saturated"],
                                             *columns["grad"]], dim=1)

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
            val_loss = run_losses(logits, y_val)
            val_acc = (logits.argmax(dim=2) == y_val).float().mean(dim=1)
        nan = torch.full_like(val_loss, math.nan)
        columns = torch.stack([
            self.loss_sum / self.loss_count,
            torch.where(self.alive, val_loss, nan),
            torch.where(self.alive, val_acc, nan),
            self.diverged_at.to(val_loss.dtype),
        ], dim=1)
        host = torch.cat([columns, self.layer_stats, self.hidden_stats],
                         dim=1).cpu().tolist()  # the one sync
        layers = len(self.engine.weight_names)
        hidden = self.hidden_stats.shape[1] // 3
        runs = self.spec.runs
        records = []
        for run, row in zip(self.active, host):
            (name, params), seed = runs[run]
            stats = row[4 + 2 * layers:]
            records.append(RunRecord(
                run=run, scheme=name, scheme_params=params, entry=self.spec.label((name, params)),
                seed=seed, step=step,
                train_loss=row[0], val_loss=row[1], val_acc=row[2],
                diverged_at=None if row[3] < 0 else int(row[3]),
                grad_norm=tuple(row[4:4 + layers]),
                update_ratio=tuple(row[4 + layers:4 + 2 * layers]),
                act_std=tuple(stats[:hidden]), saturated=tuple(stats[hidden:2 * hidden]),
                grad_std=tuple(stats[2 * hidden:])))
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
        for name in ("alive", "diverged_at", "loss_sum", "loss_count", "layer_stats",
                     "hidden_stats", "seed_rows"):
            setattr(self, name, getattr(self, name)[rows])


__all__ = ["BatchedEngine", "DIVERGENCE_LOSS", "DROPOUT_STREAM", "DropoutMasks", "NARROW_LINEAR",
           "OneByOneEngine", "Tracker", "VmapEngine", "run_losses"]
