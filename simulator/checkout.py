"""The weights half of a checkout: materialise base + a chain of weight deltas, bit-exactly, from any
current state. (The session adds the method state and verifies both against the ledger.)

The weights of a version are the base weights with the deltas of its lineage applied in order by
the rule of ``simulator.deltas`` (see that module for why it is deterministic). ``Workspace`` keeps
a pristine copy of every tensor the first time it is touched, so it can go back to the base of any
tensor; keyframes (full copies of touched tensors stored every K versions) bound the number of
deltas to re-apply for a long chain; and when the live weights are a version on the target's own
lineage (moving forward along a run), a tensor is carried forward from them where that applies
fewer deltas than rebuilding it. Each way applies the same deltas by the same rule to the same
starting bits (a keyframe *is* the weights at its version), so each gives the same result.

``VersionChains`` reads what a checkout needs from the ledger and keeps it: a version never
changes once committed (its parent, deltas and keyframe are fixed; its fingerprints are fixed
once sealed), so a session reads each version's row once.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ledger import Ledger
from ledger.chain import ChainStep
from ledger.errors import IntegrityError
from simulator.deltas import FINGERPRINT_ALGO, TensorDelta, apply_delta, apply_run, tensor_fingerprint


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

    def fingerprints(self, names, algos: dict[str, str] | None = None) -> dict[str, str]:
        """Fingerprints of ``names``, each by ``algos[name]`` where given (the algorithm its recorded
        fingerprint names), else by the current algorithm."""
        algos = algos or {}
        return {n: tensor_fingerprint(self.param(n), algos.get(n, FINGERPRINT_ALGO)) for n in sorted(names)}

    @torch.no_grad()
    def materialise(self, chain: list[ChainLink], *, live_at: int | None = None,
                    reference: bool = False) -> list[str]:
        """Make the live weights equal base + ``chain`` (oldest first); returns the names of the
        tensors the chain touches. ``live_at``: the index in ``chain`` of the version the live
        weights hold now, if they hold one of it. ``reference``: no kernel, no carrying forward
        (the checkout's retry before it reports a mismatch)."""
        start: dict[str, tuple[int, torch.Tensor | None]] = {}   # latest keyframe per tensor, else base
        todo: dict[str, list[tuple[int, TensorDelta]]] = {}
        for i, link in enumerate(chain):
            for name, value in (link.keyframe or {}).items():
                start[name] = (i, value)
            for d in link.deltas:
                todo.setdefault(d.tensor, []).append((i, d))
        names = sorted(set(start) | set(todo))
        for name in sorted(self.touched - set(names)):
            self.restore(name)                    # touched now, untouched in the target: back to base
        for name in names:
            at, value = start.get(name, (-1, None))
            rebuild = [d for i, d in todo.get(name, ()) if i > at]
            param = self.param(name).data
            self.remember(name)
            if live_at is not None and not reference and live_at >= at:
                forward = [d for i, d in todo.get(name, ()) if i > live_at]
                if len(forward) <= len(rebuild):          # carry the live tensor forward
                    apply_run(param, forward)
                    self.touched.add(name)
                    continue
            src = self.pristine[name] if value is None else value
            apply_run(param, rebuild, src=src, reference=reference)
            if value is None and not rebuild:
                self.touched.discard(name)
            else:
                self.touched.add(name)
        return names


class VersionChains:
    """Each version's parent, deltas and keyframe, read once from the ledger (one recursive query
    per miss, fetching the whole lineage), and the fingerprints of sealed versions."""

    def __init__(self, ledger: Ledger, max_fingerprints: int = 1 << 16):
        self.ledger = ledger
        self._steps: dict[int, ChainStep] = {}
        self._fps: OrderedDict[int, dict[str, str]] = OrderedDict()
        self._max_fps = max_fingerprints

    def lineage(self, version_id: int) -> list[ChainStep]:
        """Base version .. ``version_id``."""
        out, vid = [], version_id
        while vid is not None:
            step = self._steps.get(vid)
            if step is None:
                got = self.ledger.checkout_chain(vid)
                for s in got.steps:
                    self._steps[s.version_id] = s
                self._keep_fps(vid, got.fingerprints)
                out.extend(reversed(got.steps))
                break
            out.append(step)
            vid = step.parent_id
        out.reverse()
        return out

    def fingerprints(self, version_id: int) -> dict[str, str]:
        """The fingerprints recorded for ``version_id`` (empty: an unsealed revert, re-read each time)."""
        fps = self._fps.get(version_id)
        if fps is None:
            fps = self.ledger.version_fingerprints(version_id)
            self._keep_fps(version_id, fps)
        return dict(fps)

    def sealed(self, version_id: int, fps: dict[str, str]) -> None:
        self._keep_fps(version_id, fps)

    def _keep_fps(self, version_id: int, fps: dict[str, str]) -> None:
        if fps:                                   # sealed: never rewritten
            self._fps[version_id] = dict(fps)
            self._fps.move_to_end(version_id)
            while len(self._fps) > self._max_fps:
                self._fps.popitem(last=False)
