"""ConflictEdit (Li et al., 2024): reverse, composite and coverage edit pairs.

Every case has ``edits`` (two edits of {relation {id, prompt}, subject, object, new_object}) and
``triples`` (the facts involved; ``prerequisites`` index the tied fact of a composite case).

    reverse    edit 1 (s1, r1, o1 -> o2), edit 2 (o2, r2, s1 -> s2)
               k_o = (s1, r1, o2), k_n = (s2, r1, o2)
    composite  edit 1 (s2, r2, o -> o2), edit 2 (s1, r1, o -> o3), tied fact (s1, r, s2), rule r & r2 -> r1
               k_o = (s1, r1, o2) (implied by edit 1 through the rule), k_n = (s1, r1, o3)
    coverage   edit 1 (s, r, o -> o1), edit 2 (s, r, o1 -> o2); k_o = (s, r, o1), k_n = (s, r, o2)

The ``conflict`` suite carries both facts as items (meta "fact": "k_o" / "k_n"), on both steps: the
Conflict Magnitude needs p(k_o) after edit 1 and after edit 2. Extra prompt templates per relation
come from conflict_prompts.json when it lies next to the file.
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
    if kind == "reverse":
        rel, s1, s2, o2 = e0["relation"], e0["subject"]["label"], e1["new_object"]["label"], e0["new_object"]["label"]
        for t in _prompts(rel, extra_prompts):
            conflict.append(ProbeItem(t.replace("{}", s1), sp(o2), meta={**meta, "fact": "k_o"}))
            conflict.append(ProbeItem(t.replace("{}", s2), sp(o2), meta={**meta, "fact": "k_n"}))
        native = "reverse_conflict"
    elif kind == "composite":
        rel, s1 = e1["relation"], e1["subject"]["label"]
        o2, o3 = sp(e0["new_object"]["label"]), sp(e1["new_object"]["label"])
        for t in _prompts(rel, extra_prompts):
            conflict.append(ProbeItem(t.replace("{}", s1), o2, alt=o3, meta={**meta, "fact": "k_o"}))
            conflict.append(ProbeItem(t.replace("{}", s1), o3, alt=o2, meta={**meta, "fact": "k_n"}))
        for k in d.get("prerequisites", []):
            tf = d["triples"][k]
            for t in _prompts(tf["relation"], extra_prompts):
                tied.append(ProbeItem(t.replace("{}", tf["subject"]["label"]), sp(tf["object"]["label"]),
                                      meta={**meta, "fact": "k_f"}))
        native = "composite_conflict"
    elif kind == "coverage":
        rel, s = e0["relation"], e0["subject"]["label"]
        o1, o2 = sp(e0["new_object"]["label"]), sp(e1["new_object"]["label"])
        for t in _prompts(rel, extra_prompts):
            conflict.append(ProbeItem(t.replace("{}", s), o1, alt=o2, meta={**meta, "fact": "k_o"}))
            conflict.append(ProbeItem(t.replace("{}", s), o2, alt=o1, meta={**meta, "fact": "k_n"}))
        native = "coverage_conflict"
    else:
        return None
    probes = []
    for i, r in enumerate((r0, r1)):
        p = {"rewrite": [ProbeItem(r.text, r.target_new, alt=r.target_old, meta={**meta, "edit": i})],
             "conflict": list(conflict)}
        if tied:
            p["tied_fact"] = list(tied)
        probes.append(p)
    return Record("conflictedit", cid, [r0, r1], probes, native=native)
