"""Trajectories: any metric against the step, several metrics or several runs overlaid (or one
small plot per metric), with the base model at step 0, the culprit steps an audit found as
vertical lines, integer step ticks, markers where a metric is measured only every few steps, and
a y axis that does not turn a 1% change into a cliff."""
from __future__ import annotations

import math
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection
from textual_plotext import PlotextPlot

from tui import format as F
from tui.metrics import Metric, metric_name
from tui.screens.base import LedgerScreen
from tui.viewmodels import Series

# plotext colour names, one per overlaid series (cycled), and the same colours for rich
COLORS = ["cyan", "orange", "green", "magenta", "blue", "yellow", "red", "white"]
RICH = {"orange": "orange1"}
MIN_SPAN = 0.1          # the y axis spans at least 10% of the values' size (±5% around them)
DENSE = 24              # a series with more points than this and no gaps is drawn without markers
DRAWN = 1000            # at most this many points are drawn per series (a plot is ~2 dots per cell wide)


def int_ticks(lo: int, hi: int, most: int = 12) -> list[int]:
    """Integer ticks from lo to hi, at most ``most`` of them, at a step of 1, 2, 5, 10, 20, …"""
    span = max(1, hi - lo)
    step = 1
    while span / step > most:
        for m in (2, 5, 10):
            if span / (step * m) <= most:
                step *= m
                break
        else:
            step *= 10
    first = math.ceil(lo / step) * step
    return list(range(first, hi + 1, step)) or [lo]


def y_range(values: list[float]) -> tuple[float, float] | None:
    """The y limits: 0..1 for values that all lie in [0, 1] (rates, shares); otherwise the data's
    range widened to at least MIN_SPAN of its size, with a margin."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    if lo >= 0 and hi <= 1:
        return 0.0, 1.0
    span = max(hi - lo, MIN_SPAN * max(abs(lo), abs(hi)), 1e-9)
    mid = (lo + hi) / 2
    return mid - 0.6 * span, mid + 0.6 * span


def thin(xs: list[int], ys: list[float], most: int = DRAWN) -> tuple[list[int], list[float]]:
    """At most ``most`` points of a long series for drawing: per bucket of consecutive points its
    lowest and its highest (in step order), so that a one-step spike stays visible."""
    n = len(xs)
    if n <= most:
        return xs, ys
    out_x, out_y = [], []
    buckets = most // 2
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        idx = range(lo, hi)
        finite = [i for i in idx if ys[i] is not None and math.isfinite(ys[i])] or list(idx)
        i_min = min(finite, key=lambda i: ys[i] if ys[i] is not None and math.isfinite(ys[i]) else math.inf)
        i_max = max(finite, key=lambda i: ys[i] if ys[i] is not None and math.isfinite(ys[i]) else -math.inf)
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def relative(values: list[float]) -> tuple[list[float], str]:
    """Each value ÷ the first (finite) one; minus it when the first is 0 (a ratio to 0 is undefined)."""
    first = next((v for v in values if v is not None and math.isfinite(v)), None)
    if first is None:
        return values, ""
    if first == 0:
        return [v - first for v in values], "minus its first value (0)"
    return [v / first for v in values], "÷ its first value"


class TrajectoryScreen(LedgerScreen):
    HELP = ("Metrics against the step. Space (or a click) toggles a metric in the list; every marked "
            "run (space on the runs screen) is overlaid. Step 0 is the base model where it was "
            "measured; ● marks the steps a metric was measured at when it is not measured every step. "
            "n plots each series relative to its first value (÷, or − where that is 0), m draws one "
            "small plot per metric, c hides the red vertical lines (the audit's culprit steps). "
            "Values that all lie in 0–1 are drawn on a 0–1 axis; others on an axis at least ±5% of "
            "their size, so a 1% wobble stays flat.")

    BINDINGS = [
        Binding("n", "normalise", "Relative"),
        Binding("m", "multiples", "Small multiples"),
        Binding("c", "culprits", "Culprits"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_ids: list[int], metrics: list[Metric] | None = None) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.chosen: list[Metric] | None = list(metrics) if metrics else None
        self.normalise = False
        self.multiples = False
        self.show_culprits = True
        self.series: list[Series] = []            # what is plotted now (tests read these)
        self.plotted: list[list[float]] = []      # the y values drawn, per series
        self.notes: list[str] = []                # per series: how it was normalised
        self.culprits: dict[int, list[int]] = {}  # run id -> culprit steps
        self.ticks: list[int] = []
        self.ylim: tuple[float, float] | None = None
        self.shown_at: float | None = None       # perf_counter when first painted (benchmark)

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        with Horizontal(id="traj-body"):
            yield SelectionList[Metric](id="metric-list")
            with Vertical(id="plot-box"):
                yield PlotextPlot(id="plot")
                yield Static("", id="legend", markup=False)
        yield self.footer()

    def on_mount(self) -> None:
        self.call_after_refresh(lambda: setattr(self, "shown_at", time.perf_counter()))
        self.reload()
        self.query_one("#metric-list").focus()

    def reload(self) -> None:
        super().reload()
        metrics: list[Metric] = []
        for rid in self.run_ids:
            for m in self.data.metrics(rid):
                if m not in metrics:
                    metrics.append(m)
        if self.chosen is None or not any(m in metrics for m in self.chosen):
            self.chosen = metrics[:1]
        sel = self.query_one("#metric-list", SelectionList)
        with self.prevent(SelectionList.SelectedChanged):
            sel.clear_options()
            sel.add_options([Selection(metric_name(m), m, m in self.chosen) for m in metrics])
        first = next((i for i, m in enumerate(metrics) if m in self.chosen), 0)
        if metrics:
            sel.highlighted = first     # ↓ then moves to the next metric, space toggles that one
        names = ", ".join(self.data.run_name(r) for r in self.run_ids)
        self.set_title(f"Trajectories · {names} · {len(metrics)} metrics")
        self.culprits = {r: self.data.culprit_steps(r) for r in self.run_ids}
        self.redraw()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.chosen = list(event.selection_list.selected)
        self.redraw()

    def redraw(self) -> None:
        self.series, self.plotted, self.notes = [], [], []
        for rid in self.run_ids:
            prefix = f"{self.data.run_name(rid)} " if len(self.run_ids) > 1 else ""
            for m in self.chosen or []:
                s = self.data.series(rid, m)
                if s.steps:
                    s.label = prefix + metric_name(m)
                    ys, note = relative(s.values) if self.normalise else (s.values, "")
                    self.series.append(s)
                    self.plotted.append(ys)
                    self.notes.append(note)
        widget = self.query_one("#plot", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        marks = sorted({st for steps in self.culprits.values() for st in steps})
        steps = [x for s in self.series for x in s.steps] + (marks if self.show_culprits else [])
        self.ticks = int_ticks(min(steps), max(steps)) if steps else []
        groups = self._groups()
        if len(groups) > 1:
            plt.subplots(len(groups), 1)
        self.ylim = None
        for row, (title, members) in enumerate(groups, start=1):
            ax = plt.subplot(row, 1) if len(groups) > 1 else plt
            self._draw(ax, members, title, marks)
        widget.refresh()
        self.query_one("#legend", Static).update(self._legend(marks))

    def _groups(self) -> list[tuple[str, list[int]]]:
        """(title, series indices) per plot: one plot, or one per metric (m)."""
        if not self.multiples or len(self.chosen or []) < 2:
            title = "relative to the first value" if self.normalise else ""
            return [(title, list(range(len(self.series))))]
        out = []
        for m in self.chosen or []:
            idx = [i for i, s in enumerate(self.series) if s.metric == m]
            if idx:
                out.append((metric_name(m), idx))
        return out

    def _draw(self, ax, members: list[int], title: str, marks: list[int]) -> None:
        ax.xlabel("step")
        ax.title(title)
        for i in members:
            s = self.series[i]
            xs, ys = thin(s.steps, self.plotted[i])
            color = COLORS[i % len(COLORS)]
            ax.plot(xs, ys, marker="braille", color=color)
            gaps = any(b - a > 1 for a, b in zip(s.steps, s.steps[1:]))
            if len(s.steps) <= DENSE or gaps and len(s.steps) <= DRAWN // 4:
                ax.scatter(xs, ys, marker="●", color=color)
        if self.ticks:
            ax.xticks(self.ticks)
            ax.xlim(self.ticks[0], max(self.ticks[-1], max(x for i in members for x in self.series[i].steps)))
        lim = y_range([v for i in members for v in self.plotted[i]])
        if lim is not None:
            ax.ylim(*lim)
            self.ylim = self.ylim or lim
        if self.show_culprits:
            for st in marks:
                ax.vline(st, "red")

    def _legend(self, marks: list[int]) -> Text:
        t = Text()
        if not self.series:
            t.append("nothing to plot: pick a metric on the left (space)")
        for i, s in enumerate(self.series):
            if t.plain:
                t.append("\n")
            t.append("━━ ", style=RICH.get(COLORS[i % len(COLORS)], COLORS[i % len(COLORS)]))
            vals = [v for v in s.values if v is not None and math.isfinite(v)]
            base = f", base {F.num(s.values[0])} at step {s.base_step}" if s.base_step is not None else ""
            t.append(f"{s.label}: {len(s.steps)} points{base}, last {F.num(s.values[-1])} "
                     f"(min {F.num(min(vals)) if vals else '–'}, max {F.num(max(vals)) if vals else '–'})"
                     + (f" · {self.notes[i]}" if self.notes[i] else ""))
        if marks:
            t.append("\naudit culprit steps: " + ", ".join(map(str, marks)) + ("" if self.show_culprits else " (hidden)"),
                     style="red")
        return t

    def action_normalise(self) -> None:
        self.normalise = not self.normalise
        self.redraw()

    def action_multiples(self) -> None:
        self.multiples = not self.multiples
        self.redraw()

    def action_culprits(self) -> None:
        self.show_culprits = not self.show_culprits
        self.redraw()

    def action_back(self) -> None:
        self.app.pop_screen()
