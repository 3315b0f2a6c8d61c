"""The input-output Jacobian's spectrum, against Saxe et al. (2014) and Pennington et al. (2017).

Tolerances: orthogonal linear singular values 1e-4 (the weights are drawn in float32, so each is
orthogonal to float32 precision, and 32 of them multiply); the Gaussian linear Var(s²) = L law 25%
per depth at width 256 over 3 seeds (finite-width spread of one spectrum's sample variance); LSUV's
own tolerance; against an independent float64 product of the layers, 1e-9 of s_max (float64
rounding of 30 products of 256 × 256 matrices, about 30 · 256 · ε).
"""

import math

import numpy as np
import pytest
import torch

from initviz.errors import InitvizError, InvalidSpec, TooLarge
from initviz.jacobian import (ISOMETRY_TOLERANCE, LARGEST_SINGULAR_VALUE, MAX_JACOBIAN_SIDE,
                              WELL_CONDITIONED, JacobianSpectrum, NonFiniteJacobian,
                              input_output_jacobian, jacobian_bytes, jacobian_spectrum,
                              probe_input)
from initviz.network import NetworkSpec, build_model
from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)


def _square(width, depth, **kwargs):
    return NetworkSpec.stack(width, depth, input_dim=width, **kwargs)


def test_deep_linear_network_with_orthogonal_weights_is_an_isometry():
    result = jacobian_spectrum(_square(128, 32, activation="linear", scheme="orthogonal"),
                               device="cpu")
    assert result.shape == (128, 128)
    assert np.max(np.abs(result.singular_values - 1.0)) < 1e-4
    assert result.mean_sq == pytest.approx(1.0, abs=1e-4) and result.var_sq < 1e-8
    assert result.reading.startswith("Isometric")


def test_jacobian_of_a_linear_network_is_the_product_of_its_weights():
    spec = NetworkSpec(sizes=(8, 6), input_dim=5, activation="linear", scheme="lecun_normal",
                       bias="normal")
    model = build_model(spec, seed=3)
    jac = input_output_jacobian(model, probe_input(spec, 3))
    expected = model[1].linear.weight @ model[0].linear.weight
    assert jac.shape == (6, 5)
    torch.testing.assert_close(jac, expected, rtol=1e-5, atol=1e-6)


def test_gaussian_linear_network_spectrum_widens_linearly_with_depth():
    # Pennington et al. 2017: for L Gaussian layers of variance 1/N the eigenvalues of JJᵀ have
    # mean 1 and variance L (Fuss–Catalan moments), as N → ∞.
    depths = np.array([1, 2, 4, 8])
    var = []
    for depth in depths:
        runs = [jacobian_spectrum(_square(256, int(depth), activation="linear",
                                          scheme="lecun_normal"), seed=s, device="cpu")
                for s in range(3)]
        assert np.mean([r.mean_sq for r in runs]) == pytest.approx(1.0, abs=0.1)
        var.append(np.mean([r.var_sq for r in runs]))
    assert np.asarray(var) / depths == pytest.approx(np.ones(4), rel=0.25)
    slope = np.polyfit(depths, var, 1)[0]
    assert slope == pytest.approx(1.0, rel=0.2)


def test_orthogonal_weights_keep_tanh_narrow_where_gaussian_ones_spread():
    # Pennington et al. 2017, Fig. 2: tanh at σ_w² = 1 -- orthogonal weights keep the spread of
    # s² near its one-layer value at any depth, Gaussian ones widen it with depth.
    def spread(scheme, depth):
        return np.mean([jacobian_spectrum(_square(128, depth, activation="tanh", scheme=scheme),
                                          seed=s, device="cpu").spread for s in range(3)])

    orthogonal = [spread("orthogonal", 8), spread("orthogonal", 32)]
    gaussian = [spread("xavier_normal", 8), spread("xavier_normal", 32)]
    assert max(orthogonal) < 2.0 and abs(orthogonal[1] - orthogonal[0]) < 0.5
    assert gaussian[0] > 2.0 and gaussian[1] > 1.5 * gaussian[0]


def test_lsuv_leaves_every_layer_at_unit_output_variance():
    # Mishkin & Matas 2016: after LSUV each Linear's output has variance 1 within tol on the
    # calibration batch; the network then still has a well-defined Jacobian.
    spec = _square(128, 8, activation="tanh", scheme="lsuv", scheme_params={"tol": 0.05})
    x = torch.randn(512, 128, generator=torch.Generator().manual_seed(7))
    model = build_model(spec, seed=1, calibration=x)
    h = x
    with torch.no_grad():
        for block in model:
            assert abs(float(block.linear(h).var()) - 1.0) < 0.05
            h = block(h)
    assert jacobian_spectrum(spec, seed=1, device="cpu").mean_sq > 0


def test_spectrum_is_reproducible_and_json_ready():
    spec = _square(32, 4, activation="tanh", scheme="xavier_normal", norm="layernorm")
    first, again = (jacobian_spectrum(spec, seed=5, device="cpu") for _ in range(2))
    np.testing.assert_array_equal(first.singular_values, again.singular_values)
    document = first.to_json_dict()
    assert {"singular_values", "mean_sq", "var_sq"} <= document.keys()
    s = np.array(document["singular_values"])
    assert len(s) == 32 and np.all(np.diff(s) <= 0)
    assert document["mean_sq"] == pytest.approx(np.mean(s**2))
    assert document["var_sq"] == pytest.approx(np.var(s**2))
    # Layer norm's output is unchanged by shifting or rescaling its input: the first layer
    # loses those two directions, the later ones' kernels miss the image they are given.
    assert document["zero_count"] == 2 == 32 - np.linalg.matrix_rank(
        input_output_jacobian(build_model(spec, 5).double(), probe_input(spec, 5).double()))
    assert list(first.frame().columns) == ["index", "singular_value", "squared", "zero"]


def test_refuses_batch_norm_and_oversized_jacobians(monkeypatch):
    with pytest.raises(InitvizError, match="with batch norm has no Jacobian of one input"):
        jacobian_spectrum(_square(16, 2, norm="batchnorm"), device="cpu")
    with pytest.raises(InvalidSpec, match=str(MAX_JACOBIAN_SIDE)):
        jacobian_spectrum(NetworkSpec.stack(MAX_JACOBIAN_SIDE + 1, 1, input_dim=8),
                          device="cpu")
    spec = _square(512, 4)
    assert jacobian_bytes(spec) > 4 * spec.parameter_count()
    assert jacobian_bytes(_square(512, 8)) > jacobian_bytes(spec)
    monkeypatch.setenv("INITVIZ_MEMORY_BUDGET_MB", "1")
    with pytest.raises(TooLarge, match="MiB") as caught:
        jacobian_spectrum(spec, device="cpu")
    assert str(caught.value).endswith("reduce width or depth")  # batch plays no part here


def _numpy_jacobian(spec, seed):
    """``J`` of a bias-free ReLU or linear stack, in float64 numpy, apart from torch.func: the
    product ``D_L W_L ⋯ D_1 W_1`` with ``D_l`` the units on at the probe input."""
    model = build_model(spec, seed)
    h = probe_input(spec, seed).double().numpy()
    jac = np.eye(spec.input_dim)
    for block in model:
        weight = block.linear.weight.detach().double().numpy()
        z = weight @ h + block.linear.bias.detach().double().numpy()
        on = (z > 0) if spec.activation == "relu" else np.ones_like(z, dtype=bool)
        h, jac = np.where(on, z, 0.0), on[:, None] * (weight @ jac)
    return jac


def test_relu_spectrum_is_float64_and_counts_lost_directions_as_matrix_rank_does():
    # He et al. 2015's 30-layer Kaiming ReLU net: in float32 most of its spectrum was rounding
    # (down to 1e-102 against s_max ~ 7). Against an independent float64 product of the layers:
    # the same singular values, and zero_count = n - numpy.linalg.matrix_rank.
    spec = _square(256, 30, activation="relu", scheme="kaiming_normal")
    result = jacobian_spectrum(spec, seed=0, device="cpu")
    expected = np.linalg.svd(_numpy_jacobian(spec, 0), compute_uv=False)
    s_max = expected[0]
    np.testing.assert_allclose(result.singular_values, expected, rtol=0, atol=1e-9 * s_max)
    rank = np.linalg.matrix_rank(_numpy_jacobian(spec, 0))
    assert result.zero_count == 256 - rank and 0 < result.zero_count < 256
    kept = result.nonzero
    assert len(kept) == rank and kept[-1] > 256 * np.finfo(np.float64).eps * s_max
    assert result.condition == pytest.approx(kept[0] / kept[-1])
    assert math.isfinite(result.condition)
    assert result.reading.startswith(f"Singular: {result.zero_count} of 256 input directions")
    # every nonzero value is drawn, every zero one is not
    assert result.frame()["zero"].sum() == result.zero_count


def test_a_bottleneck_loses_exactly_the_directions_it_cannot_carry():
    spec = NetworkSpec(sizes=(48, 12, 48), input_dim=48, activation="linear",
                       scheme="lecun_normal")
    result = jacobian_spectrum(spec, seed=2, device="cpu")
    assert result.zero_count == 48 - 12 == 48 - np.linalg.matrix_rank(_numpy_jacobian(spec, 2))
    assert result.conditioning == "singular" and "36 of 48" in result.reading


@pytest.mark.parametrize("values, word", [
    ([1.05, 1.0, 0.95, 0.91], "isometric"),
    ([5.0, 2.0, 1.0], "well conditioned"),
    ([0.3, 0.2, 0.1], "well conditioned"),   # uniform but not near 1: not an isometry
    ([1.47e3, 3.0, 1.0], "ill conditioned"),
    ([2.0, 1.0, 0.0, 1e-20], "singular"),
])
def test_the_reading_names_the_conditioning_its_numbers_give(values, word):
    result = JacobianSpectrum.of(np.array(values), (len(values), len(values)))
    kept = result.nonzero
    condition = kept[0] / kept[-1]
    assert result.condition == pytest.approx(condition)
    expected = ("singular" if result.zero_count else
                "isometric" if np.all(np.abs(kept - 1) <= ISOMETRY_TOLERANCE) else
                "well conditioned" if condition <= WELL_CONDITIONED else "ill conditioned")
    assert result.conditioning == expected == word
    assert result.reading.startswith(word.capitalize() + ":")
    if word != "isometric":
        assert f"{condition:.3g}" in result.reading


def test_the_reading_of_real_networks_agrees_with_their_condition_number():
    for activation, scheme, depth in [("linear", "orthogonal", 8), ("tanh", "orthogonal", 8),
                                      ("tanh", "xavier_normal", 8), ("linear", "lecun_normal", 2)]:
        result = jacobian_spectrum(_square(64, depth, activation=activation, scheme=scheme),
                                   seed=1, device="cpu")
        well = result.zero_count == 0 and result.condition <= WELL_CONDITIONED
        assert ("Well conditioned" in result.reading or "Isometric" in result.reading) == well


def test_a_zero_jacobian_says_every_direction_is_lost():
    result = jacobian_spectrum(_square(16, 3, scheme="zeros"), device="cpu")
    assert result.zero_count == 16 and math.isnan(result.condition)
    assert result.mean_sq == 0.0 and "all 16 singular values are 0" in result.reading


def test_moments_of_huge_singular_values_do_not_overflow():
    s = np.array([1e76, 5e75, 1e75])
    result = JacobianSpectrum.of(s, (3, 3))
    assert result.mean_sq == pytest.approx(np.mean((s / 1e76) ** 2) * 1e152)
    assert result.var_sq == pytest.approx(np.var((s / 1e76) ** 2) * 1e304)


def test_an_overflowing_jacobian_names_its_layer_and_never_reaches_the_svd():
    # ones, linear, width 64: J_l is 64^(l-1) times the all-ones matrix, so its bound
    # max|J_l| · √(64 · 64) = 64^l first passes LARGEST_SINGULAR_VALUE at this layer.
    layer = math.ceil(math.log(LARGEST_SINGULAR_VALUE) / math.log(64))
    spec = _square(64, 60, activation="linear", scheme="ones")
    result = jacobian_spectrum(spec, device="cpu")
    assert f"at layer {layer} of 60" in result.overflow and len(result.singular_values) == 0
    assert result.reading.startswith("No spectrum:")
    with pytest.raises(NonFiniteJacobian, match=f"layer {layer} of 60"):
        result.to_json_dict()
    # 40 layers stay below the bound: a finite float64 spectrum, one direction kept
    finite = jacobian_spectrum(_square(64, 40, activation="linear", scheme="ones"), device="cpu")
    assert finite.overflow is None and finite.zero_count == 63
    assert finite.singular_values[0] == pytest.approx(64.0**40, rel=1e-9)


def test_activations_that_overflow_are_named_before_the_jacobian():
    # all-ones weights of width 4 and biases 1e308: layer 1 gives about 1e308 (finite), layer 2
    # 4e308 + 1e308 (inf), while the Jacobian is only 4^(l-1) times the all-ones matrix
    spec = _square(4, 3, activation="relu", scheme="ones")
    model = build_model(spec, 0).double()
    with torch.no_grad():
        for block in model:
            block.linear.bias.fill_(1e308)
    with pytest.raises(NonFiniteJacobian, match="activations overflow to inf/NaN at layer 2 of 3"):
        input_output_jacobian(model, probe_input(spec, 0).double())
