"""Norms of stored deltas and of their sums, in float64 with numpy (no torch).

The one place that turns stored factors into weight-space sizes: the simulator's
``TensorDelta.norm`` (recorded with every delta), the TUI's diff of two versions and the audit's
telemetry all call it. Applying a delta to weights is a different job (bit-exact, torch) and
lives in ``simulator/deltas.py``.

Factor layout (see ``simulator/deltas.py``): ``low_rank`` holds ``u`` (dim 0, r) and ``v`` (dim 1,
r) with ΔW = u vᵀ; ``dense`` holds ``delta``; ``sparse`` holds flat ``indices`` and ``values``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

WEIGHT_KINDS = ("low_rank", "dense", "sparse")


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def delta_norm(kind: str, factors: Mapping[str, np.ndarray]) -> float:
    """‖ΔW‖_F of one stored delta. A low-rank delta never forms ΔW: ‖U Vᵀ‖² = Σ (UᵀU ∘ VᵀV)."""
    if kind == "low_rank":
        u, v = _f64(factors["u"]), _f64(factors["v"])
        return float(np.sqrt(max(0.0, float(((u.T @ u) * (v.T @ v)).sum()))))
    if kind == "dense":
        return float(np.linalg.norm(_f64(factors["delta"]).ravel()))
    if kind == "sparse":
        return _sparse_norm(factors)
    # method state and other payloads: the root of the summed squares of its tensors
    return float(np.sqrt(sum(float((_f64(t) ** 2).sum()) for t in factors.values())))


def _sparse_norm(factors: Mapping[str, np.ndarray]) -> float:
    """Indices may repeat (two neurons' updates landing on one weight): sum per index first."""
    idx = np.asarray(factors["indices"], dtype=np.int64).ravel()
    val = _f64(factors["values"]).ravel()
    uniq, inv = np.unique(idx, return_inverse=True)
    summed = np.zeros(len(uniq), dtype=np.float64)
    np.add.at(summed, inv, val)
    return float(np.linalg.norm(summed))


def sum_norm(parts: Sequence[tuple[float, str, Mapping[str, np.ndarray]]], shape: Sequence[int]) -> float | None:
    """‖Σ sign·ΔW‖_F over ``parts`` = [(sign, kind, factors)] of deltas to one tensor of ``shape``.
    Low-rank parts stay factored unless a dense or sparse part forces the full matrix. None when a
    part is not a weight delta (method state has no weight-space norm)."""
    if not parts:
        return 0.0
    us, vs, dense = [], [], None
    for sign, kind, f in parts:
        if kind == "low_rank" and len(shape) == 2:
            us.append(sign * _f64(f["u"]))
            vs.append(_f64(f["v"]))
        elif kind == "dense":
            dense = (0.0 if dense is None else dense) + sign * _f64(f["delta"])
        elif kind == "sparse":
            flat = np.zeros(int(np.prod(shape)), dtype=np.float64)
            np.add.at(flat, np.asarray(f["indices"], dtype=np.int64).ravel(), _f64(f["values"]).ravel())
            dense = (0.0 if dense is None else dense) + sign * flat.reshape(tuple(shape))
        else:
            return None
    if dense is None:
        u, v = np.concatenate(us, axis=1), np.concatenate(vs, axis=1)
        return delta_norm("low_rank", {"u": u, "v": v})
    for u, v in zip(us, vs):
        dense = dense + u @ v.T
    return float(np.linalg.norm(np.ravel(dense)))
