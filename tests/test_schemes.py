"""Schemes against torch.nn.init itself, against their stated theory, and against their own code.

Tolerances for measured moments are sampling errors: the sample std ``s`` of ``n`` i.i.d.
entries with kurtosis ``κ`` has relative standard error ``√((κ − 1) / (4n))``, and the sample mean
has standard error ``σ/√n``. Every comparison allows ``Z`` = 5 standard errors (a correct scheme
fails with probability below 1e-6 per comparison, and the seeds are fixed), while a wrong constant
(√2, √3, a fan_in/fan_out mix-up) is off by 10% or more, far outside the band at these sizes
(the band is ±2.1% for the sparse scheme's heavy tails, at most ±1.2% otherwise).
"""

import inspect
import itertools
import math
import textwrap

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import init

from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec, build_model
from initviz.schemes import BIAS_SCHEMES, SCHEMES, get_scheme, sparse_

Z = 5.0
CONTRACT_SCHEMES = {
    "zeros": (), "ones": (), "constant": ("val",), "uniform": ("a", "b"),
    "normal": ("mean", "std"), "trunc_normal": ("mean", "std", "a", "b"),
    "xavier_uniform": ("gain",), "xavier_normal": ("gain",),
    "kaiming_uniform": ("a", "mode", "nonlinearity"),
    "kaiming_normal": ("a", "mode", "nonlinearity"), "orthogonal": ("gain",),
    "sparse": ("sparsity", "std"), "pytorch_default": (), "lecun_normal": (),
    "lecun_uniform": (), "lsuv": ("tol", "max_iter"), "dirac": (), "delta_orthogonal": ("gain",),
    "eye": (),
}
CONV_ONLY = {"dirac", "delta_orthogonal"}  # conv weights: their parity test is below

# Each scheme with non-default parameters, and the torch.nn.init call written out by hand (not from
# the scheme's own description) that must produce the same tensor from the same generator.
TORCH_CALLS = {
    "zeros": ({}, lambda t, g: nn.init.zeros_(t)),
    "ones": ({}, lambda t, g: nn.init.ones_(t)),
    "eye": ({}, lambda t, g: nn.init.eye_(t)),
    "constant": ({"val": -0.3}, lambda t, g: nn.init.constant_(t, -0.3)),
    "uniform": ({"a": -0.5, "b": 2.0}, lambda t, g: nn.init.uniform_(t, -0.5, 2.0, generator=g)),
    "normal": ({"mean": 0.25, "std": 0.5},
               lambda t, g: nn.init.normal_(t, 0.25, 0.5, generator=g)),
    "trunc_normal": ({"mean": 0.1, "std": 0.7, "a": -1.0, "b": 1.5},
                     lambda t, g: nn.init.trunc_normal_(t, 0.1, 0.7, -1.0, 1.5, generator=g)),
    "xavier_uniform": ({"gain": 1.3}, lambda t, g: nn.init.xavier_uniform_(t, 1.3, generator=g)),
    "xavier_normal": ({"gain": 0.7}, lambda t, g: nn.init.xavier_normal_(t, 0.7, generator=g)),
    "kaiming_uniform": ({"a": 0.2, "mode": "fan_out", "nonlinearity": "leaky_relu"},
                        lambda t, g: nn.init.kaiming_uniform_(
                            t, a=0.2, mode="fan_out", nonlinearity="leaky_relu", generator=g)),
    "kaiming_normal": ({"mode": "fan_in", "nonlinearity": "relu"},
                       lambda t, g: nn.init.kaiming_normal_(
                           t, mode="fan_in", nonlinearity="relu", generator=g)),
    "orthogonal": ({"gain": 2.0}, lambda t, g: nn.init.orthogonal_(t, 2.0, generator=g)),
    "pytorch_default": ({}, lambda t, g: nn.init.kaiming_uniform_(t, a=math.sqrt(5),
                                                                  generator=g)),
    # LeCun: variance 1/fan_in, written with the plain normal_/uniform_ calls.
    "lecun_normal": ({}, lambda t, g: nn.init.normal_(t, 0.0, 1.0 / math.sqrt(t.shape[1]),
                                                      generator=g)),
    "lecun_uniform": ({}, lambda t, g: nn.init.uniform_(
        t, -math.sqrt(3.0) * (1.0 / math.sqrt(t.shape[1])),
        math.sqrt(3.0) * (1.0 / math.sqrt(t.shape[1])), generator=g)),
    # LSUV's per-tensor part is the orthogonal pre-init; the rescaling is tested on a network.
    "lsuv": ({}, lambda t, g: nn.init.orthogonal_(t, 1.0, generator=g)),
}

FAN_SHAPES = [(256, 512), (1024, 128), (300, 300)]  # (fan_in, fan_out): 90k to 131k entries

# Non-default parameters for the std check, so a parameter that is ignored shows.
STD_PARAMS = {
    **{name: params for name, (params, _) in TORCH_CALLS.items()},
    "kaiming_normal": {"a": 0.3, "mode": "fan_out", "nonlinearity": "leaky_relu"},
    "sparse": {"sparsity": 0.6, "std": 0.2},
}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weight(fan_in: int, fan_out: int) -> torch.Tensor:
    return torch.empty(fan_out, fan_in)  # a Linear weight: (fan_out, fan_in)


def _applied(name: str, params: dict, fan_in: int, fan_out: int, seed: int) -> torch.Tensor:
    scheme = get_scheme(name)
    return scheme.apply(_weight(fan_in, fan_out), dict(scheme.resolve(params)), _generator(seed))


def test_every_contract_scheme_is_there_with_its_parameters():
    assert {name: tuple(p.name for p in s.params) for name, s in SCHEMES.items()} == \
        CONTRACT_SCHEMES
    assert set(BIAS_SCHEMES) == {"zeros", "constant", "normal", "pytorch_default"}


def test_the_parity_table_covers_every_scheme_but_sparse():
    assert set(TORCH_CALLS) == set(SCHEMES) - {"sparse"} - CONV_ONLY  # sparse: its own test


def _delta_orthogonal_by_hand(t, gain, g):
    t.zero_()
    t[:, :, 1, 1] = nn.init.orthogonal_(torch.empty(t.shape[:2]), gain, generator=g)
    return t


@pytest.mark.parametrize("name, params, call", [
    ("dirac", {}, lambda t, g: nn.init.dirac_(t)),
    ("delta_orthogonal", {"gain": 1.7}, lambda t, g: _delta_orthogonal_by_hand(t, 1.7, g)),
])
@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (8, 16, 3, 3)])
def test_conv_only_schemes_equal_their_torch_calls_on_conv_weights(name, params, call, shape):
    scheme = get_scheme(name)
    ours = scheme.apply(torch.empty(shape), dict(scheme.resolve(params)), _generator(2))
    assert torch.equal(ours, call(torch.empty(shape), _generator(2)))


@pytest.mark.parametrize("name", sorted(TORCH_CALLS))
@pytest.mark.parametrize("fan_in, fan_out", [(48, 80), (80, 48)])
def test_tensor_equals_torch_nn_init_with_the_same_generator(name, fan_in, fan_out):
    params, torch_call = TORCH_CALLS[name]
    expected = _weight(fan_in, fan_out)
    with torch.no_grad():
        torch_call(expected, _generator(7))
    assert torch.equal(_applied(name, params, fan_in, fan_out, 7), expected)


def test_sparse_is_reproducible_from_the_generator_alone_and_leaves_the_global_rng_alone():
    # torch.nn.init.sparse_ draws its zero positions from the global RNG; initviz must still be a
    # function of its generator only.
    torch.manual_seed(1)
    first = _applied("sparse", {"sparsity": 0.5}, 40, 30, 7)
    after_first = torch.random.get_rng_state()
    torch.manual_seed(2)
    before_second = torch.random.get_rng_state()
    second = _applied("sparse", {"sparsity": 0.5}, 40, 30, 7)
    assert torch.equal(first, second)
    assert torch.equal(torch.random.get_rng_state(), before_second)
    assert not torch.equal(after_first, before_second)
    assert not torch.equal(first, _applied("sparse", {"sparsity": 0.5}, 40, 30, 8))
    # sparse_'s structure: exactly ceil(sparsity * rows) zeros in every column.
    assert ((first == 0).sum(0) == math.ceil(0.5 * 30)).all()


def _zero_subsets(weight: torch.Tensor) -> np.ndarray:
    """How often each set of zero rows occurs among the columns, in itertools.combinations order."""
    rows = weight.shape[0]
    k = int((weight[:, 0] == 0).sum())
    index = {subset: i for i, subset in enumerate(itertools.combinations(range(rows), k))}
    counts = np.zeros(len(index))
    for column in (weight == 0).T:
        counts[index[tuple(torch.nonzero(column).flatten().tolist())]] += 1
    return counts


def test_sparse_draws_what_torch_nn_init_sparse_draws():
    # initviz's sparse_ replaces torch's only to draw from the generator; the law must not change:
    # ceil(sparsity * rows) zeros in every column, the set of zero rows uniform over all C(rows, k)
    # sets (not only each row alike), and N(0, std²) values elsewhere.
    rows, cols, sparsity, std = 5, 20_000, 0.3, 0.2  # 2 zeros a column: 10 possible sets
    ours = torch.empty(rows, cols)
    sparse_(ours, sparsity, std, generator=_generator(3))
    torch.manual_seed(3)
    theirs = nn.init.sparse_(torch.empty(rows, cols), sparsity, std)
    for weight in (ours, theirs):
        assert ((weight == 0).sum(0) == math.ceil(sparsity * rows)).all()
        assert stats.chisquare(_zero_subsets(weight)).pvalue > 1e-6
    assert stats.chi2_contingency([_zero_subsets(ours), _zero_subsets(theirs)]).pvalue > 1e-6
    values = ours[ours != 0].double().numpy()
    assert stats.kstest(values, "norm", args=(0, std)).pvalue > 1e-6
    assert stats.ks_2samp(values, theirs[theirs != 0].double().numpy()).pvalue > 1e-6


def test_the_sparse_check_tells_a_biased_choice_of_zero_rows():
    # The same check on zero rows that favour the first rows (a plausible bug: a per-column sort of
    # rounded keys) must fail, or the test above could not fail.
    weight = torch.ones(5, 20_000)
    keys = torch.rand(5, 20_000, generator=_generator(3)) + 0.05 * torch.arange(5)[:, None]
    weight.scatter_(0, keys.argsort(dim=0)[:2], 0.0)
    assert stats.chisquare(_zero_subsets(weight)).pvalue < 1e-6


@pytest.mark.parametrize("seed", [0, 123])
@pytest.mark.parametrize("sizes, input_dim", [((20,), 10), ((7, 33, 5), 12)])
def test_pytorch_default_equals_what_nn_linear_does_by_itself(seed, sizes, input_dim):
    spec = NetworkSpec(sizes=sizes, input_dim=input_dim, scheme="pytorch_default",
                       bias="pytorch_default")
    ours = build_model(spec, seed)
    torch.manual_seed(seed)  # nn.Linear draws weight then bias from the global RNG, layer by layer
    theirs = [nn.Linear(fan_in, fan_out) for fan_in, fan_out in spec.fans]
    for block, linear in zip(ours, theirs):
        assert torch.equal(block.linear.weight, linear.weight)
        assert torch.equal(block.linear.bias, linear.bias)


def _kurtosis(law) -> float:
    """E[(w − μ)⁴] / σ⁴ of the law: sets the standard error of a sample std."""
    if law.kind == "uniform":
        return 1.8
    # normal (and a Haar-orthogonal matrix's entries, asymptotically): 3; a point mass at zero
    # with weight p on top of N(0, s²) has kurtosis 3 / (1 − p).
    return 3.0 / (1.0 - law.zero_fraction) if law.kind == "normal" else 3.0


@pytest.mark.parametrize("name", sorted(set(SCHEMES) - {"lsuv", "dirac"}))  # no fixed law
@pytest.mark.parametrize("fan_in, fan_out", FAN_SHAPES)
def test_measured_std_and_mean_match_the_theoretical_law(name, fan_in, fan_out):
    scheme = get_scheme(name)
    params = dict(scheme.resolve(STD_PARAMS.get(name, {})))
    w = _applied(name, params, fan_in, fan_out, seed=fan_in)
    law = scheme.weight_law(fan_in, fan_out, params)
    std, mean = scheme.weight_std(fan_in, fan_out, params), scheme.weight_mean(fan_in, fan_out,
                                                                               params)
    assert std == pytest.approx(law.std()) and mean == pytest.approx(law.mean())
    n = w.numel()
    if std == 0.0:  # constants: exact
        assert torch.all(w == torch.tensor(mean, dtype=w.dtype))
        return
    w = w.double()
    assert float(w.std(correction=0)) == pytest.approx(
        std, rel=Z * math.sqrt((_kurtosis(law) - 1.0) / (4 * n)))
    assert float(w.mean()) == pytest.approx(mean, abs=Z * std / math.sqrt(n))


def test_std_formulas_for_the_named_papers():
    """The closed forms, independently of the law objects the test above compares against."""
    fi, fo = 300, 500
    std = {name: get_scheme(name).weight_std(fi, fo, dict(get_scheme(name).resolve()))
           for name in SCHEMES}
    assert std["xavier_normal"] == pytest.approx(math.sqrt(2 / (fi + fo)))
    assert std["xavier_uniform"] == pytest.approx(math.sqrt(2 / (fi + fo)))
    # kaiming default: leaky_relu with a = 0, i.e. gain √2 over fan_in
    assert std["kaiming_normal"] == pytest.approx(math.sqrt(2 / fi))
    assert std["kaiming_uniform"] == pytest.approx(math.sqrt(2 / fi))
    assert std["pytorch_default"] == pytest.approx(1 / math.sqrt(3 * fi))
    assert std["lecun_normal"] == pytest.approx(1 / math.sqrt(fi))
    assert std["lecun_uniform"] == pytest.approx(1 / math.sqrt(fi))
    assert std["orthogonal"] == pytest.approx(1 / math.sqrt(max(fi, fo)))
    assert std["uniform"] == pytest.approx(1 / math.sqrt(12))
    assert std["lsuv"] is None  # set by data


def test_orthogonal_is_orthogonal_with_the_gain():
    w = _applied("orthogonal", {"gain": 2.0}, 64, 40, 3).double()  # 40 x 64: orthonormal rows
    assert torch.allclose(w @ w.T, 4.0 * torch.eye(40, dtype=torch.float64), atol=1e-5)


# Bias schemes need the layer's fans (pytorch_default's bound is 1/√fan_in).
def _code_cases():
    for name, scheme in SCHEMES.items():
        if name != "dirac":  # 3-D to 5-D weights only: its export is tested in test_codegen
            yield pytest.param(scheme, STD_PARAMS.get(name, {}), "m.weight", id=f"weight-{name}")
    for name, scheme in BIAS_SCHEMES.items():
        yield pytest.param(scheme, {"val": 0.2} if name == "constant" else {}, "m.bias",
                           id=f"bias-{name}")


@pytest.mark.parametrize("scheme, given, target", list(_code_cases()))
def test_code_string_reproduces_the_tensor(scheme, given, target):
    params = dict(scheme.resolve(given))
    m = nn.Linear(37, 23)
    namespace = {"nn": nn, "torch": torch, "math": math, "m": m, "g": _generator(5)}
    if scheme.own_fn is not None:  # the code export defines it from its source
        exec(textwrap.dedent(inspect.getsource(scheme.own_fn)), namespace)
    with torch.no_grad():
        exec(scheme.code(params, target), namespace)
    tensor = getattr(m, target.split(".")[1])
    expected = torch.empty_like(tensor)
    scheme.apply(expected, params, _generator(5), fans=(37, 23))
    assert torch.equal(tensor, expected)


@pytest.mark.parametrize("name, given, field, allowed", [
    ("normal", {"stdd": 1.0}, "normal.stdd", "mean, std"),
    ("zeros", {"val": 1.0}, "zeros.val", "no parameters"),
    ("normal", {"std": -1.0}, "normal.std", "[0, 100]"),
    ("xavier_normal", {"gain": 1e9}, "xavier_normal.gain", "[0, 100]"),
    ("sparse", {"sparsity": 1.0}, "sparse.sparsity", "[0, 0.999]"),
    ("normal", {"std": "wide"}, "normal.std", "a number"),
    ("normal", {"std": float("nan")}, "normal.std", "a finite number"),
    ("lsuv", {"max_iter": 2.5}, "lsuv.max_iter", "a whole number"),
    ("lsuv", {"tol": 0.0}, "lsuv.tol", "[0.0001, 1]"),
    ("kaiming_normal", {"mode": "fan_avg"}, "kaiming_normal.mode", "one of fan_in, fan_out"),
    ("kaiming_uniform", {"nonlinearity": "swish"}, "kaiming_uniform.nonlinearity", "one of"),
    ("uniform", {"a": 2.0, "b": 1.0}, "uniform.b", "greater than a (2)"),
    ("uniform", {"a": 1.0, "b": 1.0}, "uniform.b", "greater than a (1)"),
    ("trunc_normal", {"a": 3.0}, "trunc_normal.b", "greater than a (3)"),
])
def test_bad_parameters_raise_invalid_spec_naming_the_field(name, given, field, allowed):
    with pytest.raises(InvalidSpec) as caught:
        get_scheme(name).resolve(given)
    assert caught.value.field == field
    assert allowed in caught.value.allowed
    owner, _, param = field.rpartition(".")
    assert owner in str(caught.value) and param in str(caught.value)
    assert allowed in str(caught.value)


def test_parameters_are_coerced_and_defaults_filled_in_a_sorted_tuple():
    resolved = get_scheme("lsuv").resolve({"max_iter": "4"})
    assert resolved == (("max_iter", 4), ("tol", 0.1))
    assert isinstance(dict(resolved)["max_iter"], int)
    assert get_scheme("normal", bias=True).resolve() == (("mean", 0.0), ("std", 0.05))


@pytest.mark.parametrize("name, bias", [("nope", False), ("xavier_normal", True)])
def test_unknown_scheme_names_the_field_and_the_choices(name, bias):
    with pytest.raises(InvalidSpec) as caught:
        get_scheme(name, bias=bias)
    assert caught.value.field == ("bias" if bias else "scheme")
    assert "pytorch_default" in caught.value.allowed


LSUV_CASES = [
    # (activation, sizes, bias, bias std, tol): with a bias, several rounds are needed to get
    # within tol, so a loop that stops early or rescales by the variance instead of the std shows.
    ("relu", (256, 128, 256, 64), "zeros", None, 0.1),
    ("tanh", (200,) * 4, "normal", 0.5, 0.01),
    ("selu", (96, 300, 50), "normal", 0.3, 0.1),
]


@pytest.mark.parametrize("activation, sizes, bias, bias_std, tol", LSUV_CASES)
def test_lsuv_gives_every_linear_output_unit_variance_on_the_calibration_batch(
        activation, sizes, bias, bias_std, tol):
    spec = NetworkSpec(sizes=sizes, input_dim=40, activation=activation, scheme="lsuv",
                       scheme_params={"tol": tol, "max_iter": 50}, bias=bias,
                       bias_params={"std": bias_std} if bias_std else {})
    calibration = torch.randn(512, 40, generator=_generator(11)) * 3.0
    model = build_model(spec, seed=4, calibration=calibration)
    h = calibration
    with torch.no_grad():
        for block in model:
            assert abs(float(block.linear(h).var()) - 1.0) < tol
            h = block(h)


def test_lsuv_starts_from_an_orthogonal_matrix_and_only_rescales_it():
    spec = NetworkSpec(sizes=(64, 64), input_dim=64, activation="relu", scheme="lsuv")
    w = build_model(spec, seed=2)[1].linear.weight.detach().double()
    gram = w @ w.T
    scale = float(gram[0, 0].detach())
    assert scale != pytest.approx(1.0, abs=1e-3)  # rescaled ...
    assert torch.allclose(gram, scale * torch.eye(64, dtype=torch.float64), atol=1e-5 * scale)


def test_every_parameter_has_a_plain_words_help_text():
    undocumented = [f"{name}.{p.name}" for table in (SCHEMES, BIAS_SCHEMES)
                    for name, scheme in table.items() for p in scheme.params if not p.doc]
    assert not undocumented


def test_kaiming_parameter_help_quotes_the_gains_torch_computes():
    docs = {p.name: p.doc for p in SCHEMES["kaiming_normal"].params}
    assert "√(2 / (1 + a²))" in docs["a"]
    for a in (0.0, 0.2, math.sqrt(5)):
        assert math.sqrt(2 / (1 + a * a)) == pytest.approx(init.calculate_gain("leaky_relu", a))
    for words, nonlinearity, gain in (("√2 for relu", "relu", math.sqrt(2)),
                                      ("5/3 for tanh", "tanh", 5 / 3),
                                      ("1 for linear", "linear", 1.0)):
        assert words in docs["nonlinearity"]
        assert init.calculate_gain(nonlinearity) == pytest.approx(gain)
    assert "fan_in (inputs per unit)" in docs["mode"]
