"""What a suite's record builder reads: the scores of one version and of its references, as JSON.

``Ctx`` holds, for the version just measured (step ``t`` of the stream):

    cur    the scores at this version            key -> score JSON (items.py)
    ref    the scores on the base model (theta)
    prev   the scores at the previous version (the one this version was built on)
    mid    per group, the scores at its intermediate model theta_m (after the group's first step)

so a builder is a pure function of JSON: the replay calls it right after scoring, and
``recompute.py`` calls it again later on the scores the ledger kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ledger.records import ProbeRecord
from simulator.requests import ProbeItem, Step

from .. import items as I


@dataclass
class Ctx:
    t: int                                  # 1-based index of the step just measured
    steps: list[Step]
    cur: dict[str, dict]
    ref: dict[str, dict]
    prev: dict[str, dict]
    mid: dict[str, dict[str, dict]] = field(default_factory=dict)   # group -> key -> score at theta_m
    members: dict[str, list[int]] = field(default_factory=dict)     # group -> its steps (1-based)

    def items(self, idx: int, suite: str) -> list[ProbeItem]:
        return self.steps[idx - 1].probes.get(suite, [])

    def group_items(self, group: str, suite: str):
        """(step, index, item) of every item of ``suite`` on the group's steps."""
        for j in self.members[group]:
            for i, it in enumerate(self.items(j, suite)):
                yield j, i, it


def group_of(steps: list[Step], idx: int) -> str:
    g = steps[idx - 1].group
    return g if g is not None else f"step{idx}"


def rec(suite: str, metric: str, value: float, count: int, detail, against: str = "none") -> ProbeRecord:
    return ProbeRecord(suite=suite, metric=metric, value=float(value), count=count, detail=detail, against=against)


def with_deltas(suite: str, metric: str, fn: Callable[[dict], float], ctx: Ctx, keys: list[str],
                count: int, detail) -> list[ProbeRecord]:
    """The metric on the current scores (against none) and its difference from the same metric on
    the base and on the previous version (where those scored every key)."""
    v = fn(ctx.cur)
    out = [rec(suite, metric, v, count, detail)]
    for name, src in (("base", ctx.ref), ("previous", ctx.prev)):
        if keys and all(k in src for k in keys):
            r = fn(src)
            out.append(rec(suite, metric, v - r, count, {"reference_value": r, "current_value": v}, name))
    return out


def pairs_of(ctx: Ctx, idx: int, suite: str):
    """The step's items of ``suite`` with their target keys and alt keys (None without an alt)."""
    items = ctx.items(idx, suite)
    kt = [I.key(idx, suite, i, "t") for i in range(len(items))]
    ka = [I.key(idx, suite, i, "a") if it.alt is not None else None for i, it in enumerate(items)]
    return items, kt, ka


def detail(ctx: Ctx, items, kt, ka) -> list[dict]:
    """Per prompt: the raw token log-probs of target (and alt), their probabilities, top-1 flags and
    the base's probability: enough to recompute any per-prompt metric."""
    out = []
    for it, t, a in zip(items, kt, ka):
        s = ctx.cur[t]
        d = {"prompt": it.prompt, "target": it.target, "lp": s["lp"], "p": I.prob(s), "top1": I.top1(s),
             "token_acc": I.token_acc(s)}
        if a is not None:
            d.update(alt=it.alt, lp_alt=ctx.cur[a]["lp"], p_alt=I.prob(ctx.cur[a]))
        if t in ctx.ref:
            d["p_base"] = I.prob(ctx.ref[t])
        out.append(d)
    return out
