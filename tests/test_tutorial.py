"""The tutorials' own experiments: inputs as the tutorials feed them, dropout, the output layer's
initialization, statistics that move during training, and the tutorial table."""

import json
import math

import pytest
import torch

from initviz.activations import ACTIVATIONS
from initviz.datasets import DATASETS, INPUT_SCALES, load_dataset
from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec
from initviz.presets import PRESETS, network_of
from initviz.probe import profile
from initviz.training import TrainingStream, TrainSpec, batch_indices, history_frame, train

from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)


# --------------------------------------------------------------------------------------------------
# Input scaling


def test_unit_digits_are_the_pixels_over_16():
    from sklearn.datasets import load_digits
    data = load_dataset("digits", 0, "unit")
    pixels = {round(v * 16) for v in data.x_train.unique().tolist()}
    assert pixels == set(range(17))  # every grey level 0..16, nothing else
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.x_val.min() >= 0.0 and data.x_val.max() <= 1.0
    # the same images as the standardized set, in the same order
    raw = torch.as_tensor(load_digits().data, dtype=torch.float32) / 16
    assert sorted(map(tuple, data.x_val.tolist()))[0] in set(map(tuple, raw.tolist()))


@pytest.mark.parametrize("name", [n for n in DATASETS if not n.startswith("digits")])
def test_unit_toy_sets_are_min_max_on_the_training_split(name):
    data = load_dataset(name, 3, "unit")
    assert torch.allclose(data.x_train.min(dim=0).values, torch.zeros(2), atol=1e-7)
    assert torch.allclose(data.x_train.max(dim=0).values, torch.ones(2), atol=1e-7)
    # the validation split is scaled by the training split's range: the same affine map
    standard = load_dataset(name, 3, "standardized")
    for x_unit, x_std in ((data.x_train, standard.x_train), (data.x_val, standard.x_val)):
        fit = torch.linalg.lstsq(torch.column_stack([x_std[:, 0], torch.ones(len(x_std))]),
                                 x_unit[:, 0:1]).solution
        assert torch.allclose(fit[0] * x_std[:, 0] + fit[1], x_unit[:, 0], atol=1e-5)
    assert torch.equal(data.y_val, standard.y_val)


def test_input_scale_is_part_of_the_spec_and_refused_when_unknown():
    net = NetworkSpec.stack(8, 2)
    assert TrainSpec(net, input_scale="unit") != TrainSpec(net)
    assert set(INPUT_SCALES) == {"standardized", "unit"}
    with pytest.raises(InvalidSpec, match="input_scale.*standardized, unit"):
        TrainSpec(net, input_scale="raw")
    with pytest.raises(InvalidSpec, match="input_scale"):
        load_dataset("moons", 0, "raw")
    assert TrainSpec(net, input_scale="unit").load_data().x_train.min() == 0.0


# --------------------------------------------------------------------------------------------------
# Dropout and the output layer

RTOL = 3e-5  # batched against one by one, as in test_training.py


def _spec(**kwargs) -> TrainSpec:
    values = dict(network=NetworkSpec.stack(16, 3), schemes=("kaiming_normal", "xavier_uniform"),
                  seeds=2, steps=12, eval_every=4, batch=32, lr=0.05)
    return TrainSpec(**{**values, **kwargs})


def _numbers(result, keys=("train_loss", "val_loss", "val_acc", "act_std", "grad_std")):
    return [[getattr(record, key) for key in keys] for run in result.runs
            for record in run.history]


def _close(a, b, rel=RTOL):
    flat = lambda rows: [v for row in rows for item in row  # noqa: E731
                         for v in (item if isinstance(item, tuple) else (item,))]
    assert flat(a) == pytest.approx(flat(b), rel=rel, nan_ok=True)


def test_dropout_batched_equals_one_by_one():
    spec = _spec(dropout=0.3)
    _close(_numbers(train(spec)), _numbers(train(spec, batched=False)))


def test_dropout_acts_in_training_only_and_the_same_for_every_scheme():
    plain, dropped = train(_spec()), train(_spec(dropout=0.5))
    for a, b in zip(plain.runs, dropped.runs):
        # the initial weights and validation without dropout: step 0 validation is the same
        assert a.history[0].val_loss == b.history[0].val_loss
        # the first minibatch's loss is taken with half the units dropped
        assert a.history[0].train_loss != b.history[0].train_loss
    # a run's masks come from its seed alone: trained alone it is the same as beside others
    alone = train(_spec(dropout=0.5, schemes=("xavier_uniform",)))
    _close(_numbers(alone), _numbers(dropped)[len(_numbers(dropped)) // 2:], rel=0)


def test_dropout_is_refused_out_of_range_and_for_other_architectures():
    with pytest.raises(InvalidSpec, match=r"dropout.*\[0, 0\.9\]"):
        _spec(dropout=0.95)
    with pytest.raises(InvalidSpec, match="dropout"):
        _spec(dropout=0.1, network=NetworkSpec.stack(16, 3, arch="residual"))


def test_zero_output_layer_starts_at_ln_c():
    result = train(_spec(output_init="zeros"))
    for run in result.runs:
        assert run.history[0].val_loss == pytest.approx(math.log(10), abs=1e-6)
        assert run.history[0].train_loss == pytest.approx(math.log(10), abs=1e-6)


def test_scaled_output_layer_is_the_scheme_times_the_factor():
    same = TrainingStream(_spec())._build_models()
    scaled = TrainingStream(_spec(output_init="scaled", output_scale=0.01))._build_models()
    for a, b in zip(same, scaled):
        assert torch.equal(b[-1].weight, a[-1].weight * 0.01)
        assert torch.equal(b[-1].bias, a[-1].bias)
        assert torch.equal(b[0].linear.weight, a[0].linear.weight)
    # a near-uniform first prediction: the initial loss is near ln 10, nearer than with "same"
    start = {kind: [abs(run.history[0].val_loss - math.log(10)) for run in train(spec).runs]
             for kind, spec in (("same", _spec()),
                                ("scaled", _spec(output_init="scaled", output_scale=0.01)))}
    assert max(start["scaled"]) < 0.01
    assert all(s < a / 10 for s, a in zip(start["scaled"], start["same"]))


def test_output_scale_counts_only_when_scaled():
    assert _spec(output_scale=0.5) == _spec()
    assert _spec(output_init="scaled", output_scale=0.5) != _spec(output_init="scaled")
    with pytest.raises(InvalidSpec, match=r"output_scale.*\(0, 100\]"):
        _spec(output_init="scaled", output_scale=0)
    with pytest.raises(InvalidSpec, match="output_init.*same, zeros, scaled"):
        _spec(output_init="small")


# --------------------------------------------------------------------------------------------------
# Statistics during training


def test_hidden_statistics_at_step_0_are_those_of_the_first_batch():
    spec = _spec(network=NetworkSpec.stack(16, 3, activation="tanh"), seeds=1)
    record = train(spec).runs[0].history[0]
    model = TrainingStream(spec)._build_models()[0]
    data = spec.load_data()
    index = next(batch_indices(len(data.y_train), spec.batch, 1, spec.seed))
    outputs, preacts = [], []

    def keep(module, inputs, output):
        preacts.append(inputs[0].detach())
        output.retain_grad()
        outputs.append(output)

    for block in model[:-1]:
        block.act.register_forward_hook(keep)
    loss = torch.nn.functional.cross_entropy(model(data.x_train[index]), data.y_train[index])
    loss.backward()
    low, high = ACTIVATIONS["tanh"].saturated_outside
    assert record.act_std == pytest.approx([o.detach().std(correction=0).item() for o in outputs],
                                           rel=1e-5)
    assert record.grad_std == pytest.approx([o.grad.std(correction=0).item() for o in outputs],
                                            rel=1e-5)
    assert record.saturated == pytest.approx(
        [((z < low) | (z > high)).float().mean().item() for z in preacts])
    assert len(record.act_std) == spec.network.depth


def test_relu_has_no_saturated_region():
    record = train(_spec()).runs[0].history[-1]
    assert all(math.isnan(v) for v in record.saturated)
    assert all(v > 0 for v in record.act_std + record.grad_std)


def test_glorot_and_bengio_top_sigmoid_layer_saturates_early():
    # Glorot & Bengio 2010, Fig. 2: with sigmoid and the "standard" U(±1/√n), the top hidden layer
    # is driven into saturation early in training while the lower layers are not. Here: 4 layers
    # of 256 on digits, SGD lr 0.7, batch 32. Measured on seeds 0-2: the top layer's saturated
    # share is 0 at step 0, 0.66-0.80 at step 20 and 0.88-0.95 at step 40, the first layer's 0
    # throughout (and accuracy stays at chance within these 150 steps: no recovery yet).
    spec = TrainSpec(NetworkSpec.stack(256, 4, activation="sigmoid", scheme="pytorch_default",
                                       bias="pytorch_default"),
                     schemes=("pytorch_default",), seeds=3, steps=40, eval_every=10, lr=0.7,
                     batch=32)
    for run in train(spec).runs:
        top = {record.step: record.saturated[-1] for record in run.history}
        first = [record.saturated[0] for record in run.history]
        assert top[0] == 0.0 and top[20] > 0.6 and top[40] > 0.85
        assert max(first) < 0.01


# --------------------------------------------------------------------------------------------------
# The probe's input: N(mean, std²)


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (1.5, 0.5), (0.0, 3.0), (-2.0, 0.0)])
def test_the_theory_starts_from_the_input_second_moment(mean, std):
    # tanh at σ_w² = 64·2/(64 + 512) = 0.222: q¹ = σ_w² (mean² + std²). Measured over 8 layers
    # of width 512 on seed 0: within 1.6% at layer 1 and 8.4% at any layer for these inputs.
    spec = NetworkSpec.stack(512, 8, activation="tanh", scheme="xavier_normal")
    layers = profile(spec, batch=512, seed=0, input_mean=mean, input_std=std).layers
    sigma_w2 = 64 * 2 / (64 + 512)
    assert layers["preact_var_theory"].iloc[0] == pytest.approx(sigma_w2 * (mean**2 + std**2))
    ratio = layers["preact_std"] ** 2 / layers["preact_var_theory"]
    assert ratio.iloc[0] == pytest.approx(1.0, abs=0.05)
    assert ratio.between(0.85, 1.15).all()


def test_the_probe_input_has_the_chosen_mean_and_std():
    spec = NetworkSpec.stack(64, 2, activation="linear", scheme="orthogonal")
    prof = profile(spec, batch=4096, seed=1, input_mean=2.0, input_std=0.5)
    default = profile(spec, batch=4096, seed=1)
    # E[x²] = 2² + 0.5² = 4.25 times that of N(0, 1), and so is layer 1's pre-activation variance
    ratio = (prof.layers["preact_std"].iloc[0] / default.layers["preact_std"].iloc[0]) ** 2
    assert ratio == pytest.approx(4.25, rel=0.1)
    assert (prof.input_mean, prof.input_std) == (2.0, 0.5)
    assert prof.to_json_dict()["config"]["input_mean"] == 2.0


@pytest.mark.parametrize("mean, std, field", [(math.nan, 1.0, "input_mean"),
                                              (0.0, -1.0, "input_std"),
                                              (1e9, 1.0, "input_mean"),
                                              (0.0, "abc", "input_std")])
def test_a_bad_probe_input_is_refused_with_a_sentence(mean, std, field):
    with pytest.raises(InvalidSpec, match=field):
        profile(NetworkSpec.stack(8, 2), batch=8, input_mean=mean, input_std=std)


def test_cli_profile_takes_the_input_mean_and_std(capsys):
    from initviz.cli import main
    code = main(["profile", "--width", "32", "--depth", "2", "--activation", "tanh", "--scheme",
                 "xavier_normal", "--input-mean", "1", "--input-std", "2", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (document["config"]["input_mean"], document["config"]["input_std"]) == (1.0, 2.0)
    sigma_w2 = 64 * 2 / (64 + 32)
    assert document["layers"][0]["preact_var_theory"] == pytest.approx(sigma_w2 * 5)
    code = main(["profile", "--input-std", "-1"])
    assert code == 2 and "input_std -1 is not valid" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# The tutorial table (preset tutorial_table; its story gives the tutorial's numbers beside these)
#
# Measured on digits, 64-256-128-10, 400 steps, seeds 0-2 at the page's batch 256 (batch 100, seeds
# 0-4, in brackets): zeros 10.2% and ones 9.6-10.2% all along; U(0, 1) at chance until about step
# 300, 34-56% at step 400 [13-29%]; U(-0.5, 0.5) 92-93% at step 100 [89-92%], behind U(±1/√n)
# 95% [93-94%] and N(0, 1/n) 96% [94-95%] on every seed, then level with them by step 400 (97-98%
# each [96-98%]).

TUTORIAL = PRESETS["tutorial_table"].values
PAGE_BATCH = 256  # the page's default batch, which presets leave as it is


def tutorial_spec(seed: int, seeds: int, batch: int = PAGE_BATCH) -> TrainSpec:
    """The race the preset starts on the page, with records at steps 0, 100, ..., 400."""
    entries = list(dict.fromkeys([TUTORIAL["scheme"], *TUTORIAL["compare"]]))
    return TrainSpec(network_of(TUTORIAL), schemes=tuple(entries), seeds=seeds, seed=seed,
                     dataset=TUTORIAL["dataset"], optimizer=TUTORIAL["optimizer"],
                     lr=TUTORIAL["lr"], steps=TUTORIAL["steps"], batch=batch, eval_every=100,
                     input_scale=TUTORIAL["input_scale"], dropout=TUTORIAL["dropout"])


def assert_tutorial_ordering(acc: dict[tuple[str, int], float]) -> None:
    """``acc``: validation accuracy (mean over seeds) by (entry, step): zeros ≈ ones ≈ chance <
    U(0, 1) < U(-0.5, 0.5), which converges slower than U(±1/√n) and N(0, 1/n) and then
    catches up."""
    chance = 0.11  # 10 classes; the most common class is 10.2% of the validation split
    assert acc["zeros", 400] <= chance and acc["ones", 400] <= chance
    assert chance + 0.05 < acc["uniform(a=0,b=1)", 400] < acc["uniform(a=-0.5,b=0.5)", 400] - 0.3
    assert acc["uniform(a=-0.5,b=0.5)", 100] < min(acc["pytorch_default", 100],
                                                   acc["lecun_normal", 100]) - 0.01
    assert min(acc[entry, 400] for entry in ("uniform(a=-0.5,b=0.5)", "pytorch_default",
                                             "lecun_normal")) > 0.95


def test_the_tutorial_table_ordering_holds_over_seeds_with_the_story_numbers():
    result = train(tutorial_spec(seed=0, seeds=3))
    frame = history_frame(result.records)
    assert not frame["diverged"].any()  # U(0, 1)'s loss of thousands at step 0 is no divergence
    acc = frame.groupby(["label", "step"])["val_acc"]
    assert_tutorial_ordering(acc.mean().to_dict())
    low, high = acc.min().to_dict(), acc.max().to_dict()
    # the story's ranges over seeds 0-2
    assert 0.33 <= low["uniform(a=0,b=1)", 400] and high["uniform(a=0,b=1)", 400] <= 0.57
    assert 0.91 <= low["uniform(a=-0.5,b=0.5)", 100] and high["uniform(a=-0.5,b=0.5)", 100] < 0.94
    assert 0.94 <= low["pytorch_default", 100] and high["lecun_normal", 100] < 0.97
    start = frame[frame["step"] == 0].groupby("label")["val_loss"]
    assert 5_600 < start.min()["uniform(a=0,b=1)"] and start.max()["uniform(a=0,b=1)"] < 9_400
    assert 9.5 < start.min()["uniform(a=-0.5,b=0.5)"] and start.max()["uniform(a=-0.5,b=0.5)"] < 16


def test_the_tutorial_table_ordering_from_the_cli(capsys):
    from initviz.cli import main
    entries = ",".join(dict.fromkeys([TUTORIAL["scheme"], *TUTORIAL["compare"]]))
    code = main(["train", "--sizes", TUTORIAL["sizes"], "--bias", "zeros", "--schemes", entries,
                 "--dataset", "digits", "--optimizer", "adam", "--lr", "0.001", "--steps", "400",
                 "--batch", "100", "--seed", "3", "--eval-every", "100", "--input-scale",
                 "unit", "--dropout", "0.2", "--json"])
    assert code == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert_tutorial_ordering({(run["scheme"], row["step"]): row["val_acc"]
                              for run in runs for row in run["history"]})
