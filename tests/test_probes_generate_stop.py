"""Greedy generation that stops once every row has its stop string gives the text a full-length generation
gives, cut at the stop."""
from __future__ import annotations

import torch

from simulator.probes.scoring import Scorer


def _full_length(sc: Scorer, prompt: str, n: int) -> str:
    ids = torch.tensor([sc.tokens(prompt)])
    with torch.no_grad():
        gen = sc.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                do_sample=False, pad_token_id=sc.pad_id)
    return sc.tokenizer.decode(gen[0, ids.shape[1]:].tolist(), skip_special_tokens=True)


def test_early_stop_keeps_the_text_before_the_stop(tiny):
    sc = Scorer(tiny.model, tiny.tokenizer, batch_size=1)
    prompts = ["The Eiffel Tower is located in", "Toyota was founded in", "The capital of Italy is"]
    for p in prompts:
        full = _full_length(sc, p, 12)
        words = full.split()
        assert len(words) >= 2, f"tiny-gptj should continue {p!r} with words, got {full!r}"
        stop = " " + words[1]                     # a stop string that occurs inside the continuation
        want = full[: full.index(stop)]
        assert sc.generate([p], max_new_tokens=12, stop=stop) == [want]
        assert sc.generate([p], max_new_tokens=12, stop="never appears") == [full]


def test_early_stop_in_a_batch_waits_for_every_row(tiny):
    sc = Scorer(tiny.model, tiny.tokenizer, batch_size=8)
    prompts = ["The Eiffel Tower is located in", "Toyota was founded in", "The capital of Italy is"]
    alone = [Scorer(tiny.model, tiny.tokenizer, batch_size=1).generate([p], max_new_tokens=10, stop=" in")[0]
             for p in prompts]
    assert sc.generate(prompts, max_new_tokens=10, stop=" in") == alone
