"""Audit: name the edits that caused a degradation, with evidence.

Four kinds of evidence, all read from the ledger (no model needed):

* **forgetting** — from the retention probes' per-edit detail: for every earlier edit that the head
  no longer holds, the step at which it was last lost (held at the version before, lost at the
  version after). A step that knocks out several earlier edits is a prime suspect.
* **decline** of a cumulative metric (perplexity, downstream tasks, fluency, retention): the total
  change from the base to the head is split into the per-step changes along the head's lineage;
  the steps that account for most of it are named with their share.
* **leak** — an edit whose own locality probes (neighbourhood, other attributes, distractors)
  moved away from the base model more than a threshold; the prompts that flipped are the evidence.
* **health** — the per-step telemetry (``simulator/telemetry.py``): steps whose update size,
  condition-number jump or perplexity jump is an outlier against the rest of the run (a possible
  disabling edit).

``rank_suspects`` folds these into one ranking: a step's score is its share of the decline of a
general ability that is degraded beyond the tolerance, or its telemetry flag (z / 2·threshold, up to
1), whichever is larger; 0.5 and above is "above the threshold".

With the model, ``verify`` re-measures each suspect's metric on the head *without* that step
(through the session: weights and method state, no editor re-run), and
``simulator.audit_search.investigate`` searches for the steps that explain the degradation
(bisection, group testing, pairs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ledger.errors import InputError
from ledger.health import OutlierRule, describe_z, flag_outliers, outcome_z, recorded
from simulator.audit_search import (DEFAULT_TOLERANCE, MIN_ITEMS, default_tolerance_condition, measurer,
                                    recorded_base)
from simulator.probes import STATE_KEY as PROBE_STATE
from simulator.probes import ProbeRunner
from simulator.probes import items as I
from simulator.probes import metrics as M
from simulator.requests import Step

# cumulative metrics and their direction (True: higher is better)
CUMULATIVE = {
    ("retention", "efficacy_top1"): True,
    ("perplexity", "ppl"): False,
    ("fluency", "ngram_entropy"): True,
    ("health", "ppl"): False,                  # the telemetry's perplexity proxy
}
CUMULATIVE_SUITES = {"downstream": True}
LOG_DECLINE = {("perplexity", "ppl"), ("health", "ppl")}   # declines split in log space
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


def head_edits(ledger, run_id: int):
    """The run's edit and revert versions on its head's lineage, oldest first (what an audit leaves out)."""
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
    """Earlier edits the head no longer holds, each named at the step where it was last lost, with the
    probability of its new target right before that step (``p_new_before``, measured at
    ``p_new_before_step``) and right after (``p_new_after``)."""
    versions = versions if versions is not None else head_edits(ledger, run_id)
    held: dict[int, bool] = {}            # edit step -> held at the previous measurement
    lost_at: dict[int, tuple[Any, dict]] = {}
    p_new: dict[int, tuple[float, int]] = {}    # edit step -> (p_new, step it was measured at)
    parent_of = {v.id: v.parent_id for v in versions}
    for v in versions:
        rows = next((p.detail for p in ledger.probes(v.id, "retention")
                     if p.metric == "efficacy_top1" and p.against == "none"), None)
        if not rows:
            continue
        for row in rows:
            j, now = int(row["step"]), float(row["top1"])
            if j >= v.step:
                continue
            after = _finite(row.get("p_new"))
            if held.get(j, (row.get("at_edit") or 0) >= 0.5) and now < 0.5:
                before = p_new.get(j) or _p_new_from_state(ledger, parent_of.get(v.id), j)
                lost_at[j] = (v, _p_new_evidence(before, after, j))
            elif now >= 0.5:
                lost_at.pop(j, None)       # regained: not lost at the head
            held[j] = now >= 0.5
            if after is not None:
                p_new[j] = (after, v.step)
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
                      **lost_at[j][1]} for j in sorted(js)]
        out.append(Finding(vid, v.step, "retention.forgetting", len(js) / total,
                           f"step {v.step} ({_edit_label(ledger, vid)}) made the model forget "
                           f"{len(js)} earlier edit(s): steps {', '.join(map(str, sorted(js)))}",
                           {"forgotten": forgotten, "lost_at_head": len(lost_at)}))
    return out


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _p_new_from_state(ledger, version_id: int | None, j: int) -> tuple[float, int] | None:
    """(p_new, step) of edit step ``j``'s edit prompts at the latest version at or above
    ``version_id`` (back to step j's own version) whose probe state holds their raw scores: the replay
    scores a step's rewrite prompts right after its edit, and again wherever retention is measured.
    None when no such version is found."""
    while version_id is not None:
        v = ledger.version(version_id)
        if v.step < j:
            return None
        scores = ((v.diagnostics or {}).get(PROBE_STATE) or {}).get("scores") or {}
        mine = sorted(k for k in scores if k.startswith(f"{j}/rewrite/") and k.endswith("/t"))
        if mine:
            return M.mean(I.prob(scores[k]) for k in mine), v.step
        version_id = v.parent_id
    return None


def _p_new_evidence(before: tuple[float, int] | None, after: float | None, j: int) -> dict:
    """The probabilities of a forgotten edit's new target around the step that lost it; a value the
    ledger does not hold is left out, with the reason (never NaN)."""
    out: dict[str, Any] = {}
    if before is not None:
        out.update(p_new_before=before[0], p_new_before_step=before[1])
    else:
        out["p_new_before_missing"] = (f"no version between step {j} and the step that lost it kept the raw "
                                       f"scores of step {j}'s edit prompts")
    if after is not None:
        out["p_new_after"] = after
    return out


def decline(ledger, run_id: int, suite: str, metric: str, higher_is_better: bool, versions=None,
            base_value: float | None = None, min_total: float = 1e-9, cover: float = 0.8,
            log: bool = False) -> list[Finding]:
    """Split the base→head change of a cumulative metric into per-step changes; name the steps
    that account for ``cover`` of the decline. ``log``: split the change of log(value) instead
    (perplexity: a step that doubles it counts the same at 10 as at 1000)."""
    versions = versions if versions is not None else head_edits(ledger, run_id)
    series = _series(ledger, versions, suite, metric)
    if not series:
        return []
    sign = -1.0 if higher_is_better else 1.0          # badness = sign * value
    start = base_value if base_value is not None else None
    points = ([(None, start)] if start is not None else []) + series
    if log and any(x <= 0 for _, x in points):
        log = False
    f = math.log if log else (lambda x: x)
    incs = []
    first_step = versions[0].step if versions else 1
    for (v0, a), (v1, b) in zip(points, points[1:]):
        since = v0.step + 1 if v0 is not None else first_step
        incs.append((v1, sign * (f(b) - f(a)), a, b, since))
    total = sum(x[1] for x in incs)
    if total <= min_total:
        return []
    out, acc = [], 0.0
    for v, inc, a, b, since in sorted(incs, key=lambda x: -x[1]):
        if inc <= 0 or acc >= cover * total:
            break
        acc += inc
        # a metric measured every k steps moves over a window of k steps: the window is the evidence
        who = (f"step {v.step} ({_edit_label(ledger, v.id)})" if since >= v.step else
               f"steps {since}–{v.step} (measured together; the last: {_edit_label(ledger, v.id)})")
        out.append(Finding(v.id, v.step, f"{suite}.{metric}", inc / total,
                           f"{who} moved {suite}.{metric} {a:.4g} → {b:.4g}: {100 * inc / total:.0f}% of the "
                           f"decline from {points[0][1]:.4g} to {points[-1][1]:.4g}",
                           {"before": a, "after": b, "share": inc / total, "window": [since, v.step],
                            "first": points[0][1], "head": points[-1][1],
                            "delta_norm": sum(d.norm for d in ledger.deltas(v.id))}))
    return out


def leaks(ledger, run_id: int, versions=None, threshold: float = 0.2) -> list[Finding]:
    """Edits whose own locality probes dropped by more than ``threshold`` against the base."""
    versions = versions if versions is not None else head_edits(ledger, run_id)
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


def health_findings(ledger, run_id: int, versions=None, config: OutlierRule | None = None) -> list[Finding]:
    """Steps the health telemetry flags against the whole run (every other step of the head's
    lineage): a possible disabling edit, with the z-scores and the recorded numbers as evidence."""
    cfg = config or OutlierRule()
    versions = versions if versions is not None else head_edits(ledger, run_id)
    rec = recorded(ledger, run_id)
    per_step = [(v, rec[v.id][1]) for v in versions if v.id in rec]
    values = {v.id: vals for v, vals in per_step}
    out = []
    for v, z in flag_outliers(per_step, cfg):
        vals = values[v.id]
        seen = {k: vals[k] for k in ("delta_rel", "cond_step", "cond_ratio", "ppl_step", "ppl_ratio", "key_norm",
                                    "denominator") if k in vals}
        out.append(Finding(v.id, v.step, "health.outlier", outcome_z(z),
                           f"step {v.step} ({_edit_label(ledger, v.id)}) is a possible disabling edit: "
                           f"{describe_z(z, cfg.z_threshold)}", {"z": z, "values": seen, "threshold": cfg.z_threshold}))
    return out


def independent(ledger, run_id: int) -> bool:
    """Whether the run was replayed with the independent protocol (every case from the base model)."""
    return ((ledger.run(run_id).config or {}).get("options") or {}).get("protocol") == "independent"


def audit_run(ledger, run_id: int, tolerance: float = DEFAULT_TOLERANCE) -> list[Finding]:
    """Every ledger-only finding for the run's head lineage, most damaging first per kind. A decline
    carries ``degraded``: whether its metric at the head is beyond ``tolerance`` of the base. A run
    of the independent protocol has no lineage of edits to decline along (every case starts from the
    base model): its findings are its cases' leaks and the telemetry's outliers among all its steps."""
    if independent(ledger, run_id):
        every = [v for v in ledger.versions(run_id) if v.kind == "edit"]
        return leaks(ledger, run_id, every) + health_findings(ledger, run_id, every)
    versions = head_edits(ledger, run_id)
    findings = forgetting(ledger, run_id, versions)
    for suite, metric in ledger.metrics(run_id):
        hib = CUMULATIVE.get((suite, metric), CUMULATIVE_SUITES.get(suite))
        if hib is None or (suite, metric) == ("retention", "efficacy_top1"):
            continue
        base = recorded_base(ledger, run_id, versions, suite, metric)
        found = decline(ledger, run_id, suite, metric, hib, versions, base_value=base,
                        log=(suite, metric) in LOG_DECLINE)
        if found and base is not None and suite != "retention":
            cond = default_tolerance_condition(suite, metric, tolerance)
            count = next((int(p.count) for p in ledger.probes(versions[-1].id, suite)
                          if p.metric == metric and p.against == "none"), 0)
            # a small downstream set moves in coarse steps (one answer of 8 is 12 %): evidence, not a degradation
            degraded = cond.triggered(found[0].evidence["head"], base) and (suite != "downstream" or count >= MIN_ITEMS)
            for f in found:
                f.evidence.update(degraded=degraded, condition=cond.text)
        findings += found
    findings += leaks(ledger, run_id, versions)
    findings += health_findings(ledger, run_id, versions)
    return findings


@dataclass
class Suspect:
    version_id: int
    step: int
    label: str
    score: float                                   # 0..1; 0.5 and above: above the threshold
    reasons: list[str] = field(default_factory=list)


def rank_suspects(ledger, findings: list[Finding], z_threshold: float = OutlierRule.z_threshold) -> list[Suspect]:
    """Steps ranked by how much of a degraded general ability they account for (their share of its
    decline, where the metric was measured right before and after the step) and by their telemetry
    flag (z / 2·threshold, at most 1). Forgetting and leaks are about single facts, not general
    abilities: they are findings, not suspects; so is a decline over several steps measured together."""
    by: dict[int, Suspect] = {}
    for f in findings:
        if f.metric == "health.outlier":
            sc = min(1.0, f.score / (2 * z_threshold))
            why = f"telemetry: {describe_z(f.evidence['z'], z_threshold)}"
        elif f.evidence.get("degraded") and f.evidence["window"][0] == f.step:
            sc = min(1.0, f.score)      # a step can move more than the whole decline (later steps undo some)
            why = f"{100 * f.score:.0f}% of the {f.metric} decline ({f.evidence['before']:.4g} → {f.evidence['after']:.4g})"
        else:
            continue
        s = by.setdefault(f.version_id, Suspect(f.version_id, f.step, _edit_label(ledger, f.version_id), 0.0))
        s.score = max(s.score, sc)
        s.reasons.append(why)
    return sorted(by.values(), key=lambda x: (-x.score, x.step))


def verify(session, run_id: int, findings: list[Finding], progress: bool = True, general=None,
           limit: int | None = None) -> list[Finding]:
    """Counterfactual check with the model: the head without each suspect step (through the session:
    weights and method state, no editor re-run), re-measured on the finding's own metric (a leak: its
    step's locality probes; forgetting: the efficacy of the edits it made the model forget; a decline
    or a telemetry flag: that metric, or the health perplexity proxy). One materialisation per suspect step; ``limit`` verifies the first n
    suspect steps in the findings' order."""
    led = session.ledger
    run = led.run(run_id)
    cfg = run.config or {}
    first = int(cfg.get("first_step", 1))
    head = run.head_version_id
    by_version: dict[int, list[Finding]] = {}
    for f in findings:
        by_version.setdefault(f.version_id, []).append(f)
    vids = list(by_version)[:limit] if limit else list(by_version)
    meters: dict[tuple, Any] = {}
    at_head: dict[tuple, float | None] = {}

    def key_of(f: Finding) -> tuple:
        if f.metric == "retention.forgetting":      # the forgotten edits' own prompts, not all of retention
            return "forgotten", "efficacy_top1", tuple(g["edit_step"] for g in f.evidence.get("forgotten", []))
        if f.metric == "health.outlier":
            return "health", "ppl", None
        suite, metric = f.metric.split(".", 1)
        if (suite, metric) in LEAK:
            return suite, metric, f.step - first + 1
        return suite, metric, None

    def value(key) -> float | None:
        if key not in meters:
            try:
                meters[key] = (_forgotten_meter(session, cfg, key[2]) if key[0] == "forgotten" else
                               measurer(session, run_id, key[0], key[1], general=general, step_index=key[2]))
            except InputError:
                meters[key] = None
        return None if meters[key] is None else meters[key]()

    needed = sorted({key_of(f) for vid in vids for f in by_version[vid]}, key=str)
    session.checkout(head)
    for key in needed:
        at_head[key] = value(key)
    for vid in tqdm(vids, desc="verifying suspects", disable=not progress):
        session.materialise(head, without={vid})
        for f in by_version[vid]:
            key = key_of(f)
            if at_head.get(key) is None:
                continue
            without = value(key)
            name = (f"efficacy of the forgotten edits (steps {', '.join(map(str, key[2]))})"
                    if key[0] == "forgotten" else f"{key[0]}.{key[1]}")
            f.evidence["counterfactual"] = {"metric": name, "head": at_head[key], "head_without_step": without}
    session.checkout(head)
    return findings


def _forgotten_meter(session, cfg: dict, edit_steps: tuple[int, ...]):
    """The mean top-1 efficacy of the given edit steps' own rewrite prompts on the live model: do the
    edits a step made the model forget come back without it?"""
    first = int(cfg.get("first_step", 1))
    stream = [Step.from_dict(d) for d in cfg.get("stream", [])]
    mine = [stream[j - first] for j in edit_steps if 0 <= j - first < len(stream)]
    if not mine:
        raise InputError("the run stores no stream items for the forgotten edits")
    runner = ProbeRunner(session.view, progress=False)
    return lambda: sum(runner.efficacy(st) for st in mine) / len(mine)
