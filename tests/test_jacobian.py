"""The input-output Jacobian's spectrum, against Saxe et al. (2014) and Pennington et al. (2017).

Tolerances: orthogonal linear singular values 1e-4 (float32 products over 32 layers); the
Gaussian linear Var(s²) = L law 25% per depth at width 256 over 3 seeds (finite-width spread of
one spectrum's sample variance); LSUV's own tolerance.
"""

import numpy as np
import pytest
import torch

from initviz.errors import InvalidSpec, TooLarge
from initviz.jacobian import (MAX_JACOBIAN_SIDE, input_output_jacobian, jacobian_bytes,
                              jacobian_spectrum, probe_input)
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
    assert list(first.frame().columns) == ["index", "singular_value", "squared"]


def test_refuses_batch_norm_and_oversized_jacobians(monkeypatch):
    with pytest.raises(InvalidSpec, match="batch"):
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
