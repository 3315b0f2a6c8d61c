"""The data sets: shapes and classes, determinism, the fixed split, and standardization with the
training split's statistics (checked against scikit-learn's StandardScaler fitted on that split).

Tolerances: the inputs are float32 after standardizing in float64, so a standardized value is
within ~1e-7 relative of the exact one; means and standard deviations over a split are compared
with 1e-5.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from initviz.datasets import DATASETS, MAX_SEED, VALIDATION_FRACTION, dataset_info, load_dataset
from initviz.errors import InvalidSpec

EXPECTED = {  # name: (points, input_dim, n_classes), as documented
    "digits": (1797, 64, 10), "moons": (1200, 2, 2), "circles": (1200, 2, 2),
    "spirals": (1200, 2, 3), "xor": (1200, 2, 2), "gaussians": (1200, 2, 4),
    # digits read step by step (8 x 8, 64 x 1) by a recurrent net: the same 64 numbers
    "digits_rows": (1797, 64, 10), "digits_pixels": (1797, 64, 10),
}


def test_the_contract_names_are_all_there():
    assert list(DATASETS) == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shapes_types_and_classes_come_from_the_data(name):
    points, input_dim, n_classes = EXPECTED[name]
    data = load_dataset(name, 0)
    n_val = math.ceil(points * VALIDATION_FRACTION)
    assert data.x_train.shape == (points - n_val, input_dim)
    assert data.x_val.shape == (n_val, input_dim)
    assert data.y_train.shape == (points - n_val,) and data.y_val.shape == (n_val,)
    assert data.x_train.dtype == data.x_val.dtype == torch.float32
    assert data.y_train.dtype == data.y_val.dtype == torch.int64
    assert data.input_dim == dataset_info(name).input_dim == input_dim
    assert data.n_classes == dataset_info(name).n_classes == n_classes
    for y in (data.y_train, data.y_val):  # every class in both splits, labels 0 .. n_classes-1
        assert torch.unique(y).tolist() == list(range(n_classes))
    # stratified: each class has the same share of both splits, up to one point of rounding
    train_share = torch.bincount(data.y_train) / len(data.y_train)
    val_share = torch.bincount(data.y_val) / len(data.y_val)
    assert torch.all((train_share - val_share).abs() <= 1 / len(data.y_val))
    assert all(t.device.type == "cpu" for t in (data.x_train, data.y_train, data.x_val,
                                                  data.y_val))


def test_digits_is_scikit_learns_bundled_set():
    data = load_dataset("digits", 0)
    digits = load_digits()
    labels = torch.cat([data.y_train, data.y_val])
    assert torch.bincount(labels).tolist() == np.bincount(digits.target).tolist()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_same_seed_gives_the_same_tensors_and_another_seed_others(name):
    # load_dataset caches, so the draw itself is repeated to see it is the same
    x, y = dataset_info(name).draw(5)
    x_again, y_again = dataset_info(name).draw(5)
    assert np.array_equal(x, x_again) and np.array_equal(y, y_again)
    first = load_dataset(name, 5)
    other = load_dataset(name, 6)
    assert not torch.equal(first.x_val, other.x_val)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_inputs_are_standardized_with_the_training_splits_statistics(name):
    data = load_dataset(name, 3)
    mean = data.x_train.double().mean(dim=0)
    std = data.x_train.double().std(dim=0, unbiased=False)
    assert torch.all(mean.abs() < 1e-5)
    constant = std < 1e-6  # digits' always-blank border pixels: centred only
    assert torch.all((std[~constant] - 1).abs() < 1e-5)
    assert name.startswith("digits") == bool(constant.any())
    # The validation split, scaled with the training statistics, is not itself exactly centred.
    assert data.x_val.double().mean(dim=0).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(EXPECTED))
def test_standardized_inputs_are_exactly_the_training_statistics_formula(name):
    """(x − mean) / std with the training split's mean and population std, a zero std taken as
    1, in float64 then float32: the same float32 numbers, bit for bit, whoever computes them."""
    seed = 5
    x, y = dataset_info(name).draw(seed)
    x_train, x_val, _, _ = train_test_split(np.asarray(x, dtype=np.float64), y,
                                            test_size=VALIDATION_FRACTION, random_state=seed,
                                            stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0.0] = 1.0
    data = load_dataset(name, seed)
    assert np.array_equal(data.x_train.numpy(), ((x_train - mean) / std).astype(np.float32))
    assert np.array_equal(data.x_val.numpy(), ((x_val - mean) / std).astype(np.float32))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_validation_is_scaled_like_training_as_standard_scaler_does(name):
    # The documented split: a quarter of the points, stratified by class, from the seed.
    seed = 4
    x, y = dataset_info(name).draw(seed)
    x_train, x_val, _, y_val = train_test_split(x, y, test_size=VALIDATION_FRACTION,
                                                random_state=seed, stratify=y)
    scaler = StandardScaler().fit(x_train)  # leaves a constant feature unscaled, as we do
    data = load_dataset(name, seed)
    np.testing.assert_allclose(data.x_train.numpy(), scaler.transform(x_train), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(data.x_val.numpy(), scaler.transform(x_val), rtol=1e-6, atol=1e-6)
    assert data.y_val.tolist() == list(y_val)


def test_xor_defeats_a_linear_model_and_moons_do_not():
    def linear_accuracy(name: str) -> float:
        data = load_dataset(name, 0)
        model = LogisticRegression().fit(data.x_train.numpy(), data.y_train.numpy())
        return model.score(data.x_val.numpy(), data.y_val.numpy())

    assert linear_accuracy("xor") < 0.6  # chance is 0.5
    assert linear_accuracy("moons") > 0.8


@pytest.mark.parametrize("name", ["mnist", "", "Digits", ["digits"], None])
def test_an_unknown_name_is_refused_with_the_names_that_exist(name):
    for call in (lambda: load_dataset(name), lambda: dataset_info(name)):
        with pytest.raises(InvalidSpec) as error:
            call()
        assert error.value.field == "dataset"
        assert "digits, moons, circles, spirals, xor, gaussians" in str(error.value)


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 1.5, True, "x", [1]])
def test_a_bad_seed_is_refused(seed):
    with pytest.raises(InvalidSpec) as error:
        load_dataset("moons", seed)
    assert error.value.field == "seed"


@pytest.mark.parametrize("seed", [3.0, "3"])
def test_a_seed_is_a_whole_number_by_the_rule_every_field_follows(seed):
    assert torch.equal(load_dataset("moons", seed).x_train, load_dataset("moons", 3).x_train)
