"""ProbeRunner: scores a version of the model on a stream's probes and turns the scores into
ProbeRecords (ledger/records.py).

Protocol (driven by the replay engine):

    ref = runner.reference(steps)                   # on the base weights; JSON, stored with the run
    for each version the replay makes (step t applied on top of the version it was built on):
        records, state = runner.measure(step_index=t, steps=steps, reference=ref, previous=state_before,
                                        final=..., applied=[steps whose edits are in this version])

``applied`` is what makes both protocols one function: *sequential* (default: steps 1..t, every
step on the model as edited so far) and *independent* (each case from the base model: a case's
first step with ``applied=[j]``, its second with ``applied=[j, j+1]`` and ``previous`` the first's
state). Per-step suites, retention and group suites only ever look at applied steps.

What is measured at step t:

* the per-step suites of step t that the schedule says are due (schedule.py), and, for the
  "previous" comparisons of the next step, that step's items when it will be built on this version;
* retention: the edit prompts of every other applied step;
* group suites (suites/cases.py): a group's items after its first step (kept in the state as the
  intermediate model theta_m), its metrics when its last step is applied (suite name as is: one
  case, at its completion), and at the head (``final``) every complete group again (suite name +
  "@head");
* general abilities (general/), when due.

The state is JSON and holds every raw score measured at this version (per prompt, per target), the
intermediate scores of the groups, and what was due, so that ``records_from_state`` can rebuild the
records later from the ledger alone (recompute.py); the replay stores it with the version.
"""
from __future__ import annotations

import math
from typing import Any

from ledger.records import ProbeRecord
from simulator.requests import Step
from simulator.runtime import as_view

from . import items as I
from . import metrics as M
from .general import GeneralSets, evaluate, general_records, values_of
from .schedule import EXPENSIVE, ProbeConfig
from .suites import HEAD, Ctx, case_suites, group_of, retention, suite

STATE_KEY = "_probe_state"      # the key of the probe state in a version's diagnostics
STATE_VERSION = 2


def groups_of(steps: list[Step]) -> dict[str, list[int]]:
    """Every group of the stream and its steps (1-based), in stream order."""
    out: dict[str, list[int]] = {}
    for j in range(1, len(steps) + 1):
        out.setdefault(group_of(steps, j), []).append(j)
    return out


def _with_suite(steps: list[Step], members: list[int], name: str) -> bool:
    return any(steps[j - 1].probes.get(name) for j in members)


class ProbeRunner:
    def __init__(self, model, tokenizer=None, spec=None, config: ProbeConfig | None = None, *,
                 general: GeneralSets | None = None, batch_size: int = 16, progress: bool = True,
                 scorer=None):
        """``model``: a ``simulator.runtime.ModelView`` (what a session gives: the method's runtime
        included) or a plain model with its tokenizer and spec. ``scorer``: anything with Scorer's
        methods (tests pass a stub with known probabilities)."""
        self.config = config or ProbeConfig()
        self.general = general
        if scorer is None:
            from .scoring import Scorer  # torch: keep the probes importable without it (the report)
            scorer = Scorer(as_view(model, tokenizer, spec), batch_size=batch_size, progress=progress)
        self.scorer = scorer

    # ------------------------------------------------------------------------- scoring
    def _score(self, pairs: dict[str, tuple[str, str]], reference: dict | None, desc: str) -> dict[str, dict]:
        keys = list(pairs)
        dists = []
        for k in keys:
            _, name, _, v = k.split("/")
            if suite(name).nkl and v == "t":
                r = (reference or {}).get("scores", {}).get(k, {}).get("dist")
                dists.append(list(r["ids"]) if r else self.config.nkl_topk)
            else:
                dists.append(None)
        res = self.scorer.score([pairs[k] for k in keys], dists, desc=desc)
        return {k: r.to_json() for k, r in zip(keys, res)}

    def efficacy(self, step: Step) -> float:
        """Cheap top-1 efficacy of one step's rewrite probes on the current weights."""
        items = step.probes.get("rewrite", [])
        if not items:
            return float("nan")
        res = self.scorer.score([(it.prompt, it.target) for it in items], desc="efficacy")
        return M.accuracy(r.top1 for r in res)

    def reference(self, steps: list[Step]) -> dict:
        """Scores on the current (base) weights of every probe item of every step, and the general
        abilities (the base at step 0), as JSON."""
        pairs: dict[str, tuple[str, str]] = {}
        for idx in range(1, len(steps) + 1):
            I.step_pairs(steps, idx, set(steps[idx - 1].probes), pairs)
        ref: dict[str, Any] = {"v": STATE_VERSION, "scores": self._score(pairs, None, "probes (base)"), "general": {}}
        if self.general is not None:
            ref["general"] = evaluate(self.scorer, self.general, set(EXPENSIVE))
            ref["general_spec"] = self.general.spec
        ref["base_metrics"] = values_of(ref["general"]) if ref["general"] else {}
        return ref

    # ------------------------------------------------------------------------- measure
    def plan(self, *, step_index: int, steps: list[Step], final: bool, applied: list[int] | None) -> dict:
        """Which suites are due and which groups are measured at this version (JSON)."""
        t, n = step_index, len(steps)
        if not 1 <= t <= n:
            raise ValueError(f"step_index {t} outside 1..{n}")
        applied = sorted(set(applied)) if applied is not None else list(range(1, t + 1))
        if t not in applied or any(not 1 <= j <= n for j in applied):
            raise ValueError(f"applied steps {applied} must lie in 1..{n} and include step {t}")
        cfg = self.config
        members = groups_of(steps)
        here = set(applied)
        groups = list(dict.fromkeys(group_of(steps, j) for j in applied))
        complete = [g for g in groups if set(members[g]) <= here]
        due = sorted({s for s in steps[t - 1].probes if suite(s).scope == "step" and cfg.due(s, t, final)}
                     | ({"retention"} if cfg.due("retention", t, final) else set())
                     | {s for s in EXPENSIVE if cfg.due(s, t, final)})
        nxt = None
        if cfg.lookahead and t < n and t + 1 not in here:
            sequential = applied == list(range(1, t + 1))
            if sequential or group_of(steps, t + 1) == group_of(steps, t):   # step t+1 will be built on this version
                nxt = t + 1
        return {"step": t, "applied": applied, "final": bool(final), "due": due, "lookahead": nxt,
                "first": [g for g in groups if members[g][0] == t and len(members[g]) > 1],
                "completing": [g for g in complete if members[g][-1] == t],
                "head": complete if final else []}

    def measure(self, *, step_index: int, steps: list[Step], reference: dict, previous: dict | None,
                final: bool = False, applied: list[int] | None = None) -> tuple[list[ProbeRecord], dict]:
        """Score the version now in the model (the one with ``applied`` steps' edits) and return its
        records and its probe state (the ``previous`` of the next version built on it)."""
        prev = previous or {}
        plan = self.plan(step_index=step_index, steps=steps, final=final, applied=applied)
        t, cfg = plan["step"], self.config
        members = groups_of(steps)
        pairs: dict[str, tuple[str, str]] = {}
        I.step_pairs(steps, t, set(plan["due"]), pairs)
        if plan["lookahead"]:
            u = plan["lookahead"]
            I.step_pairs(steps, u, {s for s in steps[u - 1].probes
                                    if suite(s).scope == "step" and cfg.due(s, u, u == len(steps))}, pairs)
        if "retention" in plan["due"]:
            for j in plan["applied"]:
                I.step_pairs(steps, j, {"rewrite"}, pairs)
        cases = set(case_suites()) | {"rewrite"}         # EW and conflict success re-read the edits
        for g in dict.fromkeys(plan["first"] + plan["completing"] + plan["head"]):
            for j in members[g]:
                I.step_pairs(steps, j, cases, pairs)
        cur = self._score(pairs, reference, f"probes (step {t})")

        mid = dict(prev.get("mid") or prev.get("intermediate") or {})
        for g in plan["first"]:        # the group's intermediate model theta_m is this version
            mid[g] = {k: v for k, v in cur.items() if I.step_of(k) in members[g] and k.split("/")[1] in cases}
        edit_eff = dict(prev.get("edit_eff", {}))
        rw = [I.key(t, "rewrite", i, "t") for i in range(len(steps[t - 1].probes.get("rewrite", [])))]
        if rw and all(k in cur for k in rw):
            edit_eff[str(t)] = M.accuracy(I.top1(cur[k]) for k in rw)
        state: dict[str, Any] = {"v": STATE_VERSION, **plan, "scores": cur, "mid": mid, "edit_eff": edit_eff,
                                 "general": {k: v for k, v in (prev.get("general") or {}).items()
                                             if isinstance(v, (int, float))}}
        recs = records_from_state(steps, reference, prev, state)

        gsuites = {s for s in EXPENSIVE if s in plan["due"]}
        if self.general is not None and gsuites:
            results = evaluate(self.scorer, self.general, gsuites)
            own_ot = {"other_task"} if steps[t - 1].probes.get("other_task") else set()
            recs += [r for r in general_records(results, reference.get("base_metrics", {}), state["general"], own_ot)
                     if math.isfinite(r.value)]
            state["general"].update(values_of(results))
        return recs, state


def records_from_state(steps: list[Step], reference: dict, previous: dict | None, state: dict) -> list[ProbeRecord]:
    """The item-based records of one version from JSON alone: its state, the state of the version it
    was built on, and the run's reference (base) scores. General-ability records are not included
    (they come with their own outputs: general.rescore)."""
    prev = previous or {}
    t = state["step"]
    members = groups_of(steps)
    ctx = Ctx(t, steps, state["scores"], (reference or {}).get("scores", {}), prev.get("scores", {}),
              state.get("mid", {}), members)
    recs: list[ProbeRecord] = []
    for name in steps[t - 1].probes:
        if name in state["due"] and suite(name).scope == "step":
            recs += suite(name).build(ctx, name, t)
    if "retention" in state["due"]:
        recs += retention(ctx, state["applied"], state.get("edit_eff", {}))
    for groups, tag in ((state.get("completing", []), ""), (state.get("head", []), HEAD)):
        for name in [n for n in case_suites() if suite(n).scope == "group"]:
            with_items = [g for g in groups if _with_suite(steps, members[g], name)]
            if with_items:
                recs += suite(name).build(ctx, name + tag, with_items)
    # the ledger stores finite numbers only; an undefined aggregate (no items) is not a measurement
    return [r for r in recs if math.isfinite(r.value)]
