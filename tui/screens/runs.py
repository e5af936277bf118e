"""Runs: every run with its model, method, stream, status, and what it did to the model: how many
edits took, how many earlier edits are still held at the head, perplexity against the base."""
from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tui import format as F
from tui.filters import Field
from tui.metrics import short_metric
from tui.screens.audit import AuditScreen
from tui.screens.base import FilterableScreen
from tui.screens.timeline import TimelineScreen
from tui.screens.trajectories import TrajectoryScreen
from tui.viewmodels import RunItem
from tui.widgets.lazy_table import Column, LazyTable

LEGEND = ("ok: edits that took (every rewrite prompt answers the new target) / edits measured · "
          "held: earlier edits still held at the head · ppl×: perplexity at the head ÷ the base's · "
          "trend: the metric named in its header over the steps, scaled to at least ±5% of its size")


class RunsScreen(FilterableScreen):
    HELP = ("Every run in the ledger. Enter opens a run's timeline; space marks runs to overlay "
            "their trajectories (t); s sorts by the next column, S reverses, a click on a header sorts "
            "by it; / filters (e.g. method:rome ok<1). The screen follows the ledger live while a "
            "replay writes to it.")
    EXPORT_NAME = "runs"

    BINDINGS = [
        Binding("enter", "open", "Timeline"),
        Binding("t", "trajectories", "Plot"),
        Binding("a", "audit", "Audit"),
        Binding("space", "mark", "Mark"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunItem] = []
        self.shown_at: float | None = None    # perf_counter when first painted (benchmark)

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        table = LazyTable(self.columns(), self.format_row, id="main")
        table.mark_key = lambda r: r.run_id
        yield table
        yield Static(LEGEND, id="legend", classes="caption", markup=False)
        empty = Static("", id="empty", markup=False)
        empty.display = False
        yield empty
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.table.focus()
        self.call_after_refresh(lambda: setattr(self, "shown_at", time.perf_counter()))

    def columns(self, spark_label: str = "trend") -> list[Column]:
        return [
            Column("run", "run", max_width=14, sort_key=lambda r: r.run_id, help="run name (or run-<id>)"),
            Column("model", "model", max_width=16, help="base model"),
            Column("method", "method", max_width=8, help="editing method"),
            Column("stream", "stream", max_width=24, help="the stream replayed (its file or built-in name)"),
            Column("steps", "steps", justify="right", sort_key=lambda r: r.steps, help="highest step recorded"),
            Column("status", "status", max_width=11, help="running, done, failed, interrupted, stopped"),
            Column("ok", "ok", width=7, justify="right", sort_key=lambda r: r.edits_ok / r.edits if r.edits else None,
                   help="edits that took / edits measured (red when some failed)"),
            Column("held", "held", width=5, justify="right", sort_key=lambda r: r.held,
                   help="share of the earlier edits still held at the head (0–1)"),
            Column("ppl", "ppl×", width=6, justify="right", sort_key=lambda r: r.ppl_ratio,
                   help="perplexity at the head ÷ at the base (1.00× = unchanged; red above 1.05×)"),
            Column("trend", spark_label, width=10, help="the metric in the header over the steps (sparkline)"),
        ]

    def format_row(self, r: RunItem) -> list[Any]:
        ok = Text(f"{r.edits_ok}/{r.edits}" if r.edits else "–",
                  style="bold red" if r.edits_ok < r.edits else "green" if r.edits else "")
        held = Text(F.num(r.held, 2), style="red" if r.held is not None and r.held < 0.5 else "")
        ppl = Text("–" if r.ppl_ratio is None else f"{r.ppl_ratio:.2f}×",
                   style="red" if r.ppl_ratio is not None and r.ppl_ratio > 1.05 else "")
        return [r.name, r.model, r.method, r.stream, str(r.steps), F.styled(r.status, F.STATUS_STYLES),
                ok, held, ppl, Text(F.sparkline(r.spark, 10), style="cyan")]

    def reload(self) -> None:
        super().reload()
        self.runs = self.data.runs()
        spark = {r.spark_metric for r in self.runs if r.spark}
        label = short_metric(spark.pop()) if len(spark) == 1 else "trend"
        table = self.table
        if table.columns[-1].label != label:
            table.columns = self.columns(label)
            table._widths = [c.width or len(c.label) for c in table.columns]
        table.set_items(self.runs)
        empty = self.query_one("#empty", Static)
        empty.display = not self.runs
        table.display = bool(self.runs)
        self.query_one("#legend").display = bool(self.runs)
        if not self.runs:
            empty.update("No runs in this ledger yet. Replay a stream into it, e.g.\n\n"
                         f"  editledger --db {self.data.db_arg} replay STREAM.jsonl\n"
                         f"  editledger --db {self.data.db_arg} demo\n\n"
                         "and they appear here while they run.")
        self.update_title()

    def update_title(self) -> None:
        shown = len(self.table.rows)
        total = f"{len(self.runs)} run{'' if len(self.runs) == 1 else 's'}"
        count = f"{shown} of {total}" if shown != len(self.runs) else total
        parts = [f"editledger · {self.data.location}", count]
        if self.table.sort_label:
            parts.append(f"sort: {self.table.sort_label}")
        if self.filter_text:
            parts.append(self.filter_status())
        if self.table.marked:
            parts.append(f"marked: {len(self.table.marked)}")
        self.set_title(" · ".join(parts))

    def after_filter(self) -> None:
        self.update_title()

    def filter_fields(self) -> list[Field]:
        return super().filter_fields() + [
            Field("ok", lambda r: r.edits_ok / r.edits if r.edits else None),
            Field("failed", lambda r: r.edits - r.edits_ok),
            Field("held", lambda r: r.held), Field("ppl", lambda r: r.ppl_ratio),
            Field("kind", lambda r: r.stream_kind)]

    def filter_haystack(self, r: RunItem) -> str:
        return f"{r.run_id} {r.stream_kind}"

    def action_mark(self) -> None:
        r = self.table.current_item
        if r is None:
            return
        self.table.marked ^= {r.run_id}
        self.table.refresh()
        self.update_title()

    def on_lazy_table_row_selected(self, event: LazyTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        r = self.table.current_item
        if r is not None:
            self.app.push_screen(TimelineScreen(r.run_id))

    def action_trajectories(self) -> None:
        runs = sorted(self.table.marked) or ([self.table.current_item.run_id] if self.table.current_item else [])
        if runs:
            self.app.push_screen(TrajectoryScreen(runs))

    def action_audit(self) -> None:
        r = self.table.current_item
        if r is not None:
            self.app.push_screen(AuditScreen(r.run_id))

    def action_back(self) -> None:
        if self.filter_text or self.filter_has_focus():
            super().action_back()
