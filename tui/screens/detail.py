"""One version: an outcome line (did the edit take, what did it cost), the audit's findings on it,
the request(s) and the step's probes, method and hyper-parameters; each tensor's delta with the
step it came from and its size against the weights (‖Δ‖/‖W‖); every probe result here and
against the base and the previous version."""
from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.events import Click
from textual.widgets import ContentSwitcher, Static

from tui import format as F
from tui.metrics import higher_is_better
from tui.screens.base import FilterableScreen
from tui.screens.dialogs import InfoScreen
from tui.screens.job import PROBE_HINT, JobScreen
from tui.viewmodels import DeltaItem, DetailView, FindingItem, ProbeItemView
from tui.widgets.lazy_table import Column, LazyTable

TABS = {"edit": "#edit", "deltas": "#delta-table", "probes": "#probe-table"}
TAB_LABELS = {"edit": "1 Edit", "deltas": "2 Deltas", "probes": "3 Probes"}


class TabBar(Static):
    """One line of tab names; a click picks one. (Textual's TabbedContent costs this screen about
    half its opening time, for an underline animation.)"""

    def show(self, active: str) -> None:
        t = Text()
        self.spans: list[tuple[int, int, str]] = []
        for tab, label in TAB_LABELS.items():
            start = t.cell_len
            t.append(f" {label} ", style="bold reverse" if tab == active else "")
            self.spans.append((start, t.cell_len, tab))
            t.append(" ")
        self.update(t)

    def on_click(self, event: Click) -> None:
        for start, end, tab in getattr(self, "spans", []):
            if start <= event.x < end:
                self.screen.action_tab(tab)


class DetailScreen(FilterableScreen):
    HELP = ("One version. The line under the title says whether the edit took and what it cost "
            "(or, for a reset or revert, where it goes back to and whether it repaired anything once "
            "measured). Edit: the audit's findings on this step, the request(s), the step's probe "
            "items, the method's hyper-parameters and the editor's diagnostics. Deltas: what each "
            "tensor got, from which step (a revert re-applies later steps' deltas), ‖Δ‖ against the "
            "weights it was applied to. Probes: every result here and against the base and the "
            "previous version (coloured where it is a difference: green better, red worse); the "
            "per-prompt detail of the highlighted row below. 1/2/3 or tab switch panes; p re-probes "
            "this version; x shows the command that exports its weights.")
    EXPORT_NAME = "detail"

    BINDINGS = [
        Binding("1", "tab('edit')", "Edit"),
        Binding("2", "tab('deltas')", "Deltas"),
        Binding("3", "tab('probes')", "Probes"),
        Binding("tab", "next_tab", "Next pane"),
        Binding("p", "probe", "Re-probe"),
        Binding("x", "export_weights", "Export"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, version_id: int) -> None:
        super().__init__()
        self.version_id = version_id
        self.view: DetailView | None = None
        self.shown_at: float | None = None       # perf_counter when first painted (benchmark)
        self.norms_loaded = False

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        yield Static("", id="outcome", markup=False)
        yield TabBar(id="tabbar", markup=False)
        with ContentSwitcher(initial="edit", id="tabs"):
            with VerticalScroll(id="edit"):
                yield Static("", id="edit-text", markup=False)
            with Vertical(id="deltas"):
                yield LazyTable([
                    Column("layer", "layer", justify="right", help="layer index in the tensor's name"),
                    Column("tensor", "tensor", flex=1, width=20, help="the weight the delta changes"),
                    Column("from", "from", justify="right", help="the step whose edit made this delta"),
                    Column("kind", "kind", help="low_rank (u vᵀ), dense or sparse: how it is stored, exactly"),
                    Column("shape", "shape"),
                    Column("rank", "rank", justify="right"),
                    Column("norm", "‖Δ‖", width=8, justify="right", sort_key=lambda d: d.norm, help="Frobenius norm of the delta"),
                    Column("w", "‖W‖", width=8, justify="right", sort_key=lambda d: d.weight_norm,
                           help="Frobenius norm of the tensor it was applied to (from the nearest keyframe; – without one)"),
                    Column("rel", "‖Δ‖/‖W‖", width=8, justify="right", sort_key=lambda d: d.relative,
                           help="the delta's size against the weights (%)"),
                    Column("bytes", "bytes", justify="right", sort_key=lambda d: d.nbytes, help="stored size")],
                    self.format_delta, id="delta-table")
                yield Static("", id="delta-total", markup=False)
            with Vertical(id="probes"):
                yield Static("", id="probes-note", markup=False)
                yield LazyTable([Column("suite", "suite", max_width=16), Column("metric", "metric", max_width=24),
                                 Column("value", "here", width=8, justify="right", help="the measurement at this version"),
                                 Column("vs_base", "vs base", width=8, justify="right",
                                        help="against the base model (a difference, or a divergence such as NKL)"),
                                 Column("vs_prev", "vs prev", width=8, justify="right",
                                        help="against the version before, on the same prompts"),
                                 Column("count", "n", justify="right", help="prompts or items measured")],
                                self.format_probe, id="probe-table")
                with VerticalScroll(id="probe-detail-box"):
                    yield Static("", id="probe-detail", markup=False)
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#tabbar", TabBar).show("edit")
        self.query_one("#edit").focus()     # ↓ and PgDn scroll the Edit tab at once
        self.call_after_refresh(lambda: setattr(self, "shown_at", time.perf_counter()))

    def reload(self) -> None:
        super().reload()
        v = self.view = self.data.detail(self.version_id)
        self.EXPORT_NAME = f"v{v.version_id}"
        self.set_title(f"v{v.version_id} · step {v.step} · {v.kind} · {v.method}"
                       + (f" · run-{v.run_id}" if v.run_id is not None else "")
                       + (f" · parent v{v.parent_id}" if v.parent_id is not None else ""))
        self.query_one("#outcome", Static).update(v.outcome)
        self.query_one("#edit-text", Static).update(edit_text(v))
        self.query_one("#delta-table", LazyTable).set_items(v.deltas)
        total = sum(d.nbytes for d in v.deltas)
        self.query_one("#delta-total", Static).update(
            f"{len(v.deltas)} tensors · {F.nbytes(total)} stored" if v.deltas else
            "no weight delta (base version, in-context method, or a reset that only moves the head)")
        note = self.query_one("#probes-note", Static)
        note.update(v.probes_note)
        note.display = bool(v.probes_note)
        self.query_one("#probe-table", LazyTable).set_items(v.probes)
        if not v.probes:
            self.query_one("#probe-detail", Static).update("")
        if v.deltas:
            self.load_norms(v)

    @work(thread=True, exclusive=True, group="weight-norms")
    def load_norms(self, view: DetailView) -> None:
        """‖W‖ reads a keyframe (a few MB for a real model): off the UI thread."""
        norms = self.data.weight_norms(view.version_id, view.deltas)
        self.app.call_from_thread(self._norms_ready, view, norms)

    def _norms_ready(self, view: DetailView, norms: dict[str, float | None]) -> None:
        if view is not self.view:
            return
        for d in view.deltas:
            d.weight_norm = norms.get(d.tensor)
        self.norms_loaded = True
        self.query_one("#delta-table", LazyTable).refresh()

    def format_delta(self, d: DeltaItem) -> list[Any]:
        rel = d.relative
        return [d.layer, d.tensor, "" if d.from_step is None else str(d.from_step), d.kind,
                "×".join(map(str, d.shape)), "" if d.rank is None else str(d.rank), F.num(d.norm, 4),
                F.num(d.weight_norm, 4) if self.norms_loaded else "…",
                "–" if rel is None else f"{100 * rel:.2f}%", F.nbytes(d.nbytes)]

    def format_probe(self, p: ProbeItemView) -> list[Any]:
        better = higher_is_better(p.metric)
        # comparisons of a metric that has a plain value are differences: colour them; a
        # comparison-only metric (NKL, token agreement) is a divergence, shown as it is
        differences = p.value is not None
        vs_base = F.change_text(p.vs_base, better) if differences else Text(F.num(p.vs_base))
        vs_prev = F.change_text(p.vs_previous, better) if differences else Text(F.num(p.vs_previous))
        return [p.suite, p.metric, F.num(p.value), vs_base, vs_prev, str(p.count)]

    def on_lazy_table_row_highlighted(self, event: LazyTable.RowHighlighted) -> None:
        if event.table.id == "probe-table":
            self.query_one("#probe-detail", Static).update(probe_detail_text(event.item))

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", ContentSwitcher).current = tab
        self.query_one("#tabbar", TabBar).show(tab)
        self.query_one(TABS[tab]).focus()

    async def action_filter(self) -> None:
        target = self.focused if isinstance(self.focused, LazyTable) else None
        if target is None:                            # the Edit pane has no rows: filter the probes
            self.action_tab("probes")
            target = self.query_one("#probe-table", LazyTable)
        await self.start_filter(target)

    def action_next_tab(self) -> None:
        tabs = list(TABS)
        current = self.query_one("#tabs", ContentSwitcher).current or "edit"
        self.action_tab(tabs[(tabs.index(current) + 1) % len(tabs)])

    def action_probe(self) -> None:
        v = self.view
        if v is None or v.run_id is None:
            self.notify("the base model is measured with every run (its 'vs base' columns)", severity="warning")
            return
        self.app.push_screen(JobScreen(f"Re-probe v{v.version_id} (step {v.step})",
                                       self.data.probe_argv(v.run_id, v.step), missing_hint=PROBE_HINT),
                             lambda _rc: self.reload())

    def action_export_weights(self) -> None:
        cmd = self.data.export_command(self.version_id)
        self.app.push_screen(InfoScreen(
            "Export weights", f"Exporting v{self.version_id} needs the model; run this in a shell:\n\n{cmd}",
            copy=cmd))

    def action_back(self) -> None:
        if self.filter_text or self.filter_has_focus():
            super().action_back()       # clears the filter first
            return
        self.app.pop_screen()


def findings_text(findings: list[FindingItem]) -> Text:
    t = Text()
    t.append(f"Audit findings on this step ({len(findings)})\n", style="bold red")
    for f in findings:
        t.append(f"  ⚑ {f.metric}", style="bold red")
        t.append(f"  score {F.num(f.score, 2)}  {f.summary}\n")
    t.append("\n")
    return t


def edit_text(v: DetailView) -> Text:
    out = Text()
    if v.findings:
        out.append_text(findings_text(v.findings))
    lines: list[str] = []
    if v.note:
        lines += [v.note, ""]
    for i, r in enumerate(v.requests):
        head = f"Request {i + 1} of {len(v.requests)}" if len(v.requests) > 1 else "Request"
        lines.append(head)
        lines.append(f"  subject   {r.get('subject', '')}")
        lines.append(f"  prompt    {r.get('prompt', '').replace('{}', r.get('subject', ''))}")
        lines.append(f"  old → new {str(r.get('target_old') or '?').strip()} → {str(r.get('target_new', '')).strip()}")
        for key in ("relation", "case_id", "group", "role"):
            if r.get(key):
                lines.append(f"  {key:<9} {r[key]}")
        lines.append("")
    if v.step_probes:
        n = sum(len(items) for items in v.step_probes.values())
        lines.append(f"Probes of this step ({n} items; results in the Probes tab)")
        for suite, items in v.step_probes.items():
            lines.append(f"  {suite} ({len(items)})")
            for item in items[:3]:
                alt = f"  (not{item['alt']})" if item.get("alt") else ""
                lines.append(f"    · {item.get('prompt', '')} →{item.get('target', '')}{alt}")
            if len(items) > 3:
                lines.append(f"    … {len(items) - 3} more")
        lines.append("")
    if not v.requests:
        lines += ["No edit request at this version.", ""]
    lines.append(f"Method    {v.method}   (editor time {v.wall_time_s:.2f} s)")
    for k, val in sorted(v.hparams.items()):
        lines.append(f"  {k:<24} {_json(val)}")
    if v.diagnostics or v.hidden_diagnostics:
        lines += ["", "Diagnostics"]
        for k, val in sorted(v.diagnostics.items()):
            lines.append(f"  {k:<24} {_json(val)}")
        for k, size in sorted(v.hidden_diagnostics.items()):
            lines.append(f"  {k:<24} (the replay's resume state, {F.nbytes(size)}: not shown)")
    lines += ["", f"Created   {v.created}", f"Export    {v.export_command}"]
    out.append("\n".join(lines))
    return out


def _json(val: Any) -> str:
    return val if isinstance(val, str) else json.dumps(val, ensure_ascii=False)


def probe_detail_text(p: ProbeItemView, limit: int = 40) -> str:
    """How the comparisons were obtained and the stored per-prompt detail (first ``limit`` rows)."""
    lines = [f"{p.suite}/{p.metric}: here {F.num(p.value)}, vs base {F.num(p.vs_base)}"
             + (" (here − base value)" if p.base_computed else " (stored)" if p.vs_base is not None else "")
             + f", vs previous {F.num(p.vs_previous)}"
             + (" (here − parent value)" if p.previous_computed else " (the version before is the base)"
                if p.previous_is_base else " (stored)" if p.vs_previous is not None else "")]
    if not p.details:
        lines.append("no per-prompt detail stored")
    for against, d in p.details.items():
        lines.append(f"detail ({'the measurement' if against == 'none' else 'vs ' + against}):")
        if isinstance(d, dict):
            lines += [f"  {k}: {_short(v)}" for k, v in d.items()]
        elif isinstance(d, list):
            for row in d[:limit]:
                lines.append("  " + ("  ".join(f"{k}={_short(v)}" for k, v in row.items())
                                     if isinstance(row, dict) else str(row)))
            if len(d) > limit:
                lines.append(f"  … {len(d) - limit} more")
        else:
            lines.append(f"  {d}")
    return "\n".join(lines)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return F.num(v)
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "…"
