"""The CUDA path in half precision (fp16, bf16): editors, statistics, scoring, and the apply rule giving the
same bits on the GPU as on the CPU. Skipped without a CUDA device (benchmarks/gpu_check.sh runs it where
there is one)."""
from __future__ import annotations

import pytest
import torch

from simulator.deltas import TensorDelta, apply_delta, tensor_fingerprint
from simulator.editors import get_editor, load_hparams
from simulator.models import load_model, model_fingerprint
from simulator.probes.scoring import Scorer
from simulator.requests import EditRequest
from simulator.stats import Corpus, InMemoryStatsCache, StatsProvider

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
HALF = [torch.float16, torch.bfloat16]
EIFFEL = EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome",
                     target_old=" Paris")


def _top1(lm, req) -> tuple[float, bool]:
    ids = lm.tokenizer(req.text, return_tensors="pt").to(lm.device)
    t = lm.tokenizer(req.target_new)["input_ids"][0]
    with torch.no_grad():
        p = lm.model(**ids).logits[0, -1].float().softmax(-1)
    return float(p[t]), int(p.argmax()) == t


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("method", ["rome", "memit"])
def test_edit_on_cuda_in_half_precision(method, dtype):
    lm = load_model("tiny-gptj", device="cuda", dtype=dtype, progress=False)
    assert lm.device.type == "cuda" and lm.dtype == dtype
    stats = StatsProvider(lm.fingerprint, Corpus(n_tokens=1024, seq_len=64), InMemoryStatsCache(), progress=False)
    p0, _ = _top1(lm, EIFFEL)
    res = get_editor(method).edit(lm.model, lm.tokenizer, lm.spec, [EIFFEL], load_hparams(method, lm.spec), stats=stats)
    assert model_fingerprint(lm.model) == lm.fingerprint, "the editor changed the model"
    for d in res.deltas:
        assert all(torch.isfinite(t).all() for t in d.factors.values())
        apply_delta(lm.model.get_parameter(d.tensor), d)
    p1, top = _top1(lm, EIFFEL)
    assert top and p1 > 10 * p0, f"{method} {dtype}: p(Rome) {p0:.4f} -> {p1:.4f}"


@pytest.mark.parametrize("dtype", HALF)
def test_rome_on_cuda_agrees_with_cpu(dtype):
    hp = load_hparams("rome", None, overrides={"mom2_adjustment": False, "early_stop_prob": 2.0,
                                               "v_num_grad_steps": 10, "layer": 1})
    out = {}
    for dev, dt in (("cpu", torch.float32), ("cuda", dtype)):
        lm = load_model("tiny-gptj", device=dev, dtype=dt, progress=False)
        out[dev] = get_editor("rome").edit(lm.model, lm.tokenizer, lm.spec, [EIFFEL], hp).deltas[0].dense(torch.float64)
    cos = torch.nn.functional.cosine_similarity(out["cpu"].flatten(), out["cuda"].cpu().flatten(), dim=0)
    assert float(cos) > 0.98, f"ROME on CUDA/{dtype} points elsewhere than on the CPU (cosine {float(cos):.3f})"


@pytest.mark.parametrize("dtype", HALF)
def test_apply_rule_gives_the_same_bits_on_cuda(dtype):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=g).to(dtype)
    d = TensorDelta("w", "low_rank", {"u": torch.randn(64, 3, generator=g), "v": torch.randn(256, 3, generator=g)})
    cpu, gpu = w.clone(), w.clone().cuda()
    apply_delta(cpu, d)
    apply_delta(gpu, d)
    assert tensor_fingerprint(cpu) == tensor_fingerprint(gpu)


@pytest.mark.parametrize("dtype", HALF)
def test_scoring_on_cuda(dtype):
    lm = load_model("tiny-gptj", device="cuda", dtype=dtype, progress=False)
    sc = Scorer(lm.model, lm.tokenizer, batch_size=4)
    pairs = [("The Eiffel Tower is located in", " Paris"), ("Toyota was founded in", " Japan"),
             ("The capital of Italy is", " Rome the eternal city")]
    a, b = sc.score(pairs), sc.score_one_by_one(pairs)
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids
        assert max(abs(p - q) for p, q in zip(x.token_logprobs, y.token_logprobs)) < 0.1
    assert sc.generate(["The capital of Italy is"], max_new_tokens=3)[0]
