"""What the screens show, as plain dataclasses. ``tui/data.py`` builds them from the ledger; the
screens only format them. Keeping this seam means a schema change touches data.py alone."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.harm import failed as edit_failed
from tui.metrics import Metric


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
    edits: int = 0            # edit versions whose rewrite efficacy was measured
    edits_ok: int = 0         # ... of which every rewrite prompt answers the new target
    held: float | None = None          # retention at the head: share of earlier edits still held
    ppl_ratio: float | None = None     # perplexity at the head / at the run's start version
    spark_metric: Metric | None = None  # the metric the sparkline draws
    spark: list[float] = field(default_factory=list)   # its values by step (the start version first)


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
    efficacy: float | None = None                # rewrite efficacy at this version
    changes: dict[Metric, float] | None = None   # key metric vs the version before (None: not known)
    findings: list[str] | None = None            # audit findings naming this version (short labels)
    is_head: bool = False
    graph: str = ""           # lane drawing of the version DAG (filled by tui.graph.graph_lanes)
    on_head: bool = True      # on the head's history (False: left behind by a reset/revert)
    retention: float | None = None       # share of the earlier edits held here
    lost: list[int] | None = None        # earlier steps forgotten at this version (held before)
    superseded: list[int] | None = None  # earlier steps whose fact this step edits again
    target: str = ""          # reset/revert/branch: "v12 (step 7)", the version it goes back to

    @property
    def failed(self) -> bool:
        """An edit whose own rewrite prompts do not all answer the new target."""
        return self.kind == "edit" and edit_failed(self.efficacy)

    @property
    def harmed(self) -> bool:
        """Worth a look: a failed edit, forgetting, or an audit finding."""
        return self.failed or bool(self.lost) or bool(self.findings)

    def flag_words(self) -> list[str]:
        """The flags as words, for filtering (flag:failed, flag:forgetting, flag:ppl, flag:head)."""
        out = []
        if self.failed:
            out.append("failed")
        if self.lost:
            out.append("forgetting")
        if self.superseded:
            out.append("superseded")
        out.extend(self.findings or ())
        if self.is_head:
            out.append("head")
        return out


@dataclass
class DeltaItem:
    tensor: str
    layer: str                # the layer index parsed from the tensor name, "" when none
    kind: str
    shape: tuple[int, ...]
    rank: int | None
    norm: float
    nbytes: int
    from_step: int | None = None       # the step whose edit recorded this delta (a revert re-applies them)
    weight_norm: float | None = None   # ‖W‖_F of the tensor this delta was applied to (from a keyframe)

    @property
    def relative(self) -> float | None:
        return None if not self.weight_norm else self.norm / self.weight_norm


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
    previous_is_base: bool = False      # the version before is the base: vs_previous is the vs-base comparison
    details: dict[str, Any] = field(default_factory=dict)   # against -> stored per-prompt detail


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
    diagnostics: dict[str, Any]               # without private keys (a leading "_": resume state)
    hidden_diagnostics: dict[str, int]        # private key -> its size in bytes (not shown)
    wall_time_s: float
    export_command: str       # the CLI command that materialises this version's weights
    outcome: Any = ""         # one line (rich Text): did the edit take, what did it cost
    probes_note: str = ""     # why the probes tab is empty or shows another version's measurements
    probes_from: int | None = None     # the version whose probes are shown (a reset shows its target's)
    findings: list[FindingItem] = field(default_factory=list)   # audit findings naming this version
    step_probes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # the step's probe items, by suite


@dataclass
class TensorDiff:
    tensor: str
    only_a: list[int]         # steps whose delta on this tensor only A's chain has
    only_b: list[int]         # steps whose delta on this tensor only B's chain has
    norm: float | None        # ||W_b - W_a||_F when the factors could be read, else None
    bound: float              # sum of the differing deltas' norms (an upper bound on ||W_b - W_a||)
    rows: Any = field(default=None, repr=False)   # the differing delta rows (A's, B's): for the norm


@dataclass
class MetricDiff:
    suite: str
    metric: str
    against: str
    a: float | None
    b: float | None
    comparable: bool = True   # A and B measured the same items (a fixed suite, or the same edit)

    @property
    def change(self) -> float | None:
        if not self.comparable or self.a is None or self.b is None:
            return None
        return self.b - self.a


@dataclass
class DiffView:
    a_id: int
    b_id: int
    a_label: str              # "v12 (step 7, edit)"
    b_label: str
    common_id: int | None     # nearest common ancestor
    tensors: list[TensorDiff]
    metrics: list[MetricDiff]
    same_edit: bool = False   # A and B applied the same edit requests (their step metrics compare)


@dataclass
class Series:
    label: str                # "run-3 rewrite/efficacy_top1"
    steps: list[int]
    values: list[float]
    metric: Metric | None = None
    base_step: int | None = None    # the step of the start version's point (0 for the base model)
