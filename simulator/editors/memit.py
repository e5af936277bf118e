"""MEMIT (Meng et al. 2023): many edits at once, spread over several MLP layers.

1. For each request i, z_i: the residual stream at the last edited layer L (block output, subject's last
   token) that makes the model say the target (``value.optimize_value`` at the block output).
2. For each layer l in order: K_l = keys (projection inputs at the subject token, averaged over context
   prefixes, seen through the updates of the layers before), R_l = (z - h_L) / (layers left), and
       Delta_l = R_l K_l^T (lambda C_l + K_l K_l^T)^-1      (eq. 14, C_l = E[k k^T])
   kept exactly as low-rank factors u = R_l, v = (lambda C_l + K_l K_l^T)^-1 K_l (rank <= batch size).
Where the MLP output is normalised before joining the residual (Gemma 3), R_l is mapped back through
that norm (its scale is free, so only the direction of the target can be matched).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from simulator.deltas import EditResult, TensorDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import (build_rows, factors_to_storage, pad_id_of, pending_deltas, regularised,
                                      solve_psd, weight_out_in)
from simulator.editors.hparams import DEFAULT_CONTEXT_PREFIXES, at_least
from simulator.editors.value import optimize_value


@dataclass
class MEMITHyperParams:
    layers: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7, 8])  # layers the update is spread over
    v_num_grad_steps: int = at_least(0, 25)  # Adam steps for each z_i at the last layer
    v_lr: float = at_least(0.0, 0.5)   # Adam learning rate
    v_weight_decay: float = at_least(0.0, 0.5)  # weight of ||delta|| / ||h0||^2 (kmeng01/memit compute_z)
    clamp_norm_factor: float = at_least(0.0, 0.75)  # ||delta|| <= clamp_norm_factor * ||h0||
    kl_factor: float = at_least(0.0, 0.0625)  # weight of the KL essence term
    kl_prompt: str = "{} is a"         # essence prompt for the KL term
    context_prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_CONTEXT_PREFIXES))
    early_stop_prob: float = 0.9       # per request: stop optimising z_i once its targets are this likely
    fast: bool = True                  # run the blocks below the edit once; lm head only where the loss looks
    mom2_update_weight: float = at_least(0.0, 15000.0)  # lambda in (lambda C + K K^T): trust in the preserved keys
    mom2_n_samples: int = at_least(1, 100000)  # tokens of the second-moment corpus
    mom2_lambda: float = at_least(0.0, 0.0)  # ridge on C as in ROME
    seed: int = 0


def memit_closed_form(C: torch.Tensor | None, K: torch.Tensor, R: torch.Tensor, lam: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) with Delta = u v^T = R K^T (lam C + K K^T)^-1, in float64, returned float32.
    ``K`` (in, n) keys, ``R`` (out, n) residuals, ``C`` (in, in) or None for the identity."""
    u, v, _ = memit_solve(C, K, R, lam)
    return u, v


def memit_solve(C: torch.Tensor | None, K: torch.Tensor, R: torch.Tensor, lam: float
                ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``memit_closed_form`` plus how close to singular the solve was, from the same float64 numbers
    (no second solve). With A = lam C + K K^T, the gain G = K^T A^-1 K (n x n) has eigenvalues
    g = s / (1 + s), where s are those of K^T (lam C)^-1 K (Woodbury). ``denominator`` = the smallest
    eigenvalue of K^T C^-1 K = lam * s_min: for one request it is ROME's (C^-1 k)^T k. ``gain_min`` /
    ``gain_max``: how far the update goes to the targets (1: all the way). ``key_norm``: the largest key."""
    K64, R64 = K.to(torch.float64), R.to(torch.float64)
    d = K64.shape[0]
    C64 = torch.eye(d, dtype=torch.float64, device=K.device) if C is None else C.to(torch.float64)
    A = lam * C64 + K64 @ K64.T
    v = solve_psd(A, K64)  # A symmetric, so (K^T A^-1)^T = A^-1 K
    g = torch.linalg.eigvalsh(0.5 * (K64.T @ v + v.T @ K64))
    g_min, g_max = float(g[0]), float(g[-1])
    denom = lam * g_min / (1.0 - g_min) if 0.0 <= g_min < 1.0 and lam > 0 else None
    info = {"key_norm": float(K64.norm(dim=0).max()), "gain_min": g_min, "gain_max": g_max,
            "denominator": denom}
    return R64.to(torch.float32), v.to(torch.float32), info


@torch.no_grad()
def _keys_and_outputs(model, spec, rows_list, layer: int, last_layer: int, mlp_norm_layer: bool):
    """Per request: mean key at ``layer`` over rewrite rows, residual at ``last_layer`` (row 0) and the
    projection's output at ``layer`` (row 0)."""
    dev = next(model.parameters()).device
    keys, hs, mouts = [], [], []
    mod = model.get_submodule(spec.rewrite_module.format(layer))
    blk = model.get_submodule(spec.layer_module.format(last_layer))
    for rows in rows_list:
        cap: dict = {}
        h1 = mod.register_forward_pre_hook(lambda _m, i: cap.__setitem__("k", i[0].detach()))
        h2 = mod.register_forward_hook(lambda _m, _i, o: cap.__setitem__("m", o.detach()))
        h3 = blk.register_forward_hook(lambda _m, _i, o: cap.__setitem__("h", (o if torch.is_tensor(o) else o[0]).detach()))
        try:
            model(input_ids=rows.input_ids.to(dev), attention_mask=rows.attention_mask.to(dev), use_cache=False,
                  logits_to_keep=1)
        finally:
            h1.remove(), h2.remove(), h3.remove()
        rw = [r for r in range(len(rows.kind)) if rows.kind[r] == "rewrite"]
        keys.append(torch.stack([cap["k"][r, int(rows.lookup[r])].float() for r in rw]).mean(0))
        hs.append(cap["h"][0, int(rows.lookup[0])].float())
        mouts.append(cap["m"][0, int(rows.lookup[0])].float())
    return torch.stack(keys, 1), torch.stack(hs, 1), torch.stack(mouts, 1)


def _through_post_norm(model, spec, layer: int, m0: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """Change of the projection output that moves norm(m) by ``resid`` (columns), as far as a scale-free
    norm allows: m* = (y0 + r) / g * rms(m0), with g the norm's per-channel gain (the norm of a ones
    vector). Channels whose gain is ~0 cannot be moved through the norm; they keep their value."""
    norm = model.get_submodule(spec.mlp_post_norm.format(layer))
    dt = next(norm.parameters()).dtype
    with torch.no_grad():
        g = norm(torch.ones(1, m0.shape[0], device=m0.device, dtype=dt))[0].float()
        y0 = norm(m0.T.to(dt)).float().T
        rms = m0.pow(2).mean(0, keepdim=True).sqrt()
        live = g.abs() > 1e-2 * g.abs().median()
        g_safe = torch.where(live, g, torch.ones_like(g))
        m_star = torch.where(live[:, None], (y0 + resid) / g_safe[:, None] * rms, m0)
    return m_star - m0


@register_editor
class MEMITEditor(Editor):
    name = "memit"
    hparams_class = MEMITHyperParams

    def stats_layers(self, hparams: MEMITHyperParams) -> list[int]:
        return sorted(hparams.layers)

    def edit(self, model, tokenizer, spec, requests, hparams: MEMITHyperParams, *, stats=None, state=None,
             progress: bool = False) -> EditResult:
        hp = hparams
        t_all = time.perf_counter()
        layers = sorted(hp.layers)
        last = layers[-1]
        pad = pad_id_of(tokenizer)
        rows_list = [build_rows(tokenizer, spec, r, hp.context_prefixes, hp.kl_prompt, pad) for r in requests]
        # 1. target residuals z_i at the last layer
        zs, per_request = [], []
        for req, rows in tqdm(list(zip(requests, rows_list)), desc="MEMIT targets", disable=not progress, leave=False):
            vr = optimize_value(model, spec, rows, point="block", layer=last, num_steps=hp.v_num_grad_steps,
                                lr=hp.v_lr, weight_decay=hp.v_weight_decay, clamp_norm_factor=hp.clamp_norm_factor,
                                kl_factor=hp.kl_factor, early_stop_prob=hp.early_stop_prob, fast=hp.fast)
            zs.append(vr.v0 + vr.delta)
            per_request.append({**vr.diagnostics, "subject": req.subject, "target": req.target_new})
        Z = torch.stack(zs, 1)
        # 2. spread over the layers, each seeing the updates below it
        deltas, applied, stats_used, per_layer = [], [], [], []
        for i, layer in enumerate(layers):
            t = time.perf_counter()
            with pending_deltas(model, spec, applied):
                K, H, M = _keys_and_outputs(model, spec, rows_list, layer, last, spec.mlp_post_norm is not None)
            R = (Z - H) / (len(layers) - i)
            if spec.mlp_post_norm:
                R = _through_post_norm(model, spec, layer, M, R)
            C = None
            if stats is not None:
                digest, C = stats.get(model, tokenizer, spec, layer)
                C = regularised(C.to(K.device), hp.mom2_lambda)
                stats_used.append(digest)
            u, v, solve = memit_solve(C, K, R, hp.mom2_update_weight)
            W = weight_out_in(spec, model.get_submodule(spec.rewrite_module.format(layer)).weight)
            applied.append((layer, (u.to(torch.float64) @ v.to(torch.float64).T).to(W.dtype)))
            deltas.append(TensorDelta(tensor=spec.rewrite_weight(layer), kind="low_rank",
                                      factors={k_: t_.cpu() for k_, t_ in factors_to_storage(spec, u, v).items()}))
            per_layer.append({"layer": layer, "resid_norm": float(R.norm()), "delta_fro_norm": deltas[-1].norm(), **solve,
                              "time_s": round(time.perf_counter() - t, 3)})
        return EditResult(deltas=deltas, stats_used=stats_used, diagnostics={
            "method": "memit", "layers": layers, "second_moment": "C" if stats is not None else "identity",
            "requests": per_request, "layers_detail": per_layer, "time_s": round(time.perf_counter() - t_all, 3)})
