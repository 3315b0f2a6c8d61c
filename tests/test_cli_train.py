"""``python -m initviz train``: the JSON contract of docs/DESIGN.md, the readable table and its
progress bar, the flags reaching the training spec, and one-line errors with exit code 2.

All but one test call ``main()`` in-process; one runs the real ``python -m initviz train``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from initviz.cli import main
from initviz.training import TrainSpec, train
from initviz.network import NetworkSpec

from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--width", "16", "--depth", "2", "--steps", "6", "--eval-every", "3", "--batch", "16"]


def run_train(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_contract_document_of_the_training_api(capsys):
    code, out, err = run_train(capsys, *SMALL, "--schemes", "kaiming_normal,xavier_normal",
                               "--seeds", "2", "--seed", "7", "--optimizer", "momentum",
                               "--lr", "0.02", "--dataset", "moons", "--device", "cpu", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert set(document) == {"device", "seconds", "runs"}
    assert document["device"] == "cpu" and document["seconds"] > 0
    assert [(run["scheme"], run["seed"]) for run in document["runs"]] == [
        ("kaiming_normal", 7), ("kaiming_normal", 8), ("xavier_normal", 7), ("xavier_normal", 8)]
    for run in document["runs"]:
        assert set(run) == {"scheme", "seed", "diverged", "history", "final"}
        assert run["diverged"] is False
        assert [row["step"] for row in run["history"]] == [0, 3, 6]
        assert all(set(row) == {"step", "train_loss", "val_loss", "val_acc", "hidden"}
                   for row in run["history"])
        assert all([h["layer"] for h in row["hidden"]] == [1, 2] for row in run["history"])
        assert run["final"] == {k: v for k, v in run["history"][-1].items()
                                if k not in ("step", "hidden")}
    # the same numbers as the library gives for the same spec
    spec = TrainSpec(NetworkSpec.stack(16, 2), schemes=("kaiming_normal", "xavier_normal"),
                     seeds=2, seed=7, dataset="moons", optimizer="momentum", lr=0.02, steps=6,
                     eval_every=3, batch=16, device="cpu")
    expected = train(spec).to_json_dict()
    assert document["runs"] == expected["runs"]


def test_flags_reach_the_spec(capsys):
    # --param goes to every listed scheme that has it (gain: xavier_normal and orthogonal, not
    # kaiming_normal); the network flags shape the hidden stack; --input-dim is the data set's.
    code, out, _ = run_train(capsys, "--sizes", "12,7", "--input-dim", "5", "--activation", "tanh",
                       "--bias", "constant", "--bias-param", "val=0.1", "--norm", "layernorm",
                       "--schemes", "xavier_normal,kaiming_normal,orthogonal", "--param",
                       "gain=0.5", "--steps", "4", "--eval-every", "2", "--batch", "8",
                       "--dataset", "spirals", "--optimizer", "adam", "--lr", "0.01", "--json")
    assert code == 0
    network = NetworkSpec(sizes=(12, 7), input_dim=2, activation="tanh", bias="constant",
                          bias_params={"val": 0.1}, norm="layernorm")
    # runs[].scheme is each entry as written: "xavier_normal", though --param sets its gain.
    spec = TrainSpec(network, schemes=(("xavier_normal", {"gain": 0.5}, "xavier_normal"),
                                       "kaiming_normal",
                                       ("orthogonal", {"gain": 0.5}, "orthogonal")),
                     dataset="spirals", optimizer="adam", lr=0.01, steps=4, eval_every=2, batch=8)
    assert json.loads(out)["runs"] == train(spec).to_json_dict()["runs"]


def test_default_evaluation_interval_fits_short_runs(capsys):
    code, out, _ = run_train(capsys, "--width", "8", "--depth", "1", "--steps", "3", "--json")
    assert code == 0
    assert [row["step"] for row in json.loads(out)["runs"][0]["history"]] == [0, 3]
    code, out, _ = run_train(capsys, "--width", "8", "--depth", "1", "--steps", "25", "--json")
    assert [row["step"] for row in json.loads(out)["runs"][0]["history"]] == [0, 10, 20, 25]


def test_a_diverged_run_is_reported_in_strict_json(capsys):
    code, out, _ = run_train(capsys, "--width", "64", "--depth", "3", "--steps", "10",
                             "--eval-every", "5", "--schemes", "kaiming_normal,normal",
                             "--param", "std=2", "--json")
    assert code == 0
    runs = {run["scheme"]: run for run in json.loads(out)["runs"]}  # json.loads: no NaN in it
    assert runs["normal"]["diverged"] is True and runs["normal"]["final"]["val_loss"] is None
    assert runs["kaiming_normal"]["diverged"] is False
    assert runs["kaiming_normal"]["history"][-1]["step"] == 10


def test_the_readable_form_is_a_table_with_a_progress_bar_on_stderr(capsys):
    code, out, err = run_train(capsys, *SMALL, "--schemes", "zeros,normal", "--param", "std=0.1",
                         "--device", "cpu")
    assert code == 0
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["scheme"])
    lines = [" ".join(" ".join(lines[:head]).split()), *lines[head:]]  # the sentence, unwrapped
    assert lines[0].startswith("2 scheme(s) x 1 seed(s) from seed 0 on digits (64 inputs, 10 "
                               "classes); 2 hidden layers of width 16, relu")
    assert "ln 10 = 2.303" in lines[0]
    assert lines[1].split() == ["scheme", "seed", "initial_loss", "step", "train_loss",
                                "val_loss", "val_acc", "diverged_at"]
    rows = [line.split() for line in lines[2:]]
    assert [row[:2] + row[3:4] for row in rows] == [["zeros", "0", "6"],
                                                    ["normal(std=0.1)", "0", "6"]]
    assert float(rows[0][2]) == pytest.approx(2.303, abs=1e-3)  # zeros: a uniform prediction
    assert all(line.split()[-1] == "-" for line in lines[2:])
    # one line, redrawn with \r at each checkpoint, ended once
    assert err.endswith("\n") and err.count("\n") == 1
    frames = err.rstrip("\n").split("\r")[1:]
    assert [frame.split("step ")[1].split(",")[0] for frame in frames] == ["0/6", "3/6", "6/6"]
    assert frames[-1].startswith("training [" + "#" * 30 + "]")


BAD_INPUTS = [
    ["--schemes", "he_normal"],
    ["--schemes", ","],
    ["--schemes", "kaiming_normal,kaiming_normal"],
    ["--schemes", "kaiming_normal,xavier_normal", "--param", "std=2"],  # neither has std
    ["--schemes", "normal", "--param", "std=-1"],
    ["--param", "gain"],
    ["--dataset", "mnist"],
    ["--optimizer", "rmsprop"],
    ["--lr", "0"],
    ["--lr", "11"],
    ["--lr", "nan"],
    ["--lr", "fast"],
    ["--steps", "0"],
    ["--steps", "5001"],
    ["--steps", "2.5"],
    ["--batch", "0"],
    ["--batch", "4096"],
    ["--seeds", "0"],
    ["--seeds", "11"],
    ["--seed", "-1"],
    ["--eval-every", "0"],
    ["--steps", "5", "--eval-every", "6"],
    ["--device", "tpu"],
    ["--width", "0"],
    ["--sizes", "8,8", "--depth", "2"],
    ["--norm", "groupnorm"],
    ["--activation", "swish"],
    ["--no-such-flag"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=" ".join)
@pytest.mark.parametrize("json_flag", [["--json"], []], ids=["json", "table"])
def test_every_bad_input_exits_2_with_one_line_and_no_traceback(capsys, argv, json_flag):
    code, out, err = run_train(capsys, *argv, *json_flag)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("initviz: error: ")
    assert "Traceback" not in err and "\r" not in err  # refused before any progress bar


def test_a_parameter_no_listed_scheme_has_is_named(capsys):
    _, _, err = run_train(capsys, "--schemes", "kaiming_normal,xavier_normal", "--param", "std=2")
    assert err == ("initviz: error: --param std=2: none of kaiming_normal, xavier_normal has a "
                   "parameter \"std\"\n")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_device_falls_back_to_cpu_with_a_one_line_notice(capsys):
    code, out, err = run_train(capsys, *SMALL, "--device", "cuda", "--json")
    assert code == 0
    assert err.count("\n") == 1 and "cuda" in err and "cpu" in err
    assert json.loads(out)["device"] == "cpu"


def test_python_m_initviz_train_prints_one_json_document():
    done = subprocess.run([sys.executable, "-m", "initviz", "train", *SMALL, "--device", "cpu",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert [run["scheme"] for run in json.loads(done.stdout)["runs"]] == ["kaiming_normal"]


def test_the_tutorial_flags_reach_the_spec(capsys):
    code, out, _ = run_train(capsys, *SMALL, "--schemes", "kaiming_normal,xavier_uniform",
                             "--input-scale", "unit", "--dropout", "0.2", "--output-init",
                             "scaled", "--output-scale", "0.1", "--json")
    assert code == 0
    spec = TrainSpec(NetworkSpec.stack(16, 2), schemes=("kaiming_normal", "xavier_uniform"),
                     steps=6, eval_every=3, batch=16, input_scale="unit", dropout=0.2,
                     output_init="scaled", output_scale=0.1)
    assert json.loads(out)["runs"] == train(spec).to_json_dict()["runs"]


@pytest.mark.parametrize("flags, message", [
    (["--input-scale", "raw"], "invalid choice: 'raw'"),
    (["--dropout", "0.95"], r"dropout 0.95 is not valid: give a number in [0, 0.9]"),
    (["--output-init", "scaled", "--output-scale", "0"], "output_scale 0 is not valid"),
])
def test_bad_tutorial_flags_are_one_line_errors(capsys, flags, message):
    code, _, err = run_train(capsys, *SMALL, *flags)
    assert code == 2 and message in err and "Traceback" not in err
