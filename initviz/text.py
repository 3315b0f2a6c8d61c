"""User-supplied text made safe to show inside the page's Markdown, and numbers put in sentences.

Streamlit renders warnings, infos and captions as Markdown (and raw HTML is off, but links and
images are not): a value from the link that holds ``[text](url)`` or ``![x](url)`` would become a
clickable link or an image the visitor's browser fetches. Code spans are no protection, since a
backtick in the value closes them. Everything a visitor typed or put in a link therefore goes
through :func:`quote` before it reaches Markdown.
"""

from __future__ import annotations

import math
import numbers
import re

from initviz.errors import QUOTE_LIMIT

MAX_SHOWN = QUOTE_LIMIT
"""Characters of a user-supplied value shown on the page: the limit of every message that repeats
a user's text (:data:`initviz.errors.QUOTE_LIMIT`)."""

# CommonMark's ASCII punctuation: each may be backslash-escaped, and a backslash before any of
# them stands for the character itself, so escaping all of them leaves no Markdown syntax.
_MARKDOWN_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
# GitHub-flavoured Markdown (which Streamlit renders) links bare addresses (www.x.org, https://x,
# a@b.org) after escapes are resolved, so escapes cannot stop it; an invisible word joiner
# before every "." and "@" and after every ":" breaks each of its patterns.
_AUTOLINK = re.compile(r"(?=[.@])|(?<=:)")
WORD_JOINER = "\u2060"
# Line breaks and other control characters would start a new block (a heading, a list, a link
# reference definition) where an escape cannot reach.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out.

    Args:
        text: any string.
        limit: the most characters of ``text`` kept.

    Returns:
        ``text`` itself when it fits, else its first ``limit`` characters followed by
        ``"… (N more characters)"``.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def escape(text: str) -> str:
    """``text`` as Markdown that renders as exactly that text.

    Control characters become spaces, every Markdown punctuation character is backslash-escaped
    and an invisible word joiner breaks bare addresses, so no link (written or bare), image,
    emphasis, HTML, code span or Streamlit directive (``:red[...]``, ``:material/...:``,
    ``$...$``) can come out of it.

    Args:
        text: any string, typically a message that embeds what a visitor gave.

    Returns:
        The escaped Markdown source.
    """
    text = _AUTOLINK.sub(WORD_JOINER, _CONTROL.sub(" ", text))
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def quote(value: object, limit: int = MAX_SHOWN) -> str:
    """A user-supplied value, shortened, escaped and in quotation marks, ready for Markdown.

    Args:
        value: what the visitor gave (a URL parameter's key or value, a field's text); lists are
            shown comma-separated.
        limit: the most characters of the value shown (see :func:`shorten`).

    Returns:
        Markdown source such as ``“64,abc”`` (with ``,`` escaped) that reads as the value.
    """
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return "“" + escape(shorten(str(value), limit)) + "”"


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 ("1 seed", "2 seeds")."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def short_number(value: float) -> str:
    """``value`` in two significant digits, in scientific notation outside [1e-3, 1e4)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.2g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.1e}"


def span(low: float, high: float) -> str:
    """"between low and high" with as few significant digits (2-4) as tell them apart."""
    for digits in (2, 3, 4):
        if f"{low:.{digits}g}" != f"{high:.{digits}g}":
            if digits == 2:
                return f"between {short_number(low)} and {short_number(high)}"
            return f"between {low:.{digits}g} and {high:.{digits}g}"
    return f"at {short_number(low)}"



def json_number(value: object) -> object:
    """``value`` as a JSON document can hold it: a number that is not finite (NaN, ±inf, which
    JSON has no words for) becomes None (null), a NumPy scalar a plain Python number; anything
    else is returned as it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None

__all__ = ["MAX_SHOWN", "WORD_JOINER", "count", "escape", "json_number", "quote", "short_number",
           "shorten", "span"]
