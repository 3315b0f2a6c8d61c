"""The command line's --arch and its options: profile, jacobian and train of a residual MLP, and
the sentences that refuse what does not apply."""

import json

import pytest

from initviz.cli import main
from initviz.probe import LAYER_COLUMNS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_json_has_one_entry_per_block_with_every_contract_key(capsys):
    code, out, err = run(capsys, "profile", "--arch", "residual", "--residual", "rezero",
                         "--width", "16", "--depth", "7", "--batch", "32", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["config"]["arch"] == "residual"
    assert document["config"]["residual"] == "rezero"
    layers = document["layers"]
    assert [row["layer"] for row in layers] == list(range(1, 8))
    for row in layers:
        assert set(LAYER_COLUMNS) <= set(row)
        assert row["branch_to_stream_ratio"] == 0.0  # ReZero: a = 0 at init
    assert len({row["act_std"] for row in layers}) == 1


def test_profile_text_names_the_blocks_and_the_residual_init(capsys):
    code, out, _ = run(capsys, "profile", "--arch", "residual", "--residual", "scaled",
                       "--width", "16", "--depth", "3", "--batch", "16")
    assert code == 0
    assert out.startswith("residual MLP, 3 blocks, residual scaled, relu, kaiming_normal")


def test_a_plain_stack_keeps_its_json_config(capsys):
    code, out, _ = run(capsys, "profile", "--width", "8", "--depth", "2", "--batch", "4",
                       "--json")
    assert code == 0
    assert "arch" not in json.loads(out)["config"]


def test_jacobian_of_a_fixup_net_is_the_stems(capsys):
    # Fixup's blocks are the identity at init, so J is the stem's weight: its singular values
    # are those of one 32 x 32 Kaiming matrix.
    import torch

    from initviz.network import NetworkSpec, build_model

    code, out, err = run(capsys, "jacobian", "--arch", "residual", "--residual", "fixup",
                         "--width", "32", "--depth", "12", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    spec = NetworkSpec.stack(32, 12, input_dim=32, arch="residual",
                             arch_params={"residual": "fixup"})
    stem = build_model(spec, seed=0).stem.weight.double()
    expected = torch.linalg.svdvals(stem).tolist()
    assert document["singular_values"] == pytest.approx(expected, rel=1e-6)
    assert document["zero_count"] == 0


def test_train_trains_a_residual_net_on_digits(capsys):
    code, out, err = run(capsys, "train", "--arch", "residual", "--residual", "fixup",
                         "--width", "32", "--depth", "20", "--schemes", "kaiming_normal",
                         "--dataset", "digits", "--steps", "60", "--json")
    assert (code, err) == (0, "")
    run_ = json.loads(out)["runs"][0]
    assert not run_["diverged"]
    first, final = run_["history"][0], run_["final"]
    assert final["train_loss"] < 0.5 * first["train_loss"]
    assert final["val_acc"] > 0.6  # chance is 0.1


@pytest.mark.parametrize("argv, says", [
    (("profile", "--residual", "fixup"), 'plain stack (mlp) has no option "residual"'),
    (("profile", "--arch", "residual", "--residual", "warm"), "give one of plain, scaled, "
                                                                "fixup, rezero"),
    (("profile", "--arch", "transformers"), "give one of mlp, residual"),
    (("profile", "--arch", "residual", "--sizes", "8,16"), "one width for every block"),
    (("theory", "--arch", "residual"), "profile --arch residual gives its theory block by block"),
    (("profile", "--arch", "transformer", "--heads", "3", "--width", "16"),
     "give a divisor of d_model = width = 16"),
    (("train", "--arch", "transformer", "--schemes", "xavier_normal", "--dataset", "moons"),
     "only the digits (8 rows of 8 pixels)"),
    (("theory", "--arch", "transformer"), "profile --arch transformer gives its theory block"),
])
def test_what_does_not_apply_exits_2_with_one_sentence(capsys, argv, says):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert says in err


def test_transformer_profile_json_has_its_options_and_block_columns(capsys):
    code, out, err = run(capsys, "profile", "--arch", "transformer", "--heads", "2",
                         "--seq-len", "4", "--ln", "post", "--residual", "scaled",
                         "--width", "16", "--depth", "3", "--batch", "16", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert {k: document["config"][k] for k in ("arch", "heads", "seq_len", "ln", "residual")} \
        == {"arch": "transformer", "heads": 2, "seq_len": 4, "ln": "post", "residual": "scaled"}
    layers = document["layers"]
    assert [row["layer"] for row in layers] == [1, 2, 3]
    for row in layers:
        assert set(LAYER_COLUMNS) <= set(row)
        assert row["act_std"] == pytest.approx(1.0, abs=1e-4)  # Post-LN: a LayerNorm's output
        assert 0.0 <= row["attn_entropy"] <= row["attn_entropy_uniform"] + 1e-6


def test_transformer_jacobian_is_output_tokens_by_input_tokens(capsys):
    # The jacobian command's net is square (input_dim = width): 4 tokens of 16 in and out.
    code, out, err = run(capsys, "jacobian", "--arch", "transformer", "--width", "16",
                         "--depth", "2", "--seq-len", "4", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["shape"] == [4 * 16, 4 * 16]
    assert len(document["singular_values"]) == 64 and document["zero_count"] == 0


def test_train_trains_a_transformer_on_digits_as_rows(capsys):
    code, out, err = run(capsys, "train", "--arch", "transformer", "--width", "16",
                         "--depth", "2", "--schemes", "xavier_normal", "--dataset", "digits",
                         "--optimizer", "adam", "--lr", "0.01", "--steps", "40", "--json")
    assert (code, err) == (0, "")
    run_ = json.loads(out)["runs"][0]
    assert not run_["diverged"]
    assert run_["final"]["val_acc"] > 0.5  # chance is 0.1


