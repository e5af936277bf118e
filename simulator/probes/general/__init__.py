"""General abilities (the survey's Figure 4 and its Other Task): perplexity on a held text, the
downstream tasks of Gu et al. and EMMET, PIQA, and the fluency of free generation.

    sets = general_sets("nq,gsm8k,sst2,samsum,boolq:50", n=50, seed=0)   # sets.py
    results = evaluate(scorer, sets, {"downstream", "perplexity"})        # model outputs + values
    records = general_records(results, base_results, previous_values)     # ProbeRecords

``results`` is JSON: per task, its suite, metric values, and the raw outputs (``detail``) they
were scored from; ``rescore(task, detail)`` computes the values again from those outputs alone.
"""
from __future__ import annotations

from typing import Any

from ledger.records import ProbeRecord

from .. import metrics as M
from .sets import DEFAULT_N, DEFAULT_SPEC, LEGACY, REAL_SETS, GeneralSets, general_sets, sample
from .tasks import FLUENCY, OTHER_TASK, PERPLEXITY, TASKS, Task

__all__ = ["DEFAULT_N", "DEFAULT_SPEC", "LEGACY", "REAL_SETS", "TASKS", "GeneralSets", "Task", "evaluate",
           "general_records", "general_sets", "rescore", "sample", "values_of"]


def _run_task(scorer, task: Task, items: list[dict]) -> list[dict]:
    """Raw outputs per item: the generation, or the log-likelihood of each choice; plus the gold
    fields the score needs."""
    rows = [{k: it[k] for k in task.keep} for it in items]
    prompts = [task.prompt(it) for it in items]
    if task.generates:
        preds = scorer.generate(prompts, max_new_tokens=task.max_new_tokens, stop=task.stop, desc=task.name)
        for r, p in zip(rows, preds):
            r["pred"] = p
    else:
        pairs, owner = [], []
        for i, (it, p) in enumerate(zip(items, prompts)):
            for c in task.choices(it):
                pairs.append((p, c))
                owner.append(i)
        res = scorer.score(pairs, desc=task.name)
        for r in rows:
            r["ll"] = []
        for i, s in zip(owner, res):
            rows[i]["ll"].append(s.logprob)
    return rows


def rescore(task: str, detail: Any) -> dict[str, float]:
    """The metric values of one task (or "perplexity" / "fluency") from its stored outputs."""
    if task == PERPLEXITY:
        return {"ppl": M.perplexity(detail["nll"], detail["tokens"])}
    if task == FLUENCY:
        return {"ngram_entropy": M.fluency([r["text"] for r in detail])}
    return TASKS[task].score(detail)


def evaluate(scorer, sets: GeneralSets, suites: set[str]) -> dict[str, dict]:
    """Measure the due general suites: {task: {"suite", "values", "count", "detail"}}."""
    out: dict[str, dict] = {}
    if PERPLEXITY in suites and sets.text:
        nll, n = scorer.text_nll(sets.text, window=sets.ppl_window)
        det = {"nll": nll, "tokens": n}
        out[PERPLEXITY] = {"suite": PERPLEXITY, "values": rescore(PERPLEXITY, det), "count": n, "detail": det}
    for name, items in sets.task_items().items():
        task = TASKS[name]
        if task.suite in suites:
            rows = _run_task(scorer, task, items)
            out[name] = {"suite": task.suite, "values": task.score(rows), "count": len(rows), "detail": rows,
                         "source": task.source}
    if FLUENCY in suites and sets.fluency_prompts:
        gens = scorer.generate(sets.fluency_prompts, max_new_tokens=sets.fluency_tokens, desc="fluency")
        det = [{"prompt": p, "text": x, "entropy2": M.ngram_entropy(x, 2), "entropy3": M.ngram_entropy(x, 3)}
               for p, x in zip(sets.fluency_prompts, gens)]
        out[FLUENCY] = {"suite": FLUENCY, "values": rescore(FLUENCY, det), "count": len(det), "detail": det}
    return out


def values_of(results: dict[str, dict]) -> dict[str, float]:
    """Flat {"suite.metric": value} of general results (the base's, or a version's)."""
    return {f"{r['suite']}.{m}": v for r in results.values() for m, v in r["values"].items()}


def general_records(results: dict[str, dict], base: dict[str, float], previous: dict[str, float],
                    skip_suites: set[str] = frozenset()) -> list[ProbeRecord]:
    """Records of general results: each value (against none), and its difference from the base and
    from the last earlier measurement (``base`` / ``previous``: values_of of those)."""
    recs = []
    for name, r in results.items():
        if r["suite"] in skip_suites:
            continue
        for j, (metric, v) in enumerate(r["values"].items()):
            if v != v:      # NaN: no item answered; not a measurement
                continue
            detail = r["detail"] if j == 0 else None
            recs.append(ProbeRecord(r["suite"], metric, float(v), r["count"], detail, "none"))
            for against, ref in (("base", base), ("previous", previous)):
                rv = ref.get(f"{r['suite']}.{metric}")
                if rv is not None:
                    recs.append(ProbeRecord(r["suite"], metric, float(v) - rv, r["count"],
                                            {"reference_value": rv, "task": name}, against))
    return recs
