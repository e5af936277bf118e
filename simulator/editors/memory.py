"""An edit memory: what IKE and SERAC keep instead of changing weights.

The state is text only (the StateDelta's JSON part): the edited facts in the order they were made, and
the settings the runtime reads (IKE's number of demonstrations, SERAC's scope threshold), taken from
the latest step. A step adds its requests; nothing is ever changed in place, so the fold of any
sub-sequence of steps is the sub-sequence of facts. Retrieval embeds the facts when a runtime is built
(``simulator.embeddings``), so the recorded state does not depend on the sentence model's arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from simulator.deltas import EditResult, StateDelta
from simulator.editors.base import Editor
from simulator.editors.common import check_request
from simulator.requests import EditRequest


@dataclass
class Memory:
    facts: list[EditRequest] = field(default_factory=list)   # oldest first
    settings: dict[str, Any] = field(default_factory=dict)    # what the runtime needs (the latest step's)


def fact_sentence(f: EditRequest) -> str:
    """The edit as one sentence: "The Eiffel Tower is located in the city of Rome"."""
    return f.text + f.target_new


def best_match(sims: torch.Tensor) -> int:
    """Index of the highest similarity; among equal ones the newest fact (the latest edit wins)."""
    return int(sims.numel() - 1 - int(torch.argmax(sims.flip(0))))


class MemoryEditor(Editor):
    """Base of the edit-memory methods: ``edit`` records the requests, a subclass says how to answer."""
    changes_weights = False

    def settings(self, hparams) -> dict[str, Any]:
        """The hyper-parameters the runtime reads, as JSON."""
        raise NotImplementedError

    def edit(self, model, tokenizer, spec, requests, hparams, *, stats=None, state=None, progress=False):
        for r in requests:
            check_request(r)
        delta = StateDelta(data={"facts": [r.to_dict() for r in requests], "settings": self.settings(hparams)})
        n = len((state or Memory()).facts) + len(requests)
        return EditResult(deltas=[], state=delta, diagnostics={"method": self.name, "facts": n})

    def empty_state(self) -> Memory:
        return Memory()

    def fold(self, state: Memory, delta: StateDelta) -> Memory:
        facts = [EditRequest.from_dict(d) for d in delta.data.get("facts", [])]
        return Memory(state.facts + facts, dict(delta.data.get("settings", state.settings)))

    def snapshot(self, state: Memory) -> StateDelta:
        if not state.facts:
            return StateDelta()
        return StateDelta(data={"facts": [f.to_dict() for f in state.facts], "settings": state.settings})
