"""Diff of two versions: which tensors differ and by how much, and every metric side by side."""
from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tui import format as F
from tui.metrics import higher_is_better
from tui.screens.base import FilterableScreen
from tui.viewmodels import DiffView, MetricDiff, TensorDiff
from tui.widgets.lazy_table import Column, LazyTable


class DiffScreen(FilterableScreen):
    HELP = ("Two versions compared. Tensors: every tensor whose delta chain differs, with the steps "
            "whose edits only A or only B applied (a revert's re-applied deltas keep their own step), "
            "‖W_B − W_A‖ computed from the stored delta factors in float64, and the sum of the "
            "differing deltas' norms. Metrics: every probe result at A and at B; B−A only where both "
            "measured the same items (a fixed set such as the perplexity text, or the same edit): a "
            "step's own metrics are measured on that step's prompts. tab switches tables; w swaps A and B.")
    EXPORT_NAME = "diff"

    BINDINGS = [
        Binding("w", "swap", "Swap A/B"),
        Binding("tab", "app.focus_next", "Next table"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.view: DiffView | None = None
        self.norms_loaded = False
        self.shown_at: float | None = None     # perf_counter when first painted (benchmark)

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        yield Static("", id="tensor-caption", classes="caption", markup=False)
        yield LazyTable([Column("tensor", "tensor", flex=1, width=20),
                         Column("only_a", "only in A", max_width=16, help="steps whose deltas only A's chain has"),
                         Column("only_b", "only in B", max_width=16, help="steps whose deltas only B's chain has"),
                         Column("norm", "‖B−A‖", width=9, justify="right", sort_key=lambda t: t.norm,
                                help="Frobenius norm of W_B − W_A (float64, from the stored factors)"),
                         Column("bound", "Σ‖Δ‖", width=9, justify="right", sort_key=lambda t: t.bound,
                                help="sum of the differing deltas' norms (an upper bound of ‖B−A‖)")],
                        self.format_tensor, id="tensor-table")
        yield Static("", id="metric-caption", classes="caption", markup=False)
        yield LazyTable([Column("metric", "metric", flex=1, width=20),
                         Column("against", "vs", max_width=8, help="the stored comparison (empty: the value itself)"),
                         Column("a", "A", width=8, justify="right", sort_key=lambda m: m.a),
                         Column("b", "B", width=8, justify="right", sort_key=lambda m: m.b),
                         Column("change", "B−A", width=8, justify="right", sort_key=lambda m: m.change,
                                help="B minus A where both measured the same items; ≠items otherwise")],
                        self.format_metric, id="metric-table")
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#tensor-table").focus()
        self.call_after_refresh(lambda: setattr(self, "shown_at", time.perf_counter()))

    def reload(self) -> None:
        super().reload()
        v = self.view = self.data.diff(self.a, self.b, norms=False)
        self.norms_loaded = False
        self.load_norms(v)
        common = f" · common ancestor v{v.common_id}" if v.common_id is not None else ""
        self.set_title(f"A = {v.a_label}  ·  B = {v.b_label}{common}")
        self.query_one("#tensor-caption", Static).update(
            f"Tensors that differ: {len(v.tensors)} (steps: the edits that made each delta)" if v.tensors
            else "Tensors: identical weights")
        self.query_one("#tensor-table", LazyTable).set_items(v.tensors)
        n_cmp = sum(m.comparable for m in v.metrics)
        self.query_one("#metric-caption", Static).update(
            f"Metrics: {len(v.metrics)} · B−A for the {n_cmp} measured on the same items"
            + (" (A and B applied the same edit)" if v.same_edit else
               "; the others are each version's own step prompts: compare them with care"))
        self.query_one("#metric-table", LazyTable).set_items(v.metrics)

    @work(thread=True, exclusive=True, group="diff-norms")
    def load_norms(self, view: DiffView) -> None:
        """‖B−A‖ reads every differing delta's factors (thousands across a long run): off the UI thread."""
        self.data.diff_norms(view)
        self.app.call_from_thread(self._norms_ready, view)

    def _norms_ready(self, view: DiffView) -> None:
        if view is self.view:
            self.norms_loaded = True
            self.query_one("#tensor-table", LazyTable).refresh()

    def format_tensor(self, t: TensorDiff) -> list[Any]:
        norm = F.num(t.norm, 4) if self.norms_loaded else "…"
        return [t.tensor, F.ranges(t.only_a), F.ranges(t.only_b), norm, F.num(t.bound, 4)]

    def format_metric(self, m: MetricDiff) -> list[Any]:
        change = (F.change_text(m.change, higher_is_better(m.metric)) if m.comparable
                  else Text("≠items", style="dim"))
        return [f"{m.suite}/{m.metric}", "" if m.against == "none" else m.against, F.num(m.a), F.num(m.b), change]

    def action_swap(self) -> None:
        self.a, self.b = self.b, self.a
        self.reload()

    def action_back(self) -> None:
        if self.filter_text or self.filter_has_focus():
            super().action_back()       # clears the filter first
            return
        self.app.pop_screen()
