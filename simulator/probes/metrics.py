"""Metric arithmetic: pure functions over scored items (probabilities, top-1 flags, distributions).

No model, no torch: a stub scorer with known probabilities drives every function in the tests.
Conventions (the survey's appendix A and the papers it cites):

* ``p`` of a target is ROME's length-normalised probability exp(mean token log-prob) unless a
  function says otherwise; ``P(new) > P(old)`` comparisons use it (ROME/CounterFact do the same with
  mean NLL).
* Rates are fractions in [0, 1] (the report multiplies by 100 where the survey prints percents).
* Divergences: KL in nats; the Jensen-Shannon divergence of the round-edit Distortion in bits
  (log base 2), so it lies in [0, 1].
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence


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


def coarse_kl(ref: dict, cur: dict) -> float:
    """KL(ref || cur) of two next-token distributions coarse-grained to the same token set plus one
    rest bucket (``{"ids", "p", "rest"}`` as scoring returns them). Exact when the set is the whole
    vocabulary; otherwise a lower bound of the full KL (coarse-graining never increases KL)."""
    assert list(ref["ids"]) == list(cur["ids"]), "coarse_kl needs both distributions on the same token set"
    return kl_divergence(list(ref["p"]) + [ref["rest"]], list(cur["p"]) + [cur["rest"]])


def neighborhood_kl(refs: Sequence[dict], curs: Sequence[dict]) -> float:
    """NKL (CounterFact+, Hoelscher-Obermaier et al. 2023): mean over neighbourhood prompts of
    KL(P_reference(next token) || P_edited(next token))."""
    assert len(refs) == len(curs), "neighborhood_kl needs parallel lists"
    return mean(coarse_kl(r, c) for r, c in zip(refs, curs))


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (in [0, 1])."""
    assert len(p) == len(q), "js_divergence needs distributions over the same support"
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return (kl_divergence(p, m) + kl_divergence(q, m)) / 2 / math.log(2)


def normalise(scores: Sequence[float]) -> list[float]:
    """A distribution over an object set from per-object log-scores (softmax)."""
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    z = sum(e)
    return [x / z for x in e]


# ----------------------------------------------------------------------------- conflicts (ConflictEdit)
def conflict_score(p_new: Sequence[float], p_old: Sequence[float]) -> float:
    """CS = mean 1{p'(k_new) > p'(k_old)}, both under the final model."""
    return success_rate(p_new, p_old)


def relative_drop(p_mid: Sequence[float], p_final: Sequence[float]) -> float:
    """mean (p_m - p') / p_m: CM with the old fact k_o, TFD with the tied fact k_f."""
    assert len(p_mid) == len(p_final), "relative_drop needs parallel lists"
    return mean((m - f) / m for m, f in zip(p_mid, p_final))


def conflict_magnitude(p_old_mid: Sequence[float], p_old_final: Sequence[float]) -> float:
    """CM = mean (p_{θm}(k_o) - p_{θ'}(k_o)) / p_{θm}(k_o); θm = the model after the first edit."""
    return relative_drop(p_old_mid, p_old_final)


def tied_fact_damage(p_tied_mid: Sequence[float], p_tied_final: Sequence[float]) -> float:
    """TFD = mean (p_{θm}(k_f) - p_{θ'}(k_f)) / p_{θm}(k_f)."""
    return relative_drop(p_tied_mid, p_tied_final)


# ----------------------------------------------------------------------------- round edits (RoundEdit)
def distortion(dist_before: Sequence[float], dist_after: Sequence[float]) -> float:
    """D = JS(p_θ(Obj | s, r), p_θ'(Obj | s, r)) in bits."""
    return js_divergence(dist_before, dist_after)


def ignore_rate(dist_before: Sequence[float], dist_after: Sequence[float], target: int) -> float:
    """IR = 1/(|Obj|-1) Σ_{o ≠ o1} 1{p_θ(o) > p_θ'(o)}: objects other than the target that lost
    probability over the round trip."""
    assert len(dist_before) == len(dist_after) >= 2, "ignore_rate needs an object set of 2 or more"
    others = [i for i in range(len(dist_before)) if i != target]
    return sum(1.0 for i in others if dist_before[i] > dist_after[i]) / len(others)


def failure(ir: float) -> bool:
    """FR's per-item indicator: IR > 0.5."""
    return ir > 0.5


def round_success(dist_after: Sequence[float], target: int) -> bool:
    """The target is the most probable object of the set after the round trip."""
    return max(range(len(dist_after)), key=lambda i: dist_after[i]) == target


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


def first_number(text: str) -> str | None:
    """The first number in ``text`` with thousands separators removed (GSM8K answer extraction)."""
    m = _NUM.search(text)
    if not m:
        return None
    s = m.group(0).replace(",", "")
    return s[:-2] if s.endswith(".0") else s


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
    """Mean ROUGE-1/2/L F1 (Google's ``rouge-score``, with stemming)."""
    from rouge_score import rouge_scorer
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    res = [sc.score(r, p) for p, r in zip(predictions, references)]
    return {k: mean(x[k].fmeasure for x in res) for k in ("rouge1", "rouge2", "rougeL")}
