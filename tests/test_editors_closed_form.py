"""ROME's and MEMIT's closed forms against float64 NumPy references of the papers' equations, and the
second moment against keys recomputed by hand from the hidden states."""
from __future__ import annotations

import numpy as np
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
