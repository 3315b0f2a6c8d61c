"""The command line: JSON shapes from docs/DESIGN.md, readable tables, and one-line errors (exit 2).

Most tests call ``main()`` in-process; two run the real ``python -m initviz`` in a subprocess.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from initviz.cli import build_parser, main
from initviz.cli_common import TEXT_WIDTH, format_table
from initviz.errors import format_bytes
from initviz.network import DEFAULT_MEMORY_BUDGET, memory_budget
from initviz.schemes import SCHEMES

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--width", "16", "--depth", "3", "--batch", "8"]
LAYER_KEYS = {
    "layer", "fan_in", "fan_out", "weight_mean", "weight_std", "weight_std_theory",
    "preact_mean", "preact_std", "preact_var_theory", "act_mean", "act_std",
    "saturated_frac", "dead_frac", "zero_frac", "grad_std", "weight_grad_norm",
    "grad_to_weight_ratio",
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schemes_json_lists_every_scheme_with_its_defaults(capsys):
    code, out, err = run(capsys, "schemes", "--json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [row["name"] for row in rows] == list(SCHEMES)
    for row in rows:
        assert set(row) == {"name", "label", "params", "formula", "reference"}
        assert all(isinstance(row[k], str) and row[k] for k in ("label", "formula", "reference"))
    by_name = {row["name"]: row for row in rows}
    assert by_name["normal"]["params"] == {"mean": 0.0, "std": 1.0}
    assert by_name["lsuv"]["params"] == {"tol": 0.1, "max_iter": 10}
    assert by_name["pytorch_default"]["params"] == {}


def test_schemes_table_gives_each_scheme_its_formula_and_reference(capsys):
    code, out, _ = run(capsys, "schemes")
    assert code == 0
    flat = " ".join(out.split())  # long text is wrapped over several lines
    for scheme in SCHEMES.values():
        assert f"{scheme.name}: {scheme.label}" in out
        assert " ".join(scheme.formula.split()) in flat
        assert " ".join(scheme.reference.split()) in flat
    assert "params mean=0.0, std=1.0 formula W ~ N(mean, std²)" in flat
    assert "He, Zhang, Ren & Sun (2015)" in flat


def _parser_actions():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for command, subparser in sub.choices.items():
        for action in subparser._actions:
            yield command, action


TEXT_COMMANDS = [
    ["schemes"],
    ["profile", *SMALL],
    ["profile", "--width", "8", "--depth", "2", "--batch", "4", "--scheme", "sparse",
     "--activation", "tanh", "--bias", "normal"],
    ["theory", "--grid", "5"],
    ["theory", "--activation", "tanh", "--scheme", "xavier_normal", "--grid", "5"],
    ["theory", "--scheme", "lsuv", "--grid", "4"],
    ["train", "--width", "8", "--depth", "2", "--steps", "4", "--batch", "8", "--schemes",
     "kaiming_normal,xavier_normal,normal", "--param", "std=0.1"],
    ["jacobian", "--width", "8", "--depth", "2"],
    ["jacobian", "--width", "16", "--depth", "8", "--scheme", "xavier_normal"],
]


@pytest.mark.parametrize("argv", TEXT_COMMANDS, ids=" ".join)
def test_readable_output_fits_a_terminal_of_100_columns(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    too_wide = [line for line in out.splitlines() if len(line) > TEXT_WIDTH]
    assert too_wide == []


def test_a_wide_table_is_split_into_blocks_that_each_start_with_the_key():
    frame = pd.DataFrame({"layer": [1, 2], **{f"column_{i:02d}": [1.5, 2.5] for i in range(20)}})
    text = format_table(frame)
    blocks = text.split("\n\n")
    assert len(blocks) > 1 and all(len(line) <= TEXT_WIDTH for line in text.splitlines())
    headers = [block.splitlines()[0].split() for block in blocks]
    assert all(header[0] == "layer" for header in headers)
    assert [name for header in headers for name in header[1:]] == list(frame.columns[1:])
    assert all(block.splitlines()[1].split()[0] == "1" for block in blocks)


@pytest.mark.parametrize("command, action", [
    pytest.param(command, action, id=f"{command} {action.dest}")
    for command, action in _parser_actions() if action.option_strings])
def test_every_flag_has_help(command, action):
    assert action.help and len(action.help) > 10
def test_profile_json_has_every_contract_key(capsys):
    code, out, err = run(capsys, "profile", *SMALL, "--activation", "tanh", "--scheme",
                         "xavier_normal", "--seed", "3", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert {"config", "device", "seconds", "first_nonfinite_layer", "theory", "layers"} <= \
        set(document)
    assert isinstance(document["seconds"], float) and document["seconds"] > 0
    assert document["device"] in ("cpu", "cuda", "mps")
    assert document["first_nonfinite_layer"] is None
    assert {"q_star", "chi1", "depth_scale"} <= set(document["theory"])
    assert document["theory"]["chi1"] == pytest.approx(1.0, abs=1e-6)  # tanh + Xavier: critical
    config = document["config"]
    assert (config["sizes"], config["activation"], config["scheme"], config["seed"],
            config["batch"]) == ([16, 16, 16], "tanh", "xavier_normal", 3, 8)
    assert [row["layer"] for row in document["layers"]] == [1, 2, 3]
    for row in document["layers"]:
        assert set(row) == LAYER_KEYS
        assert row["saturated_frac"] is not None and row["dead_frac"] is None  # tanh: no "dead"


def test_profile_flags_reach_the_spec(capsys):
    code, out, _ = run(capsys, "profile", "--sizes", "12,7", "--input-dim", "5", "--batch", "4",
                       "--scheme", "normal", "--param", "std=0.5", "--param", "mean=0",
                       "--bias", "constant", "--bias-param", "val=0.25", "--norm", "layernorm",
                       "--json")
    assert code == 0
    document = json.loads(out)
    assert document["config"] == {
        "sizes": [12, 7], "input_dim": 5, "activation": "relu", "scheme": "normal",
        "params": {"mean": 0.0, "std": 0.5}, "bias": "constant", "bias_params": {"val": 0.25},
        "norm": "layernorm", "batch": 4, "seed": 0, "input_mean": 0.0, "input_std": 1.0,
    }
    assert [(row["fan_in"], row["fan_out"]) for row in document["layers"]] == [(5, 12), (12, 7)]
    assert document["theory"]["chi1"] is None  # layernorm: no mean-field prediction


def test_profile_table_is_readable(capsys):
    code, out, err = run(capsys, "profile", *SMALL, "--device", "cpu")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("3 layers, relu, kaiming_normal") and "device cpu" in lines[0]
    assert lines[1].startswith("mean field: q* = 2, chi1 = 1 (critical)")
    # The columns come in blocks one under another, each led by the layer column.
    *blocks, legend = [block.splitlines() for block in "\n".join(lines[2:]).split("\n\n")]
    header = ["layer"] + [name for block in blocks for name in block[0].split()[1:]]
    assert header == ["layer", "fan_in", "fan_out", "weight_mean", "weight_std",
                      "weight_std_theory", "preact_mean", "preact_std", "preact_var_theory",
                      "act_mean", "act_std", "saturated_frac", "dead_frac", "zero_frac", "grad_std",
                      "weight_grad_norm", "grad_to_weight_ratio"]
    for block in blocks:
        assert [line.split()[0] for line in block[1:]] == ["1", "2", "3"]
    rows = [[cell for block in blocks for cell in block[1 + i].split()[1:]] for i in range(3)]
    rows = [[str(i + 1), *row] for i, row in enumerate(rows)]
    assert all(len(r) == len(header) for r in rows)
    assert all(row[header.index("saturated_frac")] == "n/a" for row in rows)  # relu
    legend = " ".join(legend)
    assert "dead_frac: share of units off for all 8 inputs" in legend
    assert "|dL/dW| / sqrt(batch)" in legend


def test_profile_of_an_exploding_network_says_where(capsys):
    code, out, _ = run(capsys, "profile", "--width", "256", "--depth", "16", "--batch", "8",
                       "--scheme", "normal", "--param", "std=100", "--json")
    assert code == 0
    document = json.loads(out)  # strict JSON: no NaN or Infinity
    first = document["first_nonfinite_layer"]
    assert isinstance(first, int) and 1 < first <= 16
    assert document["layers"][first - 1]["preact_std"] is None


BAD_INPUTS = [
    ["profile", "--scheme", "he"],
    ["profile", "--activation", "swish"],
    ["profile", "--bias", "xavier_normal"],
    ["profile", "--norm", "groupnorm"],
    ["profile", "--device", "tpu"],
    ["profile", "--param", "std"],                          # not KEY=VALUE
    ["profile", "--param", "=1"],
    ["profile", "--param", "gain=2"],                       # kaiming_normal has no gain
    ["profile", "--scheme", "normal", "--param", "std=-1"],
    ["profile", "--scheme", "normal", "--param", "std=wide"],
    ["profile", "--scheme", "uniform", "--param", "a=2", "--param", "b=1"],
    ["profile", "--scheme", "kaiming_normal", "--param", "mode=fan_avg"],
    ["profile", "--bias", "normal", "--bias-param", "std=abc"],
    ["profile", "--width", "0"],
    ["profile", "--width", "99999"],
    ["profile", "--width", "abc"],
    ["profile", "--width", "2.5"],
    ["profile", "--depth", "0"],
    ["profile", "--depth", "501"],
    ["profile", "--input-dim", "0"],
    ["profile", "--sizes", "8,x"],
    ["profile", "--sizes", ","],
    ["profile", "--sizes", "8,0"],
    ["profile", "--sizes", "8,8", "--width", "8"],
    ["profile", "--sizes", "8,8", "--depth", "2"],
    ["profile", "--batch", "0"],
    ["profile", "--batch", "100000"],
    ["profile", "--bins", "1"],
    ["profile", "--seed", "x"],
    ["profile", "--seed", "99999999999999999999999"],
    ["profile", "--width", "4096", "--depth", "500", "--batch", "8192"],  # too large for memory
    ["profile", "--no-such-flag"],
    ["schemes", "--width", "3"],
    ["nosuch"],
    [],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=lambda a: " ".join(a) or "(nothing)")
def test_every_bad_input_exits_2_with_one_line_and_no_traceback(capsys, argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("initviz: error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=lambda a: " ".join(a) or "(nothing)")
def test_every_error_is_a_sentence_not_python_talk(capsys, argv):
    _, _, err = run(capsys, *argv)
    # argparse's "invalid int value: 'abc'" and the repr of a string or a list read like code.
    assert "'" not in err and "invalid" not in err and "expected" not in err, err


def _flags_with_a_value():
    for command, action in _parser_actions():
        if action.option_strings and action.nargs != 0 and action.dest != "help":
            yield pytest.param(command, action.option_strings[0], id=f"{command} {action.dest}")


@pytest.mark.parametrize("command, flag", list(_flags_with_a_value()))
def test_a_huge_argument_is_quoted_in_short(capsys, command, flag):
    huge = "9x" * 50_000  # 100 KB: neither a number, nor a name, nor KEY=VALUE
    code, _, err = run(capsys, command, flag, huge)
    assert code == 2 and err.count("\n") == 1
    assert len(err) < 400, err[:400]


def test_an_unknown_flag_with_a_huge_value_is_quoted_in_short(capsys):
    code, _, err = run(capsys, "profile", "--nosuch", "v" * 100_000)
    assert code == 2 and len(err) < 400 and "100,0" in err


def test_too_large_says_how_much_it_needs(capsys):
    _, _, err = run(capsys, "profile", "--width", "4096", "--depth", "500", "--batch", "8192")
    assert "needs about 312.4 GiB" in err and format_bytes(memory_budget()) in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_device_falls_back_to_cpu_with_a_one_line_notice(capsys):
    code, out, err = run(capsys, "profile", *SMALL, "--device", "cuda", "--json")
    assert code == 0
    assert err.count("\n") == 1 and "cuda" in err and "cpu" in err
    assert json.loads(out)["device"] == "cpu"


def _python_m_initviz(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "initviz", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_python_m_initviz_profile_prints_one_json_document():
    done = _python_m_initviz("profile", *SMALL, "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(json.loads(done.stdout)["layers"]) == 3


def test_python_m_initviz_error_is_one_line_without_traceback():
    done = _python_m_initviz("profile", "--scheme", "he", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith('initviz: error: scheme "he" is not valid: give one of ')
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("argv", [["schemes"], ["profile", *SMALL, "--json"], ["theory"]],
                         ids=" ".join)
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(argv):
    # `| head -1` closes the pipe early: closing it before the command writes anything makes the
    # BrokenPipeError certain instead of a race with the pipe buffer.
    done = subprocess.Popen([sys.executable, "-m", "initviz", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done.stdout.close()
    _, err = done.communicate(timeout=120)
    assert done.returncode == 1
    assert err == b""


def test_an_unreadable_budget_variable_is_a_one_line_notice_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("INITVIZ_MEMORY_BUDGET_MB", "abc")
    code, out, err = run(capsys, "profile", *SMALL, "--json")
    assert code == 0 and json.loads(out)["layers"]
    assert err == ('initviz: notice: INITVIZ_MEMORY_BUDGET_MB="abc" is not a positive number of '
                   f"MiB; using the default {format_bytes(DEFAULT_MEMORY_BUDGET)}\n")
