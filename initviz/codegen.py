"""The plain PyTorch script that builds the chosen network and initializes it like initviz does.

The script draws from one ``torch.Generator`` in the same order as
:func:`initviz.network.build_model` (``model.apply`` visits the Linear layers in order, weight
then bias), so it reproduces initviz's weights exactly, and it measures each layer on the same
inputs as the probe, so it prints the same activation statistics. The init calls come from
:meth:`Scheme.code`, the same description that initviz applies; LSUV's rescaling and a scheme's
own init function (sparse) are initviz's own functions, copied by ``inspect``.
"""

from __future__ import annotations

import inspect
import textwrap

from initviz.network import LSUV_CALIBRATION_BATCH, NetworkSpec
from initviz.probe import INPUT_STREAM
from initviz.schemes import lsuv_rescale

_NORM_CODE = {"batchnorm": "nn.BatchNorm1d(fan_out), ", "layernorm": "nn.LayerNorm(fan_out), ",
              "none": ""}


COMMENT_WIDTH = 88  # a formula or a paper title is wrapped to stay readable in a narrow code box


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, COMMENT_WIDTH, initial_indent="# ", subsequent_indent="#   ",
                         break_long_words=False, break_on_hyphens=False)


def pytorch_code(spec: NetworkSpec, seed: int = 0, batch: int = 256) -> str:
    """A self-contained script (torch only) for ``spec`` initialized from ``seed``.

    Args:
        spec: the network.
        seed: the seed of the weights (the probe's inputs are drawn apart from it, as the probe
            draws them).
        batch: how many inputs the script measures each layer's activation std on.

    Returns:
        The script's source; run, it prints the std of every layer's activation, the numbers
        :func:`initviz.probe.profile` reports as ``act_std``.

    Example::

        >>> exec(pytorch_code(NetworkSpec.stack(64, 3), seed=1))  # doctest: +ELLIPSIS
        layer 1: activation std ...
    """
    lines = [*_imports(spec), *_model_code(spec), *_init_code(spec, seed)]
    if spec.scheme == "lsuv":
        lines += _lsuv_code(spec)
    lines += _measure_code(seed, batch)
    return "\n".join(lines) + "\n"


def _imports(spec: NetworkSpec) -> list[str]:
    extra = ["from collections.abc import Sequence"] if spec.scheme == "lsuv" else []
    return ["import math", *extra, "", "import torch", "from torch import nn", ""]


def _model_code(spec: NetworkSpec) -> list[str]:
    """Comments that name the scheme, its formula and paper; the model as nn.Sequential."""
    scheme = spec.resolved_scheme
    bias = spec.resolved_bias
    activation = spec.resolved_activation
    act_code = f"nn.{activation.module.__name__}()"
    uniform = len(set(spec.sizes)) == 1
    sizes_code = (f"[{spec.input_dim}] + [{spec.sizes[0]}] * {spec.depth}" if uniform
                  else repr([spec.input_dim, *spec.sizes]))
    return [
        *_comment(f"{scheme.label} weights, {bias.label.lower()} biases, {activation.label}, "
                  f"{spec.depth} hidden layers."),
        *_comment(scheme.formula),
        *_comment(f"Reference: {scheme.reference}"),
        f"sizes = {sizes_code}  # the input, then each hidden layer",
        "model = nn.Sequential(*[",
        f"    nn.Sequential(nn.Linear(fan_in, fan_out), {_NORM_CODE[spec.norm]}{act_code})",
        "    for fan_in, fan_out in zip(sizes[:-1], sizes[1:])",
        "])",
        "",
    ]


def _init_code(spec: NetworkSpec, seed: int) -> list[str]:
    """The generator and ``init_fn``, applied to every Linear in order, weight then bias."""
    scheme = spec.resolved_scheme
    bias = spec.resolved_bias
    return [
        f"g = torch.Generator().manual_seed({seed})",
        "",
        "",
        *([textwrap.dedent(inspect.getsource(scheme.own_fn)).rstrip(), "", ""]
          if scheme.own_fn else []),
        "def init_fn(m):",
        "    if isinstance(m, nn.Linear):",
        textwrap.indent(scheme.code(spec.scheme_params, "m.weight"), " " * 8),
        textwrap.indent(bias.code(spec.bias_params, "m.bias"), " " * 8),
        "",
        "",
        "model.apply(init_fn)",
    ]


def _lsuv_code(spec: NetworkSpec) -> list[str]:
    """initviz's LSUV rescaling, copied, and its call on calibration inputs drawn from ``g``."""
    params = dict(spec.scheme_params)
    source = textwrap.dedent(inspect.getsource(lsuv_rescale))
    return [
        "",
        "",
        source.rstrip(),
        "",
        "",
        f"calibration = torch.randn({LSUV_CALIBRATION_BATCH}, sizes[0], generator=g)",
        f"lsuv_rescale(list(model), calibration, tol={params['tol']!r}, "
        f"max_iter={params['max_iter']!r})",
    ]


def _measure_code(seed: int, batch: int) -> list[str]:
    """The loop that prints each layer's activation std on the probe's inputs."""
    return [
        "",
        "# The std of every layer's activation on N(0, 1) inputs (initviz's probe inputs).",
        f"x = torch.randn({batch}, sizes[0], "
        f"generator=torch.Generator().manual_seed({seed} ^ {INPUT_STREAM:#x}))",
        "with torch.no_grad():",
        "    for layer, block in enumerate(model, start=1):",
        "        x = block(x)",
        "        print(f\"layer {layer}: activation std {x.std(correction=0).item():.4g}\")",
    ]


__all__ = ["pytorch_code"]
