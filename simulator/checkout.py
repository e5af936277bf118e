"""The weights half of a checkout: materialise base + a chain of weight deltas, bit-exactly, from any
current state. (The session adds the method state and verifies both against the ledger.)

The weights of a version are the base weights with the deltas of its lineage applied in order by
``simulator.deltas.apply_delta`` (see that module for why this is deterministic). ``Workspace``
keeps a pristine copy of every tensor the first time it is touched, so it can go back to the base
of any tensor, and keyframes (full copies of touched tensors stored every K versions) bound the
number of deltas to re-apply for a long chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ledger.errors import IntegrityError
from simulator.deltas import TensorDelta, apply_delta, tensor_fingerprint


@dataclass
class ChainLink:
    """One version's contribution to a lineage: its deltas (in order) and maybe a keyframe."""
    version_id: int
    deltas: list[TensorDelta]
    keyframe: dict[str, torch.Tensor] | None = None   # loaded lazily by the caller when needed


@dataclass
class Workspace:
    """The live model's parameters plus what is needed to move them between versions."""
    params: dict[str, torch.Tensor]                     # name -> live parameter tensor (model's own storage)
    pristine: dict[str, torch.Tensor] = field(default_factory=dict)  # base copies of touched tensors
    touched: set[str] = field(default_factory=set)      # tensors that currently differ from the base (or may)

    @classmethod
    def of(cls, model: torch.nn.Module) -> "Workspace":
        return cls(params=dict(model.named_parameters()))

    def param(self, name: str) -> torch.Tensor:
        if name not in self.params:
            raise IntegrityError(f"the model has no tensor named {name!r}; the ledger was recorded on a "
                                 "different architecture — check out with the model the run used")
        return self.params[name]

    def remember(self, name: str) -> None:
        """Keep a pristine copy of ``name`` before it is modified for the first time."""
        if name not in self.pristine:
            self.pristine[name] = self.param(name).detach().clone()

    @torch.no_grad()
    def apply(self, delta: TensorDelta) -> None:
        self.remember(delta.tensor)
        apply_delta(self.param(delta.tensor).data, delta)
        self.touched.add(delta.tensor)

    @torch.no_grad()
    def restore(self, name: str, value: torch.Tensor | None = None) -> None:
        """Set ``name`` to its base value, or to ``value`` (a keyframe copy)."""
        self.remember(name)
        src = self.pristine[name] if value is None else value
        self.param(name).data.copy_(src.to(device=self.param(name).device, dtype=self.param(name).dtype))
        if value is None:
            self.touched.discard(name)
        else:
            self.touched.add(name)

    def fingerprints(self, names) -> dict[str, str]:
        return {n: tensor_fingerprint(self.param(n)) for n in sorted(names)}

    @torch.no_grad()
    def materialise(self, chain: list[ChainLink]) -> dict[str, str]:
        """Make the live weights equal base + ``chain`` (oldest first). Returns the fingerprints of
        the tensors the chain touches."""
        chain_tensors = {d.tensor for link in chain for d in link.deltas}
        # start point per tensor: the latest keyframe in the chain that holds it, else the base
        start: dict[str, tuple[int, torch.Tensor | None]] = {n: (-1, None) for n in chain_tensors}
        for i, link in enumerate(chain):
            for name, value in (link.keyframe or {}).items():
                start[name] = (i, value)
                chain_tensors.add(name)
        for name in sorted(self.touched - chain_tensors):
            self.restore(name)                    # touched now, untouched in the target: back to base
        for name in sorted(chain_tensors):
            self.restore(name, start[name][1])
        for i, link in enumerate(chain):
            for d in link.deltas:
                if i > start[d.tensor][0]:
                    self.apply(d)
        return self.fingerprints(chain_tensors)
