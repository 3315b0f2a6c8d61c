"""`python -m initviz theory` and `python -m initviz jacobian`: the docs/DESIGN.md contracts."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from initviz.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out), err


def test_theory_json_has_the_contract_keys_for_the_chosen_scheme(capsys):
    doc, _ = run_json(capsys, "theory", "--width", "32", "--depth", "5", "--grid", "12")
    assert {"q_star", "chi1", "depth_scale", "grid"} <= doc.keys()
    # Kaiming normal with ReLU: σ_w² = 2, σ_b² = 0, the critical point.
    assert (doc["sigma_w2"], doc["sigma_b2"]) == pytest.approx((2.0, 0.0))
    assert doc["chi1"] == pytest.approx(1.0, abs=1e-9) and doc["depth_scale"] is None
    assert len(doc["grid"]) == 144
    assert all(row.keys() == {"sigma_w2", "sigma_b2", "chi1"} for row in doc["grid"])


def test_theory_json_with_sigma_flags(capsys):
    doc, _ = run_json(capsys, "theory", "--activation", "tanh", "--sigma-w2", "1.2",
                      "--sigma-b2", "0.2", "--grid", "5")
    assert doc["phase"] == "ordered" and doc["chi1"] < 1
    assert doc["depth_scale"] == pytest.approx(-1 / np.log(doc["chi1"]))
    assert doc["chaotic_depth_scale"] is None
    chaotic, _ = run_json(capsys, "theory", "--activation", "tanh", "--sigma-w2", "4",
                          "--sigma-b2", "0", "--grid", "5")
    assert chaotic["depth_scale"] is None and chaotic["chaotic_depth_scale"] > 0
    # ξ_c = 8.0 on the chaotic side: about 48 layers, so the default 20 are within reach.
    assert chaotic["trainable_depth"] == pytest.approx(6 * chaotic["chaotic_depth_scale"])
    assert chaotic["depth"] == 20 and "within reach" in chaotic["reach"]


def test_theory_json_has_no_depth_scale_for_a_zero_bias_homogeneous_net(capsys):
    doc, _ = run_json(capsys, "theory", "--activation", "relu", "--scheme", "xavier_normal",
                      "--depth", "22", "--grid", "4")
    assert doc["chi1"] == pytest.approx(0.5) and doc["depth_scale"] is None
    assert doc["trainable_depth"] is None and doc["depth_ratio"] is None
    assert "deeper than signals can travel" not in doc["reach"]
    profiled, _ = run_json(capsys, "profile", "--activation", "leaky_relu", "--scheme",
                           "xavier_normal", "--width", "16", "--depth", "3", "--batch", "8")
    assert profiled["theory"]["chi1"] < 1 and profiled["theory"]["depth_scale"] is None


def test_theory_grid_reproduces_the_critical_points(capsys):
    doc, _ = run_json(capsys, "theory", "--activation", "tanh", "--grid", "5")
    assert doc["critical_line"][0] == pytest.approx({"sigma_b2": 0.0, "sigma_w2": 1.0}, abs=1e-6)
    relu, _ = run_json(capsys, "theory", "--activation", "relu", "--grid", "5")
    assert all(p["sigma_w2"] == pytest.approx(2.0, abs=1e-6) for p in relu["critical_line"])


def test_theory_without_mean_field_gives_nulls_and_a_note(capsys):
    doc, _ = run_json(capsys, "theory", "--scheme", "lsuv", "--grid", "4")
    assert doc["q_star"] is None and doc["chi1"] is None and doc["depth_scale"] is None
    assert "LSUV" in doc["note"] and len(doc["grid"]) == 16


def test_theory_of_a_recurrent_net_counts_time_steps_and_gives_no_false_fixed_point(capsys):
    # The input feeds every step, so it acts as σ_b² = 1; with ReLU at Kaiming's σ_w² = 2 the
    # length map is q ↦ q + 1: no q*, and 20 time steps rather than 20 layers.
    code, out, err = run(capsys, "theory", "--arch", "rnn", "--depth", "20", "--grid", "6")
    assert code == 0, err
    text = " ".join(out.split())
    assert "last time step" in text and "these 20 time steps included" in text
    assert "q* = none (q grows without bound)" in text and "layers" not in text
    doc, _ = run_json(capsys, "theory", "--arch", "rnn", "--depth", "20", "--grid", "6")
    assert doc["q_star"] is None and doc["sigma_b2"] == pytest.approx(1.0)


def test_theory_readable_output(capsys):
    code, out, _ = run(capsys, "theory", "--activation", "tanh", "--scheme", "xavier_normal",
                       "--grid", "5")
    assert code == 0
    assert "chi1 = 1 (critical)" in out and "critical line" in out


@pytest.mark.parametrize("argv, message", [
    (["theory", "--sigma-w2", "1"], "both --sigma-w2 and --sigma-b2"),
    (["theory", "--sigma-w2", "-1", "--sigma-b2", "0"], "sigma_w2 -1 is not valid"),
    (["theory", "--sigma-w2", "1", "--sigma-b2", "nan"], "sigma_b2 nan is not valid"),
    (["theory", "--grid", "1"], "grid 1 is not valid"),
    (["theory", "--activation", "swish"], 'activation "swish" is not valid'),
    (["jacobian", "--norm", "batchnorm"], "with batch norm has no Jacobian of one input"),
    (["jacobian", "--width", "4096", "--depth", "1"], "at most 2048"),
    (["jacobian", "--width", "abc"], "--width"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_jacobian_json_contract(capsys):
    doc, _ = run_json(capsys, "jacobian", "--activation", "linear", "--scheme", "orthogonal",
                      "--width", "24", "--depth", "6", "--device", "cpu")
    assert {"singular_values", "mean_sq", "var_sq"} <= doc.keys()
    # Square net: the input has the width, so an orthogonal linear stack is an isometry.
    assert doc["shape"] == [24, 24] and len(doc["singular_values"]) == 24
    assert doc["singular_values"] == pytest.approx([1.0] * 24, abs=1e-5)
    assert doc["mean_sq"] == pytest.approx(1.0, abs=1e-5) and doc["device"] == "cpu"
    assert doc["zero_count"] == 0


def test_jacobian_json_counts_zero_singular_values_as_matrix_rank_does(capsys):
    # ones, linear: J is a multiple of the all-ones matrix, rank 1, s_max = width^depth
    doc, _ = run_json(capsys, "jacobian", "--scheme", "ones", "--activation", "linear",
                      "--width", "64", "--depth", "40", "--device", "cpu")
    s = np.array(doc["singular_values"])
    assert doc["zero_count"] == 63 == np.sum(s <= s[0] * 64 * np.finfo(np.float64).eps)
    assert s[0] == pytest.approx(64.0**40, rel=1e-9)
    assert doc["mean_sq"] == pytest.approx(64.0**80 / 64, rel=1e-9)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_an_overflowing_network_exits_2_naming_its_layer(capsys, json_flag):
    # normal(std=1) ReLU at width 256: the Jacobian grows by about √128 a layer and passes
    # float64's reach for s⁴ long before layer 200; never a traceback or half a document
    code, out, err = run(capsys, "jacobian", "--scheme", "normal", "--param", "std=1",
                         "--activation", "relu", "--depth", "200", "--device", "cpu",
                         *json_flag)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no Jacobian spectrum" in err and "at layer " in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_jacobian_falls_back_to_cpu_with_a_notice(capsys):
    doc, err = run_json(capsys, "jacobian", "--width", "8", "--depth", "2", "--device", "cuda")
    assert doc["device"] == "cpu" and err.startswith("initviz: notice:")


def test_jacobian_readable_output(capsys):
    code, out, _ = run(capsys, "jacobian", "--sizes", "16,16,16", "--activation", "tanh")
    text = " ".join(out.split())  # sentences wrap at 100 columns
    assert code == 0 and "16 x 16" in text and "s² has mean" in text


def test_python_dash_m_prints_one_json_document():
    done = subprocess.run([sys.executable, "-m", "initviz", "theory", "--grid", "3", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["grid"]) == 9
