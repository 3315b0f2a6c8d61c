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
])
def test_what_does_not_apply_exits_2_with_one_sentence(capsys, argv, says):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert says in err
