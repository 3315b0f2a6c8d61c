"""The text helpers that are not about Markdown: JSON numbers and numbers in sentences."""

import json
import math

import numpy as np
import pytest

from initviz.text import count, json_number, short_number


@pytest.mark.parametrize("value, expected", [
    (math.nan, None), (math.inf, None), (-math.inf, None), (np.float32("nan"), None),
    (np.float64(0.25), 0.25), (np.int64(3), 3), (7, 7), (True, True), ("text", "text"),
    (None, None),
])
def test_json_number_makes_every_value_one_json_can_hold(value, expected):
    result = json_number(value)
    assert result == expected and type(result) is type(expected)
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN or Infinity


@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (math.nan, "nan"), (0.01234, "0.012"), (12345.0, "1.2e+04"), (1e-4, "1.0e-04"),
])
def test_short_number_keeps_two_significant_digits(value, text):
    assert short_number(value) == text


def test_a_count_is_singular_only_for_one():
    assert [count(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
