"""Reading a profile: the plain-words verdict, and the tidy tables the charts draw.

The verdict's thresholds are deliberately coarse, because they must hold for every activation:
a factor of 10 in activation std across the network (100 in variance) is vanishing or exploding;
more than half the units on a flat tail is saturated; more than half of them off (outputting
nothing) for every input of the batch is dead. Everything in between is healthy, with the
numbers shown so a reader can judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from initviz.activations import get_activation
from initviz.probe import Profile
from initviz.text import short_number, span

SIGNAL_FACTOR = 10.0
SATURATED_SHARE = 0.5
DEAD_SHARE = 0.5
DEAD_MIN_BATCH = 16
"""Fewer inputs cannot tell a dead unit from an unlucky one: a healthy ReLU unit is off for one
input in two, so for all of B independent inputs with probability 2^-B (1/2 at a batch of 1)."""
VERDICTS = ("healthy", "vanishing", "exploding", "saturated", "dead")

# Schemes of the same family as the recommended one count as following the recommendation.
_FAMILIES = {
    "xavier_normal": {"xavier_normal", "xavier_uniform"},
    "kaiming_normal": {"kaiming_normal", "kaiming_uniform"},
    "lecun_normal": {"lecun_normal", "lecun_uniform"},
    "orthogonal": {"orthogonal", "lsuv"},
}


@dataclass(frozen=True)
class Verdict:
    kind: str
    headline: str
    details: tuple[str, ...]
    recommended_scheme: str
    recommendation: str


def _last_finite(series: pd.Series) -> tuple[int, float] | None:
    finite = series.dropna()
    if finite.empty:
        return None
    return int(finite.index[-1]) + 1, float(finite.iloc[-1])


def verdict(profile: Profile) -> Verdict:
    """Classify the network's signal as healthy, vanishing, exploding, saturated or dead.

    The first finding wins, in this order: values that overflow, dead units, saturated units (in
    the last layer), then a change of the activation std by more than :data:`SIGNAL_FACTOR` from
    layer 1 to the last, then the same for the gradient std going backward.

    Args:
        profile: what :func:`initviz.probe.profile` measured.

    Returns:
        A :class:`Verdict`: its ``kind`` (one of :data:`VERDICTS`), a one-sentence ``headline``
        with the numbers that justify it, ``details``, and the scheme recommended for the
        activation with the reason.

    Example::

        >>> verdict(profile(NetworkSpec.stack(256, 20, scheme="xavier_normal"))).kind
        'vanishing'
    """
    layers = profile.layers
    depth, entry = profile.spec.depth, profile.spec.architecture.entry
    activation = profile.spec.resolved_activation
    grad_in, grad_out = layers["grad_std"].iloc[0], layers["grad_std"].iloc[-1]
    found = _forward_finding(profile, activation)
    if found is None and grad_out > 0 and math.isfinite(grad_in):
        found = trend_finding("gradient std", " gradients", grad_out, f"{entry} {depth}", grad_in,
                              f"{entry} 1", " going backward")
    kind, headline = found or ("healthy", healthy_headline(
        layers["act_std"], layers["grad_std"], entry, profile.spec.architecture.output))
    return Verdict(kind, headline, _symmetry_details(layers), activation.recommended_scheme,
                   recommendation(profile, kind))


def _symmetry_details(layers: pd.DataFrame) -> tuple[str, ...]:
    if (layers["weight_std"].fillna(0) == 0).all():
        return ("Every weight in a layer is equal, so every unit computes the same thing and "
                "receives the same gradient: symmetry never breaks, and the layer acts like a "
                "single unit however wide it is.",)
    return ()


def _forward_finding(profile: Profile, activation) -> tuple[str, str] | None:
    """Overflow, dead or saturated units in the last layer, or an activation std that vanishes
    or explodes; None where the forward pass shows none of these."""
    layers = profile.layers
    depth, entry = profile.spec.depth, profile.spec.architecture.entry
    act_first, act_last = float(layers["act_std"].iloc[0]), _last_finite(layers["act_std"])
    grad_in, grad_out = layers["grad_std"].iloc[0], layers["grad_std"].iloc[-1]
    sat, dead = layers["saturated_frac"].iloc[-1], layers["dead_frac"].iloc[-1]
    if profile.first_nonfinite_layer is not None:
        what = "activations" if profile.nonfinite_pass == "forward" else "gradients"
        return "exploding", (f"Exploding: {what} overflow to inf/NaN at {entry} "
                             f"{profile.first_nonfinite_layer} of {depth}.")
    if (not math.isnan(dead) and dead > DEAD_SHARE and profile.batch >= DEAD_MIN_BATCH
            or act_last is not None and act_last[1] == 0):
        share = dead if not math.isnan(dead) else 1.0
        return "dead", (f"Dead units: {share:.0%} of the units of {entry} {depth} output nothing "
                        f"for any of the {profile.batch} inputs (activation std "
                        f"{short_number(act_last[1] if act_last else 0.0)}).")
    if not math.isnan(sat) and sat > SATURATED_SHARE:
        low, high = activation.saturated_outside
        headline = (f"Saturated: {sat:.0%} of the units of {entry} {depth} sit on a flat tail of "
                    f"{activation.name} (pre-activation outside [{low:.2f}, {high:.2f}]), where "
                    f"its slope is nearly 0.")
        if grad_out > 0 and grad_in / grad_out > SIGNAL_FACTOR:
            # weights large enough to saturate most units multiply the gradient through the rest
            headline += (f" The gradients still grow going backward, from "
                         f"{short_number(grad_out)} ({entry} {depth}) to {short_number(grad_in)} "
                         f"({entry} 1): the weights are large enough that the units left on the "
                         f"slope amplify them.")
        return "saturated", headline
    if act_last is None:
        return None
    return trend_finding(f"{profile.spec.architecture.output} std", "", act_first, f"{entry} 1",
                         act_last[1], f"{entry} {act_last[0]}")


def trend_finding(what: str, noun: str, start: float, at: str, end: float, to: str,
                  direction: str = "") -> tuple[str, str] | None:
    """A vanishing or exploding verdict where ``what`` changes by more than SIGNAL_FACTOR from
    ``start`` (at ``at``) to ``end`` (at ``to``); None where it does not, or starts at 0."""
    if not start > 0:
        return None
    ratio = end / start
    trend = (f"{what} {'falls' if ratio < 1 else 'grows'} from {short_number(start)} ({at}) to "
             f"{short_number(end)} ({to}){direction}")
    if ratio < 1 / SIGNAL_FACTOR:
        return "vanishing", f"Vanishing{noun}: {trend}."
    if ratio > SIGNAL_FACTOR:
        return "exploding", f"Exploding{noun}: {trend}."
    return None


def healthy_headline(acts, grads, entry: str = "layer", output: str = "activation") -> str:
    """The healthy verdict's sentence over per-entry output (activation) and gradient stds."""
    return (f"Healthy: {output} std stays {span(acts.min(), acts.max())} over {len(acts)} "
            f"{entry}s, and gradient std {span(grads.min(), grads.max())}.")


def recommendation(profile: Profile, kind: str) -> str:
    """The scheme the mean-field numbers support for the activation, and why; never the chosen
    scheme as the fix for what the verdict found."""
    spec = profile.spec
    advice = spec.architecture.advice(profile, kind)
    if advice is not None:
        return advice
    activation = spec.resolved_activation
    recommended = activation.recommended_scheme
    wanted = dict(activation.recommended_params)
    named = recommended + "".join(f" with {key} {value:.3g}" for key, value in wanted.items())
    if spec.norm != "none":
        return _with_norm(profile, kind)
    if activation.instead is not None:
        return (f"For {activation.name}, no initialization keeps a deep stack trainable; use "
                f"{activation.instead} with {named}: {activation.why}")
    chosen = spec.scheme in _FAMILIES.get(recommended, {recommended}) and all(
        math.isclose(float(dict(spec.scheme_params).get(key, math.nan)), value, rel_tol=0.01)
        for key, value in wanted.items())
    if not chosen:
        return f"For {activation.name}, the usual choice is {named}: {activation.why}"
    if kind == "healthy":
        return f"{spec.scheme} is the usual choice for {activation.name}: {activation.why}"
    return (f"{spec.scheme} is already the usual choice for {activation.name}, so another scheme "
            f"is not the fix; look at the depth, the widths, the bias or the input. "
            f"{activation.why}")


def _with_norm(profile: Profile, kind: str) -> str:
    """What a norm layer does to the statistics the verdict read, and what follows from it."""
    spec = profile.spec
    preact = profile.layers["preact_std"]
    measured = span(preact.min(), preact.max()).removeprefix("at ")
    text = (f"With {spec.norm} after every Linear layer, each layer's pre-activations are rescaled "
            f"to std 1 whatever the weights' scale (measured: {measured}, layer by layer): the "
            f"scheme's scale divides out, so another scheme would not change these statistics.")
    grads = profile.layers["grad_std"]
    if spec.norm == "batchnorm" and kind == "exploding" and grads.iloc[0] > grads.iloc[-1]:
        text += (" Batch norm itself makes gradients grow with depth at initialization (Yang, "
                 "Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, A Mean Field Theory of "
                 "Batch Normalization): fewer layers, layer norm or residual connections help, "
                 "not another initialization.")
    return text


# --------------------------------------------------------------------------------------------------
# Tidy frames for the charts

_THEORY = {
    "act_std": lambda p: np.sqrt(np.asarray(p.act_var, dtype=float)),
    "preact_std": lambda p: np.sqrt(np.asarray(p.preact_var, dtype=float)),
    "grad_std": lambda p: np.sqrt(np.asarray(p.grad_var, dtype=float)),
}


def _long_table(label: str, parts: list[tuple[str, str, np.ndarray, np.ndarray]]
                ) -> pd.DataFrame:
    """``(scheme, label value, layers, values)`` parts stacked into one long table.

    Built from whole columns at once: a DataFrame per part and a concat cost ~50× more (each
    string column is its own Arrow array in pandas 3), several times on every rerun of the page.
    """
    counts = [len(layers) for _, _, layers, _ in parts]
    return pd.DataFrame({
        "layer": np.concatenate([layers for _, _, layers, _ in parts]),
        "scheme": np.repeat([scheme for scheme, _, _, _ in parts], counts),
        label: np.repeat([tag for _, tag, _, _ in parts], counts),
        "value": np.concatenate([np.asarray(values, dtype=float) for *_, values in parts]),
    })


def by_layer_frame(profiles: Mapping[str, Profile], column: str) -> pd.DataFrame:
    """Long table (layer, scheme, source, value) of one per-layer column for several schemes.

    ``source`` is ``measured``, or ``theory`` for the mean-field prediction of that column
    (weights: the scheme's theoretical std) where the theory applies.
    """
    parts = []
    for scheme, prof in profiles.items():
        layer = prof.layers["layer"].to_numpy()
        parts.append((scheme, "measured", layer, prof.layers[column].to_numpy()))
        if column == "weight_std":
            parts.append((scheme, "theory", layer, prof.layers["weight_std_theory"].to_numpy()))
        elif column in _THEORY and prof.prediction is not None:
            parts.append((scheme, "theory", layer, _THEORY[column](prof.prediction)))
    return _long_table("source", parts)


FRACTION_MEASURES = {
    "saturated_frac": "saturated: outputs on a flat tail",
    "zero_frac": "off: outputs at zero",
    "dead_frac": "dead: units off for every input",
}
"""The fractions chart's measures, each named by what it counts (a share of outputs, i.e. of
(input, unit) pairs, or a share of units)."""


def fractions_frame(profiles: Mapping[str, Profile]) -> pd.DataFrame:
    """Long table (layer, scheme, measure, value) of the :data:`FRACTION_MEASURES` per layer."""
    return _long_table("measure", [
        (scheme, measure, prof.layers["layer"].to_numpy(), prof.layers[column].to_numpy())
        for scheme, prof in profiles.items() for column, measure in FRACTION_MEASURES.items()])


def fractions_note(activation: str) -> str:
    """Which measures the fractions chart lacks for ``activation``, and why: no activation has a
    flat tail both at zero output and away from it."""
    act = get_activation(activation)
    if act.saturated_outside is None and act.dead_at_or_below is None:
        slope = {"linear": "is the identity, with slope 1 everywhere",
                 "leaky_relu": "keeps a slope of 0.01 below zero"}.get(
            act.name, "never flattens")
        return (f"Nothing to draw: {act.name} {slope}, so no unit ever sits on a flat stretch "
                f"-- it cannot saturate, and no unit can be off or dead.")
    if act.saturated_outside is None:
        return (f"{act.name} has no flat tail away from zero: it cannot saturate, only be off "
                f"(at zero) or dead.")
    return (f"{act.name} has no flat stretch at zero output: its units can saturate but are "
            f"never off or dead.")


def histogram_of(profile: Profile, kind: str, layer: int | None = None) -> pd.DataFrame:
    rows = profile.histograms["kind"] == kind
    if layer is not None:
        rows &= profile.histograms["layer"] == layer
    return profile.histograms[rows].reset_index(drop=True)


def percentiles_of(profile: Profile, kind: str) -> pd.DataFrame:
    return profile.percentiles[profile.percentiles["kind"] == kind].reset_index(drop=True)


def weight_theory(profile: Profile, layer: int, points: int = 200) -> pd.DataFrame | None:
    """The scheme's theoretical density for one layer, scaled to expected counts per bin.

    None where the scheme has no fixed law (LSUV); a one-row ``point_mass`` table for constants.
    """
    spec = profile.spec
    fan_in, fan_out = spec.fans[layer - 1]
    law = spec.resolved_scheme.weight_law(fan_in, fan_out, spec.scheme_params)
    if law is None:
        return None
    bins = histogram_of(profile, "weight", layer)
    if bins.empty:
        return None
    density_x = np.linspace(bins["bin_lo"].min(), bins["bin_hi"].max(), points)
    pdf = law.pdf(density_x)
    if pdf is None:
        return pd.DataFrame({"point_mass": [law.loc]})
    bin_width = float((bins["bin_hi"] - bins["bin_lo"]).mean())
    return pd.DataFrame({"value": density_x, "expected": pdf * fan_in * fan_out * bin_width})


WEIGHT_TABLE_GAPS = {
    "gain": "the scheme takes no gain",
    "std (theory)": "its weights follow no fixed law (LSUV rescales them to what it measures)",
    "bound (theory)": "its law is not uniform",
}
"""Why a column of :func:`weight_table` can be empty (NaN) for a scheme."""


def weight_table(profile: Profile) -> pd.DataFrame:
    """Per layer: fans, the scheme's gain, its theoretical std and uniform bound -- NaN where the
    scheme has none (:data:`WEIGHT_TABLE_GAPS`) -- and the measured std."""
    spec = profile.spec
    scheme = spec.resolved_scheme
    rows = []
    for layer, (fan_in, fan_out) in enumerate(spec.fans, start=1):
        law = scheme.weight_law(fan_in, fan_out, spec.scheme_params)
        rows.append({
            "layer": layer, "fan_in": fan_in, "fan_out": fan_out,
            "gain": math.nan if law is None else _nan_if_none(scheme.gain(spec.scheme_params)),
            "std (theory)": math.nan if law is None else law.std(),
            "bound (theory)": law.high if law is not None and law.kind == "uniform" else math.nan,
            "std (measured)": float(profile.layers["weight_std"].iloc[layer - 1]),
        })
    return pd.DataFrame(rows)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


__all__ = [
    "FRACTION_MEASURES", "VERDICTS", "Verdict", "WEIGHT_TABLE_GAPS", "by_layer_frame",
    "fractions_frame", "fractions_note", "healthy_headline", "histogram_of", "percentiles_of",
    "recommendation", "trend_finding", "verdict", "weight_table", "weight_theory",
]
