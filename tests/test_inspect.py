"""initviz.inspect and initviz.init_ on any nn.Module: against plain autograd and torch.nn.init,
the caller's model left as it was, PyTorch's defaults recognized, and the four example models."""

import io
import math

import pandas as pd
import pytest
import torch
from torch import nn

import initviz
from initviz import examples
from initviz.errors import InvalidSpec, TooLarge
from initviz.inspection import INSPECT_COLUMNS, inspect
from initviz.layers import init_, recognize
from initviz.schemes import SCHEMES


def _inputs(name: str, seed: int = 1) -> torch.Tensor:
    return torch.randn(*examples.INPUT_SHAPES[name], generator=torch.Generator().manual_seed(seed))


def _std(t: torch.Tensor) -> float:
    return float(t.detach().double().std(correction=0))


def test_public_api_is_exported():
    assert initviz.inspect is inspect and initviz.init_ is init_
    assert {"inspect", "init_", "Inspection"} <= set(initviz.__all__)


def test_statistics_equal_plain_autograd_through_activation_modules():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(),
                          nn.Linear(16, 4))
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(3))
    result = inspect(model, x)

    # the same quantities by hand: no hooks, one torch.autograd.grad
    lin1, _, lin2, _, lin3 = model
    z1 = lin1(x)
    a1 = torch.relu(z1)
    z2 = lin2(a1)
    a2 = torch.tanh(z2)
    y = lin3(a2)
    loss = y.double().pow(2).sum() / (2 * x.shape[0])
    grads = torch.autograd.grad(loss, [a1, a2, y, lin1.weight, lin2.weight, lin3.weight])
    layers = result.layers
    assert list(layers["name"]) == ["0", "2", "4"]
    assert list(layers["kind"]) == ["Linear"] * 3
    assert list(layers.columns) == list(INSPECT_COLUMNS)
    for row, z, act, grad, lin, wgrad in zip(
            layers.itertuples(), [z1, z2, y], [a1, a2, y], grads[:3], [lin1, lin2, lin3],
            grads[3:]):
        assert row.preact_std == pytest.approx(_std(z), rel=1e-6)
        assert row.act_std == pytest.approx(_std(act), rel=1e-6)
        assert row.grad_std == pytest.approx(_std(grad), rel=1e-6)
        assert row.weight_grad_norm == pytest.approx(float(wgrad.double().norm()), rel=1e-6)
        assert row.weight_std == pytest.approx(_std(lin.weight), rel=1e-9)
    # zero_frac: (input, unit) pairs off; dead_frac: units off for every input
    assert layers["zero_frac"].iloc[0] == pytest.approx(float((z1 <= 0).double().mean()))
    assert layers["dead_frac"].iloc[0] == pytest.approx(
        float((z1 <= 0).all(dim=0).double().mean()))
    tanh_limit = math.atanh(0.97)
    assert layers["saturated_frac"].iloc[1] == pytest.approx(
        float((z2.abs() > tanh_limit).double().mean()))
    assert math.isnan(layers["dead_frac"].iloc[2])  # no activation module after the last layer


def test_example_net_gradients_equal_plain_autograd():
    model = examples.net_uniform().eval()  # eval: dropout off, so the two passes agree
    x = _inputs("net")
    result = inspect(model, x)
    h1 = model.fc1(x)
    h2 = model.fc2(torch.relu(h1))
    y = model.fc3(torch.relu(h2))
    loss = y.double().pow(2).sum() / (2 * x.shape[0])
    grads = torch.autograd.grad(loss, [h1, h2, y, model.fc1.weight])
    assert result.layers["grad_std"].tolist() == pytest.approx([_std(g) for g in grads[:3]],
                                                               rel=1e-6)
    assert result.layers["weight_grad_norm"].iloc[0] == pytest.approx(
        float(grads[3].double().norm()), rel=1e-6)


def test_default_loss_does_not_depend_on_the_batch_size():
    model = examples.net().eval()
    x = _inputs("net")
    once, twice = inspect(model, x), inspect(model, torch.cat([x, x]))
    assert twice.layers["weight_grad_norm"].tolist() == pytest.approx(
        once.layers["weight_grad_norm"].tolist(), rel=1e-6)
    assert "mean over the batch" in once.loss


def test_targets_give_cross_entropy():
    model = examples.net().eval()
    x = _inputs("net")
    targets = torch.arange(8) % 10
    result = inspect(model, x, targets=targets)
    y = model(x)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(y, targets), [y])
    assert result.layers["grad_std"].iloc[-1] == pytest.approx(_std(grad), rel=1e-6)
    assert "cross-entropy" in result.loss


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "flags": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for m in model.modules()],
    }


def test_the_callers_model_is_left_exactly_as_it_was():
    torch.manual_seed(0)
    model = examples.resnet()  # BatchNorm in training mode updates its running statistics
    model.blocks[1].eval()
    model.stem.weight.requires_grad_(False)
    model.head.weight.grad = torch.full_like(model.head.weight, 7.0)
    seen = []
    model.head.register_forward_hook(lambda *args: seen.append(1))
    before = _snapshot(model)

    inspect(model, _inputs("resnet"))

    after = _snapshot(model)
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    assert after["flags"] == before["flags"]
    assert model.stem.weight.grad is None and model.blocks[0].conv1.weight.grad is None
    assert torch.equal(model.head.weight.grad, torch.full_like(model.head.weight, 7.0))
    assert after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]
    assert len(seen) == 2  # the caller's own hook ran in both passes (sizing and measuring)


def test_memory_is_refused_over_the_budget_before_the_pass():
    model = examples.net()
    before = _snapshot(model)
    with pytest.raises(TooLarge, match="this inspection needs about"):
        inspect(model, _inputs("net"), memory_budget_bytes=100_000)
    assert all(torch.equal(v, _snapshot(model)["state"][k]) for k, v in before["state"].items())


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(InvalidSpec, match="torch.nn.Module"):
        inspect(lambda x: x, torch.zeros(2, 2))
    with pytest.raises(InvalidSpec, match="holds weights"):
        inspect(nn.ReLU(), torch.zeros(2, 2))
    model = nn.Linear(4, 3)
    with pytest.raises(InvalidSpec, match='inputs "2x5" is not valid: .* RuntimeError'):
        inspect(model, torch.zeros(2, 5))
    assert model.training  # restored after the sizing pass in eval mode


@pytest.mark.parametrize("module, weight", [
    (nn.Linear(50, 30), "weight"), (nn.Conv1d(4, 6, 3), "weight"), (nn.Conv2d(3, 8, 3), "weight"),
    (nn.Conv3d(2, 4, 3), "weight"), (nn.RNN(10, 20), "weight_hh_l0"),
    (nn.LSTM(10, 20), "weight_hh_l0"), (nn.GRU(10, 20), "weight_hh_l0"),
    (nn.Embedding(100, 16), "weight"), (nn.LayerNorm(16), "weight"),
    (nn.BatchNorm2d(8), "weight"), (nn.MultiheadAttention(16, 2), "in_proj_weight"),
])
def test_pytorch_defaults_are_recognized(module, weight):
    torch.manual_seed(0)
    assert recognize(module, getattr(module, weight)).scheme == "pytorch_default"


@pytest.mark.parametrize("scheme, params", [
    ("kaiming_normal", {"nonlinearity": "relu"}), ("kaiming_uniform", {"nonlinearity": "relu"}),
    ("xavier_normal", {}), ("xavier_uniform", {}), ("orthogonal", {}), ("zeros", {}),
])
def test_init_schemes_are_recognized_after_init_(scheme, params):
    model = nn.Sequential(nn.Linear(300, 100), nn.LSTM(100, 64))
    init_(model, scheme, seed=2, **params)
    assert recognize(model[0], model[0].weight).scheme == scheme
    found = recognize(model[1], model[1].weight_hh_l0)
    assert found.scheme == scheme
    # each of the 4 gate blocks (64 x 64) carries the scheme at fans (64, 64), gain 1
    resolved = dict(SCHEMES[scheme].resolve(params))
    assert found.law.std() == pytest.approx(SCHEMES[scheme].weight_std(64, 64, resolved),
                                            rel=1e-6)
    if scheme == "orthogonal":  # the stacked blocks read as one matrix would give gain 2
        assert found.params == (("gain", 1.0),)


def test_a_law_that_fits_nothing_is_said_so():
    linear = nn.Linear(200, 100)
    with torch.no_grad():
        linear.weight.normal_(3.0, 0.5)
    found = recognize(linear, linear.weight)
    assert found.scheme is None and "no known scheme" in found.note


def test_init_matches_torch_nn_init_on_each_layer_type():
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "linear": nn.Linear(20, 30), "conv": nn.Conv2d(3, 5, 3), "lstm": nn.LSTM(6, 8),
        "gru": nn.GRU(6, 8), "attn": nn.MultiheadAttention(12, 3), "emb": nn.Embedding(9, 4),
        "norm": nn.LayerNorm(7),
    })
    reference = {k: v for k, v in model.state_dict().items()}
    report = init_(model, "kaiming_normal", seed=5, nonlinearity="relu")

    ref = nn.ModuleDict({
        "linear": nn.Linear(20, 30), "conv": nn.Conv2d(3, 5, 3), "lstm": nn.LSTM(6, 8),
        "gru": nn.GRU(6, 8), "attn": nn.MultiheadAttention(12, 3), "emb": nn.Embedding(9, 4),
        "norm": nn.LayerNorm(7),
    })
    ref.load_state_dict(reference)
    g = torch.Generator().manual_seed(5)
    kw = {"nonlinearity": "relu", "generator": g}
    with torch.no_grad():
        nn.init.kaiming_normal_(ref["linear"].weight, **kw)
        ref["linear"].bias.zero_()
        nn.init.kaiming_normal_(ref["conv"].weight, **kw)
        ref["conv"].bias.zero_()
        for name in ("lstm", "gru"):
            for w in (ref[name].weight_ih_l0, ref[name].weight_hh_l0):
                for block in w.split(8):  # one gate's rows; fans (input, hidden)
                    nn.init.kaiming_normal_(block, **kw)
            ref[name].bias_ih_l0.zero_()
            ref[name].bias_hh_l0.zero_()
        for block in ref["attn"].in_proj_weight.split(12):  # q, k, v
            nn.init.kaiming_normal_(block, **kw)
        ref["attn"].in_proj_bias.zero_()
        nn.init.kaiming_normal_(ref["attn"].out_proj.weight, **kw)
        ref["attn"].out_proj.bias.zero_()
        nn.init.kaiming_normal_(ref["emb"].weight, **kw)
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    kept = report[report["kind"] == "LayerNorm"]
    assert kept["action"].tolist() == ["kept"]
    lstm_hh = report[(report["module"] == "lstm")
                     & report["parameter"].str.startswith("weight_hh")]
    assert len(lstm_hh) == 4 and (lstm_hh["fan_in"] == 8).all() and (lstm_hh["fan_out"] == 8).all()
    # each block's std is the theory's at its fans: sqrt(2 / fan_in)
    assert float(model["lstm"].weight_hh_l0.detach().std()) == pytest.approx(math.sqrt(2 / 8),
                                                                            rel=0.2)


def test_init_skips_what_it_does_not_understand_and_says_so():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(torch.full((3,), 2.0))

        def forward(self, x):
            return x * self.alpha

    model = nn.Sequential(nn.Linear(3, 3), Scale())
    with pytest.warns(UserWarning, match="skipped: initviz does not know the fans of a Scale"):
        report = init_(model, "xavier_normal")
    assert torch.equal(model[1].alpha, torch.full((3,), 2.0))
    row = report[report["module"] == "1"].iloc[0]
    assert row["action"] == "skipped" and "does not know" in row["note"]


def test_init_bias_scheme_and_generator():
    a, b = nn.Linear(10, 10), nn.Linear(10, 10)
    init_(a, "normal", std=0.5, bias="constant", bias_params={"val": 0.25},
          generator=torch.Generator().manual_seed(9))
    init_(b, "normal", std=0.5, bias="constant", bias_params={"val": 0.25}, seed=9)
    assert torch.equal(a.weight, b.weight)
    assert torch.equal(a.bias, torch.full((10,), 0.25))
    with pytest.raises(InvalidSpec, match="needs no data"):
        init_(a, "lsuv")
    with pytest.raises(InvalidSpec, match='normal has no parameter "gain"'):
        init_(a, "normal", gain=2)


@pytest.mark.parametrize("name, factory, scheme, params", [
    ("resnet", examples.resnet, "kaiming_normal", {"nonlinearity": "relu"}),
    ("transformer", examples.transformer, "xavier_uniform", {}),
    ("lstm", examples.lstm, "orthogonal", {}),
    ("net", examples.net_uniform, "kaiming_normal", {"nonlinearity": "relu"}),
])
def test_examples_before_and_after_init(name, factory, scheme, params):
    torch.manual_seed(0)
    model = factory().eval()
    x = _inputs(name)
    before = inspect(model, x)
    report = init_(model, scheme, seed=0, **params)
    after = inspect(model, x)
    assert len(before.layers) == len(after.layers) >= 2
    assert not (report["action"] == "skipped").any()
    weighted = [n for n, r in after.recognized.items() if "norm" not in n and "bn" not in n]
    # every layer init_ drew is recognized as that scheme (the 10-unit heads' 30 or 40 entries
    # cannot tell Kaiming from Xavier)
    matched = [after.recognized[n].scheme == scheme for n in weighted]
    assert sum(matched) >= len(weighted) - 1
    if name == "net":  # the tutorial's U(0, 1): activations grow ~30x a layer; Kaiming keeps them
        assert before.verdict_kind == "exploding"
        assert set(before.recognized[n].scheme for n in before.recognized) == {"uniform"}
    assert after.verdict_kind == "healthy"
    if name == "transformer":
        assert before.not_called == ("encoder.layers.0.self_attn.out_proj",
                                     "encoder.layers.1.self_attn.out_proj")


def test_verdict_numbers_are_the_tables():
    model = examples.net_uniform().eval()
    result = inspect(model, _inputs("net"))
    acts = result.layers["act_std"]
    assert result.verdict == (f"Exploding: activation std grows from {acts.iloc[0]:.2g} (layer 1) "
                              f"to {acts.iloc[-1]:.1e} (layer 3).")


def test_exports_and_notebook_display():
    result = inspect(examples.lstm(), _inputs("lstm"))
    frame = pd.read_csv(io.StringIO(result.to_csv()))
    assert list(frame.columns) == list(INSPECT_COLUMNS)
    assert frame["act_std"].tolist() == pytest.approx(result.layers["act_std"].tolist())
    document = result.to_json_dict()
    assert [row["name"] for row in document["layers"]] == ["lstm", "head"]
    assert document["layers"][0]["kind"] == "LSTM"
    assert document["recognized"][0]["scheme"] == "pytorch_default"
    bundle = result._repr_mimebundle_()
    html = bundle["text/html"]
    assert "vega" in html and "<table" in html and result.verdict in html
    for figure in result.figures():
        figure.to_dict()  # valid Vega-Lite


def test_a_module_called_twice_pools_both_calls():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    torch.manual_seed(0)
    model = Shared()
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(4))
    row = inspect(model, x).layers.iloc[0]
    first = model.lin(x)
    second = model.lin(torch.relu(first))
    loss = second.double().pow(2).sum() / (2 * x.shape[0])
    grads = torch.autograd.grad(loss, [first, second])
    both = torch.cat([first.reshape(-1), second.reshape(-1)]).detach()
    assert row.act_mean == pytest.approx(float(both.double().mean()), rel=1e-9)
    assert row.act_std == pytest.approx(_std(both), rel=1e-9)
    assert row.grad_std == pytest.approx(_std(torch.cat([g.reshape(-1) for g in grads])),
                                         rel=1e-6)


def test_lstm_and_resnet_gradients_equal_plain_autograd():
    torch.manual_seed(0)
    lstm = examples.lstm()
    x = _inputs("lstm")
    rows = inspect(lstm, x).layers
    out, _ = lstm.lstm(x)
    y = lstm.head(out[:, -1])
    loss = y.double().pow(2).sum() / (2 * x.shape[0])
    g_out, g_y, g_hh = torch.autograd.grad(loss, [out, y, lstm.lstm.weight_hh_l0])
    assert rows["act_std"].tolist() == pytest.approx([_std(out), _std(y)], rel=1e-6)
    assert rows["grad_std"].tolist() == pytest.approx([_std(g_out), _std(g_y)], rel=1e-6)
    assert rows["weight_grad_norm"].iloc[0] == pytest.approx(float(g_hh.double().norm()),
                                                             rel=1e-6)

    resnet = examples.resnet().eval()  # BatchNorm from its running statistics: one result
    x = _inputs("resnet")
    rows = inspect(resnet, x).layers.set_index("name")
    stem = resnet.stem(x)
    block = resnet.blocks[0]
    bn1 = block.bn1(stem)
    y = resnet.head(resnet.blocks(stem).mean(dim=(2, 3)))
    loss = y.double().pow(2).sum() / (2 * x.shape[0])
    g_stem, g_y = torch.autograd.grad(loss, [stem, y])
    assert rows.loc["stem", "grad_std"] == pytest.approx(_std(g_stem), rel=1e-6)
    assert rows.loc["head", "grad_std"] == pytest.approx(_std(g_y), rel=1e-6)
    # the ReLU after bn1 is bn1's activation: dead where its input is <= 0
    assert rows.loc["blocks.0.bn1", "preact_std"] == pytest.approx(_std(bn1), rel=1e-6)
    assert rows.loc["blocks.0.bn1", "act_std"] == pytest.approx(_std(torch.relu(bn1)), rel=1e-6)
    assert rows.loc["blocks.0.bn1", "zero_frac"] == pytest.approx(
        float((bn1 <= 0).double().mean()))
    assert rows.loc["blocks.0.bn1", "dead_frac"] == pytest.approx(
        float((bn1 <= 0).all(dim=0).double().mean()))


def test_a_pooling_head_is_not_read_as_vanishing_gradients():
    torch.manual_seed(0)
    model = examples.resnet().eval()
    result = inspect(model, _inputs("resnet"))
    grads = result.layers.set_index("name")["grad_std"]
    # the mean over 8x8 positions divides each entry's gradient by 64: head vs stem is geometry
    assert grads["head"] / grads["stem"] > 10
    assert 0.1 < grads["blocks.1.conv2"] / grads["stem"] < 10  # along the stream
    assert result.verdict_kind == "healthy"


def test_the_trend_is_read_to_the_last_layer_of_the_first_ones_size():
    model = nn.Sequential(*(layer for _ in range(4) for layer in (nn.Linear(16, 16), nn.Tanh())),
                          nn.Linear(16, 2))
    init_(model, "normal", std=0.01, seed=0)  # each layer scales the signal by 0.04
    result = inspect(model, torch.randn(32, 16, generator=torch.Generator().manual_seed(0)))
    acts = result.layers["act_std"]
    assert result.verdict == (
        f"Vanishing: activation std falls from {acts.iloc[0]:.2g} (layer 1) to "
        f"{acts.iloc[3]:.1e} (layer 4, the last with as many entries per input (16)).")
