"""The residual presets' stories against the numbers the package computes for their values."""

from __future__ import annotations

import pytest

from initviz.presets import PRESETS, network_of
from initviz.probe import profile
from initviz.training import TrainSpec, train
from initviz.variants import network_for, parse_entry

from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)

FIXUP = PRESETS["fixup"].values
PAGE_BATCH = 256  # presets do not set the batch: the page's default


def _profiles(seed: int) -> dict:
    plain = network_of(FIXUP)
    specs = {"plain": plain, **{entry: network_for(plain, *parse_entry(entry))
                                for entry in FIXUP["compare"]}}
    return {label: profile(spec, batch=PAGE_BATCH, seed=seed).layers
            for label, spec in specs.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixup_story_plain_grows_almost_twofold_per_block_and_fixup_rezero_keep_the_stream(seed):
    layers = _profiles(seed)
    plain = layers.pop("plain")
    stds, grads = plain["act_std"], plain["grad_std"]
    assert FIXUP["depth"] == 100 and FIXUP["width"] == 32
    per_block = (stds.iloc[-1] / stds.iloc[0]) ** (2 / 99)
    assert 1.75 <= per_block <= 1.95  # "×1.8 to 1.9 per block (seeds 0-2)"
    assert 1.5 <= stds.iloc[0] <= 2.5  # "about 2 at block 1"
    assert 1e12 <= stds.iloc[-1] <= 1e15  # "10¹² to 10¹⁴ at block 100"
    assert 1e12 <= grads.iloc[0] <= 1e15  # "the gradient reaching block 1 is as large"
    for entry, table in layers.items():
        # "every block is the identity": the same std at all 100 blocks, the gradient's 1.0
        assert table["act_std"].max() == pytest.approx(table["act_std"].min(), rel=1e-6), entry
        assert table["grad_std"].to_numpy() == pytest.approx(1.0, abs=0.05), entry
        assert (table["branch_to_stream_ratio"] == 0).all(), entry


def test_fixup_story_race_fixup_and_rezero_train_and_plain_diverges_at_step_0():
    # The page's race for these values at seed 0 (batch 256): measured 0.90 (fixup), 0.91
    # (rezero) after 100 steps.
    spec = TrainSpec(network_of(FIXUP), schemes=("kaiming_normal", *FIXUP["compare"]),
                     seeds=FIXUP["seeds"], dataset=FIXUP["dataset"], optimizer=FIXUP["optimizer"],
                     lr=FIXUP["lr"], steps=FIXUP["steps"], batch=PAGE_BATCH, eval_every=50)
    runs = {run.label: run for run in train(spec).runs}
    assert runs["kaiming_normal"].final.diverged_at == 0
    for entry in FIXUP["compare"]:
        assert not runs[entry].diverged and runs[entry].final.val_acc > 0.85, entry
