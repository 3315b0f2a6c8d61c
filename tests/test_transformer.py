"""The transformer stack (initviz/archs/transformer.py): its attention against torch's, its init
against GPT-2's, the probe's columns, the stream against what LayerNorm makes exact, Xiong et
al.'s gradient profile and training on digits.

Tolerances. A second moment measured over n independent entries spreads by about √(2/n); the
stream's entries are not independent (one draw of the weights serves every input), so the
spread over weight draws is used instead: at d_model 256 a Linear multiplies a second moment by a
factor of relative spread about 0.8/√256 = 5%, and comparisons allow 3 such spreads.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from initviz.archs.transformer import (SelfAttention, classifier_gradient_norms,
                                       stream_envelope)
from initviz.errors import InvalidSpec
from initviz.network import NetworkSpec, build_model
from initviz.probe import LAYER_COLUMNS, profile
from initviz.training import TrainSpec, train


def transformer(width=64, depth=4, **options):
    kwargs = {k: options.pop(k) for k in list(options)
              if k in ("scheme", "scheme_params", "bias", "bias_params", "activation",
                       "input_dim", "norm")}
    return NetworkSpec.stack(width, depth, arch="transformer", arch_params=options, **kwargs)


def stream_var(prof) -> np.ndarray:
    return prof.layers["act_std"].to_numpy(np.float64) ** 2


def test_attention_is_torchs_scaled_dot_product_and_multihead_attention():
    torch.manual_seed(0)
    d, heads, seq = 32, 4, 6
    attn = SelfAttention(d, heads).requires_grad_(False)
    x = torch.randn(3, seq, d)
    ours = attn(x)
    split = [t.unflatten(-1, (heads, -1)).transpose(1, 2)
             for t in (attn.q(x), attn.k(x), attn.v(x))]
    sdpa = nn.functional.scaled_dot_product_attention(*split)
    assert ours == pytest.approx(attn.out(sdpa.transpose(1, 2).flatten(-2)), abs=1e-5)
    mha = nn.MultiheadAttention(d, heads, batch_first=True).requires_grad_(False)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]))
        mha.out_proj.weight.copy_(attn.out.weight)
        mha.out_proj.bias.copy_(attn.out.bias)
    assert ours == pytest.approx(mha(x, x, x, need_weights=False)[0], abs=1e-5)
    # One example without a batch dimension (the Jacobian's chain) gives the same tokens.
    assert attn(x[1]) == pytest.approx(ours[1], abs=1e-6)


def test_gpt2_init_scales_only_the_residual_projections_and_draws_positions_at_0_02():
    depth = 6
    plain = build_model(transformer(64, depth, scheme="normal", scheme_params={"std": 0.02}),
                        seed=3)
    scaled = build_model(transformer(64, depth, scheme="normal", scheme_params={"std": 0.02},
                                     residual="scaled"), seed=3)
    for p, s in zip(plain.blocks, scaled.blocks):
        for name in ("q", "k", "v"):
            assert torch.equal(getattr(s.attn, name).weight, getattr(p.attn, name).weight)
        assert torch.equal(s.mlp.fc1.weight, p.mlp.fc1.weight)
        for mine, theirs in ((s.attn.out, p.attn.out), (s.mlp.fc2, p.mlp.fc2)):
            assert torch.equal(mine.weight, theirs.weight * (2 * depth) ** -0.5)
            assert not mine.bias.any()  # zeros, as GPT-2's
    # nanoGPT: std 0.02 / √(2·n_layer) for the projections; over 12·64·256 entries the std's
    # standard error is 0.3%.
    fc2 = torch.cat([b.mlp.fc2.weight.flatten() for b in scaled.blocks])
    assert fc2.std().item() == pytest.approx(0.02 / math.sqrt(2 * depth), rel=0.01)
    pos = plain.stem.pos  # 8 × 64 entries: the std's standard error is 2.5%
    assert pos.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(pos, scaled.stem.pos)


@pytest.mark.parametrize("ln", ["pre", "post"])
def test_parameter_count_is_the_models(ln):
    spec = transformer(24, 3, heads=3, seq_len=5, ln=ln, input_dim=7)
    for out in (None, 10):
        model = build_model(spec, seed=0, out_features=out)
        assert spec.parameter_count(out) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("make, field, says", [
    (lambda: transformer(30, 2, heads=4), "heads", "a divisor of d_model = width = 30"),
    (lambda: transformer(32, 2, norm="layernorm"), "norm", "set by ln"),
    (lambda: transformer(32, 2, scheme="lsuv"), "scheme", "LSUV"),
    (lambda: transformer(32, 2, ln="middle"), "ln", "pre, post"),
    (lambda: transformer(32, 2, residual="fixup"), "residual", "plain, scaled"),
    (lambda: transformer(32, 2, seq_len=0), "seq_len", "[1, 64]"),
    (lambda: NetworkSpec(sizes=(32, 64), arch="transformer"), "sizes", "one width"),
    (lambda: transformer(32, 97), "depth", "[1, 96]"),
])
def test_bad_transformer_specs_are_refused_with_a_sentence(make, field, says):
    with pytest.raises(InvalidSpec) as caught:
        make()
    assert caught.value.field == field
    assert says in str(caught.value)


def test_other_data_sets_are_refused_with_a_sentence():
    with pytest.raises(InvalidSpec, match="only the digits"):
        TrainSpec(transformer(16, 2), schemes=("xavier_normal",), dataset="moons")
    fitted = TrainSpec(transformer(16, 2, seq_len=3), schemes=("xavier_normal",)).network
    assert (fitted.input_dim, fitted.option("seq_len")) == (8, 8)


def test_the_profile_keeps_every_contract_key_with_one_entry_per_block():
    prof = profile(transformer(32, 3), batch=8)
    document = prof.to_json_dict()
    assert len(document["layers"]) == 3
    row = document["layers"][0]
    assert set(LAYER_COLUMNS) <= set(row)
    for column in ("block_grad_norm", "attn_grad_norm", "mlp_grad_norm", "attn_entropy",
                   "attn_entropy_uniform", "stream_var_low", "stream_var_high"):
        assert column in row
    assert document["config"]["arch"] == "transformer"
    assert document["config"]["heads"] == 4 and document["config"]["ln"] == "pre"
    assert document["theory"]["q_star"] is None
    assert "no fixed point" in document["theory"]["note"]


def test_block_gradient_norm_is_its_sublayers_together():
    layers = profile(transformer(32, 3), batch=16).layers
    together = np.hypot(layers["attn_grad_norm"], layers["mlp_grad_norm"])
    assert layers["block_grad_norm"].to_numpy() == pytest.approx(together.to_numpy(), rel=1e-5)
    # weight_grad_norm is fc1's alone, a part of the MLP's.
    assert (layers["weight_grad_norm"] < layers["mlp_grad_norm"]).all()


def test_attention_is_uniform_for_a_tiny_init_and_peaked_for_a_large_one():
    # The lore "a large init makes attention uniform" has it backwards: logits scale with the
    # square of the weights' std, so a tiny init gives logits near 0 (uniform attention,
    # entropy ln(seq_len)) and a large one logits of tens (each query on one key, entropy
    # near 0: Zhai et al. 2023's entropy collapse). Measured over seeds 0-2 at d_model 64:
    # std 1e-3 gives ln 8 to 4 digits, std 1 at most 0.06 (Pre-LN) and 0.25 (Post-LN).
    for ln in ("pre", "post"):
        for seed in range(2):
            tiny = profile(transformer(64, 4, ln=ln, scheme="normal",
                                       scheme_params={"std": 1e-3}), batch=32, seed=seed)
            large = profile(transformer(64, 4, ln=ln, scheme="normal",
                                        scheme_params={"std": 1.0}), batch=32, seed=seed)
            uniform = tiny.layers["attn_entropy_uniform"].to_numpy()
            assert uniform == pytest.approx(math.log(8), rel=1e-6)
            assert tiny.layers["attn_entropy"].to_numpy() == pytest.approx(uniform, rel=1e-4)
            assert (large.layers["attn_entropy"] < 0.2 * math.log(8)).all()


@pytest.mark.parametrize("ln", ["pre", "post"])
def test_the_mlp_reads_a_normalized_stream_so_its_preactivation_variance_is_exact(ln):
    # fc1 has fan_in 256 and reads a unit-variance LayerNorm output: Kaiming's σ_w² = 2.
    prof = profile(transformer(256, 4, ln=ln), batch=64, seed=1)
    theory = prof.layers["preact_var_theory"].to_numpy()
    assert theory == pytest.approx(2.0, rel=1e-9)
    measured = prof.layers["preact_std"].to_numpy(np.float64) ** 2
    assert measured == pytest.approx(theory, rel=3 * 0.8 / math.sqrt(256))


def test_a_post_ln_stream_has_variance_one_after_every_block():
    prof = profile(transformer(64, 6, ln="post", scheme="xavier_normal"), batch=32, seed=0)
    # Each token is normalized to variance v/(v + 1e-5), v its variance: 1 to 5 digits here.
    assert stream_var(prof) == pytest.approx(1.0, abs=1e-4)
    assert np.array(prof.prediction.act_var) == pytest.approx(1.0)


@pytest.mark.parametrize("residual, seed", [("plain", 0), ("plain", 1), ("scaled", 0),
                                            ("scaled", 1)])
def test_a_pre_ln_stream_stays_within_its_envelope(residual, seed):
    depth = 12
    prof = profile(transformer(128, depth, residual=residual), batch=32, seed=seed)
    layers = prof.layers
    measured = stream_var(prof)
    low, high = layers["stream_var_low"].to_numpy(), layers["stream_var_high"].to_numpy()
    tolerance = 3 * 0.8 / math.sqrt(128)
    assert (measured >= low * (1 - tolerance)).all() and (measured <= high * (1 + tolerance)).all()
    # Kaiming: the stem gives q0 = 2 (+ 0.02² of the positions); the MLP adds 2 per block and
    # attention 0 to 4 (σ_out²·σ_v² = 2·2); scaled divides both by 2·depth.
    q0 = 2 + 0.02**2
    per_block = 1.0 if residual == "plain" else 1 / (2 * depth)
    assert low[-1] - q0 == pytest.approx(depth * per_block * 2, rel=1e-9)
    assert high[-1] - q0 == pytest.approx(depth * per_block * 6, rel=1e-9)
    if residual == "plain":
        # Linear in depth: the measured growth per block is steady (the last 6 blocks add
        # within 40% of what the first 6 add; seeds 0-3 measured 1.11 to 1.19, about 4.7 per
        # block, between the envelope's 2 and 6).
        first, last = measured[depth // 2 - 1] - q0, measured[-1] - measured[depth // 2 - 1]
        assert last / first == pytest.approx(1.0, abs=0.4)
    else:
        # A constant sum: the whole stack adds about half of one plain block (2 to 6 → 1 to 3;
        # seeds 0-3 measured 1.94 to 2.03).
        assert 1.0 * (1 - tolerance) <= measured[-1] - q0 <= 3.0 * (1 + tolerance)


def test_the_envelope_with_biases_counts_the_value_bias_in_full():
    spec = transformer(64, 3, scheme="xavier_normal", bias="normal", bias_params={"std": 0.1})
    line = stream_envelope(spec)
    out_w2 = 1 * 64 * 2 / 128  # Xavier on 64 -> 64: σ_w² = fan_in·2/(fan_in + fan_out) = 1
    v_attn_low = out_w2 * 0.01 + 0.01
    v_attn_high = out_w2 * (1 + 0.01) + 0.01
    assert line.stream_var_high[0] - line.stream_var_low[0] == pytest.approx(
        v_attn_high - v_attn_low, rel=1e-9)


def test_xiong_post_ln_gradients_grow_toward_the_output_and_pre_ln_ones_do_not():
    # The classifier's cross-entropy on 256 digits at init, 12 Xavier blocks of d_model 64:
    # the last 3 blocks' gradient norm over the first 3's. Seeds 0-3 measured 1.61 to 1.97
    # (Post-LN) and 0.37 to 0.46 (Pre-LN).
    for seed in range(2):
        ratios = {}
        for ln in ("pre", "post"):
            norms = classifier_gradient_norms(
                transformer(64, 12, ln=ln, scheme="xavier_normal"), seed=seed)
            ratios[ln] = norms["block_grad_norm"].to_numpy()
        post, pre = ratios["post"], ratios["pre"]
        assert post[-3:].mean() / post[:3].mean() > 1.3
        assert pre[-3:].mean() / pre[:3].mean() < 0.6


def test_pre_ln_trains_on_digits_and_post_ln_fails_at_the_same_lr_without_warm_up():
    # Adam at lr 0.01 with no warm-up, 6 Xavier blocks of d_model 32, 100 steps: seeds 0-2
    # reached val_acc 0.86-0.89 with Pre-LN and 0.10-0.33 with Post-LN (chance: 0.1).
    results = {}
    for ln in ("pre", "post"):
        spec = TrainSpec(transformer(32, 6, ln=ln, scheme="xavier_normal"),
                         schemes=("xavier_normal",), optimizer="adam", lr=0.01, steps=100,
                         eval_every=50, seed=0)
        results[ln] = train(spec).runs[0].final.val_acc
    assert results["pre"] > 0.75
    assert results["post"] < 0.5


def test_the_advice_for_an_exploding_transformer_quotes_its_attention_entropy():
    from initviz.report import verdict

    prof = profile(transformer(64, 12, scheme="normal", scheme_params={"std": 1.0}), batch=64)
    found = verdict(prof)
    assert found.kind == "exploding"
    entropy = prof.layers["attn_entropy"].mean()
    assert entropy < 0.1  # one key per query: far below ln 8 = 2.08
    assert f"averages {entropy:.3g} nats, of 2.08 for uniform attention" in found.recommendation
    healthy = verdict(profile(transformer(64, 12, scheme="normal", scheme_params={"std": 0.02},
                                          residual="scaled"), batch=64))
    assert healthy.kind == "healthy" and "GPT-2" not in healthy.recommendation


@pytest.mark.parametrize("width, depth, seq_len, heads", [(32, 12, 8, 4), (128, 4, 8, 8),
                                                          (16, 3, 32, 2)])
def test_the_memory_estimate_counts_at_least_what_autograd_saves(width, depth, seq_len, heads):
    # units() counts 18·d_model per token and block and 2·heads·seq_len per token; autograd's
    # saved tensors (distinct storages, the input and parameters left out) came to 0.62-0.65 of
    # that, and a whole forward and backward pass peaked at 1.0-1.1 of it (benchmarks/README.md).
    from initviz.archs.transformer import KEPT_PER_UNIT

    spec = transformer(width, depth, seq_len=seq_len, heads=heads, input_dim=8)
    model, x = build_model(spec, seed=0), torch.randn(16, seq_len, 8)
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    own.add(x.untyped_storage().data_ptr())
    kept = sum(n for ptr, n in saved.items() if ptr not in own)
    counted = (spec.architecture.units(spec) - (seq_len - 1) * 8) / KEPT_PER_UNIT * 16 * 4
    assert 0.5 * counted <= kept <= counted
