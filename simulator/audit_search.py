"""The audit's causal search, with the model: which steps did this, and how sure are we.

A *target* is a metric and the condition under which the model counts as degraded, in the
stop-condition grammar (``perplexity.ppl>1.2x``: 20 % above the base). Every model the search
measures is made live through the session (``Session.checkout`` for a ledger version, verified;
``Session.materialise(head, without=…)`` for the head without some steps, weights and method
state), never by re-running an editor, so it works for every method. An *oracle* measures the
target on such models and counts what it did. With ``bad`` the metric turned so that larger is
worse (and taken in log space for perplexity-like metrics), for a set S of steps:

    recovery r(S)      = (bad(head) − bad(head without S)) / (bad(head) − bad(base))
    reproduction q(S)  = (bad(only S) − bad(base)) / (bad(head) − bad(base))
    share s(k)         = (bad(version k) − bad(version before k)) / (bad(head) − bad(base))

where "only S" is the head without every other step of the run. A step *explains* the
degradation when min(q, max(r, s)) ≥ ρ (ρ = 0.5 by default): it does most of the damage on its
own, and the head needs it (r) or the damage arrived with it (s: later steps computed on the model
it had damaged can keep the damage when it alone is removed). A pair explains it when r ≥ ρ and
q ≥ ρ. The searches:

* **bisection** over the head's lineage for the first version whose metric meets the condition:
  the head, then halving, in at most 1 + ⌈log2 n⌉ verified checkouts; values the ledger already
  holds narrow the bracket for free.
* **group testing**, twice: leave out each half of the steps (recovery), and keep only each half
  (reproduction); recurse into every half that reaches ρ, down to single steps: about 2⌈log2 n⌉
  measurements per culprit instead of n. A block that reaches ρ while neither half does holds an
  interaction between its halves.
* **interactions**: when no step is both needed and sufficient, pairs among the suspects are
  tested: two steps that each recover it when removed but reproduce it only together ("and"), or
  that each reproduce it alone so that only removing both recovers it ("or").
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tqdm import tqdm

from ledger.errors import InputError
from ledger.values import preferred_value
from simulator.probes import EXPENSIVE, SUITES, GeneralSets, ProbeConfig, ProbeRunner, general_sets
from simulator.probes.general import TASKS
from simulator.requests import PROBE_SUITES
from simulator.requests import Step
from simulator.stopping import StopCondition
from simulator.probes.general.builtin import HEALTH_PROXY_TEXT as PROXY_TEXT

# metrics whose changes are multiplicative: fractions of a degradation are taken of their logs
LOG_METRICS = {("perplexity", "ppl"), ("health", "ppl"), ("health", "ppl_ratio"), ("health", "cond")}
# without --when, a general ability is degraded when it is 20 % worse than on the base model
DEFAULT_TOLERANCE = 0.2
MIN_ITEMS = 20              # a downstream set needs this many items to be searched on without --when
GENERAL_SUITES = ("perplexity", "downstream", "fluency", "other_task")


# ----------------------------------------------------------------------------- the target
@dataclass
class Target:
    condition: StopCondition            # degraded when it triggers, e.g. perplexity.ppl>1.2x
    base_value: float | None            # the metric on the base model (for an "x" condition), if known

    @property
    def name(self) -> str:
        return f"{self.condition.suite}.{self.condition.metric}"

    @property
    def worse_when_higher(self) -> bool:
        return self.condition.op in (">", ">=")

    @property
    def log(self) -> bool:
        return (self.condition.suite, self.condition.metric) in LOG_METRICS

    def degraded(self, value: float | None, base_value: float | None = None) -> bool:
        b = self.base_value if base_value is None else base_value
        return self.condition.triggered(value, b)

    def bad(self, value: float) -> float:
        """The value turned so that larger is worse (log of it for perplexity-like metrics)."""
        x = math.log(max(value, 1e-300)) if self.log else value
        return x if self.worse_when_higher else -x


def default_tolerance_condition(suite: str, metric: str, tolerance: float = DEFAULT_TOLERANCE) -> StopCondition:
    """``suite.metric>1.2x`` for a metric where higher is worse, ``suite.metric<0.8x`` otherwise."""
    worse_high = (suite, metric) in LOG_METRICS or metric in ("nkl", "forgetting", "distortion")
    text = f"{suite}.{metric}{'>' if worse_high else '<'}{(1 + tolerance) if worse_high else (1 - tolerance):g}x"
    return StopCondition.parse(text)


def _lineage_values(ledger, versions, suite: str, metric: str) -> list[tuple[Any, float]]:
    """(version, value) of ``suite.metric`` recorded at ``versions`` (the preferred comparison)."""
    out = []
    for v in versions:
        val = preferred_value(ledger.probes(v.id, suite), suite, metric)
        if val is not None:
            out.append((v, val))
    return out


def recorded_base(ledger, run_id: int, versions, suite: str, metric: str) -> float | None:
    """The metric's base value as the run recorded it: the reference's base metrics, or the base the
    health telemetry wrote beside its perplexity proxy."""
    ref = ((ledger.run(run_id).config or {}).get("reference") or {}).get("base_metrics", {})
    if f"{suite}.{metric}" in ref:
        return float(ref[f"{suite}.{metric}"])
    if suite == "health" and metric in ("ppl", "ppl_ratio"):
        for v in versions:
            for p in ledger.probes(v.id, "health"):
                if p.metric == "ppl" and isinstance(p.detail, dict) and p.detail.get("base"):
                    return float(p.detail["base"]) if metric == "ppl" else 1.0
    return None


def choose_target(ledger, run_id: int, versions, when: str | None = None,
                  tolerance: float = DEFAULT_TOLERANCE) -> tuple[Target | None, list[dict]]:
    """The condition to search for: ``when`` if given, else the general ability (or the health
    perplexity proxy) that the recorded probes show most degraded beyond ``tolerance`` (downstream
    sets of fewer than ``MIN_ITEMS`` items only when named). Returns the target (None when nothing is
    degraded) and what was considered (for the report)."""
    if when:
        cond = StopCondition.parse(when)
        return Target(cond, recorded_base(ledger, run_id, versions, cond.suite, cond.metric)), []
    considered = []
    for suite, metric in ledger.metrics(run_id):
        if suite not in GENERAL_SUITES and (suite, metric) != ("health", "ppl"):
            continue
        series = _lineage_values(ledger, versions, suite, metric)
        base = recorded_base(ledger, run_id, versions, suite, metric)
        if not series or base is None or base <= 0:
            continue
        count = next((int(p.count) for p in ledger.probes(series[-1][0].id, suite)
                      if p.metric == metric and p.against == "none"), 0)
        t = Target(default_tolerance_condition(suite, metric, tolerance), base)
        head = series[-1][1]
        if suite == "downstream" and count < MIN_ITEMS:
            # one flipped answer of 8 is a 12 % change: too coarse to search on unasked
            considered.append({"metric": t.name, "base": base, "head": head, "condition": t.condition.text,
                               "degraded": t.degraded(head), "over": -math.inf, "target": t,
                               "skipped": f"only {count} items: not searched unless named with --when"})
            continue
        limit = t.condition.limit(base)
        # how far beyond its limit, as a log ratio (comparable across metrics)
        over = (math.log(head / limit) if t.worse_when_higher else math.log(limit / head)) if head > 0 else math.inf
        considered.append({"metric": t.name, "base": base, "head": head, "condition": t.condition.text,
                           "degraded": t.degraded(head), "over": over, "target": t})
    hits = [c for c in considered if c["degraded"] and not c.get("skipped")]
    best = max(hits, key=lambda c: c["over"])["target"] if hits else None
    return best, [{k: v for k, v in c.items() if k != "target"} for c in considered]


# ----------------------------------------------------------------------------- measuring
def _general_subset(g: GeneralSets, suite: str, metric: str) -> GeneralSets:
    """Only the part of ``g`` that ``suite.metric`` needs (a measurement costs one set, not all)."""
    if suite == "perplexity":
        return g.only("perplexity")
    if suite == "fluency":
        return GeneralSets(fluency_prompts=list(g.fluency_prompts), fluency_tokens=g.fluency_tokens, spec=g.spec)
    have = g.task_items()
    task = next((name for name in have if TASKS[name].suite == suite and metric in TASKS[name].metrics), None)
    if task is None:
        known = sorted(f"{TASKS[n].suite}.{m}" for n in have for m in TASKS[n].metrics)
        raise InputError(f"{suite}.{metric} is not a metric of the run's general-ability sets; "
                         f"they measure {', '.join(known) or 'no task'}")
    return g.only(task)


def run_general_sets(run_config: dict) -> GeneralSets | None:
    """The general-ability sets a run's replay used (its ``general``, ``general_n``, ``general_seed``)."""
    opt = (run_config or {}).get("options") or {}
    return general_sets(opt.get("general", "builtin"), int(opt.get("general_n", 10)), int(opt.get("general_seed", 0)))


def measurer(session, run_id: int, suite: str, metric: str, *, general: GeneralSets | None = None,
             step_index: int | None = None, proxy_text: str = PROXY_TEXT) -> Callable[[], float]:
    """A function that measures ``suite.metric`` on whatever the session has live now.

    General abilities use the run's general-ability sets (or ``general``); ``health.ppl`` the
    telemetry's proxy text; ``health.cond`` the largest κ of the tensors the run's lineage edits;
    any probe suite the probe runner on the run's stream (its step ``step_index``, default the head)."""
    led = session.ledger
    run = led.run(run_id)
    cfg = run.config or {}
    if suite in GENERAL_SUITES:
        g = general if general is not None else run_general_sets(cfg)
        if g is None:
            raise InputError(f"run {run_id} was replayed without general-ability sets (--general none): "
                             f"{suite}.{metric} cannot be measured; pick another metric with --when")
        runner = ProbeRunner(session.view, general=_general_subset(g, suite, metric), progress=False)
        key = f"{suite}.{metric}"

        def general_value() -> float:
            got = runner.reference([]).get("base_metrics", {})
            if key not in got:
                raise InputError(f"{key} is not a metric of the general-ability sets "
                                 f"(they give {', '.join(sorted(got)) or 'nothing'})")
            return float(got[key])
        return general_value
    if suite == "health":
        if metric in ("ppl", "ppl_ratio"):
            runner = ProbeRunner(session.view, general=GeneralSets(text=proxy_text), progress=False)
            return lambda: float(runner.reference([])["base_metrics"]["perplexity.ppl"])
        if metric == "cond":
            from simulator.condition import condition_number  # torch: a ledger-only audit never measures κ
            names = sorted({d.tensor for _, ds, _ in led.lineage_deltas(run.head_version_id) for d in ds
                            if d.kind in ("low_rank", "dense", "sparse") and len(d.shape) == 2})
            return lambda: max((condition_number(session.param(n))[0] for n in names), default=float("nan"))
        raise InputError(f"health.{metric} is recorded per step but cannot be re-measured on a model without "
                         "its step's delta; the audit re-measures health.ppl and health.cond")
    if suite == "retention":
        raise InputError("retention measures the run's own edits, and a search takes edits away: it cannot say "
                         "which step made others forgotten. The audit's forgetting findings name that step from "
                         "the ledger; search on a general ability or health.ppl instead")
    steps = [Step.from_dict(d) for d in cfg.get("stream", [])]
    if not steps:
        raise InputError(f"run {run_id} stores no stream, so {suite}.{metric} cannot be re-measured")
    if step_index is None:       # the head's last replayed step (a stopped or partial run ends before the stream)
        first = int(cfg.get("first_step", 1))
        edits = [v.step for v in led.lineage(run.head_version_id) if v.run_id == run_id and v.kind == "edit"]
        step_index = (max(edits) - first + 1) if edits else len(steps)
    idx = max(1, min(step_index, len(steps)))
    every = {s: 0 for s in {*PROBE_SUITES, *SUITES, *EXPENSIVE, "retention"}}   # 0: only at the end (never here)
    every[suite] = 1
    runner = ProbeRunner(session.view, config=ProbeConfig(every=every, lookahead=False), progress=False)
    reference = cfg.get("reference", {})

    def probe_value() -> float:
        recs, _ = runner.measure(step_index=idx, steps=steps, reference=reference, previous=None, final=False)
        val = preferred_value(recs, suite, metric)
        if val is None:
            raise InputError(f"{suite}.{metric} is not measured at step {idx} of run {run_id}'s stream")
        return val
    return probe_value


# ----------------------------------------------------------------------------- the oracle
@dataclass
class Cost:
    evaluations: int = 0        # models measured
    checkouts: int = 0          # verified checkouts of ledger versions
    materialisations: int = 0   # models no ledger version holds (the head without some steps)
    seconds: float = 0.0


class Oracle:
    """Measures the target on models made from the run's steps, through the session only, and
    remembers every measurement (a set of steps is never measured twice)."""

    def __init__(self, session, run_id: int, target: Target, measure: Callable[[], float], items: Sequence[Any]):
        self.s, self.run_id, self.target, self.measure = session, run_id, target, measure
        self.items = list(items)                       # the run's edit versions on the head's lineage, in order
        self.ids = frozenset(v.id for v in self.items)
        self.head_id = session.ledger.run(run_id).head_version_id
        self.cost = Cost()
        self._without: dict[frozenset[int], float] = {}
        self._at: dict[int, float] = {}
        self.bar: tqdm | None = None

    def _timed(self, fn) -> float:
        t = time.perf_counter()
        val = float(fn())
        self.cost.evaluations += 1
        self.cost.seconds += time.perf_counter() - t
        if self.bar is not None:
            if self.bar.total is not None and self.bar.n >= self.bar.total:
                self.bar.total = self.bar.n + 1      # a search that needs more than it planned (a pair's parts)
            self.bar.update(1)
        return val

    def at(self, version_id: int) -> float:
        """The target at a ledger version (verified checkout)."""
        if version_id not in self._at:
            def go():
                self.s.checkout(version_id)
                self.cost.checkouts += 1
                return self.measure()
            self._at[version_id] = self._timed(go)
        return self._at[version_id]

    def without(self, ids) -> float:
        """The target on the head without the steps of ``ids`` (version ids)."""
        key = frozenset(ids)
        if not key:
            return self.head()
        if key not in self._without:
            def go():
                self.s.materialise(self.head_id, without=key)
                self.cost.materialisations += 1
                return self.measure()
            self._without[key] = self._timed(go)
        return self._without[key]

    def measured(self, ids) -> bool:
        """Whether the head without ``ids`` was measured already (costs nothing to ask again)."""
        return frozenset(ids) in self._without or not ids

    def only(self, ids) -> float:
        return self.without(self.ids - frozenset(ids))

    def head(self) -> float:
        return self.at(self.head_id)

    def base(self) -> float:
        return self.without(self.ids)

    # fractions of the degradation
    def span(self) -> float:
        return self.target.bad(self.head()) - self.target.bad(self.base())

    def recovery(self, ids) -> float:
        sp = self.span()
        return (self.target.bad(self.head()) - self.target.bad(self.without(ids))) / sp if sp else 0.0

    def reproduction(self, ids) -> float:
        sp = self.span()
        return (self.target.bad(self.only(ids)) - self.target.bad(self.base())) / sp if sp else 0.0

    def restore(self) -> None:
        """Leave the head live (verified), as the session was before the search."""
        self.s.checkout(self.head_id)


# ----------------------------------------------------------------------------- bisection
def bisection_bound(n: int) -> int:
    """Verified checkouts bisection needs at most over ``n`` versions: the head, then ⌈log2 n⌉."""
    return 1 + math.ceil(math.log2(n)) if n > 1 else 1


def bisect_first(measure_at: Callable[[int], float], n: int, crossed: Callable[[float], bool],
                 known: dict[int, float] | None = None) -> int | None:
    """The first index in 0..n-1 whose value meets ``crossed``, assuming the indices before it do
    not (the virtual index -1, the start, never does): ``measure_at(i)`` is called on the last index,
    then on midpoints. ``known`` values (index -> value, e.g. recorded in the ledger) are used
    instead of measuring, and narrow the bracket. None when the last index does not cross."""
    known = dict(known or {})

    def value(i: int) -> float:
        if i not in known:
            known[i] = measure_at(i)
        return known[i]

    if n <= 0 or not crossed(value(n - 1)):
        return None
    lo, hi = -1, n - 1
    for i in sorted(k for k in known if 0 <= k < n):       # the bracket the known values allow
        if crossed(known[i]):
            hi = min(hi, i)
            break
        lo = i
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if crossed(value(mid)):
            hi = mid
        else:
            lo = mid
    return hi


# ----------------------------------------------------------------------------- group testing
@dataclass
class GroupTest:
    mode: str                                                    # "without" (necessity) or "only" (sufficiency)
    singles: dict[int, float] = field(default_factory=dict)       # version id -> fraction for that step alone
    blocks: list[tuple[tuple[int, ...], float]] = field(default_factory=list)   # (ids, fraction) measured
    interacting: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # halves
    exhausted: bool = False                                     # stopped by the measurement cap


def group_test_bound(n: int) -> int:
    """Measurements for one culprit among ``n`` steps: two halves per level."""
    return 2 * math.ceil(math.log2(n)) if n > 1 else 1


def group_test(oracle: Oracle, rho: float, cap: int, mode: str = "without") -> GroupTest:
    """Adaptive group testing over the run's steps, breadth first: split a block in halves and
    recurse into every half whose fraction reaches ``rho``, down to single steps. ``mode="without"``
    leaves a half out and measures the recovery (steps the damage needs); ``mode="only"`` keeps only
    a half and measures the reproduction (steps that do the damage on their own: a culprit whose
    later steps were computed on the model it damaged still shows here). A block that reaches ``rho``
    while neither half does holds an interaction between its halves. ``cap`` bounds the measurements."""
    assert mode in ("without", "only"), f"mode is 'without' or 'only', not {mode!r}"
    frac = oracle.recovery if mode == "without" else oracle.reproduction
    known = (lambda h: oracle.measured(h)) if mode == "without" else (lambda h: oracle.measured(oracle.ids - frozenset(h)))
    res = GroupTest(mode)
    items = [v.id for v in oracle.items]
    if len(items) == 1:
        res.singles[items[0]] = 1.0
        return res
    queue: list[list[int]] = [items]
    start = oracle.cost.evaluations
    while queue:
        block = queue.pop(0)
        mid = len(block) // 2
        halves = [block[:mid], block[mid:]]
        if oracle.cost.evaluations - start + sum(not known(h) for h in halves) > cap:
            res.exhausted = True
            break
        fs = [frac(h) for h in halves]
        for h, f in zip(halves, fs):
            res.blocks.append((tuple(h), f))
            if f >= rho:
                if len(h) == 1:
                    res.singles[h[0]] = f
                else:
                    queue.append(h)
        if all(f < rho for f in fs):
            res.interacting.append((tuple(halves[0]), tuple(halves[1])))
    return res


# ----------------------------------------------------------------------------- the verdict
@dataclass
class Explanation:
    version_ids: tuple[int, ...]
    steps: tuple[int, ...]
    kind: str                     # "single", "and" (only together), "or" (each alone), "set"
    recovery: float               # r: leaving them all out undoes this share of the damage
    reproduction: float           # q: keeping only them does this share
    share: float | None = None    # s (a single step): the damage it did when it was applied, in the run
    parts: dict[int, dict] = field(default_factory=dict)    # step -> {"recovery", "reproduction"} alone

    @property
    def score(self) -> float:
        """min(q, max(r, s)): it does the damage on its own, and the head needs it or the damage
        arrived with it (later steps computed on the model it damaged can keep the damage after
        it is removed: then r is small while s is not)."""
        need = self.recovery if self.share is None else max(self.recovery, self.share)
        return min(self.reproduction, need)


@dataclass
class Investigation:
    run_id: int
    target: Target | None
    considered: list[dict] = field(default_factory=list)
    base: float | None = None
    head: float | None = None
    head_degraded: bool = False
    first_crossing: dict | None = None          # {"step", "version_id", "checkouts", "bound", "value"}
    necessity: GroupTest | None = None
    sufficiency: GroupTest | None = None
    steps: dict[int, dict] = field(default_factory=dict)   # version id -> {"step", "recovery", "reproduction", "share"}
    explanations: list[Explanation] = field(default_factory=list)
    pairs_tested: list[dict] = field(default_factory=list)
    rho: float = 0.5
    cost: Cost = field(default_factory=Cost)
    verdict: str = ""

    def culprits(self) -> list[Explanation]:
        """Explanations above the threshold (score >= rho), best first."""
        return sorted([e for e in self.explanations if e.score >= self.rho], key=lambda e: -e.score)

    def ranking(self) -> list[dict]:
        """Every step the search measured on its own, most culpable first (its score as a single)."""
        rows = [dict(d, version_id=vid, score=Explanation((vid,), (d["step"],), "single", d["recovery"],
                                                          d["reproduction"], d.get("share")).score)
                for vid, d in self.steps.items()]
        return sorted(rows, key=lambda d: -d["score"])

    def to_dict(self) -> dict:
        def gt(g):
            return None if g is None else {"blocks": [{"version_ids": list(b), "fraction": f} for b, f in g.blocks],
                                           "exhausted": g.exhausted}
        return {
            "target": None if self.target is None else self.target.condition.text,
            "considered": self.considered, "base": self.base, "head": self.head,
            "head_degraded": self.head_degraded, "first_crossing": self.first_crossing, "rho": self.rho,
            "necessity": gt(self.necessity), "sufficiency": gt(self.sufficiency),
            "ranking": self.ranking(),
            "explanations": [{"steps": list(e.steps), "version_ids": list(e.version_ids), "kind": e.kind,
                              "recovery": e.recovery, "reproduction": e.reproduction, "share": e.share,
                              "score": e.score, "parts": {str(k): v for k, v in e.parts.items()}}
                             for e in self.explanations],
            "pairs_tested": self.pairs_tested,
            "cost": vars(self.cost), "verdict": self.verdict}


def _say(say, text: str) -> None:
    if say is not None:
        say(text)


def _eta(n: int, per_eval: float) -> str:
    """'~9.3 s each, at most ~3.7 min' for ``n`` measurements at ``per_eval`` seconds."""
    total = n * per_eval
    t = f"{total:.0f} s" if total < 120 else f"{total / 60:.1f} min"
    return f"~{per_eval:.1f} s each, at most ~{t}"


def investigate(session, run_id: int, items: Sequence[Any], *, when: str | None = None,
                general: GeneralSets | None = None, suspects: Sequence[int] = (), rho: float = 0.5,
                tolerance: float = DEFAULT_TOLERANCE, max_evals: int | None = None, max_pairs: int = 10,
                bisect: bool = True, say=print, progress: bool = True,
                measure: Callable[[], float] | None = None) -> Investigation:
    """The causal search on the run's head (see the module docstring). ``items``: the run's edit
    versions on the head's lineage, in order; ``suspects``: version ids the ledger evidence ranks
    first (they seed the pair tests). ``say`` prints each search's cost before it starts."""
    led = session.ledger
    target, considered = choose_target(led, run_id, items, when, tolerance)
    inv = Investigation(run_id, target, considered, rho=rho)
    if target is None:
        small = [c["metric"] for c in considered if c["degraded"] and c.get("skipped")]
        inv.verdict = (f"no general ability recorded for run {run_id} is degraded beyond {tolerance:.0%} of the base "
                       "model" + (f" on a set large enough to search unasked ({', '.join(small)} is, on a few items)"
                                  if small else "")
                       + "; nothing to search (name a condition with --when to search anyway)")
        return inv
    if not items:
        inv.verdict = f"run {run_id} has no edit on its head's lineage"
        return inv
    fn = measure or measurer(session, run_id, target.condition.suite, target.condition.metric, general=general)
    oracle = Oracle(session, run_id, target, fn, items)
    n = len(items)
    step_of = {v.id: v.step for v in items}
    cap = max_evals if max_evals is not None else 2 * group_test_bound(n) + 4
    try:
        _say(say, f"target: {target.condition.text} — measuring the head (verified checkout) and the base")
        with tqdm(total=2, desc="head and base", disable=not progress, leave=False) as oracle.bar:
            inv.head = oracle.head()
            inv.base = oracle.base()
        if target.base_value is None:
            target.base_value = inv.base
        per_eval = oracle.cost.seconds / max(1, oracle.cost.evaluations)
        inv.head_degraded = target.degraded(inv.head)
        if not inv.head_degraded:
            inv.verdict = (f"re-measured, the head does not meet {target.condition.text} "
                           f"({target.name} {inv.head:.4g}, base {inv.base:.4g}): no culprit to search for")
            return inv
        if oracle.span() <= 0:
            inv.verdict = (f"{target.name} is no worse at the head ({inv.head:.4g}) than without any of the run's "
                           f"steps ({inv.base:.4g}): the run's edits are not what degraded it")
            return inv
        known = _recorded(led, items, target) if measure is None else {}
        if bisect:
            _bisect(inv, oracle, items, known, per_eval, say, progress)
        for mode, what in (("without", "leaving halves out (steps the damage needs)"),
                           ("only", "keeping only halves (steps that do the damage alone)")):
            _say(say, f"group testing by {what} over {n} steps: about {group_test_bound(n)} measurements per "
                      f"culprit (at most {cap}; one step at a time would take {n}), {_eta(cap, per_eval)}")
            with tqdm(total=cap, desc=f"group testing ({mode})", disable=not progress, leave=False) as oracle.bar:
                g = group_test(oracle, rho, cap, mode)
            if mode == "without":
                inv.necessity = g
            else:
                inv.sufficiency = g
        cands = list(dict.fromkeys(sorted([*inv.necessity.singles, *inv.sufficiency.singles], key=lambda i: step_of[i])
                                   + ([inv.first_crossing["version_id"]] if inv.first_crossing else [])))
        _say(say, f"{len(cands)} candidate step(s): each measured without it, alone, and where it was applied "
                  f"(up to {4 * len(cands)} measurements, {_eta(4 * len(cands), per_eval)})")
        with tqdm(total=4 * len(cands), desc="candidates", disable=not progress, leave=False) as oracle.bar:
            for vid in cands:
                inv.steps[vid] = _single(oracle, items, vid, known)
        singles = [Explanation((vid,), (d["step"],), "single", d["recovery"], d["reproduction"], d["share"])
                   for vid, d in inv.steps.items()]
        inv.explanations = list(singles)
        # a step that does the damage alone but whose removal does not undo it is either a culprit
        # whose later steps kept its damage, or one of several steps that each do it ("or"): pairs tell
        if not any(e.recovery >= rho and e.reproduction >= rho for e in singles):
            _pairs(inv, oracle, items, suspects, rho, max_pairs, per_eval, say, progress)
            either = {v for e in inv.explanations if e.kind == "or" and e.score >= rho for v in e.version_ids}
            inv.explanations = [e for e in inv.explanations
                                if not (e.kind == "single" and e.recovery < rho and e.version_ids[0] in either)]
        inv.verdict = _verdict(inv)
    finally:
        oracle.bar = None
        inv.cost = oracle.cost
        oracle.restore()
    return inv


def _recorded(led, items, target: Target) -> dict[int, float]:
    """Version id -> the target's value the replay recorded there (measured the same way)."""
    return {v.id: val for v, val in _lineage_values(led, items, target.condition.suite, target.condition.metric)}


def _single(oracle: Oracle, items, vid: int, known: dict[int, float]) -> dict:
    """r, q and s of one step; s from the values at its version and its parent (recorded or measured)."""
    t = oracle.target
    i = next(j for j, v in enumerate(items) if v.id == vid)
    parent = items[i].parent_id
    at = lambda v: known[v] if v in known else oracle.at(v)
    share = (t.bad(at(vid)) - t.bad(at(parent))) / oracle.span()
    return {"step": items[i].step, "recovery": oracle.recovery([vid]), "reproduction": oracle.reproduction([vid]),
            "share": share}


def _bisect(inv: Investigation, oracle: Oracle, items, recorded: dict[int, float], per_eval: float, say,
            progress: bool) -> None:
    """First version on the lineage whose target meets the condition (recorded values narrow it)."""
    t = oracle.target
    known = {i: recorded[v.id] for i, v in enumerate(items) if v.id in recorded}
    known[len(items) - 1] = inv.head
    bound = bisection_bound(len(items))
    _say(say, f"bisection for the first version meeting {t.condition.text}: at most {bound} verified checkouts "
              f"over {len(items)} versions ({len(known)} value(s) already recorded narrow it), {_eta(bound, per_eval)}")
    before = oracle.cost.checkouts
    with tqdm(total=bound, desc="bisection", disable=not progress, leave=False) as oracle.bar:
        idx = bisect_first(lambda i: oracle.at(items[i].id), len(items), t.degraded, known)
    if idx is not None:
        inv.first_crossing = {"step": items[idx].step, "version_id": items[idx].id,
                              "checkouts": oracle.cost.checkouts - before, "bound": bound, "value": known.get(idx)}


def _pairs(inv: Investigation, oracle: Oracle, items, suspects: Sequence[int], rho: float, max_pairs: int,
           per_eval: float, say, progress: bool) -> None:
    """Pairs among the suspects: steps the damage needs (an "and" pair shows as two such steps that
    do not do it alone), steps that each do it alone (an "or" pair), the halves of a block that
    reaches the threshold only as a whole, then the ledger's suspects."""
    step_of = {v.id: v.step for v in items}
    cands: list[tuple[int, int]] = []
    needed = sorted(inv.necessity.singles, key=lambda i: -inv.necessity.singles[i])
    alone = sorted(inv.sufficiency.singles, key=lambda i: -inv.sufficiency.singles[i])
    cands += list(itertools.combinations(needed, 2)) + list(itertools.combinations(alone, 2))
    for g in (inv.necessity, inv.sufficiency):
        for left, right in g.interacting:
            if len(left) * len(right) <= max_pairs:
                cands += [(a, b) for a in left for b in right]
    pool = list(dict.fromkeys([*needed, *alone, *[s for s in suspects if s in step_of]]))[:5]
    cands += list(itertools.combinations(pool, 2))
    seen, pairs = set(), []
    for a, b in cands:
        key = tuple(sorted((a, b), key=lambda i: step_of[i]))
        if a != b and key not in seen:
            seen.add(key)
            pairs.append(key)
    pairs = pairs[:max_pairs]
    if not pairs:
        return
    _say(say, f"no single step is both needed for the damage and enough for it: testing {len(pairs)} pair(s) "
              f"among the suspects: one measurement each, up to 4 more for a pair whose removal undoes it "
              f"({_eta(5 * len(pairs), per_eval)})")
    with tqdm(total=len(pairs), desc="pairs", disable=not progress, leave=False) as oracle.bar:
        for a, b in pairs:
            r_ab = oracle.recovery([a, b])
            q_ab = oracle.reproduction([a, b]) if r_ab >= rho else None
            inv.pairs_tested.append({"steps": [step_of[a], step_of[b]], "recovery": r_ab, "reproduction": q_ab})
            if q_ab is None or q_ab < rho:
                continue
            parts = {step_of[x]: {"recovery": oracle.recovery([x]), "reproduction": oracle.reproduction([x])}
                     for x in (a, b)}
            alone_r = [p["recovery"] >= rho for p in parts.values()]
            alone_q = [p["reproduction"] >= rho for p in parts.values()]
            if all(alone_r) and not any(alone_q):
                kind = "and"
            elif all(alone_q) and not any(alone_r):
                kind = "or"
            else:
                kind = "set"
            inv.explanations.append(Explanation((a, b), (step_of[a], step_of[b]), kind, r_ab, q_ab, None, parts))


def _verdict(inv: Investigation) -> str:
    t = inv.target
    head = f"{t.name} {inv.base:.4g} (without the run's steps) → {inv.head:.4g} at the head, which meets {t.condition.text}"
    good = inv.culprits()
    if not good:
        tested = f"; {len(inv.pairs_tested)} pair(s) tested" if inv.pairs_tested else ""
        return (f"{head}. No single step nor pair among the suspects explains it (does at least {inv.rho:.0%} of "
                f"the damage alone, and is needed for it){tested}: the damage is spread over many steps or needs "
                "more of them together.")
    lines = [head + "."]
    for e in good:
        steps = " and ".join(f"step {s}" for s in e.steps)
        if e.kind == "single":
            line = (f"{steps} explains it: alone it does {_pct(e.reproduction)} of the damage; without it "
                    f"{_pct(e.recovery)} is undone")
            if e.share is not None and e.share > e.recovery:
                line += (f"; applied, it did {_pct(e.share)} (the later steps were computed on the model it had "
                         "damaged, so removing it alone leaves part of the damage)")
            lines.append(line + ".")
        elif e.kind == "and":
            alone = ", ".join(f"step {s} {_pct(p['reproduction'])}" for s, p in e.parts.items())
            lines.append(f"{steps} explain it together, and neither does alone (alone: {alone}; together "
                         f"{_pct(e.reproduction)}); removing either one undoes it.")
        elif e.kind == "or":
            lines.append(f"{steps} each do it alone (so removing one is not enough); removing both undoes "
                         f"{_pct(e.recovery)} of the damage.")
        else:
            lines.append(f"{steps} together explain it (without them {_pct(e.recovery)} undone, only them "
                         f"{_pct(e.reproduction)}).")
    return " ".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"
