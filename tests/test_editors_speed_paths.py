"""The speed paths of the editors give the plain computation's numbers: the suffix batch (prefix kept as
keys and values) against one full forward pass, a whole fast ROME edit against the plain loop (float64
reference), the cached Cholesky factor against a fresh one, and the statistics read once per process."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from simulator.editors import common, get_editor, load_hparams
from simulator.editors.common import SuffixBatch, build_rows, pad_id_of, per_row_positions
from simulator.editors.rome import ROMEHyperParams
from simulator.requests import EditRequest
from simulator.stats import StatsKey
from simulator.stats_ledger import LedgerStatsCache

EIFFEL = EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome",
                     target_old=" Paris")


def test_suffix_batch_layout_by_hand():
    rows = common.Rows(input_ids=torch.tensor([[5, 6, 7, 8, 0], [9, 10, 11, 12, 13]]),
                       attention_mask=torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
                       lookup=torch.tensor([1, 3]), target_pos=[[3], []], targets=[[4], []], kind=["rewrite", "kl"])
    b = SuffixBatch.of(rows)
    # row 0 is shifted right by 2 so that both lookups sit at column 3; widths: prefix 3, suffix max(3, 2)
    assert b.start == 3
    assert b.input_ids.tolist() == [[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 0]]
    assert b.attention_mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    assert b.position_ids.tolist() == [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 0]]
    assert b.suffix_positions(rows, torch.tensor([[3], [3]])).tolist() == [[2], [0]]


def test_suffix_pass_equals_the_full_pass(tiny):
    hp = ROMEHyperParams(**tiny.spec.hparams.get("rome", {}))
    rows = build_rows(tiny.tokenizer, tiny.spec, EIFFEL, hp.context_prefixes, hp.kl_prompt, pad_id_of(tiny.tokenizer))
    positions = per_row_positions(rows)
    with torch.no_grad():
        full = tiny.model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).logits
        want = torch.stack([full[r, positions[r]] for r in range(len(positions))])
        b = SuffixBatch.of(rows)
        cache = b.prefix_cache(tiny.model)
        got = b.suffix_forward(tiny.model, cache, b.suffix_positions(rows, positions)).logits
        again = b.suffix_forward(tiny.model, cache, b.suffix_positions(rows, positions)).logits  # cache not consumed
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got, again)
    assert b.input_ids.shape[1] - b.start < rows.input_ids.shape[1]     # fewer columns per step


def test_cached_cholesky_is_the_same_factor():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(64, 64, generator=g, dtype=torch.float64)
    A = A @ A.T + 64 * torch.eye(64, dtype=torch.float64)
    B = torch.randn(64, 3, generator=g, dtype=torch.float64)
    cache = common._CholeskyCache()
    L1 = cache.factor(A.clone())
    L2 = cache.factor(A.clone())                       # another tensor with the same bytes: a hit
    assert L1 is L2 and torch.equal(L1, torch.linalg.cholesky(A))
    x = common.solve_psd(A, B)
    torch.testing.assert_close(A @ x, B, rtol=1e-9, atol=1e-9)
    singular = torch.zeros(4, 4, dtype=torch.float64)
    assert cache.factor(singular) is None              # not positive definite: solve_psd falls back to lstsq
    # indefinite (not PSD) but invertible: the least-squares fallback solves it exactly
    x = common.solve_psd(torch.diag(torch.tensor([2.0, -4.0])), torch.tensor([[2.0], [2.0]]))
    torch.testing.assert_close(x, torch.tensor([[1.0], [-0.5]], dtype=torch.float64))


def test_cholesky_cache_is_bounded():
    cache = common._CholeskyCache(max_bytes=3 * 16 * 16 * 8)
    for i in range(6):
        cache.factor(torch.eye(16, dtype=torch.float64) * (i + 1))
    assert len([v for v in cache._d.values() if v is not None]) == 3


class _CountingLedger:
    def __init__(self):
        self.reads, self.stored = 0, {}

    def get_stats(self, **kw):
        self.reads += 1
        key = tuple(sorted(kw.items()))
        return (f"digest-{len(self.stored)}", {"C": self.stored[key]}) if key in self.stored else None

    def put_stats(self, *, tensors, **kw):
        self.stored[tuple(sorted(kw.items()))] = tensors["C"]
        return "digest-0"


def test_statistics_are_read_once_per_process():
    led = _CountingLedger()
    led.stored[tuple(sorted(dict(model_fingerprint="m", layer="l", corpus_digest="c", sample_count=8).items()))] = \
        torch.eye(2)
    cache = LedgerStatsCache(led)
    key = StatsKey("m", "l", "c", 8)
    a = cache.get(key)
    b = cache.get(key)
    assert led.reads == 1 and a[1] is b[1] and torch.equal(a[1], torch.eye(2))
    other = StatsKey("m", "l2", "c", 8)
    assert cache.get(other) is None and led.reads == 2
    cache.put(other, torch.ones(2, 2))
    assert torch.equal(cache.get(other)[1], torch.ones(2, 2)) and led.reads == 2


class _FixedStats:
    """A statistics provider with one fixed second moment (the solve is not what is compared here)."""

    def __init__(self, C: torch.Tensor):
        self.C = C

    def get(self, model, tokenizer, spec, layer):
        return "fixed", self.C


def _update(method, model, tiny, req, hp, C) -> tuple[torch.Tensor, list]:
    """(every delta's u v^T in float64, concatenated; optimisation steps per request) of one edit."""
    res = get_editor(method).edit(model, tiny.tokenizer, tiny.spec, [req], hp, stats=_FixedStats(C))
    ups = [d.factors["u"].double() @ d.factors["v"].double().T for d in res.deltas]
    return torch.cat([u.reshape(-1) for u in ups]), [r.get("steps") for r in res.diagnostics.get("requests", [])]


@pytest.mark.parametrize("method", ["rome", "memit"])
def test_fast_value_loop_equals_the_plain_loop_against_a_float64_reference(tiny, method):
    """ROME as published (value solved for the bare prompt's key) and MEMIT, fast (prefix kept as keys and
    values, blocks below replayed, lm head at the loss positions) against the plain loop (every block,
    every position, every step). With the model in float64 the two passes agree to ~1e-15 and only the
    float32 loss and delta remain: the updates agree to 1e-6. In float32 the fast update is as close to
    the float64 plain reference as the plain float32 one is."""
    hp = load_hparams(method, tiny.spec)
    assert hp.fast and hp.context_prefixes[0] == ""
    layer = hp.layer if method == "rome" else hp.layers[0]
    W = tiny.model.get_submodule(tiny.spec.rewrite_module.format(layer)).weight
    n = int(W.shape[0] if tiny.spec.weight_transposed else W.shape[1])
    A = torch.randn(n, 4 * n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    C = A @ A.T / (4 * n)
    m64 = copy.deepcopy(tiny.model).double()
    req = EIFFEL if method == "rome" else EditRequest(subject="Toyota", prompt="{} was founded in",
                                                      target_new=" Germany")
    ref, steps = _update(method, m64, tiny, req, replace(hp, fast=False), C)
    fast64, s64 = _update(method, m64, tiny, req, hp, C)
    plain32, p32 = _update(method, tiny.model, tiny, req, replace(hp, fast=False), C.float())
    fast32, f32 = _update(method, tiny.model, tiny, req, hp, C.float())
    assert steps == s64 == p32 == f32

    def rel(x):
        return float((x - ref).norm() / ref.norm())
    assert rel(fast64) <= 1e-6, rel(fast64)
    assert rel(plain32) <= 1e-5 and rel(fast32) <= 2 * rel(plain32) + 1e-7, (rel(fast32), rel(plain32))
