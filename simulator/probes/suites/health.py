"""The health suite: how hard each step pushed the weights, recorded with every step of a method that
changes weights. It has no items to build from: the replay computes it from the step's own deltas and
solve (``simulator/telemetry.py``). Its metric names live here so that the registry, ``--stop-when``
and the telemetry agree on them."""
from __future__ import annotations

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
