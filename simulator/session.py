"""A session: one loaded model, its ledger record, and the workspace that moves its weights
between versions. Replay, checkout, revert and audit all work through a session."""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ledger import Ledger
from ledger.errors import InputError
from ledger.records import DeltaInput
from simulator.checkout import ChainLink, Workspace
from simulator.deltas import TensorDelta


def delta_from_row(ledger: Ledger, row, read=None) -> TensorDelta:
    """Rebuild a TensorDelta from its ledger row (the artifact is digest-verified on read)."""
    return TensorDelta(tensor=row.tensor, kind=row.kind,
                       factors=(read or ledger.read_artifact)(row.artifact_digest))


class ArtifactCache:
    """Artifacts already read and verified, by digest. Content addressing makes them immutable, so
    a session that jumps between versions reads each file (and hashes it) once. Bounded in bytes,
    least recently used out first."""

    def __init__(self, ledger: Ledger, max_bytes: int = 1 << 30):
        self.ledger, self.max_bytes, self.nbytes = ledger, max_bytes, 0
        self._d: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()

    def __call__(self, digest: str) -> dict[str, torch.Tensor]:
        if digest in self._d:
            self._d.move_to_end(digest)
            return self._d[digest]
        tensors = self.ledger.read_artifact(digest)
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if size <= self.max_bytes:
            self._d[digest] = tensors
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, old = self._d.popitem(last=False)
                self.nbytes -= sum(t.numel() * t.element_size() for t in old.values())
        return tensors


def delta_to_input(d: TensorDelta, shape) -> DeltaInput:
    return DeltaInput(tensor=d.tensor, kind=d.kind, tensors={k: v.detach().contiguous().cpu()
                                                            for k, v in d.factors.items()},
                      shape=tuple(int(s) for s in shape), rank=d.rank, norm=d.norm())


@dataclass
class Session:
    ledger: Ledger
    lm: object                  # simulator.models.LoadedModel
    base_model_id: int
    base_version_id: int
    workspace: Workspace
    current_version_id: int     # the version whose weights are live in the model now
    model_ref: str = ""         # what the user passed to load it (a registry name or a path)
    artifacts: ArtifactCache | None = field(default=None, repr=False)   # verified artifacts read so far

    def __post_init__(self) -> None:
        if self.artifacts is None:
            self.artifacts = ArtifactCache(self.ledger)

    @classmethod
    def open(cls, ledger: Ledger, model: str, *, device: str | None = None, progress: bool = True) -> "Session":
        from simulator.models import load_model, model_names
        lm = load_model(model, device=device, progress=progress)
        name = model if model in model_names() else Path(model).name
        row = ledger.register_base_model(name=name, source=lm.source, fingerprint=lm.fingerprint,
                                         config=_jsonable(lm.config))
        base = ledger.base_version(row.id)
        lm.model.eval()
        return cls(ledger=ledger, lm=lm, base_model_id=row.id, base_version_id=base.id,
                   workspace=Workspace.of(lm.model), current_version_id=base.id, model_ref=model)

    @classmethod
    def for_run(cls, ledger: Ledger, run_id: int, *, device: str | None = None,
                model: str | None = None, progress: bool = True) -> "Session":
        """Load the model a run was recorded on and check that it is the same base model."""
        run = ledger.run(run_id)
        bm = ledger.base_model(run.base_model_id)
        src = model or (run.config or {}).get("model") or bm.name
        s = cls.open(ledger, src, device=device, progress=progress)
        if s.base_model_id != run.base_model_id:
            raise InputError(f"run {run_id} was recorded on base model {bm.name} (fingerprint "
                             f"{bm.fingerprint[:12]}…), but {src!r} loads a model with fingerprint "
                             f"{s.lm.fingerprint[:12]}…: pass the original model with --model")
        return s

    # ---- moving between versions -------------------------------------------------------------
    def chain(self, version_id: int) -> tuple[list[ChainLink], dict[str, str]]:
        """The links base..version (deltas loaded only where they will be applied) and the
        fingerprints recorded for the version."""
        rows = self.ledger.lineage_deltas(version_id)      # [(version, deltas, keyframe or None)]
        kf_at: dict[str, int] = {}                          # the latest keyframe of each tensor
        for i, (_, _, kf) in enumerate(rows):
            for name in kf or {}:
                kf_at[name] = i
        links = []
        for i, (v, drows, kf) in enumerate(rows):
            # deltas at or before a tensor's latest keyframe are inside it: never read them
            deltas = [delta_from_row(self.ledger, r, self.artifacts) for r in drows if i > kf_at.get(r.tensor, -1)]
            keyframe = None
            if kf:
                keyframe = {}
                for name, digest in kf.items():
                    if kf_at[name] == i:
                        (value,) = self.artifacts(digest).values()
                        keyframe[name] = value
            links.append(ChainLink(version_id=v.id, deltas=deltas, keyframe=keyframe or None))
        return links, dict(rows[-1][0].tensor_fingerprints or {})

    def checkout(self, version_id: int, *, verify: bool = True) -> dict[str, str]:
        links, expected = self.chain(version_id)
        unsealed = not expected and any(link.deltas for link in links)   # a revert made without the model
        got = self.workspace.materialise(links, expected if verify else None, what=f"version {version_id}")
        if unsealed:
            self.ledger.seal_version(version_id, got)
        self.current_version_id = version_id
        return got

    def export(self, version_id: int, out_dir: str | Path) -> Path:
        """Write the weights of ``version_id`` as a Hugging Face model directory."""
        from simulator.models import export_model_dir
        self.checkout(version_id)
        out = export_model_dir(self.lm.model, self.lm.tokenizer, None, out_dir)
        (Path(out) / "editledger.json").write_text(json.dumps(
            {"version_id": version_id, "base_fingerprint": self.lm.fingerprint,
             "tensor_fingerprints": self.ledger.version(version_id).tensor_fingerprints}, indent=2))
        return Path(out)

    def keyframe_of(self, names) -> dict[str, torch.Tensor]:
        """Full copies of the named live tensors (a keyframe bounds later checkouts' work)."""
        return {n: self.workspace.param(n).detach().cpu().clone() for n in sorted(names)}


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=str))
