"""The ``inspect`` subcommand: the probe's statistics for your own ``nn.Module``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable

from initviz.cli_common import TEXT_WIDTH, UsageError, format_table, parse_key_value, print_json
from initviz.errors import InitvizError
from initviz.schemes import BIAS_SCHEMES, SCHEMES


def _module_factory(text: str) -> Callable[[], object]:
    """``package.module:factory`` imported from the current directory or PYTHONPATH."""
    import importlib
    import os

    module_name, sep, factory_name = text.partition(":")
    if not sep or not module_name or not factory_name:
        raise UsageError(f"--model {text}: expected MODULE:FACTORY, e.g. mypkg.models:build")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--model {text}: cannot import {module_name} ({error})") from None
    except Exception as error:  # the user's module raised while importing
        raise UsageError(f"--model {text}: importing {module_name} raised "
                         f"{type(error).__name__}: {error}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"--model {text}: {module_name} has no callable {factory_name!r}")
    return factory


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers separated by commas (B,D[,...]), got {text!r}")
    return shape


INSPECT_TABLE = {"layer": "layer", "name": "name", "kind": "kind", "fan_in": "fan_in",
                 "fan_out": "fan_out", "weight_std": "w_std", "weight_std_theory": "w_theory",
                 "act_std": "act_std", "grad_std": "grad_std", "dead_frac": "dead"}
NAME_WIDTH = 19


def _cmd_inspect(args: argparse.Namespace) -> None:
    import torch

    from initviz.inspection import inspect
    from initviz.layers import init_

    factory = _module_factory(args.model)
    torch.manual_seed(args.seed)  # for a factory that draws torch's default initialization
    try:
        model = factory()
    except Exception as error:
        raise UsageError(f"--model {args.model}: the factory raised {type(error).__name__}: "
                         f"{error}") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {args.model}: the factory returned an object of type "
                         f"{type(model).__name__}, not a torch.nn.Module")
    if args.scheme is not None:
        init_(model, args.scheme, bias=args.bias, bias_params=dict(args.bias_param),
              seed=args.seed, **dict(args.param))
    elif args.param:
        raise UsageError("--param needs --scheme")
    x = torch.randn(*args.input_shape, generator=torch.Generator().manual_seed(args.seed))
    try:
        result = inspect(model, x)
    except InitvizError:
        raise
    except Exception as error:  # the model refused an input of this shape
        raise UsageError(f"the model failed on an input of shape "
                         f"{','.join(map(str, args.input_shape))}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if args.json:
        print_json(result.to_json_dict())
        return
    print(textwrap.fill(
        f"{args.model}, input {'x'.join(map(str, args.input_shape))} ~ N(0, 1), "
        f"{'scheme ' + args.scheme if args.scheme else 'as the factory built it'}; "
        f"loss: {result.loss}", TEXT_WIDTH))
    print(textwrap.fill(result.verdict, TEXT_WIDTH))
    table = result.layers[list(INSPECT_TABLE)].rename(columns=INSPECT_TABLE)
    table["name"] = [name if len(name) <= NAME_WIDTH else "…" + name[-NAME_WIDTH + 1:]
                     for name in table["name"]]
    print(format_table(table))
    for name in result.not_called:
        print(textwrap.fill(f"{name}: its forward never ran (its parent uses its weights "
                            "directly), so it has no row", TEXT_WIDTH))


def add_inspect(sub, common) -> None:
    cmd = sub.add_parser("inspect", help="per-layer statistics of your own nn.Module")
    cmd.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                     help="FACTORY() in MODULE (from the current directory or PYTHONPATH) "
                          "returns the nn.Module")
    cmd.add_argument("--input-shape", type=_shape, required=True, metavar="B,D[,...]",
                     help="shape of the N(0, 1) input, batch first")
    cmd.add_argument("--scheme", help="apply this scheme first (initviz.init_): "
                                      + ", ".join(SCHEMES))
    cmd.add_argument("--param", type=parse_key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="a scheme parameter (repeatable)")
    cmd.add_argument("--bias", default="zeros", help=", ".join(BIAS_SCHEMES))
    cmd.add_argument("--bias-param", type=parse_key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="a bias-scheme parameter (repeatable)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the scheme and the input")
    cmd.add_argument("--json", action="store_true", help="print one JSON document")
    cmd.set_defaults(run=_cmd_inspect)


__all__ = ["INSPECT_TABLE", "NAME_WIDTH", "add_inspect"]
