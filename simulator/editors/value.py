"""The target vector of ROME (v*, at the MLP output) and MEMIT (z, at a block's residual output), by
optimisation (ROME, Meng et al. 2022, eq. 4): a vector delta added at the subject's last token in every
rewrite prompt, minimising  NLL(target)  +  kl_factor * KL(edited || original on "{} is a")
+  weight_decay * ||delta|| / ||v0||^2,  with ||delta|| clamped to clamp_norm_factor * ||v0||
(``value_loss``: kmeng01/rome's compute_v and kmeng01/memit's compute_z, terms and direction as there).

Speed (``fast=True``): the prompt up to the subject's last token is run once and kept as keys and values
(``SuffixBatch``: the delta is added at that token, so nothing before it can change); every step runs
only the tokens from there on, through the blocks from the edit point up (those below are replayed), and
the lm head only sees the positions the loss needs; the loop stops as soon as the target is reached.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch

from simulator.editors.common import (Rows, SuffixBatch, first_target_column, kl_log_probs, logits_at,
                                      per_row_positions, row_log_probs)


@dataclass
class ValueResult:
    v0: torch.Tensor                 # original vector at the edit point (row 0: the bare prompt), float32
    delta: torch.Tensor              # optimised change, float32
    keys: torch.Tensor | None        # rewrite-module inputs at the subject token of each rewrite row (if asked)
    diagnostics: dict = field(default_factory=dict)


def _add_at(output, mask: torch.Tensor, delta: torch.Tensor):
    """output (+ in its first element if a tuple) += mask * delta."""
    if torch.is_tensor(output):
        return output + (mask * delta).to(output.dtype)
    return (output[0] + (mask * delta).to(output[0].dtype),) + tuple(output[1:])


def value_loss(nll: torch.Tensor, klp: torch.Tensor | None, kl_ref: torch.Tensor | None, delta: torch.Tensor,
               v0_norm: torch.Tensor, *, kl_factor: float, weight_decay: float) -> torch.Tensor:
    """The reference's loss: NLL + kl_factor * KL(edited || original) (torch's kl_div(init, current,
    log_target=True, batchmean), as compute_v calls it) + weight_decay * ||delta|| / ||v0||^2 (the
    norm itself, not its square, over the squared norm of the original vector)."""
    kl = (torch.zeros((), device=nll.device) if klp is None or kl_factor == 0
          else kl_factor * torch.nn.functional.kl_div(kl_ref, klp, log_target=True, reduction="batchmean"))
    return nll + kl + weight_decay * delta.norm() / v0_norm ** 2


def optimize_value(model, spec, rows: Rows, *, point: str, layer: int, num_steps: int, lr: float,
                   weight_decay: float, clamp_norm_factor: float, kl_factor: float, early_stop_prob: float,
                   early_stop_top1: bool = True, capture_keys_layer: int | None = None,
                   fast: bool = True) -> ValueResult:
    """``point`` = "mlp" (output of spec.rewrite_module at ``layer``, ROME) or "block" (output of
    spec.layer_module at ``layer``, MEMIT). ``fast=False`` is the naive loop (every block every step, logits
    at every position), kept for the side-by-side benchmark."""
    t0 = time.perf_counter()
    dev = next(model.parameters()).device
    B, T = rows.input_ids.shape
    if fast:
        positions = per_row_positions(rows)
        batch = SuffixBatch.of(rows)
        cache = batch.prefix_cache(model)      # before the hooks below: the prefix never sees delta
        keep = batch.suffix_positions(rows, positions).to(dev)
        look = torch.zeros(B, dtype=torch.long, device=dev)          # the lookup is suffix column 0
        width = batch.input_ids.shape[1] - batch.start
    else:
        positions = torch.arange(T)
        look, width = rows.lookup.to(dev), T
    at = torch.zeros(B, width, 1, device=dev)
    at[torch.arange(B, device=dev), look] = 1.0
    name = spec.rewrite_module.format(layer) if point == "mlp" else spec.layer_module.format(layer)
    target_mod = model.get_submodule(name)

    if point == "mlp":
        w = target_mod.weight
        width = int(w.shape[1] if spec.weight_transposed else w.shape[0])
    else:
        width = int(model.get_input_embeddings().weight.shape[1])
    delta = torch.zeros(width, device=dev, requires_grad=True)
    state: dict = {}

    def out_hook(_m, _inp, output):
        h = output if torch.is_tensor(output) else output[0]
        if "v0" not in state:  # first pass has delta = 0: the original vector
            state["v0"] = h[0, int(look[0])].detach().float().clone()
        return _add_at(output, at, delta)

    def key_hook(_m, inputs):
        if "keys" not in state:
            x = inputs[0].detach()
            state["keys"] = torch.stack([x[r, int(look[r])].float() for r in range(B)
                                         if rows.kind[r] == "rewrite"])

    opt = torch.optim.Adam([delta], lr=lr)
    top_j = first_target_column(rows, positions)  # first target token of row 0
    losses: list[float] = []
    probs: list[float] = []
    stopped = None
    freeze_at = layer if capture_keys_layer is None else min(layer, capture_keys_layer)
    handles = []
    with (batch.frozen_below(model, spec, freeze_at, cache) if fast else contextlib.nullcontext()):
        try:
            handles.append(target_mod.register_forward_hook(out_hook))
            if capture_keys_layer is not None:
                km = model.get_submodule(spec.rewrite_module.format(capture_keys_layer))
                handles.append(km.register_forward_pre_hook(key_hook))
            kl_ref = None
            for step in range(num_steps + 1):
                logits = (batch.suffix_forward(model, cache, keep).logits if fast
                          else logits_at(model, rows, positions))
                logp = torch.log_softmax(logits.float(), dim=-1)
                rlp = row_log_probs(logp, rows, positions)
                nll = torch.stack([-r.mean() for r in rlp]).mean()
                klp = kl_log_probs(logp, rows, positions)
                if step == 0:
                    v0_norm = state["v0"].norm()
                    kl_ref = None if klp is None else klp.detach()
                loss = value_loss(nll, klp, kl_ref, delta, v0_norm, kl_factor=kl_factor, weight_decay=weight_decay)
                p_mean = float(torch.stack([r.detach().mean().exp() for r in rlp]).mean())
                top1 = int(logp[0, top_j].argmax()) == rows.targets[0][0]
                losses.append(round(float(loss.detach()), 5))
                probs.append(round(p_mean, 5))
                if p_mean >= early_stop_prob and (top1 or not early_stop_top1):
                    stopped = step
                    break
                if step == num_steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    limit = clamp_norm_factor * v0_norm
                    n = delta.norm()
                    if n > limit:
                        delta.mul_(limit / n)
        finally:
            for h in handles:
                h.remove()
    d = delta.detach().float()
    return ValueResult(
        v0=state["v0"], delta=d, keys=state.get("keys"),
        diagnostics={"losses": losses, "target_prob": probs, "steps": len(losses) - 1 if losses else 0,
                     "early_stop": stopped is not None, "delta_norm": float(d.norm()),
                     "v0_norm": float(state["v0"].norm()), "clamped": bool(d.norm() >= clamp_norm_factor
                                                                           * state["v0"].norm() * 0.999),
                     "time_s": round(time.perf_counter() - t0, 3)})
