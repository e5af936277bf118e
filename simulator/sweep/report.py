"""A sweep's cells side by side, from the ledger alone: the survey's tables with one row per method
and Figure 4 with one curve per method.

Each cell's run is read by ``simulator.report.collect`` (the same values, preference rule and
aggregation as ``editledger report RUN``). Cells are then merged:

* **tables**: one row per method label (per model and protocol too, when the sweep has several).
  A column of a row is the mean over the row's cells that measure it: over seeds, and over the
  streams that measure that column (Table 4's Succ/D/IR/FR come from round streams, Table 3's
  CS/CM from conflict streams, efficacy from every stream). ``cells`` says how many cells a row has;
* **Figure 4**: one curve per method (per method and stream when the sweep has several streams,
  since their numbers of edits differ), the mean over seeds at each number of edits.

The cell list (cell, run, status, steps, wall time) comes first, so every number can be traced to
its runs (``editledger report RUN`` shows one run alone).
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from simulator import report as rpt


@dataclass
class CellRow:
    label: str
    run_id: int
    method: str
    method_label: str
    model: str
    stream: str
    protocol: str
    seed: int
    status: str
    steps: int
    wall_s: float               # from the run's creation to its last change (resumes included)
    key: str


@dataclass
class SweepReport:
    name: str
    cells: list[CellRow]
    rows: list[rpt.RunReport]               # one per (model,) method label (, protocol)
    curves: list[rpt.RunReport]             # one per row (and stream, when there are several)
    cells_per_row: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)   # cells of the latest grid that have no run


def collect_sweep(ledger, name: str, *, recompute: bool = False) -> SweepReport:
    sweep = ledger.sweep(name)
    runs = ledger.sweep_cells(sweep.id)
    order = [c["key"] for c in (sweep.grid or {}).get("cells", [])]
    keys = [k for k in order if k in runs] + sorted(k for k in runs if k not in order)
    cells: list[CellRow] = []
    for key in keys:
        cr = runs[key]
        run = ledger.run(cr.run_id)
        tag = (run.config or {}).get("sweep", {})
        cells.append(CellRow(label=tag.get("label", run.name or str(run.id)), run_id=run.id, method=run.method,
                             method_label=tag.get("method_label", run.method), model=tag.get("model", "?"),
                             stream=tag.get("stream", run.stream_name), protocol=tag.get("protocol", "sequential"),
                             seed=int(tag.get("seed", 0)), status=run.status, steps=run.step_count,
                             wall_s=(run.updated_at - run.created_at).total_seconds(), key=key))
    reports = {r.run_id: r for r in rpt.collect(ledger, [c.run_id for c in cells], recompute=recompute)} if cells else {}
    several = lambda attr: len({getattr(c, attr) for c in cells}) > 1
    by_row: dict[tuple, list[CellRow]] = defaultdict(list)
    for c in cells:
        by_row[(c.model if several("model") else "", c.method_label, c.protocol if several("protocol") else "")]\
            .append(c)
    rows, curves, per_row = [], [], {}
    for (model, label, protocol), members in by_row.items():
        name_ = "/".join(x for x in (model, label, protocol) if x)
        reps = [reports[c.run_id] for c in members]
        rows.append(_merged(name_, members, reps))
        per_row[name_] = len(members)
        by_stream: dict[str, list] = defaultdict(list)
        for c, r in zip(members, reps):
            by_stream[c.stream].append(r)
        for stream, rs in by_stream.items():
            curve_name = f"{name_} · {stream}" if several("stream") else name_
            curves.append(_merged_curves(curve_name, members[0].method, members[0].protocol, rs))
    missing = [c["label"] for c in (sweep.grid or {}).get("cells", []) if c["key"] not in runs]
    return SweepReport(name, cells, rows, curves, per_row, missing)


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def _merged(name: str, members: list[CellRow], reps: list[rpt.RunReport]) -> rpt.RunReport:
    first = reps[0]
    out = rpt.RunReport(run_id=-1, name=name, method=first.method, model=first.model,
                        stream=", ".join(dict.fromkeys(c.stream for c in members)),
                        steps=sum(r.steps for r in reps), protocol=first.protocol,
                        recomputed=any(r.recomputed for r in reps))
    cols = dict.fromkeys(c for r in reps for c in r.columns)
    for col in cols:
        out.columns[col] = _mean([r.columns.get(col) for r in reps])
        if any(r.marks.get(col) for r in reps if r.columns.get(col) is not None):
            out.marks[col] = "*"
    return out


def _merged_curves(name: str, method: str, protocol: str, reps: list[rpt.RunReport]) -> rpt.RunReport:
    out = rpt.RunReport(run_id=-1, name=name, method=method, model=reps[0].model, stream=reps[0].stream,
                        steps=max(r.steps for r in reps), protocol=protocol, label=name)
    for curve in rpt.CURVES:
        at: dict[int, list[float]] = defaultdict(list)
        for r in reps:
            for x, v in r.curves.get(curve, []):
                at[x].append(v)
        if at:
            out.curves[curve] = [(x, sum(vs) / len(vs)) for x, vs in sorted(at.items())]
    return out


# ---------------------------------------------------------------------------------------------- rendering
def render(sr: SweepReport, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(to_json(sr), indent=2)
    if fmt == "csv":
        return to_csv(sr)
    table = _left_table if fmt == "text" else rpt._md_table
    h = "## " if fmt == "markdown" else ""
    head = ["cell", "run", "method", "stream", "protocol", "seed", "status", "steps", "run s"]
    rows = [[c.label, str(c.run_id), c.method, c.stream, c.protocol, str(c.seed), c.status, str(c.steps),
             f"{c.wall_s:.1f}"] for c in sr.cells]
    parts = [h + f"Sweep {sr.name}: {len(sr.cells)} cells", table(head, rows) if rows else "(no cells recorded yet)"]
    if sr.missing:
        parts.append(f"not run yet: {', '.join(sr.missing)} (run the sweep again)")
    parts.append("")
    if not sr.rows:
        return "\n".join(parts).rstrip() + "\n"
    counts = ", ".join(f"{k} {n}" for k, n in sr.cells_per_row.items())
    parts.append(f"One row per method: each column the mean over the row's cells that measure it (cells: {counts}).")
    parts.append("")
    parts.append(rpt.render(sr.rows, fmt, curves=sr.curves, row_header="row"))
    return "\n".join(parts).rstrip() + "\n"


def _left_table(head: list[str], rows: list[list[str]]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(n) for c, n in zip(cells, w)).rstrip()
    return "\n".join([line(head), "  ".join("-" * n for n in w)] + [line(r) for r in rows])


def to_json(sr: SweepReport) -> dict[str, Any]:
    inner = rpt.to_json(sr.rows)
    return {
        "sweep": sr.name,
        "cells": [c.__dict__ for c in sr.cells],
        "not_run": sr.missing,
        "rows": [{"row": r.name, "method": r.method, "model": r.model, "protocol": r.protocol,
                  "streams": r.stream, "cells": sr.cells_per_row.get(r.name, 0)} for r in sr.rows],
        "tables": {title: [dict({"row": r.name}, **{k: v for k, v in row.items() if k != "run_id"})
                           for r, row in zip(sr.rows, rows)] for title, rows in inner["tables"].items()},
        "curves": {name: {r.name: [[x, v] for x, v in r.curves[name]] for r in sr.curves if name in r.curves}
                   for name in rpt.CURVES if any(name in r.curves for r in sr.curves)},
        "scale": inner["scale"] + "; each row and curve: the mean over its cells",
    }


def to_csv(sr: SweepReport) -> str:
    """Long format: table, row, method, protocol, column, edits, value, cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "row", "method", "protocol", "column", "edits", "value", "cells"])
    for title, cols in rpt.TABLES.items():
        for r in sr.rows:
            for col in cols:
                v = r.columns.get(col)
                w.writerow([title, r.name, r.method, r.protocol, col, "",
                            "" if v is None or math.isnan(v) else repr(float(v)), sr.cells_per_row.get(r.name, 0)])
    for name in rpt.CURVES:
        for r in sr.curves:
            for x, v in r.curves.get(name, []):
                w.writerow(["Figure 4", r.name, r.method, r.protocol, name, x, repr(float(v)), ""])
    return buf.getvalue()


def plot(sr: SweepReport, path: str) -> list[str]:
    return rpt.plot(sr.curves, path, title=f"sweep {sr.name}")
