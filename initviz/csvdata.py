"""Your own data: a small numeric CSV (features and one label column) checked and made a data set.

:func:`read_csv` parses the bytes of a file with pandas alone (never pickle) and refuses, with a
sentence that names the problem and where it is, a file that is empty, too large, not UTF-8 text,
without the label column, with text or an empty cell in a feature column, with too many rows or
columns, or whose label has one class only (or a class with a single row, which a stratified
split cannot place on both sides). The result, :class:`CsvData`, compares and hashes by the file's
content hash and the label column, never by a file name: that is what the training cache keys by.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np

from initviz.errors import InitvizError

MAX_CSV_BYTES = 1_000_000
"""At most 1 MB of file."""
MAX_CSV_ROWS = 20_000
MAX_CSV_FEATURES = 256
MAX_CSV_CLASSES = 100


class CsvProblem(InitvizError):
    """A CSV file that cannot be trained on; the message names the problem and where it is."""


@dataclass(frozen=True)
class CsvData:
    """A checked CSV: float64 features ``x`` (rows, features), class numbers ``y`` and the class
    names in order. Equal and hashed by ``sha256`` (of the file's bytes) and ``label`` only."""

    sha256: str
    label: str
    x: np.ndarray = field(compare=False, repr=False)
    y: np.ndarray = field(compare=False, repr=False)
    features: tuple[str, ...] = field(compare=False)
    classes: tuple[str, ...] = field(compare=False)

    @property
    def description(self) -> str:
        return (f"your CSV ({len(self.y):,} rows, {len(self.features)} features, "
                f"{len(self.classes)} classes in column {self.label!r})")


def csv_columns(raw: bytes) -> list[str]:
    """The header of a CSV file (for the page's label choice); [] where it cannot be read."""
    try:
        return list(_frame(raw).columns)
    except CsvProblem:
        return []


def _frame(raw: bytes):
    import pandas as pd
    if not raw.strip():
        raise CsvProblem("The file is empty.")
    if len(raw) > MAX_CSV_BYTES:
        raise CsvProblem(f"The file is {len(raw):,} bytes, more than the {MAX_CSV_BYTES:,} "
                         "(1 MB) allowed.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise CsvProblem(f"The file is not UTF-8 text: byte {error.start:,} (line {line}) is "
                         f"0x{raw[error.start]:02x}. Save it as UTF-8 CSV.") from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CsvProblem(f"The file is not a CSV table pandas can read: {error}".rstrip(".")
                         + ".") from None
    if len(frame) > MAX_CSV_ROWS:
        raise CsvProblem(f"The file has {len(frame):,} rows, more than the {MAX_CSV_ROWS:,} "
                         "allowed.")
    if len(frame.columns) - 1 > MAX_CSV_FEATURES:
        raise CsvProblem(f"The file has {len(frame.columns) - 1:,} feature columns, more than "
                         f"the {MAX_CSV_FEATURES} allowed.")
    if len(frame) == 0:
        raise CsvProblem("The file has a header but no rows.")
    return frame


def read_csv(raw: bytes, label: str | None = None) -> CsvData:
    """Check and parse a CSV file's bytes.

    Args:
        raw: the file's bytes (UTF-8, a header row, then one row per example).
        label: the label column (default: the last column). Its values are class names (any
            text or numbers); every other column is a numeric feature.

    Returns:
        The :class:`CsvData`.

    Raises:
        CsvProblem: what is wrong and where: rows are numbered as in the file, the header being
            row 1.
    """
    frame = _frame(raw)
    columns = list(frame.columns)
    label = columns[-1] if label is None else label
    if label not in columns:
        raise CsvProblem(f"The file has no column {label!r} to use as the label; its columns "
                         f"are {', '.join(map(repr, columns[:10]))}"
                         + (", ..." if len(columns) > 10 else "") + ".")
    features = [c for c in columns if c != label]
    if not features:
        raise CsvProblem(f"The file has only the label column {label!r}: no features to train "
                         "on.")
    import pandas as pd
    values = np.empty((len(frame), len(features)))
    for j, column in enumerate(features):
        cells = frame[column].str.strip()
        numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if len(bad):
            row, cell = int(bad[0]), cells.iloc[int(bad[0])]
            raise CsvProblem(f"Feature column {column!r}, row {row + 2} of the file (the header "
                             f"is row 1) {_what(cell)}: every feature must be a number.")
        values[:, j] = numbers
    labels = frame[label].str.strip()
    empty = np.flatnonzero((labels == "").to_numpy())
    if len(empty):
        raise CsvProblem(f"The label column {label!r} is empty at row {int(empty[0]) + 2} of the "
                         "file (the header is row 1).")
    classes, y = np.unique(labels.to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise CsvProblem(f"The label column {label!r} has one class only ({classes[0]!r}): "
                         "there is nothing to tell apart.")
    if len(classes) > MAX_CSV_CLASSES:
        raise CsvProblem(f"The label column {label!r} has {len(classes):,} classes, more than "
                         f"the {MAX_CSV_CLASSES} allowed: is it a feature?")
    counts = np.bincount(y)
    if counts.min() < 2:
        lonely = classes[int(np.argmin(counts))]
        raise CsvProblem(f"The class {lonely!r} of the label column {label!r} has a single row: "
                         "each class needs at least two, one for training and one for "
                         "validation.")
    return CsvData(sha256=hashlib.sha256(raw).hexdigest(), label=label, x=values,
                   y=y.astype(np.int64), features=tuple(features),
                   classes=tuple(str(c) for c in classes))


def _number(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return float("nan")


def _what(cell: str) -> str:
    """What is wrong with a feature cell that is not a finite number."""
    if cell == "" or cell.lower() == "nan":
        return "is empty (NaN)"
    if np.isinf(_number(cell)):
        return f"is {cell!r}, not a finite number"
    return f"has the text {cell[:40]!r}"


__all__ = ["CsvData", "CsvProblem", "MAX_CSV_BYTES", "MAX_CSV_CLASSES", "MAX_CSV_FEATURES",
           "MAX_CSV_ROWS", "csv_columns", "read_csv"]
