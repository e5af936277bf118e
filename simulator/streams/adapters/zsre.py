"""ZsRE in MEND's format (src, subject, alt = the new answer, answers = the true ones, rephrase,
loc / loc_ans), optionally with EasyEdit's one-hop portability field
(portability: {"New Question", "New Answer"})."""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp, template


def from_mend(d: dict, index: int) -> Record | None:
    prompt = template(d["src"], d["subject"])
    if prompt is None or not str(d.get("alt", "")).strip():
        return None
    new = sp(d["alt"])
    answers = [a for a in d.get("answers", []) if str(a).strip()]
    old = sp(answers[0]) if answers else None
    cid = f"zsre-{index}"
    req = EditRequest(subject=d["subject"], prompt=prompt, target_new=new, target_old=old, case_id=cid)
    meta = {"case_id": cid}
    probes = {"rewrite": [ProbeItem(req.text, new, alt=old, meta=meta)]}
    if d.get("rephrase"):
        probes["paraphrase"] = [ProbeItem(d["rephrase"], new, alt=old, meta=meta)]
    if d.get("loc") and str(d.get("loc_ans", "")).strip():
        probes["neighborhood"] = [ProbeItem(d["loc"], sp(d["loc_ans"]), alt=new, meta=meta)]
    port = d.get("portability") or {}
    if port.get("New Question") and str(port.get("New Answer", "")).strip():
        probes["portability_oh"] = [ProbeItem(port["New Question"], sp(port["New Answer"]),
                                              meta={**meta, "recalled": port.get("Recalled Relation")})]
    return Record("zsre", cid, [req], [probes])
