"""Trajectories: any metric against the step, several metrics or several runs overlaid, with the
culprit steps an audit found marked as vertical lines."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection
from textual_plotext import PlotextPlot

from tui import format as F
from tui.screens.base import LedgerScreen
from tui.viewmodels import Metric, Series

# plotext colour names, one per overlaid series (cycled)
COLORS = ["cyan", "orange", "green", "magenta", "blue", "yellow", "red", "white"]


class TrajectoryScreen(LedgerScreen):
    HELP = ("Metrics against the step. Space (or a click) toggles a metric in the list; every "
            "marked run (space on the runs screen) is overlaid. n plots each series relative to "
            "its first value, which puts metrics with different scales on one axis. Red vertical "
            "lines are the culprit steps an audit found (c hides them).")

    BINDINGS = [
        Binding("n", "normalise", "Relative"),
        Binding("c", "culprits", "Culprits"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_ids: list[int], metrics: list[Metric] | None = None) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.chosen: list[Metric] | None = metrics
        self.normalise = False
        self.show_culprits = True
        self.series: list[Series] = []         # what is plotted now (tests read this)
        self.culprits: dict[int, list[int]] = {}  # run id -> culprit steps

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        with Horizontal(id="traj-body"):
            yield SelectionList[Metric](id="metric-list")
            with Vertical(id="plot-box"):
                yield PlotextPlot(id="plot")
                yield Static("", id="legend", markup=False)
        yield self.footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#metric-list").focus()

    def reload(self) -> None:
        super().reload()
        metrics: list[Metric] = []
        for rid in self.run_ids:
            for m in self.data.metrics(rid):
                if m not in metrics:
                    metrics.append(m)
        if self.chosen is None:
            self.chosen = metrics[:1]
        sel = self.query_one("#metric-list", SelectionList)
        with self.prevent(SelectionList.SelectedChanged):
            sel.clear_options()
            sel.add_options([Selection(F.metric_name(m), m, m in self.chosen) for m in metrics])
        names = ", ".join(self.data.run(r).name for r in self.run_ids)
        self.set_title(f"Trajectories · {names} · {len(metrics)} metrics")
        self.culprits = {r: self.data.culprit_steps(r) for r in self.run_ids}
        self.redraw()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.chosen = list(event.selection_list.selected)
        self.redraw()

    def redraw(self) -> None:
        self.series = []
        for rid in self.run_ids:
            prefix = f"{self.data.run(rid).name} " if len(self.run_ids) > 1 else ""
            for m in self.chosen or []:
                s = self.data.series(rid, m)
                if s.steps:
                    s.label = prefix + F.metric_name(m)
                    self.series.append(s)
        plt = self.query_one("#plot", PlotextPlot).plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step")
        plt.title("relative to the first value" if self.normalise else "")
        for i, s in enumerate(self.series):
            ys = s.values
            if self.normalise and ys and ys[0] not in (0, None):
                ys = [v / ys[0] for v in ys]
            plt.plot(s.steps, ys, label=s.label, marker="braille", color=COLORS[i % len(COLORS)])
        marks = sorted({st for steps in self.culprits.values() for st in steps})
        if self.show_culprits:
            for st in marks:
                plt.vline(st, "red")
        self.query_one("#plot", PlotextPlot).refresh()
        legend = []
        if not self.series:
            legend.append("nothing to plot: pick a metric on the left (space)")
        for s in self.series:
            if s.values:
                legend.append(f"{s.label}: {len(s.steps)} points, last {F.num(s.values[-1])} "
                              f"(min {F.num(min(s.values))}, max {F.num(max(s.values))})")
        if marks:
            legend.append("audit culprit steps: " + ", ".join(map(str, marks))
                          + ("" if self.show_culprits else " (hidden)"))
        self.query_one("#legend", Static).update("\n".join(legend))

    def action_normalise(self) -> None:
        self.normalise = not self.normalise
        self.redraw()

    def action_culprits(self) -> None:
        self.show_culprits = not self.show_culprits
        self.redraw()

    def action_back(self) -> None:
        self.app.pop_screen()
