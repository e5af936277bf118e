"""ROME's and MEMIT's closed forms against float64 NumPy references of the papers' equations, and the
second moment against keys recomputed by hand from the hidden states."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simulator.editors.memit import memit_closed_form
from simulator.editors.rome import rome_closed_form
from simulator.stats import Corpus, collect_second_moment


def _spd(rng, d):
    A = rng.standard_normal((d, d))
    return A @ A.T / d + 0.1 * np.eye(d)


def test_rome_closed_form_matches_reference():
    rng = np.random.default_rng(0)
    out, d = 7, 11
    W, b, k, v = rng.standard_normal((out, d)), rng.standard_normal(out), rng.standard_normal(d), rng.standard_normal(out)
    C = _spd(rng, d)
    Cik = np.linalg.inv(C) @ k
    ref = np.outer(v - W @ k - b, Cik) / (Cik @ k)           # Lambda (C^-1 k)^T
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    u, vv = rome_closed_form(t(W), t(b), t(C), t(k), t(v))
    got = (u.double() @ vv.double().T).numpy()
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose((W + got) @ k + b, v, rtol=1e-4, atol=1e-4)  # the new fact is stored exactly
    # identity C: plain rank-one projection
    u, vv = rome_closed_form(t(W), None, None, t(k), t(v))
    ref_i = np.outer(v - W @ k, k) / (k @ k)
    np.testing.assert_allclose((u.double() @ vv.double().T).numpy(), ref_i, rtol=2e-4, atol=2e-5)


def test_memit_closed_form_matches_reference():
    rng = np.random.default_rng(1)
    out, d, n, lam = 5, 9, 3, 4.0
    K, R, C = rng.standard_normal((d, n)), rng.standard_normal((out, n)), _spd(rng, d)
    ref = R @ K.T @ np.linalg.inv(lam * C + K @ K.T)
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    u, v = memit_closed_form(t(C), t(K), t(R), lam)
    assert u.shape == (out, n) and v.shape == (d, n)
    got = (u.double() @ v.double().T).numpy()
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)
    # normal equations of  min ||Delta K - R||^2 + lam tr(Delta C Delta^T)
    np.testing.assert_allclose(got @ (lam * C + K @ K.T), R @ K.T, rtol=1e-4, atol=1e-4)


def test_second_moment_matches_keys_by_hand(tiny, tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("The Eiffel Tower is located in the city of Paris.\nToyota was founded in Japan.\n"
                 "The capital of Italy is Rome. I read this in the news.\n")
    corpus = Corpus(kind="file", path=str(f), n_tokens=40, seq_len=16)
    C, n, digest = collect_second_moment(tiny.model, tiny.tokenizer, tiny.spec, 1, corpus, progress=False)
    toks = corpus.tokens(tiny.model, tiny.tokenizer)
    blk = tiny.model.transformer.h[1]
    keys = []
    with torch.no_grad():
        for s in toks:
            h = tiny.model(input_ids=s[None], output_hidden_states=True).hidden_states[1][0]
            keys.append(blk.mlp.act(blk.mlp.fc_in(blk.ln_1(h))).double())
    K = torch.cat(keys)
    assert n == K.shape[0] and 20 < n <= 40
    torch.testing.assert_close(C.double(), K.T @ K / n, rtol=1e-4, atol=1e-6)
    assert len(digest) == 64


def test_memit_target_through_gemma_post_norm():
    """A residual change r is mapped to a projection-output change that the post-MLP norm turns back into r,
    up to the radial part a scale-free norm removes (first order: y1 = y0 + r - y0 (a.e)/d with
    a = m0/rms(m0), e = r/g), and channels with zero gain are left alone."""
    from types import SimpleNamespace

    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    from simulator.editors.memit import _through_post_norm

    torch.manual_seed(0)
    d = 16
    norm = Gemma3RMSNorm(d, eps=1e-9)
    with torch.no_grad():
        norm.weight.copy_(0.5 * torch.rand(d) + 0.2)
        norm.weight[3] = -1.0  # gain 1 + w = 0: this channel cannot be moved
    model = torch.nn.Module()
    model.n = norm
    spec = SimpleNamespace(mlp_post_norm="n")
    m0 = torch.randn(d, 2, dtype=torch.float32)
    r = 1e-4 * torch.randn(d, 2)
    r[3] = 0.0
    dm = _through_post_norm(model, spec, 0, m0, r)
    assert torch.all(dm[3] == 0)
    with torch.no_grad():
        y0, y1 = norm(m0.T).T.double(), norm((m0 + dm).T).T.double()
    g = (1 + norm.weight.detach()).double()
    a = (m0 / m0.pow(2).mean(0, keepdim=True).sqrt()).double()
    e = torch.where(g[:, None] == 0, torch.zeros_like(a), r.double() / g[:, None].clamp_min(1e-12))
    want = r.double() - y0 * (a * e).sum(0, keepdim=True) / d
    torch.testing.assert_close(y1 - y0, want, atol=3e-6, rtol=1e-2)


def test_value_loss_is_the_reference_loss():
    """kmeng01/rome compute_v (and memit compute_z): loss = nll + kl_factor * kl_div(init, current,
    log_target=True, batchmean) + v_weight_decay * ||delta|| / ||v0||^2, worked out by hand."""
    import math

    from simulator.editors.value import value_loss
    cur = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))          # the edited model on "{} is a"
    init = torch.log(torch.tensor([[0.25, 0.5, 0.25]]))         # the original
    delta, v0 = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 2.0])
    got = value_loss(torch.tensor(1.5), cur, init, delta, v0.norm(), kl_factor=0.0625, weight_decay=0.5)
    # KL(edited || original) = .5 ln(.5/.25) + .25 ln(.25/.5) + .25 ln(1) = .25 ln 2
    # weight decay = .5 * ||delta|| / ||v0||^2 = .5 * 5 / 4 (the norm, not its square)
    want = 1.5 + 0.0625 * 0.25 * math.log(2) + 0.5 * 5 / 4
    assert float(got) == pytest.approx(want, abs=1e-6)
    assert float(value_loss(torch.tensor(1.5), None, None, delta, v0.norm(), kl_factor=0.0625,
                            weight_decay=0.0)) == pytest.approx(1.5)
