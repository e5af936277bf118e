"""KnowEdit's WikiData-Counterfact portability set (RippleEdits-derived): prompt (filled), subject,
target_new, ground_truth, rephrase, portability {Subject_Aliasing, Reasoning, Logical_Generalization},
locality {Relation_Specificity, Forgetfulness}. Ground truths are lists of alias lists."""
from __future__ import annotations

from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp, template


def _answers(gt) -> list[str]:
    """Flatten KnowEdit's ground truth (a string, a list, or a list of alias lists) to strings."""
    if isinstance(gt, str):
        return [gt]
    out = []
    for g in gt or []:
        out.extend(_answers(g))
    return [a for a in out if str(a).strip()]


def _items(entries, meta, alt=None) -> list[ProbeItem]:
    items = []
    for e in entries or []:
        ans = _answers(e.get("ground_truth"))
        if e.get("prompt") and ans:
            items.append(ProbeItem(e["prompt"], sp(ans[0]), alt=alt, answers=tuple(sp(a) for a in ans[1:]), meta=meta))
    return items


def from_wiki_counterfact(d: dict, index: int) -> Record | None:
    prompt = template(d["prompt"], d["subject"])
    if prompt is None or not str(d.get("target_new", "")).strip():
        return None
    new, old = sp(d["target_new"]), sp(d.get("ground_truth"))
    cid = f"knowedit-{index}"
    req = EditRequest(subject=d["subject"], prompt=prompt, target_new=new, target_old=old, case_id=cid)
    meta = {"case_id": cid}
    probes = {"rewrite": [ProbeItem(req.text, new, alt=old, meta=meta)]}
    if d.get("rephrase"):
        probes["paraphrase"] = [ProbeItem(d["rephrase"], new, alt=old, meta=meta)]
    port, loc = d.get("portability") or {}, d.get("locality") or {}
    for suite, key in (("portability_sr", "Subject_Aliasing"), ("portability_oh", "Reasoning"),
                       ("portability_rr", "Logical_Generalization")):
        items = _items(port.get(key), {**meta, "source": key})
        if items:
            probes[suite] = items
    # same subject, other relations: Other Attribution
    attr = _items(loc.get("Relation_Specificity"), {**meta, "source": "Relation_Specificity"})
    if attr:
        probes["attribute"] = attr
    return Record("knowedit", cid, [req], [probes])
