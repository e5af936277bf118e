"""The built-in fact set: facts the embedded model (Gemma 3 270M) gets right, with their probes.

``facts.json`` holds relations (prompt template, paraphrase templates, optional reverse template and
one-hop template), typed objects with properties (a city's country, a country's continent) and the
facts themselves. The probes of an edit are derived here, so that they follow the new target:
editing "The Eiffel Tower is located in the city of Paris" to " Rome" makes the one-hop probe
"The Eiffel Tower is located in the country of" expect " Italy".

``check.json`` is written by ``scripts/check_facts.py`` against the base model; ``passing()``
returns only the facts whose greedy continuation starts with the true target there.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from simulator.requests import EditRequest, ProbeItem

N_NEIGHBORS = 5  # neighbourhood prompts per fact (other subjects, same relation)


@dataclass(frozen=True)
class Relation:
    name: str                        # key in facts.json, e.g. "capital"
    id: str                          # Wikidata property id, e.g. "P36"
    subject_type: str                # type of the subject ("country")
    object_type: str                 # type of the object ("city"): new targets are drawn from it
    prompt: str                      # template with {} for the subject
    paraphrases: tuple[str, ...]     # paraphrase templates
    reverse: str | None = None       # template with {} for the object, answered by the subject
    reverse_paraphrases: tuple[str, ...] = ()  # paraphrases of the reverse template
    one_hop: str | None = None       # template with {} for the subject, answered by a property of the object
    via: str | None = None           # that property ("country")


@dataclass(frozen=True)
class Fact:
    id: str                          # stable id, e.g. "capital-france"
    relation: Relation
    subject: str                     # "France"
    target: str                      # the true object, no leading space: "Paris"
    aliases: tuple[str, ...] = ()    # other names of the subject (portability_sr)

    @property
    def text(self) -> str:
        return self.relation.prompt.format(self.subject)

    def request(self, new: str) -> EditRequest:
        return EditRequest(subject=self.subject, prompt=self.relation.prompt,
                           target_new=" " + new, target_old=" " + self.target,
                           relation=self.relation.id, case_id=self.id)


class FactSet:
    def __init__(self, data: dict[str, Any]):
        assert data.get("version") == 1, "facts.json: unsupported version"
        self.relations = {}
        for name, r in data["relations"].items():
            oh = r.get("one_hop") or {}
            self.relations[name] = Relation(
                name=name, id=r["id"], subject_type=r["subject_type"], object_type=r["object_type"],
                prompt=r["prompt"], paraphrases=tuple(r["paraphrases"]), reverse=r.get("reverse"),
                reverse_paraphrases=tuple(r.get("reverse_paraphrases", ())),
                one_hop=oh.get("prompt"), via=oh.get("via"))
        self.objects: dict[str, dict[str, dict[str, str]]] = data["objects"]
        self.facts = [Fact(id=f["id"], relation=self.relations[f["relation"]], subject=f["subject"],
                           target=f["target"], aliases=tuple(f.get("aliases", ())))
                      for f in data["facts"]]
        self.by_id = {f.id: f for f in self.facts}
        assert len(self.by_id) == len(self.facts), "facts.json: duplicate fact ids"
        for f in self.facts:
            assert f.target in self.objects[f.relation.object_type], \
                f"facts.json: {f.id}'s target {f.target!r} is not a {f.relation.object_type} in objects"

    def prop(self, obj_type: str, obj: str, key: str) -> str | None:
        return self.objects.get(obj_type, {}).get(obj, {}).get(key)

    def candidates(self, fact: Fact) -> list[str]:
        """Plausible new targets: the true objects of the relation's other facts (other capitals for a
        capital), else any object of the same type; never the target itself and, for relations with a
        one-hop probe, never an object with the same one-hop property (so that the probe can tell)."""
        rel = fact.relation
        own = self.prop(rel.object_type, fact.target, rel.via) if rel.via else None

        def ok(o: str) -> bool:
            return o != fact.target and not (rel.via and self.prop(rel.object_type, o, rel.via) == own)
        same_rel = [o for o in dict.fromkeys(f.target for f in self.facts if f.relation == rel) if ok(o)]
        return same_rel or [o for o in self.objects[rel.object_type] if ok(o)]

    def new_target(self, fact: Fact, rng: random.Random, avoid: tuple[str, ...] = ()) -> str:
        pool = [o for o in self.candidates(fact) if o not in avoid]
        assert pool, f"no new target left for fact {fact.id}"
        return rng.choice(pool)

    def holder_of(self, relation: Relation, obj: str) -> Fact | None:
        """The fact of `relation` whose true object is `obj` (e.g. the country whose capital is Rome)."""
        return next((f for f in self.facts if f.relation == relation and f.target == obj), None)

    def neighbors(self, fact: Fact, exclude_objects: tuple[str, ...] = (), pool: list[Fact] | None = None) -> list[Fact]:
        """Other facts of the same relation, the next ones after `fact` in file order (cyclic)."""
        pool = self.facts if pool is None else pool
        same = [f for f in pool if f.relation == fact.relation]
        if fact in same:
            i = same.index(fact)
            same = same[i + 1:] + same[:i]
        return [f for f in same if f.subject != fact.subject and f.target not in exclude_objects][:N_NEIGHBORS]

    def probes(self, fact: Fact, new: str, pool: list[Fact] | None = None) -> dict[str, list[ProbeItem]]:
        """Probe suites of the edit `fact` -> `new` (targets as they should be after the edit).
        Distract-Neighbor items are added by the stream builders (``simulator.streams.builtin``),
        which own the DN prompt format."""
        rel, old = fact.relation, fact.target
        meta = {"fact": fact.id, "relation": rel.id}
        pool = self.facts if pool is None else pool
        p: dict[str, list[ProbeItem]] = {
            "rewrite": [ProbeItem(fact.text, " " + new, alt=" " + old, meta=meta)],
            "paraphrase": [ProbeItem(t.format(fact.subject), " " + new, alt=" " + old, meta=meta)
                           for t in rel.paraphrases],
            "neighborhood": [ProbeItem(n.text, " " + n.target, alt=" " + new, meta={"fact": n.id, "relation": rel.id})
                             for n in self.neighbors(fact, exclude_objects=(new,), pool=pool)],
        }
        attr = [f for f in pool if f.subject == fact.subject and f.relation != rel]
        if attr:
            p["attribute"] = [ProbeItem(f.text, " " + f.target, meta={"fact": f.id, "relation": f.relation.id})
                              for f in attr]
        if fact.aliases:
            p["portability_sr"] = [ProbeItem(rel.prompt.format(a), " " + new, alt=" " + old, meta=meta)
                                   for a in fact.aliases]
        if rel.reverse:
            before = self.holder_of(rel, new)  # who holds `new` before the edit ("Italy" for Rome)
            p["portability_rr"] = [ProbeItem(rel.reverse.format(new), " " + fact.subject,
                                             alt=" " + before.subject if before else None, meta=meta)]
        if rel.one_hop:
            after = self.prop(rel.object_type, new, rel.via)
            before = self.prop(rel.object_type, old, rel.via)
            if after and after != before:
                p["portability_oh"] = [ProbeItem(rel.one_hop.format(fact.subject), " " + after,
                                                 alt=" " + before if before else None, meta=meta)]
        return p


@lru_cache(maxsize=1)
def load_facts() -> FactSet:
    """The built-in fact set (package data simulator/facts/facts.json)."""
    return FactSet(json.loads(files("simulator.facts").joinpath("facts.json").read_text("utf-8")))


def load_check() -> dict[str, Any] | None:
    """The result of scripts/check_facts.py (check.json), or None if it was never run."""
    p = files("simulator.facts").joinpath("check.json")
    return json.loads(p.read_text("utf-8")) if p.is_file() else None


def passing() -> list[Fact]:
    """The facts that passed the check against the base model, in file order."""
    fs, check = load_facts(), load_check()
    assert check is not None, "simulator/facts/check.json is missing: run scripts/check_facts.py"
    ok = {fid for fid, r in check["facts"].items() if r["pass"]}
    return [f for f in fs.facts if f.id in ok]
