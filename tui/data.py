"""The TUI's only door to the ledger: wraps ``ledger.Ledger`` into the view models of
``tui/viewmodels.py``. Everything goes through the Ledger API (no SQL here), so a schema change
stays in ``ledger/``. No torch: stored factors are read with ``safetensors.numpy``.

Which stored comparison stands for a metric at a version (none / base / previous) is
``ledger.values``' rule; where a change against the version before is shown, see ``tui.harm``.
"""
from __future__ import annotations

import re
import shlex
import sys
from typing import Any, Sequence

from ledger import history
from ledger.api import Ledger
from ledger.engine import sqlite_path
from ledger.errors import InputError
from ledger.values import preferred_value
from tui import graph, harm
from tui.metrics import FIXED_SUITES, Metric, finding_label, key_metrics, metric_order, order_metrics
from tui.outcome import outcome_line, probes_note
from tui.viewmodels import (
    DeltaItem, DetailView, DiffView, FindingItem, ProbeItemView, RunItem, Series, TimelineItem,
)

N_KEY_CHANGES = 2          # Δ columns on the timeline (besides efficacy and retention)
SPARK_POINTS = 48          # trajectory points kept for a sparkline
SPARK_METRICS: list[Metric] = [("perplexity", "ppl"), ("retention", "efficacy_top1"), ("neighborhood", "ns")]
EFFICACY: Metric = ("rewrite", "efficacy_top1")
RETENTION: Metric = ("retention", "efficacy_top1")
PPL: Metric = ("perplexity", "ppl")


def stamp(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt is not None else ""


def layer_of(tensor: str) -> str:
    """'transformer.h.5.mlp.fc_out.weight' -> '5' (the first integer path component)."""
    m = re.search(r"\.(\d+)\.", f".{tensor}.")
    return m.group(1) if m else ""


class LedgerData:
    """View models for the screens. One instance per app; cheap to call repeatedly."""

    def __init__(self, ledger: Ledger, label: str | None = None) -> None:
        self.ledger = ledger
        path = sqlite_path(ledger.url)
        self.location = label or (str(path) if path is not None else ledger.url)   # shown in the title
        self.db_arg = str(path) if path is not None else ledger.url                 # for CLI commands
        self._base_cache: dict[tuple[int, int], dict[str, float]] = {}

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

    # ----- values -----------------------------------------------------------------------------
    def _refs(self, run_id: int, m: Metric) -> dict[int, dict[str, float]]:
        """version id -> {against: value} of one metric over the run."""
        return harm.by_version(self.ledger.metric_values(run_id, *m))

    def _start_refs(self, run_id: int, start_id: int, m: Metric) -> dict[str, float]:
        """The metric at the run's start version: its probe rows, or for an unprobed base model
        the base measurements the replay keeps in the run's reference (general abilities)."""
        refs = {a: v for _vid, s, mt, a, v, _c in self.ledger.probe_values([start_id]) if (s, mt) == m}
        if not refs:
            base = self._base_metrics(run_id, start_id).get(f"{m[0]}.{m[1]}")
            if base is not None:
                refs["none"] = float(base)
        return refs

    def _base_metrics(self, run_id: int, start_id: int) -> dict[str, float]:
        key = (run_id, start_id)
        if key not in self._base_cache:      # fixed once the run started: read the config once
            ref = (self.ledger.run(run_id).config or {}).get("reference") or {}
            start_is_base = self.ledger.versions_light([start_id])[start_id][3] == "base"
            self._base_cache[key] = dict(ref.get("base_metrics") or {}) if start_is_base else {}
        return self._base_cache[key]

    def _value_on_line(self, head: int, refs: dict[int, dict[str, float]], hops: int = 64) -> float | None:
        """The metric at ``head``, or at its nearest measured ancestor in the run (a reset marker
        has its target's weights; perplexity is measured every few steps): parents are read a few
        at a time, not the whole lineage. None when none within ``hops`` was measured."""
        vid: int | None = head
        for _ in range(hops):
            if vid is None:
                return None
            v = harm.preferred(refs.get(vid))
            if v is not None:
                return v
            info = self.ledger.versions_light([vid]).get(vid)
            vid = info[0] if info is not None else None
        return None

    # ----- runs -------------------------------------------------------------------------------
    def runs(self) -> list[RunItem]:
        items = []
        for r in self.ledger.runs():
            item = RunItem(run_id=r.id, name=r.name or f"run-{r.id}", model=r.model_name, method=r.method,
                           stream=r.stream_name, stream_kind=r.stream_kind, status=r.status, steps=r.steps,
                           head_id=r.head_version_id, updated=stamp(r.updated_at))
            metrics = set(self.ledger.metrics(r.id))
            if EFFICACY in metrics:   # an edit took when all its rewrite prompts answer the new target
                eff = [v for _s, v in self.ledger.trajectory(r.id, *EFFICACY, against="none") if v == v]
                item.edits, item.edits_ok = len(eff), sum(e >= harm.FULL for e in eff)
            start_id = self.ledger.run_light(r.id)[2]
            if RETENTION in metrics:
                item.held = self._value_on_line(r.head_version_id, self._refs(r.id, RETENTION))
            if PPL in metrics:
                at_head = self._value_on_line(r.head_version_id, self._refs(r.id, PPL))
                at_start = self._start_refs(r.id, start_id, PPL).get("none")
                if at_head is not None and at_start:
                    item.ppl_ratio = at_head / at_start
            spark = next((m for m in SPARK_METRICS if m in metrics), None)
            if spark is not None:
                s = self.series(r.id, spark, start_id=start_id)
                item.spark_metric, item.spark = spark, s.values[-SPARK_POINTS:]
            items.append(item)
        return items

    def run(self, run_id: int) -> RunItem:
        r = next((x for x in self.ledger.runs() if x.id == run_id), None)   # the summary: no config to decode
        if r is None:
            raise InputError(f"run {run_id} does not exist in this ledger")
        return RunItem(run_id=r.id, name=r.name or f"run-{r.id}", model=r.model_name, method=r.method,
                       stream=r.stream_name, stream_kind=r.stream_kind, status=r.status, steps=r.steps,
                       head_id=r.head_version_id, updated=stamp(r.updated_at))

    def metrics(self, run_id: int) -> list[Metric]:
        return order_metrics(self.ledger.metrics(run_id))

    def series(self, run_id: int, m: Metric, *, start_id: int | None = None) -> Series:
        """The metric over the run's steps (the preferred reference at each version), with the
        run's start version (the base model: step 0) first when it was measured."""
        if start_id is None:
            start_id = self.ledger.run_light(run_id)[2]
        steps, values = [], []
        start = harm.preferred(self._start_refs(run_id, start_id, m))
        base_step = None
        if start is not None:
            base_step = self.ledger.versions_light([start_id])[start_id][2]
            steps.append(base_step)
            values.append(start)
        step_of: dict[int, int] = {}
        refs: dict[int, dict[str, float]] = {}
        for vid, step, against, value in self.ledger.metric_values(run_id, *m):
            step_of[vid] = step
            refs.setdefault(vid, {})[against] = value
        for vid, r in refs.items():
            steps.append(step_of[vid])
            values.append(harm.preferred(r))
        return Series(label=f"{m[0]}/{m[1]}", steps=steps, values=values, metric=m, base_step=base_step)

    # ----- timeline ---------------------------------------------------------------------------
    def timeline(self, run_id: int, *, changes: bool = True) -> tuple[list[TimelineItem], list[Metric]]:
        """The run's versions (its start version first, with graph, head and audit flags) and the
        key metrics whose change against the version before each row shows. ``changes=False``
        leaves the changes, retention and forgetting for ``timeline_harm`` (the screen loads them
        in the background)."""
        _name, _method, start_id, head = self.ledger.run_light(run_id)
        rows = self.ledger.timeline(run_id)
        start = self.ledger.version(start_id)
        origin = ("base model" if start.kind == "base" else
                  f"branched from run {start.run_id} step {start.step} (v{start.id}, {start.kind})")
        items = [TimelineItem(start.id, None, start.step, start.kind, "", "", "", 0, origin,
                              None, None, None, start.id == head)]
        items.extend(TimelineItem(r.version_id, r.parent_id, r.step, r.kind, r.subject or "", r.target_old or "",
                                  r.target_new or "", r.n_requests, r.note or "", r.efficacy, None, None,
                                  r.version_id == head) for r in rows)
        by_id = {it.version_id: it for it in items}
        for it in items[1:]:
            if it.kind in ("reset", "revert", "branch"):
                p = by_id.get(it.parent_id)
                it.target = f"v{it.parent_id}" + (f" (step {p.step})" if p is not None else "")
        for f in self.ledger.audit_findings(run_id):
            it = by_id.get(f.version_id)
            if it is not None:
                label = finding_label(f.metric)
                if label not in (it.findings or ()):
                    it.findings = (it.findings or []) + [label]
        graph.graph_lanes(items)
        graph.mark_head_line(items)
        metrics = key_metrics(self.ledger.metrics(run_id), N_KEY_CHANGES)
        if changes:
            self.timeline_harm(run_id, items, metrics)
        return items, metrics

    def timeline_harm(self, run_id: int, items: Sequence[TimelineItem], metrics: Sequence[Metric]) -> None:
        """Fill each row's key-metric changes, retention and forgetting (``tui.harm``). Safe from a
        worker thread: each item's fields are replaced whole, never mutated in place."""
        if not items:
            return
        start_id = items[0].version_id
        for m in metrics:
            ch = harm.changes(m, items, self._refs(run_id, m), self._start_refs(run_id, start_id, m))
            for it in items:
                if it.version_id in ch:
                    it.changes = {**(it.changes or {}), m: ch[it.version_id]}
        refs = self._refs(run_id, RETENTION)
        if not refs:
            return
        for it in items:
            r = refs.get(it.version_id)
            if r and "none" in r:
                it.retention = r["none"]
        # forgetting: read the per-edit detail only where retention fell (or nothing says it did not)
        suspects = [it for it in items[1:] if it.version_id in refs
                    and refs[it.version_id].get("previous", -1.0) < 0]
        if not suspects:
            return
        wanted = {it.version_id for it in suspects} | {it.parent_id for it in suspects if it.parent_id}
        details = self.ledger.probe_details(sorted(wanted), *RETENTION)
        facts = self._facts([it.version_id for it in items if it.kind == "edit"])
        step_vid = {it.step: it.version_id for it in items}
        for it in suspects:
            lost = harm.lost_steps(details.get(it.version_id), it.step, details.get(it.parent_id))
            if lost:
                f = harm.split_superseded(lost, {j: facts.get(step_vid.get(j), set()) for j in lost},
                                          facts.get(it.version_id, set()))
                it.lost, it.superseded = f.lost or None, f.superseded or None

    def _facts(self, version_ids: Sequence[int]) -> dict[int, set]:
        """version id -> {(subject, prompt)} of its edit requests."""
        out: dict[int, set] = {}
        for vid in version_ids:
            out[vid] = {(r.subject, r.prompt) for r in self.ledger.edit_requests(vid)}
        return out

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
        rows = self.ledger.deltas(version_id)
        origins = self.ledger.delta_origins([d.artifact_digest for d in rows]) if v.kind == "revert" else {}
        deltas = [DeltaItem(tensor=d.tensor, layer=layer_of(d.tensor), kind=d.kind, shape=tuple(d.shape),
                            rank=d.rank, norm=d.norm, nbytes=d.nbytes,
                            from_step=origins.get(d.artifact_digest, (None, v.step))[1])
                  for d in rows]
        # a reset marker has its target's weights: show the target's measurements, and say so
        probed = version_id
        if v.kind == "reset" and not self.ledger.probe_values([version_id]) and v.parent_id is not None:
            probed = v.parent_id
        pv = self.ledger.version(probed) if probed != version_id else v
        base = self.ledger.base_version(v.base_model_id)
        here = self.ledger.probes(probed)
        probes = probe_views(here, self.ledger.probes(base.id) if base.id != probed else [],
                             self.ledger.probes(pv.parent_id) if pv.parent_id is not None else [])
        if pv.parent_id is not None and pv.parent_id == base.id:
            for p in probes:      # the version before is the base: its comparison is the stored vs-base one
                if p.vs_previous is None and p.vs_base is not None:
                    p.vs_previous, p.previous_is_base = p.vs_base, True
        step_probes: dict[str, list[dict[str, Any]]] = {}
        if run is not None and v.kind == "edit":
            # the replay keeps the stream (with each step's probe items) in the run's config
            stream = (run.config or {}).get("stream") or []
            i = v.step - int((run.config or {}).get("first_step", 1))
            if 0 <= i < len(stream) and isinstance(stream[i], dict):
                step_probes = dict(stream[i].get("probes") or {})
        diagnostics = dict(v.diagnostics or {})
        hidden = {k: len(repr(diagnostics.pop(k))) for k in list(diagnostics) if k.startswith("_")}
        findings = [f for f in self.findings(v.run_id) if f.version_id == version_id] if run else []
        view = DetailView(
            version_id=v.id, run_id=v.run_id, step=v.step, kind=v.kind, parent_id=v.parent_id,
            note=v.note or "", created=stamp(v.created_at), method=run.method if run else "(base model)",
            hparams=dict(run.hparams) if run else {}, requests=reqs, deltas=deltas, probes=probes,
            diagnostics=diagnostics, hidden_diagnostics=hidden, wall_time_s=v.wall_time_s,
            export_command=self.export_command(version_id), findings=findings, step_probes=step_probes,
            probes_from=probed if probed != version_id else None)
        view.outcome = outcome_line(self, view)
        view.probes_note = probes_note(self, view)
        return view

    def weight_norms(self, version_id: int, deltas: Sequence[DeltaItem]) -> dict[str, float | None]:
        """tensor -> ‖W‖ of the tensor this version's deltas were applied to (its parent's weights)."""
        v = self.ledger.version(version_id)
        if v.parent_id is None or v.run_id is None:
            return {}
        from tui.weights import weight_norm   # deferred: numpy (~0.2 s of the TUI's start) is needed here only
        return {d.tensor: weight_norm(self.ledger, v.parent_id, d.tensor, v.run_id) for d in deltas}

    def values_at(self, version_id: int) -> dict[Metric, float]:
        """Every metric at a version by the preference rule (none, base, previous)."""
        rows = [_Row(s, m, a, v) for _vid, s, m, a, v, _c in self.ledger.probe_values([version_id])]
        return {(r.suite, r.metric): preferred_value(rows, r.suite, r.metric) for r in rows}

    def forgotten_at(self, version_id: int) -> list[int]:
        parent, _run, step, _kind = self.ledger.versions_light([version_id])[version_id]
        d = self.ledger.probe_details([version_id] + ([parent] if parent else []), *RETENTION)
        return harm.lost_steps(d.get(version_id), step, d.get(parent))

    def export_command(self, version_id: int) -> str:
        v = self.ledger.version(version_id)
        db = shlex.quote(self.db_arg)
        if v.run_id is None:
            return f"editledger --db {db} checkout RUN@0 --export ./base-weights   # any run of this base model"
        return f"editledger --db {db} checkout {v.run_id}@{v.step} --export ./v{v.id}-weights"

    # ----- jobs (run the CLI as a subprocess: the audit and probes need the simulator) --------
    def cli_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "editledger", "--db", self.db_arg, *args]

    def audit_argv(self, run_id: int, verify: bool = False) -> list[str]:
        return self.cli_argv("audit", str(run_id), *(["--verify"] if verify else []))

    def probe_argv(self, run_id: int, step: int) -> list[str]:
        """Re-probe one version (a reset or a revert is recorded without measurements). Needs a
        `probe RUN@STEP` command in the CLI."""
        return self.cli_argv("probe", f"{run_id}@{step}")

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
    def diff(self, a: int, b: int, *, norms: bool = True) -> DiffView:
        """The diff of two versions; ``norms=False`` leaves ‖B−A‖ to ``diff_norms`` (it reads every
        differing delta: the screen does it off the UI thread)."""
        from tui import diffing   # deferred: numpy (~0.2 s of the TUI's start) is needed here only
        view = diffing.diff_versions(self.ledger, a, b)
        if norms:
            diffing.fill_norms(self.ledger, view)
        return view

    def diff_norms(self, view: DiffView) -> None:
        from tui import diffing   # deferred: as in diff()
        diffing.fill_norms(self.ledger, view)

    # ----- audit ------------------------------------------------------------------------------
    def findings(self, run_id: int) -> list[FindingItem]:
        rows = self.ledger.audit_findings(run_id)
        info = self.ledger.versions_light([f.version_id for f in rows if f.version_id is not None])
        return [FindingItem(finding_id=f.id, version_id=f.version_id,
                            step=info[f.version_id][2] if f.version_id in info else None, metric=f.metric,
                            score=f.score, summary=f.summary, evidence=f.evidence) for f in rows]

    def run_name(self, run_id: int) -> str:
        name = self.ledger.run_light(run_id)[0]
        return name or f"run-{run_id}"

    def culprit_steps(self, run_id: int) -> list[int]:
        return sorted({f.step for f in self.findings(run_id) if f.step is not None})


class _Row:
    """A probe value as ``ledger.values`` reads it."""
    __slots__ = ("suite", "metric", "against", "value")

    def __init__(self, suite: str, metric: str, against: str, value: float) -> None:
        self.suite, self.metric, self.against, self.value = suite, metric, against, value


def probe_views(here: Sequence[Any], at_base: Sequence[Any], at_parent: Sequence[Any]) -> list[ProbeItemView]:
    """Group a version's probe rows by (suite, metric): the plain value, the stored comparisons
    with the base and the previous version, or differences computed from their plain values
    where the suite measures the same items each time (a step suite's plain values at two
    versions are different prompts: no difference is computed for them)."""
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
        if key[0] not in FIXED_SUITES:
            continue
        if view.value is not None and view.vs_base is None and key in plain_base:
            view.vs_base, view.base_computed = view.value - plain_base[key], True
        if view.value is not None and view.vs_previous is None and key in plain_prev:
            view.vs_previous, view.previous_computed = view.value - plain_prev[key], True
    return [views[k] for k in sorted(views, key=metric_order)]
