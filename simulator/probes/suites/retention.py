"""Retention: the efficacy of every earlier applied step's edit prompts at this version (forgetting
curves). ``at_edit`` is the same efficacy measured right after that step (kept in the probe state)."""
from __future__ import annotations

from ledger.records import ProbeRecord

from .. import items as I
from .. import metrics as M
from .context import Ctx, rec


def retention(ctx: Ctx, applied: list[int], edit_eff: dict[str, float]) -> list[ProbeRecord]:
    rows = []
    for j in sorted(applied):
        kt = [I.key(j, "rewrite", i, "t") for i in range(len(ctx.items(j, "rewrite")))]
        if not kt or not all(k in ctx.cur for k in kt):
            continue
        row = {"step": j, "top1": M.accuracy(I.top1(ctx.cur[k]) for k in kt),
               "p_new": M.mean(I.prob(ctx.cur[k]) for k in kt), "at_edit": edit_eff.get(str(j))}
        if all(k in ctx.prev for k in kt):
            row["top1_previous"] = M.accuracy(I.top1(ctx.prev[k]) for k in kt)
        rows.append(row)
    earlier = [r for r in rows if r["step"] != ctx.t]
    if not earlier:       # nothing to retain yet at the first edit
        return []
    recs = [rec("retention", "efficacy_top1", M.mean(r["top1"] for r in earlier), len(earlier), rows)]
    forg = [r["at_edit"] - r["top1"] for r in earlier if r["at_edit"] is not None]
    if forg:
        recs.append(rec("retention", "forgetting", M.mean(forg), len(forg), None))
    prevs = [r["top1"] - r["top1_previous"] for r in earlier if "top1_previous" in r]
    if prevs:
        recs.append(rec("retention", "efficacy_top1", M.mean(prevs), len(prevs), None, "previous"))
    return recs
