"""The probe: its numbers against torch autograd on the same network, and the classic facts of
signal propagation (and their mean-field predictions) measured on wide networks.

Tolerances. At width n = 1024 a layer multiplies the signal's second moment by a factor that
fluctuates from one draw of the weights to the next with a relative spread of about 0.8/√n ≈ 2.5%
(measured over 40 draws at batch 128: 1.5% for the Linear alone, the rest from the activation).
The deviation from the infinite-width value compounds like a random walk, ≈ 2.5%·√l at layer l;
comparisons with theory allow 3 such spreads. Quantities averaged over all B·n entries of a layer
(the last layer's gradient) have the plain sampling error 1/√(2·B·n).
"""

import json
import math
from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from initviz.activations import get_activation
from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec, build_model
from initviz.probe import (BASIS_POINTS, INPUT_STREAM, KINDS, MAX_BINS, MAX_PROBE_BATCH,
                           profile)

CONTRACT_COLUMNS = [
    "layer", "fan_in", "fan_out", "weight_mean", "weight_std", "weight_std_theory",
    "preact_mean", "preact_std", "preact_var_theory", "act_mean", "act_std",
    "saturated_frac", "dead_frac", "zero_frac", "grad_std", "weight_grad_norm",
    "grad_to_weight_ratio",
]
WIDE = 1024
BATCH = 128
DEPTH = 6
SPREAD = 0.8 / math.sqrt(WIDE)  # relative per-layer fluctuation at width WIDE, see above


@cache
def _profile(spec: NetworkSpec, batch: int = BATCH, seed: int = 0, bins: int = 60):
    return profile(spec, batch=batch, seed=seed, device="cpu", bins=bins)


def _wide(depth: int = DEPTH, **kwargs) -> NetworkSpec:
    return NetworkSpec(sizes=(WIDE,) * depth, input_dim=WIDE, **kwargs)


def _assert_close(actual, expected, rel) -> None:
    """Elementwise |actual − expected| <= rel·|expected|; rel may be one number per layer."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    error = np.abs(actual / expected - 1)
    assert np.all(error <= rel), f"relative errors {np.round(error, 4)} over {np.round(rel, 4)}"


def _per_layer(depth: int, layers_from=1) -> np.ndarray:
    """Allowed relative deviation from the infinite-width value, l layers deep: 3·SPREAD·√l."""
    return 3 * SPREAD * np.sqrt(np.arange(layers_from, layers_from + depth))


def _second_moment(layers: pd.DataFrame, kind: str) -> np.ndarray:
    return (layers[f"{kind}_mean"] ** 2 + layers[f"{kind}_std"] ** 2).to_numpy()


# --------------------------------------------------------------------------------------------------
# Against torch: the same network, inputs and loss, with every statistic computed directly


def _reference(spec: NetworkSpec, batch: int, seed: int) -> dict:
    """Everything the probe measures, from plain autograd on the model the probe builds."""
    model = build_model(spec, seed)
    inputs = torch.Generator().manual_seed(seed ^ INPUT_STREAM)
    x = torch.randn(batch, spec.input_dim, generator=inputs)
    r = torch.randn(batch, spec.sizes[-1], generator=inputs)
    preacts, acts, h = [], [], x
    for block in model:
        z = block[:-1](h)  # Linear (+ norm): the input of the activation
        h = block.act(z)
        h.retain_grad()
        preacts.append(z.detach())
        acts.append(h)
    (h * r).sum().backward()
    return {"model": model, "x": x, "r": r, "preact": preacts,
            "act": [a.detach() for a in acts], "grad": [a.grad for a in acts],
            "weight": [block.linear.weight.detach() for block in model]}


def _fraction_saturated(activation: str, z: torch.Tensor, a: torch.Tensor) -> float:
    """The documented definitions, on the outputs."""
    if activation == "tanh":
        return float((a.abs() > 0.97).double().mean())
    if activation == "sigmoid":
        return float(((a < 0.03) | (a > 0.97)).double().mean())
    raise AssertionError(activation)


TORCH_CASES = [
    NetworkSpec(sizes=(48, 64, 32), input_dim=20, activation="tanh", scheme="xavier_uniform",
                bias="normal", bias_params={"std": 0.3}),
    NetworkSpec(sizes=(40,) * 3, input_dim=40, activation="relu", scheme="kaiming_uniform",
                bias="pytorch_default", norm="batchnorm"),
    NetworkSpec(sizes=(30, 50), input_dim=10, activation="sigmoid", scheme="normal",
                scheme_params={"std": 0.8}, norm="layernorm"),
    NetworkSpec(sizes=(32, 32), input_dim=16, activation="linear", scheme="orthogonal"),
]


@pytest.mark.parametrize("spec", TORCH_CASES, ids=lambda s: f"{s.activation}-{s.norm}")
def test_every_statistic_equals_torch_on_the_same_network(spec):
    ref = _reference(spec, batch=50, seed=5)
    layers = _profile(spec, batch=50, seed=5).layers
    assert list(layers.columns) == CONTRACT_COLUMNS
    scheme = spec.resolved_scheme
    rows = []
    for i, (fan_in, fan_out) in enumerate(spec.fans):
        w, z, a, g = ref["weight"][i], ref["preact"][i], ref["act"][i], ref["grad"][i]
        w_grad = ref["model"][i].linear.weight.grad
        rows.append({"layer": i + 1, "fan_in": fan_in, "fan_out": fan_out,
                     "weight_mean": w.mean(), "weight_std": w.std(correction=0),
                     "weight_std_theory": scheme.weight_std(fan_in, fan_out, spec.scheme_params),
                     "preact_mean": z.mean(), "preact_std": z.std(correction=0),
                     "act_mean": a.mean(), "act_std": a.std(correction=0),
                     # per input: the batch's gradient norm over √batch (see probe)
                     "grad_std": g.std(correction=0), "weight_grad_norm": w_grad.norm() / 50**0.5,
                     "grad_to_weight_ratio": w_grad.norm() / 50**0.5 / w.norm()})
    expected = pd.DataFrame(rows).astype(float)
    for column in expected:
        # float32 sums in another order: equal to ~1e-6 of the spread of the values
        kind = column.split("_")[0]
        scale = expected[f"{kind}_std"] if column.endswith("_mean") else expected[column].abs()
        assert np.all(np.abs(layers[column] - expected[column]) <= 2e-5 * scale + 1e-12), column
    if spec.activation in ("tanh", "sigmoid"):
        saturated = [_fraction_saturated(spec.activation, z, a)
                     for z, a in zip(ref["preact"], ref["act"])]
        # a count over a float32 total: equal to float32 rounding
        assert layers["saturated_frac"].tolist() == pytest.approx(saturated, abs=1e-7)
    if spec.activation == "relu":
        zero = [float((a == 0).double().mean()) for a in ref["act"]]
        dead = [float((a == 0).all(dim=0).double().mean()) for a in ref["act"]]
        assert layers["zero_frac"].tolist() == pytest.approx(zero, abs=1e-7)
        assert layers["dead_frac"].tolist() == pytest.approx(dead, abs=1e-7)
    if spec.activation == "linear":  # can neither saturate nor die: reported as n/a
        assert layers[["saturated_frac", "dead_frac", "zero_frac"]].isna().all().all()


def test_histograms_and_percentiles_match_the_tensors_they_summarize():
    spec, batch, bins = TORCH_CASES[0], 50, 40
    ref = _reference(spec, batch=batch, seed=5)
    result = _profile(spec, batch=batch, seed=5, bins=bins)
    hist, pct = result.histograms, result.percentiles
    assert list(hist.columns) == ["layer", "kind", "bin_lo", "bin_hi", "count"]
    assert list(pct.columns) == ["layer", "kind"] + [f"p{bp}" for bp in BASIS_POINTS]
    assert len(hist) == len(KINDS) * spec.depth * bins and len(pct) == len(KINDS) * spec.depth
    for (layer, kind), group in hist.groupby(["layer", "kind"]):
        values = ref[kind][layer - 1].double().numpy().ravel()
        assert group["count"].sum() == values.size  # every element in exactly one bin
        assert np.allclose(group["bin_hi"].to_numpy()[:-1], group["bin_lo"].to_numpy()[1:])
        edges = np.append(group["bin_lo"].to_numpy(), group["bin_hi"].to_numpy()[-1])
        counts, _ = np.histogram(values, edges)
        # float32 vs float64 binning may move an element that sits on an edge by one bin
        assert np.abs(counts - group["count"].to_numpy()).sum() <= 2
        row = pct[(pct["layer"] == layer) & (pct["kind"] == kind)].iloc[0]
        bands = row[[f"p{bp}" for bp in BASIS_POINTS]].to_numpy(dtype=float)
        assert np.all(np.diff(bands) >= 0)
        assert bands[0] == pytest.approx(values.min(), rel=1e-6, abs=1e-12)
        assert bands[-1] == pytest.approx(values.max(), rel=1e-6, abs=1e-12)
        # Read off the histogram: within one bin width of the exact quantile.
        exact = np.quantile(values, np.array(BASIS_POINTS) / 10000)
        assert bands == pytest.approx(exact, abs=edges[1] - edges[0])


@pytest.mark.parametrize("values", [
    torch.randn(5000, generator=torch.Generator().manual_seed(0)) * 3 + 1,
    torch.full((300,), -0.25),                                   # constant: a padded range
    torch.tensor([0.0] * 99 + [1.0]),                            # the maximum joins the last bin
    torch.tensor([1.0, float("nan"), 2.0]),                      # not finite: never shown
])
def test_the_gpu_histogram_path_gives_the_cpu_result(values):
    """On a GPU the probe bins with index_add_ (bincount would sync); check it here on the CPU."""
    from initviz.probe import TensorStats

    def summary(stats):
        stats.add("act", 1, values)
        return {key: value[0] for key, value in stats.summaries([("act", 1)]).items()}

    cpu = summary(TensorStats(bins=7))
    other = summary(TensorStats(bins=7, scatter=True))  # what a CUDA tensor gets
    assert bool(cpu["finite"]) == bool(torch.isfinite(values).all())
    assert cpu["counts"].shape == other["counts"].shape == (7,)
    if cpu["finite"]:
        assert torch.equal(cpu["counts"], other["counts"])
        assert int(cpu["counts"].sum()) == len(values)
        assert float(cpu["mean"]) == pytest.approx(float(values.double().mean()), abs=1e-6)
        assert float(cpu["std"]) == pytest.approx(float(values.double().std(correction=0)),
                                                  abs=1e-6)


def test_profile_is_reproducible_from_a_seed():
    spec = TORCH_CASES[0]
    first, again = (profile(spec, batch=30, seed=8, device="cpu") for _ in range(2))
    for frame in ("layers", "histograms", "percentiles"):
        pd.testing.assert_frame_equal(getattr(first, frame), getattr(again, frame))
    other = profile(spec, batch=30, seed=9, device="cpu")
    assert not np.allclose(first.layers["preact_std"], other.layers["preact_std"])


@pytest.mark.parametrize("kwargs, field", [
    ({"batch": 0}, "batch"), ({"batch": MAX_PROBE_BATCH + 1}, "batch"),
    ({"batch": 2.5}, "batch"),
    ({"bins": 1}, "bins"), ({"bins": MAX_BINS + 1}, "bins"), ({"device": "tpu"}, "device"),
])
def test_bad_profile_arguments_name_the_field(kwargs, field):
    with pytest.raises(InvalidSpec) as caught:
        profile(NetworkSpec.stack(8, 2), **kwargs)
    assert caught.value.field == field


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_device_falls_back_to_cpu_with_a_notice():
    result = profile(NetworkSpec.stack(8, 2), batch=4, device="cuda")
    assert result.device == "cpu"
    assert "cuda" in result.device_notice and "\n" not in result.device_notice


# --------------------------------------------------------------------------------------------------
# Exploding networks are a result, not a crash


def test_an_exploding_network_reports_where_values_stop_being_finite():
    # N(0, 100²) weights with ReLU at width 256 multiply the scale by 100·√128 ≈ 1131 per layer:
    # float32 (max 3.4e38) overflows near layer 38.5 / log10(1131) ≈ 12.6.
    spec = NetworkSpec(sizes=(256,) * 16, input_dim=256, scheme="normal",
                       scheme_params={"std": 100.0})
    result = _profile(spec, batch=32)
    ref = _reference(spec, batch=32, seed=0)
    finite = [bool(torch.isfinite(z).all() and torch.isfinite(a).all())
              for z, a in zip(ref["preact"], ref["act"])]
    first = finite.index(False) + 1
    assert 11 <= first <= 14
    assert result.first_nonfinite_layer == first
    layers = result.layers.set_index("layer")
    forward = ["preact_mean", "preact_std", "act_mean", "act_std"]
    # Up to the overflow, even values near 1e37 are measured (no overflowing sums or squares) ...
    before = layers.loc[:first - 1, forward]
    assert before.notna().all().all() and layers.loc[first - 1, "preact_std"] > 1e30
    expected = [float(z.double().std(correction=0)) for z in ref["preact"][:first - 1]]
    _assert_close(before["preact_std"], expected, rel=1e-5)
    # ... and from there on they are NaN, not inf or garbage, with no histogram.
    assert layers.loc[first:, forward].isna().all().all()
    assert not result.histograms.query("kind == 'preact' and layer >= @first").size
    document = result.to_json_dict()
    json.dumps(document, allow_nan=False)  # NaN becomes null
    assert document["first_nonfinite_layer"] == first
    assert document["layers"][first - 1]["preact_std"] is None


# --------------------------------------------------------------------------------------------------
# The classic facts, at width 1024 (E[x²] = 1 for the N(0, 1) input)


def _relu(scheme: str) -> NetworkSpec:
    return _wide(activation="relu", scheme=scheme)


@pytest.mark.parametrize("scheme, factor", [
    ("xavier_uniform", 1 / 2),     # Glorot & Bengio: Var(W) = 1/n, and ReLU halves E[a²]
    ("pytorch_default", 1 / 6),    # Var(W) = 1/(3n): (1/3)·(1/2) per layer
    ("kaiming_normal", 1.0),       # He et al.: Var(W) = 2/n makes up for ReLU's half
])
def test_relu_second_moment_per_layer(scheme, factor):
    moments = _second_moment(_profile(_relu(scheme)).layers, "act")
    # Layer l holds factor^l, up to the compounded finite-width wobble ...
    _assert_close(moments, factor ** np.arange(1, DEPTH + 1), rel=_per_layer(DEPTH))
    # ... and the geometric mean of the per-layer factors is within 3·SPREAD (its own error is
    # about SPREAD/√DEPTH).
    _assert_close(moments[-1] ** (1 / DEPTH), factor, rel=3 * SPREAD)


def test_the_last_layers_gradient_is_the_random_projection():
    layers = _profile(_relu("kaiming_normal")).layers
    # dL/dh_L = r ~ N(0, 1): its sample std over B·n entries has standard error 1/√(2·B·n).
    assert layers["grad_std"].iloc[-1] == pytest.approx(1.0, abs=5 / math.sqrt(2 * BATCH * WIDE))


def test_kaiming_relu_holds_the_gradient_too():
    result = _profile(_relu("kaiming_normal"))
    predicted = np.array(result.prediction.grad_var)
    assert predicted == pytest.approx(np.ones(DEPTH), rel=1e-9)  # fan_in = fan_out: held
    # The wobble compounds from the top (where the gradient is r) down.
    _assert_close(result.layers["grad_std"] ** 2, predicted, rel=_per_layer(DEPTH)[::-1])


def test_relu_zeroes_half_the_outputs_and_kills_no_unit():
    layers = _profile(_relu("kaiming_normal")).layers
    # Each unit's pre-activation has a small random offset (the previous layer's positive mean
    # times its weights' sum), so per layer the fraction wanders by ~1/√n; the mean over layers
    # is within 1%.
    assert layers["zero_frac"].to_numpy() == pytest.approx(np.full(DEPTH, 0.5), abs=0.03)
    assert layers["zero_frac"].mean() == pytest.approx(0.5, abs=0.01)
    # Layer 1 sees independent N(0, 1) inputs and no bias: a unit is off for one input with
    # probability 1/2, for all 128 with 2^-128. Deeper, the inputs' correlation grows and a few
    # units are off for the whole batch, but far from half of them.
    assert layers["dead_frac"].iloc[0] == 0
    assert (layers["dead_frac"] < 0.1).all()
    assert layers["saturated_frac"].isna().all()


def test_a_unit_is_dead_when_it_is_off_for_every_input():
    # A bias of -100 puts every pre-activation far below 0: every unit is off for every input.
    spec = NetworkSpec(sizes=(64, 64), input_dim=16, activation="relu", bias="constant",
                       bias_params={"val": -100.0})
    layers = _profile(spec, batch=32).layers
    assert layers["dead_frac"].tolist() == [1.0, 1.0]
    assert layers["zero_frac"].tolist() == [1.0, 1.0]


def test_gradient_to_weight_ratio_does_not_depend_on_the_batch_size():
    spec = NetworkSpec.stack(256, 6, activation="relu", scheme="kaiming_normal")
    small, large = (_profile(spec, batch=b).layers["grad_to_weight_ratio"] for b in (64, 4096))
    # ‖∂L/∂W‖ of the whole batch grew 8× from 64 to 4096 inputs; per input it holds, up to the
    # sampling noise of 64 inputs.
    _assert_close(small, large, rel=0.15)


def test_standard_normal_weights_saturate_tanh():
    layers = _profile(_wide(activation="tanh", scheme="normal")).layers
    # Var(z) ≈ n·E[tanh²] ≈ 1000: almost every unit sits on a flat tail.
    assert (layers["saturated_frac"] > 0.9).all()
    # The saturated fraction the mean-field variance predicts: P(|z| > atanh 0.97), z ~ N(0, q);
    # a binomial standard error of ~0.001 over B·n units, allowed 0.01.
    limit = get_activation("tanh").saturated_outside[1]
    q = layers["preact_var_theory"].to_numpy()
    predicted = 2 * stats.norm.sf(limit / np.sqrt(q))
    assert layers["saturated_frac"].to_numpy() == pytest.approx(predicted, abs=0.01)


def test_selu_with_lecun_normal_settles_at_mean_0_variance_1():
    layers = _profile(_wide(activation="selu", scheme="lecun_normal")).layers
    # Klambauer et al. (2017): (0, 1) is an attracting fixed point of SELU with Var(W) = 1/n, so
    # the finite-width wobble (SPREAD per layer) does not accumulate.
    assert layers["act_mean"].to_numpy() == pytest.approx(np.zeros(DEPTH), abs=0.02)
    assert layers["act_std"].to_numpy() ** 2 == pytest.approx(np.ones(DEPTH), abs=3 * SPREAD)


THEORY_CASES = [
    # the networks of the facts above (already profiled) ...
    _relu("kaiming_normal"), _relu("pytorch_default"),
    _wide(activation="tanh", scheme="normal"), _wide(activation="selu", scheme="lecun_normal"),
    # ... and biases, smooth activations, a gain
    _wide(3, activation="tanh", scheme="normal", scheme_params={"std": math.sqrt(2 / WIDE)},
          bias="normal", bias_params={"std": math.sqrt(0.05)}),
    _wide(3, activation="gelu", scheme="kaiming_uniform", bias="pytorch_default"),
    _wide(3, activation="sigmoid", scheme="xavier_normal"),
    _wide(3, activation="elu", scheme="xavier_uniform", scheme_params={"gain": 1.2}),
]


@pytest.mark.parametrize("spec", THEORY_CASES, ids=lambda s: f"{s.activation}-{s.scheme}")
def test_mean_field_preact_variance_matches_measurement_at_width_1024(spec):
    layers = _profile(spec).layers
    predicted = layers["preact_var_theory"].to_numpy()
    assert np.all(np.isfinite(predicted))
    _assert_close(layers["preact_std"] ** 2, predicted, rel=_per_layer(spec.depth))


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_norm_layers_normalize_and_have_no_mean_field_prediction(norm):
    result = _profile(NetworkSpec(sizes=(64,) * 3, input_dim=32, activation="tanh",
                                  scheme="normal", norm=norm))
    layers = result.layers
    # The activation's input is the normalized Linear output: mean 0, variance 1 (up to eps).
    assert layers["preact_mean"].to_numpy() == pytest.approx(np.zeros(3), abs=1e-5)
    assert layers["preact_std"].to_numpy() == pytest.approx(np.ones(3), abs=1e-3)
    assert layers["preact_var_theory"].isna().all()
    assert result.theory is None and norm in result.theory_note
    assert result.to_json_dict()["theory"]["chi1"] is None
