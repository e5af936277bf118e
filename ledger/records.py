"""Plain records passed *into* the ledger by the simulator. No torch import here: tensors are
whatever ``safetensors.torch`` can save, and the ledger imports torch lazily only to write them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProbeRecord:
    """One measurement at one version."""
    suite: str                 # e.g. "rewrite", "neighborhood", "perplexity", "retention"
    metric: str                # e.g. "efficacy_top1", "ns", "nkl", "ppl"
    value: float
    count: int = 0             # number of prompts / items the value aggregates
    detail: list[dict[str, Any]] | dict[str, Any] | None = None   # per-prompt detail (JSON)
    against: str = "none"      # "base", "previous" or "none": which reference the value compares to


@dataclass
class DeltaInput:
    """One tensor's delta as the ledger stores it (see simulator/deltas.py for the semantics), or a
    step's addition to its method's state (kind "state", ``tensor`` = "@" + method)."""
    tensor: str                # state-dict name of the tensor it changes, or the state's name
    kind: str                  # low_rank / dense / sparse / state
    tensors: dict[str, Any]    # the factors: {"u", "v"} / {"delta"} / {"indices", "values"} / adapter state
    shape: tuple[int, ...]     # shape of the tensor it changes
    rank: int | None = None
    norm: float = 0.0          # Frobenius norm of the delta, float64
    meta: dict[str, Any] = field(default_factory=dict)
    artifact: str | None = None  # digest of an artifact already in the store: reuse it, ``tensors`` unused
                                 # (a revert re-applies later deltas without reading or rewriting them)
    payload: str | None = None   # state deltas: the JSON part, stored in the artifact's header
