"""The residual MLP (initviz/archs/residual.py): its structure and inits against what the papers
prescribe, and the residual stream's variance recursion against measurement.

Tolerances. As in tests/test_probe.py, at width n a Linear + activation multiplies a second
moment by a factor whose relative spread over draws of the weights is about 0.8/√n (3.5% at
n = 512). A block's branch has two such layers, and what it adds is at most as large as the
stream, so one block's factor on the stream spreads by at most √2·3.5% ≈ 5% at n = 512; over
l blocks the log-deviation is a random walk, √l·5%. Comparisons allow 3 such spreads.
"""

import math

import numpy as np
import pytest
import torch

from initviz.archs.residual import theory_line
from initviz.errors import InvalidSpec
from initviz.meanfield import predict, residual_stream
from initviz.network import NetworkSpec, build_model, estimate_bytes, memory_budget
from initviz.phase import splined_moments
from initviz.probe import LAYER_COLUMNS, profile

WIDTH = 512
SPREAD = math.sqrt(2) * 0.8 / math.sqrt(WIDTH)


def residual(depth, init="plain", width=WIDTH, **kwargs):
    return NetworkSpec.stack(width, depth, arch="residual", arch_params={"residual": init},
                             **kwargs)


def stream_var(prof) -> np.ndarray:
    return prof.layers["act_std"].to_numpy(np.float64) ** 2


def test_plain_relu_kaiming_stream_doubles_every_block_forward_and_backward():
    depth = 8
    prof = profile(residual(depth), batch=512, seed=1)
    theory = np.array(prof.prediction.act_var)
    assert theory[1:] / theory[:-1] == pytest.approx(2.0, rel=1e-12)
    measured = stream_var(prof)
    per_block = (measured[-1] / measured[0]) ** (1 / (depth - 1))
    assert per_block == pytest.approx(2.0, rel=3 * SPREAD * math.sqrt(depth - 1) / (depth - 1))
    assert measured == pytest.approx(theory, rel=3 * SPREAD * math.sqrt(depth))
    # Backward, dL/dh doubles per block too: the gradient at block 1 is 2^(depth-1) times the
    # probe's unit one at the last block.
    grad = prof.layers["grad_std"].to_numpy(np.float64) ** 2
    assert prof.prediction.grad_var[0] == pytest.approx(2.0 ** (depth - 1), rel=1e-12)
    assert grad[0] / grad[-1] == pytest.approx(2.0 ** (depth - 1),
                                               rel=3 * SPREAD * math.sqrt(depth))


def test_scaled_stream_grows_by_about_e_over_the_depth():
    depth = 64
    prof = profile(residual(depth, "scaled", width=128), batch=256, seed=2)
    theory = np.array(prof.prediction.act_var)
    q0 = 2.0  # the stem: Kaiming (gain √2) on N(0, 1) inputs
    assert theory[-1] / q0 == pytest.approx((1 + 1 / depth) ** depth, rel=1e-6)
    assert theory[-1] / q0 == pytest.approx(math.e, rel=0.01)
    measured = stream_var(prof)
    # Over seeds 0-5 this ratio of ratios spread by 5% (0.94 to 1.08, mean 0.99): 3 spreads.
    assert measured[-1] / measured[0] == pytest.approx(theory[-1] / theory[0], rel=0.15)


def test_the_theory_line_reaches_10000_blocks():
    line = theory_line(residual(3, "scaled", width=16), 10_000)
    assert len(line.act_var) == 10_000
    assert line.act_var[-1] / 2.0 == pytest.approx((1 + 1e-4) ** 10_000, rel=1e-9)
    second, slope = splined_moments("tanh")
    depth = 10_000
    tanh = residual_stream(second, slope, ((1.0, 0.0), (1.0 / depth, 0.0)), 1.0, 1.0, depth)
    assert all(math.isfinite(v) for v in tanh.act_var)
    # tanh's branch adds less than the stream (E[tanh²] < q): below ReLU's e, above 1.
    assert 1.0 < tanh.act_var[-1] < math.e
    with pytest.raises(InvalidSpec):
        theory_line(residual(3, width=16), 10_001)


@pytest.mark.parametrize("init", ["fixup", "rezero"])
def test_fixup_and_rezero_leave_the_stream_unchanged_at_init(init):
    prof = profile(residual(20, init, width=64), batch=64, seed=3)
    layers = prof.layers
    assert (layers["preact_std"] == 0.0).all()
    assert (layers["branch_to_stream_ratio"] == 0.0).all()
    assert layers["act_std"].nunique() == 1
    assert np.array(prof.prediction.act_var) == pytest.approx(2.0, rel=1e-12)
    assert layers["grad_std"].nunique() == 1


def test_fixup_parameters_follow_zhang_et_al():
    depth = 9
    spec = residual(depth, "fixup", width=256, bias="normal", bias_params={"std": 0.1})
    model = build_model(spec, seed=0, out_features=10)
    plain = build_model(residual(depth, "plain", width=256, bias="normal",
                                 bias_params={"std": 0.1}), seed=0, out_features=10)
    for block, reference in zip(model.blocks, plain.blocks):
        branch = block.branch
        assert torch.equal(branch.fc1.weight, reference.branch.fc1.weight * depth ** -0.5)
        assert not branch.fc2.weight.any() and not branch.fc2.bias.any()
        for name in ("bias1a", "bias1b", "bias2a", "bias2b"):
            assert getattr(branch, name).bias.item() == 0.0
        assert branch.scale.value.item() == 1.0
    assert not model.head.weight.any() and not model.head.bias.any()
    layers = profile(spec, batch=16).layers
    assert layers["weight_std"].to_numpy() == pytest.approx(
        layers["weight_std_theory"].to_numpy(), rel=0.02)
    assert layers["weight_std_theory"][0] == pytest.approx(math.sqrt(2 / 256) / 3, rel=1e-12)


@pytest.mark.parametrize("init", ["plain", "scaled", "fixup", "rezero"])
def test_parameter_count_is_the_models(init):
    spec = residual(5, init, width=12, input_dim=7)
    model = build_model(spec, seed=0, out_features=3)
    assert spec.parameter_count(3) == sum(p.numel() for p in model.parameters())


def test_rezero_multiplier_is_learnable_and_zero():
    model = build_model(residual(3, "rezero", width=8), seed=0)
    for block in model.blocks:
        assert block.gate.value.requires_grad and block.gate.value.item() == 0.0


def test_scaled_multiplies_only_the_branchs_last_weight():
    plain = build_model(residual(4, "plain", width=32, bias="normal"), seed=5)
    scaled = build_model(residual(4, "scaled", width=32, bias="normal"), seed=5)
    for p, s in zip(plain.blocks, scaled.blocks):
        assert torch.equal(s.branch.fc1.weight, p.branch.fc1.weight)
        assert torch.equal(s.branch.fc2.weight, p.branch.fc2.weight * 0.5)
        assert torch.equal(s.branch.fc2.bias, p.branch.fc2.bias)


def test_tanh_stream_and_branch_follow_the_recursion():
    spec = residual(12, "plain", activation="tanh", scheme="xavier_normal")
    prof = profile(spec, batch=512, seed=4)
    layers = prof.layers
    tolerance = 3 * SPREAD * math.sqrt(len(layers))
    assert stream_var(prof) == pytest.approx(layers["stream_var_theory"].to_numpy(),
                                             rel=tolerance)
    assert (layers["preact_std"] ** 2).to_numpy() == pytest.approx(
        layers["preact_var_theory"].to_numpy(), rel=2 * tolerance)


def test_the_profile_keeps_every_contract_key_with_one_entry_per_block():
    prof = profile(residual(5, width=16), batch=8)
    document = prof.to_json_dict()
    assert len(document["layers"]) == 5
    assert set(LAYER_COLUMNS) <= set(document["layers"][0])
    assert document["config"]["arch"] == "residual"
    assert document["config"]["residual"] == "plain"
    assert document["theory"]["q_star"] is None
    assert "no fixed point" in document["theory"]["note"]


def test_a_thousand_blocks_fit_the_memory_budget_at_small_width():
    spec = residual(1000, "scaled", width=16)
    assert estimate_bytes(spec, 256) <= memory_budget()
    assert predict(spec).act_var[-1] / 2.0 == pytest.approx(math.e, rel=1e-3)


@pytest.mark.parametrize("make, field", [
    (lambda: NetworkSpec(sizes=(8, 16), arch="residual"), "sizes"),
    (lambda: residual(3, width=8, scheme="lsuv"), "scheme"),
    (lambda: residual(3, "warm", width=8), "residual"),
    (lambda: NetworkSpec.stack(8, 3, arch="mlp", arch_params={"residual": "plain"}),
     "mlp option"),
    (lambda: NetworkSpec.stack(8, 3, arch="dense"), "arch"),
    (lambda: residual(1001, width=8), "depth"),
])
def test_bad_residual_specs_are_refused_with_a_sentence(make, field):
    with pytest.raises(InvalidSpec) as caught:
        make()
    assert caught.value.field == field
