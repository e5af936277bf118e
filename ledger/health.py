"""The health telemetry's vocabulary and its outlier rule, over recorded values only.

The replay records, with every step of a method that changes weights, probe records of the suite
``health``: how hard the step pushed the weights (``simulator/telemetry.py`` computes them, with
torch). This module is pure arithmetic over the recorded numbers, so that everyone who flags a
step reads the same rule from the ledger alone, like ``ledger.values``: the audit, the report,
``editledger log`` and the TUI's timeline.

Outliers. Each step gives five features, in log space: three outcomes (``delta_rel``, ``cond_step``,
``ppl_step``: what the step did) and two causes (``key_norm`` and 1/``denominator``: why an update
may blow up). A feature's robust z-score against other steps is (x − median) / (1.4826 · MAD), the
scale floored at ``scale_floor`` (a run of near-identical steps does not turn a small difference
into a large z). A step whose largest *outcome* z exceeds ``z_threshold`` (3.5, Iglewicz and
Hoaglin's cut-off for the modified z-score) is a possible disabling edit; the causes' z-scores are
kept as its explanation but flag nothing on their own (on tiny-gptj a clean ROME run's denominators
spread over a factor 18, and a small one is not harmful by itself). The replay scores each step
against the steps before it (``outlier_z``, from the sixth step on); ``flag_outliers`` scores every
step against all the others (the audit and the report), which also covers the first steps.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

NAME = "health"

# metric -> what it is (per step; per-matrix numbers are the maximum over the tensors the step changed)
METRICS: dict[str, str] = {
    "delta_norm": "‖Δ‖_F of the step (root-sum-square over its tensors)",
    "delta_rel": "‖Δ‖_F / ‖W₀‖_F (W₀: the base tensor)",
    "drift": "‖W − W₀‖_F / ‖W₀‖_F, cumulative",
    "weight_norm_ratio": "‖W‖_F / ‖W₀‖_F",
    "cond": "κ₂(W), the edited matrix's condition number",
    "cond_ratio": "κ₂(W) / κ₂(W₀)",
    "cond_step": "κ₂(W) / κ₂(W before the step)",
    "key_norm": "the largest key the update was solved for (ROME, MEMIT and their kin)",
    "denominator": "the smallest (C⁻¹k)ᵀk of the solve (small: close to singular)",
    "solve_cos": "the smallest cos(C⁻¹k, k) of a rank-one solve",
    "ppl": "perplexity of a small fixed text (the collapse proxy)",
    "ppl_ratio": "ppl / ppl of the base model",
    "ppl_step": "ppl / ppl of the version before the step",
    "outlier_z": "the largest robust z-score of the step's outcomes against the run so far",
}

# Outlier features: (metric, direction): the log of the recorded value, negated when small is bad.
FEATURES: tuple[tuple[str, int], ...] = (
    ("delta_rel", 1), ("cond_step", 1), ("ppl_step", 1), ("key_norm", 1), ("denominator", -1))
OUTCOMES = ("delta_rel", "cond_step", "ppl_step")      # the features that flag a step
FEATURE_WORDS = {"delta_rel": "update size", "cond_step": "condition-number jump", "ppl_step": "perplexity jump",
                 "key_norm": "key norm", "denominator": "solve denominator (small)"}


@dataclass(frozen=True)
class OutlierRule:
    z_threshold: float = 3.5        # robust z above which a step is flagged
    min_history: int = 5            # other steps needed before a step's z is computed
    scale_floor: float = 0.25       # floor of the robust scale, in log units (a factor 1.28)


def robust_z(history: Sequence[float], x: float, floor: float) -> float:
    """(x − median) / max(1.4826 · MAD, floor) of ``history`` (1.4826 · MAD estimates σ for a normal)."""
    med = statistics.median(history)
    mad = statistics.median(abs(h - med) for h in history)
    return (x - med) / max(1.4826 * mad, floor)


def features(values: dict[str, float]) -> dict[str, float]:
    """The outlier features of one step's health values (log space, bad direction positive)."""
    out = {}
    for name, sign in FEATURES:
        v = values.get(name)
        if v is not None and math.isfinite(v) and v > 0:
            out[name] = sign * math.log(v)
    return out


def step_z(history: Sequence[dict[str, float]], values: dict[str, float], rule: Any = OutlierRule()) -> dict[str, float]:
    """Robust z of each feature of ``values`` against the same feature over ``history`` (dicts of
    health values of other steps); a feature with fewer than ``min_history`` points is left out.
    ``rule``: anything with OutlierRule's fields (the telemetry's HealthConfig has them)."""
    now = features(values)
    past = [features(h) for h in history]
    z = {}
    for name, x in now.items():
        hist = [p[name] for p in past if name in p]
        if len(hist) >= rule.min_history:
            z[name] = robust_z(hist, x, rule.scale_floor)
    return z


def flag_outliers(per_step: Sequence[tuple[Any, dict[str, float]]], rule: Any = OutlierRule()
                  ) -> list[tuple[Any, dict[str, float]]]:
    """Against the whole run: for each (key, health values) the z of each feature against all the
    other steps; returns [(key, z)] of the steps whose largest outcome z exceeds the threshold, worst first."""
    out = []
    for i, (key, vals) in enumerate(per_step):
        others = [v for j, (_, v) in enumerate(per_step) if j != i]
        z = step_z(others, vals, rule)
        if outcome_z(z) > rule.z_threshold:
            out.append((key, z))
    return sorted(out, key=lambda kz: -outcome_z(kz[1]))


def outcome_z(z: dict[str, float]) -> float:
    """The largest z among the outcome features (-inf when none was computed)."""
    return max((v for k, v in z.items() if k in OUTCOMES), default=float("-inf"))


def describe_z(z: dict[str, float], threshold: float) -> str:
    """"update size z=12.3, perplexity jump z=5.1" for the features above the threshold (causes too)."""
    parts = [f"{FEATURE_WORDS.get(k, k)} z={v:.1f}" for k, v in sorted(z.items(), key=lambda kv: -kv[1])
             if v > threshold]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- from a ledger
def recorded(ledger, run_id: int, metrics: Sequence[str] | None = None) -> dict[int, tuple[int, dict[str, float]]]:
    """version id -> (step, {metric: value}) of the run's health records (plain values); only
    ``metrics`` when given (one indexed query per metric)."""
    names = metrics if metrics is not None else [m for s, m in ledger.metrics(run_id) if s == NAME]
    out: dict[int, tuple[int, dict[str, float]]] = {}
    for metric in names:
        for vid, step, against, value in ledger.metric_values(run_id, NAME, metric):
            if against == "none":
                out.setdefault(vid, (step, {}))[1][metric] = float(value)
    return out


def flagged(ledger, run_id: int, rule: Any = OutlierRule()) -> dict[int, dict[str, float]]:
    """version id -> feature z-scores of the run's steps whose outcome is an outlier against the
    run's other steps (``flag_outliers``), read from the ledger alone."""
    per = recorded(ledger, run_id, [name for name, _ in FEATURES])
    return dict(flag_outliers([(vid, vals) for vid, (_step, vals) in sorted(per.items(), key=lambda kv: kv[1][0])],
                              rule))
