"""CounterFact / MultiCounterFact, in ROME's format and in EasyEdit's (MEND) re-formatting.

ROME format: requested_rewrite {prompt, subject, target_new.str, target_true.str, relation_id},
paraphrase_prompts, neighborhood_prompts (other subjects with the same true object),
attribute_prompts, generation_prompts. attribute_prompts are *other subjects* whose true object is
the new target, not other attributes of the edited subject, so they are not Other Attribution (OA,
Yao et al.) and are not used (ROME's summarize.py does not use them either); OA comes from sources
that ask about the edited subject's other relations (KnowEdit's Relation_Specificity, the built-in
facts). generation_prompts: free generation, not used.
EasyEdit format: prompt (filled), subject, target_new, ground_truth, rephrase_prompt,
locality_prompt / locality_ground_truth.
"""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, distract, sp, template


def from_rome(d: dict) -> Record:
    rw = d["requested_rewrite"]
    new, old = sp(rw["target_new"]["str"]), sp(rw["target_true"]["str"])
    req = EditRequest(subject=rw["subject"], prompt=rw["prompt"].rstrip(), target_new=new, target_old=old,
                      relation=rw.get("relation_id"), case_id=str(d["case_id"]))
    meta = {"case_id": str(d["case_id"]), "relation": rw.get("relation_id")}
    probes = {
        "rewrite": [ProbeItem(req.text, new, alt=old, meta=meta)],
        "paraphrase": [ProbeItem(p, new, alt=old, meta=meta) for p in d.get("paraphrase_prompts", [])],
        "neighborhood": [ProbeItem(p, old, alt=new, meta=meta) for p in d.get("neighborhood_prompts", [])],
    }
    if probes["neighborhood"]:
        probes["distract"] = distract(req, probes["neighborhood"])
    return Record("counterfact", f"cf-{d['case_id']}", [req], [probes])


def from_easyedit(d: dict) -> Record | None:
    prompt = template(d["prompt"], d["subject"])
    if prompt is None:
        return None
    new, old = sp(d["target_new"]), sp(d["ground_truth"])
    cid = str(d.get("case_id", d["subject"]))
    req = EditRequest(subject=d["subject"], prompt=prompt, target_new=new, target_old=old, case_id=cid)
    meta = {"case_id": cid}
    probes = {"rewrite": [ProbeItem(req.text, new, alt=old, meta=meta)]}
    if d.get("rephrase_prompt"):
        probes["paraphrase"] = [ProbeItem(d["rephrase_prompt"], new, alt=old, meta=meta)]
    if d.get("locality_prompt") and d.get("locality_ground_truth"):
        probes["neighborhood"] = [ProbeItem(d["locality_prompt"], sp(d["locality_ground_truth"]), alt=new, meta=meta)]
        probes["distract"] = distract(req, probes["neighborhood"])
    return Record("counterfact", f"cf-{cid}", [req], [probes])
