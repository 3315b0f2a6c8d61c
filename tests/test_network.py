"""The network spec (validation, normalization, hashing), the model built from it, its memory."""

import pytest
import torch
from torch import nn

from initviz.errors import InvalidSpec, TooLarge, format_bytes, quote
from initviz.network import (DEFAULT_MEMORY_BUDGET, MAX_DEPTH, MAX_INPUT_DIM, MAX_WIDTH,
                             NetworkSpec, build_model, check_memory, estimate_bytes,
                             memory_budget)
from initviz.probe import profile


def test_spec_is_normalized_so_equal_choices_are_equal_and_hash_alike():
    given_as_dict = NetworkSpec(sizes=[64, 32], scheme="normal", scheme_params={"std": 0.5},
                                bias="normal", bias_params={"std": "0.1"})
    given_as_pairs = NetworkSpec(sizes=(64, 32), scheme="normal",
                                 scheme_params=(("std", 0.5), ("mean", 0.0)),
                                 bias="normal", bias_params=(("std", 0.1),))
    assert given_as_dict == given_as_pairs
    assert hash(given_as_dict) == hash(given_as_pairs)
    assert len({given_as_dict, given_as_pairs}) == 1  # usable as a cache key
    assert given_as_dict.sizes == (64, 32)
    assert given_as_dict.scheme_params == (("mean", 0.0), ("std", 0.5))  # sorted, defaults in
    assert given_as_dict != NetworkSpec(sizes=(64, 32), scheme="normal",
                                        scheme_params={"std": 0.6})


def test_stack_and_derived_properties():
    spec = NetworkSpec.stack(16, 3, input_dim=5)
    assert spec == NetworkSpec(sizes=(16, 16, 16), input_dim=5)
    assert spec.depth == 3
    assert spec.fans == [(5, 16), (16, 16), (16, 16)]
    assert spec.to_dict() == {
        "sizes": [16, 16, 16], "input_dim": 5, "activation": "relu", "scheme": "kaiming_normal",
        "params": {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
        "bias": "zeros", "bias_params": {}, "norm": "none",
    }


def test_spec_is_frozen():
    spec = NetworkSpec.stack(8, 2)
    with pytest.raises(AttributeError):
        spec.activation = "tanh"


RANGE_WIDTH = f"a whole number in [1, {MAX_WIDTH}]"


@pytest.mark.parametrize("build, field, value, allowed", [
    (lambda: NetworkSpec(sizes=(0,)), "width", 0, RANGE_WIDTH),
    (lambda: NetworkSpec(sizes=(8, MAX_WIDTH + 1)), "width", MAX_WIDTH + 1, RANGE_WIDTH),
    (lambda: NetworkSpec(sizes=(2.5,)), "width", 2.5, RANGE_WIDTH),
    (lambda: NetworkSpec(sizes=("wide",)), "width", "wide", RANGE_WIDTH),
    (lambda: NetworkSpec(sizes=(True,)), "width", True, RANGE_WIDTH),
    (lambda: NetworkSpec(sizes=()), "sizes", (), "one or more layer widths"),
    (lambda: NetworkSpec(sizes="64"), "sizes", "64", "one or more layer widths"),
    (lambda: NetworkSpec.stack(8, 0), "depth", 0, f"a whole number in [1, {MAX_DEPTH}]"),
    (lambda: NetworkSpec.stack(8, MAX_DEPTH + 1), "depth", MAX_DEPTH + 1,
     f"a whole number in [1, {MAX_DEPTH}]"),
    (lambda: NetworkSpec(sizes=(8,) * (MAX_DEPTH + 1)), "depth", MAX_DEPTH + 1,
     f"a whole number in [1, {MAX_DEPTH}]"),
    (lambda: NetworkSpec(sizes=(8,), input_dim=0), "input_dim", 0,
     f"a whole number in [1, {MAX_INPUT_DIM}]"),
    (lambda: NetworkSpec(sizes=(8,), activation="swish"), "activation", "swish", "one of linear"),
    (lambda: NetworkSpec(sizes=(8,), scheme="he"), "scheme", "he", "one of zeros"),
    (lambda: NetworkSpec(sizes=(8,), bias="xavier_normal"), "bias", "xavier_normal",
     "one of zeros, constant, normal, pytorch_default"),
    (lambda: NetworkSpec(sizes=(8,), norm="groupnorm"), "norm", "groupnorm",
     "one of none, batchnorm, layernorm"),
    (lambda: NetworkSpec(sizes=(8,), scheme="normal", scheme_params={"std": 101}),
     "normal.std", 101, "[0, 100]"),
    # a bias parameter is named as the page's widget and the link name it: bias.<scheme>.<param>
    (lambda: NetworkSpec(sizes=(8,), bias="constant", bias_params={"value": 1}),
     "bias.constant.value", 1, "val"),
    (lambda: NetworkSpec(sizes=(8,), bias="normal", bias_params={"std": -1}),
     "bias.normal.std", -1, "[0, 100]"),
])
def test_invalid_spec_names_the_field_the_value_and_the_allowed_range(build, field, value,
                                                                      allowed):
    with pytest.raises(InvalidSpec) as caught:
        build()
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.field, error.value) == (field, value)
    assert allowed in error.allowed
    message = str(error)
    assert field.rsplit(".", 1)[0] in message and quote(value) in message and allowed in message
    assert "\n" not in message


@pytest.mark.parametrize("norm, norm_type", [("none", None), ("batchnorm", nn.BatchNorm1d),
                                             ("layernorm", nn.LayerNorm)])
def test_model_is_linear_norm_activation_blocks(norm, norm_type):
    spec = NetworkSpec(sizes=(6, 9), input_dim=4, activation="tanh", norm=norm)
    model = build_model(spec, seed=0)
    assert len(model) == 2
    for block, (fan_in, fan_out) in zip(model, spec.fans):
        assert isinstance(block.linear, nn.Linear)
        assert (block.linear.in_features, block.linear.out_features) == (fan_in, fan_out)
        assert isinstance(block.act, nn.Tanh)
        assert list(block._modules) == (["linear", "act"] if norm_type is None
                                        else ["linear", "norm", "act"])
        if norm_type is not None:
            assert isinstance(block.norm, norm_type)
    assert model(torch.zeros(3, 4)).shape == (3, 9)


def test_out_features_adds_one_output_linear_initialized_like_the_rest():
    spec = NetworkSpec(sizes=(12, 8), input_dim=4, scheme="constant", scheme_params={"val": 0.5},
                       bias="constant", bias_params={"val": -1.0})
    model = build_model(spec, seed=0, out_features=3)
    head = model[-1]
    assert len(model) == 3 and isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (8, 3)
    assert torch.all(head.weight == 0.5) and torch.all(head.bias == -1.0)
    assert model(torch.zeros(2, 4)).shape == (2, 3)
    assert spec.parameter_count(3) == sum(p.numel() for p in model.parameters())
    assert spec.parameter_count() == sum(p.numel() for p in model[:-1].parameters())


def _parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("scheme", ["kaiming_normal", "orthogonal", "sparse", "lsuv"])
def test_build_model_is_reproducible_from_a_seed_and_differs_across_seeds(scheme):
    spec = NetworkSpec(sizes=(16, 16), input_dim=8, scheme=scheme, bias="normal")
    first, again = _parameters(build_model(spec, 3)), _parameters(build_model(spec, 3))
    other = _parameters(build_model(spec, 4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])  # weights
    assert not torch.equal(first[1], other[1])  # biases


def test_build_model_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_model(NetworkSpec(sizes=(32, 32), scheme="sparse", bias="pytorch_default"), seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_layers_are_initialized_independently():
    w = build_model(NetworkSpec(sizes=(16, 16, 16), input_dim=16), 0)
    assert not torch.equal(w[1].linear.weight, w[2].linear.weight)


def test_memory_estimate_grows_with_every_dimension():
    base = NetworkSpec.stack(64, 4)
    assert estimate_bytes(base, 256) < estimate_bytes(base, 512)
    assert estimate_bytes(base, 256) < estimate_bytes(NetworkSpec.stack(128, 4), 256)
    assert estimate_bytes(base, 256) < estimate_bytes(NetworkSpec.stack(64, 8), 256)
    # at least the float32 weights and the activations of one pass
    assert estimate_bytes(base, 256) >= 4 * (base.parameter_count() + 256 * sum(base.sizes))


def test_check_memory_refuses_above_the_budget_with_the_numbers_in_the_message():
    with pytest.raises(TooLarge) as caught:
        check_memory("this thing", 3 * 1024**3, budget=2 * 1024**3)
    assert (caught.value.needed_bytes, caught.value.budget_bytes) == (3 * 1024**3, 2 * 1024**3)
    assert "this thing needs about 3.0 GiB" in str(caught.value)
    assert "2.0 GiB" in str(caught.value)
    check_memory("this thing", 2 * 1024**3, budget=2 * 1024**3)  # at the budget: fine


def test_profile_refuses_the_largest_config_before_allocating_it():
    # 4096 wide, 500 deep, batch 8192: tens of GiB; refused from the estimate alone, at once.
    spec = NetworkSpec.stack(MAX_WIDTH, MAX_DEPTH)
    with pytest.raises(TooLarge) as caught:
        profile(spec, batch=8192)
    needed = estimate_bytes(spec, 8192)
    assert caught.value.needed_bytes == needed > memory_budget()
    assert format_bytes(needed) in str(caught.value)


def test_memory_budget_is_configurable(monkeypatch):
    spec = NetworkSpec.stack(64, 2)
    needed = estimate_bytes(spec, 32)
    monkeypatch.setenv("INITVIZ_MEMORY_BUDGET_MB", str(needed / 1024**2 / 2))
    with pytest.raises(TooLarge):
        profile(spec, batch=32)
    assert len(profile(spec, batch=32, memory_budget=needed).layers) == 2
    monkeypatch.delenv("INITVIZ_MEMORY_BUDGET_MB")
    assert memory_budget() == DEFAULT_MEMORY_BUDGET


def test_the_default_budget_fits_a_one_gigabyte_host_yet_runs_the_page_defaults():
    # The server alone takes ~450 MB; one computation at the budget must leave room on 1 GB.
    assert DEFAULT_MEMORY_BUDGET <= 300 * 1024**2
    check_memory("the page's default profile", estimate_bytes(NetworkSpec.stack(256, 20), 256))
    check_memory("a 1024-wide, 20-deep profile", estimate_bytes(NetworkSpec.stack(1024, 20), 256))
