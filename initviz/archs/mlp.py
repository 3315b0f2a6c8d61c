"""``mlp``: the plain stack, ``depth`` hidden layers ``Linear -> [norm] -> activation``.

A probe entry is one hidden layer: its pre-activation is the input of the activation, its output
the activation's output, its weight the layer's Linear. Mean-field theory is the length map of
:func:`initviz.meanfield.predict_stack`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from initviz.archs import Architecture, ProbePoint
from initviz.meanfield import predict_stack
from initviz.network import (LSUV_CALIBRATION_BATCH, MAX_DEPTH, Linear, NetworkSpec, init_linear,
                             norm_layer)
from initviz.schemes import lsuv_rescale


class MLP(Architecture):
    name = "mlp"
    label = "plain stack"
    max_depth = MAX_DEPTH
    fixed_point = True
    code_input = "sizes[0]"
    batched_training = True

    def fans(self, spec: NetworkSpec) -> list[tuple[int, int]]:
        ins = (spec.input_dim, *spec.sizes[:-1])
        return list(zip(ins, spec.sizes))

    def parameter_count(self, spec: NetworkSpec, out_features: int | None) -> int:
        fans = self.fans(spec) + ([(spec.sizes[-1], out_features)] if out_features else [])
        return sum(fi * fo + fo for fi, fo in fans)

    def units(self, spec: NetworkSpec) -> int:
        return sum(spec.sizes)

    def build(self, spec: NetworkSpec, generator: torch.Generator, *,
              out_features: int | None, calibration: torch.Tensor | None) -> nn.Sequential:
        """An ``nn.Sequential`` of blocks, each an ``nn.Sequential`` with ``linear``, optionally
        ``norm``, and ``act``; then the output Linear where ``out_features`` is given."""
        activation = spec.resolved_activation
        blocks: list[nn.Module] = []
        for fan_in, fan_out in self.fans(spec):
            parts: OrderedDict[str, nn.Module] = OrderedDict(linear=Linear(fan_in, fan_out))
            norm = norm_layer(spec.norm, fan_out)
            if norm is not None:
                parts["norm"] = norm
            parts["act"] = activation.module()
            init_linear(parts["linear"], spec, generator)
            blocks.append(nn.Sequential(parts))
        if spec.scheme == "lsuv":
            if calibration is None:
                calibration = torch.randn(LSUV_CALIBRATION_BATCH, spec.input_dim,
                                          generator=generator)
            params = dict(spec.scheme_params)
            lsuv_rescale(blocks, calibration, params["tol"], params["max_iter"])
        if out_features is not None:
            head = Linear(spec.sizes[-1], out_features)
            init_linear(head, spec, generator)
            blocks.append(head)
        return nn.Sequential(*blocks)

    def probe_points(self, model: nn.Module, spec: NetworkSpec) -> list[ProbePoint]:
        return [ProbePoint(output=model[i].act, preact=model[i].act, preact_input=True,
                           region=model[i].act, weight=model[i].linear)
                for i in range(spec.depth)]

    def chain(self, model: nn.Sequential) -> nn.Sequential:
        return model

    def predict(self, spec, input_second_moment, output_grad_var):
        return predict_stack(spec, input_second_moment, output_grad_var)

    def code(self, spec: NetworkSpec, seed: int) -> list[str]:
        # codegen imports the probe, which imports this package: imported when first used.
        from initviz.codegen import init_fn_code, lsuv_code, model_comments, norm_code

        activation = spec.resolved_activation
        act_code = f"nn.{activation.module.__name__}()"
        uniform = len(set(spec.sizes)) == 1
        sizes_code = (f"[{spec.input_dim}] + [{spec.sizes[0]}] * {spec.depth}" if uniform
                      else repr([spec.input_dim, *spec.sizes]))
        lines = [
            *model_comments(spec, f"{spec.depth} hidden layers"),
            f"sizes = {sizes_code}  # the input, then each hidden layer",
            "model = nn.Sequential(*[",
            f"    nn.Sequential(nn.Linear(fan_in, fan_out), {norm_code(spec, 'fan_out')}"
            f"{act_code})",
            "    for fan_in, fan_out in zip(sizes[:-1], sizes[1:])",
            "])",
            "",
            *init_fn_code(spec, seed),
        ]
        return lines + (lsuv_code(spec) if spec.scheme == "lsuv" else [])

    def measure_code(self) -> list[str]:
        return [
            "    for layer, block in enumerate(model, start=1):",
            "        x = block(x)",
            "        print(f\"layer {layer}: activation std {x.std(correction=0).item():.4g}\")",
        ]


__all__ = ["MLP"]
