"""The training section: a race of every compared scheme on the same data, drawn live.

The race runs on the server's worker (:mod:`initviz.race`); this session holds a
:class:`~initviz.race.TrainingJob` in ``st.session_state["train_job"]`` (the one state below the
sidebar) and a fragment redraws the race's latest snapshot while it runs.
"""

from __future__ import annotations

import math

import streamlit as st

from initviz import charts, training
from initviz.race import RaceView, TrainingJob, server_board
from initviz.text import count
from ui.links import BOUND, view_default
from ui.sections import draw, or_dash, pair

TRAIN_REDRAW_SECONDS = 0.5
"""The live curve redraws at least twice a second while a race runs."""


def _start_training(spec: training.TrainSpec) -> None:
    st.session_state["train_job"] = server_board().start(spec)


def _stop_training() -> None:
    job: TrainingJob | None = st.session_state.get("train_job")
    if job is not None:
        job.stop()  # safe at any moment: the race runs on the server's worker, not in this rerun


def training_section(spec: training.TrainSpec | None, schemes: list[str]) -> None:
    if spec is None:
        st.info("Fix the training settings in the sidebar to train.")
        return
    info = spec.data_info
    st.caption(f"{count(len(spec.schemes), 'scheme')} × {count(spec.seeds, 'seed')} on "
               f"**{spec.dataset}** "
               f"({info.description}; {info.n_classes} classes), {spec.optimizer}, lr "
               f"{spec.lr:g}, {spec.steps} steps of {spec.batch}. Every run sees the same "
               "batches in the same order; the band spans the seeds."
               + _race_time(server_board().estimate(spec)))
    job: TrainingJob | None = st.session_state.get("train_job")
    if job is not None and job.spec != spec:
        job.stop()
        del st.session_state["train_job"]
        job = None
    running = job is not None and job.running
    buttons = st.container(horizontal=True)
    buttons.button("Train", type="primary", disabled=running, on_click=_start_training,
                   args=(spec,), key="train_button", shortcut="T")
    buttons.button("Stop", disabled=not running, on_click=_stop_training, key="stop_button",
                   shortcut="S")
    training_live(spec, schemes, running)


def training_live(spec: training.TrainSpec, schemes: list[str], running: bool) -> None:
    @st.fragment(run_every=TRAIN_REDRAW_SECONDS if running else None)
    def live() -> None:
        job: TrainingJob | None = st.session_state.get("train_job")
        shown = job.view() if job is not None else server_board().finished(spec)
        if shown is None:
            st.info("Press **Train** to train every scheme on the same data, side by side.")
            return
        if shown.error is not None:
            st.error(shown.error)
            return
        training_view(spec, schemes, shown)
        if running and not shown.running:
            st.rerun()  # the whole page, to stop this fragment's timer and free the buttons

    live()


def _race_time(seconds: float | None) -> str:
    if seconds is None:
        return " The first race on this server also measures how fast it trains."
    return f" It should take about {seconds:.0f} s here (fitted to this server's latest races)."


def _time_left(shown: RaceView, steps: int) -> str:
    if not shown.running or shown.step == 0:
        return ""
    return f", about {shown.seconds / shown.step * (steps - shown.step):.0f} s left"


RACE_STATUS = {"training": "training", "finished": "finished", "stopped": "stopped",
               "diverged": "ended early, every run diverged"}


def _by_entry(frame):
    """``frame`` with each run's compared entry as its ``scheme``: the charts' and the table's
    series, so that two variants of one scheme (``uniform(a=0,b=1)``, ``uniform(a=-0.5,b=0.5)``)
    stay apart and match the sidebar's entries."""
    return frame.assign(scheme=frame["label"])


def training_view(spec: training.TrainSpec, schemes: list[str], shown: RaceView) -> None:
    if shown.notice:
        st.warning(shown.notice)
    st.progress(shown.step / spec.steps,
                text=f"{RACE_STATUS[shown.state]}: step {shown.step} of {spec.steps}, "
                     f"{shown.seconds:.1f} s on {shown.device}{_time_left(shown, spec.steps)}")
    history = _by_entry(training.history_frame(shown.records))
    if history.empty:
        return
    left, right = pair("training")
    classes = spec.data_info.n_classes
    chance = math.log(classes)
    draw(where=left, save=not shown.running, figure=charts.training_curves(
        history, schemes, metric="train_loss", log=True, total_steps=spec.steps,
        title="Training loss (mean over seeds; band: min to max)",
        reference=(f"ln {classes}: a uniform guess", chance)), key="train_loss")
    left.caption(f"Cross-entropy in nats (natural-log units): 0 is a perfect, sure prediction; "
                 f"guessing evenly among the {classes} classes gives ln {classes} = "
                 f"{chance:.2f} (the dashed line), the loss a well-initialized network starts "
                 "near.")
    draw(where=right, save=not shown.running, figure=charts.training_curves(
        history, schemes, metric="val_acc", total_steps=spec.steps,
        title=f"Validation accuracy (chance: {1 / classes:.0%})"),
        key="val_acc")
    ratio = training.update_ratio_steps(_by_entry(training.layer_frame(shown.records)))
    if len(ratio):
        draw(where=left, save=not shown.running, figure=charts.by_layer(
            ratio, "‖ΔW‖ / ‖W‖ per update (log)", schemes,
            sources=[f"step {step}" for step in ratio["step"].unique()],
            title="Update-to-weight ratio over the run (≈1e-3 is healthy early on)"),
            key="update_ratio")
        left.caption("‖ΔW‖ / ‖W‖ of one update, mean over seeds, at the first update, mid-run and "
                     "the latest record; the last layer is the output layer. Early on, much "
                     "below 1e-3 a layer barely learns and much above it is being overwritten "
                     "(Karpathy, CS231n); once the loss settles, updates shrink, so a small ratio "
                     "late in a run is expected.")
    final = training.final_frame(history)
    finished = shown.state == "finished"
    when = "" if finished else f" at step {shown.step}"
    right.dataframe(final.assign(val_acc=or_dash(final["val_acc"], "{:.1%}"),
                                 val_loss=or_dash(final["val_loss"], "{:.3g}"),
                                 initial_loss=or_dash(final["initial_loss"], "{:.3g}")).rename(
        columns={"val_acc": f"{'final ' * finished}val. accuracy{when}",
                 "val_loss": f"{'final ' * finished}val. loss{when}",
                 "initial_loss": "initial val. loss (before training)"}),
        hide_index=True)
    right.caption(f"{'Final v' if finished else 'V'}alidation accuracy and loss{when}: the means "
                  "over each scheme's runs that did not diverge"
                  + ("; — where every run diverged" if final["diverged"].any() else "")
                  + f". The loss at step 0 is at the initial weights, before any update: near "
                  f"ln {classes} = {chance:.2f} the first prediction is close to uniform, far "
                  "above it the network starts confidently wrong.")
    hidden_view(schemes, shown)


def hidden_view(schemes: list[str], shown: RaceView) -> None:
    """The per-layer statistics recorded during training, as layer × step heatmaps for one
    scheme (the focused one)."""
    hidden = _by_entry(training.hidden_frame(shown.records))
    if hidden.empty:
        return
    trained = [s for s in schemes if s in set(hidden["scheme"])]
    if not trained:
        return
    focus = st.segmented_control(
        "Per-layer statistics during training of", trained, key="focus_scheme",
        default=view_default("focus_scheme", trained, trained[0]), required=True,
        **BOUND) or trained[0]
    mine = hidden[hidden["scheme"] == focus]
    # two to a row, as every chart pair: three columns left each chart under 340 px on a
    # projector
    cells = [*pair("hidden-a"), pair("hidden-b")[0]]
    titles = {"act_std": "Activation std", "saturated": "Share of units saturated",
              "grad_std": "Gradient std, ∂L/∂(activation)"}
    for cell, (statistic, title) in zip(cells, titles.items()):
        if statistic == "saturated" and mine[statistic].isna().all():
            cell.caption(f"{title}: the activation has no saturated region.")
            continue
        draw(where=cell, save=not shown.running, figure=charts.training_heatmap(
            mine, statistic, title=f"{focus}: {title}"), key=f"hidden_{statistic}")
    st.caption("Each hidden layer (top row: the last hidden layer) at each recorded step, the "
               "mean over seeds, measured on the training minibatch of that step's update "
               "(step 0: the first minibatch at the initial weights). Std colours are on a log "
               "scale. Saturated: the share of units whose input lies where the activation is "
               "flat (within 3% of an asymptote), as the signal tab counts it. The gradient is "
               "that of the run's mean minibatch loss.")


__all__ = ["TRAIN_REDRAW_SECONDS", "training_section"]
