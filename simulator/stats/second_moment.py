"""Second-moment statistics C = E[k k^T] of an edited layer's input keys, with a cache protocol.

The keys are the inputs of the rewritten module (``spec.rewrite_module``), one per token of the corpus.
ROME and MEMIT use C to spread an update away from the directions other inputs use.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from ledger.errors import IntegrityError
from simulator.stats.corpus import Corpus, ids_digest


@dataclass(frozen=True)
class StatsKey:
    model_fingerprint: str   # base model's fingerprint (statistics are always taken on the base model)
    layer: str               # module name, e.g. "model.layers.5.mlp.down_proj"
    corpus_digest: str       # Corpus digest (token ids, or the sampling recipe for self-sampled text)
    sample_count: int        # tokens the statistics were taken over


class StatsCache(Protocol):
    def get(self, key: StatsKey) -> tuple[str, torch.Tensor] | None: ...
    def put(self, key: StatsKey, tensor: torch.Tensor) -> str: ...


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().contiguous().cpu()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


class InMemoryStatsCache:
    """Dict-backed StatsCache for tests and single runs; the ledger provides the persistent one."""

    def __init__(self) -> None:
        self._d: dict[StatsKey, tuple[str, torch.Tensor]] = {}

    def get(self, key: StatsKey) -> tuple[str, torch.Tensor] | None:
        return self._d.get(key)

    def put(self, key: StatsKey, tensor: torch.Tensor) -> str:
        digest = tensor_digest(tensor)
        self._d[key] = (digest, tensor.detach().cpu().clone())
        return digest

    def __len__(self) -> int:
        return len(self._d)


class _StopForward(Exception):
    pass


# Sequences run together in one forward pass. A corpus is many short sequences of one length (a sampled one:
# 64 tokens each), and one pass over 32 of them costs a fraction of 32 passes over one (small matrix
# products run far below the machine's rate). Rows of equal length need no padding, so every key is the one
# a pass over its sequence alone gives, up to float rounding of the larger products.
BATCH_ROWS = 32


def same_length_batches(tokens: list[torch.Tensor], rows: int) -> list[list[torch.Tensor]]:
    """Consecutive runs of sequences of equal length, at most ``rows`` each, in corpus order."""
    out: list[list[torch.Tensor]] = []
    for seq in tokens:
        if out and len(out[-1]) < rows and out[-1][0].shape == seq.shape:
            out[-1].append(seq)
        else:
            out.append([seq])
    return out


@torch.no_grad()
def collect_second_moment(model, tokenizer, spec, layer: int, corpus: Corpus, progress: bool = True,
                          tokens: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, int, str]:
    """(C float32 [d_in, d_in], sample_count, digest of the token ids used) for ``spec``'s rewrite module at
    ``layer``. Accumulates in float64. ``tokens`` reuses an already materialised corpus."""
    from tqdm import tqdm

    module = model.get_submodule(spec.rewrite_module.format(layer))
    if tokens is None:
        tokens = corpus.tokens(model, tokenizer, spec.prompt_prefix, progress=progress)
    acc: dict[str, torch.Tensor] = {}

    def hook(_m, inputs):
        k = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64)
        acc["s"] = acc.get("s", 0) + k.T @ k
        acc["n"] = acc.get("n", 0) + k.shape[0]
        raise _StopForward  # nothing above this layer is needed (the lm head alone is most of the cost)

    handle = module.register_forward_pre_hook(hook)
    dev = next(model.parameters()).device
    bar = tqdm(total=len(tokens), desc=f"second moment of {spec.rewrite_module.format(layer)}", unit="seq",
               disable=not progress, leave=False)
    try:
        for batch in same_length_batches(tokens, BATCH_ROWS):
            try:
                model(input_ids=torch.stack(batch).to(dev), use_cache=False, logits_to_keep=1)
            except _StopForward:
                pass
            bar.update(len(batch))
    finally:
        handle.remove()
        bar.close()
    n = int(acc["n"])
    return (acc["s"] / n).to(torch.float32).cpu(), n, ids_digest(tokens)


class StatsProvider:
    """Gives editors C for a layer: from the cache if present, else collected on the (base) model and put.

    Construct it on the base model; its fingerprint is part of the key. The corpus is materialised once
    and reused for every layer (MEMIT needs several)."""

    def __init__(self, model_fingerprint: str, corpus: Corpus | None = None, cache: StatsCache | None = None,
                 progress: bool = True, verify_base: bool = True) -> None:
        self.model_fingerprint = model_fingerprint
        self.verify_base = verify_base      # on a cache miss, check the model is the base model before collecting
        self.corpus = corpus or Corpus()
        self.cache = cache if cache is not None else InMemoryStatsCache()
        self.progress = progress
        self._tokens: list[torch.Tensor] | None = None
        self.timings: dict[str, float] = {}

    def _corpus_digest(self, model, tokenizer, spec) -> str:
        if self.corpus.kind == "self":
            return self.corpus.recipe_digest
        if self._tokens is None:
            self._tokens = self.corpus.tokens(model, tokenizer, spec.prompt_prefix, progress=self.progress)
        return ids_digest(self._tokens)

    def key(self, model, tokenizer, spec, layer: int) -> StatsKey:
        return StatsKey(self.model_fingerprint, spec.rewrite_module.format(layer),
                        self._corpus_digest(model, tokenizer, spec), self.corpus.n_tokens)

    def missing(self, model, tokenizer, spec, layers) -> list[int]:
        """The layers whose statistics are not cached yet (collecting them needs the base weights)."""
        return [layer for layer in layers if self.cache.get(self.key(model, tokenizer, spec, layer)) is None]

    def prepare(self, model, tokenizer, spec, layers) -> list[str]:
        """Collect (or find) the statistics of ``layers`` now, while ``model`` is the base model; a replay
        calls this before its first edit. Returns the digests."""
        return [self.get(model, tokenizer, spec, layer)[0] for layer in layers]

    def get(self, model, tokenizer, spec, layer: int) -> tuple[str, torch.Tensor]:
        """(digest, C) for ``layer``. On a cache miss ``model`` must still hold the base weights (checked
        against the fingerprint: statistics of an edited model would be filed under the base model)."""
        key = self.key(model, tokenizer, spec, layer)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if self.verify_base:
            from simulator.models.loading import model_fingerprint
            if model_fingerprint(model) != self.model_fingerprint:
                raise IntegrityError(
                    f"second-moment statistics for {key.layer} are not cached and the model is no longer the base "
                    f"model {self.model_fingerprint[:12]}; collect them on the base model first "
                    "(StatsProvider.prepare before the first edit)")
        t0 = time.perf_counter()
        if self._tokens is None:
            self._tokens = self.corpus.tokens(model, tokenizer, spec.prompt_prefix, progress=self.progress)
            self.timings["corpus_s"] = round(time.perf_counter() - t0, 3)
        t1 = time.perf_counter()
        C, _n, _ = collect_second_moment(model, tokenizer, spec, layer, self.corpus, self.progress, self._tokens)
        self.timings[f"collect_{layer}_s"] = round(time.perf_counter() - t1, 3)
        digest = self.cache.put(key, C)
        return digest, C
