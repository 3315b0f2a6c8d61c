"""The plain PyTorch script that builds the chosen network and initializes it like initviz does.

The script draws from one ``torch.Generator`` in the same order as
:func:`initviz.network.build_model` (``model.apply`` visits the Linear layers in order, weight
then bias), so it reproduces initviz's weights exactly, and it measures each layer (block) on the
same inputs as the probe, so it prints the same statistics. Each architecture writes its own
model (:meth:`initviz.archs.Architecture.code`) from the helpers here. The init calls come from
:meth:`Scheme.code`, the same description that initviz applies; LSUV's rescaling and a scheme's
own init function (sparse) are initviz's own functions, copied by ``inspect``.
"""

from __future__ import annotations

import inspect
import textwrap

from initviz.network import LSUV_CALIBRATION_BATCH, NetworkSpec
from initviz.probe import INPUT_STREAM
from initviz.schemes import lsuv_rescale

_NORM_CODE = {"batchnorm": "nn.BatchNorm1d({width}), ", "layernorm": "nn.LayerNorm({width}), ",
              "none": ""}


COMMENT_WIDTH = 88  # a formula or a paper title is wrapped to stay readable in a narrow code box


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, COMMENT_WIDTH, initial_indent="# ", subsequent_indent="#   ",
                         break_long_words=False, break_on_hyphens=False)


def pytorch_code(spec: NetworkSpec, seed: int = 0, batch: int = 256) -> str:
    """A self-contained script (torch only) for ``spec`` initialized from ``seed``.

    Args:
        spec: the network (any architecture: each writes its own model, :mod:`initviz.archs`).
        seed: the seed of the weights (the probe's inputs are drawn apart from it, as the probe
            draws them).
        batch: how many inputs the script measures each entry's output std on.

    Returns:
        The script's source; run, it prints the std of every layer's activation (every block's
        residual stream), the numbers :func:`initviz.probe.profile` reports as ``act_std``.

    Example::

        >>> exec(pytorch_code(NetworkSpec.stack(64, 3), seed=1))  # doctest: +ELLIPSIS
        layer 1: activation std ...
    """
    architecture = spec.architecture
    lines = [*_imports(spec), *architecture.code(spec, seed), *_measure_code(spec, seed, batch),
             *architecture.measure_code()]
    return "\n".join(lines) + "\n"


def _imports(spec: NetworkSpec) -> list[str]:
    extra = ["from collections.abc import Sequence"] if spec.scheme == "lsuv" else []
    return ["import math", *extra, "", "import torch", "from torch import nn", ""]


def norm_code(spec: NetworkSpec, width: str) -> str:
    """The norm layer of ``spec`` over ``width`` units, as code with a trailing ``, ``."""
    return _NORM_CODE[spec.norm].format(width=width)


def model_comments(spec: NetworkSpec, shape: str) -> list[str]:
    """Comments that name the scheme, the network's ``shape``, the formula and the paper."""
    scheme = spec.resolved_scheme
    bias = spec.resolved_bias
    activation = spec.resolved_activation
    return [
        *_comment(f"{scheme.label} weights, {bias.label.lower()} biases, {activation.label}, "
                  f"{shape}."),
        *_comment(scheme.formula),
        *_comment(f"Reference: {scheme.reference}"),
    ]


def init_fn_code(spec: NetworkSpec, seed: int, layers: str = "nn.Linear",
                 fan_in: str = "m.in_features") -> list[str]:
    """The generator and ``init_fn``, applied to every module of the class(es) ``layers`` in
    order, weight then bias; ``fan_in`` is the code of such a module ``m``'s fan_in (what a bias
    bound depends on)."""
    scheme = spec.resolved_scheme
    bias = spec.resolved_bias
    return [
        f"g = torch.Generator().manual_seed({seed})",
        "",
        "",
        *([textwrap.dedent(inspect.getsource(scheme.own_fn)).rstrip(), "", ""]
          if scheme.own_fn else []),
        "def init_fn(m):",
        f"    if isinstance(m, {layers}):",
        textwrap.indent(scheme.code(spec.scheme_params, "m.weight"), " " * 8),
        textwrap.indent(bias.code(spec.bias_params, "m.bias").replace("m.in_features", fan_in),
                        " " * 8),
        "",
        "",
        "model.apply(init_fn)",
    ]


def source_of(*objects) -> list[str]:
    """The source of initviz's own functions and classes, for a script to copy."""
    lines: list[str] = []
    for obj in objects:
        lines += ["", "", textwrap.dedent(inspect.getsource(obj)).rstrip()]
    return lines + ["", ""]


def lsuv_code(spec: NetworkSpec, shape: str = "sizes[0]") -> list[str]:
    """initviz's LSUV rescaling, copied, and its call on calibration inputs of one example's
    ``shape`` (code) drawn from ``g``."""
    params = dict(spec.scheme_params)
    return [
        *source_of(lsuv_rescale)[:-2],
        "",
        "",
        f"calibration = torch.randn({LSUV_CALIBRATION_BATCH}, {shape}, generator=g)",
        f"lsuv_rescale(list(model), calibration, tol={params['tol']!r}, "
        f"max_iter={params['max_iter']!r})",
    ]


def _measure_code(spec: NetworkSpec, seed: int, batch: int) -> list[str]:
    """The probe's inputs; each architecture's loop then prints each entry's output std."""
    architecture = spec.architecture
    return [
        "",
        f"# The std of every {architecture.entry}'s {architecture.output} on N(0, 1) inputs "
        "(initviz's probe inputs).",
        f"x = torch.randn({batch}, {architecture.code_input}, "
        f"generator=torch.Generator().manual_seed({seed} ^ {INPUT_STREAM:#x}))",
        "with torch.no_grad():",
    ]


__all__ = ["init_fn_code", "lsuv_code", "model_comments", "norm_code", "pytorch_code",
           "source_of"]
