"""KN, knowledge neurons (Dai et al. 2022): find the FFN neurons that express the old fact by integrated
gradients, then rewrite their value vectors (their columns of the FFN output projection).

Following the reference code (EasyEdit ``models/kn``, ``knowledge_neurons.py``):

1. Attribution. For every layer l and FFN neuron i, with a_i the neuron's activation at the prompt's
   last position and P(y | a) the probability of the old answer's token there when that activation is
   replaced by a,
       score_i = a_i / m * sum_{k=0}^{m-1} dP(y | alpha_k a) / d(alpha_k a)_i,  alpha_k = k / (m - 1)
   (``scaled_input`` uses torch.linspace(0, 1, m)). A multi-token answer is attributed token by token
   along the model's own greedy continuation, and the scores are averaged.
2. Neurons: score > adaptive_threshold * (largest score over all layers); with ``refine`` (several
   prompts) only those shared by more than p of the prompts (one prompt here, so refine is off).
3. Edit (``modify_weights``, mode "edit"): for each neuron, its column of the output projection gets
   + 2 e(target) - 2 e(prediction) for a one-token target, or + sum e(target tokens) - sum e(predicted
   tokens) otherwise, with e the input word embeddings and the prediction the model's greedy
   continuation of the prompt.

The neuron activations are the FFN hidden values that enter the output projection (the paper's
"intermediate neurons"; for gated MLPs act(gate) * up). EasyEdit patches the output of the first FFN
linear (before its activation) for GPT-J; see docs/methods.md. The delta is sparse: only the columns
of the neurons found, stored as (indices, values) of the flattened tensor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ledger.errors import InputError
from simulator.deltas import EditResult, TensorDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import check_request, frozen_below, target_token_ids, token_ids
from simulator.editors.hparams import at_least


@dataclass
class KNHyperParams:
    steps: int = at_least(2, 20)        # m: points of the integrated-gradient Riemann sum (reference: 20)
    batch_size: int = at_least(1, 20)   # rows per forward pass of those points (reference: 20)
    adaptive_threshold: float = at_least(0.0, 0.1)  # keep neurons above this fraction of the largest score
    refine: bool = False                # keep only neurons shared by > p of several prompts (one prompt: off)
    p: float = at_least(0.0, 0.4)       # sharing fraction for refine
    attribution_layers: list[int] = field(default_factory=list)  # layers scored; [] = every layer (reference)
    lr_scale: float = at_least(0.0, 1.0)  # multiplies the value change (EasyEdit reads it but applies 1.0)
    max_neurons: int = at_least(1, 1000)  # refuse an edit that would rewrite more neurons than this
    seed: int = 0


def _positions_ids(tokenizer, spec, text: str) -> list[int]:
    return token_ids(tokenizer, spec.prompt_prefix + text)


def _ffn_module(model, spec, layer: int):
    return model.get_submodule(spec.rewrite_module.format(layer))


@torch.no_grad()
def _greedy(model, ids: list[int], n: int) -> list[int]:
    """The model's greedy continuation of ``ids``, ``n`` tokens."""
    dev = next(model.parameters()).device
    out = []
    cur = list(ids)
    for _ in range(n):
        logits = model(input_ids=torch.tensor([cur], device=dev), use_cache=False, logits_to_keep=1).logits
        t = int(logits[0, -1].argmax())
        out.append(t)
        cur.append(t)
    return out


def integrated_gradients(model, spec, ids: list[int], target: int, layer: int, steps: int,
                         batch_size: int) -> torch.Tensor:
    """score (d_ff,) of every FFN neuron at ``layer`` for the next token ``target`` after ``ids`` (the
    formula in the module docstring), float32."""
    dev = next(model.parameters()).device
    mod = _ffn_module(model, spec, layer)
    x = torch.tensor([ids], device=dev)
    base: dict = {}

    def grab(_m, inputs):
        base["a"] = inputs[0][0, -1].detach().float().clone()

    h = mod.register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            model(input_ids=x, use_cache=False, logits_to_keep=1)
    finally:
        h.remove()
    a = base["a"]
    alphas = torch.linspace(0, 1, steps, device=dev)
    total = torch.zeros_like(a)
    for chunk in alphas.split(batch_size):
        scaled = (chunk[:, None] * a[None]).requires_grad_(True)      # (b, d_ff)
        rows = x.expand(len(chunk), -1)
        mask = torch.ones_like(rows)

        def replace(_m, inputs, scaled=scaled):
            act = inputs[0].clone()
            act[:, -1] = scaled.to(act.dtype)
            return (act,) + tuple(inputs[1:])

        with frozen_below(model, spec, layer, rows, mask):
            h = mod.register_forward_pre_hook(replace)
            try:
                logits = model(input_ids=rows, attention_mask=mask, use_cache=False, logits_to_keep=1).logits
            finally:
                h.remove()
        probs = torch.softmax(logits[:, -1].float(), -1)[:, target]
        (grad,) = torch.autograd.grad(probs.sum(), scaled)
        total += grad.detach().float().sum(0)
    return total * a / steps


def attribution_scores(model, spec, ids: list[int], answer: list[int], layers: list[int], steps: int,
                       batch_size: int, progress: bool = False) -> torch.Tensor:
    """(len(layers), d_ff) scores for the answer tokens, averaged over them; each token after the model's
    own greedy continuation of the prompt (as the reference does for autoregressive models)."""
    continuation = _greedy(model, ids, max(0, len(answer) - 1))
    per_token = []
    for i, tok in enumerate(answer):
        prefix = ids + continuation[:i]
        per_token.append(torch.stack([integrated_gradients(model, spec, prefix, tok, layer, steps, batch_size)
                                      for layer in tqdm(layers, desc=f"KN attribution (token {i + 1}/{len(answer)})",
                                                        disable=not progress, leave=False)]))
    return torch.stack(per_token).mean(0)


def select_neurons(scores: torch.Tensor, layers: list[int], adaptive_threshold: float) -> tuple[list[tuple[int, int]], float]:
    """Neurons (layer, index) whose score exceeds adaptive_threshold * max score, and that threshold."""
    threshold = float(scores.max()) * adaptive_threshold
    found = torch.nonzero(scores > threshold).tolist()
    return [(layers[r], c) for r, c in found], threshold


def value_change(model, spec, tokenizer, ids: list[int], prompt_text: str, target: str) -> tuple[torch.Tensor, dict]:
    """The change of each selected neuron's value vector: +2 e(t) - 2 e(p) for a one-token target, else
    sum e(target tokens) - sum e(greedy prediction tokens) (reference ``modify_weights``)."""
    emb = model.get_input_embeddings().weight.detach().float()
    t_ids = target_token_ids(tokenizer, prompt_text, target)
    pred = _greedy(model, ids, len(t_ids))
    if len(t_ids) == 1:
        change = 2 * emb[t_ids[0]] - 2 * emb[pred[0]]
    else:
        change = emb[t_ids].sum(0) - emb[pred].sum(0)
    return change, {"target_ids": t_ids, "predicted_ids": pred}


def sparse_columns(spec, shape: tuple[int, int], cols: list[int], change: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flat (indices, values) adding ``change`` (out,) to columns ``cols`` of an (out, in) weight, laid out
    like the stored tensor (transposed storage: rows of an (in, out) tensor)."""
    cols = sorted(cols)
    if spec.weight_transposed:           # stored (in, out): a neuron is a row
        n_out = shape[1]
        idx = torch.cat([torch.arange(c * n_out, (c + 1) * n_out) for c in cols])
        val = change.repeat(len(cols))
    else:                                # stored (out, in): a neuron is a column
        n_out, n_in = shape
        rows = torch.arange(n_out)
        idx = (rows[:, None] * n_in + torch.tensor(cols)[None]).reshape(-1)
        val = change[:, None].expand(n_out, len(cols)).reshape(-1)
    return {"indices": idx.to(torch.int64).contiguous(), "values": val.to(torch.float32).contiguous()}


def neurons_of_delta(spec, delta: TensorDelta, shape: tuple[int, int]) -> set[int]:
    """The neuron indices a sparse delta of one output projection touches (inverse of ``sparse_columns``)."""
    idx = delta.factors["indices"].to(torch.int64)
    if spec.weight_transposed:
        return set((idx // shape[1]).tolist())
    return set((idx % shape[1]).tolist())


@register_editor
class KNEditor(Editor):
    name = "kn"
    hparams_class = KNHyperParams

    def edit(self, model, tokenizer, spec, requests, hparams: KNHyperParams, *, stats=None, state=None,
             progress: bool = False) -> EditResult:
        hp = hparams
        t_all = time.perf_counter()
        n_layers = len(model.get_submodule(spec.layer_module.rsplit(".", 1)[0].replace(".{}", "")))
        layers = list(hp.attribution_layers) or list(range(n_layers))
        bad = [x for x in layers if not 0 <= x < n_layers]
        if bad:
            raise InputError(f"kn hyper-parameter 'attribution_layers': {bad} outside the model (layers 0..{n_layers - 1})")
        if hp.refine:
            raise InputError("kn: refine needs several prompts per fact; an edit request has one, so set refine to false")
        per_request = []
        for req in requests:
            check_request(req)
            if not req.target_old:
                raise InputError(f"kn attributes the old answer, but the request for {req.subject!r} has no "
                                 "target_old; give it the answer the model gives today")
            text = req.text
            ids = _positions_ids(tokenizer, spec, text)
            answer = target_token_ids(tokenizer, spec.prompt_prefix + text, req.target_old)
            t = time.perf_counter()
            scores = attribution_scores(model, spec, ids, answer, layers, hp.steps, hp.batch_size, progress)
            neurons, threshold = select_neurons(scores, layers, hp.adaptive_threshold)
            if len(neurons) > hp.max_neurons:
                raise InputError(f"kn found {len(neurons)} neurons for {req.subject!r} (max_neurons {hp.max_neurons}); "
                                 "raise adaptive_threshold or max_neurons")
            change, info = value_change(model, spec, tokenizer, ids, spec.prompt_prefix + text, req.target_new)
            change = change * hp.lr_scale
            per_request.append({"subject": req.subject, "target": req.target_new, "old": req.target_old,
                                "neurons": [list(n) for n in neurons], "threshold": threshold,
                                "max_score": float(scores.max()), "change_norm": float(change.norm()),
                                "attribution_s": round(time.perf_counter() - t, 3), **info,
                                "_change": change})
        deltas = []
        for layer in sorted({n[0] for r in per_request for n in r["neurons"]}):
            mod = _ffn_module(model, spec, layer)
            w = mod.weight
            shape_out_in = (int(w.shape[1]), int(w.shape[0])) if spec.weight_transposed else tuple(int(s) for s in w.shape)
            total: dict[int, torch.Tensor] = {}
            for r in per_request:
                for nl, col in r["neurons"]:
                    if nl == layer:      # several requests touching one neuron: their changes add up
                        total[col] = total[col] + r["_change"] if col in total else r["_change"].clone()
            cols = sorted(total)
            parts = [sparse_columns(spec, shape_out_in, [c], total[c]) for c in cols]
            idx = torch.cat([p["indices"] for p in parts])
            val = torch.cat([p["values"] for p in parts])
            order = torch.argsort(idx)
            deltas.append(TensorDelta(tensor=spec.rewrite_weight(layer), kind="sparse",
                                      factors={"indices": idx[order].contiguous(), "values": val[order].contiguous()}))
        for r in per_request:
            del r["_change"]
        return EditResult(deltas=deltas, diagnostics={
            "method": self.name, "layers_scored": layers, "requests": per_request,
            "neurons": sum(len(r["neurons"]) for r in per_request), "time_s": round(time.perf_counter() - t_all, 3)})
