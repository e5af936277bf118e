"""Harm at a glance, read from the probes alone (no audit needed): which edits failed, which step
made the model forget earlier edits, and each key metric's change against the version before.

Pure functions over plain values, so that they are checked by hand in tests/test_tui_harm.py.
The comparisons follow what the probes store: a step suite (neighbourhood, paraphrase, ...)
measures each step's own prompts, so its change against the previous version is only known from
the comparison the probes stored (the same prompts scored before and after the step); subtracting
two steps' plain values would compare different prompts. A fixed suite (perplexity, downstream
tasks) measures the same items every time, so a change is also the difference of plain values
against the nearest earlier measurement on the version's line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ledger.values import against_rank
from tui.metrics import FIXED_SUITES, Metric

HELD = 0.5        # an earlier edit is held when its top-1 efficacy is at least this (the audit's rule)
FULL = 1.0 - 1e-9  # an edit took when every one of its rewrite prompts answers the new target


@dataclass
class Forgetting:
    lost: list[int] = field(default_factory=list)         # earlier steps held before this version, lost at it
    superseded: list[int] = field(default_factory=list)   # ... lost because this step re-edits the same fact


def by_version(values: Iterable[tuple[int, int, str, float]]) -> dict[int, dict[str, float]]:
    """[(version_id, step, against, value)] -> {version_id: {against: value}}."""
    out: dict[int, dict[str, float]] = {}
    for vid, _step, against, value in values:
        out.setdefault(vid, {})[against] = value
    return out


def preferred(refs: dict[str, float] | None) -> float | None:
    """The value standing for a metric at one version: the plain one, then vs base, then vs previous
    (``ledger.values``' rule)."""
    if not refs:
        return None
    return refs[min(refs, key=against_rank)]


def failed(efficacy: float | None) -> bool:
    return efficacy is not None and efficacy == efficacy and efficacy < FULL


def changes(metric: Metric, items: Sequence[Any], refs: dict[int, dict[str, float]],
            start_refs: dict[str, float] | None) -> dict[int, float]:
    """version id -> the metric's change against the version before (its parent), for the rows
    ``items`` (version_id, parent_id; parents before children). Stored comparisons first: the
    "previous" one, or the "base" one where the parent is the run's base version. Fixed suites
    fall back to plain values against the nearest measured ancestor."""
    out: dict[int, float] = {}
    start = items[0].version_id if items else None
    start_is_base = bool(items) and items[0].kind == "base"
    fixed = metric[0] in FIXED_SUITES
    plain: dict[int, float] = {}          # nearest plain value at or above each version
    if start is not None and start_refs and "none" in start_refs:
        plain[start] = start_refs["none"]
    for it in items[1:]:
        r = refs.get(it.version_id) or {}
        above = plain.get(it.parent_id) if it.parent_id is not None else None
        if "previous" in r:
            out[it.version_id] = r["previous"]
        elif start_is_base and it.parent_id == start and "base" in r and "none" in r:
            out[it.version_id] = r["base"]       # the parent is the base: "vs base" is "vs previous"
        elif fixed and "none" in r and above is not None:
            out[it.version_id] = r["none"] - above
        if "none" in r:
            plain[it.version_id] = r["none"]
        elif above is not None and fixed:
            plain[it.version_id] = above        # not measured here: the last measurement stands
    return out


def lost_steps(detail: Sequence[dict] | None, step: int, parent_detail: Sequence[dict] | None = None) -> list[int]:
    """Earlier steps held at the version before and lost at this one, from the retention probe's
    per-edit rows ({step, top1, top1_previous?, at_edit}). Without ``top1_previous`` the parent's
    rows (or, for an edit seen for the first time, its efficacy when made) say whether it was held."""
    if not detail:
        return []
    before = {int(r["step"]): float(r["top1"]) for r in parent_detail or () if "step" in r and "top1" in r}
    out = []
    for r in detail:
        j = int(r.get("step", step))
        if j >= step or "top1" not in r:
            continue
        if "top1_previous" in r and r["top1_previous"] is not None:
            was = float(r["top1_previous"])
        elif j in before:
            was = before[j]
        elif r.get("at_edit") is not None:
            was = float(r["at_edit"])
        else:
            continue
        if was >= HELD and float(r["top1"]) < HELD:
            out.append(j)
    return sorted(out)


def split_superseded(lost: list[int], step_facts: dict[int, set], here: set) -> Forgetting:
    """Steps whose fact this step edits again (the back half of a round edit, a later edit of the
    same subject and prompt) are superseded on purpose, not forgotten."""
    f = Forgetting()
    for j in lost:
        (f.superseded if step_facts.get(j, set()) & here else f.lost).append(j)
    return f
