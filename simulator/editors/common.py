"""What ROME, MEMIT and FT share: tokenising requests, batches with the subject's last token located,
hooks that add a pending weight change without touching the weights, and the frozen-prefix trick.

Editors never write to the model's parameters: every tentative change is a forward hook that adds
``x @ dW^T`` (or a residual delta) to a module's output, and every hook is removed in a ``finally``.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ledger.errors import InputError
from simulator.kv_cache import cache_kwarg, returned_cache
from simulator.requests import EditRequest


def token_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def target_token_ids(tokenizer, prompt_text: str, target: str) -> list[int]:
    """tokens(prompt + target) minus tokens(prompt); " Rome" and "Rome" are different tokens."""
    p = token_ids(tokenizer, prompt_text)
    full = token_ids(tokenizer, prompt_text + target)
    if full[: len(p)] == p and len(full) > len(p):
        return full[len(p):]
    # the last prompt token merged with the target: fall back to the target on its own
    alone = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if not alone:
        raise InputError(f"target {target!r} tokenizes to nothing; give a non-empty target")
    return alone


def subject_last_index(tokenizer, before_subject: str, subject: str) -> int:
    """Index of the subject's last token in a text that starts with ``before_subject + subject``."""
    return len(token_ids(tokenizer, before_subject + subject)) - 1


def check_request(req: EditRequest) -> None:
    if "{}" not in req.prompt:
        raise InputError(f"edit prompt {req.prompt!r} has no '{{}}' for the subject {req.subject!r}")
    if not req.target_new:
        raise InputError(f"edit request for {req.subject!r} has an empty target_new")


@dataclass
class Rows:
    """A right-padded batch: row r predicts ``targets[r]`` at ``target_pos[r]``; edits act at ``lookup[r]``."""
    input_ids: torch.Tensor         # (B, T) long
    attention_mask: torch.Tensor    # (B, T) long
    lookup: torch.Tensor            # (B,) position of the subject's last token
    target_pos: list[list[int]]     # per row: positions whose next-token prediction is scored
    targets: list[list[int]]        # per row: the token ids expected there
    kind: list[str]                 # "rewrite" or "kl"

    @property
    def needed_positions(self) -> torch.Tensor:
        """Positions whose logits any row needs (the lm head runs on these only)."""
        pos = {p for ps in self.target_pos for p in ps}
        pos.update(int(i) for r, i in enumerate(self.lookup) if self.kind[r] == "kl")
        return torch.tensor(sorted(pos), dtype=torch.long)


def build_rows(tokenizer, spec, req: EditRequest, prefixes: list[str], kl_prompt: str | None,
               pad_id: int) -> Rows:
    """One rewrite row per context prefix (prompt + target[:-1]) and one KL row (``kl_prompt`` with the subject)."""
    check_request(req)
    before, after = req.prompt.split("{}", 1)
    seqs, lookups, tpos, tids, kinds = [], [], [], [], []
    for pre in prefixes:
        head = spec.prompt_prefix + pre + before
        prompt_text = head + req.subject + after
        p_ids = token_ids(tokenizer, prompt_text)
        t_ids = target_token_ids(tokenizer, prompt_text, req.target_new)
        seqs.append(p_ids + t_ids[:-1])
        lookups.append(subject_last_index(tokenizer, head, req.subject))
        tpos.append([len(p_ids) - 1 + j for j in range(len(t_ids))])
        tids.append(t_ids)
        kinds.append("rewrite")
    if kl_prompt:
        kb, ka = kl_prompt.split("{}", 1)
        head = spec.prompt_prefix + kb
        seqs.append(token_ids(tokenizer, head + req.subject + ka))
        lookups.append(subject_last_index(tokenizer, head, req.subject))
        tpos.append([])
        tids.append([])
        kinds.append("kl")
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    for r, i in enumerate(lookups):
        assert 0 <= i < len(seqs[r]), f"subject {req.subject!r} not found in row {r} of the edit batch"
    return Rows(ids, mask, torch.tensor(lookups), tpos, tids, kinds)


def pad_id_of(tokenizer) -> int:
    for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if t is not None:
            return int(t)
    return 0


def weight_out_in(spec, weight: torch.Tensor) -> torch.Tensor:
    """The weight as (out, in), whatever its storage (GPT-2's Conv1D stores (in, out))."""
    return weight.T if spec.weight_transposed else weight


def factors_to_storage(spec, u_out: torch.Tensor, v_in: torch.Tensor) -> dict[str, torch.Tensor]:
    """Low-rank factors of dW = u_out v_in^T given in (out, in) terms, laid out like the stored tensor."""
    u_out, v_in = u_out.contiguous(), v_in.contiguous()
    return {"u": v_in, "v": u_out} if spec.weight_transposed else {"u": u_out, "v": v_in}


def module_bias_out(module: nn.Module) -> torch.Tensor | None:
    b = getattr(module, "bias", None)
    return None if b is None else b.detach()


@contextlib.contextmanager
def hooks(*handles_fns) -> Iterator[None]:
    handles = []
    try:
        for fn in handles_fns:
            handles.append(fn())
        yield
    finally:
        for h in handles:
            h.remove()


def add_weight_delta_hook(module: nn.Module, dw_out_in: torch.Tensor):
    """Forward hook adding ``x @ dW^T`` to the module's output: the effect of W + dW, without writing W."""
    def hook(_m, inputs, output):
        x = inputs[0]
        return output + torch.nn.functional.linear(x.to(dw_out_in.dtype), dw_out_in).to(output.dtype)
    return module.register_forward_hook(hook)


@contextlib.contextmanager
def pending_deltas(model, spec, changes: list[tuple[int, torch.Tensor]]) -> Iterator[None]:
    """Make the model behave as if ``changes`` [(layer, dW in (out, in))] were applied."""
    handles = []
    try:
        for layer, dw in changes:
            mod = model.get_submodule(spec.rewrite_module.format(layer))
            handles.append(add_weight_delta_hook(mod, dw))
        yield
    finally:
        for h in handles:
            h.remove()


class _StopForward(Exception):
    pass


class _CachedBlock(nn.Module):
    """Stands in for a transformer block whose output is known: returns it without computing."""

    def __init__(self, orig: nn.Module, output) -> None:
        super().__init__()
        object.__setattr__(self, "_orig", orig)
        object.__setattr__(self, "_cached", output)

    def forward(self, *args, **kwargs):
        return object.__getattribute__(self, "_cached")

    def __getattr__(self, name):  # attributes the model reads off its blocks (e.g. Gemma's attention_type)
        return getattr(object.__getattribute__(self, "_orig"), name)


def _blocks(model, spec) -> tuple[nn.ModuleList, str]:
    container = spec.layer_module.rsplit(".", 1)[0].replace(".{}", "")
    return model.get_submodule(container), container


@contextlib.contextmanager
def frozen_below(model, spec, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Iterator[None]:
    """Run blocks 0..layer-1 once on this batch and replay their outputs on every later forward pass of
    the same batch (they cannot change: the edit acts at ``layer`` or above). The blocks are put back after."""
    def run():
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    with _frozen_blocks(model, spec, layer, run):
        yield


@contextlib.contextmanager
def _frozen_blocks(model, spec, layer: int, run) -> Iterator[None]:
    """``frozen_below`` for any forward pass: ``run()`` makes it once, and blocks 0..layer-1 replay what
    block layer-1 gave on every later pass (which must be the same batch)."""
    if layer <= 0:
        yield
        return
    blocks, _ = _blocks(model, spec)
    captured: dict[int, object] = {}

    def grab(_m, _i, out):
        captured[0] = out
        raise _StopForward  # the rest of the pass is not needed

    handle = blocks[layer - 1].register_forward_hook(grab)
    try:
        with torch.no_grad():
            run()
    except _StopForward:
        pass
    finally:
        handle.remove()
    out = captured[0]
    out = out.detach() if torch.is_tensor(out) else tuple(o.detach() if torch.is_tensor(o) else o for o in out)
    originals = [blocks[i] for i in range(layer)]
    try:
        for i in range(layer):
            # blocks below layer-1 are skipped too: the cached block ignores its input
            blocks[i] = _CachedBlock(originals[i], out)
        yield
    finally:
        for i, m in enumerate(originals):
            blocks[i] = m


@dataclass
class SuffixBatch:
    """A batch laid out so that the part an edit at the subject's last token can change is one rectangle.

    Every row is shifted right (left padding) until its ``lookup`` sits at column ``start``. Columns
    before ``start`` (the prompt up to the subject's last token) come before the edited position in every
    row, so under causal attention nothing added there reaches them: their keys and values are computed
    once (``prefix_cache``) and every optimisation step runs only the ``suffix`` columns, forward and
    backward. Position ids keep every token where it was, so the numbers are those of the plain batch up
    to float rounding. On the demo's ROME rows this is a third of the token positions.
    """
    input_ids: torch.Tensor         # (B, W) long, left- and right-padded
    attention_mask: torch.Tensor    # (B, W) long
    position_ids: torch.Tensor      # (B, W) long: each token's position in its own row
    start: int                      # first suffix column (= every row's lookup column)

    @classmethod
    def of(cls, rows: Rows) -> "SuffixBatch":
        lens = rows.attention_mask.sum(1).tolist()
        look = rows.lookup.tolist()
        start = max(look)
        width = start + max(n - k for n, k in zip(lens, look))
        B = len(lens)
        ids = torch.zeros((B, width), dtype=torch.long)       # pad columns are masked: any valid id will do
        mask = torch.zeros((B, width), dtype=torch.long)
        pos = torch.zeros((B, width), dtype=torch.long)
        for r, (n, k) in enumerate(zip(lens, look)):
            s = start - k
            ids[r, s:s + n] = rows.input_ids[r, :n]
            mask[r, s:s + n] = 1
            pos[r, s:s + n] = torch.arange(n)
        return cls(ids, mask, pos, start)

    def suffix_positions(self, rows: Rows, positions: torch.Tensor) -> torch.Tensor:
        """(B, P) original positions -> (B, P) columns of the suffix (column 0 = the lookup)."""
        return positions - rows.lookup[:, None]

    def prefix_cache(self, model):
        """Keys and values of every layer for the prefix columns (no gradient; hooks active apply). The
        backbone only: no logits are needed here (and the lm head on a sliced (B, 1, d) view would run as
        B matrix-vector products, one pass over the vocabulary each)."""
        dev = next(model.parameters()).device
        s = self.start
        base = model.base_model
        with torch.no_grad():
            out = base(input_ids=self.input_ids[:, :s].to(dev), attention_mask=self.attention_mask[:, :s].to(dev),
                       position_ids=self.position_ids[:, :s].to(dev), use_cache=True, **{cache_kwarg(base): None})
        return returned_cache(out)

    def suffix_forward(self, model, cache, logits_to_keep):
        """One pass over the suffix columns after ``cache`` (a copy: the pass appends to it)."""
        dev = next(model.parameters()).device
        s = self.start
        return model(input_ids=self.input_ids[:, s:].to(dev), attention_mask=self.attention_mask.to(dev),
                     position_ids=self.position_ids[:, s:].to(dev), use_cache=True, logits_to_keep=logits_to_keep,
                     **{cache_kwarg(model): copy.deepcopy(cache)})

    @contextlib.contextmanager
    def frozen_below(self, model, spec, layer: int, cache) -> Iterator[None]:
        """``frozen_below`` for the suffix pass: blocks 0..layer-1 replay their suffix outputs."""
        def run():
            self.suffix_forward(model, cache, 1)
        with _frozen_blocks(model, spec, layer, run):
            yield


def per_row_positions(rows: Rows) -> torch.Tensor:
    """(B, P) positions each row needs: its target positions (rewrite rows) or its subject position (KL
    rows), padded by repetition. With these the lm head runs on B*P vectors, not B*len(union)."""
    need = [ps if rows.kind[r] == "rewrite" else [int(rows.lookup[r])] for r, ps in enumerate(rows.target_pos)]
    P = max(len(n) for n in need)
    return torch.tensor([n + [n[-1]] * (P - len(n)) for n in need], dtype=torch.long)


def logits_at(model, rows: Rows, positions: torch.Tensor) -> torch.Tensor:
    """Logits at ``positions`` only (the lm head is the costly part): (B, P, V) for a 2-D (B, P) tensor of
    per-row positions, (B, len, V) for a 1-D tensor of positions shared by all rows."""
    dev = next(model.parameters()).device
    out = model(input_ids=rows.input_ids.to(dev), attention_mask=rows.attention_mask.to(dev), use_cache=False,
                logits_to_keep=positions.to(dev))
    return out.logits


def _columns(rows: Rows, positions: torch.Tensor, r: int, wanted: list[int]) -> list[int]:
    row = positions[r] if positions.dim() == 2 else positions
    index = {}
    for j, p in enumerate(row.tolist()):
        index.setdefault(p, j)
    return [index[p] for p in wanted]


def row_log_probs(logp: torch.Tensor, rows: Rows, positions: torch.Tensor) -> list[torch.Tensor]:
    """Per rewrite row: log-probabilities of its target tokens, from log-softmaxed logits at ``positions``."""
    res = []
    for r, (ps, ts) in enumerate(zip(rows.target_pos, rows.targets)):
        if rows.kind[r] != "rewrite":
            continue
        j = torch.tensor(_columns(rows, positions, r, ps), device=logp.device)
        res.append(logp[r, j, torch.tensor(ts, device=logp.device)])
    return res


def first_target_column(rows: Rows, positions: torch.Tensor) -> int:
    return _columns(rows, positions, 0, [rows.target_pos[0][0]])[0]


def kl_log_probs(logp: torch.Tensor, rows: Rows, positions: torch.Tensor) -> torch.Tensor | None:
    """Next-token log-distribution at the KL rows' subject position, (n_kl, V)."""
    sel = [(r, _columns(rows, positions, r, [int(rows.lookup[r])])[0]) for r in range(len(rows.kind))
           if rows.kind[r] == "kl"]
    if not sel:
        return None
    return torch.stack([logp[r, j] for r, j in sel])


class _CholeskyCache:
    """Cholesky factors of recent CPU matrices, keyed by their bytes (sha256). Every ROME edit of a replay
    solves against the same second moment C: factoring it costs n^3/3 multiply-adds (2.9 GFLOP for
    Gemma's 2048-wide keys, a third of a second on 2 cores), hashing it n^2 * 8 bytes (~20 ms). The
    factor of the same bytes is the same factor, so results are bit-identical with or without the
    cache. On a GPU factoring is cheaper than hashing: not cached. Bounded in bytes, oldest out first."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[str, torch.Tensor | None] = OrderedDict()   # None: not positive definite

    @staticmethod
    def _key(A: torch.Tensor) -> str:
        h = hashlib.sha256(f"{A.dtype}|{tuple(A.shape)}|".encode())
        h.update(A.contiguous().view(torch.uint8).reshape(-1).numpy().data)
        return h.hexdigest()

    def factor(self, A64: torch.Tensor) -> torch.Tensor | None:
        """The lower Cholesky factor of ``A64``, or None where it is not positive definite."""
        size = A64.numel() * A64.element_size()
        if A64.device.type != "cpu" or size > self.max_bytes:
            L, info = torch.linalg.cholesky_ex(A64)
            return L if int(info) == 0 else None
        key = self._key(A64)
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        L, info = torch.linalg.cholesky_ex(A64)
        L = L if int(info) == 0 else None
        self._d[key] = L
        while sum(x.numel() * x.element_size() for x in self._d.values() if x is not None) > self.max_bytes:
            self._d.popitem(last=False)
        return L


_CHOLESKY = _CholeskyCache()


def solve_psd(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """A^-1 B for a symmetric positive (semi-)definite A, in float64 (Cholesky, least squares fallback)."""
    A64, B64 = A.to(torch.float64), B.to(torch.float64)
    L = _CHOLESKY.factor(A64)
    if L is not None:
        return torch.cholesky_solve(B64, L)
    return torch.linalg.lstsq(A64, B64).solution


def regularised(C: torch.Tensor, lam: float) -> torch.Tensor:
    """C + lam * mean(diag C) * I (a ridge scaled to C, for a second moment estimated from few tokens)."""
    C = C.to(torch.float64)
    if lam > 0:
        C = C + lam * torch.diagonal(C).mean() * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
    return C
