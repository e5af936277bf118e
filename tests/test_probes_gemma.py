"""Batched and one-by-one scoring agree to 1e-5 in log-probability on the embedded model (Gemma 3 270M)."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

PAIRS = [
    ("The Eiffel Tower is located in", " Paris"),
    ("The Eiffel Tower is located in", " Rome"),
    ("The mother tongue of Danielle Darrieux is", " French"),
    ("Danielle Darrieux, a native", " speaker of English"),          # multi-token
    ("Toyota is headquartered in", " Japan"),
    ("The capital city of the United States of America is", " Washington, D.C."),
    ("Michael Jordan plays the sport of", " basketball"),
    ("Mozart", " was born in Salzburg"),
    ("Which language is the official language of Australia?", " English"),
]


@pytest.fixture(scope="module")
def gemma():
    from simulator.models import load_model
    try:
        return load_model("gemma-3-270m", device="cpu", dtype=torch.float32, progress=False)
    except Exception as e:   # the embedded package is a declared dependency; say why if it is missing
        pytest.skip(f"embedded Gemma 3 270M not loadable here: {e}")


def _worst(sc, pairs):
    batched, single = sc.score(pairs), sc.score_one_by_one(pairs)
    worst = 0.0
    for (p, t), b, s in zip(pairs, batched, single):
        assert b.token_ids == s.token_ids and b.argmax == s.argmax, f"{p!r}+{t!r}"
        worst = max(worst, max(abs(x - y) for x, y in zip(b.token_logprobs, s.token_logprobs)))
    return worst, batched


def test_batched_matches_one_by_one_on_gemma(gemma):
    """float64: the batched path (padding, shared rows, gathered head) is the same computation
    (< 1e-5; in practice ~1e-12). float32: the two kernels' rounding differs by ~1e-5 (measured
    max 1.1e-5 over 96 CounterFact pairs by benchmarks/bench_scoring.py), bounded here at 1e-4."""
    import copy
    from simulator.probes.scoring import Scorer
    sc = Scorer(gemma.model, gemma.tokenizer, prefix=gemma.spec.prompt_prefix, batch_size=4)
    w32, batched = _worst(sc, PAIRS)
    assert w32 < 1e-4, f"float32 batched vs one-by-one differ by {w32:.2e}"
    m64 = copy.deepcopy(gemma.model).double()
    w64, _ = _worst(Scorer(m64, gemma.tokenizer, prefix=gemma.spec.prompt_prefix, batch_size=4), PAIRS[:5])
    del m64
    assert w64 < 1e-5, f"float64 batched vs one-by-one differ by {w64:.2e} in log-probability"
    assert any(b.n > 1 for b in batched)
    # the model knows the easy facts: the scores are those of a real model, not noise
    eiffel_paris, eiffel_rome = batched[0], batched[1]
    assert eiffel_paris.logprob > eiffel_rome.logprob
