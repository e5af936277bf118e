"""RoundEdit (Li et al., 2024), easy and hard: edit {relation, subject, object, new_object} and
true_objects, the object set Obj of (s, r) that Distortion / Ignore Rate are computed over.

The round templates per relation come from round_prompts.json when it lies next to the file: the
reference (zjunlp/PitfallsKnowledgeEditing, experiments/py/eval_utils_roundedit.py) averages every
probability over the edit prompt and these templates, so they become the record's ``round_prompts``
(the round items of the back step) and also its paraphrase probes."""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp


def from_case(d: dict, index: int, extra_prompts: dict[str, list[str]]) -> Record | None:
    e = d["edit"]
    cid = f"roundedit-{index}"
    req = EditRequest(subject=e["subject"]["label"], prompt=e["relation"]["prompt"].rstrip(),
                      target_new=sp(e["new_object"]["label"]), target_old=sp(e["object"]["label"]),
                      relation=e["relation"]["id"], case_id=cid)
    meta = {"case_id": cid, "type": d.get("type")}
    probes = {"rewrite": [ProbeItem(req.text, req.target_new, alt=req.target_old, meta=meta)]}
    templates = [t.rstrip() for t in extra_prompts.get(req.relation, []) if t.count("{}") == 1]
    filled = tuple(t.replace("{}", req.subject) for t in templates)
    if filled:
        probes["paraphrase"] = [ProbeItem(p, req.target_new, alt=req.target_old, meta=meta) for p in dict.fromkeys(filled)]
    objects = tuple(dict.fromkeys(sp(o["label"]) for o in d.get("true_objects", [])))
    if req.target_old not in objects:
        objects = (req.target_old,) + objects
    return Record("roundedit", cid, [req], [probes], native="round", objects=objects, round_prompts=filled)
