"""Edit detail: the request(s) and their probes, method and hyper-parameters, per-tensor delta,
probe results at this version against the base and the previous version."""
from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from tui import format as F
from tui.screens.base import LedgerScreen
from tui.screens.dialogs import InfoScreen
from tui.viewmodels import DeltaItem, DetailView, ProbeItemView
from tui.widgets.lazy_table import Column, LazyTable


class DetailScreen(LedgerScreen):
    HELP = ("One version: the edit request(s), the method's hyper-parameters, what the edit did to "
            "each tensor, and every probe result here and against the base and the previous version "
            "(the comparisons the probes stored, such as NKL; coloured ones are differences computed "
            "from the plain values). 1/2/3 switch tabs; in Probes the per-prompt detail of the "
            "highlighted row is shown below the table. x shows the command that exports the weights.")

    BINDINGS = [
        Binding("1", "tab('edit')", "Edit"),
        Binding("2", "tab('deltas')", "Deltas"),
        Binding("3", "tab('probes')", "Probes"),
        Binding("x", "export", "Export"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, version_id: int) -> None:
        super().__init__()
        self.version_id = version_id
        self.view: DetailView | None = None

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        with TabbedContent(initial="edit", id="tabs"):
            with TabPane("Edit (1)", id="edit"):
                with VerticalScroll():
                    yield Static("", id="edit-text", markup=False)
            with TabPane("Deltas (2)", id="deltas"):
                t = LazyTable([Column("layer", "layer", justify="right"),
                               Column("tensor", "tensor", flex=True, width=20),
                               Column("kind", "kind"), Column("shape", "shape"),
                               Column("rank", "rank", justify="right"),
                               Column("norm", "‖Δ‖", justify="right"),
                               Column("bytes", "bytes", justify="right")],
                              self.format_delta, id="delta-table")
                yield t
                yield Static("", id="delta-total", markup=False)
            with TabPane("Probes (3)", id="probes"):
                yield LazyTable([Column("suite", "suite", max_width=16), Column("metric", "metric", max_width=24),
                                 Column("value", "here", width=8, justify="right"),
                                 Column("vs_base", "vs base", width=8, justify="right"),
                                 Column("vs_prev", "vs prev", width=8, justify="right"),
                                 Column("count", "n", justify="right")],
                                self.format_probe, id="probe-table")
                with VerticalScroll(id="probe-detail-box"):
                    yield Static("", id="probe-detail", markup=False)
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        super().reload()
        v = self.view = self.data.detail(self.version_id)
        self.set_title(f"v{v.version_id} · step {v.step} · {v.kind} · {v.method}"
                       + (f" · run-{v.run_id}" if v.run_id is not None else "")
                       + (f" · parent v{v.parent_id}" if v.parent_id is not None else ""))
        self.query_one("#edit-text", Static).update(self.edit_text(v))
        self.query_one("#delta-table", LazyTable).set_items(v.deltas)
        total = sum(d.nbytes for d in v.deltas)
        self.query_one("#delta-total", Static).update(
            f"{len(v.deltas)} tensors · {F.nbytes(total)} stored" if v.deltas else
            "no weight delta (base version, in-context method, or a reset that only moves the head)")
        self.query_one("#probe-table", LazyTable).set_items(v.probes)

    @staticmethod
    def edit_text(v: DetailView) -> str:
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
            lines.append(f"  {k:<24} {json.dumps(val) if not isinstance(val, str) else val}")
        if v.diagnostics:
            lines += ["", "Diagnostics"]
            for k, val in sorted(v.diagnostics.items()):
                lines.append(f"  {k:<24} {json.dumps(val) if not isinstance(val, str) else val}")
        lines += ["", f"Created   {v.created}", f"Export    {v.export_command}"]
        return "\n".join(lines)

    def format_delta(self, d: DeltaItem) -> list[Any]:
        return [d.layer, d.tensor, d.kind, "×".join(map(str, d.shape)),
                "" if d.rank is None else str(d.rank), F.num(d.norm, 4), F.nbytes(d.nbytes)]

    def format_probe(self, p: ProbeItemView) -> list[Any]:
        better = F.higher_is_better(p.metric)
        vs_base = F.change_text(p.vs_base, better) if p.base_computed else Text(F.num(p.vs_base))
        vs_prev = F.change_text(p.vs_previous, better) if p.previous_computed else Text(F.num(p.vs_previous))
        return [p.suite, p.metric, F.num(p.value), vs_base, vs_prev, str(p.count)]

    def on_lazy_table_row_highlighted(self, event: LazyTable.RowHighlighted) -> None:
        if event.table.id == "probe-table":
            self.query_one("#probe-detail", Static).update(probe_detail_text(event.item))

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        target = {"deltas": "#delta-table", "probes": "#probe-table"}.get(tab)
        if target:
            self.query_one(target).focus()

    def action_export(self) -> None:
        cmd = self.data.export_command(self.version_id)
        self.app.push_screen(InfoScreen(
            "Export weights", f"Exporting v{self.version_id} needs the model; run this in a shell:\n\n{cmd}",
            copy=cmd))

    def action_back(self) -> None:
        self.app.pop_screen()


def probe_detail_text(p: ProbeItemView, limit: int = 40) -> str:
    """How the comparisons were obtained and the stored per-prompt detail (first ``limit`` rows)."""
    lines = [f"{p.suite}/{p.metric}: here {F.num(p.value)}, vs base {F.num(p.vs_base)}"
             + (" (here − base value)" if p.base_computed else " (stored)" if p.vs_base is not None else "")
             + f", vs previous {F.num(p.vs_previous)}"
             + (" (here − parent value)" if p.previous_computed else " (stored)" if p.vs_previous is not None else "")]
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
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "…"
