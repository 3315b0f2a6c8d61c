"""Errors that carry a message fit to show a user as it is (CLI stderr, a warning on the page)."""

from __future__ import annotations

import math
import os
import warnings

QUOTE_LIMIT = 60
"""The most characters of a user's text that a message repeats: enough to recognize a typo, while a
100 KB argument or URL value still gives a one-line message."""


def clip(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``str(text)`` on one line (control characters escaped, as ``\\n``) and cut to ``limit``
    characters, saying how long it was where it was cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A user's value as a message repeats it: numbers bare, lists as their items, other text in
    quotes, cut by :func:`clip` (``'-1'`` from a command line reads -1, ``'he'`` reads "he")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)):  # a list reads as its items, not as Python's repr
        return clip(", ".join(map(str, value)) or "nothing", limit)
    text = str(value)
    try:
        float(text)
    except ValueError:
        return f'"{clip(text, limit)}"'
    return clip(text.strip(), limit)


class InitvizError(ValueError):
    """Base class: the message is one line, complete, and safe to show to a user."""


class InvalidSpec(InitvizError):
    """A configuration value is unknown or out of range.

    ``field`` names the offending field, ``value`` is what was given and ``allowed`` says what
    would have been accepted (a noun phrase: "a whole number from 1 to 4096"), so a caller can fall
    back to a default and say why. ``message`` replaces the sentence built from them where that
    would read badly (an unknown parameter name, say).
    """

    def __init__(self, field: str, value: object, allowed: str, message: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(message or f"{field} {quote(value)} is not valid: give {allowed}")


class TooLarge(InitvizError):
    """A configuration would need more memory than the budget allows."""

    def __init__(self, what: str, needed_bytes: int, budget_bytes: int,
                 reduce: str = "width, depth or batch"):
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes
        super().__init__(
            f"{what} needs about {format_bytes(needed_bytes)}, over the memory budget of "
            f"{format_bytes(budget_bytes)}: reduce {reduce}"
        )


class ServerBusy(InitvizError):
    """Other sessions' computations already hold the memory the whole server may use."""

    def __init__(self, what: str, needed_bytes: int, used_bytes: int, budget_bytes: int):
        self.needed_bytes = needed_bytes
        super().__init__(
            f"the server is busy: {what} needs about {format_bytes(needed_bytes)} and other "
            f"sessions hold {format_bytes(used_bytes)} of its {format_bytes(budget_bytes)}; "
            "try again in a moment"
        )


class SettingIgnored(UserWarning):
    """An environment setting could not be read; its default is used instead."""


def check_int(field: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in [low, high]: an int, a float with no fraction or a numeric string;
    anything else (a bool, 2.5, "x", out of range) is an :class:`InvalidSpec` for ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidSpec(field, value, f"a whole number in [{low}, {high}]")
    try:
        number = int(value) if not isinstance(value, float) else value
    except ValueError:
        raise InvalidSpec(field, value, f"a whole number in [{low}, {high}]") from None
    if isinstance(number, float) and not number.is_integer() or not low <= number <= high:
        raise InvalidSpec(field, value, f"a whole number in [{low}, {high}]")
    return int(number)


def env_megabytes(variable: str, default_bytes: int) -> int:
    """The byte count that environment ``variable`` gives in MiB, or ``default_bytes``.

    A value that is not a positive finite number (``abc``, ``nan``, ``inf``, ``-5``, ``0``) is
    ignored with a :class:`SettingIgnored` warning naming the variable, the value and the default,
    so a typo in a deployment's settings cannot stop the CLI or the page.
    """
    configured = os.environ.get(variable, "").strip()
    if not configured:
        return default_bytes
    try:
        megabytes = float(configured)
    except ValueError:
        megabytes = math.nan
    nbytes = megabytes * 1024**2
    if math.isfinite(nbytes) and nbytes >= 1:
        return int(nbytes)
    warnings.warn(SettingIgnored(
        f"{variable}={quote(configured)} is not a positive number of MiB; using the default "
        f"{format_bytes(default_bytes)}"), stacklevel=2)
    return default_bytes


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


__all__ = [
    "QUOTE_LIMIT", "InitvizError", "InvalidSpec", "ServerBusy", "SettingIgnored", "TooLarge",
    "check_int", "clip", "env_megabytes", "format_bytes", "quote",
]
