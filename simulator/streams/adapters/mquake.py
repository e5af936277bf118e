"""MQuAKE (CF-3k, T, hard): requested_rewrite (list of single-hop edits), questions (three phrasings
of the multi-hop question), answer / answer_alias (before), new_answer / new_answer_alias (after),
new_single_hops (the chain's facts after the edits, as cloze prompts)."""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp


def from_case(d: dict) -> Record | None:
    cid = f"mquake-{d['case_id']}"
    requests, probes = [], []
    for i, rw in enumerate(d["requested_rewrite"]):
        new, old = sp(rw["target_new"]["str"]), sp(rw["target_true"]["str"])
        req = EditRequest(subject=rw["subject"], prompt=rw["prompt"].rstrip(), target_new=new, target_old=old,
                          relation=rw.get("relation_id"), case_id=cid)
        meta = {"case_id": cid, "edit": i}
        p = {"rewrite": [ProbeItem(req.text, new, alt=old, meta=meta)]}
        if rw.get("question"):
            p["paraphrase"] = [ProbeItem(rw["question"], new, alt=old, meta=meta)]
        requests.append(req)
        probes.append(p)
    if not requests or not str(d.get("new_answer", "")).strip():
        return None
    new_ans, old_ans = sp(d["new_answer"]), sp(d.get("answer"))
    aliases = tuple(sp(a) for a in d.get("new_answer_alias", []) if str(a).strip())
    chain = [ProbeItem(q, new_ans, alt=old_ans, answers=aliases, meta={"case_id": cid, "kind": "question", "q": i})
             for i, q in enumerate(d.get("questions", []))]
    # the chain's single hops after the edits (Instance-wise accuracy needs every one of them)
    for i, h in enumerate(d.get("new_single_hops", [])):
        if h.get("cloze") and str(h.get("answer", "")).strip():
            chain.append(ProbeItem(h["cloze"], sp(h["answer"]),
                                   answers=tuple(sp(a) for a in h.get("answer_alias", []) if str(a).strip()),
                                   meta={"case_id": cid, "kind": "hop", "hop": i}))
    probes[-1]["multihop"] = chain  # scored once the whole case is applied
    return Record("mquake", cid, requests, probes, native="multihop")
