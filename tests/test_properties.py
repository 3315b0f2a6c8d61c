"""Bad input, systematically: property-based tests over specs, command lines and links.

- Every valid spec (any scheme with parameters anywhere in their documented ranges, any bias,
  activation, norm and small shape) profiles without an error, and its statistics are finite
  unless the profile says where they stopped being (``first_nonfinite_layer``).
- Every invalid spec is refused with :class:`InvalidSpec` whose message starts with the field.
- ``python -m initviz`` with random arguments either succeeds (valid JSON with ``--json``) or
  exits 2 with one line on stderr, never a traceback.
- The page with a random query string never shows an exception.

Sizes stay small (the properties are about values, not scale) and the page, at seconds a run,
gets few examples, so the file runs in well under a minute; the hypothesis profiles
(tests/conftest.py) derandomize under CI.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from initviz.activations import ACTIVATIONS
from initviz.cli import main as cli_main
from initviz.datasets import MAX_SEED
from initviz.devices import DEVICE_CHOICES
from initviz.errors import InvalidSpec
from initviz.network import MAX_DEPTH, MAX_INPUT_DIM, MAX_WIDTH, NORMS, NetworkSpec
from initviz.probe import KINDS, MAX_BINS, MAX_PROBE_BATCH, profile
from initviz.scheme_types import Param
from initviz.schemes import BIAS_SCHEMES, SCHEMES, schemes_for
from initviz.text import quote

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SMALL = 24
"""The largest width, depth and input size drawn for a valid spec."""
MEASURED = ["weight_mean", "weight_std", "preact_mean", "preact_std", "act_mean", "act_std",
            "grad_std", "weight_grad_norm"]
"""Columns measured on every layer (the others are theory, or not defined for every activation)."""


# --------------------------------------------------------------------------------------------------
# Strategies


def _param_value(param: Param) -> st.SearchStrategy:
    if param.choices:
        return st.sampled_from(param.choices)
    if param.integer:
        return st.integers(int(param.low), int(param.high))
    return st.floats(param.low, param.high, allow_nan=False)


@st.composite
def scheme_params(draw, table: dict, name: str) -> dict:
    """A subset of the scheme's parameters, each anywhere in its documented range."""
    params = table[name].params
    chosen = draw(st.lists(st.sampled_from(params), unique=True)) if params else []
    return {param.name: draw(_param_value(param)) for param in chosen}


def _params_resolve(table: dict, name: str, params: dict) -> bool:
    """Whether the parameters pass the scheme's own cross-checks (uniform's a < b and the like),
    which a draw of each parameter within its range does not respect by itself."""
    try:
        table[name].resolve(params)
    except InvalidSpec:
        return False
    return True


@st.composite
def valid_specs(draw) -> NetworkSpec:
    scheme = draw(st.sampled_from(schemes_for("mlp")))  # not the conv-only ones
    params = draw(scheme_params(SCHEMES, scheme))
    assume(_params_resolve(SCHEMES, scheme, params))
    bias = draw(st.sampled_from(list(BIAS_SCHEMES)))
    bias_params = draw(scheme_params(BIAS_SCHEMES, bias))
    assume(_params_resolve(BIAS_SCHEMES, bias, bias_params))
    return NetworkSpec(
        sizes=tuple(draw(st.lists(st.integers(1, SMALL), min_size=1, max_size=SMALL))),
        input_dim=draw(st.integers(1, SMALL)),
        activation=draw(st.sampled_from(list(ACTIVATIONS))),
        scheme=scheme, scheme_params=params, bias=bias, bias_params=bias_params,
        norm=draw(st.sampled_from(NORMS)))


def _no_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


garbage_text = st.text(max_size=10).filter(_no_number)
"""Text that is no number at all (not even '１２', which Python reads as 12)."""


def out_of_range(low: int, high: int) -> st.SearchStrategy:
    """Numbers that are not a whole number in [low, high], and things that are no number."""
    return st.one_of(
        st.integers(max_value=low - 1), st.integers(min_value=high + 1),
        st.floats().filter(lambda x: not (math.isfinite(x) and x.is_integer())),
        garbage_text, st.none(), st.booleans(), st.just([1]))


# --------------------------------------------------------------------------------------------------
# (a) Every valid spec profiles, and its statistics are finite or reported


@settings(max_examples=60)
@given(spec=valid_specs(), batch=st.integers(1, 32), seed=st.integers(0, MAX_SEED),
       bins=st.integers(2, MAX_BINS))
# Found by this test: gradients so small (subnormal) that bins/span overflowed, activations each
# below float32's maximum whose range overflows it, and a weight gradient whose entries square
# past it: each gave NaN statistics that first_nonfinite_layer did not report.
@example(spec=NetworkSpec(sizes=(2, 1, 1, 1, 1, 1), input_dim=1, activation="sigmoid",
                          scheme="pytorch_default", bias="constant", bias_params={"val": -16.0}),
         batch=1, seed=0, bins=2)
@example(spec=NetworkSpec(sizes=(24,) * 16, input_dim=24, activation="linear", scheme="normal",
                          scheme_params={"std": 100.0}), batch=8, seed=6, bins=10)
@example(spec=NetworkSpec(sizes=(1, 3, 4, 4, 4, 6, 6, 8, 14, 9), input_dim=22,
                          activation="linear", scheme="normal",
                          scheme_params={"mean": 20.0, "std": 0.0}), batch=1, seed=0, bins=2)
def test_every_valid_spec_profiles_with_finite_or_reported_statistics(spec, batch, seed, bins):
    assume(spec.norm != "batchnorm" or batch > 1)  # refused: see the batch test below
    result = profile(spec, batch=batch, seed=seed, device="cpu", bins=bins)

    layers = result.layers
    assert list(layers["layer"]) == list(range(1, spec.depth + 1))
    bad = ~np.isfinite(layers[MEASURED].to_numpy(dtype=float))
    first = result.first_nonfinite_layer
    if first is None:
        assert not bad.any(), layers[MEASURED][bad.any(axis=1)]
        assert result.nonfinite_pass is None
    else:
        assert 1 <= first <= spec.depth and result.nonfinite_pass in ("forward", "backward")
        if result.nonfinite_pass == "forward":  # the layers before it are finite forward
            forward = [c for c in MEASURED if not c.startswith(("grad", "weight_grad"))]
            assert np.isfinite(layers[forward].to_numpy(dtype=float)[:first - 1]).all()
    # Every histogram that is drawn counts every value of its tensor, in its bins.
    numel = {"weight": [fi * fo for fi, fo in spec.fans],
             "preact": [batch * w for w in spec.sizes], "act": [batch * w for w in spec.sizes],
             "grad": [batch * w for w in spec.sizes]}
    counts = result.histograms.groupby(["kind", "layer"])["count"].agg(["sum", "size"])
    for (kind, layer), row in counts.iterrows():
        assert row["size"] == bins and row["sum"] == numel[kind][layer - 1], (kind, layer)
    assert set(counts.index.get_level_values("kind")) <= set(KINDS)
    json.dumps(result.to_json_dict(), allow_nan=False)  # the CLI's document, strictly JSON


# --------------------------------------------------------------------------------------------------
# (b) Every invalid spec is refused, naming the field


def _refused(field: str, build) -> None:
    with pytest.raises(InvalidSpec) as caught:
        build()
    assert caught.value.field == field
    owner = field.rsplit(".", 1)[0]
    assert str(caught.value).startswith((f"{field} ", f"{owner} has no parameter")), \
        str(caught.value)
    assert "\n" not in str(caught.value)


BASE = dict(sizes=(8, 8), input_dim=8)


@given(value=out_of_range(1, MAX_WIDTH))
def test_a_bad_width_is_refused(value):
    _refused("width", lambda: NetworkSpec(sizes=(8, value), input_dim=8))


@given(value=out_of_range(1, MAX_DEPTH))
def test_a_bad_depth_is_refused(value):
    _refused("depth", lambda: NetworkSpec.stack(8, value))


@given(value=st.one_of(st.just(()), st.just([]), garbage_text, st.none(), st.integers()))
def test_bad_sizes_are_refused(value):
    _refused("sizes", lambda: NetworkSpec(sizes=value))


def test_too_many_layers_are_refused_as_depth():
    _refused("depth", lambda: NetworkSpec(sizes=(2,) * (MAX_DEPTH + 1)))


@given(value=out_of_range(1, MAX_INPUT_DIM))
def test_a_bad_input_dim_is_refused(value):
    _refused("input_dim", lambda: NetworkSpec(**{**BASE, "input_dim": value}))


@pytest.mark.parametrize("field,names", [
    ("activation", ACTIVATIONS), ("norm", NORMS), ("scheme", SCHEMES), ("bias", BIAS_SCHEMES)])
@given(data=st.data())
def test_an_unknown_name_is_refused(field, names, data):
    value = data.draw(st.one_of(st.text(max_size=12), st.sampled_from(list(SCHEMES)),
                                st.sampled_from(list(ACTIVATIONS)))
                      .filter(lambda v: v not in names))
    _refused(field, lambda: NetworkSpec(**{**BASE, field: value}))


def _bad_param_value(param: Param) -> st.SearchStrategy:
    if param.choices:
        return st.one_of(st.text(max_size=10), st.integers()).filter(
            lambda v: v not in param.choices)
    # Filtered rather than exclude_max: -0.0 is below 0.0 for hypothesis, not for Python.
    bad = [st.floats(max_value=param.low, allow_nan=False).filter(lambda x: x < param.low),
           st.floats(min_value=param.high, allow_nan=False).filter(lambda x: x > param.high),
           st.sampled_from([math.nan, math.inf, -math.inf, "nan", "1e999"]),
           garbage_text, st.none()]
    if param.integer:
        bad.append(st.floats(param.low, param.high).filter(lambda x: not x.is_integer()))
    return st.one_of(bad)


@pytest.mark.parametrize("kind,table", [("scheme", SCHEMES), ("bias", BIAS_SCHEMES)])
@given(data=st.data())
def test_a_bad_scheme_parameter_is_refused_naming_scheme_and_parameter(kind, table, data):
    name = data.draw(st.sampled_from(list(table)))
    params = table[name].params
    if params and data.draw(st.booleans()):
        param = data.draw(st.sampled_from(params))
        key, value = param.name, data.draw(_bad_param_value(param))
    else:  # a parameter this scheme does not have
        key = data.draw(st.text(string.ascii_letters + "_", min_size=1, max_size=8).filter(
            lambda k: k not in {p.name for p in params}))
        value = 1.0
    params_field = "scheme_params" if kind == "scheme" else "bias_params"
    prefix = name if kind == "scheme" else f"bias.{name}"  # as the page's widget keys
    _refused(f"{prefix}.{key}",
             lambda: NetworkSpec(**BASE, **{kind: name, params_field: {key: value}}))


@pytest.mark.parametrize("field,low,high", [("batch", 1, MAX_PROBE_BATCH),
                                            ("bins", 2, MAX_BINS),
                                            ("seed", 0, MAX_SEED)])
@given(data=st.data())
def test_bad_probe_arguments_are_refused(field, low, high, data):
    value = data.draw(out_of_range(low, high))
    _refused(field, lambda: profile(NetworkSpec(**BASE), **{field: value}, device="cpu"))


def test_a_truncated_normal_that_torch_could_not_sample_is_refused():
    # [5, 100] lies 5 std above the mean: trunc_normal_ keeps 0.2% of its draws, and each round
    # redraws only the rejected ones, so a 256 x 256 weight took 8 s and a far-off mean hours.
    _refused("trunc_normal.mean", lambda: NetworkSpec(
        **BASE, scheme="trunc_normal", scheme_params={"std": 1.0, "a": 5.0, "b": 100.0}))


def test_batchnorm_over_a_single_input_is_refused_as_batch():
    _refused("batch", lambda: profile(NetworkSpec(**BASE, norm="batchnorm"), batch=1,
                                      device="cpu"))


# --------------------------------------------------------------------------------------------------
# (c) The command line: success with JSON, or exit 2 and one line


def _token(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A flag's value: usually one that could be valid, sometimes garbage."""
    return st.one_of(valid, valid, st.sampled_from(["-1", "0", "99999", "1e999", "nan", "", "x",
                                                    "1.5", "--", "=", "a=b", "8,,8"]))


def _names(names) -> st.SearchStrategy:
    return _token(st.sampled_from(list(names)))


FLAG_VALUES = {
    "--width": _token(st.integers(1, SMALL).map(str)),
    "--depth": _token(st.integers(1, 6).map(str)),
    "--sizes": _token(st.lists(st.integers(1, SMALL).map(str), min_size=1, max_size=4)
                      .map(",".join)),
    "--input-dim": _token(st.integers(1, SMALL).map(str)),
    "--activation": _names(ACTIVATIONS),
    "--scheme": _names(SCHEMES),
    "--param": _token(st.builds("{}={}".format, st.sampled_from(
        sorted({p.name for s in SCHEMES.values() for p in s.params})),
        st.sampled_from(["0", "0.5", "1", "2", "fan_out", "relu", "-3", "x"]))),
    "--bias": _names(BIAS_SCHEMES),
    "--bias-param": _token(st.builds("{}={}".format, st.sampled_from(["val", "mean", "std"]),
                                     st.sampled_from(["0", "0.1", "-1", "x"]))),
    "--norm": _names(NORMS),
    "--seed": _token(st.integers(0, 2**31).map(str)),
    "--device": _names(DEVICE_CHOICES),
    "--batch": _token(st.integers(1, 32).map(str)),
    "--bins": _token(st.integers(1, 40).map(str)),
    "--grid": _token(st.integers(1, 12).map(str)),
    "--sigma-w2": _token(st.floats(0, 5).map(str)),
    "--sigma-b2": _token(st.floats(0, 1).map(str)),
}


def _stray(token: str) -> bool:
    """Not a way to ask for help, which prints usage and exits 0 by design."""
    return not (token.startswith("-h") or (len(token) > 2 and "--help".startswith(token)))


@st.composite
def command_lines(draw) -> list[str]:
    argv = [draw(st.sampled_from(["profile", "theory", "jacobian", "schemes"]))]
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 9)) == 0:  # now and then a stray token
            argv.append(draw(st.text(string.ascii_letters + "-=,.", max_size=8).filter(_stray)))
        else:
            flag = draw(st.sampled_from(sorted(FLAG_VALUES)))
            argv += [flag, draw(FLAG_VALUES[flag])]
    if draw(st.integers(0, 4)):
        argv.insert(draw(st.integers(1, len(argv))), "--json")
    return argv


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as stop:  # argparse's own exit; must not happen with these arguments
            code = f"SystemExit({stop.code})"
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=80)
@given(argv=command_lines())
def test_the_command_line_succeeds_with_json_or_fails_in_one_line(argv):
    code, out, err = _run_cli(argv)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert code in (0, 2), (code, err)
    lines = err.splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("initviz: error: "), err
        assert out == ""
    else:
        assert all(line.startswith("initviz: notice: ") for line in lines), err
        if "--json" in argv:
            json.loads(out)


# --------------------------------------------------------------------------------------------------
# (d) The page with any query string


CONTRACT_KEYS = ["preset", "input_dim", "width", "depth", "sizes", "activation", "scheme", "bias",
                 "norm", "seed", "batch", "dataset", "optimizer", "lr", "steps", "compare",
                 "device", "seeds", "weight_layer", "focus_scheme"]
OTHER_KEYS = ["kaiming_normal.a", "kaiming_normal.mode", "normal.std", "uniform.b", "lsuv.tol",
              "trunc_normal.std", "trunc_normal.a",
              "bias.normal.std", "bias.constant.val",
              "train_button", "url_read", "train_job", "", "a b", "%", "compare[]"]
URL_VALUE = st.one_of(
    st.integers(1, 48).map(str),
    st.sampled_from(["0", "-1", "99999", "2.5", "1e999", "nan", "inf", "", " ", "0x10", "none",
                     "he2015", "tanh", "xavier_normal", "batchnorm", "cuda", "moons", "adam",
                     "8,16", "8,,x", "true", "[1]", "%00"]),
    st.text(max_size=12))


@st.composite
def query_strings(draw) -> dict[str, str | list[str]]:
    keys = draw(st.lists(st.sampled_from(CONTRACT_KEYS + OTHER_KEYS) | st.text(max_size=6),
                         min_size=1, max_size=6, unique=True))
    return {key: draw(st.lists(URL_VALUE, min_size=2, max_size=3)) if draw(st.booleans())
            and key == "compare" else draw(URL_VALUE) for key in keys}


@pytest.mark.slow
@settings(max_examples=8)
@given(query=query_strings())
@example(query={"": "1"})  # an empty key, which session state refuses to look up
@example(query={"weight_layer": "1", "a b": "2"})
def test_any_link_opens_the_page_without_an_exception(query):
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, (query, [e.value for e in at.exception])
    warnings = " ".join(w.value for w in at.warning)
    for key in query:
        if key not in CONTRACT_KEYS and "." not in key:
            assert f"parameter {quote(key)} is not a setting" in warnings, (key, warnings)
