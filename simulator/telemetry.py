"""Per-step health telemetry: how hard each edit pushed the model, recorded as probe records of the
suite ``health`` so that stop conditions (``--stop-when health.cond_ratio>3``), trajectories, the
timeline, the report and the audit see it like any other measurement.

Why these numbers. Single "disabling" edits can collapse a model (Gupta et al., "Model Editing at
Scale leads to Gradual and Catastrophic Forgetting"; Yang et al., "The Butterfly Effect of Model
Editing"); collapse tracks the growth of the edited matrices' norms (ENCORE, NAS) and their
condition numbers (PRUNE), and a perplexity on a small text tracks downstream collapse (Yang et al.).
Per step, for every tensor the step changed (W: the tensor now, W0: the base, Δ: this step's delta):

    delta_norm         ‖Δ‖_F (root of the summed squares over the step's tensors)
    delta_rel          ‖Δ‖_F / ‖W0‖_F                       (max over tensors)
    drift              ‖W − W0‖_F / ‖W0‖_F, the cumulative change (max over tensors)
    weight_norm_ratio  ‖W‖_F / ‖W0‖_F                       (max over tensors)
    cond, cond_ratio   κ₂(W) and κ₂(W) / κ₂(W0)             (max over tensors)
    cond_step          κ₂(W) / κ₂(W before this step)       (max over tensors)
    key_norm           the largest key the update was solved for (ROME k*, MEMIT K's columns)
    denominator        the smallest (C⁻¹k)ᵀk (ROME eq. 2; MEMIT: the smallest eigenvalue of KᵀC⁻¹K)
    solve_cos          the smallest cos(C⁻¹k, k) (ROME; near 0 the rank-one update blows up)
    ppl, ppl_ratio     perplexity of a small fixed text (``PROXY_TEXT``), and its ratio to the base
    ppl_step           ppl / ppl of the version before
    outlier_z          the largest robust z-score of this step against the run so far (below)

Norms of stored deltas go through ``ledger.delta_norms`` (the same numbers the TUI shows).
Condition numbers (``simulator/condition.py``) are exact for matrices whose smaller side is at most
``cond_exact_max`` (the eigenvalues of the float64 Gram matrix); above that, a Lanczos estimate on
the Gram matrix (a lower bound of κ).

Outliers: the robust z-scores of ``ledger/health.py`` (torch-free, so that the
report and the audit read them from the ledger alone), against the steps before this one.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from ledger.delta_norms import sum_norm
from ledger.records import ProbeRecord
from simulator.condition import EXACT_MAX, LANCZOS_STEPS, condition_number
from simulator.deltas import EditResult, TensorDelta
from simulator.editors.base import is_state_slot
from simulator.probes import GeneralSets, ProbeRunner
from simulator.probes.general.builtin import HEALTH_PROXY_TEXT as PROXY_TEXT
from ledger.health import METRICS, NAME as SUITE, OUTCOMES, OutlierRule, outcome_z, step_z

@dataclass
class HealthConfig:
    text: str = PROXY_TEXT          # text of the perplexity proxy ("" turns the proxy off)
    ppl_window: int = 128           # tokens per perplexity window
    cond_exact_max: int = EXACT_MAX     # exact κ (float64 Gram eigenvalues) while min(rows, cols) <= this
    lanczos_steps: int = LANCZOS_STEPS  # Lanczos steps for the estimate above that size
    z_threshold: float = OutlierRule.z_threshold    # robust z above which a step is flagged
    min_history: int = OutlierRule.min_history      # earlier steps needed before a step's z is computed
    scale_floor: float = OutlierRule.scale_floor    # floor of the robust scale, in log units (a factor 1.28)


# ----------------------------------------------------------------------------- the monitor
def _np64(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t.double() if t.is_floating_point() else t).numpy()


def _dense(kind: str, factors: dict[str, torch.Tensor], shape: Sequence[int], device) -> torch.Tensor:
    """A stored delta as a float64 tensor of ``shape`` (for the base reconstruction)."""
    if kind == "low_rank":
        u, v = factors["u"].to(device, torch.float64), factors["v"].to(device, torch.float64)
        return u @ v.T
    if kind == "dense":
        return factors["delta"].to(device, torch.float64)
    if kind == "sparse":
        flat = torch.zeros(int(np.prod(shape)), dtype=torch.float64, device=device)
        flat.index_add_(0, factors["indices"].to(device, torch.long).reshape(-1),
                        factors["values"].to(device, torch.float64).reshape(-1))
        return flat.reshape(tuple(shape))
    raise ValueError(f"unknown delta kind {kind!r}")


@dataclass
class _Track:
    """What the monitor keeps per edited tensor: its base norm and κ, the κ of the last version, and
    its lineage's deltas in the compact form ``sum_norm`` takes (low-rank factors concatenated, dense
    and sparse parts summed into one dense array)."""
    shape: tuple[int, ...]
    base_norm: float
    base_cond: float
    prev_cond: float
    us: list[np.ndarray] = field(default_factory=list)
    vs: list[np.ndarray] = field(default_factory=list)
    dense: np.ndarray | None = None

    def add(self, kind: str, factors: dict[str, np.ndarray]) -> None:
        if kind == "low_rank" and len(self.shape) == 2:
            self.us.append(factors["u"])
            self.vs.append(factors["v"])
            return
        if kind == "dense":
            d = factors["delta"]
        else:   # sparse
            d = np.zeros(int(np.prod(self.shape)), dtype=np.float64)
            np.add.at(d, np.asarray(factors["indices"], dtype=np.int64).ravel(), factors["values"].ravel())
            d = d.reshape(self.shape)
        self.dense = d.astype(np.float64) if self.dense is None else self.dense + d

    def drift_norm(self) -> float:
        parts = []
        if self.us:
            parts.append((1.0, "low_rank", {"u": np.concatenate(self.us, 1), "v": np.concatenate(self.vs, 1)}))
        if self.dense is not None:
            parts.append((1.0, "dense", {"delta": self.dense}))
        return float(sum_norm(parts, self.shape) or 0.0)


def telemetry_note(editor) -> dict:
    """What a run records about its telemetry (kept in its config): on for a method that changes
    weights, skipped, with the reason, for one that does not (GRACE, IKE, SERAC)."""
    if editor.changes_weights:
        return {SUITE: "recorded with every step"}
    return {SUITE: f"not recorded: {editor.name} changes no weights (its edits live in its method state)"}


class HealthMonitor:
    """Computes a step's health records after the session applied it and before it is committed.
    One per replay (``Replayer._replay`` makes it at the head the loop starts from): the run so far
    (for the z-scores), the base perplexity and the per-tensor base norms are read back from the
    ledger, so a resumed or branched replay continues where the run was.

    The replay calls ``follow(head)`` before each edit (the version the edit is built on) and
    ``committed(version)`` after it: in the independent protocol a case's first step starts from the
    base model again, and the per-tensor tracks and the perplexity before the step follow it."""

    def __init__(self, session, run_id: int, head_version_id: int, config: HealthConfig | None = None):
        self.s, self.run_id = session, run_id
        self.cfg = config or HealthConfig()
        self._runner = (ProbeRunner(session.view, general=GeneralSets(text=self.cfg.text, ppl_window=self.cfg.ppl_window),
                                    progress=False) if self.cfg.text else None)
        self._text_sha = hashlib.sha256(self.cfg.text.encode()).hexdigest()[:16]
        self.tracks: dict[str, _Track] = {}
        self.history: list[dict[str, float]] = []     # health values of the run's earlier steps
        self.base_ppl: float | None = None
        self.prev_ppl: float | None = None
        self.seconds = 0.0                            # what the last step's telemetry cost
        self._head = head_version_id
        self._load(head_version_id)

    # ---- starting from a head
    def _load(self, head: int) -> None:
        led = self.s.ledger
        rows = led.lineage_deltas(head)
        seen = set()
        for v, _, _ in rows:
            if v.kind in ("edit", "revert"):
                seen.add(v.id)
                self._remember(led.probes(v.id, SUITE), on_lineage=True)
        for v in led.versions(self.run_id):         # the independent protocol's other cases
            if v.kind == "edit" and v.id not in seen:
                self._remember(led.probes(v.id, SUITE), on_lineage=False)
        self._init_tracks(rows)
        if self._runner is not None and self.base_ppl is None:
            self.base_ppl = self._base_ppl(head)
        if self.prev_ppl is None:
            self.prev_ppl = self.base_ppl

    def _remember(self, probes, on_lineage: bool) -> None:
        recs = [p for p in probes if p.against == "none"]
        if recs:
            self.history.append({p.metric: float(p.value) for p in recs})
        for p in recs:
            if p.metric == "ppl" and isinstance(p.detail, dict) and p.detail.get("text_sha") == self._text_sha:
                self.base_ppl = p.detail.get("base", self.base_ppl)
                if on_lineage:
                    self.prev_ppl = float(p.value)

    def follow(self, head: int) -> None:
        """The next edit is built on ``head`` (live in the session): if that is not the version the
        monitor last saw, take its tensors' tracks and its perplexity from the ledger."""
        if head == self._head:
            return
        led = self.s.ledger
        rows = led.lineage_deltas(head)
        self.tracks = {}
        self._init_tracks(rows)
        self.prev_ppl = self.base_ppl
        for v, _, _ in rows:
            for p in led.probes(v.id, SUITE):
                if p.metric == "ppl" and p.against == "none":
                    self.prev_ppl = float(p.value)
        self._head = head

    def committed(self, version_id: int) -> None:
        """The step just measured was committed as ``version_id`` (the next edit's parent, usually)."""
        self._head = version_id

    def _init_tracks(self, rows) -> None:
        """Tensors the lineage already changed: their deltas so far, base norm and κ (W0 = W − ΣΔ)."""
        parts: dict[str, list] = {}
        for _, drows, _ in rows:
            for r in drows:
                if r.kind in ("low_rank", "dense", "sparse") and not is_state_slot(r.tensor):
                    parts.setdefault(r.tensor, []).append((r.kind, self.s.ledger.read_artifact(r.artifact_digest), r.shape))
        for name, ps in parts.items():
            W = self.s.param(name)
            if W.dim() != 2:
                continue
            D = sum(_dense(k, f, shape, W.device) for k, f, shape in ps)
            tr = self._new_track(name, W.detach().to(torch.float64) - D, now=W)
            for k, f, _ in ps:
                tr.add(k, {n: _np64(t) for n, t in f.items()})

    def _new_track(self, name: str, base: torch.Tensor, now: torch.Tensor | None = None) -> _Track:
        """Track ``name`` from its base value; ``now``: its value at the version before the step (the
        base itself when None)."""
        cfg = self.cfg
        bc, _ = condition_number(base, exact_max=cfg.cond_exact_max, lanczos_steps=cfg.lanczos_steps)
        nc = bc if now is None else condition_number(now, exact_max=cfg.cond_exact_max,
                                                     lanczos_steps=cfg.lanczos_steps)[0]
        tr = _Track(shape=tuple(base.shape), base_norm=float(base.norm()), base_cond=bc, prev_cond=nc)
        self.tracks[name] = tr
        return tr

    def _base_ppl(self, head: int) -> float | None:
        """The proxy's perplexity on the base weights: measured now if the base is live, else by a
        checkout of the base and back (before the first edit of this replay: nothing is uncommitted)."""
        s = self.s
        if s.current_version_id == s.base_version_id:
            return self._ppl()
        s.checkout(s.base_version_id)
        try:
            return self._ppl()
        finally:
            s.checkout(head)

    def _ppl(self) -> float:
        return float(self._runner.reference([])["base_metrics"]["perplexity.ppl"])

    # ---- one step
    @torch.no_grad()
    def step(self, result: EditResult) -> list[ProbeRecord]:
        """The health records of the step the session has just applied (``result``: the editor's)."""
        t0 = time.perf_counter()
        vals: dict[str, float] = {}
        recs: list[ProbeRecord] = []

        def rec(metric, value, count=1, detail=None):
            assert metric in METRICS, f"health metric {metric!r} is not named in ledger/health.py"
            if value is not None and math.isfinite(value):
                vals[metric] = float(value)
                recs.append(ProbeRecord(SUITE, metric, float(value), count, detail))

        recs_w = self._weights(result.deltas)
        if recs_w:
            per = recs_w
            rec("delta_norm", math.sqrt(sum(p["delta_norm"] ** 2 for p in per)), len(per), per)
            for m in ("delta_rel", "drift", "weight_norm_ratio", "cond", "cond_ratio", "cond_step"):
                rec(m, max(p[m] for p in per), len(per))
        key_norm, denom, cos = _solve_diagnostics(result.diagnostics)
        rec("key_norm", key_norm)
        rec("denominator", denom)
        rec("solve_cos", cos)
        ppl_detail: dict = {"base": self.base_ppl, "text_sha": self._text_sha}
        if self._runner is not None:
            ppl = self._ppl()
            rec("ppl", ppl, 1, ppl_detail)
            if self.base_ppl:
                rec("ppl_ratio", ppl / self.base_ppl)
            if self.prev_ppl:
                rec("ppl_step", ppl / self.prev_ppl)
            self.prev_ppl = ppl
        z = step_z(self.history, vals, self.cfg)
        worst = outcome_z(z)
        if math.isfinite(worst):
            flagged = sorted(k for k, v in z.items() if k in OUTCOMES and v > self.cfg.z_threshold)
            rec("outlier_z", worst, len(self.history), {"z": z, "flagged": flagged, "threshold": self.cfg.z_threshold})
        self.history.append(vals)
        self.seconds = time.perf_counter() - t0
        return recs

    def _weights(self, deltas: Iterable[TensorDelta]) -> list[dict]:
        """Per tensor the step changed: the numbers of the module docstring."""
        cfg = self.cfg
        by_t: dict[str, list[TensorDelta]] = {}
        for d in deltas:
            by_t.setdefault(d.tensor, []).append(d)
        out = []
        for name, ds in sorted(by_t.items()):
            W = self.s.param(name)
            if W.dim() != 2:
                continue
            if name not in self.tracks:     # first change of this tensor in the lineage: W0 = W − Δ
                D = sum(_dense(d.kind, d.factors, W.shape, W.device) for d in ds)
                self._new_track(name, W.detach().to(torch.float64) - D)
            tr = self.tracks[name]
            step_parts = [(1.0, d.kind, {k: _np64(t) for k, t in d.factors.items()}) for d in ds]
            step_norm = float(sum_norm(step_parts, tr.shape) or 0.0)
            for _, kind, f in step_parts:
                tr.add(kind, f)
            cond, how = condition_number(W, exact_max=cfg.cond_exact_max, lanczos_steps=cfg.lanczos_steps)
            bn = tr.base_norm or float("nan")
            out.append({"tensor": name, "delta_norm": step_norm, "delta_rel": step_norm / bn,
                        "drift": tr.drift_norm() / bn,
                        "weight_norm_ratio": float(W.detach().to(torch.float64).norm()) / bn,
                        "cond": cond, "cond_ratio": cond / tr.base_cond, "cond_step": cond / tr.prev_cond,
                        "cond_method": how, "base_norm": tr.base_norm, "base_cond": tr.base_cond})
            tr.prev_cond = cond
        return out


def _solve_diagnostics(diag: dict) -> tuple[float | None, float | None, float | None]:
    """(largest key norm, smallest denominator, smallest solve cosine) from an editor's diagnostics:
    ROME's per-request entries, MEMIT's per-layer entries; None where the method reports none."""
    rows = [r for key in ("requests", "layers_detail") for r in (diag or {}).get(key, []) or []
            if isinstance(r, dict)]

    def pick(name, f):
        xs = [float(r[name]) for r in rows if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
        return f(xs) if xs else None
    return pick("key_norm", max), pick("denominator", min), pick("solve_cos", min)
