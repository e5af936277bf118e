"""The TUI's only door to the ledger: wraps ``ledger.Ledger`` into the view models of
``tui/viewmodels.py``. Everything goes through the Ledger API (no SQL here), so a schema change
stays in ``ledger/``. No torch: delta factors for the diff are read with ``safetensors.numpy``.
"""
from __future__ import annotations

import re
import shlex
from collections import Counter
from typing import Any, Iterable, Sequence

from safetensors.numpy import load as load_numpy

from ledger import history
from ledger.api import Ledger
from ledger.delta_norms import sum_norm
from ledger.engine import sqlite_path
from ledger.errors import InputError
from tui.viewmodels import (
    DeltaItem, DetailView, DiffView, FindingItem, Metric, MetricDiff, ProbeItemView, RunItem,
    Series, TensorDiff, TimelineItem,
)

# Headline metrics, best first. Metrics a ledger actually holds are discovered with
# ``ledger.metrics(run)``; these lists only order them (unknown ones follow alphabetically).
PREFERRED_METRICS: list[Metric] = [
    ("rewrite", "efficacy_top1"), ("retention", "efficacy_top1"), ("neighborhood", "ns"),
    ("paraphrase", "generalization_top1"), ("paraphrase", "efficacy_top1"), ("perplexity", "ppl"),
    ("neighborhood", "nkl"), ("neighborhood", "locality_acc"), ("retention", "forgetting"),
]
PREFERRED_SUITES = ["rewrite", "retention", "paraphrase", "neighborhood", "perplexity", "attribute", "distract",
                    "portability_sr", "portability_rr", "portability_oh", "multihop", "conflict",
                    "tied_fact", "round", "other_task"]
# The "main trajectory" a run's sparkline draws and the changes the timeline shows: the side
# effects of a sequence of edits (locality, general ability), which is what degrades.
KEY_METRICS: list[Metric] = [("perplexity", "ppl"), ("neighborhood", "ns"), ("retention", "efficacy_top1"),
                             ("neighborhood", "nkl"), ("paraphrase", "generalization_top1")]
AGAINST_ORDER = ("none", "base", "previous")   # which stored reference a trajectory shows first
N_HEADLINE = 3                                 # headline metric columns on the runs screen
N_KEY_CHANGES = 2                              # Δ columns on the timeline (besides efficacy)
SPARK_POINTS = 48                              # trajectory points kept for a sparkline


def metric_order(m: Metric) -> tuple:
    if m in PREFERRED_METRICS:
        return (0, PREFERRED_METRICS.index(m), "")
    suite_rank = PREFERRED_SUITES.index(m[0]) if m[0] in PREFERRED_SUITES else len(PREFERRED_SUITES)
    return (1, suite_rank, f"{m[0]}/{m[1]}")


def order_metrics(metrics: Iterable[Metric]) -> list[Metric]:
    return sorted(set(metrics), key=metric_order)


def key_metrics(metrics: Iterable[Metric], n: int) -> list[Metric]:
    """KEY_METRICS first (those present), then the other non-rewrite metrics in metric order."""
    ms = set(metrics)
    first = [m for m in KEY_METRICS if m in ms]
    rest = [m for m in order_metrics(ms) if m not in first and m[0] != "rewrite"]
    return (first + rest)[:n]


def stamp(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt is not None else ""


def layer_of(tensor: str) -> str:
    """'transformer.h.5.mlp.fc_out.weight' -> '5' (the first integer path component)."""
    m = re.search(r"\.(\d+)\.", f".{tensor}.")
    return m.group(1) if m else ""


def mark_head_line(items: Sequence[TimelineItem]) -> None:
    """Set ``on_head`` to whether each version is the head or one of its ancestors."""
    by_id = {it.version_id: it for it in items}
    line: set[int] = set()
    cur = next((it for it in items if it.is_head), None)
    while cur is not None and cur.version_id not in line:
        line.add(cur.version_id)
        cur = by_id.get(cur.parent_id) if cur.parent_id is not None else None
    if not line:        # the head is outside this run's rows (a branch run's start): keep all
        return
    for it in items:
        it.on_head = it.version_id in line


GLYPHS = {"edit": "●", "base": "○"}   # every other kind (revert, reset, branch) is ◆; the head is ◉


def graph_lanes(items: Sequence[TimelineItem], max_lanes: int = 6) -> None:
    """Fill ``item.graph`` with a `git log --graph`-like drawing of the version DAG. Items come
    parent-before-child. A child continues its parent's lane when the parent is that lane's tip;
    a child of an inner version (a reset, a revert, a branch point) opens a new lane, drawn
    ``├─◆`` from the parent's lane. A lane is drawn until the last child of any version on it."""
    last_child: dict[int, int] = {}
    for i, it in enumerate(items):
        if it.parent_id is not None:
            last_child[it.parent_id] = i
    lanes: list[int | None] = []      # tip version of each lane (None: free)
    alive: list[int] = []             # last row that needs the lane
    lane_of: dict[int, int] = {}
    for i, it in enumerate(items):
        fork_from = None
        if it.parent_id is not None and it.parent_id in lanes:
            lane = lanes.index(it.parent_id)
        else:
            fork_from = lane_of.get(it.parent_id) if it.parent_id is not None else None
            if fork_from is not None and lanes[fork_from] is None:
                fork_from = None
            lane = lanes.index(None) if None in lanes else len(lanes)
            if lane == len(lanes):
                lanes.append(None)
                alive.append(-1)
            alive[lane] = -1
        lanes[lane] = it.version_id
        lane_of[it.version_id] = lane
        alive[lane] = max(alive[lane], last_child.get(it.version_id, -1))
        glyph = "◉" if it.is_head else GLYPHS.get(it.kind, "◆")
        if len(lanes) == 1:          # fast path: a straight line (most rows of a long run)
            it.graph = glyph
            if alive[0] <= i:
                lanes.pop()
                alive.pop()
            continue
        cells = []
        for j, tip in enumerate(lanes):
            if j == lane:
                cells.append(glyph)
            elif fork_from is not None and j == fork_from:
                cells.append("├")
            elif fork_from is not None and min(fork_from, lane) < j < max(fork_from, lane):
                cells.append("┼" if tip is not None else "─")
            else:
                cells.append("│" if tip is not None else " ")
        out = []
        for j, c in enumerate(cells):
            out.append(c)
            if j < len(cells) - 1:
                between = fork_from is not None and min(fork_from, lane) <= j < max(fork_from, lane)
                out.append("─" if between else " ")
        graph = "".join(out).rstrip()
        if len(graph) > 2 * max_lanes - 1:   # very bushy DAGs: keep the rightmost lanes
            graph = "…" + graph[-(2 * max_lanes - 2):]
        it.graph = graph
        for j, tip in enumerate(lanes):
            if tip is not None and alive[j] <= i:
                lanes[j] = None
        while lanes and lanes[-1] is None:
            lanes.pop()
            alive.pop()


class LedgerData:
    """View models for the screens. One instance per app; cheap to call repeatedly."""

    def __init__(self, ledger: Ledger, label: str | None = None) -> None:
        self.ledger = ledger
        path = sqlite_path(ledger.url)
        self.location = label or (str(path) if path is not None else ledger.url)   # shown in the title
        self.db_arg = str(path) if path is not None else ledger.url                 # for CLI commands
        self._against: dict[tuple[int, Metric], str | None] = {}

    @classmethod
    def open(cls, db: str | None = None, label: str | None = None) -> "LedgerData":
        return cls(Ledger.open(db, create=False), label)

    def close(self) -> None:
        self.ledger.close()

    # ----- live -------------------------------------------------------------------------------
    def change_token(self) -> Any:
        """Changes whenever a run moves (steps, head, status) or a probe/version/delta is added."""
        runs = tuple((r.id, r.status, r.steps, r.head_version_id, r.updated_at) for r in self.ledger.runs())
        return runs, tuple(sorted(self.ledger.counts().items()))

    # ----- runs -------------------------------------------------------------------------------
    def runs(self) -> list[RunItem]:
        items = []
        for r in self.ledger.runs():
            metrics = order_metrics(self.ledger.metrics(r.id))
            headline: dict[Metric, float] = {}
            at_head = self._values_near(r.head_version_id)
            for m in metrics[:N_HEADLINE]:
                if m in at_head:
                    headline[m] = at_head[m]
                else:
                    pts = self._trajectory(r.id, m)
                    if pts:
                        headline[m] = pts[-1][1]
            spark_metric = (key_metrics(metrics, 1) or metrics[:1] or [None])[0]
            spark = [v for _, v in self._trajectory(r.id, spark_metric)[-SPARK_POINTS:]] if spark_metric else []
            items.append(RunItem(
                run_id=r.id, name=r.name or f"run-{r.id}", model=r.model_name, method=r.method,
                stream=r.stream_name, stream_kind=r.stream_kind, status=r.status, steps=r.steps,
                head_id=r.head_version_id, updated=stamp(r.updated_at), headline=headline,
                spark_metric=spark_metric, spark=spark))
        return items

    def _values_near(self, version_id: int, hops: int = 8) -> dict[Metric, float]:
        """Metric values at a version, or at its nearest probed ancestor (a reset marker has the
        weights, and so the measurements, of its parent); one reference per metric."""
        vid: int | None = version_id
        for _ in range(hops):
            if vid is None:
                break
            rows = self.ledger.probes(vid)
            if rows:
                out: dict[Metric, float] = {}
                for a in reversed(AGAINST_ORDER):    # "none" last, so it wins
                    for p in rows:
                        if p.against == a:
                            out[(p.suite, p.metric)] = p.value
                return out
            vid = self.ledger.version(vid).parent_id
        return {}

    def headline_metrics(self, runs: Sequence[RunItem]) -> list[Metric]:
        return order_metrics(m for r in runs for m in r.headline)[:N_HEADLINE]

    def run(self, run_id: int) -> RunItem:
        r = self.ledger.run(run_id)
        return RunItem(run_id=r.id, name=r.name or f"run-{r.id}", model=self.ledger.base_model(r.base_model_id).name,
                       method=r.method, stream=r.stream_name, stream_kind=r.stream_kind, status=r.status,
                       steps=r.step_count, head_id=r.head_version_id, updated=stamp(r.updated_at))

    def metrics(self, run_id: int) -> list[Metric]:
        return order_metrics(self.ledger.metrics(run_id))

    def _trajectory(self, run_id: int, m: Metric) -> list[tuple[int, float]]:
        """The metric's trajectory against the first reference it is stored with (none, base, previous)."""
        key = (run_id, m)
        if key in self._against:
            a = self._against[key]
            return self.ledger.trajectory(run_id, m[0], m[1], against=a) if a else []
        for a in AGAINST_ORDER:
            pts = self.ledger.trajectory(run_id, m[0], m[1], against=a)
            if pts:
                self._against[key] = a
                return pts
        return []

    def series(self, run_id: int, m: Metric) -> Series:
        pts = self._trajectory(run_id, m)
        return Series(label=f"{m[0]}/{m[1]}", steps=[s for s, _ in pts], values=[v for _, v in pts])

    # ----- timeline ---------------------------------------------------------------------------
    def timeline(self, run_id: int, *, changes: bool = True) -> tuple[list[TimelineItem], list[Metric]]:
        """The run's versions (its start version first, with graph, head and audit flags) and the
        key metrics whose change vs the parent version each row shows. ``changes=False`` leaves
        the changes for ``timeline_changes`` (the screen loads them in the background)."""
        run = self.ledger.run(run_id)
        rows = self.ledger.timeline(run_id)
        start = self.ledger.version(run.start_version_id)
        head = run.head_version_id
        origin = ("base model" if start.kind == "base" else
                  f"branched from run {start.run_id} step {start.step} (v{start.id}, {start.kind})")
        items = [TimelineItem(start.id, None, start.step, start.kind, "", "", "", 0, origin,
                              None, None, None, start.id == head)]
        items.extend(TimelineItem(r.version_id, r.parent_id, r.step, r.kind, r.subject or "", r.target_old or "",
                                  r.target_new or "", r.n_requests, r.note or "", r.efficacy, None, None,
                                  r.version_id == head) for r in rows)
        findings = self.ledger.audit_findings(run_id)
        if findings:
            by_id = {it.version_id: it for it in items}
            for f in findings:
                it = by_id.get(f.version_id)
                if it is not None:
                    it.flags = (it.flags or []) + ["⚑" + re.split(r"[./]", f.metric)[-1]]
        graph_lanes(items)
        mark_head_line(items)
        metrics = key_metrics(self.ledger.metrics(run_id), N_KEY_CHANGES)
        if changes:
            self.timeline_changes(run_id, items, metrics)
        return items, metrics

    def timeline_changes(self, run_id: int, items: Sequence[TimelineItem],
                         metrics: Sequence[Metric]) -> dict[int, dict[Metric, float]]:
        """version id -> {metric: value here minus value at the parent version}. Also stores them
        on the items (safe from a worker thread: each item's ``changes`` is replaced whole)."""
        step_of = {it.version_id: it.step for it in items}
        start = items[0]
        out: dict[int, dict[Metric, float]] = {}
        for m in metrics:
            by_step = dict(self._trajectory(run_id, m))   # steps are unique within a run
            base_val = self._value_at(start.version_id, m)
            for it in items[1:]:
                v = by_step.get(it.step)
                if v is None:
                    continue
                if it.parent_id == start.version_id:
                    p = base_val
                else:
                    ps = step_of.get(it.parent_id)
                    p = by_step.get(ps) if ps is not None else None
                if p is not None:
                    out.setdefault(it.version_id, {})[m] = v - p
        for it in items:
            ch = out.get(it.version_id)
            if ch is not None:
                it.changes = ch
        return out

    def _value_at(self, version_id: int, m: Metric) -> float | None:
        rows = [p for p in self.ledger.probes(version_id, suite=m[0]) if p.metric == m[1]]
        for a in AGAINST_ORDER:
            for p in rows:
                if p.against == a:
                    return p.value
        return None

    # ----- detail -----------------------------------------------------------------------------
    def detail(self, version_id: int) -> DetailView:
        v = self.ledger.version(version_id)
        run = self.ledger.run(v.run_id) if v.run_id is not None else None
        reqs = []
        for r in self.ledger.edit_requests(version_id):
            d = {"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new,
                 "target_old": r.target_old, "relation": r.relation, "case_id": r.case_id,
                 "group": r.group, "role": r.role}
            d.update(r.extra or {})
            reqs.append(d)
        deltas = [DeltaItem(tensor=d.tensor, layer=layer_of(d.tensor), kind=d.kind, shape=tuple(d.shape),
                            rank=d.rank, norm=d.norm, nbytes=d.nbytes) for d in self.ledger.deltas(version_id)]
        base = self.ledger.base_version(v.base_model_id)
        probes = probe_views(self.ledger.probes(version_id),
                             self.ledger.probes(base.id) if base.id != version_id else [],
                             self.ledger.probes(v.parent_id) if v.parent_id is not None else [])
        step_probes: dict[str, list[dict[str, Any]]] = {}
        if run is not None and v.kind == "edit":
            # the replay keeps the stream (with each step's probe items) in the run's config
            stream = (run.config or {}).get("stream") or []
            i = v.step - int((run.config or {}).get("first_step", 1))
            if 0 <= i < len(stream) and isinstance(stream[i], dict):
                step_probes = dict(stream[i].get("probes") or {})
        return DetailView(
            step_probes=step_probes,
            version_id=v.id, run_id=v.run_id, step=v.step, kind=v.kind, parent_id=v.parent_id,
            note=v.note or "", created=stamp(v.created_at), method=run.method if run else "(base model)",
            hparams=dict(run.hparams) if run else {}, requests=reqs, deltas=deltas, probes=probes,
            diagnostics=dict(v.diagnostics or {}), wall_time_s=v.wall_time_s,
            export_command=self.export_command(version_id))

    def export_command(self, version_id: int) -> str:
        v = self.ledger.version(version_id)
        db = shlex.quote(self.db_arg)
        if v.run_id is None:
            return f"editledger --db {db} checkout RUN@0 --export ./base-weights   # any run of this base model"
        return f"editledger --db {db} checkout {v.run_id}@{v.step} --export ./v{v.id}-weights"

    # ----- actions (the only writes) ----------------------------------------------------------
    def reset(self, run_id: int, version_id: int) -> int:
        """Reset the run's head to ``version_id`` through ``ledger.history.reset`` (what
        `editledger reset RUN --to STEP` does; steps are unique within a run, step 0 = its start)."""
        v = self.ledger.version(version_id)
        run = self.ledger.run(run_id)
        if version_id == run.start_version_id:
            step = 0
        elif v.run_id != run_id:
            raise InputError(f"v{version_id} is not a version of run {run_id}: a reset moves a run's head "
                             f"to one of its own versions (or its start, step 0)")
        else:
            step = v.step
        return history.reset(self.ledger, run_id, step).id

    def revert(self, run_id: int, step: int) -> int:
        return history.revert(self.ledger, run_id, step).id

    # ----- diff -------------------------------------------------------------------------------
    def diff(self, a: int, b: int) -> DiffView:
        la, lb = self.ledger.lineage(a), self.ledger.lineage(b)
        common = None
        for x, y in zip(la, lb):
            if x.id != y.id:
                break
            common = x.id
        k = 0 if common is None else [x.id for x in la].index(common) + 1
        path_a, path_b = la[k:], lb[[x.id for x in lb].index(common) + 1 if common is not None else 0:]

        def contributions(path) -> dict[str, list[tuple[str, int, Any]]]:
            out: dict[str, list[tuple[str, int, Any]]] = {}
            for v in path:
                for d in self.ledger.deltas(v.id):
                    out.setdefault(d.tensor, []).append((d.artifact_digest, v.step, d))
            return out
        ca, cb = contributions(path_a), contributions(path_b)
        tensors = []
        for name in sorted(set(ca) | set(cb)):
            # the same artifact on both sides (a revert re-applies later deltas) cancels out
            da, db = Counter(x[0] for x in ca.get(name, [])), Counter(x[0] for x in cb.get(name, []))
            only_a, only_b = da - db, db - da
            if not only_a and not only_b:
                continue
            ra = _take(ca.get(name, []), only_a)
            rb = _take(cb.get(name, []), only_b)
            bound = sum(d.norm for _, _, d in ra + rb)
            tensors.append(TensorDiff(tensor=name, only_a=[s for _, s, _ in ra], only_b=[s for _, s, _ in rb],
                                      norm=self._diff_norm(ra, rb), bound=bound))
        pa = {(p.suite, p.metric, p.against): p.value for p in self.ledger.probes(a)}
        pb = {(p.suite, p.metric, p.against): p.value for p in self.ledger.probes(b)}
        keys = sorted(set(pa) | set(pb), key=lambda k: (metric_order(k[:2]), k[2]))
        metrics = [MetricDiff(suite=s, metric=m, against=ag, a=pa.get((s, m, ag)), b=pb.get((s, m, ag)))
                   for s, m, ag in keys]
        return DiffView(a_id=a, b_id=b, a_label=self._label(la[-1]), b_label=self._label(lb[-1]),
                        common_id=common, tensors=tensors, metrics=metrics)

    @staticmethod
    def _label(v) -> str:
        run = f"run {v.run_id} " if v.run_id is not None else ""
        return f"v{v.id} ({run}step {v.step}, {v.kind})"

    def _diff_norm(self, ra, rb) -> float | None:
        """||Σ B-only deltas − Σ A-only deltas||_F in float64 from the stored factors (numpy)."""
        shape = (ra or rb)[0][2].shape
        try:
            parts = [(sign, d.kind, load_numpy(self.ledger.store.read_bytes(digest)))
                     for sign, rows in ((-1.0, ra), (1.0, rb)) for digest, _, d in rows]
        except (TypeError, KeyError, ValueError):
            return None               # e.g. bfloat16 factors, which numpy cannot hold
        return sum_norm(parts, shape)

    # ----- audit ------------------------------------------------------------------------------
    def findings(self, run_id: int) -> list[FindingItem]:
        out = []
        for f in self.ledger.audit_findings(run_id):
            step = self.ledger.version(f.version_id).step if f.version_id is not None else None
            out.append(FindingItem(finding_id=f.id, version_id=f.version_id, step=step, metric=f.metric,
                                   score=f.score, summary=f.summary, evidence=f.evidence))
        return out

    def culprit_steps(self, run_id: int) -> list[int]:
        return sorted({f.step for f in self.findings(run_id) if f.step is not None})


def probe_views(here: Sequence[Any], at_base: Sequence[Any], at_parent: Sequence[Any]) -> list[ProbeItemView]:
    """Group a version's probe rows by (suite, metric): the plain value, the stored comparisons
    with the base and the previous version, or differences computed from their plain values."""
    plain_base = {(p.suite, p.metric): p.value for p in at_base if p.against == "none"}
    plain_prev = {(p.suite, p.metric): p.value for p in at_parent if p.against == "none"}
    views: dict[Metric, ProbeItemView] = {}
    for p in here:
        key = (p.suite, p.metric)
        view = views.get(key)
        if view is None:
            view = views[key] = ProbeItemView(p.suite, p.metric, None, None, None, p.count)
        if p.against == "none":
            view.value = p.value
        elif p.against == "base":
            view.vs_base = p.value
        elif p.against == "previous":
            view.vs_previous = p.value
        view.count = max(view.count, p.count)
        if p.detail is not None:
            view.details[p.against] = p.detail
    for key, view in views.items():
        if view.value is not None and view.vs_base is None and key in plain_base:
            view.vs_base, view.base_computed = view.value - plain_base[key], True
        if view.value is not None and view.vs_previous is None and key in plain_prev:
            view.vs_previous, view.previous_computed = view.value - plain_prev[key], True
    return [views[k] for k in sorted(views, key=metric_order)]


def _take(rows, wanted: Counter) -> list:
    """The rows whose artifact is in ``wanted`` (as many times as counted), in order."""
    left = Counter(wanted)
    out = []
    for r in rows:
        if left[r[0]] > 0:
            left[r[0]] -= 1
            out.append(r)
    return out
