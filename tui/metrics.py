"""What the TUI knows about metrics: their order, short names, direction and a one-line meaning.

The ledger stores whatever suites and metrics the probes recorded; these tables only order,
abbreviate and explain them (an unknown metric is shown by its own name, uncoloured).
"""
from __future__ import annotations

from typing import Iterable

Metric = tuple[str, str]   # (suite, metric), e.g. ("rewrite", "efficacy_top1")

# Headline metrics, best first; unknown ones follow, ordered by suite then name.
PREFERRED_METRICS: list[Metric] = [
    ("rewrite", "efficacy_top1"), ("retention", "efficacy_top1"), ("neighborhood", "ns"),
    ("paraphrase", "generalization_top1"), ("paraphrase", "efficacy_top1"), ("perplexity", "ppl"),
    ("neighborhood", "nkl"), ("neighborhood", "locality_acc"), ("retention", "forgetting"),
]
PREFERRED_SUITES = ["rewrite", "retention", "paraphrase", "neighborhood", "perplexity", "attribute", "distract",
                    "portability_sr", "portability_rr", "portability_oh", "multihop", "conflict",
                    "tied_fact", "round", "other_task", "downstream", "fluency"]
# The side effects of a sequence of edits (locality, general ability): what the timeline's Δ
# columns and a run's sparkline show first.
KEY_METRICS: list[Metric] = [("neighborhood", "ns"), ("perplexity", "ppl"), ("neighborhood", "nkl"),
                             ("paraphrase", "generalization_top1")]
# Suites measured on the same items at every version (a fixed text or task set): their values at
# two versions can be subtracted. Every other suite measures each step's own prompts.
FIXED_SUITES = ("perplexity", "downstream", "fluency")

SUITE_ABBREV = {"rewrite": "rw", "paraphrase": "para", "neighborhood": "nb", "perplexity": "",
                "attribute": "attr", "portability_sr": "p.sr", "portability_rr": "p.rr",
                "portability_oh": "p.oh", "multihop": "hop", "retention": "ret", "distract": "dist",
                "downstream": "task", "fluency": "flu", "conflict": "conf"}

# Direction, for colouring changes (True: higher is better). Matched by exact name, then prefix.
HIGHER_IS_BETTER = {
    "efficacy": True, "generalization": True, "es": True, "ps": True, "ns": True, "nm": True,
    "accuracy": True, "acc": True, "exact": True, "em": True, "f1": True, "rouge": True, "oa": True,
    "dn": True, "locality_acc": True, "true_over_alt": True, "ew": True, "iw": True, "mh": True,
    "cs_": True, "success": True, "ngram_entropy": True,
    "ppl": False, "perplexity": False, "nkl": False, "kl": False, "loss": False, "forgetting": False,
    "distortion": False, "ignore_rate": False, "failure_rate": False, "tfd_": False,
}

# One line per metric for the help legend: what it measures and its unit.
MEANING: dict[Metric, str] = {
    ("rewrite", "efficacy_top1"): "share of the step's edit prompts whose top-1 answer is the new target (0–1)",
    ("rewrite", "efficacy_prob"): "share of edit prompts with P(new) > P(old) (0–1)",
    ("paraphrase", "generalization_top1"): "share of paraphrased prompts answered with the new target (0–1)",
    ("neighborhood", "ns"): "neighbourhood score: share of unrelated prompts that still prefer their true object (0–1)",
    ("neighborhood", "nkl"): "KL divergence of neighbour prompts' next-token distribution from the base (nats)",
    ("neighborhood", "locality_acc"): "neighbour prompts whose argmax tokens are unchanged (0–1)",
    ("retention", "efficacy_top1"): "share of the earlier edits of the run still held at this version (0–1)",
    ("retention", "forgetting"): "mean drop of earlier edits' efficacy since they were made (0–1)",
    ("perplexity", "ppl"): "perplexity on a fixed text sample (lower is better; measured every few steps)",
}
SUITE_MEANING = {
    "attribute": "other attributes of the edited subject, unchanged? (0–1)",
    "distract": "distractor prompts, unchanged? (0–1)",
    "portability_sr": "subject aliases answered with the new target (0–1)",
    "portability_rr": "reversed relation answered (0–1)",
    "portability_oh": "one-hop questions answered (0–1)",
    "multihop": "MQuAKE edit-wise / instance-wise / multi-hop accuracy (0–1)",
    "conflict": "ConflictEdit scores of conflicting edit pairs (0–1)",
    "round": "RoundEdit: success, distortion (bits), ignore and failure rates",
    "downstream": "general-ability task accuracy on a fixed set (0–1)",
    "fluency": "n-gram entropy of generated text (bits)",
}


def metric_name(m: Metric) -> str:
    return f"{m[0]}/{m[1]}"


def short_metric(m: Metric) -> str:
    """Column header for a metric in ≤7 cells: 'rw.eff', 'nb.ns', 'ppl', 'ret.eff'."""
    suite, metric = m
    head = SUITE_ABBREV.get(suite, suite[:4])
    tail = (metric.replace("efficacy", "eff").replace("generalization", "gen").replace("_top1", "")
            .replace("accuracy", "acc").replace("forgetting", "forget"))
    label = f"{head}.{tail}" if head else tail
    return label[:7]


def finding_label(metric: str) -> str:
    """An audit finding's metric ('suite.metric') in a few cells that still name the suite:
    'attribute.accuracy' -> 'attr.acc', 'retention.forgetting' -> 'forgetting', 'perplexity.ppl' -> 'ppl'."""
    suite, _, name = metric.partition(".")
    if not name:
        return metric
    if (suite, name) == ("retention", "forgetting"):
        return "forgetting"
    head = SUITE_ABBREV.get(suite, suite[:4])
    tail = name.replace("accuracy", "acc").replace("efficacy", "eff").replace("_top1", "")
    return f"{head}.{tail}" if head else tail


def parse_finding_metric(metric: str) -> Metric | None:
    """'perplexity.ppl' -> ('perplexity', 'ppl'); None when it does not name one metric."""
    suite, _, name = metric.partition(".")
    return (suite, name) if suite and name else None


def higher_is_better(metric: str) -> bool | None:
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    for key, v in HIGHER_IS_BETTER.items():
        if metric.startswith(key):
            return v
    return None


def meaning(m: Metric) -> str:
    return MEANING.get(m) or SUITE_MEANING.get(m[0], "") or "(recorded by the probes; see docs/metrics.md)"


def metric_order(m: Metric) -> tuple:
    if m in PREFERRED_METRICS:
        return (0, PREFERRED_METRICS.index(m), "")
    suite_rank = PREFERRED_SUITES.index(m[0]) if m[0] in PREFERRED_SUITES else len(PREFERRED_SUITES)
    return (1, suite_rank, f"{m[0]}/{m[1]}")


def order_metrics(metrics: Iterable[Metric]) -> list[Metric]:
    return sorted(set(metrics), key=metric_order)


def key_metrics(metrics: Iterable[Metric], n: int) -> list[Metric]:
    """KEY_METRICS first (those present), then the other side-effect metrics in metric order
    (rewrite and retention have columns of their own)."""
    ms = set(metrics)
    first = [m for m in KEY_METRICS if m in ms]
    rest = [m for m in order_metrics(ms) if m not in first and m[0] not in ("rewrite", "retention")]
    return (first + rest)[:n]
