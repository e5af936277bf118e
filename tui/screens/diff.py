"""Diff of two versions: which tensors differ and by how much, and every metric side by side."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tui import format as F
from tui.screens.base import LedgerScreen
from tui.viewmodels import MetricDiff, TensorDiff
from tui.widgets.lazy_table import Column, LazyTable


def _steps(steps: list[int]) -> str:
    if len(steps) > 6:
        return ",".join(map(str, steps[:5])) + f",…(+{len(steps) - 5})"
    return ",".join(map(str, steps))


class DiffScreen(LedgerScreen):
    HELP = ("Two versions compared. Tensors: every tensor whose delta chain differs, with the steps "
            "only A or only B applied, ‖W_B − W_A‖ computed from the stored delta factors in float64, "
            "and the sum of the differing deltas' norms. Metrics: every probe result at A and at B. "
            "tab switches between the tables; w swaps A and B.")

    BINDINGS = [
        Binding("w", "swap", "Swap A/B"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        yield Static("", id="tensor-caption", classes="caption", markup=False)
        yield LazyTable([Column("tensor", "tensor", flex=True, width=20),
                         Column("only_a", "only in A", max_width=16),
                         Column("only_b", "only in B", max_width=16),
                         Column("norm", "‖B−A‖", width=9, justify="right"),
                         Column("bound", "Σ‖Δ‖", width=9, justify="right")],
                        self.format_tensor, id="tensor-table")
        yield Static("", id="metric-caption", classes="caption", markup=False)
        yield LazyTable([Column("metric", "metric", flex=True, width=20),
                         Column("against", "vs", max_width=8),
                         Column("a", "A", width=8, justify="right"),
                         Column("b", "B", width=8, justify="right"),
                         Column("change", "B−A", width=8, justify="right")],
                        self.format_metric, id="metric-table")
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#tensor-table").focus()

    def reload(self) -> None:
        super().reload()
        v = self.data.diff(self.a, self.b)
        common = f" · common ancestor v{v.common_id}" if v.common_id is not None else ""
        self.set_title(f"A = {v.a_label}  ·  B = {v.b_label}{common}")
        self.query_one("#tensor-caption", Static).update(
            f"Tensors that differ: {len(v.tensors)}" if v.tensors else "Tensors: identical weights")
        self.query_one("#tensor-table", LazyTable).set_items(v.tensors)
        self.query_one("#metric-caption", Static).update(f"Metrics: {len(v.metrics)}")
        self.query_one("#metric-table", LazyTable).set_items(v.metrics)

    def format_tensor(self, t: TensorDiff) -> list[Any]:
        return [t.tensor, _steps(t.only_a), _steps(t.only_b), F.num(t.norm, 4), F.num(t.bound, 4)]

    def format_metric(self, m: MetricDiff) -> list[Any]:
        return [f"{m.suite}/{m.metric}", "" if m.against == "none" else m.against,
                F.num(m.a), F.num(m.b), F.change_text(m.change, F.higher_is_better(m.metric))]

    def action_swap(self) -> None:
        self.a, self.b = self.b, self.a
        self.reload()

    def action_back(self) -> None:
        self.app.pop_screen()
