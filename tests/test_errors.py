"""User-facing messages: quoted text is cut short, and unreadable settings fall back with a
notice."""

import warnings

import pytest

from initviz.cache import DEFAULT_SERVER_MEMORY, server_memory_budget
from initviz.errors import QUOTE_LIMIT, InvalidSpec, SettingIgnored, clip, quote
from initviz.network import DEFAULT_MEMORY_BUDGET, memory_budget

BUDGETS = [("INITVIZ_MEMORY_BUDGET_MB", memory_budget, DEFAULT_MEMORY_BUDGET),
           ("INITVIZ_SERVER_MEMORY_MB", server_memory_budget, DEFAULT_SERVER_MEMORY)]


@pytest.mark.parametrize("variable, read, default", BUDGETS,
                         ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("bad", ["abc", "nan", "inf", "-inf", "-5", "0", "1e400", "0.0000001"])
def test_an_unreadable_budget_falls_back_to_the_default_naming_variable_and_value(
        monkeypatch, variable, read, default, bad):
    monkeypatch.setenv(variable, bad)
    with pytest.warns(SettingIgnored) as caught:
        assert read() == default
    (message,) = [str(w.message) for w in caught]
    assert variable in message and bad in message and "default" in message


@pytest.mark.parametrize("variable, read, default", BUDGETS,
                         ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("good, nbytes", [("100", 100 * 1024**2), (" 1.5 ", int(1.5 * 1024**2)),
                                          ("", None)])
def test_a_readable_budget_is_used_without_a_warning(monkeypatch, variable, read, default, good,
                                                     nbytes):
    monkeypatch.setenv(variable, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read() == (default if nbytes is None else nbytes)


def test_clip_keeps_short_text_and_cuts_long_text_saying_how_long_it_was():
    assert clip("relu") == "relu"
    assert clip("re\nlu\x1b") == "re\\nlu\\x1b"  # a message stays one line
    cut = clip("x" * 100_000)
    assert cut.startswith("x" * QUOTE_LIMIT + "…") and "100,000 characters" in cut
    assert len(cut) < QUOTE_LIMIT + 30


@pytest.mark.parametrize("value, shown", [("he", '"he"'), ("-1", "-1"), (2.5, "2.5"), (0, "0"),
                                          ("", '""'), (["relu", "tanh"], "relu, tanh")])
def test_quote_shows_numbers_bare_and_text_in_quotes(value, shown):
    assert quote(value) == shown


def test_invalid_spec_is_one_sentence_that_quotes_a_huge_value_in_short():
    error = InvalidSpec("activation", "a" * 100_000, "one of relu, tanh")
    assert str(error).startswith('activation "' + "a" * QUOTE_LIMIT)
    assert str(error).endswith("is not valid: give one of relu, tanh")
    assert len(str(error)) < 200 and error.value == "a" * 100_000
