"""General-ability sets and tasks: the spec, the real sets' readers, and each task's rule (Gu et al.'s
Model-Editing-Hurt test-task-code, EMMET's glue_eval) on outputs whose scores are worked out by hand."""
from __future__ import annotations

import json
import math

import pytest

from ledger.errors import InputError
from simulator.probes import GeneralSets, general_sets
from simulator.probes import metrics as M
from simulator.probes.general import TASKS, evaluate, general_records, rescore, values_of
from simulator.probes.scoring import TargetScore


def test_builtin_is_complete():
    g = GeneralSets.builtin()
    assert g.text and len(g.text.split()) > 100
    assert g.qa and g.sentiment and g.reasoning and g.summarization and g.piqa and g.fluency_prompts
    assert {r["label"] for r in g.sentiment} == {0, 1}
    assert set(g.task_items()) == {"qa", "sentiment", "reasoning", "summarization", "piqa"}
    assert general_sets("none") is None
    assert general_sets("loglik").task_items().keys() == {"sentiment", "piqa"}


def test_spec_errors_name_the_known_sets(tmp_path):
    with pytest.raises(InputError, match=r"unknown general-ability set 'squad'.*nq, gsm8k, sst2"):
        general_sets("nq,squad")
    with pytest.raises(InputError, match="at least 1"):
        general_sets("nq:0", data_dir=tmp_path)
    with pytest.raises(InputError, match=r"needs test-OpenDomainQA.jsonl.*nq=FILE"):
        general_sets("nq", data_dir=tmp_path)


def test_real_sets_read_and_sample(shared_dir):
    data = shared_dir / "data"
    g = general_sets("nq,gsm8k,sst2,samsum,boolq:7,dialogue,rte,mmlu,piqa,wikitext", n=5, seed=3, data_dir=data)
    assert {k: len(v) for k, v in g.real.items()} == {"nq": 5, "gsm8k": 5, "sst2": 5, "samsum": 5, "boolq": 7,
                                                      "dialogue": 5, "rte": 5, "mmlu": 5}
    assert len(g.piqa) == 5 and "Robert Boulter" in g.text
    again = general_sets("nq,gsm8k,sst2,samsum,boolq:7,dialogue,rte,mmlu,piqa,wikitext", n=5, seed=3, data_dir=data)
    assert again.real == g.real and again.piqa == g.piqa                   # same seed, same items
    assert general_sets("nq", n=5, seed=4, data_dir=data).real["nq"] != g.real["nq"]
    # whole files: the first records map to the fields read off the files by hand
    full = general_sets("nq,gsm8k,sst2,boolq,rte,mmlu,piqa", n=10**6, data_dir=data)
    nq = full.real["nq"][0]
    assert nq["question"] == "who got the first nobel prize in physics?" and nq["answers"] == ["Wilhelm Conrad Röntgen"]
    assert nq["passage"].startswith("\n\nThe first Nobel Prize in Physics")
    gs = full.real["gsm8k"][0]
    assert gs["answer"] == "18" and gs["rationale"].endswith("farmer’s market.\n")
    assert full.real["sst2"][0] == {"text": "it 's a charming and often affecting journey . ", "label": 1}
    assert len(full.real["sst2"]) == 872 and len(full.real["boolq"]) == 3267
    assert full.real["boolq"][0]["label"] == 0                              # "answer": false
    assert len(full.real["mmlu"]) == 1516 - 10                              # EMMET's first 10 are few-shot demos
    assert full.piqa[0]["label"] == 0 and full.piqa[1]["label"] == 1        # dev-labels.lst: 0, 1, 1
    assert {r["label"] for r in full.real["rte"]} == {0, 1}
    # an explicit file
    one = data / "downstream/model_editing_hurt/test-reasoning.jsonl"
    assert len(general_sets(f"gsm8k={one}:3", data_dir=data).real["gsm8k"]) == 3


def test_gu_prompts_are_the_reference_text():
    r = {"question": "Q?", "rationale": "R.\n", "answer": "7"}
    assert TASKS["gsm8k"].prompt(r) == "Q: Q? A:Let's think step by step. R.\n Therefore, the answer (arabic numerals) is:"
    assert TASKS["samsum"].prompt({"dialogue": "A: hi"}) == "A: hi\nTL;DR:"
    assert TASKS["sst2"].prompt({"text": "good ."}).endswith("The answer should be exact 'positive' or 'negative'. text: good . answer:")
    assert TASKS["boolq"].prompt({"passage": "P", "question": "q"}).endswith("passage: P question: q. answer:")
    assert (TASKS["gsm8k"].max_new_tokens, TASKS["sst2"].max_new_tokens, TASKS["samsum"].max_new_tokens,
            TASKS["nq"].max_new_tokens, TASKS["boolq"].max_new_tokens) == (5, 1, 25, 20, 1)


def test_gu_rules_by_hand():
    # NQ: a run of consecutive generated words equals an answer (after SQuAD normalisation)
    assert M.span_exact_match(" It was awarded to Wilhelm Röntgen in 1901", ["Wilhelm Röntgen"])
    assert not M.span_exact_match(" It was awarded to Wilhelm", ["Wilhelm Röntgen"])
    assert rescore("nq", [{"pred": " the Pacific.", "answers": ["Pacific"]}, {"pred": " no", "answers": ["x"]}]) == {"nq_em": 0.5}
    # GSM8K: the gold number's text occurs in the 5 generated tokens
    assert rescore("gsm8k", [{"pred": " 18 dollars", "answer": "18"}, {"pred": " 1 8", "answer": "18"}]) == {"gsm8k_solve": 0.5}
    # SST-2: answered items only (reference `accuracy`), and over all items (`total_accuracy`)
    rows = [{"pred": " positive", "label": 1}, {"pred": " negative", "label": 1}, {"pred": " neutral", "label": 0},
            {"pred": " Negative", "label": 0}]
    assert rescore("sst2", rows) == {"sst2_acc": 2 / 3, "sst2_acc_all": 2 / 4}
    # BoolQ: the generated token must be exactly " yes" / " no"
    rows = [{"pred": " yes", "label": 1}, {"pred": "yes", "label": 1}, {"pred": " No", "label": 0}]
    assert rescore("boolq", rows) == {"boolq_acc": 1.0, "boolq_acc_all": 2 / 3}
    # MuTual: the gold letter in the generated token, over all items
    assert rescore("dialogue", [{"pred": " B", "answer": "B"}, {"pred": " C", "answer": "B"}, {"pred": " the", "answer": "A"}]) == \
        {"dialogue_acc": 1 / 3}
    # RTE: "true" = entailment
    assert rescore("rte", [{"pred": " True", "label": 1}, {"pred": " true", "label": 0}]) == {"rte_acc": 0.5, "rte_acc_all": 0.5}


def test_samsum_rouge_is_gu_et_al_rouge():
    """pltrdy's rouge (Gu et al. import ``from rouge import Rouge``): word *sets*, ROUGE-L union LCS.
    pred "the cat sat", ref "the cat sat on the mat":
      ROUGE-1: {the, cat, sat} vs {the, cat, sat, on, mat}: P = 3/3, R = 3/5, F = .75
      ROUGE-2: 2 of 2 bigrams vs 5 distinct bigrams: P = 1, R = .4, F = .8/1.4
      ROUGE-L: LCS 3, m = 5 distinct reference words, n = 3: F = .75
    (Google's rouge-score would count "the" twice: R1 F = 2/3.)"""
    want = (0.75 + 0.8 / 1.4 + 0.75) / 3
    assert M.rouge_gu("the cat sat", "the cat sat on the mat") == pytest.approx(want, abs=1e-7)
    assert rescore("samsum", [{"pred": "the cat sat", "summary": "the cat sat on the mat"},
                              {"pred": ".", "summary": "x"}])["samsum_rouge"] == pytest.approx(want / 2, abs=1e-7)


class TaskStub:
    """generate: a fixed answer per prompt; score: a fixed log-likelihood per (prompt, target)."""

    def __init__(self, gen, ll):
        self.gen, self.ll = gen, ll

    def generate(self, prompts, max_new_tokens=0, stop=None, desc=""):
        return [self.gen(p, max_new_tokens) for p in prompts]

    def score(self, pairs, dists=None, desc=""):
        return [TargetScore([1], [self.ll(p, t)], [1]) for p, t in pairs]

    def text_nll(self, text, window=128, desc=""):
        return 2 * math.log(3), 2


def test_evaluate_and_records_from_outputs():
    g = GeneralSets(text="held text", real={
        "gsm8k": [{"question": "a", "rationale": "", "answer": "4"}, {"question": "b", "rationale": "", "answer": "5"}],
        "mmlu": [{"question": "q", "choices": ["w", "x", "y", "z"], "label": 2}]},
        piqa=[{"goal": "g", "sol1": "s1", "sol2": "s2", "label": 1}], spec="test")
    seen = {}

    def gen(p, n):
        seen[p] = n
        return " 4" if "Q: a" in p else " 7"
    stub = TaskStub(gen, lambda p, t: {" C": -0.1, " s2": -1.0}.get(t, -3.0))
    res = evaluate(stub, g, {"downstream", "perplexity", "other_task"})
    assert res["gsm8k"]["values"] == {"gsm8k_solve": 0.5} and set(seen.values()) == {5}
    assert res["mmlu"]["values"] == {"mmlu_acc": 1.0}                    # " C" has the highest log-likelihood
    assert res["piqa"]["suite"] == "other_task" and res["piqa"]["values"] == {"accuracy": 1.0}
    assert res["perplexity"]["values"]["ppl"] == pytest.approx(3.0)
    for name, r in res.items():                                          # every value again from its outputs
        assert rescore(name, json.loads(json.dumps(r["detail"]))) == pytest.approx(r["values"])
    base = {"downstream.gsm8k_solve": 1.0, "other_task.accuracy": 0.0}
    recs = {(r.suite, r.metric, r.against): r.value for r in general_records(res, base, {"downstream.mmlu_acc": 0.5})}
    assert recs[("downstream", "gsm8k_solve", "base")] == -0.5
    assert recs[("other_task", "accuracy", "base")] == 1.0
    assert recs[("downstream", "mmlu_acc", "previous")] == 0.5
    assert values_of(res)["perplexity.ppl"] == pytest.approx(3.0)
