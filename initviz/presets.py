"""Presets: the classic results of the initialization literature, each one a set of controls.

A preset's ``values`` are keyed by the page's widget keys (docs/DESIGN.md), plus ``SCHEME.PARAM``
for a scheme parameter, so choosing a preset is nothing more than setting those controls; every
value can still be changed afterwards, and the URL shows them like any other choice. The presets
themselves are data, in ``presets.toml`` beside this file: a title, a story, its values and the
section that tells it, one table each.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from initviz.archs import ARCHS, get_arch
from initviz.network import NetworkSpec


SECTIONS = ("Weights", "Signal", "Training", "Theory", "Code")
"""The page's sections (its tabs), in the order of the page; the link names the open one as
``?section=NAME``."""


@dataclass(frozen=True)
class Preset:
    """One classic result: the controls that show it, and the story they tell.

    ``section`` is the page section whose chart tells the story: the one a preset's link opens.
    """

    name: str
    title: str
    story: str
    values: dict = field(default_factory=dict, hash=False)
    section: str = "Signal"

    def __post_init__(self):
        if self.section not in SECTIONS:
            raise ValueError(f"{self.name}: no section {self.section!r} (one of {SECTIONS})")


PRESETS_FILE = Path(__file__).with_name("presets.toml")


def _load(path: Path = PRESETS_FILE) -> dict[str, Preset]:
    """Every preset in ``path``, in the file's order."""
    with path.open("rb") as file:
        tables = tomllib.load(file)
    return {name: Preset(name, table["title"], table["story"], table["values"],
                         table.get("section", "Signal"))
            for name, table in tables.items()}


PRESETS: dict[str, Preset] = _load()

ARCH_KEYS = ("arch", *sorted({name for arch in ARCHS.values() for name in arch.options}))
"""The page keys of the architecture and of every architecture's options."""


def network_of(values: Mapping) -> NetworkSpec:
    """The network a preset's ``values`` describe (the page's keys; defaults where left out).

    Example::

        >>> network_of(PRESETS["he2015"].values).depth
        30
    """
    scheme, arch = values["scheme"], values.get("arch", "mlp")
    params = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f"{scheme}.")}
    options = {name: values[name] for name in get_arch(arch).options if name in values}
    common = dict(activation=values["activation"], scheme=scheme, scheme_params=params,
                  bias=values.get("bias", "zeros"), input_dim=values.get("input_dim", 64),
                  norm=values.get("norm", "none"), arch=arch, arch_params=options)
    if values.get("sizes"):  # on the page too, sizes overrides width × depth
        return NetworkSpec(sizes=tuple(int(s) for s in values["sizes"].split(",")), **common)
    return NetworkSpec.stack(values["width"], values["depth"], **common)


__all__ = ["ARCH_KEYS", "PRESETS", "Preset", "SECTIONS", "network_of"]
