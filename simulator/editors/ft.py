"""FT-L (the ROME paper's constrained fine-tuning baseline): Adam on one MLP output projection to raise the
target's likelihood on the edit prompt, every weight kept within +-norm_constraint of its original value
(an L-infinity ball, projected after each step). The change is trained as a separate tensor added through a
hook, so the model's own weights are never written; the result is a dense delta."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from simulator.deltas import EditResult, TensorDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import (add_weight_delta_hook, build_rows, logits_at, pad_id_of, per_row_positions,
                                      row_log_probs, weight_out_in)
from simulator.editors.hparams import at_least


@dataclass
class FTHyperParams:
    layer: int = 5                     # layer whose MLP output projection is fine-tuned (FT-L: one layer)
    num_steps: int = at_least(0, 25)   # Adam steps
    lr: float = at_least(0.0, 5e-4)    # Adam learning rate
    norm_constraint: float = at_least(0.0, 5e-4)  # L-infinity bound on the change of each weight (projected every step)
    early_stop_prob: float = 0.95      # stop when every target token is at least this likely
    seed: int = 0


@register_editor
class FTEditor(Editor):
    name = "ft"
    hparams_class = FTHyperParams

    def edit(self, model, tokenizer, spec, requests, hparams: FTHyperParams, *, stats=None, state=None,
             progress: bool = False) -> EditResult:
        hp = hparams
        t0 = time.perf_counter()
        mod = model.get_submodule(spec.rewrite_module.format(hp.layer))
        W = weight_out_in(spec, mod.weight)
        dev = W.device
        dW = torch.zeros(W.shape, dtype=torch.float32, device=dev, requires_grad=True)
        pad = pad_id_of(tokenizer)
        rows = [build_rows(tokenizer, spec, r, [""], None, pad) for r in requests]
        opt = torch.optim.Adam([dW], lr=hp.lr)
        losses, probs = [], []
        handle = add_weight_delta_hook(mod, dW)
        try:
            for step in tqdm(range(hp.num_steps + 1), desc="FT", disable=not progress, leave=False):
                nlls, ps = [], []
                for r in rows:
                    pos = per_row_positions(r)
                    logp = torch.log_softmax(logits_at(model, r, pos).float(), -1)
                    lp = row_log_probs(logp, r, pos)[0]
                    nlls.append(-lp.mean())
                    ps.append(float(lp.detach().exp().min()))
                loss = torch.stack(nlls).mean()
                losses.append(round(float(loss.detach()), 5))
                probs.append(round(min(ps), 5))
                if min(ps) >= hp.early_stop_prob or step == hp.num_steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    dW.clamp_(-hp.norm_constraint, hp.norm_constraint)
        finally:
            handle.remove()
        d = dW.detach().cpu()
        d = d.T.contiguous() if spec.weight_transposed else d
        delta = TensorDelta(tensor=spec.rewrite_weight(hp.layer), kind="dense", factors={"delta": d})
        return EditResult(deltas=[delta], diagnostics={
            "method": "ft", "layer": hp.layer, "losses": losses, "target_prob_min": probs, "steps": len(losses) - 1,
            "linf": float(d.abs().max()), "delta_fro_norm": delta.norm(),
            "time_s": round(time.perf_counter() - t0, 3)})
