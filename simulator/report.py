"""The survey's report layouts, rendered from the ledger alone (no torch, no transformers, no model).

* Table 3 (portability / generalisation): SR, RR, OH, MH, CS/CM for reverse and composite conflict.
* Table 4 (locality): OA, DN, OT, Succ, D, IR, FR.
* Reliability: efficacy, generalisation, NS, NM, NKL, retention (the pitfalls' baseline numbers).
* Figure 4: general abilities (downstream tasks, perplexity, fluency) against the number of edits,
  as text and as a PNG.

Aggregation, one row per run: per-step suites (SR, RR, OH, OA, DN, OT, efficacy, NS, ...) are the
mean over the steps that recorded them (each measured right after its own edit); group suites
(MH, CS, CM, Succ, D, IR, FR) and retention take their value at the run's last recorded step (they
re-measure every completed group at every version). Values are percentages as in the survey, except
NKL (nats) and perplexity.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import InputError

# column -> (suite, metric, against, how): how = "mean" over steps or "last" recorded value
TABLE3 = {
    "SR": ("portability_sr", "accuracy", "none", "mean"),
    "RR": ("portability_rr", "accuracy", "none", "mean"),
    "OH": ("portability_oh", "accuracy", "none", "mean"),
    "MH": ("multihop", "mh", "none", "last"),
    "CS rev": ("conflict", "cs_reverse", "none", "last"),
    "CM rev": ("conflict", "cm_reverse", "previous", "last"),
    "CS comp": ("conflict", "cs_composite", "none", "last"),
    "CM comp": ("conflict", "cm_composite", "previous", "last"),
}
TABLE4 = {
    "OA": ("attribute", "oa", "base", "mean"),
    "DN": ("distract", "dn", "base", "mean"),
    "OT": ("other_task", "accuracy", "none", "mean"),
    "Succ": ("round", "success", "none", "last"),
    "D": ("round", "distortion", "base", "last"),
    "IR": ("round", "ignore_rate", "base", "last"),
    "FR": ("round", "failure_rate", "base", "last"),
}
RELIABILITY = {
    "Eff top1": ("rewrite", "efficacy_top1", "none", "mean"),
    "Eff P": ("rewrite", "efficacy_prob", "none", "mean"),
    "Gen top1": ("paraphrase", "generalization_top1", "none", "mean"),
    "Gen P": ("paraphrase", "generalization_prob", "none", "mean"),
    "NS": ("neighborhood", "ns", "none", "mean"),
    "NM": ("neighborhood", "nm", "none", "mean"),
    "NKL": ("neighborhood", "nkl", "base", "mean"),
    "Loc acc": ("neighborhood", "locality_acc", "base", "mean"),
    "Retention": ("retention", "efficacy_top1", "none", "last"),
    "EW": ("multihop", "ew", "none", "last"),
    "IW": ("multihop", "iw", "none", "last"),
    "TFD": ("conflict", "tfd_composite", "previous", "last"),
}
UNSCALED = {"NKL"}          # columns not shown as percentages
# Figure 4: general abilities against the number of edits
CURVES = {
    "QA (EM)": ("downstream", "qa_em"),
    "Sentiment (acc)": ("downstream", "sentiment_acc"),
    "Reasoning (solve)": ("downstream", "reasoning_solve"),
    "Summarisation (ROUGE-1)": ("downstream", "summarization_rouge1"),
    "Summarisation (ROUGE-L)": ("downstream", "summarization_rougeL"),
    "PIQA (acc)": ("downstream", "piqa_acc"),
    "Perplexity": ("perplexity", "ppl"),
    "Fluency (n-gram entropy)": ("fluency", "ngram_entropy"),
    "Retention (efficacy)": ("retention", "efficacy_top1"),
}
TABLES = {"Table 3: portability and generalisation": TABLE3, "Table 4: locality": TABLE4,
          "Reliability and locality (CounterFact)": RELIABILITY}


@dataclass
class RunReport:
    run_id: int
    name: str
    method: str
    model: str
    stream: str
    steps: int
    columns: dict[str, float | None] = field(default_factory=dict)     # table column -> value (raw scale)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # curve -> [(step, value)]


def _dedupe(traj: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One value per step: the last recorded (a step can be re-recorded after a reset)."""
    d: dict[int, float] = {}
    for s, v in traj:
        d[s] = v
    return sorted(d.items())


def collect(ledger, run_ids: list[int]) -> list[RunReport]:
    """Read everything the layouts need from the ledger."""
    if not run_ids:
        raise InputError("no runs given: name one or more runs (ids or names) to report on")
    summaries = {r.id: r for r in ledger.runs()}
    out = []
    for rid in run_ids:
        if rid not in summaries:
            raise InputError(f"no run {rid} in this ledger: `editledger db status` lists the runs")
        s = summaries[rid]
        rep = RunReport(rid, s.name or f"run-{rid}", s.method, s.model_name, s.stream_name, s.steps)
        for table in TABLES.values():
            for col, (suite, metric, against, how) in table.items():
                traj = _dedupe(ledger.trajectory(rid, suite, metric, against))
                vals = [v for _, v in traj if not math.isnan(v)]
                if not vals:
                    rep.columns[col] = None
                else:
                    rep.columns[col] = sum(vals) / len(vals) if how == "mean" else vals[-1]
        for name, (suite, metric) in CURVES.items():
            traj = [(st, v) for st, v in _dedupe(ledger.trajectory(rid, suite, metric, "none")) if not math.isnan(v)]
            if traj:
                rep.curves[name] = traj
        out.append(rep)
    return out


def _fmt(col: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4f}" if col in UNSCALED else f"{100 * v:.2f}"


def _label(r: RunReport) -> str:
    return f"{r.name} ({r.method})"


def _table_rows(reports: list[RunReport], table: dict) -> tuple[list[str], list[list[str]]]:
    head = ["run", "method"] + list(table)
    rows = [[r.name, r.method] + [_fmt(c, r.columns.get(c)) for c in table] for r in reports]
    return head, rows


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(n) if i > 1 else str(c).ljust(n) for i, (c, n) in enumerate(zip(cells, w)))
    return "\n".join([line(head), "  ".join("-" * n for n in w)] + [line(r) for r in rows])


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _curve_rows(reports: list[RunReport]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per curve: a table with one row per step and one column per run."""
    out = []
    for name in CURVES:
        have = [r for r in reports if name in r.curves]
        if not have:
            continue
        steps = sorted({s for r in have for s, _ in r.curves[name]})
        head = ["edits"] + [_label(r) for r in have]
        rows = []
        for s in steps:
            row = [str(s)]
            for r in have:
                v = dict(r.curves[name]).get(s)
                row.append("—" if v is None else f"{v:.4f}")
            rows.append(row)
        out.append((name, head, rows))
    return out


def render(reports: list[RunReport], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(to_json(reports), indent=2)
    if fmt == "csv":
        return to_csv(reports)
    if fmt not in ("text", "markdown"):
        raise InputError(f"unknown report format {fmt!r}; use text, json, csv or markdown")
    table = _text_table if fmt == "text" else _md_table
    parts = []
    for title, cols in TABLES.items():
        head, rows = _table_rows(reports, cols)
        parts.append(("## " if fmt == "markdown" else "") + title)
        parts.append(table(head, rows))
        parts.append("")
    parts.append(("## " if fmt == "markdown" else "") +
                 "Figure 4: general abilities against the number of edits")
    curves = _curve_rows(reports)
    if not curves:
        parts.append("(no general-ability probes recorded in these runs)")
    for name, head, rows in curves:
        parts.append(("### " if fmt == "markdown" else "") + name)
        parts.append(table(head, rows))
        parts.append("")
    parts.append("Percentages except NKL (nats) and the curves (raw values). Per-step suites: mean over "
                 "steps; MH, CS, CM, Succ, D, IR, FR, retention: at the last recorded step. "
                 "CM/TFD against the intermediate model after the first edit of each pair; "
                 "OA, DN, D, IR, FR, NKL against the base model.")
    return "\n".join(parts).rstrip() + "\n"


def to_json(reports: list[RunReport]) -> dict[str, Any]:
    def clean(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    return {
        "runs": [{"run_id": r.run_id, "name": r.name, "method": r.method, "model": r.model,
                  "stream": r.stream, "steps": r.steps} for r in reports],
        "tables": {title: [dict({"run_id": r.run_id, "method": r.method},
                                **{c: clean(r.columns.get(c)) for c in cols}) for r in reports]
                   for title, cols in TABLES.items()},
        "curves": {name: {str(r.run_id): [[s, v] for s, v in r.curves[name]] for r in reports if name in r.curves}
                   for name in CURVES if any(name in r.curves for r in reports)},
        "scale": "fractions in [0, 1] (text/markdown show percentages), NKL in nats",
    }


def to_csv(reports: list[RunReport]) -> str:
    """Long format: table, run_id, run, method, column, step, value (step empty for table cells)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "run_id", "run", "method", "column", "step", "value"])
    for title, cols in TABLES.items():
        for r in reports:
            for c in cols:
                v = r.columns.get(c)
                w.writerow([title, r.run_id, r.name, r.method, c, "",
                            "" if v is None or math.isnan(v) else repr(float(v))])
    for name in CURVES:
        for r in reports:
            for s, v in r.curves.get(name, []):
                w.writerow(["Figure 4", r.run_id, r.name, r.method, name, s, repr(float(v))])
    return buf.getvalue()


def plot(reports: list[RunReport], path: str) -> list[str]:
    """Figure 4 as a PNG: one panel per general-ability curve, one line per run. Returns the panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in CURVES if any(n in r.curves for r in reports)]
    if not names:
        raise InputError("these runs recorded no general-ability probes (perplexity, downstream, fluency, "
                         "retention); replay with general-ability sets to plot Figure 4")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for r in reports:
            if name in r.curves:
                xs, ys = zip(*r.curves[name])
                ax.plot(xs, ys, marker="o", ms=3, label=_label(r))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("number of edits")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return names
