"""Deltas: what one edit did to one tensor, the one rule that applies them, and fingerprints.

The weights of a version are *defined* as the base weights with the version's chain of deltas
applied in order by this rule (rule 1, the only one; it is part of the ledger's format):

* ``low_rank``: ``W += u[:, i] ⊗ v[:, i]`` for i = 0..r-1, one rank-1 outer product at a time,
  computed in float32 and cast to W's dtype. Each element of an outer product is a single
  multiplication, so it is exact-rounded and independent of BLAS blocking; the adds are
  elementwise. (A rank-r ``u @ v.T`` through BLAS is *not* reproducible across machines.)
* ``dense``: ``W += delta`` elementwise.
* ``sparse``: ``W.view(-1)[indices] += values``.

How the rule is carried out may change; what it computes may not. For a float32 tensor on the CPU
a run of consecutive low-rank deltas (and the copy of the base or keyframe it starts from) goes
through ``simulator.rank1_kernel`` in one pass, once the process has applied enough for loading it
to pay: the same float32 operations on every element, in the same order, so the same bits (that
module says why, and checks it). Everything else takes the reference path below, one outer
product at a time.

What a stateful method keeps beside the weights (a GRACE codebook, an IKE memory) is not a weight
delta: each step's addition is a ``StateDelta``, folded into the method's state by the method itself
(``simulator.editors.base.Editor.fold``).

Factor layout follows the tensor as stored: ``u`` indexes dim 0, ``v`` dim 1 (for a torch
``nn.Linear`` weight of shape (out, in), ``u`` is (out, r) and ``v`` is (in, r)).

Fingerprints name their algorithm, ``"<algorithm>:<hex>"`` (as container digests do). New versions
record ``xxh3-128`` (xxHash's XXH3, 128 bits: a checksum at memory speed, about 20 GB/s on one
core of the 2-core development machine against 1.2 GB/s for sha256), which is what a checkout
verifies. It detects an accidental change of the bytes (a different base model, a changed rule,
a corrupted tensor) with probability 1 - 2^-128, though not a deliberately forged collision: the
artifacts, named by their sha256, carry that guarantee. Fingerprints written before migration
0006 are ``sha256`` and still verify with sha256; a bare hex value is read as sha256.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import xxhash

from ledger.artifacts import serialize
from ledger.delta_norms import delta_norm
from simulator import rank1_kernel

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
def apply_delta(weight: torch.Tensor, delta: TensorDelta, sign: int = 1, *, reference: bool = False) -> None:
    """Apply ``delta`` to ``weight`` in place. ``sign=-1`` is *not* an exact inverse; checkout
    never uses it (it rebuilds from the base or a keyframe instead). ``reference=True`` takes the
    reference path even where the kernel could run (same bits; tests and the checkout's retry)."""
    if delta.kind == "low_rank" and sign == 1:
        apply_run(weight, [delta], reference=reference)
    elif delta.kind == "low_rank":                  # (-u) ⊗ v = -(u ⊗ v) exactly
        u, v = _low_rank_factors(weight, delta)
        _reference_low_rank(weight, sign * u, v)
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


def _low_rank_factors(weight: torch.Tensor, delta: TensorDelta) -> tuple[torch.Tensor, torch.Tensor]:
    u = delta.factors["u"].to(device=weight.device, dtype=torch.float32)
    v = delta.factors["v"].to(device=weight.device, dtype=torch.float32)
    assert u.dim() == 2 and v.dim() == 2 and u.shape[0] == weight.shape[0] and v.shape[0] == weight.shape[1] \
        and u.shape[1] == v.shape[1], (
        f"low-rank delta for {delta.tensor}: factors {tuple(u.shape)}, {tuple(v.shape)} "
        f"do not fit a tensor of shape {tuple(weight.shape)}")
    return u, v


@torch.no_grad()
def apply_run(weight: torch.Tensor, deltas: Sequence[TensorDelta], src: torch.Tensor | None = None, *,
              reference: bool = False) -> None:
    """``weight := (src if given else weight)`` with ``deltas`` applied in order by the rule: how a
    checkout rebuilds one tensor from the base or a keyframe (``src``). Consecutive low-rank deltas
    of a float32 CPU tensor go through ``rank1_kernel`` in one pass, the copy of ``src`` fused into
    the first; anything else takes the reference path."""
    terms = sum(d.rank for d in deltas if d.kind == "low_rank")
    fast = not reference and terms > 0 and rank1_kernel.eligible(weight, terms)
    i = 0
    if src is not None and not (fast and deltas and deltas[0].kind == "low_rank"):
        weight.copy_(src.to(device=weight.device, dtype=weight.dtype))
        src = None
    while i < len(deltas):
        j = i
        while j < len(deltas) and deltas[j].kind == "low_rank":
            j += 1
        if j == i:                          # dense or sparse: one at a time
            apply_delta(weight, deltas[i])
            i += 1
            continue
        factors = [_low_rank_factors(weight, d) for d in deltas[i:j]]
        if fast:
            u = torch.cat([f[0] for f in factors], dim=1) if len(factors) > 1 else factors[0][0]
            vt = torch.cat([f[1].T for f in factors], dim=0) if len(factors) > 1 else factors[0][1].T
            rank1_kernel.apply_rows(weight, u, vt, src=src)
            src = None
        else:
            for u, v in factors:
                _reference_low_rank(weight, u, v)
        i = j


def _reference_low_rank(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> None:
    """The rule as stated: one float32 outer product at a time, cast to W's dtype, added."""
    if weight.dtype == torch.float32:
        rank1_kernel.reference(weight, u, v.T)
        return
    for k in range(u.shape[1]):
        weight.add_(torch.outer(u[:, k], v[:, k]).to(weight.dtype))


# ---- fingerprints ----------------------------------------------------------------------------------
FINGERPRINT_ALGO = "xxh3-128"          # what new versions record
LEGACY_ALGO = "sha256"                 # what every fingerprint written before migration 0006 is
_HASHERS = {"xxh3-128": xxhash.xxh3_128, "sha256": hashlib.sha256}


def fingerprint_algo(fp: str) -> str:
    """The algorithm a recorded fingerprint names (a bare hex value is an old sha256 one)."""
    return fp.split(":", 1)[0] if ":" in fp else LEGACY_ALGO


def canonical_fingerprint(fp: str) -> str:
    """``fp`` in the ``"<algorithm>:<hex>"`` form (bare hex values are sha256)."""
    return fp if ":" in fp else f"{LEGACY_ALGO}:{fp}"


def tensor_fingerprint(t: torch.Tensor, algo: str = FINGERPRINT_ALGO) -> str:
    """``"<algo>:<hex>"`` of the tensor's dtype, shape and raw bytes (hashed in place, no copy on
    the CPU). Verifying a recorded fingerprint: hash with ``fingerprint_algo(recorded)``."""
    if algo not in _HASHERS:
        raise ValueError(f"unknown fingerprint algorithm {algo!r}; known: {', '.join(sorted(_HASHERS))}. "
                         "The ledger was written by a newer editledger: upgrade editledger to check it out")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    h = _HASHERS[algo]()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.dtype == torch.bfloat16:       # numpy has no bfloat16: hash the same bytes as int16
        t = t.view(torch.int16)
    if t.numel():
        h.update(t.numpy().reshape(-1).view(np.uint8).data)
    return f"{algo}:{h.hexdigest()}"
