"""Runs: every run with its model, method, stream, steps, status, headline metrics and a sparkline."""
from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tui import format as F
from tui.screens.base import FilterableScreen
from tui.viewmodels import Metric, RunItem
from tui.widgets.lazy_table import Column, LazyTable

# Sort orders offered by `s`, in cycle order: (label, key function)
SORTS: list[tuple[str, Any]] = [
    ("id", lambda r: r.run_id),
    ("updated", lambda r: r.updated),
    ("model", lambda r: (r.model, r.run_id)),
    ("method", lambda r: (r.method, r.run_id)),
    ("status", lambda r: (r.status, r.run_id)),
    ("steps", lambda r: (r.steps, r.run_id)),
]


class RunsScreen(FilterableScreen):
    HELP = ("Every run in the ledger. Enter opens a run's timeline; space marks runs to overlay "
            "their trajectories (t); s cycles the sort order and S reverses it; / filters by any "
            "shown text. The screen follows the ledger live while a replay writes to it.")

    BINDINGS = [
        Binding("enter", "open", "Timeline"),
        Binding("t", "trajectories", "Plot"),
        Binding("a", "audit", "Audit"),
        Binding("space", "mark", "Mark"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sorts = list(SORTS)          # `s` cycles these; a header click may add a metric's
        self.sort_index = 0
        self.sort_reverse = False
        self.headline: list[Metric] = []
        self.runs: list[RunItem] = []
        self.shown_at: float | None = None    # perf_counter when first painted (benchmark)

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        table = LazyTable([], self.format_row, id="main")
        table.mark_key = lambda r: r.run_id
        yield table
        empty = Static("", id="empty", markup=False)
        empty.display = False
        yield empty
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.table.focus()
        self.call_after_refresh(lambda: setattr(self, "shown_at", time.perf_counter()))

    def columns(self) -> list[Column]:
        cols = [Column("run", "run", max_width=14), Column("model", "model", max_width=16),
                Column("method", "method", max_width=8), Column("stream", "stream", flex=True, width=5),
                Column("steps", "steps", justify="right"), Column("status", "status", max_width=11)]
        for m in self.headline:
            cols.append(Column(F.metric_name(m), short_metric(m)[:6], width=6, justify="right"))
        spark = {r.spark_metric for r in self.runs if r.spark}
        label = short_metric(spark.pop()) if len(spark) == 1 else "trend"
        cols.append(Column("trend", label, width=8))
        return cols

    def format_row(self, r: RunItem) -> list[Any]:
        cells: list[Any] = [r.name, r.model, r.method, r.stream, str(r.steps),
                            F.styled(r.status, F.STATUS_STYLES)]
        for m in self.headline:
            cells.append(F.num(r.headline.get(m)))
        cells.append(Text(F.sparkline(r.spark, 8), style="cyan"))
        return cells

    def reload(self) -> None:
        super().reload()
        self.runs = self.data.runs()
        headline = self.data.headline_metrics(self.runs)
        table = self.table
        if headline != self.headline or not table.columns:
            self.headline = headline
            table.columns = self.columns()
            table._widths = [c.width or len(c.label) for c in table.columns]
        name, key = self.sorts[self.sort_index]
        table.set_items(sorted(self.runs, key=key, reverse=self.sort_reverse))
        empty = self.query_one("#empty", Static)
        empty.display = not self.runs
        table.display = bool(self.runs)
        if not self.runs:
            empty.update("No runs in this ledger yet. Replay a stream into it, e.g.\n\n"
                         f"  editledger --db {self.data.db_arg} replay STREAM.jsonl\n"
                         f"  editledger --db {self.data.db_arg} demo\n\n"
                         "and they appear here while they run.")
        self.update_title()

    def update_title(self) -> None:
        name = self.sorts[self.sort_index][0]
        shown = len(self.table.rows)
        count = f"{shown} of {len(self.runs)} runs" if shown != len(self.runs) else f"{len(self.runs)} runs"
        parts = [f"editledger · {self.data.location}", count,
                 f"sort: {name}{' ↓' if self.sort_reverse else ''}"]
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        if self.table.marked:
            parts.append(f"marked: {len(self.table.marked)}")
        self.set_title(" · ".join(parts))

    def after_filter(self) -> None:
        self.update_title()

    def filter_haystack(self, r: RunItem) -> str:
        return f"{r.run_id} {r.stream_kind}".lower()

    def action_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(self.sorts)
        self.table.sort(self.sorts[self.sort_index][1], reverse=self.sort_reverse)
        self.update_title()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.table.sort(self.sorts[self.sort_index][1], reverse=self.sort_reverse)
        self.update_title()

    def on_lazy_table_header_clicked(self, event: LazyTable.HeaderClicked) -> None:
        """A click on a column header sorts by it; a second click reverses."""
        key = event.column.key
        fields = {"run": "run_id", "model": "model", "method": "method", "stream": "stream",
                  "steps": "steps", "status": "status"}
        names = [n for n, _ in self.sorts]
        if key in fields:
            name = {"run": "id"}.get(key, key)
            if name not in names:
                self.sorts.append((name, lambda r, f=fields[key]: (getattr(r, f), r.run_id)))
                names.append(name)
            index = names.index(name)
        else:   # a headline metric column: sort by its value (missing last)
            metric = next((m for m in self.headline if F.metric_name(m) == key), None)
            if metric is None:
                return
            name = F.metric_name(metric)
            if name not in names:
                self.sorts.append((name, lambda r, m=metric: (m not in r.headline, r.headline.get(m, 0.0), r.run_id)))
                names.append(name)
            index = names.index(name)
        self.sort_reverse = (not self.sort_reverse) if index == self.sort_index else False
        self.sort_index = index
        self.table.sort(self.sorts[index][1], reverse=self.sort_reverse)
        self.update_title()

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
            from tui.screens.timeline import TimelineScreen
            self.app.push_screen(TimelineScreen(r.run_id))

    def action_trajectories(self) -> None:
        runs = sorted(self.table.marked) or ([self.table.current_item.run_id] if self.table.current_item else [])
        if runs:
            from tui.screens.trajectories import TrajectoryScreen
            self.app.push_screen(TrajectoryScreen(runs))

    def action_audit(self) -> None:
        r = self.table.current_item
        if r is not None:
            from tui.screens.audit import AuditScreen
            self.app.push_screen(AuditScreen(r.run_id))

    def action_back(self) -> None:
        if self.filter_text or self.filter_has_focus():
            super().action_back()


def short_metric(m: Metric) -> str:
    """Column header for a metric in ≤7 cells: 'rw.eff', 'nb.ns', 'ppl'."""
    suite, metric = m
    abbrev = {"rewrite": "rw", "paraphrase": "para", "neighborhood": "nb", "perplexity": "",
              "attribute": "attr", "portability_sr": "p.sr", "portability_rr": "p.rr",
              "portability_oh": "p.oh", "multihop": "hop", "retention": "ret"}
    head = abbrev.get(suite, suite[:4])
    tail = metric.replace("efficacy", "eff").replace("generalization", "gen").replace("_top1", "")
    label = f"{head}.{tail}" if head else tail
    return label[:7]
