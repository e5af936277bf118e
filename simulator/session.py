"""A session: one loaded model and the only owner of its live weights and method state.

Replay, checkout, revert, export and audit all move the model through a session:

    s = Session.open(ledger, "tiny-gptj")
    s.apply("rome", result)                     # an editor's weight deltas (and state delta) go live
    v = s.commit(run_id, step=1, requests=[...], diagnostics={}, wall_time_s=t)   # one ledger step
    s.checkout(v.id)                            # any version, verified bit for bit
    s.materialise(head, without={v.id})         # the head without one step (the audit's counterfactual)
    s.view                                      # what probes score: the model through its method state

A version is base weights + weight deltas + method state. Weights are rebuilt by the workspace
(``simulator.checkout``); a method's state is the fold of its state deltas along the lineage
(``Editor.fold``). Both are fingerprinted after every step ("@" + method for a state) and verified
on every checkout.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from ledger import Ledger
from ledger.errors import InputError, IntegrityError
from ledger.records import DeltaInput, ProbeRecord
from simulator.checkout import ChainLink, VersionChains, Workspace
from simulator.deltas import (
    FINGERPRINT_ALGO, EditResult, StateDelta, TensorDelta, canonical_fingerprint, fingerprint_algo,
    tensor_fingerprint,
)
from simulator.editors import Editor, get_editor
from simulator.editors.base import is_state_slot, state_slot
from simulator.models import export_model_dir, load_model, model_names
from simulator.runtime import MethodRuntime, ModelView


class ArtifactCache:
    """Artifacts already read and verified, by digest: (tensors, header metadata). Content
    addressing makes them immutable, so a session that jumps between versions reads each file (and
    hashes it) once. Bounded in bytes, least recently used out first: by ``max_bytes``, or (None)
    by 1 GiB or ``KEEP_LARGEST`` artifacts as large as the largest read so far, whichever is more.
    (Measured at GPT-J's shape: the ten 256 MiB keyframes of a 40-step chain at K = 4 did not fit
    in 1 GiB, were read and hashed again on most checkouts, and a checkout took 13x the copy bound;
    with room for them, 1.8x.)"""

    KEEP_LARGEST = 12

    def __init__(self, ledger: Ledger, max_bytes: int | None = None):
        self.ledger, self.fixed_bound, self.nbytes = ledger, max_bytes, 0
        self.max_bytes = max_bytes if max_bytes is not None else 1 << 30
        self._d: OrderedDict[str, tuple[dict[str, torch.Tensor], dict[str, str]]] = OrderedDict()

    def read(self, digest: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        if digest in self._d:
            self._d.move_to_end(digest)
            return self._d[digest]
        got = self.ledger.read_artifact_with_header(digest)
        size = sum(t.numel() * t.element_size() for t in got[0].values())
        if self.fixed_bound is None:
            self.max_bytes = max(self.max_bytes, self.KEEP_LARGEST * size)
        if size <= self.max_bytes:
            self._d[digest] = got
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (old, _h) = self._d.popitem(last=False)
                self.nbytes -= sum(t.numel() * t.element_size() for t in old.values())
        return got

    def __call__(self, digest: str) -> dict[str, torch.Tensor]:
        return self.read(digest)[0]


def delta_to_input(d: TensorDelta, shape) -> DeltaInput:
    return DeltaInput(tensor=d.tensor, kind=d.kind, tensors={k: v.detach().contiguous().cpu()
                                                            for k, v in d.factors.items()},
                      shape=tuple(int(s) for s in shape), rank=d.rank, norm=d.norm())


def state_to_input(method: str, sd: StateDelta) -> DeltaInput:
    payload = json.dumps(sd.data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return DeltaInput(tensor=state_slot(method), kind="state",
                      tensors={k: v.detach().contiguous().cpu() for k, v in sd.tensors.items()},
                      shape=(), rank=None, norm=sd.norm(), payload=payload)


@dataclass
class _Link:
    """One version's contribution: weight deltas, state deltas (method, delta), maybe a keyframe."""
    version_id: int
    weights: ChainLink
    states: list[tuple[str, StateDelta]] = field(default_factory=list)


class SessionView(ModelView):
    """The session's model as probes see it: the runtimes of the method states it holds now."""

    def __init__(self, session: "Session"):
        super().__init__(session.lm.model, session.lm.tokenizer, session.lm.spec)
        self._session = session

    def runtimes(self) -> Sequence[MethodRuntime]:
        return self._session._runtimes()


class Session:
    def __init__(self, ledger: Ledger, lm: Any, base_model_id: int, base_version_id: int, *,
                 model_ref: str = "", params: dict[str, torch.Tensor] | None = None):
        self.ledger = ledger
        self.lm = lm                                 # simulator.models.LoadedModel
        self.base_model_id = base_model_id
        self.base_version_id = base_version_id
        self.model_ref = model_ref                   # what the user passed to load it (a name or a path)
        self.current_version_id: int | None = base_version_id   # None: live weights are no ledger version
        self.artifacts = ArtifactCache(ledger)
        self._chains = VersionChains(ledger)         # each version's deltas and keyframe, read once
        self._ws = Workspace(params=dict(params) if params is not None else dict(lm.model.named_parameters()))
        self._fps: dict[str, str] = {}               # fingerprints of everything the live version changed
        self._states: dict[str, Any] = {}            # method -> live state
        self._editors: dict[str, Editor] = {}
        self._runtime_cache: list[MethodRuntime] | None = None
        self._uncommitted: list[tuple[str, EditResult]] = []
        self.view: ModelView = SessionView(self)

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, ledger: Ledger, model: str, *, device: str | None = None, progress: bool = True) -> "Session":
        lm = load_model(model, device=device, progress=progress)
        name = model if model in model_names() else Path(model).name
        row = ledger.register_base_model(name=name, source=lm.source, fingerprint=lm.fingerprint,
                                         config=_jsonable(lm.config))
        base = ledger.base_version(row.id)
        lm.model.eval()
        return cls(ledger, lm, row.id, base.id, model_ref=model)

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

    # ---- the live version ------------------------------------------------------------------------
    def editor(self, method: str) -> Editor:
        if method not in self._editors:
            try:
                self._editors[method] = get_editor(method)
            except InputError as e:
                raise InputError(f"{e}. This ledger holds method state of {method!r}: use an editledger that "
                                 "knows that method (or import the module that registers it)") from None
        return self._editors[method]

    def state(self, method: str) -> Any:
        """The live state of a stateful method (its empty state when no step of it is live)."""
        if method not in self._states:
            return self.editor(method).empty_state()
        return self._states[method]

    @property
    def fingerprints(self) -> dict[str, str]:
        """Fingerprints of every tensor and method state the live version changed from the base."""
        return dict(self._fps)

    def param(self, name: str) -> torch.Tensor:
        """A live parameter, read-only by convention (tests and benchmarks compare them)."""
        return self._ws.param(name)

    def _runtimes(self) -> list[MethodRuntime]:
        if self._runtime_cache is None:
            lm = self.lm
            self._runtime_cache = [self.editor(m).runtime(lm.model, lm.tokenizer, lm.spec, st)
                                   for m, st in sorted(self._states.items())]
        return self._runtime_cache

    def _set_states(self, states: dict[str, Any]) -> None:
        self._states = states
        self._runtime_cache = None

    @torch.no_grad()
    def apply(self, method: str, result: EditResult) -> dict[str, str]:
        """Make an editor's result live: its weight deltas applied, its state delta folded into the
        method's state. Returns the fingerprints of what changed. ``commit`` records it."""
        for d in result.deltas:
            self._ws.apply(d)
        changed = self._ws.fingerprints({d.tensor for d in result.deltas})
        if result.state is not None:
            ed = self.editor(method)
            st = ed.fold(self.state(method), result.state)
            self._set_states({**self._states, method: st})
            changed[state_slot(method)] = canonical_fingerprint(ed.state_fingerprint(st))
        self._fps.update(changed)
        self._uncommitted.append((method, result))
        self.current_version_id = None
        return changed

    def commit(self, run_id: int, *, step: int, requests: Sequence[dict], diagnostics: dict,
               wall_time_s: float, probes: Iterable[ProbeRecord] = (), keyframe: bool = False,
               group: str | None = None, role: str | None = None, parent_version_id: int | None = None):
        """Record what was applied since the last checkout or commit as one step of ``run_id`` (one
        ledger transaction), under the run's head unless ``parent_version_id`` is given."""
        if not self._uncommitted:
            raise IntegrityError("nothing was applied since the last checkout or commit: call apply() first")
        parent = parent_version_id if parent_version_id is not None else self.ledger.run(run_id).head_version_id
        for n, fp in self._fps.items():          # a version records its tensors in one, current algorithm
            if not is_state_slot(n) and fingerprint_algo(fp) != FINGERPRINT_ALGO:
                self._fps[n] = tensor_fingerprint(self._ws.param(n))
        deltas, stats_used = [], []
        for method, res in self._uncommitted:
            deltas += [delta_to_input(d, self._ws.param(d.tensor).shape) for d in res.deltas]
            if res.state is not None:
                deltas.append(state_to_input(method, res.state))
            stats_used += list(res.stats_used)
        kf = None
        if keyframe:
            kf = {n: self._ws.param(n).detach().cpu().clone() for n in sorted(self._fps) if not is_state_slot(n)}
        v = self.ledger.record_step(
            run_id, step=step, parent_version_id=parent, kind="edit", requests=list(requests), deltas=deltas,
            tensor_fingerprints=dict(self._fps), diagnostics=diagnostics, wall_time_s=wall_time_s,
            probes=probes, stats_used=stats_used, keyframe=kf, group=group, role=role,
            base_fingerprint=self.lm.fingerprint)
        self._uncommitted = []
        self.current_version_id = v.id
        return v

    # ---- moving between versions -----------------------------------------------------------------
    def _chain(self, version_id: int, without: frozenset[int] = frozenset()) -> tuple[list[_Link], dict[str, str]]:
        """The links base..version minus the versions in ``without`` (deltas loaded only where they
        will be applied) and the fingerprints recorded for the version."""
        rows = self._chains.lineage(version_id)
        skip_from = min((i for i, r in enumerate(rows) if r.version_id in without), default=len(rows))
        kf_at: dict[str, int] = {}                          # the latest usable keyframe of each tensor
        for i, r in enumerate(rows[:skip_from]):            # a keyframe after a skipped step holds it
            for name in r.keyframe or {}:
                kf_at[name] = i
        links = []
        for i, r in enumerate(rows):
            if r.version_id in without:
                continue
            weights, states = [], []
            for d in r.deltas:
                if d.kind == "state":
                    tensors, header = self.artifacts.read(d.digest)
                    states.append((d.tensor[1:], StateDelta.from_artifact(tensors, header)))
                elif i > kf_at.get(d.tensor, -1):          # at or before the latest keyframe: inside it
                    weights.append(TensorDelta(tensor=d.tensor, kind=d.kind, factors=self.artifacts(d.digest)))
            keyframe = None
            if r.keyframe and i < skip_from:
                keyframe = {name: next(iter(self.artifacts(digest).values()))
                            for name, digest in r.keyframe.items() if kf_at.get(name) == i} or None
            links.append(_Link(r.version_id, ChainLink(version_id=r.version_id, deltas=weights, keyframe=keyframe),
                               states))
        return links, self._chains.fingerprints(version_id)

    def _live_at(self, links: list[_Link]) -> int | None:
        """Where the live weights sit in ``links``: the index of the version they hold, if it is one
        of them and nothing uncommitted is applied on top (then tensors can be carried forward)."""
        here = self.current_version_id
        if here is None or self._uncommitted:
            return None
        return next((i for i, lk in enumerate(links) if lk.version_id == here), None)

    def _materialise(self, links: list[_Link], algos: dict[str, str], *, live_at: int | None = None,
                     reference: bool = False) -> dict[str, str]:
        """Make ``links`` live and return the fingerprints of what they change, each tensor's by the
        algorithm in ``algos`` (what its recorded fingerprint names; the current one otherwise)."""
        self.current_version_id = None                      # until the caller says what is live
        names = self._ws.materialise([lk.weights for lk in links], live_at=live_at, reference=reference)
        got = self._ws.fingerprints(names, {n: fingerprint_algo(fp) for n, fp in algos.items()})
        states: dict[str, Any] = {}
        for lk in links:
            for method, sd in lk.states:
                ed = self.editor(method)
                states[method] = ed.fold(states[method] if method in states else ed.empty_state(), sd)
        for method, st in states.items():
            got[state_slot(method)] = canonical_fingerprint(self.editor(method).state_fingerprint(st))
        self._set_states(states)
        self._fps = dict(got)
        self._uncommitted = []
        return got

    @staticmethod
    def _mismatches(expected: dict[str, str], got: dict[str, str]) -> list[str]:
        return sorted(n for n in set(expected) | set(got) if n not in expected or n not in got
                      or canonical_fingerprint(got[n]) != canonical_fingerprint(expected[n]))

    def checkout(self, version_id: int, *, verify: bool = True) -> dict[str, str]:
        """Make ``version_id`` live (weights and method state) and verify it against the fingerprints
        recorded when it was made. A revert made without the model is sealed by its first checkout."""
        links, expected = self._chain(version_id)
        live_at = self._live_at(links)
        got = self._materialise(links, expected, live_at=live_at)
        unsealed = not expected and any(lk.weights.deltas or lk.states for lk in links)
        if verify and not unsealed:
            bad = self._mismatches(expected, got)
            if bad:     # before saying so, rebuild from the base or keyframes by the reference path
                got = self._materialise(links, expected, reference=True)
                bad = self._mismatches(expected, got)
            if bad:
                raise IntegrityError(
                    f"checkout of version {version_id} does not reproduce what was recorded for {len(bad)} "
                    f"tensor(s) or state(s) ({', '.join(bad[:3])}{'…' if len(bad) > 3 else ''}). The artifacts "
                    "verified, so the base model differs from the one the run was recorded on (check its "
                    "fingerprint with `editledger db status`) or the apply rule changed.")
        if unsealed:
            self.ledger.seal_version(version_id, got)
            self._chains.sealed(version_id, got)
        self.current_version_id = version_id
        return got

    def materialise(self, version_id: int, *, without: Iterable[int] = ()) -> dict[str, str]:
        """Make live the weights and state of ``version_id`` without the steps of the versions in
        ``without`` (their weight and state deltas left out, the later ones kept): a model no ledger
        version holds, so nothing is verified and ``current_version_id`` becomes None."""
        without = frozenset(without)
        links, expected = self._chain(version_id, without)
        got = self._materialise(links, {} if without else expected,
                                live_at=None if without else self._live_at(links))
        self.current_version_id = version_id if not without else None
        return got

    def prepare_statistics(self, provider, layers: Sequence[int]) -> list[str]:
        """Second-moment statistics of ``layers`` collected (or found) on the base weights, before
        the first edit: if the live version is not the base, the base is made live for the
        collection and the version is restored after. Never called in the middle of an edit."""
        if not layers:
            return []
        lm = self.lm
        if self._uncommitted:
            raise IntegrityError("statistics are collected before an edit, not between an edit and its commit")
        here = self.current_version_id
        if here == self.base_version_id or not provider.missing(lm.model, lm.tokenizer, lm.spec, list(layers)):
            return provider.prepare(lm.model, lm.tokenizer, lm.spec, list(layers))
        self.checkout(self.base_version_id)
        try:
            return provider.prepare(lm.model, lm.tokenizer, lm.spec, list(layers))
        finally:
            if here is not None:
                self.checkout(here)

    # ---- export ----------------------------------------------------------------------------------
    def export(self, version_id: int, out_dir: str | Path) -> Path:
        """Write ``version_id`` as a Hugging Face model directory, plus its method state (if any)
        under ``method_state/`` with a README saying how to load it."""
        self.checkout(version_id)
        out = Path(export_model_dir(self.lm.model, self.lm.tokenizer, None, out_dir))
        v = self.ledger.version(version_id)
        states = {}
        if self._states:
            sdir = out / "method_state"
            sdir.mkdir(exist_ok=True)
            readme = [f"# Method state of version {version_id}", "",
                      "The weights in this directory load with transformers' `from_pretrained`. This version also "
                      "answers through method state kept beside the weights:", ""]
            for method, st in sorted(self._states.items()):
                ed = self.editor(method)
                (sdir / f"{method}.safetensors").write_bytes(ed.snapshot(st).to_bytes())
                states[method] = f"method_state/{method}.safetensors"
                readme += [f"## {method}", "", ed.export_readme(), ""]
            (sdir / "README.md").write_text("\n".join(readme))
        (out / "editledger.json").write_text(json.dumps(
            {"version_id": version_id, "base_fingerprint": self.lm.fingerprint,
             "tensor_fingerprints": v.tensor_fingerprints, "method_state": states}, indent=2))
        return out


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=str))
