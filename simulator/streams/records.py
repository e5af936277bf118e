"""Record: what every adapter produces from one benchmark case, and what make_stream consumes.

A record holds the edits of one case in order (one for CounterFact/ZsRE/RoundEdit/built-in facts,
two for ConflictEdit, up to four for MQuAKE) and, aligned with them, the probe suites to attach to
the step of each edit. ``native`` names the stream kind the case was made for, when it was made for
one (a ConflictEdit reverse case is a reverse-conflict pair); ``objects`` is the object set of a
round edit (RoundEdit's true_objects).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from simulator.requests import EditRequest, ProbeItem

Probes = dict[str, list[ProbeItem]]

# suites that only make sense inside the case they were written for (dropped when a request of a
# multi-edit case is used on its own, e.g. in a sequential stream)
CONTEXT_SUITES = ("conflict", "tied_fact", "multihop", "round")


@dataclass
class Record:
    source: str                      # adapter: counterfact, zsre, mquake, conflictedit, roundedit, knowedit, builtin, stream
    case_id: str                     # id in the source ("cf-3087", "mquake-7417", ...)
    requests: list[EditRequest]      # the case's edits, in order
    probes: list[Probes] = field(default_factory=list)  # probes for the step of each request (aligned)
    native: str | None = None        # "round" | "reverse_conflict" | "composite_conflict" | "coverage_conflict" | "multihop"
    objects: tuple[str, ...] = ()    # round edits: the object set Obj of (s, r), leading spaces included
    round_prompts: tuple[str, ...] = ()  # round edits: further prompts of (s, r) besides the edit prompt

    def __post_init__(self):
        assert self.requests, f"record {self.case_id} has no edit request"
        if not self.probes:
            self.probes = [{} for _ in self.requests]
        assert len(self.probes) == len(self.requests), \
            f"record {self.case_id}: {len(self.probes)} probe sets for {len(self.requests)} requests"


def sp(s: str | None) -> str | None:
    """A target with exactly one leading space (benchmarks store "Paris"; targets are " Paris")."""
    if s is None:
        return None
    s = str(s).strip()
    return " " + s if s else None


def template(text: str, subject: str) -> str | None:
    """Turn a filled prompt into a template by replacing the subject's first occurrence with {}."""
    text = text.rstrip()
    i = text.find(subject)
    if not subject or i < 0 or "{" in text or "}" in text:
        return None
    return text[:i] + "{}" + text[i + len(subject):]


def plain(probes: Probes) -> Probes:
    """The probes of one request used on its own: without the suites tied to its case."""
    return {k: v for k, v in probes.items() if k not in CONTEXT_SUITES}


def merge(*probe_sets: Probes) -> Probes:
    out: Probes = {}
    for ps in probe_sets:
        for suite, items in ps.items():
            out.setdefault(suite, []).extend(items)
    return out


def distract(req: EditRequest, neighbors: list[ProbeItem], k: int = 3) -> list[ProbeItem]:
    """Distract-Neighbor (DN) items: the edit sentence, then a neighbour's prompt ("The capital of France
    is the city of Rome. The capital of Spain is the city of" -> " Madrid", alt " Rome")."""
    return [ProbeItem(f"{req.text}{req.target_new}. {p.prompt}", p.target, alt=req.target_new,
                      meta={**p.meta, "neighbor": p.prompt}) for p in neighbors[:k]]
