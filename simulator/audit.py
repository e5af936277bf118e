"""Audit: name the edits that caused a degradation, with evidence.

Three kinds of evidence, all read from the ledger (no model needed):

* **forgetting** — from the retention probes' per-edit detail: for every earlier edit that the head
  no longer holds, the step at which it was last lost (held at the version before, lost at the
  version after). A step that knocks out several earlier edits is a prime suspect.
* **decline** of a cumulative metric (perplexity, downstream tasks, fluency, retention): the total
  change from the base to the head is split into the per-step changes along the head's lineage;
  the steps that account for most of it are named with their share.
* **leak** — an edit whose own locality probes (neighbourhood, other attributes, distractors)
  moved away from the base model more than a threshold; the prompts that flipped are the evidence.

With the model (``verify``), each suspect is then tested counterfactually: the head's weights
rebuilt *without* that step's delta and re-measured. The recovered fraction of the degradation is
recorded beside the ledger evidence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from simulator.probes import ProbeRunner
from simulator.requests import Step

# cumulative metrics and their direction (True: higher is better)
CUMULATIVE = {
    ("retention", "efficacy_top1"): True,
    ("perplexity", "ppl"): False,
    ("fluency", "ngram_entropy"): True,
}
CUMULATIVE_SUITES = {"downstream": True}
# per-edit locality metrics, recorded against the base as (current - base)
LEAK = {("neighborhood", "ns"): True, ("attribute", "accuracy"): True, ("distract", "accuracy"): True,
        ("neighborhood", "locality_acc"): True, ("attribute", "locality_acc"): True,
        ("distract", "locality_acc"): True}


@dataclass
class Finding:
    version_id: int
    step: int
    metric: str             # "suite.metric" or "retention.forgetting"
    score: float            # how much of the degradation this step accounts for (0..1), or the size of a leak
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"version_id": self.version_id, "metric": self.metric, "score": float(self.score),
                "summary": self.summary, "evidence": {"step": self.step, **self.evidence}}


def _head_edits(ledger, run_id: int):
    run = ledger.run(run_id)
    return [v for v in ledger.lineage(run.head_version_id) if v.run_id == run_id and v.kind in ("edit", "revert")]


def _edit_label(ledger, version_id: int) -> str:
    reqs = ledger.edit_requests(version_id)
    if not reqs:
        return "(no request)"
    r = reqs[0]
    more = f" (+{len(reqs) - 1} more)" if len(reqs) > 1 else ""
    return f"{r.subject}: {(r.target_old or '?').strip()} → {r.target_new.strip()}{more}"


def _series(ledger, versions, suite: str, metric: str) -> list[tuple[Any, float]]:
    out = []
    for v in versions:
        for p in ledger.probes(v.id, suite):
            if p.metric == metric and p.against == "none":
                out.append((v, float(p.value)))
                break
    return out


def forgetting(ledger, run_id: int, versions=None) -> list[Finding]:
    versions = versions if versions is not None else _head_edits(ledger, run_id)
    held: dict[int, bool] = {}            # edit step -> held at the previous version
    lost_at: dict[int, tuple[Any, float, float]] = {}
    p_new: dict[int, float] = {}
    for v in versions:
        rows = next((p.detail for p in ledger.probes(v.id, "retention")
                     if p.metric == "efficacy_top1" and p.against == "none"), None)
        if not rows:
            continue
        for row in rows:
            j, now = int(row["step"]), float(row["top1"])
            if j >= v.step:
                continue
            if held.get(j, (row.get("at_edit") or 0) >= 0.5) and now < 0.5:
                lost_at[j] = (v, p_new.get(j, float("nan")), float(row.get("p_new", float("nan"))))
            elif now >= 0.5:
                lost_at.pop(j, None)       # regained: not lost at the head
            held[j] = now >= 0.5
            p_new[j] = float(row.get("p_new", float("nan")))
    # an edit overwritten on purpose (the back half of a round edit, a later edit of the same
    # subject and relation) is superseded, not forgotten
    steps_to_vid = {v.step: v.id for v in versions}
    facts = {v.id: {(r.subject, r.prompt) for r in ledger.edit_requests(v.id)} for v in versions}
    for j in list(lost_at):
        if j in steps_to_vid and any(facts[steps_to_vid[j]] & facts[v.id] for v in versions if v.step > j):
            del lost_at[j]
    by_step: dict[int, list[int]] = {}
    for j, (v, *_r) in lost_at.items():
        by_step.setdefault(v.id, []).append(j)
    total = max(1, len(lost_at))
    vmap = {v.id: v for v in versions}
    out = []
    for vid, js in sorted(by_step.items(), key=lambda kv: -len(kv[1])):
        v = vmap[vid]
        forgotten = [{"edit_step": j, "edit": _edit_label(ledger, steps_to_vid[j]) if j in steps_to_vid else "?",
                      "p_new_before": lost_at[j][1], "p_new_after": lost_at[j][2]} for j in sorted(js)]
        out.append(Finding(vid, v.step, "retention.forgetting", len(js) / total,
                           f"step {v.step} ({_edit_label(ledger, vid)}) made the model forget "
                           f"{len(js)} earlier edit(s): steps {', '.join(map(str, sorted(js)))}",
                           {"forgotten": forgotten, "lost_at_head": len(lost_at)}))
    return out


def decline(ledger, run_id: int, suite: str, metric: str, higher_is_better: bool, versions=None,
            base_value: float | None = None, min_total: float = 1e-9, cover: float = 0.8) -> list[Finding]:
    """Split the base→head change of a cumulative metric into per-step changes; name the steps
    that account for ``cover`` of the decline."""
    versions = versions if versions is not None else _head_edits(ledger, run_id)
    series = _series(ledger, versions, suite, metric)
    if not series:
        return []
    sign = -1.0 if higher_is_better else 1.0          # badness = sign * value
    start = base_value if base_value is not None else None
    points = ([(None, start)] if start is not None else []) + series
    incs = []
    for (v0, a), (v1, b) in zip(points, points[1:]):
        incs.append((v1, sign * (b - a), a, b))
    total = sum(i for _, i, _, _ in incs)
    if total <= min_total:
        return []
    out, acc = [], 0.0
    for v, inc, a, b in sorted(incs, key=lambda x: -x[1]):
        if inc <= 0 or acc >= cover * total:
            break
        acc += inc
        out.append(Finding(v.id, v.step, f"{suite}.{metric}", inc / total,
                           f"step {v.step} ({_edit_label(ledger, v.id)}) moved {suite}.{metric} "
                           f"{a:.4g} → {b:.4g}: {100 * inc / total:.0f}% of the decline from "
                           f"{points[0][1]:.4g} to {points[-1][1]:.4g}",
                           {"before": a, "after": b, "share": inc / total,
                            "first": points[0][1], "head": points[-1][1],
                            "delta_norm": sum(d.norm for d in ledger.deltas(v.id))}))
    return out


def leaks(ledger, run_id: int, versions=None, threshold: float = 0.2) -> list[Finding]:
    """Edits whose own locality probes dropped by more than ``threshold`` against the base."""
    versions = versions if versions is not None else _head_edits(ledger, run_id)
    out = []
    for v in versions:
        for p in ledger.probes(v.id):
            if (p.suite, p.metric) not in LEAK or p.against != "base" or p.value > -threshold:
                continue
            absolute = next((q for q in ledger.probes(v.id, p.suite) if q.metric == p.metric and q.against == "none"), None)
            flipped = []
            for d in (absolute.detail or []) if absolute is not None and isinstance(absolute.detail, list) else []:
                if isinstance(d, dict) and "p_base" in d and "top1" in d and not d["top1"]:
                    flipped.append({k: d[k] for k in ("prompt", "target", "p", "p_base", "alt", "p_alt") if k in d})
            out.append(Finding(v.id, v.step, f"{p.suite}.{p.metric}", -p.value,
                               f"step {v.step} ({_edit_label(ledger, v.id)}) leaked into {p.suite}: "
                               f"{p.metric} fell by {-p.value:.2f} against the base",
                               {"change_vs_base": p.value, "prompts_not_kept": flipped[:10]}))
    return out


def audit_run(ledger, run_id: int) -> list[Finding]:
    """Every ledger-only finding for the run's head lineage, most damaging first per kind."""
    versions = _head_edits(ledger, run_id)
    ref = (ledger.run(run_id).config or {}).get("reference", {}) or {}
    base_metrics = ref.get("base_metrics", {})
    findings = forgetting(ledger, run_id, versions)
    for suite, metric in ledger.metrics(run_id):
        hib = CUMULATIVE.get((suite, metric), CUMULATIVE_SUITES.get(suite))
        if hib is None or (suite, metric) == ("retention", "efficacy_top1"):
            continue
        findings += decline(ledger, run_id, suite, metric, hib, versions,
                            base_value=base_metrics.get(f"{suite}.{metric}"))
    findings += leaks(ledger, run_id, versions)
    return findings


def verify(session, run_id: int, findings: list[Finding], progress: bool = True) -> list[Finding]:
    """Counterfactual check with the model: make the head without each suspect step live (through
    the session: weights and method state, no editor re-run), re-measure, and record how much of the
    degradation that recovers."""
    led = session.ledger
    run = led.run(run_id)
    cfg = run.config or {}
    steps = [Step.from_dict(d) for d in cfg.get("stream", [])]
    first = int(cfg.get("first_step", 1))
    runner = ProbeRunner(session.view)
    edits = _head_edits(led, run_id)
    if not edits or not steps:
        return findings
    head_idx = max(1, min(edits[-1].step - first + 1, len(steps)))
    session.checkout(run.head_version_id)
    head_records, _ = runner.measure(step_index=head_idx, steps=steps, reference=cfg.get("reference", {}),
                                     previous=None, final=True)
    for f in tqdm(findings, desc="verifying suspects", disable=not progress):
        session.materialise(run.head_version_id, without={f.version_id})
        recs, _ = runner.measure(step_index=head_idx, steps=steps, reference=cfg.get("reference", {}),
                                 previous=None, final=True)
        suite, metric = f.metric.split(".", 1)
        if f.metric == "retention.forgetting":
            suite, metric = "retention", "efficacy_top1"
        with_v = _plain(head_records, suite, metric)
        without_v = _plain(recs, suite, metric)
        if with_v is not None and without_v is not None:
            f.evidence["counterfactual"] = {"metric": f"{suite}.{metric}", "head": with_v, "head_without_step": without_v}
    session.checkout(run.head_version_id)
    return findings


def _plain(records, suite, metric):
    """The plain value (against "none") of suite.metric: the counterfactual compares like with like."""
    return next((float(r.value) for r in records if r.suite == suite and r.metric == metric and r.against == "none"), None)
