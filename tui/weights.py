"""‖W‖ of a tensor at a version, without the model: from the nearest keyframe on the version's
line (a full copy of the tensor recorded every K steps) plus or minus the deltas in between, in
float64 with numpy. Used for the detail screen's ‖Δ‖/‖W‖ (how big an edit is against the weights
it changed). A tensor with no keyframe on the line (a run shorter than K steps) has no ‖W‖ here.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from safetensors.numpy import load as load_numpy

from ledger.artifacts import ArtifactCorrupt, ArtifactMissing

UNREADABLE = (TypeError, KeyError, ValueError, ArtifactCorrupt, ArtifactMissing)  # e.g. bfloat16 tensors


def _dense(kind: str, f: dict[str, np.ndarray], shape) -> np.ndarray | None:
    if kind == "low_rank":
        return np.asarray(f["u"], dtype=np.float64) @ np.asarray(f["v"], dtype=np.float64).T
    if kind == "dense":
        return np.asarray(f["delta"], dtype=np.float64).reshape(shape)
    if kind == "sparse":
        flat = np.zeros(int(np.prod(shape)), dtype=np.float64)
        np.add.at(flat, np.asarray(f["indices"], dtype=np.int64).ravel(),
                  np.asarray(f["values"], dtype=np.float64).ravel())
        return flat.reshape(shape)
    return None     # method state: not a weight delta


def weight_norm(ledger: Any, version_id: int, tensor: str, run_id: int) -> float | None:
    """‖W‖_F of ``tensor`` at ``version_id``, from the keyframes of run ``run_id`` on the version's
    line; None when there is none (or the one there cannot be read with numpy)."""
    lin = ledger.lineage_ids(version_id)
    pos = {vid: i for i, (vid, *_rest) in enumerate(lin)}
    best: tuple[int, list[int], int, str, float] | None = None   # (cost, path, sign, digest, norm)
    for kf_vid, digest, norm in ledger.run_keyframes(run_id, tensor):
        if kf_vid in pos:                 # at or before the version: add the deltas after it
            path, sign = [vid for vid, *_r in lin[pos[kf_vid] + 1:]], 1
        else:                              # after it: subtract the deltas from the version to it
            kf_lin = [vid for vid, *_r in ledger.lineage_ids(kf_vid)]
            if version_id not in kf_lin:
                continue
            path, sign = kf_lin[kf_lin.index(version_id) + 1:], -1
        if best is None or len(path) < best[0]:
            best = (len(path), path, sign, digest, norm)
    if best is None:
        return None
    _, path, sign, digest, norm = best
    rows = [d for vid in path for d in ledger.deltas(vid) if d.tensor == tensor]
    if not rows:
        return float(norm)                 # the keyframe itself (its norm is recorded with it)
    try:
        w = np.asarray(load_numpy(ledger.store.read_bytes(digest))[tensor], dtype=np.float64)
        for d in rows:
            part = _dense(d.kind, load_numpy(ledger.store.read_bytes(d.artifact_digest)), w.shape)
            if part is None:
                return None
            w += sign * part
    except UNREADABLE:
        return None
    return float(np.linalg.norm(w.ravel()))
