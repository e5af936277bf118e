"""General-ability tasks: how each set is asked and scored.

A task turns its items into raw model outputs (greedy generations, or log-likelihoods of choices)
and then, separately, scores those outputs (``score(rows)``), so that every value can be recomputed
from the outputs kept in the ledger. Sources:

* Gu et al. 2024, "Model Editing Harms General Abilities of Large Language Models"
  (JasonForJoy/Model-Editing-Hurt, test-task-code/test-*.py): nq, gsm8k, sst2, samsum, boolq,
  dialogue (MuTual), rte: their prompt text, their number of greedy tokens, their string rule.
* EMMET / unified-model-editing (scalable-model-editing, glue_eval/mmlu_eval.py): mmlu, zero-shot,
  the answer letter with the highest probability ("correct_new").
* PIQA (the survey's Other Task, Yao et al.): the choice with the higher summed log-likelihood after
  "Question: {goal}\\nAnswer:" (lm-evaluation-harness's PIQA format).
* The built-in tasks (qa, sentiment, reasoning, summarization) use this project's prompts.

Deliberate differences from the reference code are listed in docs/metrics.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import metrics as M

DOWNSTREAM, OTHER_TASK, PERPLEXITY, FLUENCY = "downstream", "other_task", "perplexity", "fluency"


@dataclass(frozen=True)
class Task:
    name: str
    suite: str                                   # the probe suite its records go to
    metrics: tuple[str, ...]                     # metric names; the first is the task's headline
    source: str                                  # where the prompt and the rule come from
    prompt: Callable[[dict], str] | None = None
    max_new_tokens: int = 0                      # > 0: a generation task
    stop: str | None = None                      # cut the generation here
    choices: Callable[[dict], list[str]] | None = None   # a choice task: targets after the prompt
    score: Callable[[list[dict]], dict[str, float]] | None = None   # detail rows -> metric values
    keep: tuple[str, ...] = ()                   # item fields kept in each detail row (gold answers, labels)

    @property
    def generates(self) -> bool:
        return self.max_new_tokens > 0


# ----------------------------------------------------------------------------- scoring rules (pure)
def _mean_flag(rows: list[dict], flag: str) -> float:
    return M.accuracy(r[flag] for r in rows)


def _score_nq(rows):
    return {"nq_em": M.accuracy(M.span_exact_match(r["pred"], r["answers"]) for r in rows)}


def _score_gsm8k(rows):
    return {"gsm8k_solve": M.accuracy(M.contains_answer(r["pred"], r["answer"]) for r in rows)}


def _classify(metric: str, rule, words):
    def score(rows):
        acc, acc_all = M.answered_accuracy([rule(r["pred"], words) for r in rows], [r["label"] for r in rows])
        return {metric: acc, f"{metric}_all": acc_all}
    return score


def _score_samsum(rows):
    return {"samsum_rouge": M.mean(M.rouge_gu(r["pred"], r["summary"]) for r in rows)}


def _score_dialogue(rows):
    # test-dialogue.py: correct when the gold letter is in the one generated token (and some letter is);
    # accuracy over all items (unanswered ones count as wrong)
    return {"dialogue_acc": M.accuracy(any(c in r["pred"] for c in "ABCD") and r["answer"] in r["pred"] for r in rows)}


def _choice_acc(metric: str):
    def score(rows):
        return {metric: M.accuracy(M.choice(r["ll"]) == r["label"] for r in rows)}
    return score


def _score_qa(rows):
    return {"qa_em": M.accuracy(M.exact_match(r["pred"], r["answers"]) for r in rows)}


def _num_eq(a: str | None, b: str) -> bool:
    if a is None:
        return False
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return a == b


def _score_reasoning(rows):
    return {"reasoning_solve": M.accuracy(_num_eq(M.last_number(r["pred"]), r["answer"]) for r in rows)}


def _score_summaries(rows):
    rg = M.rouge([r["pred"] for r in rows], [r["summary"] for r in rows])
    return {f"summarization_{k}": v for k, v in rg.items()}


# ----------------------------------------------------------------------------- prompts
def _nq_prompt(r):        # test-OpenDomainQA.py
    return f"Refer to the passage below and answer the following question. Passage: {r['passage']} Question: {r['question']}"


def _gsm8k_prompt(r):     # test-reasoning.py: the gold rationale is part of the prompt
    return f"Q: {r['question']} A:Let's think step by step. {r['rationale']} Therefore, the answer (arabic numerals) is:"


def _sst2_prompt(r):      # test-SentimentAnalysis.py
    return ("For each snippet of text,label the sentiment of the text as positive or negative.The answer should be "
            f"exact 'positive' or 'negative'. text: {r['text']} answer:")


def _samsum_prompt(r):    # test-summarization.py
    return f"{r['dialogue']}\nTL;DR:"


def _boolq_prompt(r):     # test-ClosedDomainQA.py
    return ("Please answer the given question based on the passage. The answer should be exact 'yes' or 'no'. "
            f"passage: {r['passage']} question: {r['question']}. answer:")


def _dialogue_prompt(r):  # test-dialogue.py (its spelling kept)
    o = r["options"]
    return (f"Q: {r['article']} Which choice is correct? Answer Chioces: (A){o[0]}(B){o[1]}(C){o[2]}(D){o[3]} "
            "A: Among A through D, the answer is")


def _rte_prompt(r):       # test-NLI.py
    return f"{r['sentence1']} entails the {r['sentence2']}. True or False? answer:"


def _mmlu_prompt(r):      # glue_eval/mmlu_eval.py, zero-shot
    c = r["choices"]
    return f"Question: {r['question']}\n(A) {c[0]}\n(B) {c[1]}\n(C) {c[2]}\n(D) {c[3]}\nAnswer:"


def _piqa_prompt(r):
    return f"Question: {r['goal']}\nAnswer:"


TASKS: dict[str, Task] = {t.name: t for t in [
    # Gu et al. (Model-Editing-Hurt)
    Task("nq", DOWNSTREAM, ("nq_em",), "Gu et al., test-OpenDomainQA.py", _nq_prompt, 20,
         score=_score_nq, keep=("answers",)),
    Task("gsm8k", DOWNSTREAM, ("gsm8k_solve",), "Gu et al., test-reasoning.py", _gsm8k_prompt, 5,
         score=_score_gsm8k, keep=("answer",)),
    Task("sst2", DOWNSTREAM, ("sst2_acc", "sst2_acc_all"), "Gu et al., test-SentimentAnalysis.py", _sst2_prompt, 1,
         score=_classify("sst2_acc", M.label_in, ("negative", "positive")), keep=("label",)),
    Task("samsum", DOWNSTREAM, ("samsum_rouge",), "Gu et al., test-summarization.py", _samsum_prompt, 25,
         score=_score_samsum, keep=("summary",)),
    Task("boolq", DOWNSTREAM, ("boolq_acc", "boolq_acc_all"), "Gu et al., test-ClosedDomainQA.py", _boolq_prompt, 1,
         score=_classify("boolq_acc", M.label_exact, (" no", " yes")), keep=("label",)),
    Task("dialogue", DOWNSTREAM, ("dialogue_acc",), "Gu et al., test-dialogue.py (MuTual)", _dialogue_prompt, 1,
         score=_score_dialogue, keep=("answer",)),
    Task("rte", DOWNSTREAM, ("rte_acc", "rte_acc_all"), "Gu et al., test-NLI.py", _rte_prompt, 1,
         score=_classify("rte_acc", M.label_in, ("false", "true")), keep=("label",)),
    # EMMET's GLUE eval
    Task("mmlu", DOWNSTREAM, ("mmlu_acc",), "EMMET glue_eval/mmlu_eval.py (zero-shot, letter probability)",
         _mmlu_prompt, choices=lambda r: [" A", " B", " C", " D"], score=_choice_acc("mmlu_acc"), keep=("label",)),
    # the survey's Other Task
    Task("piqa", OTHER_TASK, ("accuracy",), "PIQA (Bisk et al.), lm-evaluation-harness format", _piqa_prompt,
         choices=lambda r: [" " + r["sol1"], " " + r["sol2"]], score=_choice_acc("accuracy"), keep=("label",)),
    # built-in items with the project's prompts
    Task("qa", DOWNSTREAM, ("qa_em",), "editledger built-in", lambda r: f"Question: {r['question']}\nAnswer:", 12,
         stop="\n", score=_score_qa, keep=("answers",)),
    Task("sentiment", DOWNSTREAM, ("sentiment_acc",), "editledger built-in",
         lambda r: f"Review: {r['text']}\nSentiment:", choices=lambda r: [" negative", " positive"],
         score=_choice_acc("sentiment_acc"), keep=("label",)),
    Task("reasoning", DOWNSTREAM, ("reasoning_solve",), "editledger built-in",
         lambda r: f"Question: {r['question']}\nAnswer:", 48, stop="\nQuestion:", score=_score_reasoning,
         keep=("answer",)),
    Task("summarization", DOWNSTREAM, ("summarization_rouge1", "summarization_rouge2", "summarization_rougeL"),
         "editledger built-in", lambda r: f"Dialogue:\n{r['dialogue']}\nSummary:", 40, stop="\n",
         score=_score_summaries, keep=("summary",)),
]}
