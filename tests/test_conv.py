"""The convolutional stack (initviz/archs/conv.py) and the conv-only schemes: its structure and
fans against torch's, its mean-field theory against measurement (circular padding exactly, zero
padding position by position), the delta-orthogonal isometry against an independent Fourier
computation, training on digits as images, and the sentences that refuse what does not apply.

Tolerances. A conv layer multiplies the second moment by a factor that depends on its weights
(shared by every position); over seeds 0-5 at 128 channels, 6 × 6 maps and batch 16 the measured
pre-activation variance over its mean-field value was 1 ± 0.9% (std over seeds, layers 1-4, both
paddings). Comparisons of one seed allow 4%, of a mean over 3 seeds 3%.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from initviz.activations import get_activation
from initviz.archs.conv import spatial_field
from initviz.errors import InvalidSpec
from initviz.jacobian import input_output_jacobian, jacobian_spectrum, probe_input
from initviz.meanfield import predict_stack
from initviz.network import NetworkSpec, build_model
from initviz.phase import phase_diagram
from initviz.probe import LAYER_COLUMNS, profile
from initviz.report import histogram_of, verdict, weight_theory
from initviz.schemes import schemes_for
from initviz.training import TrainSpec, train


def conv(width=16, depth=3, *, kernel=3, padding="zeros", image_size=8, **kwargs):
    return NetworkSpec.stack(width, depth, arch="conv", arch_params={
        "kernel": kernel, "padding": padding, "image_size": image_size}, **kwargs)


# --------------------------------------------------------------------------------------------------
# Structure, fans and schemes


def test_the_model_is_same_size_conv2d_layers_with_the_chosen_kernel_and_padding():
    spec = conv(12, 4, kernel=5, padding="circular", image_size=7, input_dim=3)
    model = build_model(spec, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 12)] + [(12, 12)] * 3
    for c in convs:
        assert (c.kernel_size, c.stride, c.padding, c.padding_mode) == ((5, 5), (1, 1), (2, 2),
                                                                         "circular")
    assert model(torch.randn(2, 3, 7, 7)).shape == (2, 12, 7, 7)
    head = build_model(spec, seed=0, out_features=10)
    assert head(torch.randn(2, 3, 7, 7)).shape == (2, 10)


def test_fans_are_torchs_and_the_table_shows_them():
    spec = conv(12, 3, kernel=5, input_dim=3)
    model = build_model(spec, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    torch_fans = [nn.init._calculate_fan_in_and_fan_out(c.weight) for c in convs]
    assert spec.fans == torch_fans == [(3 * 25, 12 * 25), (12 * 25, 12 * 25), (12 * 25, 12 * 25)]
    table = profile(spec, batch=4).layers
    assert table[["fan_in", "fan_out"]].values.tolist() == [list(f) for f in torch_fans]
    assert set(LAYER_COLUMNS) <= set(table.columns)


def test_pytorch_default_is_conv2ds_own_reset_parameters():
    spec = conv(6, 1, kernel=3, input_dim=4, scheme="pytorch_default", bias="pytorch_default")
    ours = build_model(spec, seed=11).layers[0].conv
    torch.manual_seed(11)  # nn.Conv2d draws from the global generator, seeded alike
    theirs = nn.Conv2d(4, 6, 3, padding=1)
    assert torch.equal(ours.weight, theirs.weight)
    assert torch.equal(ours.bias, theirs.bias)


@pytest.mark.parametrize("scheme, params", [
    ("kaiming_normal", {"mode": "fan_in"}), ("kaiming_normal", {"mode": "fan_out"}),
    ("kaiming_uniform", {"nonlinearity": "relu"}), ("xavier_uniform", {}),
    ("lecun_normal", {}), ("orthogonal", {"gain": 2.0}), ("trunc_normal", {"std": 0.1}),
    ("delta_orthogonal", {"gain": 1.5}), ("dirac", {}),
])
@pytest.mark.parametrize("c_in, c_out", [(64, 32), (32, 64)])
def test_every_scheme_draws_through_torch_with_the_conv_fans(scheme, params, c_in, c_out):
    # 32 x 64 x 5 x 5 = 51,200 entries: the sample std is within 1% of the law's (3 std errors).
    spec = conv(c_out, 2, kernel=5, input_dim=c_in, scheme=scheme, scheme_params=params)
    weight = build_model(spec, seed=0).layers[0].conv.weight
    expected = spec.architecture.weight_laws(spec)[0].std()
    assert weight.std(correction=0).item() == pytest.approx(expected, rel=0.01)
    prof = profile(spec, batch=2)
    assert prof.layers["weight_std_theory"][0] == pytest.approx(expected)
    fan_in, fan_out = spec.fans[0]
    if scheme == "kaiming_normal":
        mode = params["mode"]
        assert expected == pytest.approx(math.sqrt(2) / math.sqrt(spec.fans[0][mode == "fan_out"]))
    if scheme == "orthogonal":  # orthogonal_ flattens the weight to (c_out, c_in·k²)
        assert expected == pytest.approx(2.0 / math.sqrt(max(c_out, fan_in)))
    # The histogram's expected counts add up to the weight's entries (c_in·c_out·k²), not to
    # fan_in·fan_out, where the law has a density: all of them, or the share off the exact zeros
    # (delta-orthogonal's 24 of 25 taps).
    theory = weight_theory(prof, 1)
    law = spec.architecture.weight_laws(spec)[0]
    if "expected" in theory:
        bins = histogram_of(prof, "weight", 1)
        width = float((bins["bin_hi"] - bins["bin_lo"]).mean())
        total = np.trapezoid(theory["expected"], theory["value"]) / width
        assert total == pytest.approx(c_in * c_out * 25 * (1 - law.zero_fraction), rel=0.02)
    assert law.zero_fraction == pytest.approx(
        {"delta_orthogonal": 24 / 25, "dirac": 1 - 1 / (25 * max(c_in, c_out))}.get(scheme, 0.0))
    assert (weight == 0).double().mean().item() == pytest.approx(law.zero_fraction, abs=1e-12)


def test_delta_orthogonal_is_an_orthogonal_centre_tap_and_dirac_is_torchs_identity():
    spec = conv(8, 2, kernel=5, input_dim=8, scheme="delta_orthogonal",
                scheme_params={"gain": 1.5})
    weight = build_model(spec, seed=3).layers[1].conv.weight.detach().double()
    centre = weight[:, :, 2, 2]
    assert (centre.T @ centre).numpy() == pytest.approx(2.25 * np.eye(8), abs=1e-5)
    weight[:, :, 2, 2] = 0
    assert torch.count_nonzero(weight) == 0
    dirac = build_model(conv(8, 2, input_dim=5, scheme="dirac"), seed=0)
    expected = nn.init.dirac_(torch.empty(8, 5, 3, 3))
    assert torch.equal(dirac.layers[0].conv.weight, expected)
    x = torch.randn(2, 8, 8, 8)  # linear dirac layers copy their input
    assert torch.equal(dirac.layers[1].conv(x), x)


def test_conv_only_schemes_are_offered_and_refused_by_architecture():
    assert {"dirac", "delta_orthogonal"} <= set(schemes_for("conv"))
    assert "sparse" not in schemes_for("conv")
    assert not {"dirac", "delta_orthogonal"} & set(schemes_for("mlp"))
    assert "sparse" in schemes_for("mlp")
    with pytest.raises(InvalidSpec, match="delta_orthogonal .* initializes only conv networks, "
                                          "not a plain stack"):
        NetworkSpec.stack(8, 2, scheme="delta_orthogonal")
    with pytest.raises(InvalidSpec, match="sparse .* not a convolutional stack"):
        conv(scheme="sparse")


def test_bad_options_are_refused_with_a_sentence():
    with pytest.raises(InvalidSpec, match="kernel 4 is not valid: give an odd whole number"):
        conv(kernel=4)
    with pytest.raises(InvalidSpec, match="at most 5 for image_size 3"):
        conv(kernel=7, image_size=3)
    with pytest.raises(InvalidSpec, match='padding "reflect" is not valid: give one of zeros, '
                                          'circular'):
        conv(padding="reflect")


# --------------------------------------------------------------------------------------------------
# Mean-field theory


def _ratios(spec, seeds=(0, 1, 2)) -> np.ndarray:
    """Measured over predicted pre-activation variance per layer, mean over seeds."""
    rows = []
    for seed in seeds:
        prof = profile(spec, batch=16, seed=seed)
        measured = prof.layers["preact_std"].to_numpy() ** 2
        rows.append(measured / np.array(prof.prediction.preact_var))
    return np.mean(rows, axis=0)


@pytest.mark.parametrize("activation, scheme", [("tanh", "xavier_normal"),
                                                ("relu", "kaiming_normal")])
def test_circular_padding_follows_the_plain_stacks_theory_with_fan_in_c_k2(activation, scheme):
    spec = conv(128, 4, padding="circular", image_size=6, input_dim=128, activation=activation,
                scheme=scheme)
    prediction = profile(spec, batch=2).prediction
    assert prediction.preact_var == predict_stack(spec).preact_var
    assert prediction.summary is not None
    # tanh: 1 ± 1% per layer over seeds 0-5; ReLU's spread grows with depth (0.4%, 3%, 10%,
    # 13% at layers 1-4): its first two layers are compared, with 3 spreads of a 3-seed mean.
    ratios = _ratios(spec)
    assert (ratios if activation == "tanh" else ratios[:2]) == pytest.approx(
        1.0, abs=0.03 if activation == "tanh" else 0.06)
    # The position-by-position recursion agrees with the plain stack on a torus (the splines'
    # 2e-7, times a few layers).
    field = spatial_field(get_activation(activation), tuple((2.0 if activation == "relu"
                                                            else 1.0, 0.0) for _ in range(4)),
                          (1.0,) * 3, 6, 3, "circular")
    assert field.preact_var == pytest.approx(prediction.preact_var, rel=1e-6)
    assert field.grad_var == pytest.approx(prediction.grad_var, rel=1e-6)


def test_zero_padding_starves_the_border_as_the_position_by_position_theory_says():
    spec = conv(128, 4, padding="zeros", image_size=6, input_dim=128, activation="tanh",
                scheme="xavier_normal")
    prof = profile(spec, batch=16, seed=0)
    layers = prof.layers
    stack = np.array(predict_stack(spec).preact_var)
    honest = np.array(prof.prediction.preact_var)
    # Layer 1 on a 6x6 map: a 3x3 window holds 9, 6 (edge) or 4 (corner) pixels, so the map's
    # mean variance is σ_w² = 1 times (16*9 + 16*6 + 4*4) / (36*9) = 0.790 of the plain stack's;
    # the loss reaches further in with every layer (0.60 of it at layer 4).
    assert honest[0] / stack[0] == pytest.approx((16 * 9 + 16 * 6 + 4 * 4) / (36 * 9), rel=1e-6)
    assert np.all(np.diff(honest / stack) < 0) and honest[-1] / stack[-1] < 0.65
    assert _ratios(spec) == pytest.approx(1.0, abs=0.03)
    measured = layers["preact_std"].to_numpy() ** 2
    assert np.all(measured / stack < 0.85)  # the plain stack's theory is far off
    # The border ring against the inside, measured and predicted per layer; at layer 1 the
    # ring's 16 edge pixels see 6 of 9 inputs and its 4 corners 4, the 16 inside ones all 9.
    assert layers["border_to_interior_std"].to_numpy() == pytest.approx(
        layers["border_to_interior_std_theory"].to_numpy(), abs=0.02)
    assert layers["border_to_interior_std_theory"][0] == pytest.approx(
        math.sqrt((16 * 6 + 4 * 4) / (20 * 9)), rel=1e-6)
    assert prof.theory is None and "zero padding" in prof.theory_note
    # Backward, the same loss at the border: the gradient reaching layer 1 is 0.25 of the
    # unit one at the top (measured within 1% over seeds 0-5: 3% allowed for 3 seeds).
    grads = [profile(spec, batch=16, seed=seed).layers["grad_std"].to_numpy() ** 2
             for seed in range(3)]
    assert np.mean(grads, axis=0) / np.array(prof.prediction.grad_var) == pytest.approx(
        1.0, abs=0.03)
    assert prof.prediction.grad_var[0] < 0.3


def test_a_zero_padded_stack_that_vanishes_is_told_why_with_the_numbers():
    spec = conv(16, 30, input_dim=3)  # ReLU, Kaiming: what the plain stack keeps at q = 2
    prof = profile(spec, batch=64)
    found = verdict(prof)
    assert found.kind == "vanishing"
    honest, measured = prof.prediction.preact_var[-1], prof.layers["preact_std"].iloc[-1] ** 2
    assert predict_stack(spec).preact_var[-1] == pytest.approx(2.0)
    assert (f"at layer 30 the theory puts the pre-activation variance at {honest:.3g} (measured "
            f"{measured:.3g}), {honest / 2:.3g} of the 2 the same scheme keeps without a "
            "border") in found.recommendation
    healthy = verdict(profile(conv(16, 30, input_dim=3, padding="circular"), batch=64))
    assert "zero padding" not in healthy.recommendation


def test_the_phase_diagram_says_why_a_zero_padded_stack_has_no_point():
    zeros = phase_diagram(conv(), n=4)
    assert zeros.summary is None and "zero padding" in zeros.note
    circular = phase_diagram(conv(padding="circular"), n=4)
    assert circular.summary.phase == "critical" and circular.note is None


def test_centre_only_schemes_and_circular_padding_have_no_border_effect():
    for spec in (conv(8, 3, padding="zeros", scheme="delta_orthogonal", input_dim=8),
                 conv(8, 3, padding="circular", input_dim=8)):
        prediction = profile(spec, batch=2).prediction
        assert prediction.border_to_interior == (1.0,) * 3
        assert prediction.summary is not None


# --------------------------------------------------------------------------------------------------
# The Jacobian


def circular_conv_singular_values(weights: list[torch.Tensor], side: int) -> np.ndarray:
    """The singular values of a stack of linear circular convolutions by the Fourier transform
    (Sedghi, Gupta & Long 2019, The Singular Values of Convolutional Layers): the DFT over the
    positions turns each conv into one ``c_out × c_in`` matrix per frequency,
    ``Ŵ(f) = Σ_t W_t e^{−2πi f·t/n}``, so the stack is their product frequency by frequency."""
    product = None
    for weight in weights:
        per_frequency = torch.fft.fft2(weight.double(), s=(side, side)).permute(2, 3, 0, 1)
        product = per_frequency if product is None else per_frequency @ product
    return np.sort(torch.linalg.svdvals(product).reshape(-1).numpy())[::-1]


def _weights(spec, seed=0):
    return [block.conv.weight.detach() for block in build_model(spec, seed).layers]


@pytest.mark.parametrize("scheme", ["delta_orthogonal", "lecun_normal"])
def test_the_jacobian_of_a_linear_circular_stack_matches_its_fourier_spectrum(scheme):
    spec = conv(4, 12, padding="circular", image_size=5, input_dim=4, activation="linear",
                scheme=scheme)
    result = jacobian_spectrum(spec, seed=0)
    assert result.shape == (100, 100)
    fourier = circular_conv_singular_values(_weights(spec), 5)
    assert result.singular_values == pytest.approx(fourier, rel=1e-9,
                                                   abs=1e-9 * fourier[0])


def test_delta_orthogonal_is_an_isometry_and_gaussian_spreads_with_depth():
    # Linear, circular: every s is 1 up to the float32 rounding of the weights (1e-5).
    iso = jacobian_spectrum(conv(4, 48, padding="circular", image_size=4, input_dim=4,
                                 activation="linear", scheme="delta_orthogonal"))
    assert np.abs(iso.singular_values - 1).max() < 1e-5 and iso.conditioning == "isometric"
    # Zero padding too: the centre tap never reads the padding.
    zeros = jacobian_spectrum(conv(4, 48, image_size=4, input_dim=4, activation="linear",
                                   scheme="delta_orthogonal"))
    assert np.abs(zeros.singular_values - 1).max() < 1e-5
    # tanh at small scale: the probe input times 1e-3 keeps every |z| below about 4e-3, where
    # tanh' >= 1 - z² = 1 - 1.6e-5: over 48 layers s stays within 48 * 1.6e-5 < 1e-3 of 1.
    spec = conv(4, 48, padding="circular", image_size=4, input_dim=4, activation="tanh",
                scheme="delta_orthogonal")
    model = build_model(spec, seed=0).to(torch.float64).layers
    jac = input_output_jacobian(model, probe_input(spec, 0).double() * 1e-3)
    assert np.abs(torch.linalg.svdvals(jac).numpy() - 1).max() < 1e-3
    # Gaussian (LeCun, σ_w² = 1): the spread std/mean of s² grows with depth, mean of 3 seeds.
    spreads = [np.mean([jacobian_spectrum(conv(4, depth, padding="circular", image_size=4,
                                                input_dim=4, activation="linear",
                                                scheme="lecun_normal"), seed=seed).spread
                        for seed in range(3)]) for depth in (2, 8, 32)]
    assert spreads[0] < spreads[1] < spreads[2] and spreads[2] > 3


# --------------------------------------------------------------------------------------------------
# Training


def test_kaiming_conv_trains_on_digits_as_images():
    network = conv(16, 3, input_dim=64, image_size=5)  # fitted to the data: 1 x 8 x 8
    spec = TrainSpec(network, ("kaiming_normal",), dataset="digits", optimizer="adam", lr=0.01,
                     steps=60, batch=64, eval_every=60)
    assert (spec.network.input_dim, spec.network.option("image_size")) == (1, 8)
    result = train(spec)
    (run,) = result.runs
    assert not run.diverged
    assert run.final.val_acc > 0.6  # chance is 0.1
    # Per layer l = 1 ... depth + 1 (the head last): every conv layer's weight is tracked.
    record = run.final
    assert len(record.grad_norm) == len(record.update_ratio) == 4
    assert all(0 < ratio < 1 for ratio in record.update_ratio)


def test_a_data_set_that_is_not_images_is_refused_with_a_sentence():
    with pytest.raises(InvalidSpec, match='"moons" is not valid: give an image data set \\(digits '
                                          "\\(1×8×8\\)\\): a convolutional stack reads images"):
        TrainSpec(conv(), ("kaiming_normal",), dataset="moons")


# --------------------------------------------------------------------------------------------------
# The command line


def test_cli_profile_jacobian_and_train_take_the_conv_options(capsys):
    from initviz.cli import main

    code = main(["profile", "--arch", "conv", "--kernel", "5", "--padding", "circular",
                 "--image-size", "6", "--input-dim", "3", "--width", "8", "--depth", "2",
                 "--batch", "4", "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert {k: document["config"][k] for k in ("arch", "kernel", "padding", "image_size")} == {
        "arch": "conv", "kernel": 5, "padding": "circular", "image_size": 6}
    assert [(row["fan_in"], row["fan_out"]) for row in document["layers"]] == [(75, 200),
                                                                              (200, 200)]
    assert all(row["border_to_interior_std_theory"] == 1.0 for row in document["layers"])
    main(["profile", "--arch", "conv", "--width", "4", "--depth", "2", "--batch", "4"])
    out, _ = capsys.readouterr()
    assert out.startswith("convolutional stack, 2 layers, image_size 8, kernel 3, padding zeros, "
                          "relu, kaiming_normal")
    code = main(["jacobian", "--arch", "conv", "--padding", "circular", "--image-size", "4",
                 "--width", "4", "--depth", "8", "--activation", "linear", "--scheme",
                 "delta_orthogonal", "--json"])
    out, _ = capsys.readouterr()
    document = json.loads(out)
    assert code == 0 and document["shape"] == [64, 64] and document["zero_count"] == 0
    assert max(abs(s - 1) for s in document["singular_values"]) < 1e-5
    code = main(["profile", "--arch", "conv", "--kernel", "4"])
    _, err = capsys.readouterr()
    assert code == 2 and "kernel 4 is not valid: give an odd whole number" in err
    code = main(["train", "--arch", "conv", "--schemes", "kaiming_normal", "--dataset", "moons",
                 "--steps", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and "a convolutional stack reads images" in err
