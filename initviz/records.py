r"""What a training run reports: one record per run and evaluation step, and the results.

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
* per hidden layer ``l = 1 … depth`` (the plain stack ``mlp``; empty for other architectures),
  from the forward and backward pass of update ``s`` (at step 0, of update 1: the first
  minibatch at the initial weights):
  ``act_std``, the std of the activation's output over the batch and the units (before dropout);
  ``saturated``, the share of units whose pre-activation lies in the activation's saturated
  region (as the probe counts it, :mod:`initviz.activations`; NaN where the activation has none);
  ``grad_std``, the std of the gradient of the run's mean minibatch loss with respect to the
  activation's output. Measured only on the steps that are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from initviz.scheme_types import ResolvedParams
from initviz.schemes import get_scheme
from initviz.text import json_number

if TYPE_CHECKING:
    from initviz.training import TrainSpec


def scheme_label(name: str, params: ResolvedParams) -> str:
    """``name``, with the parameters that differ from the scheme's defaults, as in
    ``normal(std=0.01)``."""
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
    scheme_params: ResolvedParams
    seed: int
    step: int
    train_loss: float
    val_loss: float
    val_acc: float
    diverged_at: int | None
    grad_norm: tuple[float, ...]
    update_ratio: tuple[float, ...]
    act_std: tuple[float, ...] = ()
    saturated: tuple[float, ...] = ()
    grad_std: tuple[float, ...] = ()
    entry: str = ""  # the compared entry as written (TrainSpec.label); "" labels by the scheme

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def label(self) -> str:
        return self.entry or scheme_label(self.scheme, self.scheme_params)


@dataclass(frozen=True)
class Checkpoint:
    """Everything one evaluation step produced: one record per run still training, after
    ``step`` of ``steps`` updates and ``seconds`` of training (the stream's own time)."""

    step: int
    steps: int
    seconds: float
    records: tuple[RunRecord, ...]


@dataclass(frozen=True)
class RunResult:
    """One run from its first record to its last; ``final`` is the last."""

    scheme: str
    scheme_params: ResolvedParams
    seed: int
    history: tuple[RunRecord, ...]
    entry: str = ""

    @property
    def final(self) -> RunRecord:
        return self.history[-1]

    @property
    def diverged(self) -> bool:
        return self.final.diverged

    @property
    def label(self) -> str:
        return self.entry or scheme_label(self.scheme, self.scheme_params)


def _losses_dict(record: RunRecord) -> dict:
    return {"train_loss": json_number(record.train_loss), "val_loss": json_number(record.val_loss),
            "val_acc": json_number(record.val_acc)}


def _hidden_list(record: RunRecord) -> list[dict]:
    return [{"layer": layer, "act_std": json_number(a), "saturated_frac": json_number(s),
             "grad_std": json_number(g)}
            for layer, (a, s, g) in enumerate(zip(record.act_std, record.saturated,
                                                  record.grad_std), start=1)]


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
        """The ``train --json`` document; values that are not finite become null.

        Each history entry has, besides the contract's keys, ``hidden``: one entry per hidden
        layer, ``{"layer", "act_std", "saturated_frac", "grad_std"}`` (the module docstring says
        what each means; empty for architectures other than the plain stack)."""
        return {
            "device": self.device,
            "seconds": self.seconds,
            "runs": [{"scheme": self.spec.text((run.scheme, run.scheme_params)),
                      "seed": run.seed, "diverged": run.diverged,
                      "history": [{"step": r.step, **_losses_dict(r), "hidden": _hidden_list(r)}
                                  for r in run.history],
                      "final": _losses_dict(run.final)} for run in self.runs],
        }

    @property
    def records(self) -> list[RunRecord]:
        return [record for run in self.runs for record in run.history]


__all__ = ["Checkpoint", "RunRecord", "RunResult", "TrainResult", "scheme_label"]
