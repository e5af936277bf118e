"""Streams on the built-in facts (simulator/facts): records, synthesized cases, the demo stream.

Only facts that passed scripts/check_facts.py on the base model are used. Conflict and multi-hop
cases are built from the facts' relations; conflict probes follow Li et al.'s
evaluate_conflictedit.py: k_o is the first edit's own fact and k_n the second edit's, each read
through its own edit prompt and the relation's paraphrases (the dataset's conflict templates):

    reverse conflict    (France, capital, Paris -> Berlin), then (Berlin, capital-of, France -> Spain)
                        k_o = "The capital of France is the city of" -> Berlin (+ paraphrases)
                        k_n = "Berlin is the capital of" -> Spain (+ reverse paraphrases)
    composite conflict  tied fact (Eiffel Tower, in city, Paris); rule: in city C & C in country K
                        -> in country K. Edit 1 (Paris, in country, France -> K2), edit 2
                        (Eiffel Tower, in country, France -> K3); k_o = Paris in K2, k_n = Eiffel
                        Tower in K3, k_f = the tied fact (Tied Fact Damage)
    multi-hop           (Eiffel Tower, in city, Paris -> C2) [, (C2, in country, K -> K3)], asked
                        "The Eiffel Tower is located in the country of" -> K3 (or C2's country);
                        a cloze, so its accuracy is labelled zero-shot (mh_zeroshot)
"""
from __future__ import annotations

import random
from dataclasses import replace

from simulator.facts import Fact, FactSet, load_check, load_facts, passing
from simulator.requests import EditRequest, ProbeItem, Step
from simulator.streams.format import MIXED, Stream
from simulator.streams.probesets import drop_edited, round_items, swap
from simulator.streams.records import Probes, Record, distract, sp


def _facts(ids: list[str] | None) -> list[Fact]:
    ok = passing()
    if ids is None:
        return ok
    want = set(ids)
    return [f for f in ok if f.id in want]


def _probes(fs: FactSet, f: Fact, new: str, pool: list[Fact]) -> Probes:
    """The fact set's probes of the edit f -> new, plus its Distract-Neighbor items."""
    p = fs.probes(f, new, pool=pool)
    if p.get("neighborhood"):
        p["distract"] = distract(f.request(new), p["neighborhood"], k=2)
    return p


def builtin_records(seed: int = 0, ids: list[str] | None = None) -> list[Record]:
    """One record per passing fact, its new target drawn (seeded) among same-type objects."""
    fs, rng = load_facts(), random.Random(seed)
    out = []
    for f in _facts(ids):
        new = fs.new_target(f, rng)
        out.append(Record("builtin", f.id, [f.request(new)], [_probes(fs, f, new, passing())]))
    return out


def _fact_items(templates, subject: str, obj: str, role: str, meta: dict) -> list[ProbeItem]:
    """One conflict item per template: the fact (subject, relation, obj) in the role k_o / k_n / k_f."""
    return [ProbeItem(t.format(subject), sp(obj), meta={**meta, "fact": role}) for t in templates]


def _reverse_case(fs: FactSet, f: Fact, rng: random.Random, facts: list[Fact],
                  o2: str | None = None, s2_fact: Fact | None = None) -> Record | None:
    rel = f.relation
    others = [g for g in facts if g.relation == rel and g.subject != f.subject]
    if not rel.reverse or not others:
        return None
    o2 = o2 or fs.new_target(f, rng)
    s2_fact = s2_fact or rng.choice([g for g in others if g.target != o2] or others)
    s2 = s2_fact.subject
    cid = f"reverse-{f.id}"
    meta = {"case_id": cid, "type": "reverse"}
    r1 = f.request(o2)
    r2 = EditRequest(subject=o2, prompt=rel.reverse, target_new=sp(s2), target_old=sp(f.subject),
                     relation=rel.id + "-reverse", case_id=cid)
    # k_o = the first edit's fact, k_n = the second's, each through its own prompts
    conflict = (_fact_items([rel.prompt, *rel.paraphrases], f.subject, o2, "k_o", meta)
                + _fact_items([rel.reverse, *rel.reverse_paraphrases], o2, s2, "k_n", meta))
    p1 = _probes(fs, f, o2, facts)
    p2 = {"rewrite": [ProbeItem(r2.text, r2.target_new, alt=r2.target_old, meta=meta)],
          "paraphrase": [ProbeItem(t.format(o2), r2.target_new, alt=r2.target_old, meta=meta)
                         for t in rel.reverse_paraphrases],
          # other objects of the relation still answer their own subject
          "neighborhood": [ProbeItem(rel.reverse.format(g.target), sp(g.subject), alt=sp(s2), meta=meta)
                           for g in others if g.target != o2 and g.subject != s2][:5],
          # the reversed relation of the second edit: the capital of s2 is now o2
          "portability_rr": [ProbeItem(rel.prompt.format(s2), sp(o2), alt=sp(s2_fact.target), meta=meta)],
          "conflict": conflict}  # on the pair's last step: the runner scores it after each step of the pair
    return Record("builtin", cid, [r1, r2], [p1, p2], native="reverse_conflict")


def _composite_case(fs: FactSet, f: Fact, rng: random.Random) -> Record | None:
    rel = f.relation
    city_rel = next((r for r in fs.relations.values() if r.subject_type == "city" and r.object_type == "country"), None)
    if not rel.one_hop or rel.via != "country" or city_rel is None:
        return None
    k = fs.prop("city", f.target, "country")
    countries = [c for c in fs.objects["country"] if c != k]
    k2, k3 = rng.sample(countries, 2)
    cid = f"composite-{f.id}"
    meta = {"case_id": cid, "type": "composite", "rule": f"{rel.id}&{city_rel.id}>{city_rel.id}"}
    r1 = EditRequest(subject=f.target, prompt=city_rel.prompt, target_new=sp(k2), target_old=sp(k),
                     relation=city_rel.id, case_id=cid)
    r2 = EditRequest(subject=f.subject, prompt=rel.one_hop, target_new=sp(k3), target_old=sp(k),
                     relation=city_rel.id, case_id=cid)
    conflict = (_fact_items([city_rel.prompt, *city_rel.paraphrases], f.target, k2, "k_o", meta)
                + _fact_items([rel.one_hop], f.subject, k3, "k_n", meta))
    tied = _fact_items([rel.prompt, *rel.paraphrases], f.subject, f.target, "k_f", meta)
    probes = [{"rewrite": [ProbeItem(r.text, r.target_new, alt=r.target_old, meta={**meta, "edit": i})]}
              for i, r in enumerate((r1, r2))]
    probes[1].update(conflict=conflict, tied_fact=tied)
    return Record("builtin", cid, [r1, r2], probes, native="composite_conflict")


def _multihop_case(fs: FactSet, f: Fact, rng: random.Random, facts: list[Fact]) -> Record | None:
    rel = f.relation
    if not rel.one_hop or rel.via != "country":
        return None
    cities = {g.subject: g for g in facts if g.relation.subject_type == "city" and g.relation.object_type == "country"}
    cands = fs.candidates(f)
    with_fact = [c for c in cands if c in cities]
    c2 = rng.choice(with_fact or cands)
    cid = f"multihop-{f.id}"
    requests = [f.request(c2)]
    probes = [_probes(fs, f, c2, facts)]
    answer, old = fs.prop("city", c2, "country"), fs.prop("city", f.target, "country")
    hops = [ProbeItem(f.text, sp(c2), meta={"case_id": cid, "kind": "hop", "hop": 0, "prompting": "cloze"})]
    if c2 in cities:
        g = cities[c2]
        k3 = fs.new_target(g, rng, avoid=(old,))
        requests.append(g.request(k3))
        probes.append(_probes(fs, g, k3, facts))
        answer = k3
        hops.append(ProbeItem(g.text, sp(k3), meta={"case_id": cid, "kind": "hop", "hop": 1, "prompting": "cloze"}))
    question = ProbeItem(rel.one_hop.format(f.subject), sp(answer), alt=sp(old),
                         meta={"case_id": cid, "kind": "question", "q": 0, "prompting": "zero-shot"})
    probes[-1] = {**probes[-1], "multihop": [question, *hops]}
    requests = [replace(r, case_id=cid) for r in requests]  # the case groups its edits
    return Record("builtin", cid, requests, probes, native="multihop")


def synthesize(kind: str, ids: list[str] | None, seed: int) -> list[Record]:
    """Cases of a conflict / multi-hop kind built from the passing facts (restricted to `ids`)."""
    fs, rng, facts = load_facts(), random.Random(seed), _facts(ids)
    out = []
    for f in facts:
        if kind == "reverse_conflict":
            r = _reverse_case(fs, f, rng, facts)
        elif kind == "composite_conflict":
            r = _composite_case(fs, f, rng)
        elif kind == "multihop":
            r = _multihop_case(fs, f, rng, facts)
        else:
            raise ValueError(f"no built-in synthesis for kind {kind!r}")
        if r is not None:
            out.append(r)
    return out


def _clean(f: Fact, check: dict) -> bool:
    """Passed, and the base model also answers the fact's reverse and one-hop questions."""
    r = check["facts"][f.id]
    return r["pass"] and all(r[k]["ok"] for k in ("reverse", "one_hop") if k in r)


def demo_stream() -> list[Step]:
    """The built-in mixed demo: 12 single-request steps on passing facts, deterministic.

    Steps 1-4 sequential edits, 5-6 a round edit (forward, back), 7-8 a reverse conflict,
    9-12 sequential edits. Every step carries rewrite, paraphrase, neighborhood and portability
    probes, plus round / conflict where they apply. No two steps touch the same entity (subject or
    object) except inside the round pair and the conflict pair, so that each step's probes measure
    that step's edit and not an earlier one.
    """
    fs, rng, check = load_facts(), random.Random(0), load_check()
    facts = passing()
    order = [f for f in facts if _clean(f, check)] + [f for f in facts if not _clean(f, check)]
    used: set[str] = set()

    def free(*names: str) -> bool:
        return not used.intersection(names)

    def pick(want) -> tuple[Fact, str]:
        for f in order:
            if want(f) and free(f.subject, f.target):
                news = [o for o in fs.candidates(f) if free(o)]
                if news:
                    new = rng.choice(news)
                    used.update((f.subject, f.target, new))
                    return f, new
        raise AssertionError("not enough passing facts for the demo: run scripts/check_facts.py")

    # the reverse conflict first (it touches four entities), then the round trip, then the rest
    rev, o2 = pick(lambda f: f.relation.reverse is not None)
    s2_fact = next(g for g in order if g.relation == rev.relation and free(g.subject, g.target))
    used.update((s2_fact.subject, s2_fact.target))
    holder = fs.holder_of(rev.relation, o2)
    if holder:
        used.add(holder.subject)
    rnd, rnd_new = pick(lambda f: f.relation.one_hop is not None)
    rng.shuffle(order)
    seq = [pick(lambda f: True) for _ in range(8)]

    def single(f: Fact, new: str) -> Step:
        return Step(requests=[f.request(new)], kind="sequential", probes=_probes(fs, f, new, facts))

    steps = [single(f, new) for f, new in seq[:4]]
    fwd, probes = rnd.request(rnd_new), _probes(fs, rnd, rnd_new, facts)
    others = [c for c in fs.candidates(rnd) if c != rnd_new]
    objects = (fwd.target_old,) + tuple(sp(o) for o in rng.sample(others, min(3, len(others))))
    round_prompts = tuple(t.format(rnd.subject) for t in rnd.relation.paraphrases)
    steps.append(Step(requests=[fwd], kind="round", group=f"round-{rnd.id}", role="forward", probes=probes))
    steps.append(Step(requests=[replace(fwd, target_new=fwd.target_old, target_old=fwd.target_new)], kind="round",
                      group=f"round-{rnd.id}", role="back",
                      probes={**swap(probes), "round": round_items(fwd, objects, round_prompts)}))
    case = _reverse_case(fs, rev, rng, facts, o2=o2, s2_fact=s2_fact)
    steps += [Step(requests=[r], kind="reverse_conflict", group=case.case_id, role=role, probes=dict(p))
              for r, p, role in zip(case.requests, case.probes, ("first", "second"))]
    steps += [single(f, new) for f, new in seq[4:]]
    drop_edited(steps)
    return steps


def demo() -> Stream:
    """demo_stream() as a Stream named "demo" (kind "mixed")."""
    return Stream(name="demo", kind=MIXED, steps=demo_stream(), meta={"source": "builtin"})
