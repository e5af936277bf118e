"""Timeline of a run: one row per version, the branch structure drawn in the first column, and
harm at a glance: failed edits, forgetting, retention and the key metrics' changes, coloured."""
from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.worker import get_current_worker

from ledger.errors import UserError
from tui import format as F
from tui.filters import Field
from tui.metrics import Metric, higher_is_better, meaning, metric_name, short_metric
from tui.screens.audit import AuditScreen
from tui.screens.base import FilterableScreen
from tui.screens.detail import DetailScreen
from tui.screens.dialogs import ConfirmScreen, InfoScreen
from tui.screens.diff import DiffScreen
from tui.screens.job import PROBE_HINT, JobScreen
from tui.screens.trajectories import TrajectoryScreen
from tui.viewmodels import TimelineItem
from tui.widgets.lazy_table import Column, LazyTable

class TimelineScreen(FilterableScreen):
    HELP = ("One row per version of the run. The graph column draws the version DAG (● edit, "
            "◆ reset/revert/branch, ○ base, ◉ the head; a reset, a revert or a branch hangs by a line "
            "(●─╮ … ◆) from the version it goes back to, which the edit column names too: ↖ v7). "
            "Edits no longer on the head's "
            "history are dimmed. Harm at a glance, from the probes alone: ✗ an edit that failed, "
            "'forgot' the earlier edits this step made the model lose, ⚑ an audit finding; n / N jump "
            "to the next / previous such row. / filters (e.g. flag:forgetting, eff<1, kind:revert). "
            "A runs the audit, p re-probes a version (both run the CLI and show its progress).")
    EXPORT_NAME = "timeline"

    BINDINGS = [
        Binding("enter", "detail", "Detail"),
        Binding("n", "next_harm", "Next harm"),
        Binding("N", "prev_harm", "Prev harm", show=False),
        Binding("d", "diff", "Diff"),
        Binding("r", "reset", "Reset"),
        Binding("v", "revert", "Revert"),
        Binding("t", "trajectories", "Plot"),
        Binding("a", "audit", "Audit"),
        Binding("A", "run_audit", "Run audit"),
        Binding("p", "probe", "Re-probe", show=False),
        Binding("x", "export_weights", "Export weights", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.key_metrics: list[Metric] = []
        self.changes_loaded = False      # the harm columns are filled by a worker after the rows show
        self.shown_at: float | None = None    # perf_counter when the rows were first painted (benchmark)
        self.changes_at: float | None = None  # ... and when the harm columns were
        self.diff_from: int | None = None
        self.items: list[TimelineItem] = []
        self.EXPORT_NAME = f"timeline-run{run_id}"

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

    def columns(self, graph_width: int, step_width: int = 4, ver_width: int = 3) -> list[Column]:
        # every width is known without formatting rows (fitting 600 of 10,000 rows cost ~0.1 s)
        cols = [Column("graph", "", width=max(1, graph_width), help="the version DAG (see above)"),
                Column("step", "step", width=step_width, justify="right", sort_key=lambda it: it.step,
                       help="step number in the run (a reset or revert gets the next free one)"),
                Column("ver", "ver", width=ver_width, justify="right", sort_key=lambda it: it.version_id,
                       help="version id"),
                Column("kind", "kind", width=6, help="edit, reset (yellow), revert (magenta), branch, base"),
                Column("edit", "edit", flex=3, width=16,
                       help="subject: old → new target; for a reset/revert: what it goes back to"),
                Column("eff", "eff", width=4, justify="right", sort_key=lambda it: it.efficacy,
                       help="rewrite efficacy: share of the step's edit prompts answered with the new target "
                            "(0–1; red below 1: the edit failed)"),
                Column("ret", "ret", width=4, justify="right", sort_key=lambda it: it.retention,
                       help="retention: share of the run's earlier edits still held here (0–1; red where "
                            "this step made the model forget some)")]
        for m in self.key_metrics:
            cols.append(Column(metric_name(m), "Δ" + short_metric(m)[:6], width=7, justify="right",
                               sort_key=lambda it, m=m: (it.changes or {}).get(m),
                               help=f"change against the version before: {meaning(m)}; green better, "
                                    "red worse; · not measured at this step"))
        cols.append(Column("flags", "flags", flex=2, width=12,
                           help="✗ failed edit · forgot N: earlier edits lost at this step · supersedes N: "
                                "re-edits that fact on purpose · ⚑ audit finding (suite.metric) · HEAD"))
        return cols

    def format_row(self, it: TimelineItem) -> list[Any]:
        graph = Text(it.graph, style="bold" if it.is_head else "")
        if it.kind == "edit":
            label = Text(F.edit_label(it.subject, it.old, it.new, it.n_requests))
        else:
            label = Text(it.note or it.kind, style="italic")
            if it.target and it.kind != "base":
                label.append(f" ↖ {it.target}", style="bold " + F.KIND_STYLES.get(it.kind, "").replace("bold ", ""))
        if not it.on_head:      # left behind by a reset or revert: still browsable, shown dim
            label.stylize("dim")
        eff = Text(F.num(it.efficacy, 2), style="bold red" if it.failed else "")
        ret = Text(F.num(it.retention, 2), style="red" if it.lost else "")
        cells: list[Any] = [graph, str(it.step), f"v{it.version_id}", F.styled(it.kind, F.KIND_STYLES),
                            label, eff, ret]
        for m in self.key_metrics:
            change = it.changes.get(m) if it.changes else None
            if change is None and self.changes_loaded and it.kind == "edit":
                cells.append(Text("·", style="dim"))
            else:
                cells.append(F.change_text(change, higher_is_better(m[1])))
        cells.append(flags_text(it))
        return cells

    def reload(self) -> None:
        super().reload()
        run = self.data.run(self.run_id)
        items, key_metrics = self.data.timeline(self.run_id, changes=False)
        width = max((len(it.graph) for it in items), default=1)
        step_w = max(4, len(str(max((it.step for it in items), default=0))))
        ver_w = max(3, 1 + len(str(max((it.version_id for it in items), default=0))))
        table = self.table
        if key_metrics != self.key_metrics or not table.columns or \
                [c.width for c in table.columns[:3]] != [width, step_w, ver_w]:
            self.key_metrics = key_metrics
            table.columns = self.columns(width, step_w, ver_w)
            table._widths = [c.width or len(c.label) for c in table.columns]
        old = self.items
        n = len(old)
        if (old and len(items) > n and table.sort_column is None
                and all(a.version_id == b.version_id for a, b in zip(old[-50:], items[max(0, n - 50):n]))):
            # live growth: the known rows are refreshed in place (head/flags move) and the new
            # ones appended; a cursor on the last row follows them
            table.items[:] = items[:n]
            table.append_items(items[n:])
        else:
            table.set_items(items)
        self.items = items
        self.run = run
        self.changes_loaded = False
        self.update_title()
        # after the first paint, so the worker does not compete with drawing the rows
        self.call_after_refresh(self.load_changes, items, key_metrics)
        if self.shown_at is None:
            self.call_after_refresh(self._mark_shown)

    def _mark_shown(self) -> None:
        self.shown_at = time.perf_counter()

    @work(thread=True, exclusive=True, group="timeline-changes")
    def load_changes(self, items: list[TimelineItem], metrics: list[Metric]) -> None:
        """The harm columns need a few trajectories (≈0.2 s for 10,000 versions) and the retention
        detail where it fell: read them off the UI thread, so the rows show at once."""
        self.data.timeline_harm(self.run_id, items, metrics)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._changes_ready, items)

    def _changes_ready(self, items: list[TimelineItem]) -> None:
        if items is self.items:
            self.changes_loaded = True
            self.table.refresh()
            self.update_title()
            if self.changes_at is None:
                self.call_after_refresh(lambda: setattr(self, "changes_at", time.perf_counter()))

    def harm_summary(self) -> str:
        """'1 failed (step 8) · forgetting from step 3 · 2 flagged' — the run's harm, for the title."""
        if not self.changes_loaded:
            return ""
        failed = [it.step for it in self.items if it.failed]
        forgot = [it.step for it in self.items if it.lost]
        flagged = [it.step for it in self.items if it.findings]
        parts = []
        if failed:
            parts.append(f"{len(failed)} failed (step {F.ranges(failed)})")
        if forgot:
            parts.append(f"forgetting from step {forgot[0]}")
        if flagged:
            parts.append(f"{len(flagged)} flagged by the audit")
        return " · ".join(parts) or "no failed edit, no forgetting"

    def update_title(self) -> None:
        r = self.run
        edits = sum(1 for it in self.items if it.kind == "edit")
        head = next((it for it in self.items if it.is_head), None)
        head_s = f"head v{r.head_id}" + (f" = step {head.step} ({head.kind})" if head is not None else "")
        parts = [f"{r.name}: {r.method} on {r.model}", f"{r.stream} ({r.stream_kind})", r.status,
                 f"{edits} edits", head_s]
        harm = self.harm_summary()
        if harm:
            parts.append(harm)
        if self.diff_from is not None:
            parts.append(f"diff from v{self.diff_from}: press d on another version")
        if self.table.sort_label:
            parts.append(f"sort: {self.table.sort_label}")
        if self.filter_text:
            parts.append(self.filter_status())
        self.set_title(" · ".join(parts))

    def after_filter(self) -> None:
        self.update_title()

    def filter_fields(self) -> list[Field]:
        fields = [Field("step", lambda it: it.step), Field("ver", lambda it: it.version_id),
                  Field("kind", lambda it: it.kind), Field("eff", lambda it: it.efficacy),
                  Field("ret", lambda it: it.retention), Field("flag", lambda it: it.flag_words()),
                  Field("subject", lambda it: it.subject)]
        for m in self.key_metrics:
            get = (lambda it, m=m: (it.changes or {}).get(m))
            name = short_metric(m).split(".")[-1]
            fields += [Field("Δ" + name, get), Field("d" + name, get)]
        return fields

    def filter_haystack(self, it: TimelineItem) -> str:
        return f"{it.subject} {it.old} {it.new} {it.note} {' '.join(it.flag_words())}"

    # ----- actions ---------------------------------------------------------------------------
    def on_lazy_table_row_selected(self, event: LazyTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        it = self.table.current_item
        if it is not None:
            self.app.push_screen(DetailScreen(it.version_id))

    def _jump(self, direction: int) -> None:
        rows = self.table.rows
        if not rows:
            return
        n = len(rows)
        start = self.table.cursor_row
        for k in range(1, n + 1):
            i = (start + direction * k) % n
            if rows[i].harmed:
                self.table.move_to(i)
                return
        self.notify("no failed edit, forgetting or audit finding among the rows shown", timeout=4)

    def action_next_harm(self) -> None:
        self._jump(1)

    def action_prev_harm(self) -> None:
        self._jump(-1)

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
               "head. It is not measured until you re-probe it (p); materialising its weights is a "
               "separate checkout.")

        def done(ok: bool | None) -> None:
            if ok:
                self.run_action(lambda: self.data.revert(self.run_id, it.step),
                                f"step {it.step} reverted")
        self.app.push_screen(ConfirmScreen("Revert step", msg), done)

    def run_action(self, fn, what: str) -> None:
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

    def action_run_audit(self) -> None:
        self.app.push_screen(JobScreen(f"Audit of {self.run.name}", self.data.audit_argv(self.run_id)),
                             lambda _rc: self.reload())

    def action_probe(self) -> None:
        it = self.table.current_item
        if it is None or it.kind == "base":
            self.notify("pick a version of this run to re-probe", severity="warning")
            return
        self.app.push_screen(JobScreen(f"Re-probe v{it.version_id} (step {it.step})",
                                       self.data.probe_argv(self.run_id, it.step), missing_hint=PROBE_HINT),
                             lambda _rc: self.reload())

    def action_export_weights(self) -> None:
        it = self.table.current_item
        if it is not None:
            cmd = self.data.export_command(it.version_id)
            self.app.push_screen(InfoScreen(
                "Export weights",
                f"Exporting v{it.version_id} needs the model; run this in a shell:\n\n{cmd}",
                copy=cmd))

    def action_trajectories(self) -> None:
        self.app.push_screen(TrajectoryScreen([self.run_id]))

    def action_audit(self) -> None:
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


def flags_text(it: TimelineItem) -> Text:
    t = Text()

    def add(s: str, style: str) -> None:
        if t.plain:
            t.append(" ")
        t.append(s, style=style)
    if it.failed:
        add("✗failed" if (it.efficacy or 0) == 0 else f"✗{F.num(it.efficacy, 2)}", "bold red")
    if it.lost:
        add(f"forgot {F.ranges(it.lost)}", "red")
    if it.superseded:
        add(f"supersedes {F.ranges(it.superseded)}", "dim")
    for label in it.findings or ():
        add("⚑" + label, "bold red")
    if it.is_head:
        add("HEAD", "bold cyan")
    return t
