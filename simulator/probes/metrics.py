"""Metric arithmetic: pure functions over scored items (probabilities, top-1 flags, distributions,
generated text). No model, no torch: tests drive every function with hand-made numbers.

Each function names the reference code whose formula it follows (docs/metrics.md lists them all).
Conventions:

* ``p`` of a target is ROME's length-normalised probability exp(mean token log-prob)
  (kmeng01/rome, experiments/py/eval_utils_counterfact.py); ``P(new) > P(old)`` comparisons use it.
  Li et al.'s conflict and round metrics use the same per-prompt probability, averaged over the
  prompts of a fact ("P-bar").
* Rates are fractions in [0, 1] (the report multiplies by 100 where the survey prints percents).
* Divergences in nats: NKL summed over the vocabulary; the round-edit Distortion as Li et al.'s
  summarize.py computes it (a JS divergence divided by |Obj|).
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence

from rouge import Rouge


def mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- reliability / NS / NM
def success_rate(p_a: Sequence[float], p_b: Sequence[float]) -> float:
    """Fraction of items with p_a > p_b: efficacy/paraphrase (new > old), NS (true > new), CS."""
    assert len(p_a) == len(p_b), "success_rate needs parallel lists"
    return mean(1.0 if a > b else 0.0 for a, b in zip(p_a, p_b))


def magnitude(p_a: Sequence[float], p_b: Sequence[float]) -> float:
    """Mean of p_a - p_b: NM with (true, new), efficacy magnitude with (new, old)."""
    assert len(p_a) == len(p_b), "magnitude needs parallel lists"
    return mean(a - b for a, b in zip(p_a, p_b))


def neighborhood_score(p_true: Sequence[float], p_new: Sequence[float]) -> float:
    """CounterFact NS: fraction of neighbourhood prompts where P[true object] > P[new object]."""
    return success_rate(p_true, p_new)


def neighborhood_magnitude(p_true: Sequence[float], p_new: Sequence[float]) -> float:
    """CounterFact NM: mean of P[true object] - P[new object] over neighbourhood prompts."""
    return magnitude(p_true, p_new)


def accuracy(flags: Iterable[bool]) -> float:
    return mean(1.0 if f else 0.0 for f in flags)


def token_agreement(ref_argmax: Sequence[Sequence[int]], cur_argmax: Sequence[Sequence[int]]) -> float:
    """EasyEdit's token-level locality: per item, the fraction of (teacher-forced) target positions
    whose top-1 token is unchanged from the reference model; averaged over items."""
    assert len(ref_argmax) == len(cur_argmax), "token_agreement needs parallel lists"
    per = []
    for r, c in zip(ref_argmax, cur_argmax):
        assert len(r) == len(c) and len(r) > 0, "argmax lists must be non-empty and equally long"
        per.append(sum(a == b for a, b in zip(r, c)) / len(r))
    return mean(per)


# ----------------------------------------------------------------------------- divergences
def kl_divergence(p: Sequence[float], q: Sequence[float], eps: float = 1e-12) -> float:
    """KL(p || q) in nats over the same support; terms with p = 0 contribute nothing."""
    assert len(p) == len(q), "kl_divergence needs distributions over the same support"
    return sum(a * (math.log(a) - math.log(max(b, eps))) for a, b in zip(p, q) if a > 0)


def coarse_kl(p: dict, q: dict) -> float:
    """KL(p || q) of two next-token distributions coarse-grained to the same token set plus one
    rest bucket (``{"ids", "p", "rest"}`` as scoring returns them). Exact when the set is the whole
    vocabulary; otherwise a lower bound of the full KL (coarse-graining never increases KL)."""
    assert list(p["ids"]) == list(q["ids"]), "coarse_kl needs both distributions on the same token set"
    return kl_divergence(list(p["p"]) + [p["rest"]], list(q["p"]) + [q["rest"]])


def neighborhood_kl(edited: dict, reference: dict) -> float:
    """NKL of one neighbourhood prompt in CounterFact+'s direction (apartresearch/specificityplus,
    experiments/analyze.py: ``kl_div(log P_unedited, log P_edited, log_target=True)``, i.e.
    KL(P_edited || P_unedited)) over the next token, in nats summed over the vocabulary. CounterFact+
    also divides by |V| (torch's "batchmean" on one 1-D distribution); editledger does not, so its
    NKL is CounterFact+'s times |V| (docs/metrics.md)."""
    return coarse_kl(edited, reference)


# ----------------------------------------------------------------------------- conflicts (ConflictEdit)
# Li et al. 2024, zjunlp/PitfallsKnowledgeEditing: experiments/evaluate_conflictedit.py scores each
# fact as the mean, over the edit prompt and the relation's conflict templates, of the per-token
# geometric-mean probability of its object (P-bar below); experiments/summarize.py turns them into
# one number per case and averages the cases.
def conflict_score(p_new: Sequence[float], p_old: Sequence[float]) -> float:
    """CS of one case: 1{P-bar_theta'(k_n) > P-bar_theta'(k_o)}, both after the second edit, each
    argument the fact's probabilities over its prompts."""
    return 1.0 if mean(p_new) > mean(p_old) else 0.0


def conflict_magnitude(p_old_mid: Sequence[float], p_old_final: Sequence[float]) -> float:
    """CM of one case: max((P-bar_theta_m(k_o) - P-bar_theta'(k_o)) / P-bar_theta_m(k_o), -1), theta_m
    the model after the first edit (summarize.py clips at -1; the survey's formula does not)."""
    m, f = mean(p_old_mid), mean(p_old_final)
    return max((m - f) / m, -1.0)


def tied_fact_damage(p_tied_base: Sequence[float], p_tied_final: Sequence[float]) -> float:
    """TFD of one case as summarize.py computes it ("FFD"): (P-bar_theta(k_f) - P-bar_theta'(k_f)) /
    P-bar_theta(k_f) with theta the *unedited* model (the survey writes theta_m), no clip."""
    b, f = mean(p_tied_base), mean(p_tied_final)
    return (b - f) / b


# ----------------------------------------------------------------------------- round edits (RoundEdit)
# Li et al. 2024, experiments/py/eval_utils_roundedit.py and experiments/summarize.py: every object's
# P-bar is its mean probability over the edit prompt and the relation's round templates; o1 is the
# true object, o* the intermediate one, Obj the dataset's true_objects (o1 included, o* not).
def round_success(mid_o_star: Sequence[float], mid_o1: Sequence[float],
                  final_o1: Sequence[float], final_o_star: Sequence[float]) -> float:
    """Succ of one case: 0.5 * 1{P-bar_theta_m(o*) > P-bar_theta_m(o1)} (the first edit took, seen
    after it) + 0.5 * 1{P-bar_theta'(o1) > P-bar_theta'(o*)} (the edit back took, seen after it)."""
    return 0.5 * (mean(mid_o_star) > mean(mid_o1)) + 0.5 * (mean(final_o1) > mean(final_o_star))


def ignore_rate(base_others: Sequence[float], final_others: Sequence[float]) -> float:
    """IR of one case: the fraction of Obj \\ {o1} whose P-bar fell from the unedited model theta to
    theta' (1/(|Obj|-1) * sum 1{P-bar_theta(o) > P-bar_theta'(o)})."""
    assert len(base_others) == len(final_others) >= 1, "ignore_rate needs the same objects besides o1"
    return sum(1.0 for b, f in zip(base_others, final_others) if b > f) / len(base_others)


def failure(ir: float) -> bool:
    """FR's per-case indicator: IR > 0.5."""
    return ir > 0.5


def distortion(final: Sequence[float], base: Sequence[float]) -> float:
    """D of one case as summarize.py's js_div computes it: the P-bar vectors over Obj ([o1] + the
    others) are L1-normalised, and D = (KL(p || m) + KL(q || m)) / 2 / |Obj| in nats, m = (p + q) / 2.
    The / |Obj| is torch's KLDivLoss(reduction="batchmean") applied to one 1-D distribution: it
    divides by the tensor's first dimension. So D = JS divergence (nats) / |Obj|."""
    assert len(final) == len(base) >= 2, "distortion needs P-bar over the same object set on both models"
    p = [x / sum(final) for x in final]
    q = [x / sum(base) for x in base]
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return (kl_divergence(p, m) + kl_divergence(q, m)) / 2 / len(p)


# ----------------------------------------------------------------------------- multi-hop (MQuAKE)
def edit_wise(edit_correct: Sequence[bool]) -> float:
    """EW: fraction of edited facts (s, r, o*) the edited model recalls."""
    return accuracy(edit_correct)


def instance_wise(cases: Sequence[Sequence[bool]]) -> float:
    """IW: fraction of cases whose every single-hop fact of the chain is recalled."""
    return accuracy(all(c) for c in cases)


def multihop_accuracy(cases: Sequence[Sequence[bool]]) -> float:
    """MH: fraction of cases where any of the case's multi-hop questions is answered correctly."""
    return accuracy(any(c) for c in cases)


# ----------------------------------------------------------------------------- multiple choice
def choice(scores: Sequence[float]) -> int:
    """Index of the highest log-likelihood choice (ties: the first)."""
    return max(range(len(scores)), key=lambda i: scores[i])


# ----------------------------------------------------------------------------- text metrics
def normalize_answer(s: str) -> str:
    """SQuAD/NQ normalisation: lower case, drop punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    p = normalize_answer(prediction)
    return any(p == normalize_answer(a) for a in answers)


_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number in ``text``, thousands separators removed (the built-in reasoning answers)."""
    nums = _NUM.findall(text)
    return nums[-1].replace(",", "") if nums else None


def perplexity(nll: float, n_tokens: int) -> float:
    assert n_tokens > 0, "perplexity needs at least one predicted token"
    return math.exp(nll / n_tokens)


_WORD = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(text: str, n: int) -> float:
    """Entropy (bits) of the n-gram frequency distribution of one text."""
    toks = _WORD.findall(text.lower())
    grams = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in grams.values())


def fluency(texts: Sequence[str]) -> float:
    """ROME's generation fluency: per text, the weighted mean of 2- and 3-gram entropies (weights
    2/3 and 4/3); averaged over texts. Low values mean repetitive output."""
    return mean((2 / 3 * ngram_entropy(t, 2) + 4 / 3 * ngram_entropy(t, 3)) / 2 for t in texts)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (Google's ``rouge-score``, with stemming): the built-in summaries."""
    from rouge_score import rouge_scorer  # pulls nltk and scipy (~2.7 s): only the built-in summaries need it
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    res = [sc.score(r, p) for p, r in zip(predictions, references)]
    return {k: mean(x[k].fmeasure for x in res) for k in ("rouge1", "rouge2", "rougeL")}


# ----------------------------------------------------------------------------- Gu et al.'s downstream tasks
# JasonForJoy/Model-Editing-Hurt, test-task-code/test-*.py: greedy generation after a task prompt,
# then a string rule per task. These functions are those rules.
def span_exact_match(generated: str, answers: Sequence[str]) -> bool:
    """Natural Questions (test-OpenDomainQA.py): the normalised generation matches if any run of
    its consecutive words equals a normalised gold answer. (The reference searches the whole decoded
    sequence, prompt and passage included, and can count an item more than once; here only the
    generated words are searched, once per item: docs/metrics.md.)"""
    words = normalize_answer(generated).split(" ")
    gold = {normalize_answer(a) for a in answers}
    return any(" ".join(words[i:j]) in gold for i in range(len(words)) for j in range(i + 1, len(words) + 1))


def contains_answer(generated: str, answer: str) -> bool:
    """GSM8K (test-reasoning.py): solved when the gold number's text occurs in the generation."""
    return answer in generated


def label_in(generated: str, words: Sequence[str]) -> int | None:
    """SST-2 / RTE (test-SentimentAnalysis.py, test-NLI.py): the index of the first of ``words``
    found in the lower-cased generation, else None (an unanswered item)."""
    g = generated.lower()
    return next((i for i, w in enumerate(words) if w in g), None)


def label_exact(generated: str, words: Sequence[str]) -> int | None:
    """BoolQ (test-ClosedDomainQA.py): the index of the word the lower-cased generation equals
    exactly (" yes" / " no", leading space included), else None."""
    g = generated.lower()
    return next((i for i, w in enumerate(words) if g == w), None)


def answered_accuracy(preds: Sequence[int | None], labels: Sequence[int]) -> tuple[float, float]:
    """(accuracy over the answered items, accuracy over all items): the reference prints both as
    ``accuracy = (TP + FN) / (TP + FN + TN + FP)`` and ``total_accuracy`` (others counted wrong)."""
    answered = [(p, y) for p, y in zip(preds, labels) if p is not None]
    right = sum(1 for p, y in answered if p == y)
    return (right / len(answered) if answered else float("nan")), (right / len(preds) if preds else float("nan"))


def rouge_gu(prediction: str, reference: str) -> float:
    """SAMSum (test-summarization.py): the mean of ROUGE-1, ROUGE-2 and ROUGE-L F of pltrdy's
    ``rouge`` package (``Rouge().get_scores(prediction, reference)``); 0 for a prediction of at
    most one character, as the reference scores it, and for one with no words."""
    if len(prediction) <= 1:
        return 0.0
    try:
        s = Rouge().get_scores(prediction, reference)[0]
    except ValueError:          # "Hypothesis is empty": no word left once split on "."
        return 0.0
    return (s["rouge-1"]["f"] + s["rouge-2"]["f"] + s["rouge-l"]["f"]) / 3
