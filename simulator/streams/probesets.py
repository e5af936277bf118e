"""Probe sets as steps need them: the back edit of a round trip, the round edit's object-set items,
and locality items that an earlier edit of the stream has made meaningless.

Shared by ``make_stream`` (benchmark records) and the built-in demo stream (``builtin.py``).
"""
from __future__ import annotations

from dataclasses import replace

from simulator.requests import EditRequest, ProbeItem, Step
from simulator.streams.records import Probes

# suites whose target follows the edit: a back edit swaps their target and alt
FOLLOW_EDIT = ("rewrite", "paraphrase", "portability_sr", "portability_rr", "portability_oh")
# suites of facts that must not move: an item about a fact edited earlier in the stream is dropped
LOCALITY = ("neighborhood", "attribute", "distract")


def swap(probes: Probes) -> Probes:
    """The probes of a round trip's back edit (distract items are dropped: they quote the forward edit)."""
    out = {}
    for suite, items in probes.items():
        if suite == "distract":
            continue
        if suite in FOLLOW_EDIT:
            items = [replace(p, target=p.alt, alt=p.target) if p.alt else p for p in items]
        out[suite] = list(items)
    return out


def round_items(req: EditRequest, objects: tuple[str, ...], prompts: tuple[str, ...] = ()) -> list[ProbeItem]:
    """RoundEdit's probes of the round trip o1 -> o* -> o1 (Li et al.'s evaluate_roundedit.py): one
    item per prompt (the edit prompt, then the dataset's round templates of the relation, filled), each
    with target o1, alt o* and the object set Obj as choices (o1 at ``label``). They ride on the back
    step; the probe runner scores them after the forward edit (theta_m) and after the back edit
    (theta'), and on the base (theta)."""
    o1, o_star = req.target_old, req.target_new
    objects = tuple(objects)
    if o1 not in objects:
        objects = (o1,) + objects
    meta = {"o1": o1, "o_star": o_star, "relation": req.relation}
    return [ProbeItem(p, o1, alt=o_star, choices=objects, label=objects.index(o1), meta={**meta, "template": i})
            for i, p in enumerate((req.text,) + tuple(prompts))]


def drop_edited(steps: list[Step]) -> None:
    """Drop locality items that probe a fact edited at or before their step: it is meant to move."""
    edited: set[str] = set()
    for st in steps:
        edited.update(r.text for r in st.requests)
        for suite in LOCALITY:
            if suite in st.probes:
                st.probes[suite] = [p for p in st.probes[suite]
                                    if p.prompt not in edited and p.meta.get("neighbor") not in edited]
                if not st.probes[suite]:
                    del st.probes[suite]
