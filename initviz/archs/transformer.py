"""``transformer``: a stack of ``depth`` transformer blocks of width ``d_model`` = ``width``.

The input is ``seq_len`` tokens of ``input_dim`` numbers (digits: 8 rows of 8 pixels). A Linear
embeds each token into the stream (``input_dim -> d_model``) and a learned positional embedding
(``seq_len × d_model``) is added; each block is multi-head self-attention (``heads`` heads of
``d_head = d_model / heads``, logits ``q·k / √d_head``, no causal mask: the classifier reads the
whole image) and an MLP ``d_model -> 4·d_model -> φ -> d_model``, each a sublayer with a residual
connection and a LayerNorm:

- ``ln pre`` (GPT-2; Xiong et al. 2020): ``h <- h + attn(LN(h))``, ``h <- h + mlp(LN(h))``; the
  training model adds GPT-2's final LayerNorm before it pools.
- ``ln post`` (Vaswani et al. 2017): ``h <- LN(h + attn(h))``, ``h <- LN(h + mlp(h))``.

For training, the last stream is mean-pooled over the sequence into an output Linear.

Every Linear (embedding; q, k, v and the output projection; the MLP's two; the head) takes the
chosen weight and bias schemes through ``torch.nn.init`` with the seeded generator, in module
order. The positional embedding is a lookup table, not a map with a fan-in, so a fan-based scheme
has nothing to scale it by: it is drawn N(0, 0.02²) as GPT-2 and nanoGPT draw theirs, after the
Linears. LayerNorms start at scale 1, shift 0. ``residual`` chooses:

- ``plain``: the scheme's weights.
- ``scaled``: each block's two residual output projections (attention's ``out``, the MLP's
  ``fc2``) × 1/√(2·depth), as GPT-2 and nanoGPT do (``std = 0.02/√(2·n_layer)``): every block
  adds two branches to the stream, so its variance grows by a constant sum over the depth
  instead of linearly in it. GPT-2's whole init is ``normal(std=0.02)`` with ``scaled``.

A probe entry is a block: ``act_*`` is the residual stream after it (contract), ``preact_*`` the
MLP's pre-activation (``fc1``'s output), ``dead``/``saturated`` are read at the MLP's activation
and the weight is ``fc1``. The extra columns (:meth:`Transformer.table_columns`) are the
gradient norms of each block's parameters, whole and per sublayer, the attention entropy and the
stream's variance envelope.

Theory: the stream has no fixed point to settle at. What is exact at init is what a LayerNorm
fixes: the MLP reads a normalized stream (Pre-LN: LN(h); Post-LN: the LN of the attention
sublayer) so its pre-activation variance is ``σ_{w,fc1}² + σ_b²`` at every block, and a Post-LN
stream has variance 1 after every block. A Pre-LN block adds the variance of its two branches,
each reading a unit-variance LN output, so the stream grows linearly in depth (plain) or by a
constant sum (scaled); the MLP's share is exact, the attention's lies between what the value
bias alone passes and what one token's value would (the attention probabilities average the
values, and an average is no longer than its longest term). :func:`stream_envelope` gives it.

References: Vaswani et al. 2017, Attention Is All You Need; Radford et al. 2019, Language Models
are Unsupervised Multitask Learners (GPT-2); Xiong et al. 2020, On Layer Normalization in the
Transformer Architecture; Zhai et al. 2023, Stabilizing Transformer Training by Preventing
Attention Entropy Collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn

from initviz.archs import (Architecture, ExtraColumns, Option, ProbePoint,
                           check_one_width_without_lsuv)
from initviz.archs.residual import Residual
from initviz.errors import InvalidSpec, check_int
from initviz.meanfield import Prediction, second_moment, theory_unavailable_reason
from initviz.network import Linear, NetworkSpec, build_model, init_linear

MAX_BLOCKS = 96
MAX_HEADS = 64
MAX_SEQ_LEN = 64
LN_CHOICES = ("pre", "post")
RESIDUAL_CHOICES = ("plain", "scaled")
POSITION_STD = 0.02
"""The std of the positional embedding (GPT-2, nanoGPT), whatever the scheme: what
:func:`transformer_init_` draws (a literal there, since the code export copies it)."""
MLP_RATIO = 4
KEPT_PER_UNIT = 0.4
"""A transformer's autograd-kept values per unit of :meth:`Transformer.units` (see there)."""
DIGITS_SIDE = 8
"""A digit is 8 rows of 8 pixels: the transformer reads it as 8 tokens."""


class TokenEmbedding(nn.Module):
    """Each token through a Linear into the stream, plus a learned positional embedding."""

    def __init__(self, input_dim, d_model, seq_len, linear=nn.Linear):
        super().__init__()
        self.proj = linear(input_dim, d_model)
        self.pos = nn.Parameter(torch.zeros(seq_len, d_model))

    def forward(self, x):
        return self.proj(x) + self.pos


class SelfAttention(nn.Module):
    """Multi-head self-attention over ``(..., seq_len, d_model)``: softmax(q·kᵀ/√d_head)·v per
    head, then the output projection; ``softmax`` is a module so that hooks can read the
    attention probabilities."""

    def __init__(self, d_model, heads, linear=nn.Linear):
        super().__init__()
        self.heads = heads
        self.q = linear(d_model, d_model)
        self.k = linear(d_model, d_model)
        self.v = linear(d_model, d_model)
        self.out = linear(d_model, d_model)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        def split(t):  # (..., S, d_model) -> (..., heads, S, d_head)
            return t.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        p = self.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]))
        return self.out((p @ v).transpose(-3, -2).flatten(-2))


class TransformerBlock(nn.Module):
    """Attention then an MLP (``d_model -> 4·d_model -> act -> d_model``), each with a residual
    connection and a LayerNorm before it (``ln="pre"``) or after the sum (``ln="post"``)."""

    def __init__(self, d_model, heads, act, ln="pre", linear=nn.Linear):
        super().__init__()
        self.pre = ln == "pre"
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, linear)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", linear(d_model, 4 * d_model))
        self.mlp.add_module("act", act())
        self.mlp.add_module("fc2", linear(4 * d_model, d_model))

    def forward(self, h):
        if self.pre:
            h = h + self.attn(self.ln1(h))
            return h + self.mlp(self.ln2(h))
        h = self.ln1(h + self.attn(h))
        return self.ln2(h + self.mlp(h))


class PooledHead(nn.Module):
    """The classifier: [a final LayerNorm (Pre-LN)], the mean over the sequence, a Linear."""

    def __init__(self, d_model, out_features, final_norm, linear=nn.Linear):
        super().__init__()
        self.norm = nn.LayerNorm(d_model) if final_norm else nn.Identity()
        self.fc = linear(d_model, out_features)

    def forward(self, h):
        return self.fc(self.norm(h).mean(-2))


class TransformerStack(nn.Module):
    """The embedding (``stem``), ``depth`` blocks made by ``block()``, and a pooled classifier
    where ``out_features`` is given."""

    def __init__(self, input_dim, d_model, seq_len, depth, block, out_features=None,
                 final_norm=True, linear=nn.Linear):
        super().__init__()
        self.stem = TokenEmbedding(input_dim, d_model, seq_len, linear)
        self.blocks = nn.Sequential(*[block() for _ in range(depth)])
        self.head = (None if out_features is None
                     else PooledHead(d_model, out_features, final_norm, linear))

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return h if self.head is None else self.head(h)


def transformer_init_(model, residual, generator):
    """After the scheme has drawn every Linear of a :class:`TransformerStack`: draw the
    positional embedding N(0, 0.02²) from ``generator`` and, with ``residual="scaled"``, multiply
    each block's residual output projections (``attn.out``, ``mlp.fc2``) by 1/√(2·depth)."""
    with torch.no_grad():
        nn.init.normal_(model.stem.pos, std=0.02, generator=generator)
        if residual == "scaled":
            for block in model.blocks:
                for linear in (block.attn.out, block.mlp.fc2):
                    linear.weight.mul_((2 * len(model.blocks)) ** -0.5)


CLASSIFIER_BATCH = 256
"""Training digits in the loss of :func:`classifier_gradient_norms` on the page."""


def classifier_gradient_norms(spec: NetworkSpec, seed: int = 0, batch: int = CLASSIFIER_BATCH
                              ) -> pd.DataFrame:
    """The gradient norms, block by block, of the classifier's loss at init: Xiong et al.'s
    profile.

    The training model (``spec`` fitted to the digits, with its pooled head) is built from
    ``seed`` and the cross-entropy of its first ``batch`` training digits is differentiated.
    A real loss's gradient is largely the same direction for every input (the class rows of the
    head), and that shared part is what Post-LN passes back weakened block by block: its last
    blocks get the larger gradients. The probe's loss, a random projection drawn for every input,
    has no shared part and does not show it.

    Args:
        spec: a transformer network (its input is refitted to the digits).
        seed: the seed of the weights and of the digits' split.
        batch: training digits in the loss, in [1, 1347].

    Returns:
        One row per block: ``block``, ``block_grad_norm``, ``attn_grad_norm`` (``ln1`` and
        ``attn``), ``mlp_grad_norm`` (``ln2`` and ``mlp``): ``‖∂L/∂θ‖`` of the mean loss.
    """
    from initviz.datasets import load_dataset  # scikit-learn loads with it

    data = load_dataset("digits", seed)
    batch = check_int("batch", batch, 1, len(data.y_train))
    spec = spec.architecture.for_data(spec, data.input_dim, "digits")
    model = build_model(spec, seed, out_features=data.n_classes)
    x = data.x_train[:batch].view(batch, *spec.architecture.input_shape(spec))
    with torch.enable_grad():
        nn.functional.cross_entropy(model(x), data.y_train[:batch]).backward()
    norms = {name: [float(_grad_norm(*parts(block))) for block in model.blocks]
             for name, parts in _PARTS.items()}
    return pd.DataFrame({"block": np.arange(1, spec.depth + 1), **norms})


def _grad_norm(*modules: nn.Module) -> torch.Tensor:
    """``‖∂L/∂θ‖`` over every parameter of ``modules``."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
        [p.grad for m in modules for p in m.parameters()])))


_PARTS = {"block_grad_norm": lambda b: (b,), "attn_grad_norm": lambda b: (b.ln1, b.attn),
          "mlp_grad_norm": lambda b: (b.ln2, b.mlp)}
"""A block's parameters, whole and by sublayer (each with its LayerNorm)."""


def attention_entropy(p: torch.Tensor) -> torch.Tensor:
    """The mean entropy, in nats, of attention probabilities ``p`` (rows over the keys): ln(S)
    for uniform attention over S keys, 0 where each query attends to one key."""
    return -torch.special.xlogy(p, p).sum(-1).mean()


class _BlockColumns(ExtraColumns):
    """The attention entropy of each block (a hook on its softmax) and, once the backward pass
    is done, the gradient norms of each block's parameters: ``‖∂L/∂θ‖ / √batch`` as the probe
    reports ``weight_grad_norm``, over the block, its attention sublayer (``ln1`` and ``attn``)
    and its MLP sublayer (``ln2`` and ``mlp``)."""

    def __init__(self, model: TransformerStack):
        super().__init__()
        self.model = model
        self.batch = 1
        entropies = self.values.setdefault("attn_entropy", [])
        seq_len = model.stem.pos.shape[0]
        uniform = torch.tensor(math.log(seq_len))
        self.values["attn_entropy_uniform"] = [uniform] * len(model.blocks)

        def read_batch(module, inputs):
            self.batch = inputs[0].shape[0]

        self.handles = [model.register_forward_pre_hook(read_batch)] + [
            block.attn.softmax.register_forward_hook(
                lambda module, inputs, p: entropies.append(attention_entropy(p.detach())))
            for block in model.blocks]

    def remove(self) -> None:
        """Take the hooks off; with the gradients there (after the backward pass), read their
        norms."""
        super().remove()
        blocks = self.model.blocks
        if next(blocks.parameters()).grad is None:
            return  # the pass did not get as far as the gradients

        for name, parts in _PARTS.items():
            self.values[name] = [_grad_norm(*parts(b)) / math.sqrt(self.batch) for b in blocks]


@dataclass(frozen=True)
class TransformerPrediction(Prediction):
    """A :class:`Prediction` with the stream's variance envelope, block by block
    (:func:`stream_envelope`)."""

    stream_var_low: tuple[float, ...] = ()
    stream_var_high: tuple[float, ...] = ()


def _sigmas(spec: NetworkSpec, fan_in: int, fan_out: int) -> tuple[float, float]:
    """``(σ_w², σ_b²)`` of a Linear with these fans: ``fan_in·Var(W)`` and ``Var(b)``."""
    std = spec.resolved_scheme.weight_std(fan_in, fan_out, spec.scheme_params)
    bias_std = spec.resolved_bias.weight_std(fan_in, fan_out, spec.bias_params)
    return fan_in * std**2, bias_std**2


def stream_envelope(spec: NetworkSpec, input_second_moment: float = 1.0
                    ) -> TransformerPrediction | None:
    r"""What mean-field theory says of a transformer stack at init, block by block.

    The stream enters with ``q_0 = σ_e²·E[x²] + σ_{b}² + 0.02²`` (embedding, positions). The MLP
    reads a LayerNorm's output (unit variance per token), so its pre-activation variance is
    ``q_1 = σ_{fc1}² + σ_b²`` and it adds ``V_mlp = σ_{fc2}²·E[φ(√q_1 z)²] + σ_b²``. Attention
    averages its values with probabilities that sum to 1, and an average is no longer than its
    longest term: it adds ``V_attn`` between ``σ_out²·σ_{b}² + σ_b²`` (the value bias, the same for
    every token, passes whole) and ``σ_out²·(σ_v² + σ_b²) + σ_b²`` (one token's value). A branch
    is independent of the stream it is added to (its output projection is fresh), so variances
    add: Pre-LN, ``q_l = q_{l−1} + V_attn + V_mlp``, linear in ``l``; with ``scaled`` both
    output projections carry 1/(2·depth) of their variance, so ``q_depth − q_0`` is a constant
    sum, about half of one plain block's. Post-LN ends each block with a LayerNorm: variance 1.

    Args:
        spec: a transformer network.
        input_second_moment: ``E[x²]`` of the input tokens.

    Returns:
        A :class:`TransformerPrediction`: ``preact_var`` the MLP's pre-activation variance,
        ``act_var`` the stream's variance where it is exact (Post-LN; NaN for Pre-LN, whose
        envelope is ``stream_var_low``/``stream_var_high``), ``grad_var`` NaN (no closed form:
        attention's backward pass depends on its probabilities); None where mean-field theory
        does not apply (weights or biases of nonzero mean).
    """
    if theory_unavailable_reason(spec) is not None:
        return None
    d, depth = spec.sizes[0], spec.depth
    scale = 1 / (2 * depth) if spec.option("residual") == "scaled" else 1.0
    embed_w2, embed_b2 = _sigmas(spec, spec.input_dim, d)
    square_w2, square_b2 = _sigmas(spec, d, d)  # q, k, v, out
    fc1_w2, fc1_b2 = _sigmas(spec, d, MLP_RATIO * d)
    fc2_w2, fc2_b2 = _sigmas(spec, MLP_RATIO * d, d)
    q1 = fc1_w2 + fc1_b2
    v_mlp = scale * fc2_w2 * float(second_moment(spec.resolved_activation, q1)) + fc2_b2
    out_w2 = scale * square_w2
    v_attn = (out_w2 * square_b2 + square_b2, out_w2 * (square_w2 + square_b2) + square_b2)
    nan = (math.nan,) * depth
    if spec.option("ln") == "post":
        low = high = act = (1.0,) * depth
    else:
        q0 = embed_w2 * input_second_moment + embed_b2 + POSITION_STD**2
        blocks = np.arange(1, depth + 1)
        low, high = (tuple(q0 + blocks * (v + v_mlp)) for v in v_attn)
        act = nan
    return TransformerPrediction((q1,) * depth, act, nan, None, low, high)


class Transformer(Architecture):
    name = "transformer"
    label = "transformer"
    max_depth = MAX_BLOCKS
    options = {
        "heads": Option(4, bounds=(1, MAX_HEADS),
                        meaning="attention heads per block (d_model = width must be divisible "
                                "by it)"),
        "seq_len": Option(8, bounds=(1, MAX_SEQ_LEN),
                          meaning="tokens per input (digits: 8 rows of 8 pixels)"),
        "ln": Option("pre", LN_CHOICES,
                     meaning="where each sublayer's LayerNorm sits (pre: h + f(LN(h)), GPT-2; "
                             "post: LN(h + f(h)), the original transformer)"),
        "residual": Option("plain", RESIDUAL_CHOICES,
                           meaning="the residual init (plain; scaled: attention's out-proj and "
                                   "the MLP's fc2 x 1/sqrt(2*depth), GPT-2)"),
    }
    entry = "block"
    output = "residual stream"
    page_values = {"width": 64, "depth": 6}  # 96 MiB at the page's batch of 256
    code_input = "seq_len, input_dim"
    charts = {
        "attn_entropy": ("attention entropy (nats)", False,
                         "Attention entropy per block: ln(seq_len) is uniform attention, 0 one "
                         "key per query"),
        "block_grad_norm": ("‖∂L/∂θ‖ / √batch (log)", True,
                            "Gradient norm of each block's parameters (the probe's loss)"),
        "attn_grad_norm": ("‖∂L/∂θ‖ / √batch (log)", True,
                           "Gradient norm of each attention sublayer (its LayerNorm included)"),
        "mlp_grad_norm": ("‖∂L/∂θ‖ / √batch (log)", True,
                          "Gradient norm of each MLP sublayer (its LayerNorm included)"),
    }
    data_charts = {"block_grad_norm": (
        "‖∂L/∂θ‖ (log)", True,
        f"Gradient norm per block under the classifier's loss on {CLASSIFIER_BATCH} digits at "
        "init (Xiong et al. 2020)")}
    summary_note = ("a transformer's residual stream has no fixed point to settle at: its "
                    "LayerNorms fix the MLP's pre-activation variance (preact_var_theory), a "
                    "Post-LN stream's variance (1), and a Pre-LN stream's between "
                    "stream_var_low and stream_var_high, growing linearly in depth (plain) or "
                    "by a constant sum (scaled)")

    def check(self, spec: NetworkSpec) -> None:
        check_one_width_without_lsuv(spec, "every block: d_model is the stream's width")
        heads = spec.option("heads")
        if spec.sizes[0] % heads:
            raise InvalidSpec("heads", heads, f"a divisor of d_model = width = {spec.sizes[0]} "
                              "(each head gets d_model / heads dimensions)")
        if spec.norm != "none":
            raise InvalidSpec("norm", spec.norm, "none: a transformer's LayerNorms are set by "
                              "ln (pre or post)")

    def input_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        return (spec.option("seq_len"), spec.input_dim)

    def output_shape(self, spec: NetworkSpec) -> tuple[int, ...]:
        return (spec.option("seq_len"), spec.sizes[0])

    def for_data(self, spec: NetworkSpec, features: int, dataset: str) -> NetworkSpec:
        """Digits as 8 tokens (rows) of 8 pixels; other data sets are refused."""
        if dataset != "digits":
            raise InvalidSpec("dataset", dataset, "digits: a transformer reads a sequence of "
                              "tokens, and only the digits (8 rows of 8 pixels) are one")
        options = dict(spec.arch_params) | {"seq_len": DIGITS_SIDE}
        return replace(spec, input_dim=features // DIGITS_SIDE, arch_params=options)

    def fans(self, spec: NetworkSpec) -> list[tuple[int, int]]:
        return [(spec.sizes[0], MLP_RATIO * spec.sizes[0])] * spec.depth

    def parameter_count(self, spec: NetworkSpec, out_features: int | None) -> int:
        d, seq_len = spec.sizes[0], spec.option("seq_len")
        per_block = 4 * (d * d + d) + 2 * (MLP_RATIO * d * d) + MLP_RATIO * d + d + 2 * 2 * d
        head = 0
        if out_features:
            head = d * out_features + out_features + (2 * d if spec.option("ln") == "pre" else 0)
        return spec.input_dim * d + d + seq_len * d + spec.depth * per_block + head

    def units(self, spec: NetworkSpec) -> int:
        # Per token and block autograd keeps about 18·d_model values (two LayerNorms' inputs and
        # outputs, q, k, v, the heads' output, the MLP's 4·d_model pre-activation and
        # activation, the sums) and per head the logits and probabilities over seq_len keys.
        # Those are all it holds: the backward pass frees them block by block and holds one
        # block's gradients at a time, so a forward and backward pass peaked at 1.0-1.1 times
        # these values (benchmarks/README.md, "Transformer"), where estimate_bytes multiplies
        # units by 3 (training) or 4 (the probe) copies: units are 0.4 of them (1.2x in training).
        d, seq_len, heads = spec.sizes[0], spec.option("seq_len"), spec.option("heads")
        kept = seq_len * (d + spec.depth * (18 * d + 2 * heads * seq_len))
        return math.ceil(KEPT_PER_UNIT * kept) + (seq_len - 1) * spec.input_dim

    def build(self, spec: NetworkSpec, generator: torch.Generator, *,
              out_features: int | None, calibration: torch.Tensor | None) -> TransformerStack:
        """A :class:`TransformerStack` whose Linears are drawn in module order (the embedding,
        each block's q, k, v, out, fc1, fc2, the head; weight then bias), then
        :func:`transformer_init_` (positions, and the ``scaled`` residual init)."""
        d, ln = spec.sizes[0], spec.option("ln")
        block = partial(TransformerBlock, d, spec.option("heads"),
                        spec.resolved_activation.module, ln, Linear)
        model = TransformerStack(spec.input_dim, d, spec.option("seq_len"), spec.depth, block,
                                 out_features, ln == "pre", Linear)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                init_linear(module, spec, generator)
        transformer_init_(model, spec.option("residual"), generator)
        return model

    def probe_points(self, model: TransformerStack, spec: NetworkSpec) -> list[ProbePoint]:
        return [ProbePoint(output=block, preact=block.mlp.fc1, preact_input=False,
                           region=block.mlp.act, weight=block.mlp.fc1)
                for block in model.blocks]

    # The embedding, then the blocks (stage l + 1 is block l), as for the residual MLP.
    chain = Residual.chain

    def extra_columns(self, model: TransformerStack, spec: NetworkSpec) -> ExtraColumns:
        return _BlockColumns(model)

    def table_columns(self, columns: dict, extra: dict, prediction) -> dict:
        """The gradient norms per block and sublayer, the attention entropy with ln(seq_len)
        (uniform attention) beside it, and the Pre-LN stream's envelope."""
        depth = len(columns["layer"])
        envelope = ((prediction.stream_var_low, prediction.stream_var_high) if prediction
                    else ([None] * depth,) * 2)
        return {
            "block_grad_norm": extra["block_grad_norm"],
            "attn_grad_norm": extra["attn_grad_norm"],
            "mlp_grad_norm": extra["mlp_grad_norm"],
            "attn_entropy": extra["attn_entropy"],
            "attn_entropy_uniform": extra["attn_entropy_uniform"],
            "stream_var_low": envelope[0],
            "stream_var_high": envelope[1],
        }

    def data_columns(self, spec: NetworkSpec, seed: int) -> pd.DataFrame:
        return classifier_gradient_norms(spec, seed, CLASSIFIER_BATCH).rename(
            columns={"block": "layer"})

    def predict(self, spec, input_second_moment, output_grad_var):
        return stream_envelope(spec, input_second_moment)

    def advice(self, profile, kind: str) -> str | None:
        """Where the signal explodes or vanishes: what a transformer's scheme sets (how much each
        block adds, how sharp its attention is), with the measured attention entropy."""
        if kind not in ("exploding", "vanishing"):
            return None
        spec, layers = profile.spec, profile.layers
        entropy, uniform = layers["attn_entropy"].mean(), layers["attn_entropy_uniform"].iloc[0]
        return (f"A transformer's LayerNorms hold each sublayer's input at unit variance, so the "
                f"scheme sets how much each block adds to the stream and how sharp its "
                f"attention is: here the attention entropy averages {entropy:.3g} nats, of "
                f"{uniform:.3g} for uniform attention over {spec.option('seq_len')} tokens (large "
                f"weights make it peaked, tiny ones uniform). GPT-2's init, normal(std=0.02) "
                f"with residual scaled, keeps both small (Radford et al. 2019).")

    def code(self, spec: NetworkSpec, seed: int) -> list[str]:
        # codegen imports the probe, which imports this package: imported when first used.
        from initviz.codegen import init_fn_code, model_comments, source_of

        d, ln, residual = spec.sizes[0], spec.option("ln"), spec.option("residual")
        act = f"nn.{spec.resolved_activation.module.__name__}"
        return [
            *model_comments(spec, f"a transformer of {spec.depth} {ln.capitalize()}-LN blocks, "
                            f"d_model {d}, {spec.option('heads')} heads, {residual} residual "
                            "init"),
            *source_of(TokenEmbedding, SelfAttention, TransformerBlock, PooledHead,
                       TransformerStack, transformer_init_),
            f"input_dim, seq_len, d_model, depth = {spec.input_dim}, {spec.option('seq_len')}, "
            f"{d}, {spec.depth}",
            "model = TransformerStack(input_dim, d_model, seq_len, depth, lambda: "
            f"TransformerBlock(d_model, {spec.option('heads')}, {act}, {ln!r}))",
            "",
            *init_fn_code(spec, seed),
            f"transformer_init_(model, {residual!r}, g)",
        ]

    # The embedding (the stem), then each block, as for the residual MLP.
    measure_code = Residual.measure_code


__all__ = ["MAX_BLOCKS", "POSITION_STD", "PooledHead", "SelfAttention", "TokenEmbedding",
           "Transformer", "TransformerBlock", "TransformerPrediction", "TransformerStack",
           "attention_entropy", "classifier_gradient_norms", "stream_envelope", "transformer_init_"]
