"""Identify a model directory: the ledger version whose weights (and method state) it holds, bit for
bit, or the nearest version and the tensors that differ.

Every version records the fingerprint (``simulator.deltas.tensor_fingerprint``) of every tensor it
changed from its base model, and ``@<method>`` for a method state; every other tensor is the base's.
So a directory matches version V when each of its tensors has V's fingerprint where V changed the
tensor and the base's fingerprint elsewhere. The base's per-tensor fingerprints come from loading
the base model (the ledger keeps only its whole-model fingerprint). A method state exported beside
the weights (``method_state/<method>.safetensors``) is fingerprinted by its bytes, as the session
does. Distance = the number of tensors (and states) that differ; among the nearest versions, the
differing tensors' values are compared after a verified checkout, so the report says by how much.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from ledger.errors import InputError
from simulator.deltas import FINGERPRINT_ALGO, canonical_fingerprint, fingerprint_algo, tensor_fingerprint
from simulator.editors.base import STATE_SLOT_PREFIX, is_state_slot
from simulator.models import model_names
from simulator.session import Session

ARCH_KEYS = ("model_type", "hidden_size", "n_embd", "num_hidden_layers", "n_layer", "vocab_size",
             "intermediate_size")


@dataclass
class TensorDiff:
    name: str
    status: str                   # "differs", "missing" (in the version, not the directory), "unexpected"
    rel_diff: float | None = None  # ‖dir − version‖_F / ‖version‖_F, float64
    max_abs: float | None = None


@dataclass
class Candidate:
    version_id: int
    run_id: int | None
    step: int
    kind: str
    label: str
    differing: list[TensorDiff] = field(default_factory=list)

    @property
    def distance(self) -> int:
        return len(self.differing)


@dataclass
class Identification:
    directory: str
    n_tensors: int
    base_model: str
    exact: list[Candidate] = field(default_factory=list)
    nearest: list[Candidate] = field(default_factory=list)
    claimed: dict | None = None          # what the directory's editledger.json says, if it has one
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def c(x: Candidate) -> dict:
            return {"version_id": x.version_id, "run_id": x.run_id, "step": x.step, "kind": x.kind,
                    "label": x.label, "distance": x.distance, "differing": [vars(d) for d in x.differing]}
        return {"directory": self.directory, "n_tensors": self.n_tensors, "base_model": self.base_model,
                "exact": [c(x) for x in self.exact], "nearest": [c(x) for x in self.nearest],
                "claimed": self.claimed, "notes": self.notes}


def _weight_files(d: Path) -> list[Path]:
    files = sorted(d.glob("*.safetensors"))
    if not files:
        bins = sorted(d.glob("*.bin")) + sorted(d.glob("*.pt"))
        hint = (f" It holds {', '.join(p.name for p in bins[:3])}: editledger never loads pickled weights; "
                "convert them to safetensors first.") if bins else ""
        raise InputError(f"{d} holds no .safetensors weights.{hint}")
    return files


def directory_fingerprints(d: str | Path) -> tuple[dict[str, str], dict[str, str], dict]:
    """(tensor name -> fingerprint, tensor name -> dtype, config.json) of a model directory, plus
    ``@method`` -> sha256 of each exported method state. Tensors are read one at a time."""
    d = Path(d)
    if not d.is_dir():
        raise InputError(f"{d} is not a directory; give a Hugging Face model directory "
                         "(e.g. one written by `editledger checkout RUN@STEP --export DIR`)")
    cfg_path = d / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    fps, dtypes = {}, {}
    for f in _weight_files(d):
        with safe_open(str(f), framework="pt") as h:
            for name in h.keys():
                t = h.get_tensor(name)
                fps[name] = tensor_fingerprint(t)
                dtypes[name] = str(t.dtype).replace("torch.", "")
    for f in sorted((d / "method_state").glob("*.safetensors")) if (d / "method_state").is_dir() else []:
        fps[STATE_SLOT_PREFIX + f.stem] = canonical_fingerprint(hashlib.sha256(f.read_bytes()).hexdigest())
    return fps, dtypes, config


class _Rehash:
    """A directory tensor's fingerprint by another algorithm than the current one (a version recorded
    before migration 0006 names sha256): computed once per tensor, when a version asks for it."""

    def __init__(self, d: Path, fps: dict[str, str]):
        self.d, self.fps, self.cache = d, fps, {}

    def matches(self, name: str, recorded: str) -> bool:
        if is_state_slot(name):
            return self.fps.get(name) == canonical_fingerprint(recorded)
        algo = fingerprint_algo(recorded)
        if algo == FINGERPRINT_ALGO:
            return self.fps.get(name) == recorded
        if (name, algo) not in self.cache:
            t = _read_tensor(self.d, name)
            self.cache[(name, algo)] = None if t is None else tensor_fingerprint(t, algo)
        return self.cache[(name, algo)] == canonical_fingerprint(recorded)


def _read_tensor(d: Path, name: str) -> torch.Tensor | None:
    for f in _weight_files(d):
        with safe_open(str(f), framework="pt") as h:
            if name in h.keys():
                return h.get_tensor(name)
    return None


def _arch(cfg: dict) -> dict:
    return {k: cfg[k] for k in ARCH_KEYS if k in cfg}


def _base_candidates(ledger, config: dict):
    """Base models of the ledger whose recorded architecture agrees with the directory's config."""
    want = _arch(config)
    out = []
    for bm in ledger.base_models():
        have = _arch((bm.config or {}).get("hf_config", {}) or {})
        if all(have.get(k) == v for k, v in want.items() if k in have):
            out.append(bm)
    return out


def _open_base(ledger, bm, model: str | None, device: str | None) -> Session:
    runs = [r for r in ledger.runs() if r.base_model_id == bm.id]
    if runs and model is None:
        return Session.for_run(ledger, runs[0].id, device=device, progress=False)
    src = model or (bm.name if bm.name in model_names() else bm.source)
    s = Session.open(ledger, src, device=device, progress=False)
    if s.base_model_id != bm.id:
        raise InputError(f"{src!r} loads a model with fingerprint {s.lm.fingerprint[:12]}…, not the ledger's base "
                         f"model {bm.name} ({bm.fingerprint[:12]}…): pass the original model with --model")
    return s


def _base_fingerprints(s: Session, names) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Fingerprints and dtypes of the base's tensors (the session is at the base), and the names that
    are tied aliases of another tensor (saved once in a directory)."""
    assert s.current_version_id == s.base_version_id, "base fingerprints are read at the base version"
    sd = s.lm.model.state_dict()
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    aliases = set()
    for n in sorted(sd):
        key = (sd[n].data_ptr(), tuple(sd[n].shape))
        if key in seen:
            aliases.add(n)
        else:
            seen[key] = n
    fps = {n: tensor_fingerprint(sd[n]) for n in sd if n in names or n not in aliases}
    dtypes = {n: str(sd[n].dtype).replace("torch.", "") for n in fps}
    return fps, dtypes, aliases


def _label(ledger, v) -> str:
    if v.kind == "base":
        return "the base model"
    reqs = ledger.edit_requests(v.id)
    what = (f"{reqs[0].subject}: {(reqs[0].target_old or '?').strip()} → {reqs[0].target_new.strip()}"
            if reqs else (v.note or v.kind))
    return f"run {v.run_id} step {v.step}, {v.kind}: {what}"


def identify(ledger, directory: str | Path, *, model: str | None = None, device: str | None = None,
             compare_values: int = 50) -> Identification:
    """Name the version ``directory`` holds (see the module docstring). ``compare_values``: how many of
    the nearest versions (as many tensors differ) get their differing tensors compared by value, one
    verified checkout each; the closest by value comes first."""
    d = Path(directory)
    dir_fps, dir_dtypes, config = directory_fingerprints(d)
    cands = _base_candidates(ledger, config)
    if not cands:
        known = ", ".join(f"{b.name} ({(b.config or {}).get('arch', '?')})" for b in ledger.base_models()) or "none"
        raise InputError(f"no base model in this ledger has the architecture of {d} "
                         f"({_arch(config) or 'no config.json'}); its base models: {known}")
    claimed = None
    if (d / "editledger.json").exists():
        claimed = json.loads((d / "editledger.json").read_text())
    best: Identification | None = None
    for bm in cands:
        s = _open_base(ledger, bm, model, device)
        got = _identify_on(ledger, s, d, dir_fps, dir_dtypes, bm, compare_values)
        got.claimed = claimed
        if best is None or _rank(got) < _rank(best):
            best = got
    if claimed is not None and best is not None:
        vid = claimed.get("version_id")
        if best.exact and vid not in [c.version_id for c in best.exact]:
            best.notes.append(f"its editledger.json says version {vid}, but its weights are version "
                              f"{best.exact[0].version_id}'s")
        elif not best.exact:
            best.notes.append(f"its editledger.json says version {vid}; the weights no longer match it")
    return best


def _rank(x: Identification) -> tuple:
    return (0 if x.exact else 1, x.nearest[0].distance if x.nearest else 10 ** 9)


def _identify_on(ledger, s: Session, d: Path, dir_fps, dir_dtypes, bm, compare_values: int) -> Identification:
    base_fps, base_dtypes, aliases = _base_fingerprints(s, set(dir_fps))
    out = Identification(str(d), len([n for n in dir_fps if not is_state_slot(n)]), bm.name)
    mism = {n for n in dir_fps if not is_state_slot(n) and n in base_fps and dir_fps[n] != base_fps[n]}
    missing = {n for n in base_fps if n not in dir_fps and n not in aliases}
    unexpected = {n for n in dir_fps if not is_state_slot(n) and n not in base_fps}
    dir_states = {n for n in dir_fps if is_state_slot(n)}
    odd = sorted({dir_dtypes[n] for n in dir_fps if n in base_dtypes and dir_dtypes[n] != base_dtypes[n]})
    if odd:
        out.notes.append(f"the directory holds {', '.join(odd)} tensors where the base model {bm.name} was recorded "
                         f"in {sorted(set(base_dtypes.values()))[0]}: no version can match bit for bit; the nearest "
                         "are compared by value")
    versions = [ledger.base_version(bm.id)]
    for r in ledger.runs():
        if r.base_model_id == bm.id:
            versions += ledger.versions(r.id)
    scored = []
    rehash = _Rehash(d, dir_fps)
    for v in versions:
        touched = dict(v.tensor_fingerprints or {})
        if v.kind == "revert" and not touched:
            continue        # a revert nobody checked out yet: its fingerprints are not known
        diff = []
        for n, fp in touched.items():
            if n not in dir_fps:
                diff.append(TensorDiff(n, "missing"))
            elif not rehash.matches(n, fp):
                diff.append(TensorDiff(n, "differs"))
        diff += [TensorDiff(n, "differs") for n in sorted(mism - set(touched))]
        diff += [TensorDiff(n, "unexpected") for n in sorted(dir_states - set(touched))]
        diff += [TensorDiff(n, "missing") for n in sorted(missing - set(touched))]
        diff += [TensorDiff(n, "unexpected") for n in sorted(unexpected)]
        scored.append(Candidate(v.id, v.run_id, v.step, v.kind, _label(ledger, v), sorted(diff, key=lambda x: x.name)))
    exact = [c for c in scored if c.distance == 0]
    if exact:
        out.exact = sorted(exact, key=lambda c: (c.kind not in ("edit", "revert"), c.version_id))
        return out
    low = min(c.distance for c in scored)
    near = sorted([c for c in scored if c.distance == low], key=lambda c: -c.version_id)
    if len(near) > compare_values:
        out.notes.append(f"{len(near)} versions differ in {low} tensor(s); the {compare_values} most recent "
                         "were compared by value")
    cache: dict[str, torch.Tensor | None] = {}
    for c in near[:compare_values]:
        _compare(s, d, c, cache)
    near[:compare_values] = sorted(near[:compare_values], key=lambda c: sum(x.rel_diff or 0.0 for x in c.differing))
    out.nearest = near
    return out


@torch.no_grad()
def _compare(s: Session, d: Path, c: Candidate, cache: dict) -> None:
    """Values of the differing tensors against the version's (verified checkout)."""
    s.checkout(c.version_id)
    for x in c.differing:
        if x.status != "differs" or is_state_slot(x.name):
            continue
        if x.name not in cache:
            cache[x.name] = _read_tensor(d, x.name)
        t = cache[x.name]
        ref = s.param(x.name).detach().to("cpu", torch.float64)
        if t is None or tuple(t.shape) != tuple(ref.shape):
            continue
        diff = t.to(torch.float64) - ref
        x.rel_diff = float(diff.norm() / max(float(ref.norm()), 1e-300))
        x.max_abs = float(diff.abs().max())


def describe(ident: Identification) -> list[str]:
    """The identification as lines of text (what the CLI prints)."""
    lines = [f"{ident.directory}: {ident.n_tensors} tensors, compared with base model {ident.base_model}"]
    lines += [f"  note: {n}" for n in ident.notes]
    if ident.exact:
        first, *same = ident.exact
        lines.append(f"matches version {first.version_id} exactly ({first.label}): every tensor and method "
                     "state, bit for bit")
        for c in same:
            lines.append(f"  the same weights as version {c.version_id} ({c.label})")
        return lines
    first = ident.nearest[0]
    lines.append(f"matches no version exactly. Nearest: version {first.version_id} ({first.label}), "
                 f"{first.distance} tensor(s) or state(s) differ:")
    for x in first.differing[:20]:
        how = (f"relative difference {x.rel_diff:.3g}, max |Δ| {x.max_abs:.3g}" if x.rel_diff is not None
               else x.status)
        lines.append(f"  {x.name}  {how}")
    if len(first.differing) > 20:
        lines.append(f"  … and {len(first.differing) - 20} more")
    others = [c for c in ident.nearest[1:6]]
    if others:
        lines.append("  as near: " + ", ".join(f"version {c.version_id}" for c in others)
                     + (" …" if len(ident.nearest) > 6 else ""))
    return lines
