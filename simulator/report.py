"""The survey's report layouts, rendered from the ledger alone (no torch, no transformers, no model).

* Table 3 (portability / generalisation): SR, RR, OH, MH, CS/CM for reverse and composite conflict.
* Table 4 (locality): OA, DN, OT, Succ, D, IR, FR.
* Reliability: efficacy, generalisation, NS, NM, NKL, retention, EW, IW, TFD.
* Group metrics at the head: every case measured again on the run's last version.
* Health telemetry: per run, how far the edits pushed the weights (update size, drift, condition
  number, the perplexity proxy) and the steps whose outcome is an outlier against the run's other
  steps (a possible disabling edit; ``ledger/health.py``).
* Figure 4: general abilities against the number of edits (requests), the base at 0 edits; as
  text and as a PNG.

Every table names the run's protocol (``run.config["options"]["protocol"]``): *sequential* (each
step on the model as edited so far; the default) or *independent* (each case from the base model,
the survey's setting for Tables 3-4).

Aggregation, one row per run. A metric's value at a version is read by the preference rule
(``ledger.values``: plain value, else against the base, else against the previous version).
Per-step suites (SR, RR, OH, OA, DN, OT, efficacy, NS, ...) are the mean over the steps that
recorded them, each measured right after its own edit. Group suites (MH, CS, CM, TFD, Succ, D, IR,
FR, EW, IW) are the mean over the cases, each recorded at the step where its case completed.
Retention is its value at the last recorded step. Values are percentages as in the survey, except
NKL·|V| (nats) and the curves.

``recompute=True`` reads no stored value: every metric is recomputed from the raw scores the
ledger kept (simulator/probes/recompute.py).
"""
from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ledger.errors import InputError
from ledger.values import AGAINST_ORDER, preferred
from simulator.probes.recompute import recompute_run
from simulator.probes.suites import HEAD
from ledger.health import NAME as HEALTH, OutlierRule, describe_z, flag_outliers, outcome_z

SEQUENTIAL, INDEPENDENT = "sequential", "independent"
PROTOCOL_TEXT = {SEQUENTIAL: "each case measured on the model as edited so far",
                 INDEPENDENT: "each case from the base model (the survey's setting)"}

# column -> (suite, metric, how): "step" mean over steps, "case" mean over completed cases, "last" value
TABLE3 = {
    "SR": ("portability_sr", "accuracy", "step"),
    "RR": ("portability_rr", "accuracy", "step"),
    "OH": ("portability_oh", "accuracy", "step"),
    "MH": ("multihop", "mh", "case"),
    "CS rev": ("conflict", "cs_reverse", "case"),
    "CM rev": ("conflict", "cm_reverse", "case"),
    "CS comp": ("conflict", "cs_composite", "case"),
    "CM comp": ("conflict", "cm_composite", "case"),
}
TABLE4 = {
    "OA": ("attribute", "oa", "step"),
    "DN": ("distract", "dn", "step"),
    "OT": ("other_task", "accuracy", "step"),
    "Succ": ("round", "success", "case"),
    "D": ("round", "distortion", "case"),
    "IR": ("round", "ignore_rate", "case"),
    "FR": ("round", "failure_rate", "case"),
}
RELIABILITY = {
    "Eff top1": ("rewrite", "efficacy_top1", "step"),
    "Eff P": ("rewrite", "efficacy_prob", "step"),
    "Gen top1": ("paraphrase", "generalization_top1", "step"),
    "Gen P": ("paraphrase", "generalization_prob", "step"),
    "NS": ("neighborhood", "ns", "step"),
    "NM": ("neighborhood", "nm", "step"),
    "NKL·|V|": ("neighborhood", "nkl", "step"),     # CounterFact+'s NKL times |V|: the sum over the vocabulary
    "Loc acc": ("neighborhood", "locality_acc", "step"),
    "Retention": ("retention", "efficacy_top1", "last"),
    "EW": ("multihop", "ew", "case"),
    "IW": ("multihop", "iw", "case"),
    "TFD": ("conflict", "tfd_composite", "case"),
}
# the group metrics again, as measured on the head version
HEAD_TABLE = {f"{c}{HEAD}": (s + HEAD, m, "last") for c, (s, m, _) in {**TABLE3, **TABLE4, **RELIABILITY}.items()
              if s in ("multihop", "conflict", "round")}
# a column measured without MQuAKE's demonstrations stands in, marked, when the few-shot one is absent
ZERO_SHOT_FALLBACK = {("multihop", "mh"): "mh_zeroshot", ("multihop", "iw"): "iw_zeroshot"}
UNSCALED = {"NKL·|V|"}      # columns not shown as percentages
TABLES = {"Table 3: portability and generalisation": TABLE3, "Table 4: locality": TABLE4,
          "Reliability and locality (CounterFact)": RELIABILITY, "Group metrics at the head": HEAD_TABLE}
NOTES = ("Percentages except NKL·|V|. Per-step suites: mean over steps, each right after its own edit. "
         "MH, CS, CM, TFD, Succ, D, IR, FR, EW, IW: mean over cases, each measured when its case completed "
         "(Li et al. 2024 / MQuAKE definitions; docs/metrics.md). CM: (P_m(k_o) - P'(k_o)) / P_m(k_o) clipped at -1, "
         "theta_m after the case's first edit. TFD against the unedited model (Li et al.'s summarize.py). "
         "D: JS divergence in nats divided by |Obj| (summarize.py's js_div), x100. OA, DN: token agreement with the "
         "base. NKL·|V|: KL(P_edited || P_base) of the next token in nats, summed over the vocabulary "
         "(CounterFact+'s NKL divides that sum by |V|). * = zero-shot multi-hop questions (no MQuAKE demonstrations).")

# Figure 4: general abilities against the number of edits
CURVES = {
    "NQ (EM)": ("downstream", "nq_em"),
    "GSM8K (solve rate)": ("downstream", "gsm8k_solve"),
    "SST-2 (acc)": ("downstream", "sst2_acc"),
    "SAMSum (ROUGE 1/2/L mean)": ("downstream", "samsum_rouge"),
    "BoolQ (acc)": ("downstream", "boolq_acc"),
    "MuTual (acc)": ("downstream", "dialogue_acc"),
    "RTE (acc)": ("downstream", "rte_acc"),
    "MMLU (acc)": ("downstream", "mmlu_acc"),
    "QA built-in (EM)": ("downstream", "qa_em"),
    "Sentiment built-in (acc)": ("downstream", "sentiment_acc"),
    "Reasoning built-in (solve)": ("downstream", "reasoning_solve"),
    "Summarisation built-in (ROUGE-L)": ("downstream", "summarization_rougeL"),
    "PIQA / Other Task (acc)": ("other_task", "accuracy"),
    "Perplexity": ("perplexity", "ppl"),
    "Fluency (n-gram entropy)": ("fluency", "ngram_entropy"),
    "Retention (efficacy)": ("retention", "efficacy_top1"),
}


# Health telemetry: column -> (metric, how) over the run's steps; values as recorded (ratios, not %)
HEALTH_TABLE = {
    "max ‖Δ‖/‖W₀‖": ("delta_rel", "max"),
    "drift": ("drift", "last"),
    "max κ/κ₀": ("cond_ratio", "max"),
    "ppl/base": ("ppl_ratio", "last"),
    "max ppl step": ("ppl_step", "max"),
}
HEALTH_TITLE = "Health telemetry (per step, every method that changes weights)"
HEALTH_NOTES = ("‖Δ‖/‖W₀‖: a step's update against the base tensor; drift: ‖W − W₀‖/‖W₀‖ at the last step; κ/κ₀: the "
                "edited matrix's condition number against the base's; ppl/base: perplexity of a small fixed text "
                "against the base model's; ppl step: against the version before. Flagged: robust z of a step's update "
                f"size, κ jump or perplexity jump against the run's other steps above {OutlierRule.z_threshold:g} "
                "(a possible disabling edit; docs/audit.md).")


class _Row(NamedTuple):
    suite: str
    metric: str
    against: str
    value: float


@dataclass
class RunReport:
    run_id: int
    name: str
    method: str
    model: str
    stream: str
    steps: int
    protocol: str = SEQUENTIAL
    columns: dict[str, float | None] = field(default_factory=dict)     # table column -> value (raw scale)
    marks: dict[str, str] = field(default_factory=dict)                # table column -> footnote mark
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # curve -> [(edits, value)]
    recomputed: bool = False
    health: dict[str, float | None] = field(default_factory=dict)      # HEALTH_TABLE column -> value
    health_flags: list[dict] = field(default_factory=list)             # [{"step", "z", "why"}], worst first
    health_note: str | None = None       # why a run has no telemetry (a method that changes no weights)
    label: str | None = None          # the legend's and Figure 4 column's name (default: name and method)


class _Stored:
    """A run's values per step, read from the stored probe rows."""

    def __init__(self, ledger, run_id: int):
        self.ledger, self.run_id = ledger, run_id

    def rows(self, suite: str, metric: str) -> dict[int, list[_Row]]:
        out: dict[int, list[_Row]] = defaultdict(list)
        for against in AGAINST_ORDER:
            last: dict[int, float] = {}
            for step, value in self.ledger.trajectory(self.run_id, suite, metric, against):
                last[step] = value         # a step re-recorded after a reset: the last one counts
            for step, value in last.items():
                out[step].append(_Row(suite, metric, against, value))
        return out


class _Recomputed:
    """A run's values per step, recomputed from its raw scores."""

    def __init__(self, ledger, run_id: int):
        self.by: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for rc in recompute_run(ledger, run_id):
            for r in rc.records:
                self.by[(r.suite, r.metric)][rc.step][r.against] = r.value

    def rows(self, suite: str, metric: str) -> dict[int, list[_Row]]:
        return {step: [_Row(suite, metric, a, v) for a, v in vals.items()]
                for step, vals in self.by.get((suite, metric), {}).items()}


def _series(src, suite: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) by the preference rule, finite values only, in step order."""
    out = []
    for step, rows in sorted(src.rows(suite, metric).items()):
        r = preferred(rows, suite, metric)
        if r is not None and not math.isnan(r.value):
            out.append((step, float(r.value)))
    return out


def _aggregate(series: list[tuple[int, float]], how: str) -> float | None:
    if not series:
        return None
    vals = [v for _, v in series]
    return vals[-1] if how == "last" else sum(vals) / len(vals)


def _health(ledger, rep: RunReport, cfg: dict) -> None:
    """The run's telemetry summary and its outliers against the whole run (stored values: the
    telemetry is measured on the weights, not recomputed from scores)."""
    src = _Stored(ledger, rep.run_id)
    names = [m for s_, m in ledger.metrics(rep.run_id) if s_ == HEALTH]
    if not names:
        rep.health_note = ((cfg.get("telemetry") or {}).get(HEALTH)
                           or "not recorded (replayed before the telemetry existed)")
        return
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for m in names:
        for step, v in _series(src, HEALTH, m):
            by_step[step][m] = v
    for col, (metric, how) in HEALTH_TABLE.items():
        vals = [vals[metric] for _, vals in sorted(by_step.items()) if metric in vals]
        rep.health[col] = None if not vals else (max(vals) if how == "max" else vals[-1])
    rule = OutlierRule()
    rep.health_flags = [{"step": step, "z": outcome_z(z), "why": describe_z(z, rule.z_threshold)}
                        for step, z in flag_outliers(sorted(by_step.items()), rule)]


def _edits_at(ledger, run) -> dict[int, int]:
    """Step -> number of edit requests in that step's version (its lineage), for Figure 4's x axis."""
    start = sum(v.n_requests for v in ledger.lineage(run.start_version_id))
    cum: dict[int, int] = {run.start_version_id: start}
    out: dict[int, int] = {}
    for row in ledger.timeline(run.id):
        if row.parent_id in cum:
            cum[row.version_id] = cum[row.parent_id] + (row.n_requests if row.kind in ("edit", "revert") else 0)
        else:    # a version whose parent lies outside the run's own versions
            cum[row.version_id] = sum(v.n_requests for v in ledger.lineage(row.version_id))
        if row.kind == "edit":
            out[row.step] = cum[row.version_id]
    return out


def collect(ledger, run_ids: list[int], recompute: bool = False) -> list[RunReport]:
    """Read everything the layouts need from the ledger (or recompute it from the raw scores)."""
    if not run_ids:
        raise InputError("no runs given: name one or more runs (ids or names) to report on")
    summaries = {r.id: r for r in ledger.runs()}
    out = []
    for rid in run_ids:
        if rid not in summaries:
            raise InputError(f"no run {rid} in this ledger: `editledger db status` lists the runs")
        s = summaries[rid]
        run = ledger.run(rid)
        cfg = run.config or {}
        protocol = (cfg.get("options") or {}).get("protocol") or SEQUENTIAL
        rep = RunReport(rid, s.name or f"run-{rid}", s.method, s.model_name, s.stream_name, s.steps,
                        protocol=protocol, recomputed=recompute)
        src = _Recomputed(ledger, rid) if recompute else _Stored(ledger, rid)
        for table in TABLES.values():
            if table is HEAD_TABLE and protocol == INDEPENDENT:
                continue        # no head: every case is its own version built on the base
            for col, (suite, metric, how) in table.items():
                series = _series(src, suite, metric)
                fallback = ZERO_SHOT_FALLBACK.get((suite.removesuffix(HEAD), metric))
                if not series and fallback:
                    series = _series(src, suite, fallback)
                    if series:
                        rep.marks[col] = "*"
                rep.columns[col] = _aggregate(series, how)
        _health(ledger, rep, cfg)
        edits = _edits_at(ledger, run)
        base = (cfg.get("reference") or {}).get("base_metrics", {})
        for name, (suite, metric) in CURVES.items():
            traj = [(edits.get(st, st), v) for st, v in _series(src, suite, metric)]
            if traj:
                b = base.get(f"{suite}.{metric}")
                rep.curves[name] = ([(0, float(b))] if b is not None else []) + traj
        out.append(rep)
    return out


def _fmt(col: str, v: float | None, mark: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return (f"{v:.4f}" if col in UNSCALED else f"{100 * v:.2f}") + mark


def _label(r: RunReport) -> str:
    if r.label:
        return r.label
    return r.name if r.name == r.method else f"{r.name} ({r.method})"


def _table_rows(reports: list[RunReport], table: dict, row_header: str = "run") -> tuple[list[str], list[list[str]]]:
    head = [row_header, "method", "protocol"] + list(table)
    rows = [[r.name, r.method, r.protocol] + [_fmt(c, r.columns.get(c), r.marks.get(c, "")) for c in table]
            for r in reports]
    return head, rows


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(n) if i > 2 else str(c).ljust(n) for i, (c, n) in enumerate(zip(cells, w)))
    return "\n".join([line(head), "  ".join("-" * n for n in w)] + [line(r) for r in rows])


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _curve_rows(reports: list[RunReport]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per curve: a table with one row per number of edits and one column per run."""
    out = []
    for name in CURVES:
        have = [r for r in reports if name in r.curves]
        if not have:
            continue
        xs = sorted({x for r in have for x, _ in r.curves[name]})
        head = ["edits"] + [_label(r) for r in have]
        rows = []
        for x in xs:
            row = [str(x)]
            for r in have:
                v = dict(r.curves[name]).get(x)
                row.append("—" if v is None else f"{v:.4f}")
            rows.append(row)
        out.append((name, head, rows))
    return out


def _protocol_line(reports: list[RunReport]) -> str:
    ps = sorted({r.protocol for r in reports})
    return "protocol: " + "; ".join(f"{p}: {PROTOCOL_TEXT.get(p, 'as recorded')}" for p in ps)


def render(reports: list[RunReport], fmt: str = "text", *, curves: list[RunReport] | None = None,
           row_header: str = "run") -> str:
    """The tables with one row per report and Figure 4 with one column per report (per report of
    ``curves`` when given: a sweep's rows merge cells whose curves stay apart)."""
    if fmt == "json":
        return json.dumps(to_json(reports), indent=2)
    if fmt == "csv":
        return to_csv(reports)
    if fmt not in ("text", "markdown"):
        raise InputError(f"unknown report format {fmt!r}; use text, json, csv or markdown")
    table = _text_table if fmt == "text" else _md_table
    h = "## " if fmt == "markdown" else ""
    parts = []
    if any(r.recomputed for r in reports):
        parts += ["(recomputed from the raw scores kept in the ledger, not read from the stored values)", ""]
    for title, cols in TABLES.items():
        if title == "Group metrics at the head" and not any(r.columns.get(c) is not None for r in reports for c in cols):
            continue
        head, rows = _table_rows(reports, cols, row_header)
        parts += [h + title, _protocol_line(reports), table(head, rows), ""]
    parts += _health_text(reports, table, h)
    parts.append(h + "Figure 4: general abilities against the number of edits (0 = the base model)")
    curve_rows = _curve_rows(reports if curves is None else curves)
    if not curve_rows:
        parts.append("(no general-ability probes recorded in these runs)")
    for name, head, rows in curve_rows:
        parts.append(("### " if fmt == "markdown" else "") + name)
        parts.append(table(head, rows))
        parts.append("")
    parts.append(textwrap.fill(NOTES, width=110))
    return "\n".join(parts).rstrip() + "\n"


def _health_fmt(v: float | None) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.4g}"


def _health_text(reports: list[RunReport], table, h: str) -> list[str]:
    if not any(r.health or r.health_note for r in reports):
        return []
    head = ["run", "method", "protocol"] + list(HEALTH_TABLE) + ["flagged steps"]
    rows = []
    for r in reports:
        if not r.health:
            continue
        flagged = ", ".join(str(f["step"]) for f in r.health_flags) or "none"
        rows.append([r.name, r.method, r.protocol] + [_health_fmt(r.health.get(c)) for c in HEALTH_TABLE] + [flagged])
    out = [h + HEALTH_TITLE]
    if rows:
        out += [table(head, rows), ""]
    for r in reports:
        for f in r.health_flags:
            out.append(f"  {r.name} step {f['step']}: possible disabling edit ({f['why']})")
        if r.health_note:
            out.append(f"  {r.name} ({r.method}): {r.health_note}")
    out += [textwrap.fill(HEALTH_NOTES, width=110), ""]
    return out


def to_json(reports: list[RunReport]) -> dict[str, Any]:
    def clean(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    return {
        "runs": [{"run_id": r.run_id, "name": r.name, "method": r.method, "model": r.model,
                  "stream": r.stream, "steps": r.steps, "protocol": r.protocol, "recomputed": r.recomputed}
                 for r in reports],
        "tables": {title: [dict({"run_id": r.run_id, "method": r.method, "protocol": r.protocol},
                                **{c: clean(r.columns.get(c)) for c in cols}) for r in reports]
                   for title, cols in TABLES.items()},
        "zero_shot": {str(r.run_id): sorted(r.marks) for r in reports if r.marks},
        "health": {str(r.run_id): {"columns": {c: clean(r.health.get(c)) for c in HEALTH_TABLE} if r.health else None,
                                   "flagged": r.health_flags, "note": r.health_note} for r in reports},
        "curves": {name: {str(r.run_id): [[x, v] for x, v in r.curves[name]] for r in reports if name in r.curves}
                   for name in CURVES if any(name in r.curves for r in reports)},
        "scale": "fractions in [0, 1] (text/markdown show percentages); NKL·|V| in nats (CounterFact+'s NKL x |V|); D in nats / |Obj|; "
                 "curves: x = number of edit requests (0 = base)",
    }


def to_csv(reports: list[RunReport]) -> str:
    """Long format: table, run_id, run, method, protocol, column, edits, value (edits empty for table cells)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "run_id", "run", "method", "protocol", "column", "edits", "value"])
    for title, cols in TABLES.items():
        for r in reports:
            for c in cols:
                v = r.columns.get(c)
                w.writerow([title, r.run_id, r.name, r.method, r.protocol, c, "",
                            "" if v is None or math.isnan(v) else repr(float(v))])
    for r in reports:
        for c in HEALTH_TABLE if r.health else ():
            v = r.health.get(c)
            w.writerow([HEALTH_TITLE, r.run_id, r.name, r.method, r.protocol, c, "",
                        "" if v is None or math.isnan(v) else repr(float(v))])
    for name in CURVES:
        for r in reports:
            for x, v in r.curves.get(name, []):
                w.writerow(["Figure 4", r.run_id, r.name, r.method, r.protocol, name, x, repr(float(v))])
    return buf.getvalue()


def plot(reports: list[RunReport], path: str, title: str | None = None) -> list[str]:
    """Figure 4 as a PNG: one panel per general-ability curve, one line per run. Returns the panels."""
    import matplotlib  # ~2 s to import: only --plot needs it
    matplotlib.use("Agg")   # files only, never a window
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [n for n in CURVES if any(n in r.curves for r in reports)]
    if not names:
        raise InputError("these runs recorded no general-ability probes (perplexity, downstream, fluency, "
                         "retention); replay with general-ability sets to plot Figure 4")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    # runs often agree (a task no edit touched): each line its own dash and marker, drawn thinner
    # and smaller than the one before, so that a line lying on another still shows
    styles = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D")]
    for ax, name in zip(axes.flat, names):
        for i, r in enumerate(reports):
            if name in r.curves:
                xs, ys = zip(*r.curves[name])
                dash, marker = styles[i % len(styles)]
                ax.plot(xs, ys, linestyle=dash, marker=marker, ms=max(2.0, 5.0 - 0.8 * i),
                        lw=max(0.8, 2.2 - 0.4 * i), label=_label(r))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("number of edits")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # edits are whole numbers
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:       # wrapped to the figure's width (about 11 characters an inch at this size)
        fig.suptitle(textwrap.fill(title, width=max(30, int(11 * 4.2 * cols))), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return names
