"""Batched scoring against the one-forward-per-prompt reference (tiny-gptj; Gemma in the benchmark)."""
from __future__ import annotations

import math

import torch

from simulator.probes import metrics as M
from simulator.probes.scoring import Scorer

PAIRS = [
    ("The Eiffel Tower is located in", " Rome"),
    ("The Eiffel Tower is located in the city of", " Paris"),
    ("Danny Davis plays", " basketball"),
    ("The capital of Japan is", " Tokyo and Kyoto"),          # multi-token target
    ("Mozart", " was born in Vienna, Austria"),                 # short prompt, long target
    ("Einstein worked in physics and his native language was", " German"),
    ("xq zzv", " qqq"),                                         # byte fallback tokens
    ("The Eiffel Tower is located in", " Paris"),               # shares its row with " Rome"
    ("The capital of Japan is", " Tokyo"),                      # a prefix of the " Tokyo and Kyoto" row
]


def test_batched_matches_one_by_one(tiny):
    sc = Scorer(tiny.model, tiny.tokenizer, prefix=tiny.spec.prompt_prefix, batch_size=3)
    batched = sc.score(PAIRS)
    single = sc.score_one_by_one(PAIRS)
    for (p, t), b, s in zip(PAIRS, batched, single):
        assert b.token_ids == s.token_ids, f"target ids differ for {p!r}"
        assert b.argmax == s.argmax, f"argmax differs for {p!r}"
        for x, y in zip(b.token_logprobs, s.token_logprobs):
            assert abs(x - y) < 1e-5, f"log-prob {x} vs {y} for {p!r}+{t!r}"
    assert any(b.n > 1 for b in batched), "the probe set must contain multi-token targets"


def test_target_ids_are_the_difference_of_tokenisations(tiny):
    sc = Scorer(tiny.model, tiny.tokenizer, prefix=tiny.spec.prompt_prefix)
    for p, t in PAIRS:
        ctx, tgt = sc.encode(p, t)
        assert ctx + tgt == list(tiny.tokenizer(p + t)["input_ids"])
        assert ctx == list(tiny.tokenizer(p)["input_ids"])


def test_logprobs_match_float64_reference(tiny):
    """Higher-precision reference: the same forward in float64 agrees to 1e-4."""
    import copy
    sc = Scorer(tiny.model, tiny.tokenizer, batch_size=4)
    m64 = copy.deepcopy(tiny.model).double()
    sc64 = Scorer(m64, tiny.tokenizer, batch_size=1)
    for a, b in zip(sc.score(PAIRS), sc64.score_one_by_one(PAIRS)):
        assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)) < 1e-4


def test_distribution_over_whole_vocab_gives_exact_kl(tiny):
    """NKL's coarse-grained KL equals the full-vocabulary KL when the token set is the vocabulary."""
    import copy
    sc = Scorer(tiny.model, tiny.tokenizer)
    V = tiny.model.get_output_embeddings().weight.shape[0]
    prompt = "The Louvre is located in"
    ref = sc.score([(prompt, " Paris")], [V])[0].dist
    edited = copy.deepcopy(tiny.model)
    with torch.no_grad():
        edited.lm_head.weight.add_(0.05 * torch.randn(edited.lm_head.weight.shape, generator=torch.Generator().manual_seed(0)))
    sc2 = Scorer(edited, tiny.tokenizer)
    cur = sc2.score([(prompt, " Paris")], [ref["ids"]])[0].dist
    assert abs(ref["rest"]) < 1e-9 and abs(cur["rest"]) < 1e-9
    ids = torch.tensor(tiny.tokenizer(prompt)["input_ids"])[None]
    with torch.no_grad():
        lp = torch.log_softmax(tiny.model(ids).logits[0, -1].double(), -1)
        lq = torch.log_softmax(edited(ids).logits[0, -1].double(), -1)
    full = float((lp.exp() * (lp - lq)).sum())
    assert full > 1e-4, "the perturbation must move the distribution"
    assert abs(M.coarse_kl(ref, cur) - full) < 1e-6
    # a top-k coarse-graining is a lower bound of the full KL
    ref10 = sc.score([(prompt, " Paris")], [10])[0].dist
    cur10 = sc2.score([(prompt, " Paris")], [ref10["ids"]])[0].dist
    assert M.coarse_kl(ref10, cur10) <= full + 1e-9


def test_text_nll_matches_full_forward(tiny):
    sc = Scorer(tiny.model, tiny.tokenizer, batch_size=2)
    text = "The city of Paris is the capital of France. " * 12
    nll, n = sc.text_nll(text, window=32)
    ids = tiny.tokenizer(text)["input_ids"]
    want, cnt = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids), 32):
            c = ids[i:i + 32]
            if len(c) < 2:
                continue
            lp = torch.log_softmax(tiny.model(torch.tensor([c])).logits[0].double(), -1)
            want -= float(lp[:-1].gather(1, torch.tensor(c[1:])[:, None]).sum())
            cnt += len(c) - 1
    assert n == cnt
    assert abs(nll - want) < 1e-3 * max(1.0, want / 100)
    assert math.isfinite(M.perplexity(nll, n))


def test_text_nll_opens_every_window_with_the_models_opening(tiny):
    """A model with an opening (a BOS string, as SmolLM2's prefix or Gemma's own BOS): every window
    is opening + text tokens and predicts all of its text tokens, each from the opening on."""
    bos = tiny.tokenizer.bos_token
    sc = Scorer(tiny.model, tiny.tokenizer, prefix=bos, batch_size=3)
    text = "The city of Paris is the capital of France. " * 12
    nll, n = sc.text_nll(text, window=32)
    head = tiny.tokenizer(bos)["input_ids"]
    body = tiny.tokenizer(bos + text)["input_ids"][len(head):]
    assert head and body
    want, cnt = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(body), 32):
            w = head + body[i:i + 32]
            lp = torch.log_softmax(tiny.model(torch.tensor([w])).logits[0].double(), -1)
            k = len(head)
            want -= float(lp[k - 1:-1].gather(1, torch.tensor(w[k:])[:, None]).sum())
            cnt += len(w) - k
    assert n == cnt == len(body)
    assert abs(nll - want) < 1e-3 * max(1.0, want / 100)


def test_generate_is_greedy(tiny):
    sc = Scorer(tiny.model, tiny.tokenizer, batch_size=2)
    prompts = ["The Eiffel Tower is located in", "Mozart", "The capital of Japan is"]
    outs = sc.generate(prompts, max_new_tokens=4)
    for p, o in zip(prompts, outs):   # one by one, argmax loop
        ids = tiny.tokenizer(p)["input_ids"]
        with torch.no_grad():
            for _ in range(4):
                ids = ids + [int(tiny.model(torch.tensor([ids])).logits[0, -1].argmax())]
        assert o == tiny.tokenizer.decode(ids[len(tiny.tokenizer(p)["input_ids"]):])
