"""A toy stateful method for the editor contract's tests: a key → value lookup around one MLP.

Each edit stores one entry: the key is the MLP output projection's input at the last token of the
edit prompt, the value is the projection output there that makes the model say the target (found by
ROME's value optimisation, with the whole prompt standing in for the subject). At inference a forward hook replaces the projection's
output wherever its input lies within ``radius`` (relative) of a stored key; every other input goes
through untouched. The weights never change: the lookup table is the method state, versioned per step.

Adding it to the registry is this module and its ``@register_editor`` line (a plugin registers
itself on import; a method shipped with editledger is also named on the import line of
``simulator/editors/__init__.py``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from simulator.deltas import EditResult, StateDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import build_rows, pad_id_of
from simulator.editors.value import optimize_value
from simulator.requests import EditRequest


@dataclass
class ToyLookupHyperParams:
    layer: int = 1                  # the MLP whose output projection the lookup wraps
    radius: float = 1e-3            # an input within radius * ||key|| of a key takes its value
    v_num_grad_steps: int = 40
    v_lr: float = 0.5


@dataclass
class Table:
    layer: int | None
    radius: float | None
    keys: torch.Tensor              # (n, d_in)
    values: torch.Tensor            # (n, d_out)


class LookupRuntime:
    def __init__(self, model, spec, table: Table):
        self.model, self.spec, self.t = model, spec, table

    def context(self, prompt: str) -> str:
        return ""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        t = self.t
        if not len(t.keys):
            yield
            return
        mod = self.model.get_submodule(self.spec.rewrite_module.format(t.layer))

        def hook(_m, inputs, output):
            x = inputs[0]
            dist = torch.cdist(x.float().reshape(-1, x.shape[-1]), t.keys.to(x.device))     # (B*T, n)
            near = dist <= t.radius * t.keys.norm(dim=1).to(x.device)[None]
            hit = near.any(1)
            if not bool(hit.any()):
                return output
            idx = torch.where(near, -dist, torch.full_like(dist, -float("inf"))).argmax(1)   # nearest key
            flat = output.reshape(-1, output.shape[-1]).clone()
            flat[hit] = t.values.to(flat)[idx[hit]]
            return flat.reshape(output.shape)
        handle = mod.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


@register_editor
class ToyLookupEditor(Editor):
    name = "toy-lookup"
    hparams_class = ToyLookupHyperParams
    changes_weights = False
    state = "a table of keys and values around one MLP"

    def edit(self, model, tokenizer, spec, requests, hparams, *, stats=None, state=None, progress=False):
        keys, values = [], []
        for req in requests:
            whole = EditRequest(subject=req.prompt.format(req.subject), prompt="{}", target_new=req.target_new)
            rows = build_rows(tokenizer, spec, whole, [""], None, pad_id_of(tokenizer))
            vr = optimize_value(model, spec, rows, point="mlp", layer=hparams.layer,
                                num_steps=hparams.v_num_grad_steps, lr=hparams.v_lr, weight_decay=0.0,
                                clamp_norm_factor=100.0, kl_factor=0.0, early_stop_prob=0.95,
                                capture_keys_layer=hparams.layer)
            keys.append(vr.keys[0].float())
            values.append((vr.v0 + vr.delta).float())
        delta = StateDelta(tensors={"keys": torch.stack(keys).detach().cpu(), "values": torch.stack(values).detach().cpu()},
                           data={"layer": hparams.layer, "radius": hparams.radius})
        return EditResult(deltas=[], state=delta, diagnostics={"method": self.name, "entries": len(keys)})

    def empty_state(self) -> Table:
        return Table(None, None, torch.zeros(0, 0), torch.zeros(0, 0))

    def fold(self, state: Table, delta: StateDelta) -> Table:
        k, v = delta.tensors["keys"], delta.tensors["values"]
        if not len(state.keys):
            return Table(delta.data["layer"], delta.data["radius"], k.clone(), v.clone())
        return Table(state.layer, state.radius, torch.cat([state.keys, k]), torch.cat([state.values, v]))

    def snapshot(self, state: Table) -> StateDelta:
        if not len(state.keys):
            return StateDelta()
        return StateDelta(tensors={"keys": state.keys, "values": state.values},
                          data={"layer": state.layer, "radius": state.radius})

    def runtime(self, model, tokenizer, spec, state: Table) -> LookupRuntime:
        return LookupRuntime(model, spec, state)
