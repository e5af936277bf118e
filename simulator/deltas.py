"""Deltas: what one edit did to one tensor, and the one function that applies them.

The weights of a version are *defined* as the base weights with the version's chain of deltas
applied in order by ``apply_delta``. Bit-exactness rests on that function being deterministic:

* ``low_rank``: ``W += u[:, i] ⊗ v[:, i]`` for i = 0..r-1, one rank-1 outer product at a time,
  computed in float32 and cast to W's dtype. Each element of an outer product is a single
  multiplication, so it is exact-rounded and independent of BLAS blocking; the adds are
  elementwise. (A rank-r ``u @ v.T`` through BLAS is *not* reproducible across machines.)
* ``dense``: ``W += delta`` elementwise.
* ``sparse``: ``W.view(-1)[indices] += values``.

What a stateful method keeps beside the weights (a GRACE codebook, an IKE memory) is not a weight
delta: each step's addition is a ``StateDelta``, folded into the method's state by the method itself
(``simulator.editors.base.Editor.fold``).

Factor layout follows the tensor as stored: ``u`` indexes dim 0, ``v`` dim 1 (for a torch
``nn.Linear`` weight of shape (out, in), ``u`` is (out, r) and ``v`` is (in, r)).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ledger.artifacts import serialize
from ledger.delta_norms import delta_norm

DELTA_KINDS = ("low_rank", "dense", "sparse")


@dataclass
class TensorDelta:
    tensor: str                          # state-dict name, e.g. "transformer.h.5.mlp.fc_out.weight"
    kind: str                            # one of DELTA_KINDS
    factors: dict[str, torch.Tensor]     # low_rank: u, v; dense: delta; sparse: indices, values

    def __post_init__(self) -> None:
        assert self.kind in DELTA_KINDS, f"unknown delta kind {self.kind!r}; expected one of {DELTA_KINDS}"
        need = {"low_rank": {"u", "v"}, "dense": {"delta"}, "sparse": {"indices", "values"}}.get(self.kind)
        if need is not None:
            assert need <= set(self.factors), f"{self.kind} delta for {self.tensor} needs factors {sorted(need)}"

    @property
    def rank(self) -> int | None:
        return int(self.factors["u"].shape[1]) if self.kind == "low_rank" else None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.factors.values())

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The delta as a full tensor (for norms and diffs; not used by apply)."""
        if self.kind == "low_rank":
            u, v = self.factors["u"].to(torch.float64), self.factors["v"].to(torch.float64)
            return (u @ v.T).to(dtype)
        if self.kind == "dense":
            return self.factors["delta"].to(dtype)
        raise ValueError(f"cannot densify a {self.kind} delta without its tensor's shape")

    def norm(self) -> float:
        """Frobenius norm, computed in float64 (``ledger.delta_norms``, shared with the TUI)."""
        return delta_norm(self.kind, {k: _numpy64(t) for k, t in self.factors.items()})


def _numpy64(t: torch.Tensor):
    t = t.detach().cpu()
    return (t.double() if t.is_floating_point() else t).numpy()


STATE_META_KEY = "editledger.state"       # safetensors header key holding a StateDelta's JSON part


@dataclass
class StateDelta:
    """What one step adds to (or changes in) a method's state: tensors (saved as safetensors) and a
    JSON part (text memories, ids, the hyper-parameters the runtime needs). Never pickled. How a
    method folds these into its state is the method's (``simulator.editors.base.Editor.fold``)."""
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The canonical safetensors bytes (sorted header): equal content, equal bytes, equal digest."""
        text = json.dumps(self.data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return serialize(self.tensors, {STATE_META_KEY: text})

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> "StateDelta":
        return cls(tensors=dict(tensors), data=json.loads(metadata.get(STATE_META_KEY, "{}")))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def norm(self) -> float:
        """Root of the summed squares of its tensors (0 for a JSON-only delta), in float64."""
        return delta_norm("state", {k: _numpy64(t) for k, t in self.tensors.items()})


@dataclass
class EditResult:
    """What an editor returns. Editors never modify the model they are given."""
    deltas: list[TensorDelta]
    diagnostics: dict[str, Any] = field(default_factory=dict)   # JSON-serialisable: losses, norms, ...
    stats_used: list[str] = field(default_factory=list)         # digests of second-moment artifacts used
    state: StateDelta | None = None                             # a stateful method's addition to its state


@torch.no_grad()
def apply_delta(weight: torch.Tensor, delta: TensorDelta, sign: int = 1) -> None:
    """Apply ``delta`` to ``weight`` in place. ``sign=-1`` is *not* an exact inverse; checkout
    never uses it (it rebuilds from the base or a keyframe instead)."""
    if delta.kind == "low_rank":
        u = delta.factors["u"].to(device=weight.device, dtype=torch.float32)
        v = delta.factors["v"].to(device=weight.device, dtype=torch.float32)
        assert u.shape[0] == weight.shape[0] and v.shape[0] == weight.shape[1], (
            f"low-rank delta for {delta.tensor}: factors {tuple(u.shape)}, {tuple(v.shape)} "
            f"do not fit a tensor of shape {tuple(weight.shape)}")
        for i in range(u.shape[1]):
            weight.add_((sign * torch.outer(u[:, i], v[:, i])).to(weight.dtype))
    elif delta.kind == "dense":
        d = delta.factors["delta"].to(device=weight.device)
        assert d.shape == weight.shape, f"dense delta for {delta.tensor}: shape {tuple(d.shape)} != {tuple(weight.shape)}"
        weight.add_((sign * d).to(weight.dtype))
    elif delta.kind == "sparse":
        idx = delta.factors["indices"].to(device=weight.device, dtype=torch.long)
        val = delta.factors["values"].to(device=weight.device)
        flat = weight.view(-1)
        flat[idx] = flat[idx] + (sign * val).to(weight.dtype)
    else:
        raise ValueError(f"unknown delta kind {delta.kind!r} for {delta.tensor}")


def tensor_fingerprint(t: torch.Tensor) -> str:
    """sha256 of the tensor's raw bytes (dtype and shape included), as hex."""
    t = t.detach().contiguous().cpu()
    h = hashlib.sha256()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.dtype == torch.bfloat16:
        h.update(t.view(torch.int16).numpy().tobytes())
    else:
        h.update(t.numpy().tobytes())
    return h.hexdigest()
