"""ROME (Meng et al. 2022): a rank-one update of one MLP output projection.

k* : the projection's input at the subject's last token, averaged over context prefixes.
v* : the projection's output there that makes the model say the target (``value.optimize_value``).
update (eq. 2 of the paper, with C = E[k k^T] of the layer's keys):
    W' = W + Lambda (C^-1 k*)^T,   Lambda = (v* - W k* - b) / ((C^-1 k*)^T k*)
so that W' k* + b = v* exactly while keys orthogonal to C^-1 k* (under C) are left alone.
Requests are applied one after another, each seeing the ones before (through hooks, not weights).

Both sides use the same key k*, so W' k* = v* holds for the key the value was optimised for: that is
the consistency r-ROME (Gupta et al. 2024) restores. The published ROME code (kmeng01/rome
``compute_v``) solves Lambda with the bare prompt's key instead; ``simulator/editors/rrome.py`` offers
both, under the method name ``r-rome``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ledger.errors import InputError
from tqdm import tqdm

from simulator.deltas import EditResult, TensorDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import (build_rows, factors_to_storage, module_bias_out, pad_id_of, pending_deltas,
                                      regularised, solve_psd, weight_out_in)
from simulator.editors.hparams import DEFAULT_CONTEXT_PREFIXES, at_least
from simulator.editors.value import optimize_value


@dataclass
class ROMEHyperParams:
    layer: int = 5                     # layer whose MLP output projection is rewritten
    v_num_grad_steps: int = at_least(0, 20)  # Adam steps for v*
    v_lr: float = at_least(0.0, 0.5)   # Adam learning rate for the residual delta of v*
    v_weight_decay: float = at_least(0.0, 0.5)  # weight of ||delta|| / ||v0||^2 in the loss (kmeng01/rome compute_v)
    clamp_norm_factor: float = at_least(0.0, 4.0)  # ||delta|| <= clamp_norm_factor * ||v0||
    kl_factor: float = at_least(0.0, 0.0625)  # weight of KL(edited || original) on "{subject} is a"
    kl_prompt: str = "{} is a"         # essence prompt for the KL term
    context_prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_CONTEXT_PREFIXES))
    early_stop_prob: float = 0.9       # stop once every target token has at least this mean probability ...
    early_stop_top1: bool = True       # ... and the first target token is the top prediction
    fast: bool = True                  # run the blocks below the edit once; lm head only where the loss looks
    mom2_adjustment: bool = True       # use C^-1 k (the paper); False: C = identity
    mom2_n_samples: int = at_least(1, 100000)  # tokens of the second-moment corpus (the provider may have fewer)
    mom2_lambda: float = at_least(0.0, 0.0)  # ridge: C + lambda * mean(diag C) * I, for small corpora
    seed: int = 0                      # nothing random today; kept for methods that sample


def rome_closed_form(W: torch.Tensor, b: torch.Tensor | None, C: torch.Tensor | None, k: torch.Tensor,
                     v_star: torch.Tensor, k_left: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) in (out, in) terms with W' = W + u v^T, computed in float64 and returned in float32.
    ``W`` is (out, in); ``C`` (in, in) or None for the identity; ``k`` (in,), ``v_star`` (out,): W' k + b = v*.
    ``k_left`` is the key of the left vector C^-1 k_left (default ``k``); published ROME passes the
    prefix mean there and the bare prompt's key as ``k`` (see ``simulator/editors/rrome.py``)."""
    u, v, _ = rome_solve(W, b, C, k, v_star, k_left)
    return u, v


def rome_solve(W: torch.Tensor, b: torch.Tensor | None, C: torch.Tensor | None, k: torch.Tensor,
               v_star: torch.Tensor, k_left: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``rome_closed_form`` plus how close to singular the solve was (the same float64 numbers, no
    second solve): ``denominator`` = (C^-1 k_left)^T k of eq. 2, ``solve_cos`` = cos(C^-1 k_left, k)
    (1 for C = I and k_left = k; near 0 the update blows up), ``residual_norm`` = ||v* - W k - b||."""
    W64, k64 = W.to(torch.float64), k.to(torch.float64)
    kl64 = k64 if k_left is None else k_left.to(torch.float64)
    ck = kl64 if C is None else solve_psd(C.to(torch.float64), kl64[:, None])[:, 0]
    left = ck / ck.norm()  # unit left factor; the scale lives in u
    cur = W64 @ k64 + (0 if b is None else b.to(torch.float64))
    resid = v_star.to(torch.float64) - cur
    right = resid / (left @ k64)
    info = {"denominator": float(ck @ k64), "solve_cos": float((left @ k64) / k64.norm()),
            "residual_norm": float(resid.norm())}
    return right[:, None].to(torch.float32), left[:, None].to(torch.float32), info


def update_keys_prefix_mean(vr) -> tuple[torch.Tensor, torch.Tensor]:
    """r-ROME's keys: k* (the mean over the context prefixes) on both sides."""
    k_star = vr.keys.mean(0)
    return k_star, k_star


def update_keys_published(vr, hparams) -> tuple[torch.Tensor, torch.Tensor]:
    """ROME's keys as kmeng01/rome computes them: the left vector from k* (``compute_u``: the mean over
    the context prefixes), the value solved for k(s), the key of the bare edit prompt (``compute_v``:
    ``cur_input``), so that W' k(s) + b = v* exactly."""
    if hparams.context_prefixes[:1] != [""]:
        raise InputError("ROME solves for the key of the bare edit prompt: context_prefixes must start with \"\" "
                         f"(got {hparams.context_prefixes[:1]!r})")
    return vr.keys.mean(0), vr.keys[0]


@register_editor
class ROMEEditor(Editor):
    name = "rome"
    hparams_class = ROMEHyperParams

    def stats_layers(self, hparams: ROMEHyperParams) -> list[int]:
        return [hparams.layer] if hparams.mom2_adjustment else []

    def update_keys(self, vr, hparams) -> tuple[torch.Tensor, torch.Tensor]:
        """(key of the left vector C^-1 k, key the value is solved for); r-ROME overrides this."""
        return update_keys_published(vr, hparams)

    def edit(self, model, tokenizer, spec, requests, hparams: ROMEHyperParams, *, stats=None, state=None,
             progress: bool = False) -> EditResult:
        hp = hparams
        t_all = time.perf_counter()
        layer = hp.layer
        mod = model.get_submodule(spec.rewrite_module.format(layer))
        W = weight_out_in(spec, mod.weight.detach())
        b = module_bias_out(mod)
        C, stats_used, t_stats = None, [], 0.0
        if hp.mom2_adjustment and stats is not None:
            t = time.perf_counter()
            digest, C = stats.get(model, tokenizer, spec, layer)
            C = regularised(C.to(W.device), hp.mom2_lambda)
            stats_used.append(digest)
            t_stats = time.perf_counter() - t
        pad = pad_id_of(tokenizer)
        deltas, per_request, applied = [], [], []
        for req in tqdm(requests, desc=self.name.upper(), disable=not progress, leave=False):
            rows = build_rows(tokenizer, spec, req, hp.context_prefixes, hp.kl_prompt, pad)
            with pending_deltas(model, spec, applied):
                vr = optimize_value(model, spec, rows, point="mlp", layer=layer, num_steps=hp.v_num_grad_steps,
                                    lr=hp.v_lr, weight_decay=hp.v_weight_decay,
                                    clamp_norm_factor=hp.clamp_norm_factor, kl_factor=hp.kl_factor,
                                    early_stop_prob=hp.early_stop_prob, early_stop_top1=hp.early_stop_top1,
                                    capture_keys_layer=layer, fast=hp.fast)
            t = time.perf_counter()
            k_left, k_value = self.update_keys(vr, hp)
            # W as it stands after the earlier requests of this call
            W_cur = W.to(torch.float64) + sum((d.to(torch.float64) for _, d in applied), torch.zeros_like(W, dtype=torch.float64))
            u, v, solve = rome_solve(W_cur, b, C, k_value, vr.v0 + vr.delta, k_left=k_left)
            applied.append((layer, (u.to(torch.float64) @ v.to(torch.float64).T).to(W.dtype)))
            deltas.append(TensorDelta(tensor=spec.rewrite_weight(layer), kind="low_rank",
                                      factors={k_: t_.cpu() for k_, t_ in factors_to_storage(spec, u, v).items()}))
            per_request.append({**vr.diagnostics, "subject": req.subject, "target": req.target_new,
                                "key_norm": float(k_value.norm()), **solve, "update_s": round(time.perf_counter() - t, 4),
                                "delta_fro_norm": deltas[-1].norm(), **self.key_diagnostics(k_left, k_value)})
        return EditResult(deltas=deltas, stats_used=stats_used, diagnostics={
            "method": self.name, "layer": layer, "tensor": spec.rewrite_weight(layer),
            "second_moment": "C" if C is not None else "identity", "stats_s": round(t_stats, 3),
            "requests": per_request, "time_s": round(time.perf_counter() - t_all, 3)})

    def key_diagnostics(self, k_left: torch.Tensor, k_value: torch.Tensor) -> dict:
        """Extra per-request diagnostics about the keys (none for ROME: its record stays as it was)."""
        return {}
