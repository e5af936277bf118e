"""r-ROME (Gupta et al. 2024, "Rebuilding ROME"): ROME with one key for the whole rank-one update.

ROME's update  W' = W + Lambda (C^-1 k_L)^T,  Lambda = (v* - W k_V - b) / ((C^-1 k_L)^T k_V)  makes
W' k_V + b = v* exactly. The published ROME code takes k_L = k* (the key averaged over the context
prefixes, ``compute_u``) but k_V = k(s), the key of the bare edit prompt (``compute_v``), while v* was
optimised for every prefix. r-ROME shows that this mismatch produces the "disabling edits" that collapse
a model in sequential editing, and uses the same key on both sides. Its reference code
(scalable-model-editing/rebuilding-rome, ``rome/compute_u.py``, ``compute_v.py``) keeps three switches,
mirrored here by ``keys``:

    prefix_mean   k_L = k_V = k*     r-ROME (``enable_random_prefix_keys``), the default
    prompt        k_L = k_V = k(s)   keys of the bare prompt on both sides (``enable_prompt_keys``)
    original      k_L = k*, k_V = k(s)   ROME as published (``original_implementation``)

editledger's ``rome`` is ROME as published (it equals ``keys="original"``), so the two can be compared on
one stream: ``--method rome`` against ``--method r-rome``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ledger.errors import InputError
from simulator.editors.base import register_editor
from simulator.editors.rome import ROMEEditor, ROMEHyperParams, update_keys_prefix_mean, update_keys_published

KEY_MODES = ("prefix_mean", "prompt", "original")


@dataclass
class RROMEHyperParams(ROMEHyperParams):
    keys: str = "prefix_mean"          # which keys the update uses: prefix_mean (r-ROME), prompt, original (ROME)


@register_editor
class RROMEEditor(ROMEEditor):
    name = "r-rome"
    hparams_class = RROMEHyperParams

    def update_keys(self, vr, hparams: RROMEHyperParams) -> tuple[torch.Tensor, torch.Tensor]:
        if hparams.keys not in KEY_MODES:
            raise InputError(f"r-rome hyper-parameter 'keys' must be one of {', '.join(KEY_MODES)}, got {hparams.keys!r}")
        if hparams.keys == "prefix_mean":
            return update_keys_prefix_mean(vr)
        k_star, k_prompt = update_keys_published(vr, hparams)   # row 0: the bare edit prompt, k(s)
        if hparams.keys == "prompt":
            return k_prompt, k_prompt
        return k_star, k_prompt

    def key_diagnostics(self, k_left: torch.Tensor, k_value: torch.Tensor) -> dict:
        same = bool(torch.equal(k_left, k_value))
        gap = 0.0 if same else float((k_left - k_value).norm() / k_left.norm())
        return {"keys_consistent": same, "key_gap_rel": gap}
