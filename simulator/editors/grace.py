"""GRACE (Hartvigsen et al. 2023): a codebook of keys, values and deferral radii around one layer.

The codebook wraps the MLP output projection of one block (``spec.rewrite_module``; EasyEdit's GPT-J file
wraps ``transformer.h[25].mlp.fc_out``). A key is the projection's *input* at the last token of an edit
prompt; its value replaces the projection's *output* there. At inference, at every position, the input
goes to its nearest key: within that key's radius the output is the key's value, otherwise the layer runs
untouched (bit for bit: the hook returns nothing).

Each edit, as in the reference (Thartvigsen/GRACE ``GRACEAdapter.forward`` at iteration 0):

    nearest key farther than eps + its radius  → a new entry (radius eps)
    nearer, and its label (target) differs     → a new entry; both radii split: d/2 - 1e-5 (old), d/2 (new)
    nearer, same label                         → its radius expanded to d if d > radius ("coverage"; or
                                                 "moving_average": the key moves halfway to the query)
then the value of the chosen entry (the new one, or the nearest) is trained with Adam (``edit_lr``,
``n_iter`` steps) on the edit's target tokens, teacher-forced, with the whole codebook active.

Where this differs from the reference (docs/methods.md says why): every position is a query (the
reference's ``replace_last`` at each token, i.e. what a KV-cached generation sees), ties between
equidistant keys go to the newest entry, and labels are compared as target strings.

Method state: the codebook, recorded per step as the operations the step made (``add`` an entry keyed by
a step-unique id; ``radius``, ``key`` or ``value`` of an existing entry). ``fold`` applies them in order and
skips operations on an entry that is absent (its step was reverted), so any sub-sequence of steps folds.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
from tqdm import tqdm

from ledger.errors import InputError
from simulator.deltas import EditResult, StateDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import check_request, frozen_below, target_token_ids, token_ids
from simulator.editors.hparams import at_least

EXPAND_MODES = ("coverage", "moving_average")
VALUE_INITS = ("cold", "warm")
SPLIT_MARGIN = 1e-5                 # the reference's split: old radius d/2 - 1e-5, new radius d/2


@dataclass
class GRACEHyperParams:
    layer: int = 1                  # block whose MLP output projection (spec.rewrite_module) the codebook wraps
    eps: float = at_least(0.0, 1.0)  # radius of a new key (Euclidean distance in the projection's input space)
    eps_expand: str = "coverage"    # same-label edit near a key: "coverage" (radius := d) or "moving_average"
    edit_lr: float = at_least(0.0, 1.0)  # Adam learning rate of the value
    n_iter: int = at_least(1, 100)  # Adam steps on the value (the reference has no early stop)
    val_init: str = "cold"          # new value: "cold" = uniform [0, 1) (seeded per step), "warm" = the layer's output
    replacement: str = "replace_last"  # the only mode here: replace the output at the query's own position


@dataclass
class Entry:
    layer: int
    key: torch.Tensor               # (d_in,) float32
    value: torch.Tensor             # (d_out,) float32
    radius: float
    label: str                      # the edit's target: a same-label edit expands, another label splits


@dataclass
class Codebook:
    entries: dict[str, Entry] = field(default_factory=dict)   # id -> entry, in the order they were added

    def of_layer(self, layer: int) -> list[tuple[str, Entry]]:
        return [(i, e) for i, e in self.entries.items() if e.layer == layer]


# ----------------------------------------------------------------------------- the codebook's geometry
def nearest(keys: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to, and index of, each query's nearest key; among equidistant keys the newest (last).
    Computed pair by pair (no matrix-product shortcut), so a pair's distance never depends on the batch."""
    d = torch.cdist(queries.float(), keys.float(), compute_mode="donot_use_mm_for_euclid_dist")  # (m, n)
    dist, j = d.flip(1).min(1)
    return dist, keys.shape[0] - 1 - j


@dataclass
class Placement:
    """What one edit does to the codebook before its value is trained."""
    kind: str                       # "add" (new entry), "split" (new entry, radii split), "expand", "within"
    near: str | None = None         # id of the nearest same-layer entry (None: empty codebook)
    distance: float | None = None
    near_radius: float | None = None  # the nearest entry's new radius (split, expand)
    near_key: torch.Tensor | None = None  # its new key (moving_average)
    new_radius: float | None = None  # the new entry's radius (add, split)


def place(book: list[tuple[str, Entry]], query: torch.Tensor, label: str, eps: float, expand: str) -> Placement:
    """GRACE's codebook rule for one edit (the reference's iteration 0) over the entries of its layer."""
    if not book:
        return Placement("add", new_radius=eps)
    keys = torch.stack([e.key for _, e in book]).to(query.device)
    dist, idx = nearest(keys, query[None])
    d, (nid, ne) = float(dist[0]), book[int(idx[0])]
    if d > eps + ne.radius:
        return Placement("add", nid, d, new_radius=eps)
    if ne.label != label:
        return Placement("split", nid, d, near_radius=d / 2 - SPLIT_MARGIN, new_radius=d / 2)
    if d <= ne.radius:
        return Placement("within", nid, d)
    if expand == "coverage":
        return Placement("expand", nid, d, near_radius=d)
    return Placement("expand", nid, d, near_radius=d, near_key=0.5 * ne.key + 0.5 * query.float())


# ----------------------------------------------------------------------------- inference
def _replace(x: torch.Tensor, output: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
             radii: torch.Tensor) -> torch.Tensor | None:
    """The layer's output with every position whose input lies within its nearest key's radius replaced
    by that key's value; None when no position does (the output stays the very same tensor)."""
    flat = x.reshape(-1, x.shape[-1])
    dist, idx = nearest(keys.to(flat.device), flat)
    hit = dist <= radii.to(flat.device)[idx]
    if not bool(hit.any()):
        return None
    out = output.reshape(-1, output.shape[-1]).clone()
    out[hit] = values.to(device=out.device, dtype=out.dtype)[idx[hit]]
    return out.reshape(output.shape)


def _hook(keys, values, radii):
    def hook(_m, inputs, output):
        return _replace(inputs[0], output, keys, values, radii)
    return hook


class GRACERuntime:
    """The codebook installed as forward hooks, one per wrapped layer."""

    def __init__(self, model, spec, book: Codebook):
        self.model, self.spec = model, spec
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for layer in sorted({e.layer for e in book.entries.values()}):
            es = [e for _, e in book.of_layer(layer)]
            self.layers[layer] = (torch.stack([e.key for e in es]), torch.stack([e.value for e in es]),
                                  torch.tensor([e.radius for e in es], dtype=torch.float32))

    def context(self, prompt: str) -> str:
        return ""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        handles = []
        try:
            for layer, (k, v, r) in self.layers.items():
                mod = self.model.get_submodule(self.spec.rewrite_module.format(layer))
                handles.append(mod.register_forward_hook(_hook(k, v, r)))
            yield
        finally:
            for h in handles:
                h.remove()


# ----------------------------------------------------------------------------- the edit
def _check(hp: GRACEHyperParams) -> None:
    if hp.eps_expand not in EXPAND_MODES:
        raise InputError(f"grace hyper-parameter 'eps_expand' must be one of {EXPAND_MODES}, got {hp.eps_expand!r}")
    if hp.val_init not in VALUE_INITS:
        raise InputError(f"grace hyper-parameter 'val_init' must be one of {VALUE_INITS}, got {hp.val_init!r}")
    if hp.replacement != "replace_last":
        raise InputError(f"grace hyper-parameter 'replacement' {hp.replacement!r} is not supported: only "
                         "'replace_last' (the value replaces the output at the query's own position)")


def _entry_id(parent: str, index: int, key: torch.Tensor, label: str) -> str:
    """Unique along a lineage: the codebook it was added to, its place in the step, its key and label."""
    h = hashlib.sha256(f"{parent}|{index}|{label}|".encode())
    h.update(key.detach().contiguous().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def _query(model, spec, layer: int, ids: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The wrapped projection's input and output at ``pos`` (with whatever hooks are installed)."""
    mod = model.get_submodule(spec.rewrite_module.format(layer))
    got = {}

    def grab(_m, inputs, output):
        got["x"] = inputs[0][0, pos].detach().float().clone()
        got["y"] = output[0, pos].detach().float().clone()
    h = mod.register_forward_hook(grab)
    try:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, logits_to_keep=1)
    finally:
        h.remove()
    return got["x"], got["y"]


def _train_value(model, spec, layer: int, ids: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                 keys: torch.Tensor, values: torch.Tensor, radii: torch.Tensor, slot: int, init: torch.Tensor,
                 hp: GRACEHyperParams) -> tuple[torch.Tensor, list[float]]:
    """Adam on the value in codebook row ``slot`` (the other rows fixed), NLL of ``targets`` at ``positions``."""
    value = init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([value], lr=hp.edit_lr)
    mod = model.get_submodule(spec.rewrite_module.format(layer))
    live: dict[str, torch.Tensor] = {}

    def hook(_m, inputs, output):
        return _replace(inputs[0], output, keys, live["values"], radii)
    losses = []
    mask = torch.ones_like(ids)
    with frozen_below(model, spec, layer, ids, mask):
        h = mod.register_forward_hook(hook)
        try:
            for _ in range(hp.n_iter):
                live["values"] = torch.cat([values[:slot], value[None], values[slot + 1:]])
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False,
                               logits_to_keep=positions).logits[0].float()
                loss = torch.nn.functional.cross_entropy(logits, targets)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        finally:
            h.remove()
    return value.detach().float().clone(), losses


@register_editor
class GRACEEditor(Editor):
    name = "grace"
    hparams_class = GRACEHyperParams
    changes_weights = False
    state = "a codebook of keys, values and deferral radii around one MLP output projection"

    def edit(self, model, tokenizer, spec, requests, hparams, *, stats=None, state=None, progress=False):
        _check(hparams)
        t0 = time.perf_counter()
        book = Codebook(dict((state or Codebook()).entries))      # shallow copy: entries are replaced, never mutated
        parent = self.snapshot(book).fingerprint()
        dev = next(model.parameters()).device
        ops, tensors, diag = [], {}, []
        layer = hparams.layer
        for r, req in enumerate(tqdm(requests, desc="grace", disable=not progress or len(requests) < 2)):
            check_request(req)
            prompt = spec.prompt_prefix + req.text
            p_ids = token_ids(tokenizer, prompt)
            t_ids = target_token_ids(tokenizer, prompt, req.target_new)
            ids = torch.tensor([p_ids + t_ids[:-1]], device=dev)
            pos = len(p_ids) - 1                                  # the last prompt token is the query
            others = Codebook({i: e for i, e in book.entries.items() if e.layer != layer})
            with GRACERuntime(model, spec, others).active():
                query, out = _query(model, spec, layer, ids, pos)
                label = req.target_new
                pl = place(book.of_layer(layer), query, label, hparams.eps, hparams.eps_expand)
                # the entries of this layer after the placement; ``slot`` is the one whose value trains
                if pl.near is not None and pl.near_radius is not None:
                    ne = book.entries[pl.near]
                    book.entries[pl.near] = replace(ne, radius=pl.near_radius,
                                                    key=pl.near_key if pl.near_key is not None else ne.key)
                if pl.kind in ("add", "split"):
                    nid = _entry_id(parent, r, query, label)
                    init = torch.rand(out.shape[0], device=dev) if hparams.val_init == "cold" else out
                    book.entries[nid] = Entry(layer, query.cpu(), init.float().cpu(), pl.new_radius, label)
                    chosen = nid
                else:
                    chosen = pl.near
                mine = book.of_layer(layer)
                slot = [i for i, _ in mine].index(chosen)
                keys = torch.stack([e.key for _, e in mine]).to(dev)
                values = torch.stack([e.value for _, e in mine]).to(dev)
                radii = torch.tensor([e.radius for _, e in mine], dtype=torch.float32, device=dev)
                positions = torch.arange(pos, pos + len(t_ids), device=dev)
                value, losses = _train_value(model, spec, layer, ids, positions, torch.tensor(t_ids, device=dev),
                                             keys, values, radii, slot, values[slot], hparams)
            book.entries[chosen] = replace(book.entries[chosen], value=value.cpu())
            ops += self._ops(pl, chosen, book, len(ops), tensors)
            diag.append({"placement": pl.kind, "distance": pl.distance, "entry": chosen,
                         "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5)})
        delta = StateDelta(tensors=tensors, data={"ops": ops})
        return EditResult(deltas=[], state=delta, diagnostics={
            "method": self.name, "layer": layer, "entries": len(book.entries), "edits": diag,
            "time_s": round(time.perf_counter() - t0, 3)})

    @staticmethod
    def _ops(pl: Placement, chosen: str, book: Codebook, start: int, tensors: dict) -> list[dict]:
        """The step's record of one placement: absolute new values, so that a fold needs nothing else."""
        ops = []

        def op(d: dict, **ts: torch.Tensor) -> None:
            i = start + len(ops)
            for name, t in ts.items():
                tensors[f"{i}.{name}"] = t.detach().contiguous().cpu().float()
            ops.append(d)
        if pl.near is not None and pl.near_key is not None:
            op({"op": "key", "id": pl.near}, key=book.entries[pl.near].key)
        if pl.near is not None and pl.near_radius is not None:
            op({"op": "radius", "id": pl.near, "radius": pl.near_radius})
        e = book.entries[chosen]
        if pl.kind in ("add", "split"):
            op({"op": "add", "id": chosen, "layer": e.layer, "label": e.label, "radius": e.radius},
               key=e.key, value=e.value)
        else:
            op({"op": "value", "id": chosen}, value=e.value)
        return ops

    # ---- method state
    def empty_state(self) -> Codebook:
        return Codebook()

    def fold(self, state: Codebook, delta: StateDelta) -> Codebook:
        book = Codebook(dict(state.entries))
        for i, op in enumerate(delta.data.get("ops", [])):
            eid, kind = op["id"], op["op"]
            if kind == "add":
                if eid in book.entries:
                    raise ValueError(f"grace state: entry {eid} is added twice; the ledger's state deltas are "
                                     "inconsistent (run `editledger db fsck`)")
                book.entries[eid] = Entry(int(op["layer"]), delta.tensors[f"{i}.key"].float().clone(),
                                          delta.tensors[f"{i}.value"].float().clone(), float(op["radius"]),
                                          str(op["label"]))
                continue
            e = book.entries.get(eid)
            if e is None:                           # the entry's own step is not in this lineage
                continue
            if kind == "radius":
                book.entries[eid] = replace(e, radius=float(op["radius"]))
            elif kind == "key":
                book.entries[eid] = replace(e, key=delta.tensors[f"{i}.key"].float().clone())
            elif kind == "value":
                book.entries[eid] = replace(e, value=delta.tensors[f"{i}.value"].float().clone())
            else:
                raise ValueError(f"grace state: unknown operation {kind!r}")
        return book

    def snapshot(self, state: Codebook) -> StateDelta:
        if not state.entries:
            return StateDelta()
        es = list(state.entries.values())
        return StateDelta(
            tensors={"keys": torch.stack([e.key for e in es]).contiguous(),
                     "values": torch.stack([e.value for e in es]).contiguous()},
            data={"ids": list(state.entries), "layers": [e.layer for e in es],
                  "radii": [e.radius for e in es], "labels": [e.label for e in es]})

    def runtime(self, model, tokenizer, spec, state: Codebook) -> GRACERuntime:
        return GRACERuntime(model, spec, state)

    def export_readme(self) -> str:
        return (super().export_readme() + " Row i of `keys`/`values` is codebook entry `ids[i]` at layer `layers[i]` "
                "with radius `radii[i]`: wherever the input of that layer's MLP output projection is within the "
                "radius of its nearest key (ties: the later row), the projection's output is that row's value.")
