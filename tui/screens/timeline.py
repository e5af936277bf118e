"""Timeline of a run: one row per version, with the branch structure drawn in the first column."""
from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.worker import get_current_worker
from textual import work

from tui import format as F
from tui.screens.base import FilterableScreen
from tui.screens.dialogs import ConfirmScreen, InfoScreen
from tui.viewmodels import Metric, TimelineItem
from tui.widgets.lazy_table import Column, LazyTable


class TimelineScreen(FilterableScreen):
    HELP = ("One row per version of the run: the graph column draws the version DAG (● edit, "
            "◆ reset/revert/branch, ○ base, ◉ the head; ├ marks where a branch leaves its parent); "
            "edits that are no longer on the head's history are dimmed. "
            "Enter opens the edit's detail. d marks a version for a diff and d on a second version "
            "opens the diff. r resets the run's head to the version under the cursor, v reverts "
            "that step (both ask first and are recorded in the ledger like the CLI's). x shows the "
            "command that exports the version's weights.")

    BINDINGS = [
        Binding("enter", "detail", "Detail"),
        Binding("d", "diff", "Diff"),
        Binding("r", "reset", "Reset"),
        Binding("v", "revert", "Revert"),
        Binding("t", "trajectories", "Plot"),
        Binding("a", "audit", "Audit"),
        Binding("x", "export", "Export", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.key_metrics: list[Metric] = []
        self.changes_loaded = False      # the Δ columns are filled by a worker after the rows show
        self.shown_at: float | None = None    # perf_counter when the rows were first painted (benchmark)
        self.changes_at: float | None = None  # ... and when the Δ columns were
        self.diff_from: int | None = None
        self.items: list[TimelineItem] = []

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        table = LazyTable([], self.format_row, id="main")
        table.mark_key = lambda it: it.version_id
        yield table
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.table.action_last()     # the newest version first in view, like a log that grows
        self.table.focus()

    def columns(self, graph_width: int) -> list[Column]:
        cols = [Column("graph", "", width=max(1, graph_width)), Column("step", "step", justify="right"),
                Column("version", "ver", justify="right"), Column("kind", "kind", width=6),
                Column("edit", "edit", flex=True, width=16), Column("eff", "eff", width=5, justify="right")]
        for m in self.key_metrics:
            cols.append(Column(F.metric_name(m), "Δ" + short(m), width=7, justify="right"))
        cols.append(Column("flags", "flags", max_width=12))
        return cols

    def format_row(self, it: TimelineItem) -> list[Any]:
        graph = Text(it.graph, style="bold" if it.is_head else "")
        if it.kind != "edit":
            label = Text(it.note or it.kind, style="italic")
        else:
            label = Text(F.edit_label(it.subject, it.old, it.new, it.n_requests))
        if not it.on_head:      # left behind by a reset or revert: still browsable, shown dim
            label.stylize("dim")
        cells: list[Any] = [graph, str(it.step), f"v{it.version_id}", F.styled(it.kind, F.KIND_STYLES),
                            label, F.num(it.efficacy, 2)]
        for m in self.key_metrics:
            cells.append(F.change_text(it.changes.get(m) if it.changes else None, F.higher_is_better(m[1])))
        flags = []
        if it.is_head:
            flags.append("HEAD")
        flags.extend(it.flags or ())
        cells.append(Text(" ".join(flags), style="bold red" if it.flags else "bold"))
        return cells

    def reload(self) -> None:
        super().reload()
        run = self.data.run(self.run_id)
        items, key_metrics = self.data.timeline(self.run_id, changes=False)
        width = max((len(it.graph) for it in items), default=1)
        table = self.table
        if key_metrics != self.key_metrics or not table.columns or table.columns[0].width != width:
            self.key_metrics = key_metrics
            table.columns = self.columns(width)
            table._widths = [c.width or len(c.label) for c in table.columns]
        old = self.items
        n = len(old)
        if old and len(items) > n and all(a.version_id == b.version_id
                                          for a, b in zip(old[-50:], items[max(0, n - 50):n])):
            # live growth: the known rows are refreshed in place (head/flags move) and the new
            # ones appended; a cursor on the last row follows them
            table.items[:] = items[:n]
            table.append_items(items[n:])
        else:
            table.set_items(items)
        self.items = items
        self.run = run
        self.update_title()
        self.changes_loaded = False
        # after the first paint, so the worker does not compete with drawing the rows
        self.call_after_refresh(self.load_changes, items, key_metrics)
        if self.shown_at is None:
            self.call_after_refresh(self._mark_shown)

    def _mark_shown(self) -> None:
        self.shown_at = time.perf_counter()

    @work(thread=True, exclusive=True, group="timeline-changes")
    def load_changes(self, items: list[TimelineItem], metrics: list[Metric]) -> None:
        """The Δ columns need two trajectories (≈0.2 s for 10,000 versions): read them off the UI
        thread, so the rows show at once and the changes fill in a moment later."""
        self.data.timeline_changes(self.run_id, items, metrics)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._changes_ready, items)

    def _changes_ready(self, items: list[TimelineItem]) -> None:
        if items is self.items:
            self.changes_loaded = True
            self.table.refresh()
            if self.changes_at is None:
                self.call_after_refresh(lambda: setattr(self, "changes_at", time.perf_counter()))

    def update_title(self) -> None:
        r = self.run
        parts = [f"{r.name}: {r.method} on {r.model}", f"{r.stream} ({r.stream_kind})", r.status,
                 f"{r.steps} steps", f"head v{r.head_id}"]
        if self.diff_from is not None:
            parts.append(f"diff from v{self.diff_from}: press d on another version")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text} ({len(self.table.rows)} shown)")
        self.set_title(" · ".join(parts))

    def after_filter(self) -> None:
        self.update_title()

    def filter_haystack(self, it: TimelineItem) -> str:
        return f"{it.subject} {it.old} {it.new} {it.note}".lower()

    # ----- actions ---------------------------------------------------------------------------
    def on_lazy_table_row_selected(self, event: LazyTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        it = self.table.current_item
        if it is not None:
            from tui.screens.detail import DetailScreen
            self.app.push_screen(DetailScreen(it.version_id))

    def action_diff(self) -> None:
        it = self.table.current_item
        if it is None:
            return
        if self.diff_from is None or self.diff_from == it.version_id:
            self.diff_from = None if self.diff_from == it.version_id else it.version_id
            self.table.marked = {self.diff_from} if self.diff_from is not None else set()
            self.table.refresh()
            self.update_title()
            return
        a, self.diff_from = self.diff_from, None
        self.table.marked = set()
        self.update_title()
        from tui.screens.diff import DiffScreen
        self.app.push_screen(DiffScreen(a, it.version_id))

    def action_reset(self) -> None:
        it = self.table.current_item
        if it is None:
            return
        if it.is_head:
            self.notify(f"v{it.version_id} is already the head", severity="warning")
            return
        msg = (f"Reset the head of {self.run.name} to v{it.version_id} (step {it.step})?\n\n"
               "History is kept: a reset version is recorded and later steps stay in the ledger.")

        def done(ok: bool | None) -> None:
            if ok:
                self.run_action(lambda: self.data.reset(self.run_id, it.version_id),
                                f"head reset to step {it.step}")
        self.app.push_screen(ConfirmScreen("Reset head", msg), done)

    def action_revert(self) -> None:
        it = self.table.current_item
        if it is None:
            return
        if it.kind != "edit":
            self.notify("only an edit step can be reverted", severity="warning")
            return
        msg = (f"Revert step {it.step} ({F.edit_label(it.subject, it.old, it.new, it.n_requests)})?\n\n"
               "A new version is recorded whose delta chain omits this step's delta; it becomes the "
               "head. Materialising its weights is a separate checkout.")

        def done(ok: bool | None) -> None:
            if ok:
                self.run_action(lambda: self.data.revert(self.run_id, it.step),
                                f"step {it.step} reverted")
        self.app.push_screen(ConfirmScreen("Revert step", msg), done)

    def run_action(self, fn, what: str) -> None:
        from ledger.errors import UserError
        try:
            vid = fn()
        except UserError as e:
            self.notify(str(e), title="refused", severity="error", timeout=8)
            return
        except Exception as e:  # a bug below us: say so, keep the browser open
            self.notify(f"{type(e).__name__}: {e}", title="failed (nothing recorded?)", severity="error", timeout=12)
            return
        self.notify(f"{what}: new version v{vid}", title="recorded")
        self.app.action_reload()
        self.table.move_to(len(self.table.rows) - 1)

    def action_export(self) -> None:
        it = self.table.current_item
        if it is not None:
            cmd = self.data.export_command(it.version_id)
            self.app.push_screen(InfoScreen(
                "Export weights",
                f"Exporting v{it.version_id} needs the model; run this in a shell:\n\n{cmd}",
                copy=cmd))

    def action_trajectories(self) -> None:
        from tui.screens.trajectories import TrajectoryScreen
        self.app.push_screen(TrajectoryScreen([self.run_id]))

    def action_audit(self) -> None:
        from tui.screens.audit import AuditScreen
        self.app.push_screen(AuditScreen(self.run_id))

    def action_back(self) -> None:
        if self.diff_from is not None:
            self.diff_from = None
            self.table.marked = set()
            self.table.refresh()
            self.update_title()
            return
        if self.filter_text or self.filter_has_focus():
            super().action_back()
            return
        self.app.pop_screen()


def short(m: Metric) -> str:
    from tui.screens.runs import short_metric
    return short_metric(m)[:6]
