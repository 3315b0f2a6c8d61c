"""Presets: the classic results of the initialization literature, each one a set of controls.

A preset's ``values`` are keyed by the page's widget keys (docs/DESIGN.md), plus ``SCHEME.PARAM``
for a scheme parameter, so choosing a preset is nothing more than setting those controls; every
value can still be changed afterwards, and the URL shows them like any other choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


SECTIONS = ("Weights", "Signal", "Training", "Theory", "Code")
"""The page's sections (its tabs), in the order of the page; the link names the open one as
``?section=NAME``."""


@dataclass(frozen=True)
class Preset:
    """One classic result: the controls that show it, and the story they tell.

    ``section`` is the page section whose chart tells the story: the one a preset's link opens.
    """

    name: str
    title: str
    story: str
    values: dict = field(default_factory=dict, hash=False)
    section: str = "Signal"

    def __post_init__(self):
        if self.section not in SECTIONS:
            raise ValueError(f"{self.name}: no section {self.section!r} (one of {SECTIONS})")


def _normal_c(c: float, width: int = 256) -> float:
    """std of N(0, c/n) for fan_in n."""
    return round(math.sqrt(c / width), 6)


def _tanh_normal(c: float) -> dict:
    """A 10-layer tanh net of width 256 with weights N(0, c/n), beside LeCun normal (c = 1)."""
    return {"width": 256, "depth": 10, "activation": "tanh", "scheme": "normal",
            "normal.mean": 0.0, "normal.std": _normal_c(c),
            "compare": ["normal", "lecun_normal"], "bias": "zeros", "norm": "none"}


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "he2015", "He et al. 2015: a 30-layer ReLU net, Kaiming vs Xavier",
        "ReLU zeroes half its inputs, so Xavier's variance 1/fan_avg halves E[x²] at every "
        "layer: from layer 1 to layer 30 the signal's std falls by 2^−14.5 ≈ 4·10⁻⁵, the "
        "gradients' by as much, and He et al.'s 30-layer Xavier net does not learn. Kaiming's "
        "2/fan_in makes up for the half exactly (χ₁ = 1), and the same net trains. (He, Zhang, "
        "Ren & Sun 2015, Delving Deep into Rectifiers, Fig. 3.)",
        {"width": 256, "depth": 30, "activation": "relu", "scheme": "kaiming_normal",
         "compare": ["kaiming_normal", "xavier_normal"], "bias": "zeros", "norm": "none",
         "dataset": "digits", "optimizer": "sgd", "lr": 0.02, "steps": 300},
    ),
    Preset(
        "glorot2010", "Glorot & Bengio 2010: tanh with U(±1/√n) vs normalized init",
        "The then-standard U(−1/√n, 1/√n) has variance 1/(3n): with tanh χ₁ = 1/3, so the "
        "activations and the back-propagated gradients shrink by a factor at every layer, their "
        "std to about 0.65% over these 10 layers. The normalized (Xavier) init, variance "
        "2/(fan_in + fan_out), puts tanh at χ₁ = 1: both still shrink, but only about as "
        "1/√layer, to about 45% over 10 layers. (Glorot & Bengio 2010, Understanding the "
        "difficulty of training deep feedforward neural networks, Figs. 6–7.)",
        {"width": 256, "depth": 10, "activation": "tanh", "scheme": "xavier_uniform",
         "compare": ["xavier_uniform", "pytorch_default"], "bias": "zeros", "norm": "none"},
    ),
    Preset(
        "pytorch_default", "PyTorch's default nn.Linear init in a deep ReLU stack",
        "nn.Linear initializes itself with kaiming_uniform(a=√5) = U(±1/√fan_in): variance "
        "1/(3·fan_in), a third of what ReLU needs, so each layer scales E[x²] by 1/6. Its bias, "
        "also U(±1/√fan_in), puts a floor under the forward signal: the activations settle at a "
        "std of about 0.02 within five layers. The gradients have no such floor: they shrink by "
        "6 per layer in variance, 6¹⁹ ≈ 6·10¹⁴ from layer 20 back to layer 1, a std of 4·10⁻⁸. "
        "(torch.nn.Linear.reset_parameters; He et al. 2015.)",
        {"width": 256, "depth": 20, "activation": "relu", "scheme": "pytorch_default",
         "compare": ["pytorch_default", "kaiming_uniform"], "bias": "pytorch_default",
         "norm": "none"},
    ),
    Preset(
        "zeros", "All zeros: symmetry never breaks",
        "With every weight 0, every unit of a layer computes the same output and receives the "
        "same gradient, so they stay identical forever: the network never learns more than a "
        "single unit per layer could, and here not even that. Any random init breaks the "
        "symmetry. (Goodfellow, Bengio & Courville 2016, Deep Learning, §8.4.)",
        {"width": 64, "depth": 3, "activation": "tanh", "scheme": "zeros",
         "compare": ["zeros", "xavier_normal"], "bias": "zeros", "norm": "none",
         "dataset": "digits", "optimizer": "sgd", "lr": 0.1, "steps": 200},
        section="Training",
    ),
    Preset(
        "small_weights", "Too small: N(0, 0.01/n) with tanh",
        "With Var(W) = c/n and c = 0.01, each tanh layer multiplies the variance by about c: the "
        "signal's std falls by √c = 0.1 per layer, 10⁻⁹ over these 10 layers, and the gradients' "
        "with it. Compare c = 1 (LeCun normal, healthy) and c = 10 (exploding gradients). "
        "(LeCun et al. 1998, Efficient BackProp; Poole et al. 2016.)",
        _tanh_normal(0.01),
    ),
    Preset(
        "large_weights", "Too large: N(0, 10/n) with tanh",
        "With c = 10 the pre-activations settle at a std of √q* ≈ 2.7, past tanh's bend: about "
        "43% of the units sit on a flat tail (|tanh| > 0.97). The gradients still do not vanish: "
        "the weights are large enough that the units on the slope amplify them, χ₁ = 1.94 per "
        "layer in variance, about ×20 in std over these 10 layers. That is the chaotic phase: "
        "two nearby inputs are pulled apart until they are uncorrelated (c* = 0), over about "
        "ξ_c = 4.4 layers, and such a net trains to about 6 ξ_c ≈ 27 layers. (Poole et al. 2016, "
        "Exponential expressivity in deep neural networks through transient chaos; Schoenholz "
        "et al. 2017, Deep Information Propagation.)",
        _tanh_normal(10.0),
    ),
    Preset(
        "selu", "SELU + LeCun normal: self-normalizing",
        "With weights of variance 1/fan_in, SELU's λ and α are chosen so that mean 0 and "
        "variance 1 is an attracting fixed point: activations settle there by themselves, layer "
        "after layer, without batch norm. The gradients are not held: that point is slightly "
        "chaotic (χ₁ = 1.07), so they grow by about 5× in std over these 50 layers. Kaiming's "
        "variance 2/fan_in leaves SELU no fixed point at all: the variance grows ×1.10 per "
        "layer, the activations' std to about 34 and the gradients' ×150, and that run blows up "
        "as soon as it trains. (Klambauer, Unterthiner, Mayr & Hochreiter 2017, Self-Normalizing "
        "Neural Networks; Philipp, Song & Carbonell 2018.)",
        {"width": 256, "depth": 50, "activation": "selu", "scheme": "lecun_normal",
         "compare": ["lecun_normal", "kaiming_normal"], "bias": "zeros", "norm": "none",
         # 50 layers: one seed per scheme keeps the race in the memory budget, and at the
         # default lr 0.05 even LeCun's run diverges. At 0.01 it reaches ~93% on digits in 200
         # steps while Kaiming's (σ_w² = 2, chaotic for SELU) diverges within 5 (measured).
         "dataset": "digits", "optimizer": "sgd", "lr": 0.01, "steps": 200, "seeds": 1},
    ),
    Preset(
        "orthogonal_linear", "Orthogonal weights in a deep linear net",
        "A deep linear network is a product of matrices. Gaussian matrices spread the singular "
        "values of the product more with every layer: after these 50 layers about a third of "
        "the 128 input directions are lost (their singular values fall below float64's "
        "precision). Orthogonal ones keep every singular value at 1 (here to within 1e-5, the "
        "rounding of weights drawn in float32), so every direction of the signal passes "
        "through unchanged (dynamical isometry). (Saxe, McClelland & Ganguli 2013, Exact "
        "solutions to the nonlinear dynamics of learning in deep linear neural networks.)",
        {"width": 128, "depth": 50, "input_dim": 128, "activation": "linear",
         "scheme": "orthogonal", "compare": ["orthogonal", "lecun_normal"], "bias": "zeros",
         "norm": "none"},
        section="Theory",
    ),
    Preset(
        "isometry", "Dynamical isometry: tanh at criticality, orthogonal vs Gaussian",
        "At σ_w² = 1, σ_b² = 0 a tanh network sits on the edge of chaos: χ₁ = 1 at its fixed "
        "point q* = 0, the small-q* end of the critical line where Pennington et al. find "
        "dynamical isometry. The shape of the input–output Jacobian's spectrum depends on the "
        "weights there: with orthogonal ones the std/mean of s² stays near 1.2, with Gaussian "
        "(Xavier) ones it is about 6, and about a fifth of the 128 input directions are lost "
        "below float64's precision. Neither is an isometry on this page, though: the probe "
        "input has variance 1, far above q*, and with σ_b² = 0 the signal fades towards q* "
        "(its variance like 1/(2l)), so every s shrinks together (mean s² ≈ 0.02 after 32 "
        "layers) and the smallest orthogonal s is still hundreds to thousands of times below "
        "the largest. (Pennington, Schoenholz & Ganguli 2017, Resurrecting the sigmoid in deep "
        "learning through dynamical isometry, who start the input at q*.)",
        {"width": 128, "depth": 32, "input_dim": 128, "activation": "tanh",
         "scheme": "orthogonal", "orthogonal.gain": 1.0,
         "compare": ["orthogonal", "xavier_normal"], "bias": "zeros", "norm": "none"},
        section="Theory",
    ),
)}


__all__ = ["PRESETS", "Preset", "SECTIONS"]
