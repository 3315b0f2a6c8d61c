"""``python -m initviz inspect``: the JSON contract (profile's keys plus name and kind), the
readable table, and one-line errors (exit 2) for every way the model can fail to load."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from initviz import examples
from initviz.cli import main
from initviz.inspection import inspect
from initviz.layers import init_
from initviz.probe import LAYER_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
LAYER_KEYS = set(LAYER_COLUMNS) | {"name", "kind"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("factory, shape", [
    ("resnet", "8,3,8,8"), ("transformer", "8,6,16"), ("lstm", "8,5,12"), ("net", "8,784")])
def test_json_has_profiles_keys_plus_name_and_kind(capsys, factory, shape):
    code, out, err = run(capsys, "inspect", "--model", f"initviz.examples:{factory}",
                         "--input-shape", shape, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["layers"]
    for number, row in enumerate(document["layers"], start=1):
        assert set(row) == LAYER_KEYS
        assert row["layer"] == number


def test_json_equals_the_api_on_the_same_model_and_input(capsys):
    code, out, _ = run(capsys, "inspect", "--model", "initviz.examples:lstm", "--input-shape",
                       "4,5,12", "--scheme", "orthogonal", "--param", "gain=2", "--seed", "3",
                       "--json")
    assert code == 0
    layers = json.loads(out)["layers"]
    torch.manual_seed(3)
    model = examples.lstm()
    init_(model, "orthogonal", gain=2.0, seed=3)
    x = torch.randn(4, 5, 12, generator=torch.Generator().manual_seed(3))
    expected = inspect(model, x).layers
    assert [row["name"] for row in layers] == ["lstm", "head"]
    assert [row["kind"] for row in layers] == ["LSTM", "Linear"]
    for row, (_, want) in zip(layers, expected.iterrows()):
        assert row["act_std"] == pytest.approx(want["act_std"], rel=1e-9)
        assert row["grad_std"] == pytest.approx(want["grad_std"], rel=1e-9)
        assert row["weight_std"] == pytest.approx(want["weight_std"], rel=1e-9)


def test_table_fits_100_columns_and_names_the_verdict(capsys):
    code, out, err = run(capsys, "inspect", "--model", "initviz.examples:transformer",
                         "--input-shape", "8,6,16", "--scheme", "xavier_uniform")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(line.startswith("Healthy:") for line in lines)
    assert "out_proj: its forward never ran" in out


def test_the_tutorials_uniform_init_is_called_exploding(capsys):
    code, out, _ = run(capsys, "inspect", "--model", "initviz.examples:net_uniform",
                       "--input-shape", "8,784", "--json")
    document = json.loads(out)
    assert document["verdict"]["kind"] == "exploding"
    assert {row["scheme"] for row in document["recognized"]} == {"uniform"}


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def good():\n    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())\n"
        "def broken():\n    raise RuntimeError('no weights file')\n"
        "def not_a_module():\n    return 42\n")
    (tmp_path / "badimport.py").write_text("raise ValueError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("mymodels", "badimport"):
        sys.modules.pop(name, None)


def test_a_model_from_the_current_directory(capsys, user_models):
    code, out, err = run(capsys, "inspect", "--model", "mymodels:good", "--input-shape", "16,4",
                         "--json")
    assert (code, err) == (0, "")
    assert [row["name"] for row in json.loads(out)["layers"]] == ["0"]


@pytest.mark.parametrize("model, shape, message", [
    ("nosuchmodule:f", "4,4", "cannot import nosuchmodule"),
    ("mymodels:missing", "4,4", "mymodels has no callable 'missing'"),
    ("mymodels", "4,4", "expected MODULE:FACTORY"),
    ("mymodels:broken", "4,4", "the factory raised RuntimeError: no weights file"),
    ("mymodels:not_a_module", "4,4", "returned an object of type int, not a torch.nn.Module"),
    ("badimport:f", "4,4", "importing badimport raised ValueError: boom at import"),
    ("mymodels:good", "4,x", "--input-shape: expected positive whole numbers"),
    ("mymodels:good", "4,0", "--input-shape: expected positive whole numbers"),
    ("mymodels:good", "4,5", 'inputs "4x5" is not valid: give inputs the model accepts: on '
                             "the first entry of each it raised RuntimeError: mat1 and mat2"),
])
def test_errors_are_one_line_with_exit_2(capsys, user_models, model, shape, message):
    code, out, err = run(capsys, "inspect", "--model", model, "--input-shape", shape)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_param_without_scheme_and_unknown_scheme(capsys):
    code, _, err = run(capsys, "inspect", "--model", "initviz.examples:net", "--input-shape",
                       "2,784", "--param", "gain=2")
    assert code == 2 and "--param needs --scheme" in err
    code, _, err = run(capsys, "inspect", "--model", "initviz.examples:net", "--input-shape",
                       "2,784", "--scheme", "nope")
    assert code == 2 and 'scheme "nope" is not valid' in err


def test_real_subprocess():
    done = subprocess.run(
        [sys.executable, "-m", "initviz", "inspect", "--model", "initviz.examples:lstm",
         "--input-shape", "4,5,12", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["layers"][0]["kind"] == "LSTM"
