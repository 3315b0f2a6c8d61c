"""The recurrent networks (initviz/archs/rnn.py) and the eye scheme: the cells against PyTorch's
own, the init per gate, mean-field theory through time, the Jacobian dh_T/dh_0 against an
independent SVD, the sequence data sets and training on them.

Tolerances. As in tests/test_residual.py, at width n one step multiplies a second moment by a
factor whose relative spread over draws of the weights is about 0.8/√n (5% at n = 256); the
input's share U x_t is a sum over input_dim Gaussians, whose second moment over the units
spreads by √(2/(n·input_dim)). Comparisons allow 3 such spreads.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from initviz.activations import get_activation
from initviz.archs import get_arch
from initviz.archs.rnn import probe_sequence
from initviz.cli import main
from initviz.datasets import load_dataset
from initviz.errors import InvalidSpec
from initviz.jacobian import jacobian_spectrum, probe_input
from initviz.meanfield import mean_field, second_moment, slope_moment
from initviz.network import NetworkSpec, build_model
from initviz.probe import LAYER_COLUMNS, profile
from initviz.schemes import SCHEMES
from initviz.training import TrainSpec, train


TANH = get_activation("tanh")


def recurrent(arch, width=32, steps=6, input_dim=5, **kwargs):
    return NetworkSpec.stack(width, steps, arch=arch, input_dim=input_dim, **kwargs)


# --------------------------------------------------------------------------------------------------
# The cells are PyTorch's


@pytest.mark.parametrize("arch, reference, options, seed", [
    ("rnn", lambda: nn.RNN(5, 32, nonlinearity="tanh", batch_first=True),
     dict(scheme="orthogonal"), 3),
    ("lstm", lambda: nn.LSTM(5, 32, batch_first=True),
     dict(scheme="xavier_normal", arch_params={"forget_bias": 1.0}), 4),
])
def test_the_cell_computes_what_torchs_own_does_with_its_weights(arch, reference, options, seed):
    # nn.RNN / nn.LSTM given our weights (their input bias zero: ours has one bias per gate)
    model = build_model(recurrent(arch, activation="tanh", bias="normal", **options), seed=seed)
    theirs = reference()
    with torch.no_grad():
        theirs.weight_hh_l0.copy_(model.cell.recurrent.weight)
        theirs.bias_hh_l0.copy_(model.cell.recurrent.bias)
        theirs.weight_ih_l0.copy_(model.cell.input.weight)
        theirs.bias_ih_l0.zero_()
    x = torch.randn(4, 6, 5)
    states, _ = theirs(x)
    ours = torch.stack(list(model.hidden_states(x)), dim=1)
    torch.testing.assert_close(ours, states, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# What each weight starts as


def test_the_scheme_draws_each_lstm_gate_block_on_its_own():
    width = 48
    model = build_model(recurrent("lstm", width=width, scheme="orthogonal",
                                  arch_params={"forget_bias": 1}), seed=0)
    w = model.cell.recurrent.weight.detach().double()
    eye = torch.eye(width, dtype=torch.float64)
    for gate in range(4):
        block = w[gate * width:(gate + 1) * width]
        torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
    # The whole (4·width × width) matrix is not one orthogonal draw: its blocks are not
    # orthogonal to one another.
    assert float((w[:width] @ w[width:2 * width].T).abs().max()) > 0.1
    bias = model.cell.recurrent.bias.view(4, width)
    assert bool((bias[1] == 1.0).all())  # forget gate
    assert bool((bias[[0, 2, 3]] == 0.0).all())  # the bias scheme's zeros


def test_eye_makes_every_recurrent_block_the_identity_and_leaves_u_lecun():
    width, input_dim = 64, 16
    for arch in ("rnn", "lstm"):
        model = build_model(recurrent(arch, width=width, input_dim=input_dim, scheme="eye"),
                            seed=0, out_features=10)
        blocks = model.cell.recurrent.weight.view(-1, width, width)
        assert all(torch.equal(block, torch.eye(width)) for block in blocks)
        u = model.cell.input.weight.detach().double()
        # LeCun normal: std 1/√input_dim = 0.25; relative standard error 1/√(2·n) per entry count
        n = u.numel()
        assert float(u.std()) == pytest.approx(input_dim ** -0.5, rel=3 / math.sqrt(2 * n))
        assert float(model.head.weight.detach().double().std()) == pytest.approx(
            width ** -0.5, rel=3 / math.sqrt(2 * model.head.weight.numel()))


def test_eye_on_a_non_square_weight_is_the_rectangular_identity_with_its_law():
    scheme = SCHEMES["eye"]
    for rows, cols in ((3, 5), (5, 3), (4, 4)):
        w = scheme.apply(torch.empty(rows, cols), {}, torch.Generator())
        expected = torch.zeros(rows, cols)
        expected[range(min(rows, cols)), range(min(rows, cols))] = 1.0
        assert torch.equal(w, expected)
        law = scheme.weight_law(cols, rows, {})  # (fan_in, fan_out)
        assert law.mean() == pytest.approx(float(w.double().mean()), rel=1e-12)
        assert law.std() == pytest.approx(float(w.double().std(correction=0)), rel=1e-12)
    assert scheme.code({}, "m.weight") == "nn.init.eye_(m.weight)"
    assert "Le, Jaitly & Hinton (2015)" in scheme.reference


def test_eye_has_no_mean_field_theory_and_says_why():
    prof = profile(recurrent("rnn", scheme="eye", activation="relu"), batch=16)
    assert prof.prediction is None
    assert "mean 0" in prof.theory_note


def test_forget_bias_takes_a_real_number_and_refuses_others_in_a_sentence():
    arch = get_arch("lstm")
    assert dict(arch.resolve({"forget_bias": "0.5"})) == {"forget_bias": 0.5}
    assert dict(arch.resolve({})) == {"forget_bias": 0.0}
    for bad in ("x", "nan", 11, True):
        with pytest.raises(InvalidSpec, match=r"forget_bias .* give a number in \[-10, 10\]"):
            arch.resolve({"forget_bias": bad})
    with pytest.raises(InvalidSpec, match="no option"):
        get_arch("rnn").resolve({"forget_bias": 1})
    # A number control needs every number of one type (Streamlit refuses a mix).
    option = arch.options["forget_bias"]
    assert {type(x) for x in (*option.bounds, option.default, option.step)} == {float}


def test_a_recurrent_net_refuses_what_it_cannot_be_in_a_sentence():
    with pytest.raises(InvalidSpec, match="one width for every time step"):
        NetworkSpec(sizes=(8, 16), arch="rnn")
    with pytest.raises(InvalidSpec, match="inside the recurrence"):
        recurrent("lstm", norm="layernorm")
    with pytest.raises(InvalidSpec, match="LSUV"):
        recurrent("rnn", scheme="lsuv")


# --------------------------------------------------------------------------------------------------
# Mean-field theory through time


def test_without_input_after_step_1_a_tanh_rnn_follows_the_mlps_length_map():
    # x_t = 0 for t > 1: each step is a plain layer with the recurrent weights (σ_w² = 1 for
    # orthogonal and Xavier at a square W; normal bias σ_b² = 0.05²), so the MLP's length map
    # q_t = σ_w² E[tanh²(√q_{t-1} z)] + σ_b² from q_1 = E[x²] + σ_b² describes it.
    width, steps, input_dim = 256, 12, 256
    for scheme in ("orthogonal", "xavier_normal"):
        spec = recurrent("rnn", width=width, steps=steps, input_dim=input_dim,
                         activation="tanh", scheme=scheme, bias="normal")
        for seed in (0, 1):
            model = build_model(spec, seed)
            x = torch.zeros(512, steps, input_dim)
            x[:, 0] = torch.randn(512, input_dim, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                variances = [float(h.double().var()) for h in model.hidden_states(x)]
            q = 1.0 + 0.05**2
            for step, measured in enumerate(variances, start=1):
                second = float(second_moment(TANH, q))  # E[tanh²(√q z)]
                spread = 3 * (0.8 / math.sqrt(width)) * math.sqrt(step)
                assert measured == pytest.approx(second, rel=spread), (scheme, seed, step)
                q = second + 0.05**2


def test_the_profile_measures_the_driven_length_map_forward_and_backward():
    # With N(0, 1) inputs at every step the input adds E[x²] = 1 to σ_b²: q settles at the
    # fixed point of q = E[tanh²(√q z)] + 1, and the gradient shrinks by χ₁ per step.
    width = 256
    spec = recurrent("rnn", width=width, steps=12, input_dim=256, activation="tanh",
                     scheme="orthogonal")
    summary = mean_field("tanh", 1.0, 1.0)
    for seed in (0, 1, 2):
        prof = profile(spec, batch=512, seed=seed)
        theory = prof.prediction
        assert prof.theory == summary
        assert theory.preact_var[-1] == pytest.approx(summary.q_star, rel=1e-6)
        preact = prof.layers["preact_std"].to_numpy(np.float64) ** 2
        assert preact == pytest.approx(np.array(theory.preact_var), rel=0.05)
        grad = prof.layers["grad_std"].to_numpy(np.float64) ** 2
        assert grad == pytest.approx(np.array(theory.grad_var), rel=0.15)
    # Backward: one factor σ_w² E[tanh'²(√q_t z)] per step t = 12, ..., 2, near χ₁ = 0.40 from
    # step 2 on.
    factors = [float(slope_moment(TANH, q)) for q in theory.preact_var[1:]]
    assert theory.grad_var[0] == pytest.approx(math.prod(factors), rel=1e-9)
    assert factors[-1] == pytest.approx(summary.chi1, rel=1e-6)
    assert theory.grad_var[0] == pytest.approx(summary.chi1 ** 11, rel=0.05)


# --------------------------------------------------------------------------------------------------
# The Jacobian dh_T/dh_0


@pytest.mark.parametrize("steps", [8, 64])
def test_an_orthogonal_linear_rnn_is_an_isometry_through_time(steps):
    spec = recurrent("rnn", width=64, steps=steps, input_dim=3, activation="linear",
                     scheme="orthogonal", bias="normal")
    result = jacobian_spectrum(spec, seed=2)
    # Independently: in a linear net dh_T/dh_0 = W^T, whatever the inputs and the bias.
    w = build_model(spec, seed=2).cell.recurrent.weight.detach().double().numpy()
    expected = np.linalg.svd(np.linalg.matrix_power(w, steps), compute_uv=False)
    np.testing.assert_allclose(result.singular_values, expected, rtol=1e-9, atol=1e-12)
    # float32 weights: orthogonal to ~1e-7 per entry, 1e-5 after 64 steps (measured 4e-6).
    assert np.abs(result.singular_values - 1).max() < 1e-5
    assert result.conditioning == "isometric"


def test_a_gaussian_linear_rnn_spreads_its_spectrum_more_the_longer_it_runs():
    spreads = []
    for steps in (2, 8, 32):
        spec = recurrent("rnn", width=64, steps=steps, input_dim=3, activation="linear",
                         scheme="lecun_normal")
        spreads.append([jacobian_spectrum(spec, seed=seed).spread for seed in (0, 1, 2)])
    # Per seed and on average: W^T of one Gaussian W spreads with T (1.3-1.6, 3-5, 5-6
    # measured at T = 2, 8, 32).
    spreads = np.array(spreads)
    assert (np.diff(spreads, axis=0) > 0).all()
    assert spreads[0].mean() > 1.0


def test_the_lstm_jacobian_is_that_of_nn_lstmcell_over_the_probe_sequence():
    spec = recurrent("lstm", width=16, steps=5, input_dim=3, activation="tanh",
                     scheme="orthogonal", arch_params={"forget_bias": 1.0})
    result = jacobian_spectrum(spec, seed=1)
    model = build_model(spec, seed=1).double()
    cell = nn.LSTMCell(3, 16).double()
    with torch.no_grad():
        cell.weight_hh.copy_(model.cell.recurrent.weight)
        cell.bias_hh.copy_(model.cell.recurrent.bias)
        cell.weight_ih.copy_(model.cell.input.weight)
        cell.bias_ih.zero_()
    sequence = probe_sequence(5, 3).double()

    def last_state(h0):
        h, c = h0, torch.zeros_like(h0)
        for x_t in sequence:
            h, c = cell(x_t, (h, c))
        return h

    h0 = probe_input(spec, seed=1).double()  # the h_0 the spectrum is taken at
    jac = torch.autograd.functional.jacobian(last_state, h0)
    np.testing.assert_allclose(result.singular_values, torch.linalg.svdvals(jac).numpy(),
                               rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Sequence data sets


def test_the_sequence_data_sets_are_digits_read_step_by_step():
    digits = load_dataset("digits", seed=3)
    for name in ("digits_rows", "digits_pixels"):
        data = load_dataset(name, seed=3)
        for part in ("x_train", "y_train", "x_val", "y_val"):
            assert torch.equal(getattr(data, part), getattr(digits, part))
    rows = get_arch("rnn").for_data(recurrent("rnn"), 64, "digits_rows")
    pixels = get_arch("lstm").for_data(recurrent("lstm"), 64, "digits_pixels")
    assert (rows.depth, rows.input_dim, pixels.depth, pixels.input_dim) == (8, 8, 64, 1)
    # Step t of digits_rows is the image's row t.
    image = digits.x_train[0].view(8, 8)
    assert torch.equal(digits.x_train[:1].view(1, 8, 8)[0, 2], image[2])


def test_recurrent_nets_refuse_vector_data_and_other_nets_sequence_data():
    with pytest.raises(InvalidSpec, match="digits is a data set of vectors.*digits_rows"):
        TrainSpec(recurrent("rnn"), schemes=("orthogonal",), dataset="digits")
    with pytest.raises(InvalidSpec, match="digits_rows is a sequence of 8 steps.*from digits"):
        TrainSpec(NetworkSpec.stack(16, 2), dataset="digits_rows")
    with pytest.raises(InvalidSpec, match="digits_pixels is a sequence of 64 steps"):
        TrainSpec(NetworkSpec.stack(16, 2, arch="residual"), dataset="digits_pixels")


# --------------------------------------------------------------------------------------------------
# Training


@pytest.mark.parametrize("scheme,activation", [("orthogonal", "tanh"), ("eye", "relu")])
def test_orthogonal_and_eye_rnns_learn_digits_row_by_row(scheme, activation):
    # Measured after 200 SGD steps (lr 0.05, batch 64): val_acc 0.91 (orthogonal, tanh) and
    # 0.90 (eye, relu) at seed 0; chance is 0.1.
    spec = TrainSpec(recurrent("rnn", width=64, activation=activation), schemes=(scheme,),
                     dataset="digits_rows", steps=200, lr=0.05, optimizer="sgd", eval_every=50)
    assert spec.network.depth == 8
    run = train(spec).runs[0]
    assert not run.diverged
    assert run.final.val_acc > 0.7


# --------------------------------------------------------------------------------------------------
# The command line


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_json_has_one_entry_per_time_step_and_the_forget_bias(capsys):
    code, out, err = _cli(capsys, "profile", "--arch", "lstm", "--forget-bias", "1",
                          "--width", "16", "--depth", "7", "--input-dim", "3",
                          "--activation", "tanh", "--batch", "32", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert (document["config"]["arch"], document["config"]["forget_bias"]) == ("lstm", 1.0)
    layers = document["layers"]
    assert [row["layer"] for row in layers] == list(range(1, 8))
    assert all(set(LAYER_COLUMNS) <= set(row) for row in layers)
    # The probe's loss is at the last step: its gradient is r there, unit variance.
    assert layers[-1]["grad_std"] == pytest.approx(1.0, abs=0.05)
    assert document["theory"]["q_star"] is None


def test_jacobian_json_of_an_orthogonal_linear_rnn_is_all_ones(capsys):
    code, out, err = _cli(capsys, "jacobian", "--arch", "rnn", "--width", "32", "--depth",
                          "20", "--activation", "linear", "--scheme", "orthogonal", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["zero_count"] == 0
    assert np.abs(np.array(document["singular_values"]) - 1).max() < 1e-5


def test_train_json_on_digits_rows_takes_t_and_input_dim_from_the_data(capsys):
    code, out, err = _cli(capsys, "train", "--arch", "rnn", "--dataset", "digits_rows",
                          "--schemes", "orthogonal,eye", "--width", "16", "--depth", "3",
                          "--steps", "5", "--json")
    assert code == 0
    document = json.loads(out)
    assert [run["scheme"] for run in document["runs"]] == ["orthogonal", "eye"]


@pytest.mark.parametrize("argv,message", [
    (("theory", "--arch", "lstm"), "the mean-field length map does not model"),
    (("profile", "--arch", "lstm", "--forget-bias", "x"), "give a number in [-10, 10]"),
    (("train", "--arch", "lstm", "--dataset", "moons"), "trains on digits_rows or digits_pixels"),
])
def test_the_command_line_refuses_in_one_sentence(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
