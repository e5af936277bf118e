"""MEND (Mitchell et al. 2022): a trained hyper-network maps the rank-one factors of a fine-tuning
gradient to a parameter update.

For an edited linear layer with inputs x_t and output gradients delta_t (t over the tokens of the edit
example), the fine-tuning gradient is  sum_t delta_t x_t^T.  MEND standardises x_t and delta_t (running
mean and std from training), passes [x_t ; delta_t] through a small residual MLP per weight shape (the
same net for every tensor of that shape, told apart by a learned per-tensor scale and shift), and
applies
    W' = W + edit_lr_W * sum_t delta~_t x~_t^T
with a learned step edit_lr_W per tensor (reference: eric-mitchell/mend ``algs/mend.py``, ``nn.py``:
GradientTransform with IDMLP of n_hidden + 1 LRLinear layers x + relu(u v x + b), u = 0 at init, so the
network starts as the identity). The update is stored exactly as low-rank factors (rank = tokens).

The network is trained by ``simulator.editors.mend_train`` (``editledger train mend``) and stored in the
ledger as an artifact; an edit names it by digest (hyper-parameter ``network``) and records that digest
in the step's ``stats_used``.
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from ledger import Ledger
from ledger.errors import InputError
from simulator.deltas import EditResult, TensorDelta
from simulator.editors.base import Editor, register_editor
from simulator.editors.common import check_request, factors_to_storage, target_token_ids, token_ids
from simulator.editors.hparams import at_least

ARCH_FIELDS = ("layers", "modules", "rank", "n_hidden")     # what a trained network is built from


@dataclass
class MENDHyperParams:
    layers: list[int] = field(default_factory=lambda: [25, 26, 27])  # layers whose modules MEND edits
    modules: list[str] = field(default_factory=list)  # module templates with "{}"; [] = the MLP output projection
    rank: int = at_least(1, 1920)      # rank of each LRLinear (u v) in the network
    n_hidden: int = at_least(0, 1)     # hidden LRLinear layers (the network has n_hidden + 1)
    edit_lr: float = 1e-4              # initial per-tensor step edit_lr_W (learned in training)
    lr: float = at_least(0.0, 1e-6)    # training: Adam learning rate of the network
    lr_lr: float = at_least(0.0, 1e-4)  # training: Adam learning rate of the per-tensor steps
    cedit: float = at_least(0.0, 0.1)  # training: weight of the edit loss (NLL of the target on the rephrase)
    cloc: float = at_least(0.0, 1.0)   # training: weight of the locality loss (KL on an unrelated question)
    accumulate: int = at_least(1, 10)  # training: edits per optimiser step (the reference's accumulate_bs)
    grad_clip: float = at_least(0.0, 100.0)  # training: clip of the gradient norm per optimiser step
    train_edits: int = at_least(1, 1000)  # training budget: edits seen (one optimiser step per `accumulate`)
    max_length: int = at_least(2, 40)  # training: tokens kept of a training text (the reference's max_length)
    checkpoint_every: int = at_least(1, 20)  # training: optimiser steps between resumable checkpoints
    network: str = ""                  # digest of the trained network (written by `editledger train mend`)
    network_ledger: str = ""           # the ledger that holds it (--db URL or path); "" = $EDITLEDGER_DB / default
    seed: int = 0                      # network initialisation and training order


# ---------------------------------------------------------------------------------------- the network
class LRLinear(nn.Module):
    """x + relu((u v x + b) * scale[mode] + shift[mode]): a low-rank residual layer, the identity at init."""

    def __init__(self, dim: int, rank: int, n_modes: int, generator: torch.Generator):
        super().__init__()
        mid = min(rank, dim)
        self.u = nn.Parameter(torch.zeros(dim, mid))
        self.v = nn.Parameter(torch.randn(mid, dim, generator=generator))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (x @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return x + pre.clamp(min=0)     # clamp, not relu: the reference keeps a gradient at 0 this way


class GradientTransform(nn.Module):
    """One network for every edited tensor of one (x_dim, delta_dim) shape, with the running standardisation
    of its inputs (Welford over every token seen in training, frozen afterwards)."""

    def __init__(self, x_dim: int, delta_dim: int, rank: int, n_hidden: int, n_modes: int, generator: torch.Generator):
        super().__init__()
        self.x_dim, self.delta_dim = x_dim, delta_dim
        self.layers = nn.ModuleList([LRLinear(x_dim + delta_dim, rank, n_modes, generator) for _ in range(n_hidden + 1)])
        for name, dim in (("x", x_dim), ("d", delta_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim, dtype=torch.float64))
            self.register_buffer(f"{name}_m2", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def observe(self, x: torch.Tensor, d: torch.Tensor) -> None:
        """Add a batch of (x, delta) rows to the running mean and variance (Chan et al.'s batched Welford)."""
        n = x.shape[0]
        if n == 0:
            return
        for name, rows in (("x", x), ("d", d)):
            rows = rows.to(torch.float64)
            mean, m2 = getattr(self, f"{name}_mean"), getattr(self, f"{name}_m2")
            b_mean = rows.mean(0)
            b_m2 = ((rows - b_mean) ** 2).sum(0)
            tot = self.count + n
            diff = b_mean - mean
            mean += diff * (n / tot)
            m2 += b_m2 + diff ** 2 * (self.count * n / tot)
        self.count += n

    def standardise(self, rows: torch.Tensor, name: str) -> torch.Tensor:
        if float(self.count) < 2:
            raise InputError("the MEND network has seen fewer than 2 gradient rows: it is not trained")
        mean = getattr(self, f"{name}_mean").to(rows.dtype)
        std = (getattr(self, f"{name}_m2") / (self.count - 1)).sqrt().to(rows.dtype)
        return (rows - mean) / (std + 1e-7)

    def forward(self, x: torch.Tensor, d: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.standardise(x, "x"), self.standardise(d, "d")], -1)
        for layer in self.layers:
            h = layer(h, mode)
        return h[:, : self.x_dim], h[:, self.x_dim:]


@dataclass
class EditedTensor:
    """One tensor MEND edits: its module, state-dict name, (out, in) shape, network and mode index."""
    module: str
    tensor: str
    out_dim: int
    in_dim: int
    net_key: str
    mode: int


class MENDNetwork(nn.Module):
    """The whole trained editor: a GradientTransform per shape and the learned step per tensor."""

    def __init__(self, model, spec, hp: MENDHyperParams):
        super().__init__()
        self.arch = {f: getattr(hp, f) for f in ARCH_FIELDS}
        self.targets = edited_tensors(model, spec, hp)
        g = torch.Generator().manual_seed(hp.seed)
        shapes: OrderedDict[str, list[EditedTensor]] = OrderedDict()
        for t in self.targets:
            shapes.setdefault(t.net_key, []).append(t)
        self.nets = nn.ModuleDict({k: GradientTransform(ts[0].in_dim, ts[0].out_dim, hp.rank, hp.n_hidden, len(ts), g)
                                   for k, ts in shapes.items()})
        self.edit_lrs = nn.Parameter(torch.full((len(self.targets),), float(hp.edit_lr)))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

    def meta(self) -> dict:
        return {"arch": self.arch, "tensors": [t.tensor for t in self.targets]}


def edited_tensors(model, spec, hp: MENDHyperParams) -> list[EditedTensor]:
    out = []
    templates = list(hp.modules) or [spec.rewrite_module]
    for layer in hp.layers:
        for tpl in templates:
            if "{}" not in tpl:
                raise InputError(f"mend hyper-parameter 'modules': {tpl!r} has no '{{}}' for the layer")
            name = tpl.format(layer)
            try:
                mod = model.get_submodule(name)
            except AttributeError:
                raise InputError(f"mend: the model has no module {name!r} (check 'modules' and 'layers')") from None
            w = mod.weight
            o, i = (int(w.shape[1]), int(w.shape[0])) if spec.weight_transposed else (int(w.shape[0]), int(w.shape[1]))
            out.append(EditedTensor(name, name + ".weight", o, i, f"{i}x{o}", 0))
    counts: dict[str, int] = {}
    for t in out:
        t.mode = counts.get(t.net_key, 0)
        counts[t.net_key] = t.mode + 1
    return out


def load_network(model, spec, hp: MENDHyperParams, tensors: dict[str, torch.Tensor], meta: dict) -> MENDNetwork:
    """A trained network from its artifact, checked against the hyper-parameters it is used with."""
    arch = meta.get("arch", {})
    mismatch = {f: (arch.get(f), getattr(hp, f)) for f in ARCH_FIELDS if arch.get(f) != getattr(hp, f)}
    if mismatch:
        raise InputError(f"mend: the trained network was built with {', '.join(f'{k}={a!r}' for k, (a, _) in mismatch.items())} "
                         f"but the hyper-parameters say {', '.join(f'{k}={b!r}' for k, (_, b) in mismatch.items())}; "
                         "use the hyper-parameter file `editledger train mend` wrote")
    net = MENDNetwork(model, spec, hp)
    net.load_state_dict(tensors, strict=True)
    net.eval()
    return net


# ---------------------------------------------------------------------------------- gradients and updates
@dataclass
class Example:
    """One text with the positions whose next token is scored: ``targets[j]`` after position ``pos[j]``."""
    ids: list[int]
    pos: list[int]
    targets: list[int]


def make_example(tokenizer, spec, prompt_text: str, target: str, max_length: int | None = None) -> Example:
    """prompt + target, scored on the target tokens. With ``max_length`` (training) the text is cut to that
    many tokens as the reference's tokenizer call truncates it: an answer longer than half of it keeps its
    first max_length // 2 tokens, and the prompt loses tokens from the left."""
    full = spec.prompt_prefix + prompt_text
    p = token_ids(tokenizer, full)
    t = target_token_ids(tokenizer, full, target)
    if max_length is not None and len(p) + len(t) - 1 > max_length:
        t = t[: max(1, min(len(t), max_length // 2))]
        p = p[max(0, len(p) + len(t) - 1 - max_length):]
    ids = p + t[:-1]
    return Example(ids, [len(p) - 1 + j for j in range(len(t))], t)


def _batch(examples: list[Example], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), T), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for r, e in enumerate(examples):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        mask[r, : len(e.ids)] = 1
    return ids.to(device), mask.to(device)


def _positions(examples: list[Example]) -> torch.Tensor:
    P = max(len(e.pos) for e in examples)
    return torch.tensor([e.pos + [e.pos[-1]] * (P - len(e.pos)) for e in examples], dtype=torch.long)


def score_log_probs(model, examples: list[Example], pad: int) -> list[torch.Tensor]:
    """Per example: log-softmax over the vocabulary at its scored positions, (n_pos, V) float32."""
    dev = next(model.parameters()).device
    ids, mask = _batch(examples, pad, dev)
    pos = _positions(examples).to(dev)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=pos).logits
    logp = torch.log_softmax(logits.float(), -1)
    return [logp[r, : len(e.pos)] for r, e in enumerate(examples)]


def nll(logps: list[torch.Tensor], examples: list[Example]) -> torch.Tensor:
    """Mean over examples of the mean target-token NLL."""
    return torch.stack([-lp[torch.arange(len(e.targets)), torch.tensor(e.targets, device=lp.device)].mean()
                        for lp, e in zip(logps, examples)]).mean()


def gradient_factors(model, net: MENDNetwork, examples: list[Example], pad: int
                     ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """Per edited tensor: (x rows, delta rows) over the batch's tokens, the rank-one factors of the NLL's
    gradient (rows where x or delta is all zero left out, as the reference does), and the loss."""
    dev = next(model.parameters()).device
    ids, mask = _batch(examples, pad, dev)
    pos = _positions(examples).to(dev)
    xs, zs, handles = {}, {}, []

    def hook(name):
        def fn(_m, inputs, output):
            xs[name] = inputs[0].detach()
            z = torch.zeros_like(output, requires_grad=True)
            zs[name] = z
            return output + z
        return fn

    try:
        for t in net.targets:
            handles.append(model.get_submodule(t.module).register_forward_hook(hook(t.module)))
        with torch.enable_grad():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=pos).logits
            logp = torch.log_softmax(logits.float(), -1)
            loss = nll([logp[r, : len(e.pos)] for r, e in enumerate(examples)], examples)
            grads = torch.autograd.grad(loss, [zs[t.module] for t in net.targets])
    finally:
        for h in handles:
            h.remove()
    keep = mask.reshape(-1).bool()
    out = {}
    for t, g in zip(net.targets, grads):
        x = xs[t.module].reshape(-1, xs[t.module].shape[-1])[keep].float()
        d = g.reshape(-1, g.shape[-1])[keep].float()
        nz = (x != 0).any(-1) & (d != 0).any(-1)
        out[t.module] = (x[nz], d[nz])
    return out, float(loss.detach())


def transformed_updates(net: MENDNetwork, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
                        ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per edited tensor: (A, B) with the update dW = A^T B = edit_lr * sum_t delta~_t x~_t^T in (out, in)
    terms; A (T, out) carries the step, B (T, in). Differentiable in the network's parameters."""
    out = {}
    for i, t in enumerate(net.targets):
        x, d = factors[t.module]
        xt, dt = net.nets[t.net_key](x, d, t.mode)
        out[t.module] = (net.edit_lrs[i] * dt, xt)
    return out


@contextlib.contextmanager
def with_updates(model, updates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """The model as if W += A^T B for each module (a hook adding (x B^T) A; nothing is written)."""
    handles = []

    def hook(A, B):
        def fn(_m, inputs, output):
            x = inputs[0]
            return output + ((x.to(B.dtype) @ B.T) @ A).to(output.dtype)
        return fn

    try:
        for name, (A, B) in updates.items():
            handles.append(model.get_submodule(name).register_forward_hook(hook(A, B)))
        yield
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------------- editor
def open_network_ledger(url: str) -> Ledger:
    return Ledger.open(url or None, create=False)


@register_editor
class MENDEditor(Editor):
    name = "mend"
    hparams_class = MENDHyperParams

    def __init__(self) -> None:
        # trained networks by digest: content-addressed and immutable, so reading one once changes no result
        self._networks: OrderedDict[str, MENDNetwork] = OrderedDict()

    def network(self, model, spec, hp: MENDHyperParams) -> MENDNetwork:
        if not hp.network:
            raise InputError("mend edits with a trained network: run `editledger --db LEDGER train mend --model NAME "
                             "--data FILE` and replay with the hyper-parameter file it writes (--hparams FILE)")
        if hp.network not in self._networks:
            if self.ledger is not None and not hp.network_ledger:    # the replay's own ledger
                tensors, meta = self.ledger.trained(hp.network)
            else:
                with open_network_ledger(hp.network_ledger) as led:
                    tensors, meta = led.trained(hp.network)
            if meta.get("method") != self.name:
                raise InputError(f"artifact {hp.network[:12]}… is a trained network of {meta.get('method')!r}, not mend")
            dev = next(model.parameters()).device
            self._networks[hp.network] = load_network(model, spec, hp, tensors, meta).to(dev)
            while len(self._networks) > 2:
                self._networks.popitem(last=False)
        return self._networks[hp.network]

    def edit(self, model, tokenizer, spec, requests, hparams: MENDHyperParams, *, stats=None, state=None,
             progress: bool = False) -> EditResult:
        hp = hparams
        t0 = time.perf_counter()
        net = self.network(model, spec, hp)
        for r in requests:
            check_request(r)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        examples = [make_example(tokenizer, spec, r.text, r.target_new) for r in requests]   # the whole target
        factors, loss = gradient_factors(model, net, examples, pad)
        with torch.no_grad():
            ups = transformed_updates(net, factors)
        deltas, per_tensor = [], []
        for t in net.targets:
            A, B = ups[t.module]
            u, v = A.T.contiguous(), B.T.contiguous()            # (out, T), (in, T): dW = u v^T
            deltas.append(TensorDelta(tensor=t.tensor, kind="low_rank",
                                      factors={k: x.detach().cpu() for k, x in factors_to_storage(spec, u, v).items()}))
            per_tensor.append({"tensor": t.tensor, "rank": int(u.shape[1]), "delta_fro_norm": deltas[-1].norm()})
        return EditResult(deltas=deltas, stats_used=[hp.network], diagnostics={
            "method": self.name, "network": hp.network, "pre_edit_nll": round(loss, 5), "tensors": per_tensor,
            "edit_lrs": [float(x) for x in net.edit_lrs.detach()], "time_s": round(time.perf_counter() - t0, 3)})
