"""The shared vocabulary of a stream: edit requests, the probes that travel with them, and steps.

Everything here is plain data (JSON-serialisable through ``to_dict``/``from_dict``); the stream
file format (``simulator/streams``) reads and writes exactly these shapes, the editors consume
``EditRequest`` and the probes consume ``ProbeItem``.

Probe suites (the ``suite`` names used in ``Step.probes``):

    rewrite        the edit prompt itself            target = new object, alt = old object
    paraphrase     paraphrases of the edit prompt    target = new,        alt = old
    neighborhood   other subjects, same relation     target = their true object, alt = new object
    attribute      same subject, other relations     target = true object (Other Attribution, OA)
    distract       edit sentence + unrelated prompt  target = unrelated true object, alt = new (DN)
    portability_sr subject replaced by an alias      target = new
    portability_rr reversed relation                 target = expected answer after the edit
    portability_oh one-hop reasoning over the edit   target = expected answer after the edit
    multihop       MQuAKE chain questions            target = new answer, answers = all aliases,
                                                      alt = old answer
    conflict       ConflictEdit probe of the first edit's fact   target / alt per the benchmark
    tied_fact      the tied fact of a composite conflict          target = tied object (TFD)
    round          the object set of a round edit    target = the object it should be now,
                                                      choices = the whole object set
    other_task     a multiple-choice task (PIQA-style) choices + label (OT)

A ProbeItem answers "does the model, at this version, prefer ``target`` (over ``alt``)?".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProbeItem:
    prompt: str                      # the text the model continues
    target: str                      # what the model should produce (leading space included)
    alt: str | None = None           # the competitor target (e.g. the old object)
    answers: tuple[str, ...] = ()    # further acceptable answers (aliases), for exact match
    choices: tuple[str, ...] = ()    # for multiple choice / object sets
    label: int | None = None         # index of the correct choice
    meta: dict[str, Any] = field(default_factory=dict)  # provenance (case id, relation, ...)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["answers"] = list(self.answers)
        d["choices"] = list(self.choices)
        return {k: v for k, v in d.items() if v not in (None, [], {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProbeItem":
        return cls(
            prompt=d["prompt"], target=d["target"], alt=d.get("alt"),
            answers=tuple(d.get("answers", ())), choices=tuple(d.get("choices", ())),
            label=d.get("label"), meta=dict(d.get("meta", {})),
        )


@dataclass(frozen=True)
class EditRequest:
    subject: str                     # e.g. "Eiffel Tower"
    prompt: str                      # template with "{}" for the subject: "The {} is located in"
    target_new: str                  # " Rome" (leading space: tokens(prompt+target) - tokens(prompt))
    target_old: str | None = None    # " Paris"
    relation: str | None = None      # relation id, e.g. "P131"
    case_id: str | None = None       # id in the source benchmark

    @property
    def text(self) -> str:
        """The filled prompt, e.g. "The Eiffel Tower is located in"."""
        return self.prompt.replace("{}", self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EditRequest":
        return cls(subject=d["subject"], prompt=d["prompt"], target_new=d["target_new"],
                   target_old=d.get("target_old"), relation=d.get("relation"),
                   case_id=d.get("case_id"))


# The probe suite names of the module docstring, in that order (added by the streams engineer so
# that stream files can be validated against them).
PROBE_SUITES = ("rewrite", "paraphrase", "neighborhood", "attribute", "distract", "portability_sr",
                "portability_rr", "portability_oh", "multihop", "conflict", "tied_fact", "round",
                "other_task")

STREAM_KINDS = ("sequential", "round", "reverse_conflict", "composite_conflict", "multihop", "batch")


@dataclass
class Step:
    """One editor call: one request, or k requests applied together (a batch step)."""
    requests: list[EditRequest]
    kind: str = "sequential"         # one of STREAM_KINDS: the kind of stream this step belongs to
    group: str | None = None         # ties steps together: a round pair, a conflict pair, an MQuAKE case
    role: str | None = None          # role inside the group: "forward"/"back", "first"/"second", ...
    probes: dict[str, list[ProbeItem]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"v": 1, "kind": self.kind,
                             "requests": [r.to_dict() for r in self.requests]}
        if self.group is not None:
            d["group"] = self.group
        if self.role is not None:
            d["role"] = self.role
        if self.probes:
            d["probes"] = {s: [p.to_dict() for p in items] for s, items in self.probes.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Step":
        return cls(requests=[EditRequest.from_dict(r) for r in d["requests"]],
                   kind=d.get("kind", "sequential"), group=d.get("group"), role=d.get("role"),
                   probes={s: [ProbeItem.from_dict(p) for p in items]
                           for s, items in d.get("probes", {}).items()})
