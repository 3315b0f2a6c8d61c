"""The exported PyTorch code reproduces initviz's network exactly, weights and statistics."""

import contextlib
import io

import pytest
import torch

from initviz import NetworkSpec, build_model, profile
from initviz.codegen import pytorch_code


def _run(code: str) -> tuple[dict, list[str]]:
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<initviz export>", "exec"), namespace)
    return namespace, out.getvalue().splitlines()


@pytest.mark.parametrize("spec", [
    NetworkSpec.stack(48, 4, activation="relu", scheme="kaiming_normal"),
    NetworkSpec.stack(32, 3, activation="tanh", scheme="xavier_uniform", bias="pytorch_default"),
    NetworkSpec(sizes=(24, 40, 16), activation="gelu", scheme="lsuv", norm="layernorm"),
    NetworkSpec.stack(32, 3, activation="selu", scheme="sparse", bias="normal",
                      norm="batchnorm"),
    NetworkSpec.stack(16, 2, activation="linear", scheme="pytorch_default"),
    *[NetworkSpec.stack(24, 5, input_dim=12, activation="tanh", scheme="orthogonal",
                        bias="normal", arch="residual", arch_params={"residual": init})
      for init in ("plain", "scaled", "fixup", "rezero")],
    NetworkSpec.stack(16, 3, activation="relu", scheme="kaiming_uniform", norm="layernorm",
                      arch="residual", arch_params={"residual": "fixup"}),
    *[NetworkSpec.stack(32, 3, input_dim=6, activation="gelu", scheme=scheme, bias="normal",
                        arch="transformer", arch_params={"ln": ln, "residual": residual,
                                                         "heads": 2, "seq_len": 5})
      for scheme, ln, residual in (("normal", "pre", "scaled"),
                                   ("xavier_uniform", "post", "plain"))],
    NetworkSpec.stack(8, 3, input_dim=2, activation="tanh", scheme="delta_orthogonal",
                      bias="pytorch_default", arch="conv",
                      arch_params={"kernel": 5, "padding": "circular", "image_size": 6}),
    NetworkSpec.stack(8, 3, input_dim=3, scheme="lsuv", norm="layernorm", arch="conv"),
    NetworkSpec.stack(8, 2, input_dim=3, scheme="dirac", norm="batchnorm", arch="conv"),
    NetworkSpec.stack(8, 3, input_dim=3, scheme="kaiming_normal", scheme_params={"mode": "fan_out"},
                      arch="conv"),
    NetworkSpec.stack(16, 6, input_dim=3, activation="tanh", scheme="orthogonal",
                      bias="pytorch_default", arch="rnn"),
    NetworkSpec.stack(16, 5, input_dim=1, activation="relu", scheme="eye", arch="rnn"),
    NetworkSpec.stack(12, 5, input_dim=4, activation="tanh", scheme="sparse", bias="normal",
                      arch="lstm", arch_params={"forget_bias": 1.0}),
], ids=["kaiming", "xavier+default-bias", "lsuv+layernorm", "sparse+batchnorm", "default",
        "residual-plain", "residual-scaled", "residual-fixup", "residual-rezero",
        "residual-fixup+layernorm", "transformer-pre-scaled", "transformer-post-plain",
        "conv-delta-orthogonal+default-bias", "conv-lsuv+layernorm",
        "conv-dirac+batchnorm", "conv-kaiming-fan-out",
        "rnn-orthogonal+default-bias", "rnn-eye", "lstm-sparse"])
def test_exported_code_builds_the_same_weights_and_prints_the_same_statistics(spec):
    seed, batch = 7, 32
    namespace, printed = _run(pytorch_code(spec, seed=seed, batch=batch))
    # The export names its modules by position (initviz names them), so compare in order.
    # Parameters only: its measuring pass updates batch norm's running statistics.
    ours = list(build_model(spec, seed).parameters())
    theirs = list(namespace["model"].parameters())
    assert len(ours) == len(theirs)
    for mine, exported in zip(ours, theirs):
        assert torch.equal(mine, exported)
    measured = profile(spec, batch=batch, seed=seed).layers["act_std"]
    assert len(printed) == spec.depth
    for line, expected in zip(printed, measured):
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(expected, rel=1e-3)


def test_exported_code_uses_torch_nn_init_and_cites_the_paper():
    code = pytorch_code(NetworkSpec.stack(16, 2, scheme="orthogonal"))
    assert "nn.init.orthogonal_(m.weight, gain=1.0, generator=g)" in code
    assert "Saxe" in code
    assert "model.apply(init_fn)" in code


def test_exported_residual_code_copies_the_blocks_and_the_residual_init():
    code = pytorch_code(NetworkSpec.stack(16, 4, arch="residual",
                                          arch_params={"residual": "fixup"}))
    assert "class ResidualBlock(nn.Module):" in code
    assert "residual_init_(model, 'fixup')" in code
    assert "import initviz" not in code


def test_exported_transformer_code_copies_the_attention_and_the_gpt2_init():
    code = pytorch_code(NetworkSpec.stack(16, 4, arch="transformer",
                                          arch_params={"residual": "scaled"}))
    assert "class SelfAttention(nn.Module):" in code
    assert "transformer_init_(model, 'scaled', g)" in code


def test_exported_recurrent_code_copies_the_cell_and_inits_w_per_gate():
    code = pytorch_code(NetworkSpec.stack(16, 4, arch="lstm", scheme="orthogonal",
                                          arch_params={"forget_bias": 1}))
    assert "class LSTMCell(nn.Module):" in code
    assert "nn.init.orthogonal_(w, gain=1.0, generator=g)" in code
    assert "init_recurrent_(model, init_weight, init_bias, init_input, 1.0)" in code
    assert "import initviz" not in code
