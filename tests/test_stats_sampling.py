"""The corpus samplers: inverse-CDF draws follow the distribution (checked against exact probabilities),
never pick a zero-probability token, and a recipe's digest names the sampler (sampler 1 keeps the digest
its statistics were recorded under); the second moment taken over batches of sequences equals the one
taken a sequence at a time."""
from __future__ import annotations

import hashlib

import pytest
import torch

from ledger.errors import InputError
from simulator.stats import Corpus


def test_inverse_cdf_draws_follow_the_softmax():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.0, 0.125, 0.125]], dtype=torch.float32))
    c = Corpus(sampler=2)
    g = torch.Generator().manual_seed(0)
    n = 40_000
    draws = torch.cat([c._draw(logits.expand(1000, -1), g) for _ in range(n // 1000)])[:, 0]
    freq = torch.bincount(draws, minlength=5).double() / n
    expect = torch.tensor([0.5, 0.25, 0.0, 0.125, 0.125], dtype=torch.float64)
    # 4 standard errors of a binomial proportion at n = 40,000 is at most 0.01
    assert torch.all((freq - expect).abs() <= 4 * (expect * (1 - expect) / n).sqrt() + 1e-12), freq
    assert freq[2] == 0.0                                    # p = 0 is never drawn


def test_temperature_sharpens_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(20_000, -1)
    g = torch.Generator().manual_seed(1)
    hot = Corpus(temperature=0.5)._draw(logits, g)[:, 0]
    p = torch.softmax(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64) / 0.5, -1)
    assert abs(float((hot == 0).double().mean()) - float(p[0])) < 0.015


def test_draw_is_deterministic_for_a_seed():
    logits = torch.randn(64, 1000)
    a = Corpus()._draw(logits, torch.Generator().manual_seed(3))
    b = Corpus()._draw(logits, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (64, 1) and a.dtype == torch.long


def test_recipe_digests():
    legacy = hashlib.sha256(b"self|4096|256|0|1.0").hexdigest()     # the digest recorded before sampler 2
    assert Corpus(seq_len=256, sampler=1).recipe_digest == legacy
    new = Corpus(seq_len=256, sampler=2).recipe_digest
    assert new == hashlib.sha256(b"self|4096|256|0|1.0|sampler=2|batch=64").hexdigest() and new != legacy
    assert Corpus().seq_len == 64 and Corpus().batch == 64 and Corpus(sampler=1).batch == 16
    with pytest.raises(InputError, match="sampler"):
        Corpus(sampler=3)


def test_sampled_corpus_shape_on_tiny(tiny):
    c = Corpus(n_tokens=100, seq_len=16, seed=0)
    toks = c.tokens(tiny.model, tiny.tokenizer, tiny.spec.prompt_prefix, progress=False)
    start = len(tiny.tokenizer(tiny.spec.prompt_prefix, add_special_tokens=True)["input_ids"]) or 1
    assert sum(len(t) - start for t in toks) == 100 and len(toks) == 7        # 6 x 16 + 4
    assert all(len(t) <= start + 16 for t in toks)
    again = c.tokens(tiny.model, tiny.tokenizer, tiny.spec.prompt_prefix, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(toks, again))


def test_same_length_batches_by_hand():
    from simulator.stats.second_moment import same_length_batches
    seqs = [torch.zeros(3), torch.ones(3), torch.zeros(3), torch.zeros(2), torch.zeros(3)]
    got = same_length_batches(seqs, 2)
    assert [[len(s) for s in b] for b in got] == [[3, 3], [3], [2], [3]]
    assert got[0][1] is seqs[1] and got[3][0] is seqs[4]            # corpus order kept


def test_batched_second_moment_equals_one_sequence_at_a_time(tiny, monkeypatch):
    from simulator.stats import second_moment as sm
    c = Corpus(n_tokens=1000, seq_len=64)                         # 15 sequences of 64 tokens and one of 40
    toks = c.tokens(tiny.model, tiny.tokenizer, tiny.spec.prompt_prefix, progress=False)
    monkeypatch.setattr(sm, "BATCH_ROWS", 1)
    C1, n1, d1 = sm.collect_second_moment(tiny.model, tiny.tokenizer, tiny.spec, 1, c, False, toks)
    monkeypatch.setattr(sm, "BATCH_ROWS", 32)
    C32, n32, d32 = sm.collect_second_moment(tiny.model, tiny.tokenizer, tiny.spec, 1, c, False, toks)
    assert (n1, d1) == (n32, d32) and n1 == sum(len(t) for t in toks)
    torch.testing.assert_close(C32, C1, rtol=1e-6, atol=1e-7)
