"""Compared variants: ``SCHEME(KEY=VALUE,...)`` in the package, the CLI and the race."""

from __future__ import annotations

import json

import pytest
import torch

from initviz.cli import main as cli_main
from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec, build_model
from initviz.training import TrainSpec, train
from initviz.variants import entry_text, network_for, parse_entry, split_entries

from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)

TUTORIAL = "zeros,uniform(a=0,b=1),uniform(a=-0.5,b=0.5)"


def test_entries_split_on_commas_outside_parentheses():
    assert split_entries(TUTORIAL) == ["zeros", "uniform(a=0,b=1)", "uniform(a=-0.5,b=0.5)"]
    assert split_entries(" normal ( std = 0.1 ) , zeros") == ["normal ( std = 0.1 )", "zeros"]


@pytest.mark.parametrize("text, says", [
    ("uniform(a=0,b=1", "not closed"), ("uniform(a=0))", "does not match"),
    ("zeros,,ones", "single commas"), ("u((a=1))", "does not match"),
])
def test_a_malformed_list_is_refused_in_a_sentence(text, says):
    with pytest.raises(InvalidSpec, match=says):
        split_entries(text)


def test_an_entry_is_a_name_and_its_values_as_written():
    assert parse_entry("zeros") == ("zeros", {})
    assert parse_entry("uniform(a=-0.5, b=0.5)") == ("uniform", {"a": "-0.5", "b": "0.5"})
    assert parse_entry("kaiming_normal(mode=fan_out)") == ("kaiming_normal", {"mode": "fan_out"})
    assert parse_entry("normal()") == ("normal", {})


@pytest.mark.parametrize("text, says", [
    ("uniform(a=0,a=1)", "given twice"), ("uniform(a)", "KEY=VALUE"),
    ("he_normal(a=1)", "one of zeros"), ("uniform a=1", "uniform"), ("x" * 300, "characters"),
])
def test_a_malformed_entry_is_refused_in_a_sentence(text, says):
    with pytest.raises(InvalidSpec, match=says):
        parse_entry(text)


def test_a_variant_sets_its_scheme_parameters_and_the_architecture_options():
    plain = NetworkSpec.stack(8, 3, arch="residual")
    spec = network_for(plain, *parse_entry("normal(std=0.02,residual=fixup)"))
    assert spec.scheme == "normal" and dict(spec.scheme_params)["std"] == 0.02
    assert spec.option("residual") == "fixup" and spec.sizes == plain.sizes
    # a key the entry leaves out keeps the network's option and the scheme's default
    assert network_for(plain, "normal").option("residual") == "plain"
    assert dict(network_for(plain, "normal").scheme_params)["std"] == 1.0


def test_a_key_that_is_neither_a_parameter_nor_an_option_names_both_lists():
    with pytest.raises(InvalidSpec) as error:
        network_for(NetworkSpec.stack(8, 3, arch="residual"), "uniform", {"c": "1"})
    assert "(its parameters: a, b)" in str(error.value)
    assert "its options: residual" in str(error.value)
    with pytest.raises(InvalidSpec, match="the plain stack has no options"):
        network_for(NetworkSpec.stack(8, 3), "uniform", {"residual": "fixup"})
    with pytest.raises(InvalidSpec, match="one of plain, scaled, fixup, rezero"):
        network_for(NetworkSpec.stack(8, 3, arch="residual"), "normal", {"residual": "nope"})


def test_entry_text_writes_numbers_without_trailing_zeros():
    assert entry_text("uniform", {"a": -0.5, "b": 0.5}) == "uniform(a=-0.5,b=0.5)"
    assert entry_text("zeros") == "zeros"


def test_variants_of_one_scheme_race_side_by_side_with_their_own_weights():
    spec = TrainSpec(NetworkSpec.stack(16, 2), schemes=tuple(split_entries(TUTORIAL)), steps=4,
                     eval_every=2, batch=16)
    assert spec.labels == spec.texts == ("zeros", "uniform(a=0,b=1)", "uniform(a=-0.5,b=0.5)")
    first = {label: build_model(spec.run_network(choice), 0)[0].linear.weight.detach()
             for label, choice in zip(spec.labels, spec.schemes)}
    assert float(first["uniform(a=0,b=1)"].min()) >= 0.0
    assert float(first["uniform(a=0,b=1)"].max()) > 0.9
    assert float(first["uniform(a=-0.5,b=0.5)"].abs().max()) <= 0.5
    assert float(first["uniform(a=-0.5,b=0.5)"].min()) < -0.4
    assert torch.count_nonzero(first["zeros"]) == 0
    result = train(spec)
    assert [run.label for run in result.runs] == list(spec.labels)
    assert [run["scheme"] for run in result.to_json_dict()["runs"]] == list(spec.labels)


def test_two_spellings_of_one_entry_are_one_entry():
    # uniform's defaults are a = 0, b = 1: the variant is the bare scheme
    with pytest.raises(InvalidSpec, match="listed once"):
        TrainSpec(NetworkSpec.stack(8, 2), schemes=("uniform", "uniform(b=1, a=0)"))
    same = TrainSpec(NetworkSpec.stack(8, 2), schemes=("uniform(a=0,b=1)",))
    assert same == TrainSpec(NetworkSpec.stack(8, 2), schemes=("uniform",))  # one cache key


def test_a_pair_entry_is_labelled_by_the_values_that_differ_from_the_defaults():
    spec = TrainSpec(NetworkSpec.stack(8, 2), schemes=(("normal", {"std": 0.3}), "zeros",
                                                       ("normal", {"std": 1.0})))
    assert spec.labels == ("normal(std=0.3)", "zeros", "normal")


def test_a_variant_that_sets_an_architecture_option_trains_that_network():
    spec = TrainSpec(NetworkSpec.stack(16, 3, arch="residual"),
                     schemes=("kaiming_normal", "kaiming_normal(residual=fixup)"), steps=2,
                     eval_every=1, batch=16)
    plain, fixup = (spec.run_network(choice) for choice in spec.schemes)
    assert plain.option("residual") == "plain" and fixup.option("residual") == "fixup"
    assert [run.label for run in train(spec).runs] == ["kaiming_normal",
                                                       "kaiming_normal(residual=fixup)"]


def test_the_cli_races_variants_and_reports_each_entry_as_given(capsys):
    code = cli_main(["train", "--width", "16", "--depth", "2", "--steps", "4",
                     "--schemes", "zeros, uniform(a=0,b=1),uniform(a=-0.5, b=0.5)", "--json"])
    assert code == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [run["scheme"] for run in runs] == ["zeros", "uniform(a=0,b=1)",
                                               "uniform(a=-0.5,b=0.5)"]


def test_the_cli_refuses_a_bad_entry_in_one_line(capsys):
    code = cli_main(["train", "--width", "16", "--depth", "2", "--schemes", "uniform(c=1)"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert 'uniform has no parameter "c" (its parameters: a, b)' in err
