"""ConflictEdit (Li et al., 2024): reverse, composite and coverage edit pairs.

Every case has ``edits`` (two edits of {relation {id, prompt}, subject, object, new_object}) and
``triples`` (the facts involved; ``prerequisites`` index the tied fact of a composite case).

The ``conflict`` suite follows the reference code (zjunlp/PitfallsKnowledgeEditing,
experiments/evaluate_conflictedit.py, run as published, i.e. with ``explicit`` true): every fact is
read through its own edit prompt and the dataset's conflict templates of its relation
(conflict_prompts.json next to the file), one item per prompt, target = the fact's object.

    k_o  the first edit's fact (s, r, o -> o_new): items with meta fact="k_o"
    k_n  the second edit's fact, through the second edit's prompt: meta fact="k_n"
    k_f  composite only, the tied fact triples[prerequisites[0]]: the ``tied_fact`` suite

Both suites sit on the pair's second step; the probe runner scores them on the base, after the
first step (the intermediate model theta_m of Conflict Magnitude) and after the second (theta').
Templates are kept as the dataset lists them (duplicates included): the reference averages over
that list.
"""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp


def _prompts(rel: dict, extra: dict[str, list[str]]) -> list[str]:
    """The edit prompt, then the relation's conflict templates (well-formed ones, in file order)."""
    return [rel["prompt"].rstrip()] + [t.rstrip() for t in extra.get(rel["id"], []) if t.count("{}") == 1]


def _req(e: dict, cid: str) -> EditRequest:
    return EditRequest(subject=e["subject"]["label"], prompt=e["relation"]["prompt"].rstrip(),
                       target_new=sp(e["new_object"]["label"]), target_old=sp(e["object"]["label"]),
                       relation=e["relation"]["id"], case_id=cid)


def _fact(rel: dict, subject: str, obj: str, role: str, meta: dict, extra) -> list[ProbeItem]:
    return [ProbeItem(t.replace("{}", subject), sp(obj), meta={**meta, "fact": role, "template": i})
            for i, t in enumerate(_prompts(rel, extra))]


def from_case(d: dict, index: int, extra_prompts: dict[str, list[str]]) -> Record | None:
    kind = d.get("type")
    if kind not in ("reverse", "composite", "coverage"):
        return None
    e0, e1 = d["edits"][0], d["edits"][1]
    cid = f"conflictedit-{kind}-{index}"
    r0, r1 = _req(e0, cid), _req(e1, cid)
    meta = {"case_id": cid, "type": kind, "rule": d.get("rule")}
    conflict = (_fact(e0["relation"], e0["subject"]["label"], e0["new_object"]["label"], "k_o", meta, extra_prompts)
                + _fact(e1["relation"], e1["subject"]["label"], e1["new_object"]["label"], "k_n", meta, extra_prompts))
    tied: list[ProbeItem] = []
    if kind == "composite":
        for k in d.get("prerequisites", [])[:1]:
            tf = d["triples"][k]
            tied = _fact(tf["relation"], tf["subject"]["label"], tf["object"]["label"], "k_f", meta, extra_prompts)
    probes = [{"rewrite": [ProbeItem(r.text, r.target_new, alt=r.target_old, meta={**meta, "edit": i})]}
              for i, r in enumerate((r0, r1))]
    probes[1]["conflict"] = conflict
    if tied:
        probes[1]["tied_fact"] = tied
    return Record("conflictedit", cid, [r0, r1], probes, native=f"{kind}_conflict")
