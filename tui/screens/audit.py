"""Audit results of a run: the edits found to cause a degradation, with their evidence in words;
the audit itself runs from here (A, or V with the model's counterfactual check)."""
from __future__ import annotations

import json
import math
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui import format as F
from tui.filters import Field
from tui.metrics import parse_finding_metric
from tui.screens.base import FilterableScreen
from tui.screens.detail import DetailScreen
from tui.screens.job import JobScreen
from tui.screens.trajectories import TrajectoryScreen
from tui.viewmodels import FindingItem
from tui.widgets.lazy_table import Column, LazyTable


class AuditScreen(FilterableScreen):
    HELP = ("The audit's findings for this run: each names the version whose edit caused a "
            "degradation of a metric, with a score (its share of the degradation, or the size of a "
            "leak) and the evidence. A runs the audit from the probes in the ledger; V also verifies "
            "each suspect counterfactually with the model (slower). Enter opens the version, t plots "
            "the finding's metric, c copies the finding.")
    EXPORT_NAME = "audit"

    BINDINGS = [
        Binding("enter", "detail", "Detail"),
        Binding("t", "trajectories", "Plot"),
        Binding("A", "run_audit", "Run audit"),
        Binding("V", "verify", "Verify"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.EXPORT_NAME = f"audit-run{run_id}"
        self.shown_at: float | None = None       # perf_counter when first painted (benchmark)

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        table = LazyTable([Column("step", "step", justify="right", sort_key=lambda f: f.step),
                           Column("ver", "ver", justify="right", sort_key=lambda f: f.version_id),
                           Column("metric", "metric", max_width=28, help="suite.metric that degraded"),
                           Column("score", "score", width=6, justify="right", sort_key=lambda f: f.score,
                                  help="the step's share of the degradation (0–1), or the size of a leak"),
                           Column("summary", "summary", flex=1, width=20)],
                          self.format_row, id="main")
        table.copy_text = lambda f: evidence_text(f).plain
        yield table
        with VerticalScroll(id="evidence-box"):
            yield Static("", id="evidence", markup=False)
        yield self.footer()

    def on_mount(self) -> None:
        self.call_after_refresh(lambda: setattr(self, "shown_at", time.perf_counter()))
        self.reload()
        self.query_one("#main").focus()

    def reload(self) -> None:
        super().reload()
        self.run = run = self.data.run(self.run_id)
        findings = self.data.findings(self.run_id)
        self.n_findings = len(findings)
        self.table.set_items(findings)
        self.update_title()
        if not findings:
            self.query_one("#evidence", Static).update(
                f"No audit findings recorded for {run.name}. Press A to run the audit now (it reads the "
                "probes in the ledger), or V to verify each suspect with the model too.")

    def update_title(self) -> None:
        run = self.run
        parts = [f"Audit of {run.name}: {run.method} on {run.model}",
                 f"{self.n_findings} findings" if self.n_findings else "no findings recorded"]
        if self.table.sort_label:
            parts.append(f"sort: {self.table.sort_label}")
        if self.filter_text:
            parts.append(self.filter_status())
        self.set_title(" · ".join(parts))

    def after_filter(self) -> None:
        self.update_title()

    def filter_fields(self) -> list[Field]:
        return [Field("step", lambda f: f.step), Field("metric", lambda f: f.metric),
                Field("score", lambda f: f.score)]

    def format_row(self, f: FindingItem) -> list[Any]:
        return ["" if f.step is None else str(f.step), "" if f.version_id is None else f"v{f.version_id}",
                Text(f.metric, style="bold red"), F.num(f.score, 2), f.summary]

    def on_lazy_table_row_highlighted(self, event: LazyTable.RowHighlighted) -> None:
        self.query_one("#evidence", Static).update(evidence_text(event.item))

    def on_lazy_table_row_selected(self, event: LazyTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        f = self.table.current_item
        if f is not None and f.version_id is not None:
            self.app.push_screen(DetailScreen(f.version_id))

    def action_trajectories(self) -> None:
        f = self.table.current_item
        m = parse_finding_metric(f.metric) if f is not None else None
        self.app.push_screen(TrajectoryScreen([self.run_id], [m] if m else None))

    def _audit(self, verify: bool) -> None:
        what = "Audit (verified with the model)" if verify else "Audit"
        self.app.push_screen(JobScreen(f"{what} of {self.run.name}", self.data.audit_argv(self.run_id, verify)),
                             lambda _rc: self.reload())

    def action_run_audit(self) -> None:
        self._audit(False)

    def action_verify(self) -> None:
        self._audit(True)

    def action_back(self) -> None:
        if self.filter_text or self.filter_has_focus():
            super().action_back()
            return
        self.app.pop_screen()


def _num(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "not measured" if math.isnan(v) else str(v)
    return F.num(v) if isinstance(v, float) else json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v


def _forgotten(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        before, after = r.get("p_new_before"), r.get("p_new_after")
        line = f"  forgot step {r.get('edit_step')} ({r.get('edit', '?')}): P(new) {_num(before)} → {_num(after)}"
        if isinstance(before, float) and math.isnan(before):
            line += "  (no 'before' probability was recorded: the claim rests on the edit's efficacy when it was made)"
        out.append(line)
    return out


def evidence_text(f: FindingItem) -> Text:
    t = Text()
    t.append(f.summary + "\n\n", style="bold")
    t.append(f"metric {f.metric} · score {F.num(f.score, 2)}"
             + (f" · step {f.step} (v{f.version_id})" if f.step is not None else "") + "\n\nEvidence\n")
    ev = f.evidence
    lines: list[str] = []
    if isinstance(ev, dict):
        for k, v in ev.items():
            if k == "forgotten" and isinstance(v, list):
                lines += _forgotten(v)
            elif k == "counterfactual" and isinstance(v, dict):
                lines.append(f"  without this step: {v.get('metric')} {_num(v.get('head'))} → "
                             f"{_num(v.get('head_without_step'))} (the head, re-measured with the model)")
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"  {k}:")
                lines += ["    " + "  ".join(f"{a}={_num(b)}" for a, b in row.items()) for row in v[:20]]
                if len(v) > 20:
                    lines.append(f"    … {len(v) - 20} more")
            else:
                lines.append(f"  {k}: {_num(v)}")
    elif isinstance(ev, list):
        lines += [f"  {_num(x)}" for x in ev]
    else:
        lines.append(f"  {_num(ev)}")
    t.append("\n".join(lines))
    return t
