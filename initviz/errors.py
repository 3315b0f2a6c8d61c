"""Errors that carry a message fit to show a user as it is (CLI stderr, a warning on the page)."""

from __future__ import annotations


class InitvizError(ValueError):
    """Base class: the message is one line, complete, and safe to show to a user."""


class InvalidSpec(InitvizError):
    """A configuration value is unknown or out of range.

    ``field`` names the offending field, ``value`` is what was given and ``allowed`` says what
    would have been accepted, so a caller can fall back to a default and say why.
    """

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is not valid: expected {allowed}")


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


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
