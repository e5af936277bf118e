"""ProbeRunner on tiny-gptj: the reference/measure protocol, records and JSON state."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from simulator.probes import GeneralSets, ProbeConfig, ProbeRunner
from simulator.probes.scoring import Scorer
from simulator.requests import EditRequest, ProbeItem, Step


def _step(subject, new, old, **kw):
    return Step(requests=[EditRequest(subject, "The {} is located in", new, old)], probes={
        "rewrite": [ProbeItem(f"The {subject} is located in", new, old)],
        "paraphrase": [ProbeItem(f"The {subject} is in the city of", new, old)],
        "neighborhood": [ProbeItem("The Louvre is located in", " Paris", new),
                         ProbeItem("Big Ben is located in", " London", new)],
        "attribute": [ProbeItem(f"The {subject} was created by", " Albert Einstein")],
        "distract": [ProbeItem(f"The {subject} is located in{new}. The Louvre is located in", " Paris", new)],
        "portability_sr": [ProbeItem("The tower is located in", new)],
    }, **kw)


@pytest.fixture()
def model_copy(tiny):
    return copy.deepcopy(tiny.model)


def _perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.transformer.h[1].mlp.fc_out.weight
        w.add_(0.5 * torch.randn(w.shape, generator=g))


def test_measure_protocol(tiny, model_copy):
    steps = [_step("Eiffel Tower", " Rome", " Paris"), _step("Colosseum", " Tokyo", " Rome"),
             _step("Statue of Liberty", " Berlin", " New York")]
    runner = ProbeRunner(model_copy, tiny.tokenizer, tiny.spec, ProbeConfig(nkl_topk=50), progress=False)
    ref = runner.reference(steps)
    ref = json.loads(json.dumps(ref))                       # what the lead stores and reloads
    prev = None
    for t in (1, 2, 3):
        _perturb(model_copy, t)
        recs, prev = runner.measure(step_index=t, steps=steps, reference=ref, previous=prev, final=t == 3)
        prev = json.loads(json.dumps(prev))
        got = {(r.suite, r.metric, r.against) for r in recs}
        for need in [("rewrite", "efficacy_top1", "none"), ("rewrite", "efficacy_prob", "none"),
                     ("paraphrase", "generalization_top1", "none"), ("neighborhood", "ns", "none"),
                     ("neighborhood", "nm", "none"), ("neighborhood", "nkl", "base"),
                     ("neighborhood", "locality_acc", "base"), ("attribute", "oa", "base"),
                     ("distract", "dn", "base"), ("portability_sr", "accuracy", "none")]:
            assert need in got, f"step {t}: missing record {need}"
        assert (("retention", "efficacy_top1", "none") in got) == (t > 1), "retention needs an earlier edit"
        if t > 1:   # the previous version was scored on this step's items by the lookahead
            assert ("neighborhood", "nkl", "previous") in got
            assert ("rewrite", "efficacy_prob", "previous") in got
        for r in recs:
            json.dumps(r.detail)
        if t == 1:
            continue
        # the retention detail has one row per step so far
        ret = next(r for r in recs if r.suite == "retention" and r.against == "none")
        assert [row["step"] for row in ret.detail] == list(range(1, t + 1))
        assert all(math.isfinite(r.value) for r in recs)
    # recompute the efficacy of step 3 from the detail alone
    eff = next(r for r in recs if (r.suite, r.metric, r.against) == ("rewrite", "efficacy_prob", "none"))
    det = next(r for r in recs if (r.suite, r.metric, r.against) == ("rewrite", "efficacy_top1", "none")).detail
    assert eff.value == sum(d["p"] > d["p_alt"] for d in det) / len(det)


def test_measure_values_against_direct_scoring(tiny, model_copy):
    steps = [_step("Eiffel Tower", " Rome", " Paris")]
    runner = ProbeRunner(model_copy, tiny.tokenizer, tiny.spec, ProbeConfig(nkl_topk=10**6), progress=False)
    ref = runner.reference(steps)
    base_sc = Scorer(tiny.model, tiny.tokenizer)
    _perturb(model_copy, 7)
    recs, _ = runner.measure(step_index=1, steps=steps, reference=ref, previous=None, final=True)
    val = {(r.suite, r.metric, r.against): r.value for r in recs}
    nb = steps[0].probes["neighborhood"]
    cur = Scorer(model_copy, tiny.tokenizer).score_one_by_one([(i.prompt, i.target) for i in nb] + [(i.prompt, i.alt) for i in nb])
    pt, pa = [c.prob for c in cur[:2]], [c.prob for c in cur[2:]]
    assert val[("neighborhood", "ns", "none")] == sum(a > b for a, b in zip(pt, pa)) / 2
    assert abs(val[("neighborhood", "nm", "none")] - sum(a - b for a, b in zip(pt, pa)) / 2) < 1e-6
    # NKL over the full vocabulary, KL(P_edited || P_base) as CounterFact+, from two plain forwards
    kls = []
    for it in nb:
        ids = torch.tensor(tiny.tokenizer(it.prompt)["input_ids"])[None]
        with torch.no_grad():
            lp = torch.log_softmax(tiny.model(ids).logits[0, -1].double(), -1)
            lq = torch.log_softmax(model_copy(ids).logits[0, -1].double(), -1)
        kls.append(float((lq.exp() * (lq - lp)).sum()))
    assert abs(val[("neighborhood", "nkl", "base")] - sum(kls) / 2) < 1e-6
    b = base_sc.score_one_by_one([(nb[0].prompt, nb[0].target)])[0]
    assert b.argmax is not None


def test_schedule_and_general(tiny, model_copy):
    steps = [_step("Eiffel Tower", " Rome", " Paris"), _step("Colosseum", " Tokyo", " Rome")]
    g = GeneralSets.builtin()
    g.qa, g.reasoning, g.summarization = g.qa[:2], g.reasoning[:1], g.summarization[:1]
    g.fluency_tokens = 4
    cfg = ProbeConfig(every={"perplexity": 0, "downstream": 2, "fluency": 0, "paraphrase": 2})
    runner = ProbeRunner(model_copy, tiny.tokenizer, tiny.spec, cfg, general=g, progress=False)
    ref = runner.reference(steps)
    assert "perplexity.ppl" in ref["base_metrics"] and "downstream.sentiment_acc" in ref["base_metrics"]
    r1, s1 = runner.measure(step_index=1, steps=steps, reference=ref, previous=None)
    suites1 = {r.suite for r in r1}
    assert "perplexity" not in suites1 and "downstream" not in suites1 and "paraphrase" not in suites1
    _perturb(model_copy, 3)
    r2, _ = runner.measure(step_index=2, steps=steps, reference=ref, previous=s1, final=True)
    got = {(r.suite, r.metric, r.against) for r in r2}
    for need in [("perplexity", "ppl", "none"), ("perplexity", "ppl", "base"), ("downstream", "qa_em", "none"),
                 ("downstream", "sentiment_acc", "base"), ("downstream", "reasoning_solve", "none"),
                 ("downstream", "summarization_rougeL", "none"), ("other_task", "accuracy", "none"),
                 ("fluency", "ngram_entropy", "none"), ("paraphrase", "generalization_top1", "none")]:
        assert need in got, f"missing {need}"
    ppl = next(r for r in r2 if (r.suite, r.metric, r.against) == ("perplexity", "ppl", "base"))
    assert abs(ppl.value - (next(r.value for r in r2 if (r.suite, r.metric, r.against) == ("perplexity", "ppl", "none"))
                            - ref["base_metrics"]["perplexity.ppl"])) < 1e-9
