"""What the screens show, as plain dataclasses. ``tui/data.py`` builds them from the ledger; the
screens only format them. Keeping this seam means a schema change touches data.py alone."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Metric = tuple[str, str]   # (suite, metric), e.g. ("rewrite", "efficacy_top1")


@dataclass
class RunItem:
    run_id: int
    name: str                 # user label or "run-<id>"
    model: str                # base model name
    method: str
    stream: str               # stream name
    stream_kind: str          # sequential, round, ...
    status: str               # running, done, failed, interrupted, stopped
    steps: int                # highest step recorded
    head_id: int | None       # head version id
    updated: str              # "YYYY-MM-DD HH:MM" (UTC, from the ledger; never the wall clock)
    headline: dict[Metric, float] = field(default_factory=dict)   # latest value of each headline metric
    spark_metric: Metric | None = None                            # the metric the sparkline draws
    spark: list[float] = field(default_factory=list)              # its values by step


@dataclass(slots=True)   # slots: a timeline holds one per version (10,000s)
class TimelineItem:
    version_id: int
    parent_id: int | None
    step: int
    kind: str                 # base, edit, revert, reset, branch
    subject: str              # first request's subject ("" for non-edit versions)
    old: str                  # first request's old target
    new: str                  # first request's new target
    n_requests: int
    note: str                 # revert/reset/branch explanation
    efficacy: float | None = None                                 # rewrite efficacy at this version
    changes: dict[Metric, float] | None = None   # key metric minus its parent's value (None: no change known)
    flags: list[str] | None = None               # audit findings naming this version
    is_head: bool = False
    graph: str = ""           # lane drawing of the version DAG (filled by data.graph_lanes)
    on_head: bool = True      # on the head's history (False: left behind by a reset/revert)


@dataclass
class DeltaItem:
    tensor: str
    layer: str                # the layer index parsed from the tensor name, "" when none
    kind: str
    shape: tuple[int, ...]
    rank: int | None
    norm: float
    nbytes: int


@dataclass
class ProbeItemView:
    """One metric at one version, with its comparisons to the base and to the previous version.
    The probes store comparisons themselves (against="base"/"previous": a difference or a
    divergence such as NKL); where only plain values exist, the difference is computed here from
    the base's / parent's value and flagged ``*_computed``."""
    suite: str
    metric: str
    value: float | None                 # against="none": the measurement itself
    vs_base: float | None
    vs_previous: float | None
    count: int
    base_computed: bool = False         # vs_base = value - value at the base (none stored)
    previous_computed: bool = False     # vs_previous = value - value at the parent (none stored)
    details: dict[str, Any] = field(default_factory=dict)   # against -> stored per-prompt detail


@dataclass
class DetailView:
    version_id: int
    run_id: int | None
    step: int
    kind: str
    parent_id: int | None
    note: str
    created: str
    method: str
    hparams: dict[str, Any]
    requests: list[dict[str, Any]]            # subject, prompt, target_new, target_old, relation, case_id, group, role
    deltas: list[DeltaItem]
    probes: list[ProbeItemView]
    diagnostics: dict[str, Any]
    wall_time_s: float
    export_command: str       # the CLI command that materialises this version's weights
    step_probes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # the step's probe items, by suite


@dataclass
class TensorDiff:
    tensor: str
    only_a: list[int]         # steps whose delta on this tensor only A's chain has
    only_b: list[int]         # steps whose delta on this tensor only B's chain has
    norm: float | None        # ||W_b - W_a||_F when the factors could be read, else None
    bound: float              # sum of the differing deltas' norms (an upper bound on ||W_b - W_a||)


@dataclass
class MetricDiff:
    suite: str
    metric: str
    against: str
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class DiffView:
    a_id: int
    b_id: int
    a_label: str              # "v12 (step 7, edit)"
    b_label: str
    common_id: int | None     # nearest common ancestor
    tensors: list[TensorDiff]
    metrics: list[MetricDiff]


@dataclass
class FindingItem:
    finding_id: int
    version_id: int | None
    step: int | None
    metric: str
    score: float
    summary: str
    evidence: Any


@dataclass
class Series:
    label: str                # "run-3 rewrite/efficacy_top1"
    steps: list[int]
    values: list[float]
