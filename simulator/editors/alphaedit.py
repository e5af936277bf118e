"""AlphaEdit (Fang et al., ICLR 2025): MEMIT with its update projected onto the null space of the
preserved knowledge's keys, so that those keys' outputs do not move at all.

For each edited layer (reference: jianghoucheng/AlphaEdit, ``AlphaEdit_main.py`` and ``get_project`` in
``experiments/evaluate.py``):

    P  = U0 U0^T, U0 = eigenvectors of C = E[k k^T] (the stored second moment) with eigenvalue < threshold
    Kp = keys of the earlier edits (sequential editing), K = this step's keys, R = residuals as in MEMIT
    Delta^T = (P (K K^T + Kp Kp^T) + L2 I)^-1 P K R^T

Delta = u v^T with u = R and v = (P (K K^T + Kp Kp^T) + L2 I)^-1 P K, so the rank is the number of
requests. v lies in the range of P (v = P (K - (K K^T + Kp Kp^T) v) / L2), hence Delta k0 = 0 for every
key k0 in the preserved span; v is projected by P once more after the solve so that rounding does not
leak into that span.

The keys of earlier edits (``Kp Kp^T``, the reference's ``cache_c``) are method state: each step's
``StateDelta`` holds that step's keys per layer, taken after the update as the reference does, and the
state is their sum of outer products, folded step by step. So revert, branch and resume fold exactly
the keys of the steps they keep. The state does not change how the model answers (no hooks, no context).
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

import torch
from tqdm import tqdm

from ledger.errors import InputError
from simulator.deltas import EditResult, StateDelta, TensorDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import build_rows, factors_to_storage, pad_id_of, pending_deltas, weight_out_in
from simulator.editors.hparams import DEFAULT_CONTEXT_PREFIXES, at_least
# MEMIT's key/residual pass and its map through a post-MLP norm are AlphaEdit's too (same reference code)
from simulator.editors.memit import _keys_and_outputs, _through_post_norm
from simulator.editors.value import optimize_value


@dataclass
class AlphaEditHyperParams:
    layers: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7, 8])  # layers the update is spread over
    v_num_grad_steps: int = at_least(0, 25)  # Adam steps for each target z_i at the last layer
    v_lr: float = at_least(0.0, 0.5)   # Adam learning rate
    v_weight_decay: float = at_least(0.0, 0.5)  # weight of ||delta|| / ||h0||^2 (kmeng01/memit compute_z)
    clamp_norm_factor: float = at_least(0.0, 0.75)  # ||delta|| <= clamp_norm_factor * ||h0||
    kl_factor: float = at_least(0.0, 0.0625)  # weight of the KL essence term
    kl_prompt: str = "{} is a"         # essence prompt for the KL term
    context_prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_CONTEXT_PREFIXES))
    early_stop_prob: float = 0.9       # per request: stop optimising z_i once its targets are this likely
    fast: bool = True                  # run the blocks below the edit once; lm head only where the loss looks
    nullspace_threshold: float = at_least(0.0, 2e-2)  # eigenvalues of C below this span the null space
    L2: float = at_least(0.0, 10.0)    # ridge on the projected normal equations (the reference's L2)
    sequential: bool = True            # accumulate earlier edits' keys (Kp Kp^T) as method state
    mom2_n_samples: int = at_least(1, 100000)  # tokens of the second-moment corpus
    seed: int = 0


@dataclass
class AlphaState:
    """Keys of the edits so far, per layer: their rows (canonical form) and their sum of outer products."""
    keys: dict[int, torch.Tensor] = field(default_factory=dict)   # layer -> (n, d_in) float32, in edit order
    cache: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> sum k k^T, (d_in, d_in) float64


class _NoRuntime:
    """AlphaEdit's state changes nothing at inference time."""

    def context(self, prompt: str) -> str:
        return ""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield


def null_space_projector(C: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
    """(P, number of preserved directions): P = U0 U0^T over the eigenvectors of the symmetric C whose
    eigenvalue is below ``threshold``, in float64. (The reference takes an SVD of C; for a symmetric
    positive semi-definite C its singular vectors and values are these eigenvectors and eigenvalues.)"""
    C64 = C.to(torch.float64)
    S, U = torch.linalg.eigh((C64 + C64.T) / 2)
    null = S < threshold
    U0 = U[:, null]
    return U0 @ U0.T, int((~null).sum())


def alphaedit_closed_form(P: torch.Tensor, K: torch.Tensor, R: torch.Tensor, Kp_cov: torch.Tensor | None,
                          l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) with Delta = u v^T, Delta^T = (P (K K^T + Kp Kp^T) + l2 I)^-1 P K R^T (float64 solve, float32
    factors). ``K`` (in, n) keys, ``R`` (out, n) residuals, ``Kp_cov`` (in, in) = Kp Kp^T or None."""
    P64, K64 = P.to(torch.float64), K.to(torch.float64)
    A = K64 @ K64.T
    if Kp_cov is not None:
        A = A + Kp_cov.to(torch.float64)
    d = K64.shape[0]
    M = P64 @ A + l2 * torch.eye(d, dtype=torch.float64, device=K.device)
    v = torch.linalg.solve(M, P64 @ K64)
    v = P64 @ v                       # in the range of P already; this removes rounding drift out of it
    return R.to(torch.float32), v.to(torch.float32)


@register_editor
class AlphaEditEditor(Editor):
    name = "alphaedit"
    hparams_class = AlphaEditHyperParams
    changes_weights = True
    state = "the keys of earlier edits per edited layer (their sum of outer products, the reference's cache_c)"

    def __init__(self) -> None:
        # P is a pure function of an immutable, content-addressed statistics artifact and the threshold:
        # remembering it changes no result and saves one eigendecomposition per layer per edit.
        self._projectors: OrderedDict[tuple[str, float], tuple[torch.Tensor, int]] = OrderedDict()

    def stats_layers(self, hparams: AlphaEditHyperParams) -> list[int]:
        return sorted(hparams.layers)

    def projector(self, digest: str, C: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
        key = (digest, float(threshold))
        if key not in self._projectors:
            self._projectors[key] = null_space_projector(C, threshold)
            while len(self._projectors) > 8:
                self._projectors.popitem(last=False)
        return self._projectors[key]

    def edit(self, model, tokenizer, spec, requests, hparams: AlphaEditHyperParams, *, stats=None, state=None,
             progress: bool = False) -> EditResult:
        hp = hparams
        if stats is None:
            raise InputError("alphaedit projects onto the null space of the second-moment statistics: give it a "
                             "statistics provider (a replay collects them before the first edit)")
        t_all = time.perf_counter()
        layers = sorted(hp.layers)
        last = layers[-1]
        st = state if (state is not None and hp.sequential) else AlphaState()
        pad = pad_id_of(tokenizer)
        rows_list = [build_rows(tokenizer, spec, r, hp.context_prefixes, hp.kl_prompt, pad) for r in requests]
        zs, per_request = [], []
        for req, rows in tqdm(list(zip(requests, rows_list)), desc="AlphaEdit targets", disable=not progress,
                              leave=False):
            vr = optimize_value(model, spec, rows, point="block", layer=last, num_steps=hp.v_num_grad_steps,
                                lr=hp.v_lr, weight_decay=hp.v_weight_decay, clamp_norm_factor=hp.clamp_norm_factor,
                                kl_factor=hp.kl_factor, early_stop_prob=hp.early_stop_prob, fast=hp.fast)
            zs.append(vr.v0 + vr.delta)
            per_request.append({**vr.diagnostics, "subject": req.subject, "target": req.target_new})
        Z = torch.stack(zs, 1)
        deltas, applied, stats_used, per_layer = [], [], [], []
        for i, layer in enumerate(layers):
            t = time.perf_counter()
            with pending_deltas(model, spec, applied):
                K, H, M = _keys_and_outputs(model, spec, rows_list, layer, last, spec.mlp_post_norm is not None)
            R = (Z - H) / (len(layers) - i)
            if spec.mlp_post_norm:
                R = _through_post_norm(model, spec, layer, M, R)
            digest, C = stats.get(model, tokenizer, spec, layer)
            stats_used.append(digest)
            P, kept = self.projector(digest, C, hp.nullspace_threshold)
            P = P.to(K.device)
            u, v = alphaedit_closed_form(P, K, R, st.cache.get(layer), hp.L2)
            W = weight_out_in(spec, model.get_submodule(spec.rewrite_module.format(layer)).weight)
            applied.append((layer, (u.to(torch.float64) @ v.to(torch.float64).T).to(W.dtype)))
            deltas.append(TensorDelta(tensor=spec.rewrite_weight(layer), kind="low_rank",
                                      factors={k_: t_.cpu() for k_, t_ in factors_to_storage(spec, u, v).items()}))
            per_layer.append({"layer": layer, "preserved_dims": kept, "null_dims": int(P.shape[0] - kept),
                              "resid_norm": float(R.norm()), "delta_fro_norm": deltas[-1].norm(),
                              "key_norm": float(K.to(torch.float64).norm(dim=0).max()),   # health telemetry
                              "earlier_keys": int(st.keys[layer].shape[0]) if layer in st.keys else 0,
                              "time_s": round(time.perf_counter() - t, 3)})
        sdelta = None
        if hp.sequential:
            # the keys of this step's edits, on the model with every layer's update in place (reference order)
            with pending_deltas(model, spec, applied):
                new_keys = {layer: _keys_and_outputs(model, spec, rows_list, layer, last, False)[0].T.contiguous().cpu()
                            for layer in layers}
            sdelta = StateDelta(tensors={f"keys.{layer}": k for layer, k in new_keys.items()},
                                data={"layers": layers})
        return EditResult(deltas=deltas, stats_used=stats_used, state=sdelta, diagnostics={
            "method": self.name, "layers": layers, "nullspace_threshold": hp.nullspace_threshold,
            "requests": per_request, "layers_detail": per_layer, "time_s": round(time.perf_counter() - t_all, 3)})

    # ---- method state: the earlier edits' keys
    def empty_state(self) -> AlphaState:
        return AlphaState()

    def fold(self, state: AlphaState, delta: StateDelta) -> AlphaState:
        """Add one step's keys: rows appended, outer products summed one at a time in float64 (elementwise
        products and adds, so the sum does not depend on BLAS blocking)."""
        for name, k in sorted(delta.tensors.items()):
            layer = int(name.split(".", 1)[1])
            k = k.to(torch.float32)
            cache = state.cache.get(layer)
            if cache is None:
                cache = torch.zeros(k.shape[1], k.shape[1], dtype=torch.float64)
            for row in k.to(torch.float64):
                cache.add_(torch.outer(row, row))
            state.cache[layer] = cache
            state.keys[layer] = torch.cat([state.keys[layer], k]) if layer in state.keys else k.clone()
        return state

    def snapshot(self, state: AlphaState) -> StateDelta:
        if not state.keys:
            return StateDelta()
        return StateDelta(tensors={f"keys.{layer}": state.keys[layer] for layer in sorted(state.keys)},
                          data={"layers": sorted(state.keys)})

    def runtime(self, model, tokenizer, spec, state: AlphaState) -> _NoRuntime:
        return _NoRuntime()

    def export_readme(self) -> str:
        return (f"`{self.name}` changes the weights (they are in this directory) and keeps the keys of the edits "
                f"so far, which a further sequential AlphaEdit edit projects against. "
                f"`method_state/{self.name}.safetensors` holds them as `keys.<layer>` (one row per edit, in order); "
                "the reference's `cache_c` for a layer is the sum of their outer products.")
