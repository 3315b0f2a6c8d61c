"""Compared variants: a scheme with its own parameters, and the architecture options it changes.

A compared entry is written ``SCHEME`` or ``SCHEME(KEY=VALUE,KEY=VALUE)`` (contract in
docs/DESIGN.md): ``uniform(a=0,b=1)`` and ``uniform(a=-0.5,b=0.5)`` race side by side, and a KEY
that is an option of the network's architecture rather than a parameter of the scheme sets that
option for this entry alone, so ``normal(std=0.02,ln=pre)`` and ``normal(std=0.02,ln=post)``
compare Pre-LN with Post-LN under GPT-2's init. A bare name keeps every default. The CLI takes
a comma-separated list (``--schemes 'zeros,uniform(a=0,b=1)'``: commas inside parentheses belong
to the entry) and the page's link one ``compare`` value per entry.

Inside the package an entry is the pair ``(name, params)`` that :class:`initviz.training.TrainSpec`
stores: ``params`` holds the scheme's resolved parameters and, after them, the options the entry
sets; :func:`network_for` turns it into the network that entry trains or profiles.

Example::

    >>> from initviz.network import NetworkSpec
    >>> split_entries("zeros,uniform(a=0,b=1)")
    ['zeros', 'uniform(a=0,b=1)']
    >>> network_for(NetworkSpec.stack(8, 2), *parse_entry("uniform(a=0,b=1)")).scheme_params
    (('a', 0.0), ('b', 1.0))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from initviz.errors import InvalidSpec, quote
from initviz.network import NetworkSpec
from initviz.schemes import get_scheme

MAX_ENTRY_CHARS = 200
"""The longest entry read: a scheme name and a few parameters fit with room to spare."""

_ENTRY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*")
_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^=,()]+?)\s*")


def split_entries(text: str) -> list[str]:
    """``text`` split on the commas outside parentheses, each entry stripped.

    Raises:
        InvalidSpec: unbalanced parentheses or an empty entry.
    """
    entries, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise InvalidSpec("schemes", text, "entries like uniform(a=0,b=1): a parenthesis "
                                               "does not match")
        if char == "," and depth == 0:
            entries.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    entries.append("".join(current).strip())
    if depth != 0:
        raise InvalidSpec("schemes", text, "entries like uniform(a=0,b=1): a parenthesis is "
                                           "not closed")
    if not all(entries):
        raise InvalidSpec("schemes", text, "scheme names separated by single commas")
    return entries


def parse_entry(text: str) -> tuple[str, dict[str, str]]:
    """``SCHEME(KEY=VALUE,...)`` as ``(SCHEME, {KEY: VALUE})``, the values as written.

    Raises:
        InvalidSpec: a malformed entry, an unknown scheme, or a key given twice.
    """
    if not isinstance(text, str) or len(text) > MAX_ENTRY_CHARS:
        raise InvalidSpec("compare", text, f"a scheme name, or one with parameters such as "
                                           f"uniform(a=0,b=1), in at most {MAX_ENTRY_CHARS} "
                                           f"characters")
    match = _ENTRY.fullmatch(text)
    if match is None:
        raise InvalidSpec("compare", text, "a scheme name, or one with parameters such as "
                                           "uniform(a=0,b=1)")
    name, inside = match.group(1), match.group(2)
    get_scheme(name)  # an unknown name: InvalidSpec listing the schemes
    params: dict[str, str] = {}
    for part in [] if inside is None or not inside.strip() else inside.split(","):
        pair = _PAIR.fullmatch(part)
        if pair is None:
            raise InvalidSpec("compare", text, f"KEY=VALUE pairs inside the parentheses "
                                               f"({quote(part.strip())} is not one)")
        key, value = pair.groups()
        if key in params:
            raise InvalidSpec("compare", text, f"each key once ({key} is given twice)")
        params[key] = value
    return name, params


def resolve_entry(name: str, params: Mapping | Sequence[tuple[str, object]],
                  network: NetworkSpec) -> tuple[tuple[str, object], ...]:
    """The entry's pairs, validated for ``network``: the scheme's parameters with every default
    filled in (sorted), then the architecture options it sets (sorted).

    Raises:
        InvalidSpec: a key that is neither a parameter of the scheme nor an option of the
            network's architecture, or a value out of range, named in a sentence.
    """
    scheme = get_scheme(name)
    given = dict(params.items() if isinstance(params, Mapping) else params)
    known = {param.name for param in scheme.params}
    options = network.architecture.options
    unknown = sorted(set(given) - known - set(options))
    if unknown:
        key, label = unknown[0], network.architecture.label
        parameters = f"its parameters: {', '.join(sorted(known))}" if known else "it has none"
        others = (f"the {label} has no such option (its options: {', '.join(options)})"
                  if options else f"the {label} has no options")
        raise InvalidSpec(f"{name}.{key}", given[key], "a parameter or option",
                          message=f"{name} has no parameter {quote(key)} ({parameters}), and "
                                  f"{others}")
    scheme_pairs = scheme.resolve({k: v for k, v in given.items() if k in known})
    option_pairs = tuple(sorted((key, options[key].parse(key, value))
                                for key, value in given.items() if key not in known))
    return scheme_pairs + option_pairs


def network_for(network: NetworkSpec, name: str,
                params: Mapping | Sequence[tuple[str, object]] = ()) -> NetworkSpec:
    """``network`` with the entry's scheme and parameters, and the architecture options the
    entry sets replacing the network's own."""
    pairs = resolve_entry(name, params, network)
    known = {param.name for param in get_scheme(name).params}
    options = dict(network.arch_params) | {k: v for k, v in pairs if k not in known}
    return replace(network, scheme=name, scheme_params=tuple(p for p in pairs if p[0] in known),
                   arch_params=tuple(sorted(options.items())))


def entry_text(name: str, params: Mapping | Sequence[tuple[str, object]] = ()) -> str:
    """The entry as it is written back: ``name`` alone, or ``name(k=v,...)`` with the pairs in
    the order given and numbers without trailing zeros (``uniform(a=0,b=1)``)."""
    pairs = params.items() if isinstance(params, Mapping) else params
    text = ",".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in pairs)
    return f"{name}({text})" if text else name


__all__ = ["MAX_ENTRY_CHARS", "entry_text", "network_for", "parse_entry", "resolve_entry",
           "split_entries"]
