"""The data sets a network is trained on: one real (digits) and five small 2-D toy problems.

Every data set is drawn from a seed, split once into training and validation parts
(:data:`VALIDATION_FRACTION` of the points, stratified by class), and scaled one of two ways
(:data:`INPUT_SCALES`), each fitted on the *training* split alone so that the validation split
carries no information into the scaling:

* ``standardized`` (the default): each feature minus its training mean, over its training
  (population) standard deviation; a feature that is constant on the training split, such as a
  border pixel of the digits, is only centred.
* ``unit``: raw values in [0, 1], as the PyTorch tutorials feed MNIST. The digits' pixels are
  grey levels 0 to 16, divided by 16. A 2-D toy set has no natural range, so each feature is
  min-max scaled to [0, 1] on the training split (validation points may fall a little outside).

The same name, seed and scale always give the same tensors.

==========  =====  =======  ========================================================================
name        input  classes  points
==========  =====  =======  ========================================================================
digits        64     10     scikit-learn's bundled 8×8 handwritten digits (1,797 images, offline)
moons          2      2     two interleaving half circles, ``make_moons(noise=0.2)``
circles        2      2     a circle inside a circle, ``make_circles(noise=0.1, factor=0.5)``
spirals        2      3     three interleaved spiral arms (the CS231n example), angular noise 0.2
xor            2      2     U(−1, 1)² labelled by the sign of x₁·x₂: no linear model beats chance
gaussians      2      4     ``make_blobs``: four unit-variance clusters centred at (±1.5, ±1.5)
==========  =====  =======  ========================================================================

The sequence data sets ``digits_rows`` (8 steps of 8 pixels: the rows, top to bottom) and
``digits_pixels`` (64 steps of 1 pixel, row by row: Le et al. 2015's pixel-by-pixel task at
digits' size) are digits itself, the same points, split and scaling, read by a recurrent net
one step at a time (:attr:`DatasetInfo.steps`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from initviz.errors import InvalidSpec, check_int

VALIDATION_FRACTION = 0.25
INPUT_SCALES = ("standardized", "unit")
MAX_SEED = 2**31 - 1
SYNTHETIC_POINTS = 1200
"""Points drawn for each 2-D data set (900 for training, 300 for validation)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set ready for training: float32 inputs, int64 class labels, all on the CPU.

    Instances are shared by :func:`load_dataset`'s cache: treat the tensors as read-only.
    """

    name: str
    description: str
    seed: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set without drawing it."""

    name: str
    description: str
    input_dim: int
    n_classes: int
    draw: Callable[[int], tuple[np.ndarray, np.ndarray]]
    steps: int | None = None
    """Time steps of a sequence data set (each ``input_dim / steps`` numbers); None: vectors."""
    value_max: float | None = None
    """The largest value a feature can take where the data have a fixed range from 0 (the
    digits' 16 grey levels): ``unit`` divides by it. None: ``unit`` is min-max on the training
    split."""


# scikit-learn is imported where a data set is drawn: importing it takes about 0.25 s, and the
# command line's profile, theory and jacobian draw no data.


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return bunch.data, bunch.target


def _moons(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons
    return make_moons(SYNTHETIC_POINTS, noise=0.2, random_state=seed)


def _circles(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_circles
    return make_circles(SYNTHETIC_POINTS, noise=0.1, factor=0.5, random_state=seed)


def _spirals(seed: int, arms: int = 3) -> tuple[np.ndarray, np.ndarray]:
    # CS231n's spiral: radius grows linearly along each arm while the angle turns by 4 radians.
    rng = np.random.default_rng(seed)
    per_arm = SYNTHETIC_POINTS // arms
    radius = np.tile(np.linspace(0.0, 1.0, per_arm), arms)
    label = np.repeat(np.arange(arms), per_arm)
    angle = label * 4.0 + radius * 4.0 + rng.normal(0.0, 0.2, per_arm * arms)
    return np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]), label


def _xor(seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (SYNTHETIC_POINTS, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def _gaussians(seed: int) -> tuple[np.ndarray, np.ndarray]:
    centers = [(-1.5, -1.5), (-1.5, 1.5), (1.5, -1.5), (1.5, 1.5)]
    from sklearn.datasets import make_blobs
    return make_blobs(SYNTHETIC_POINTS, centers=centers, cluster_std=1.0, random_state=seed)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info for info in (
        DatasetInfo("digits", "8×8 handwritten digits (scikit-learn, 1,797 images)", 64, 10,
                    _digits, value_max=16.0),
        DatasetInfo("moons", "two interleaving half circles, noise 0.2", 2, 2, _moons),
        DatasetInfo("circles", "a circle inside a circle, noise 0.1", 2, 2, _circles),
        DatasetInfo("spirals", "three interleaved spiral arms", 2, 3, _spirals),
        DatasetInfo("xor", "the four quadrants, labelled by the sign of x₁·x₂", 2, 2, _xor),
        DatasetInfo("gaussians", "four overlapping Gaussian clusters", 2, 4, _gaussians),
        DatasetInfo("digits_rows", "the 8×8 digits as 8 steps of 8 pixels (one row a step)", 64,
                    10, _digits, steps=8),
        DatasetInfo("digits_pixels", "the 8×8 digits as 64 steps of 1 pixel (pixel by pixel)",
                    64, 10, _digits, steps=64),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name, such as a list
        raise InvalidSpec("dataset", name, "one of " + ", ".join(DATASETS)) from None


OWN_DATA = "csv"
"""The name a training spec gives the visitor's own CSV (a table of vectors, not in DATASETS)."""


def sequence_steps(name: str) -> int | None:
    """How many time steps an example of data set ``name`` is; None for a data set of vectors
    (your own CSV included). InvalidSpec for an unknown name."""
    return None if name == OWN_DATA else dataset_info(name).steps


def check_scale(scale: str) -> str:
    if scale not in INPUT_SCALES:
        raise InvalidSpec("input_scale", scale, "one of " + ", ".join(INPUT_SCALES))
    return scale


def load_dataset(name: str, seed: int = 0, scale: str = "standardized") -> Dataset:
    """Draw, split and scale the data set ``name`` from ``seed`` (cached).

    Args:
        name: a name of :data:`DATASETS`.
        seed: the seed of the draw and of the split.
        scale: one of :data:`INPUT_SCALES` (see the module docstring).

    Returns:
        The :class:`Dataset`, float32 inputs and int64 labels on the CPU.
    """
    info = dataset_info(name)
    return _load(info, check_int("seed", seed, 0, MAX_SEED), check_scale(scale))


def _scaler(value_max: float | None, scale: str, x_train: np.ndarray):
    """The scaling fitted on the training split: an object with ``transform``."""
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler
    if scale == "standardized":
        # The training split's mean and (population) std; a constant feature is centred only.
        return StandardScaler().fit(x_train)
    if value_max is not None:
        return FunctionTransformer(lambda x: x / value_max)
    return MinMaxScaler().fit(x_train)


# Validated before the cache, so that a bad argument is an InvalidSpec, never lru_cache's TypeError.
@functools.lru_cache(maxsize=32)
def _load(info: DatasetInfo, seed: int, scale: str) -> Dataset:
    x, y = info.draw(seed)
    return _split_and_scale(info.name, info.description, seed, x, y, info.n_classes, scale,
                            info.value_max)


def load_csv(data, seed: int = 0, scale: str = "standardized") -> Dataset:
    """Your own data (:class:`initviz.csvdata.CsvData`) split and scaled like a built-in set
    (``unit``: min-max on the training split); cached by the file's content hash."""
    return _load_csv(data, check_int("seed", seed, 0, MAX_SEED), check_scale(scale))


@functools.lru_cache(maxsize=8)
def _load_csv(data, seed: int, scale: str) -> Dataset:
    return _split_and_scale(OWN_DATA, data.description, seed, data.x, data.y, len(data.classes),
                            scale, None)


def _split_and_scale(name: str, description: str, seed: int, x, y, n_classes: int, scale: str,
                     value_max: float | None) -> Dataset:
    from sklearn.model_selection import train_test_split

    x_train, x_val, y_train, y_val = train_test_split(
        np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64),
        test_size=VALIDATION_FRACTION, random_state=seed, stratify=y)
    scaler = _scaler(value_max, scale, x_train)

    def tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    return Dataset(
        name=name, description=description, seed=seed,
        x_train=tensor(scaler.transform(x_train), torch.float32),
        y_train=tensor(y_train, torch.int64),
        x_val=tensor(scaler.transform(x_val), torch.float32), y_val=tensor(y_val, torch.int64),
        n_classes=n_classes,
    )


__all__ = ["DATASETS", "Dataset", "DatasetInfo", "INPUT_SCALES", "MAX_SEED", "OWN_DATA",
           "VALIDATION_FRACTION", "check_scale", "dataset_info", "load_csv", "load_dataset",
           "sequence_steps"]
