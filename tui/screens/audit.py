"""Audit results of a run: the edits found to cause a degradation, with their evidence."""
from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui import format as F
from tui.screens.base import LedgerScreen
from tui.viewmodels import FindingItem
from tui.widgets.lazy_table import Column, LazyTable


class AuditScreen(LedgerScreen):
    HELP = ("The audit's findings for this run (run `editledger audit RUN` to compute them): each "
            "names the version whose edit caused a degradation of a metric, with a score and the "
            "evidence (the measurements that support it). Enter opens that version's detail.")

    BINDINGS = [
        Binding("enter", "detail", "Detail"),
        Binding("t", "trajectories", "Plot"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        yield LazyTable([Column("step", "step", justify="right"), Column("version", "ver", justify="right"),
                         Column("metric", "metric", max_width=28),
                         Column("score", "score", width=8, justify="right"),
                         Column("summary", "summary", flex=True, width=20)],
                        self.format_row, id="main")
        with VerticalScroll(id="evidence-box"):
            yield Static("", id="evidence", markup=False)
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#main").focus()

    def reload(self) -> None:
        super().reload()
        run = self.data.run(self.run_id)
        findings = self.data.findings(self.run_id)
        self.set_title(f"Audit of {run.name}: {run.method} on {run.model} · "
                       + (f"{len(findings)} findings" if findings else "no findings recorded"))
        table = self.query_one("#main", LazyTable)
        table.set_items(findings)
        if not findings:
            self.query_one("#evidence", Static).update(
                f"No audit findings for {run.name}. Run `editledger audit {self.run_id}` to look for "
                "the edits that caused a degradation.")

    def format_row(self, f: FindingItem) -> list[Any]:
        return ["" if f.step is None else str(f.step), "" if f.version_id is None else f"v{f.version_id}",
                f.metric, F.num(f.score), f.summary]

    def on_lazy_table_row_highlighted(self, event: LazyTable.RowHighlighted) -> None:
        self.query_one("#evidence", Static).update(evidence_text(event.item))

    def on_lazy_table_row_selected(self, event: LazyTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        f = self.query_one("#main", LazyTable).current_item
        if f is not None and f.version_id is not None:
            from tui.screens.detail import DetailScreen
            self.app.push_screen(DetailScreen(f.version_id))

    def action_trajectories(self) -> None:
        from tui.screens.trajectories import TrajectoryScreen
        self.app.push_screen(TrajectoryScreen([self.run_id]))

    def action_back(self) -> None:
        self.app.pop_screen()


def evidence_text(f: FindingItem) -> str:
    head = f"{f.summary}\n\nmetric {f.metric} · score {F.num(f.score)}" + (
        f" · step {f.step} (v{f.version_id})" if f.step is not None else "")
    ev = f.evidence
    if isinstance(ev, dict):
        body = "\n".join(f"  {k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in ev.items())
    elif isinstance(ev, list):
        body = "\n".join(f"  {json.dumps(x) if not isinstance(x, str) else x}" for x in ev)
    else:
        body = f"  {ev}"
    return f"{head}\n\nEvidence\n{body}"
