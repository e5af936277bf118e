"""ConflictEdit (Li et al., 2024): reverse, composite and coverage edit pairs.

Every case has ``edits`` (two edits of {relation {id, prompt}, subject, object, new_object}) and
``triples`` (the facts involved; ``prerequisites`` index the tied fact of a composite case).

    reverse    edit 1 (s1, r1, o1 -> o2), edit 2 (o2, r2, s1 -> s2)
               k_o = (s1, r1, o2), k_n = (s2, r1, o2)
    composite  edit 1 (s2, r2, o -> o2), edit 2 (s1, r1, o -> o3), tied fact (s1, r, s2), rule r & r2 -> r1
               k_o = (s1, r1, o2) (implied by edit 1 through the rule), k_n = (s1, r1, o3)
    coverage   edit 1 (s, r, o -> o1), edit 2 (s, r, o1 -> o2); k_o = (s, r, o1), k_n = (s, r, o2)

The ``conflict`` suite holds one item per prompt template: target = the object of k_n, alt = the
object of k_o, on one prompt (a reverse pair is read through the reverse relation r2 on o2:
p(s2 | r2(o2)) against p(s1 | r2(o2))). It and ``tied_fact`` sit on the pair's second step; the
probe runner scores a group's items after each of its steps (the first gives the intermediate model
of the Conflict Magnitude). Extra templates per relation come from conflict_prompts.json when it
lies next to the file.
"""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp


def _prompts(rel: dict, extra: dict[str, list[str]]) -> list[str]:
    out = [rel["prompt"].rstrip()]
    for t in extra.get(rel["id"], []):
        t = t.rstrip()
        if t.count("{}") == 1 and t not in out:
            out.append(t)
    return out


def _req(e: dict, cid: str) -> EditRequest:
    return EditRequest(subject=e["subject"]["label"], prompt=e["relation"]["prompt"].rstrip(),
                       target_new=sp(e["new_object"]["label"]), target_old=sp(e["object"]["label"]),
                       relation=e["relation"]["id"], case_id=cid)


def from_case(d: dict, index: int, extra_prompts: dict[str, list[str]]) -> Record | None:
    kind = d.get("type")
    e0, e1 = d["edits"][0], d["edits"][1]
    cid = f"conflictedit-{kind}-{index}"
    r0, r1 = _req(e0, cid), _req(e1, cid)
    meta = {"case_id": cid, "type": kind, "rule": d.get("rule")}
    conflict: list[ProbeItem] = []
    tied: list[ProbeItem] = []

    def items(rel: dict, subject: str, new: str, old: str) -> list[ProbeItem]:
        return [ProbeItem(t.replace("{}", subject), sp(new), alt=sp(old), meta=meta) for t in _prompts(rel, extra_prompts)]
    if kind == "reverse":      # (o2, r2, s1) is k_o read backwards, (o2, r2, s2) is k_n
        conflict = items(e1["relation"], e1["subject"]["label"], e1["new_object"]["label"], e0["subject"]["label"])
        native = "reverse_conflict"
    elif kind == "composite":  # (s1, r1, o2) implied by edit 1 through the rule, (s1, r1, o3) edited
        conflict = items(e1["relation"], e1["subject"]["label"], e1["new_object"]["label"], e0["new_object"]["label"])
        for k in d.get("prerequisites", []):
            tf = d["triples"][k]
            tied += [ProbeItem(t.replace("{}", tf["subject"]["label"]), sp(tf["object"]["label"]), meta=meta)
                     for t in _prompts(tf["relation"], extra_prompts)]
        native = "composite_conflict"
    elif kind == "coverage":   # the same (s, r) edited twice: o1 then o2
        conflict = items(e0["relation"], e0["subject"]["label"], e1["new_object"]["label"], e0["new_object"]["label"])
        native = "coverage_conflict"
    else:
        return None
    probes = [{"rewrite": [ProbeItem(r.text, r.target_new, alt=r.target_old, meta={**meta, "edit": i})]}
              for i, r in enumerate((r0, r1))]
    probes[1]["conflict"] = conflict
    if tied:
        probes[1]["tied_fact"] = tied
    return Record("conflictedit", cid, [r0, r1], probes, native=native)
