"""MQuAKE (CF-3k, T, hard): requested_rewrite (list of single-hop edits), questions (three phrasings
of the multi-hop question), answer / answer_alias (before), new_answer / new_answer_alias (after),
new_single_hops (the chain's facts after the edits, as questions and cloze prompts), orig
(new_triples: the chain's (s, r, o) ids; edit_triples_idx: which hops are edited).

Prompting follows MQuAKE's README ("Evaluation") and its prompts/ folder (princeton-nlp/MQuAKE):

* edited facts: the cloze statement the edit used, no demonstrations (the ``rewrite`` probes, EW);
* multi-hop questions: ``prompts/multihop-prompts.txt`` (16 demonstrations) before
  "Q: {question} A:" (MH);
* unedited single hops: the relation's 8 demonstrations of ``prompts/rel-prompts.json`` before
  "Q: {question} A:"; edited hops: their cloze statement (IW).

Without the prompt files a case can still be read zero-shot on request: questions asked as
"Q: {question} A:" with no demonstrations, labelled ``prompting: zero-shot`` so that the probe runner
reports them as ``mh_zeroshot`` / ``iw_zeroshot``, never as MH / IW.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import InputError
from simulator.requests import EditRequest, ProbeItem
from simulator.streams.records import Record, sp

ZERO_SHOT = "zero-shot"
_MULTIHOP = "multihop-prompts.txt"
_REL = "rel-prompts.json"


@dataclass(frozen=True)
class Prompts:
    """MQuAKE's few-shot demonstrations; ``multihop`` empty means zero-shot (labelled)."""
    multihop: str = ""
    relations: dict[str, str] = field(default_factory=dict)
    source: str = ZERO_SHOT

    @property
    def zero_shot(self) -> bool:
        return not self.multihop


def find_prompts(benchmark: Path, given: str | Path | None) -> Prompts:
    """MQuAKE's prompts: from ``given`` (a folder holding multihop-prompts.txt and rel-prompts.json,
    or the word ``zero-shot``), else from next to the benchmark file (official_prompts/ or prompts/,
    as the MQuAKE repository lays them out)."""
    if given is not None and str(given) == ZERO_SHOT:
        return Prompts()
    if given is not None:
        places = [Path(given)]
    else:
        places = [benchmark.parent / "official_prompts", benchmark.parent / "prompts",
                  benchmark.parent.parent / "prompts", benchmark.parent]
    for d in places:
        if (d / _MULTIHOP).is_file():
            rel = json.loads((d / _REL).read_text("utf-8")) if (d / _REL).is_file() else {}
            return Prompts((d / _MULTIHOP).read_text("utf-8").strip(), dict(rel), str(d))
    where = str(given) if given is not None else f"next to {benchmark} (official_prompts/ or prompts/)"
    raise InputError(f"MQuAKE's multi-hop questions are asked with its few-shot prompts, and {_MULTIHOP} is not "
                     f"{'in ' if given is not None else ''}{where}. Put MQuAKE's prompts/ folder (princeton-nlp/MQuAKE) "
                     f"there, pass --mquake-prompts DIR, or --mquake-prompts {ZERO_SHOT} to ask the questions "
                     f"without demonstrations (reported as mh_zeroshot, not MH)")


def _question(demos: str, q: str) -> str:
    return f"{demos}\nQ: {q} A:" if demos else f"Q: {q} A:"


def from_case(d: dict, prompts: Prompts) -> Record | None:
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
    how = ZERO_SHOT if prompts.zero_shot else "few-shot"
    chain = [ProbeItem(_question(prompts.multihop, q), new_ans, alt=old_ans, answers=aliases,
                       meta={"case_id": cid, "kind": "question", "q": i, "prompting": how})
             for i, q in enumerate(d.get("questions", []))]
    # the chain's single hops after the edits (Instance-wise accuracy needs every one of them)
    orig = d.get("orig") or {}
    edited = set(orig.get("edit_triples_idx", []))
    triples = orig.get("new_triples", [])
    for i, h in enumerate(d.get("new_single_hops", [])):
        if not str(h.get("answer", "")).strip():
            continue
        rel = triples[i][1] if i < len(triples) else None
        if i in edited and h.get("cloze"):
            prompt, hop_how = h["cloze"], "cloze"          # an edited fact: its cloze statement
        elif h.get("question") and rel in prompts.relations:
            prompt, hop_how = _question(prompts.relations[rel], h["question"]), "few-shot"
        elif h.get("question"):
            prompt, hop_how = _question("", h["question"]), ZERO_SHOT
        else:
            continue
        chain.append(ProbeItem(prompt, sp(h["answer"]),
                               answers=tuple(sp(a) for a in h.get("answer_alias", []) if str(a).strip()),
                               meta={"case_id": cid, "kind": "hop", "hop": i, "prompting": hop_how}))
    probes[-1]["multihop"] = chain  # scored once the whole case is applied
    return Record("mquake", cid, requests, probes, native="multihop")
