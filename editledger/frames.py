"""pandas DataFrames of what the ledger holds: runs, a run's versions, metric trajectories, audit
findings and the survey's report. Pure conversions (no model): ``editledger.api`` calls them.

Scales are the report's JSON scales: rates are fractions in [0, 1] (the survey prints them x100),
NKL·|V| is in nats, D in nats / |Obj|.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ledger.values import against_rank
from simulator import report as rep

# report table -> attribute of Report
TABLE_ATTRS = {"Table 3: portability and generalisation": "table3", "Table 4: locality": "table4",
               "Reliability and locality (CounterFact)": "reliability", "Group metrics at the head": "head"}


@dataclass
class Report:
    """The survey's report of one or more runs as DataFrames, one row per run in each table.

    table3       Table 3, portability and generalisation: SR, RR, OH, MH, CS/CM (reverse, composite)
    table4       Table 4, locality: OA, DN, OT, Succ, D, IR, FR
    reliability  efficacy, generalisation, NS, NM, NKL·|V|, locality accuracy, retention, EW, IW, TFD
    head         the group metrics again, measured on each run's head version
    figure4      Figure 4 in long format: one row per (run, curve, number of edits); edits 0 = the base
    notes        how each column is aggregated (the report's footnote)

    Rates are fractions in [0, 1]; a metric a run did not measure is NaN. ``text()`` renders the
    report as ``editledger report`` prints it; ``plot(path)`` writes Figure 4 as a PNG."""
    table3: pd.DataFrame
    table4: pd.DataFrame
    reliability: pd.DataFrame
    head: pd.DataFrame
    figure4: pd.DataFrame
    notes: str = rep.NOTES
    _reports: list = field(default_factory=list, repr=False)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The four tables under the survey's titles."""
        return {title: getattr(self, attr) for title, attr in TABLE_ATTRS.items()}

    def text(self, fmt: str = "text") -> str:
        """The report as ``editledger report --format FMT`` prints it (text, markdown, json, csv)."""
        return rep.render(self._reports, fmt)

    def plot(self, path: str) -> list[str]:
        """Figure 4 as a PNG at ``path``; returns the panels drawn."""
        return rep.plot(self._reports, path)


def _nan(v):
    return float("nan") if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def report_frames(reports: list[rep.RunReport]) -> Report:
    """``simulator.report.collect``'s reports as a ``Report`` of DataFrames."""
    tables = {}
    for title, attr in TABLE_ATTRS.items():
        cols = rep.TABLES[title]
        rows = [{"run_id": r.run_id, "run": r.name, "method": r.method, "model": r.model, "protocol": r.protocol,
                 **{c: _nan(r.columns.get(c)) for c in cols}} for r in reports]
        tables[attr] = pd.DataFrame(rows, columns=["run_id", "run", "method", "model", "protocol", *cols]) \
            .set_index("run_id")
    fig = [{"run_id": r.run_id, "run": r.name, "method": r.method, "protocol": r.protocol, "curve": name,
            "suite": rep.CURVES[name][0], "metric": rep.CURVES[name][1], "edits": int(x), "value": float(v)}
           for name in rep.CURVES for r in reports for x, v in r.curves.get(name, [])]
    figure4 = pd.DataFrame(fig, columns=["run_id", "run", "method", "protocol", "curve", "suite", "metric",
                                         "edits", "value"])
    return Report(**tables, figure4=figure4, _reports=list(reports))


def findings_frame(findings) -> pd.DataFrame:
    """Audit findings, one row each, most damaging first per kind (the audit's order)."""
    rows = [{"version_id": f.version_id, "step": f.step, "metric": f.metric, "score": float(f.score),
             "summary": f.summary, "evidence": f.evidence} for f in findings]
    return pd.DataFrame(rows, columns=["version_id", "step", "metric", "score", "summary", "evidence"])


def trajectory_frame(ledger, run_id: int, metrics: list[tuple[str, str]], against: str | None) -> pd.DataFrame:
    """Long format: one row per (metric, version that recorded it). ``against`` None picks each
    version's value by the preference rule (plain, else against the base, else against the previous
    version); otherwise only that reference. The base model's value, where the run's reference holds
    one (general abilities), is a row at step 0."""
    run = ledger.run(run_id)
    head = {v.id for v in ledger.lineage(run.head_version_id)}
    base = ((run.config or {}).get("reference") or {}).get("base_metrics", {})
    rows = []
    for suite, metric in metrics:
        b = base.get(f"{suite}.{metric}")
        if b is not None and against in (None, "none"):
            rows.append((run_id, 0, run.start_version_id, suite, metric, "none", float(b), True))
        best: dict[int, tuple] = {}
        for vid, step, ag, value in ledger.metric_values(run_id, suite, metric):
            if against is not None and ag != against:
                continue
            cur = best.get(vid)
            if cur is None or against_rank(ag) < against_rank(cur[5]):
                best[vid] = (run_id, int(step), vid, suite, metric, ag, float(value), vid in head)
        rows += sorted(best.values(), key=lambda r: (r[1], r[2]))
    return pd.DataFrame(rows, columns=["run_id", "step", "version_id", "suite", "metric", "against", "value",
                                       "on_head"])


def runs_frame(ledger) -> pd.DataFrame:
    rows = []
    for r in ledger.runs():
        cfg = ledger.run(r.id).config or {}
        rows.append({"run_id": r.id, "name": r.name, "method": r.method, "model": r.model_name,
                     "stream": r.stream_name, "stream_kind": r.stream_kind, "status": r.status, "steps": r.steps,
                     "protocol": (cfg.get("options") or {}).get("protocol", "sequential"),
                     "head_version_id": r.head_version_id, "created_at": r.created_at, "updated_at": r.updated_at})
    return pd.DataFrame(rows, columns=["run_id", "name", "method", "model", "stream", "stream_kind", "status",
                                       "steps", "protocol", "head_version_id", "created_at", "updated_at"]) \
        .set_index("run_id")


def log_frame(ledger, run_id: int) -> pd.DataFrame:
    """Every version of the run in (step, id) order: kind, parent, whether the head's lineage holds it,
    the step's first request, its efficacy, its note."""
    run = ledger.run(run_id)
    head = {v.id for v in ledger.lineage(run.head_version_id)}
    rows = [{"version_id": t.version_id, "step": t.step, "kind": t.kind, "parent_id": t.parent_id,
             "on_head": t.version_id in head, "is_head": t.version_id == run.head_version_id,
             "n_requests": t.n_requests, "subject": t.subject, "target_old": t.target_old,
             "target_new": t.target_new, "efficacy": t.efficacy, "wall_time_s": t.wall_time_s, "note": t.note}
            for t in ledger.timeline(run_id)]
    return pd.DataFrame(rows, columns=["version_id", "step", "kind", "parent_id", "on_head", "is_head", "n_requests",
                                       "subject", "target_old", "target_new", "efficacy", "wall_time_s", "note"])
