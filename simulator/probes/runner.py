"""ProbeRunner: scores a version of the model on a stream's probes and turns the scores into
ProbeRecords (ledger/records.py) with per-prompt detail.

Protocol (driven by the replay engine):
  ref = runner.reference(steps)                      # base weights; JSON, stored with the run
  for t in 1..T: apply step t, then
      records, state = runner.measure(step_index=t, steps=steps, reference=ref, previous=state,
                                      final=(t == T))

Item keys are ``"{step}/{suite}/{item}/{variant}"`` (variant ``t`` target, ``a`` alt, ``x{j}`` alias j,
``c{j}`` choice j). The reference and every state keep the raw per-token scores of the keys they
scored, so every comparison (against the base, against the previous version, against the
intermediate model of a conflict pair) works from JSON alone, also after a resume.

Records: absolute metrics are stored with ``against="none"``; for each the runner also stores the
difference (current - reference) with ``against="base"`` and ``against="previous"`` (the previous
version at which that suite ran). Divergence-type metrics (NKL, token agreement, distortion) are
computed directly against the named reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ledger.records import ProbeRecord
from simulator.requests import ProbeItem, Step
from simulator.runtime import as_view

from . import metrics as M
from .general import (GeneralSets, SENTIMENT_CHOICES, piqa_prompt, qa_prompt, reasoning_prompt,
                      sentiment_prompt, summary_prompt)

# suites whose items belong to one step and are scored right after it
STEP_SUITES = ("rewrite", "paraphrase", "neighborhood", "attribute", "distract",
               "portability_sr", "portability_rr", "portability_oh", "other_task")
# suites whose items belong to a group of steps (a round pair, a conflict pair, an MQuAKE case)
GROUP_SUITES = ("multihop", "conflict", "tied_fact", "round")
# suites computed by the runner itself
DERIVED_SUITES = ("retention", "perplexity", "downstream", "fluency")
EXPENSIVE = ("perplexity", "downstream", "fluency")


def _default_every() -> dict[str, int]:
    d = {s: 1 for s in STEP_SUITES + GROUP_SUITES + ("retention",)}
    d.update({s: 5 for s in EXPENSIVE})
    return d


@dataclass
class ProbeConfig:
    every: dict[str, int] = field(default_factory=_default_every)  # suite -> every k steps (1 = each step, 0 = only at the end); unknown suites: every step
    nkl_topk: int = 200            # NKL: base next-token distribution kept as its top-k tokens + rest mass
    lookahead: bool = True         # also score step t+1's items at version t (the "previous" of step t+1)

    def __post_init__(self) -> None:
        # a partial mapping overrides the defaults suite by suite
        self.every = {**_default_every(), **dict(self.every)}
        for s, k in self.every.items():
            assert isinstance(k, int) and k >= 0, f"probe schedule for {s!r} must be an int >= 0, got {k!r}"

    def due(self, suite: str, step_index: int, final: bool) -> bool:
        k = self.every.get(suite, 1)
        return final or (k > 0 and step_index % k == 0)


# ----------------------------------------------------------------------------- score helpers (JSON form)
def _p(s: dict) -> float:
    return math.exp(sum(s["lp"]) / len(s["lp"]))


def _mlp(s: dict) -> float:
    return sum(s["lp"]) / len(s["lp"])


def _top1(s: dict) -> bool:
    return all(a == b for a, b in zip(s["am"], s["ids"]))


def _tokacc(s: dict) -> float:
    return sum(a == b for a, b in zip(s["am"], s["ids"])) / len(s["ids"])


def _key(step: int, suite: str, i: int, v: str) -> str:
    return f"{step}/{suite}/{i}/{v}"


def _group_of(steps: list[Step], idx: int) -> str:
    g = steps[idx - 1].group
    return g if g is not None else f"step{idx}"


class ProbeRunner:
    def __init__(self, model, tokenizer=None, spec=None, config: ProbeConfig | None = None, *,
                 general: GeneralSets | None = None, batch_size: int = 16, progress: bool = True,
                 scorer=None):
        """``model``: a ``simulator.runtime.ModelView`` (what a session gives: the method's runtime
        included) or a plain model with its tokenizer and spec. ``scorer``: anything with Scorer's
        methods (tests pass a stub with known probabilities)."""
        self.config = config or ProbeConfig()
        self.general = general
        if scorer is None:
            from .scoring import Scorer  # torch lives there; keep this module importable cheaply
            scorer = Scorer(as_view(model, tokenizer, spec), batch_size=batch_size, progress=progress)
        self.scorer = scorer

    # ------------------------------------------------------------------------- which keys
    def _item_pairs(self, steps: list[Step], idx: int, suite: str, items: list[ProbeItem],
                    out: dict[str, tuple[str, str]]) -> None:
        for i, it in enumerate(items):
            if suite in ("round", "other_task") and it.choices:
                for j, c in enumerate(it.choices):
                    out[_key(idx, suite, i, f"c{j}")] = (it.prompt, c)
                continue
            out[_key(idx, suite, i, "t")] = (it.prompt, it.target)
            if it.alt is not None:
                out[_key(idx, suite, i, "a")] = (it.prompt, it.alt)
            if suite == "multihop":
                for j, a in enumerate(it.answers):
                    out[_key(idx, suite, i, f"x{j}")] = (it.prompt, a)

    def _step_keys(self, steps: list[Step], idx: int, suites, out) -> None:
        for suite, items in steps[idx - 1].probes.items():
            if suite in suites:
                self._item_pairs(steps, idx, suite, items, out)

    def _group_steps(self, steps: list[Step], group: str) -> list[int]:
        return [i for i in range(1, len(steps) + 1) if _group_of(steps, i) == group]

    # ------------------------------------------------------------------------- scoring
    def _score(self, pairs: dict[str, tuple[str, str]], reference: dict | None, desc: str) -> dict[str, dict]:
        keys = list(pairs)
        dists = []
        for k in keys:
            if "/neighborhood/" in k and k.endswith("/t"):
                if reference is None:
                    dists.append(self.config.nkl_topk)
                else:
                    r = reference["scores"].get(k, {}).get("dist")
                    dists.append(list(r["ids"]) if r else self.config.nkl_topk)
            else:
                dists.append(None)
        res = self.scorer.score([pairs[k] for k in keys], dists, desc=desc)
        return {k: r.to_json() for k, r in zip(keys, res)}

    def efficacy(self, step: Step) -> float:
        """Cheap top-1 efficacy of one step's rewrite probes on the current weights (progress bar)."""
        items = step.probes.get("rewrite", [])
        if not items:
            return float("nan")
        res = self.scorer.score([(it.prompt, it.target) for it in items], desc="efficacy")
        return M.accuracy(r.top1 for r in res)

    def reference(self, steps: list[Step]) -> dict:
        """Scores on the current (base) weights of every probe item of every step, and the general
        abilities, as JSON."""
        pairs: dict[str, tuple[str, str]] = {}
        for idx in range(1, len(steps) + 1):
            self._step_keys(steps, idx, set(STEP_SUITES + GROUP_SUITES) | set(steps[idx - 1].probes), pairs)
        ref = {"v": 1, "scores": self._score(pairs, None, "probes (base)"), "general": {}}
        if self.general is not None:
            ref["general"] = self._general(set(EXPENSIVE))
            # flat base values of run-level metrics, for the replay engine's summaries
            ref["base_metrics"] = {f"{r.suite}.{r.metric}": r.value
                                   for r in _general_records(ref["general"], {}, {})}
        return ref

    # ------------------------------------------------------------------------- measure
    def measure(self, *, step_index: int, steps: list[Step], reference: dict,
                previous: dict | None, final: bool = False) -> tuple[list[ProbeRecord], dict]:
        t = step_index
        assert 1 <= t <= len(steps), f"step_index {t} outside 1..{len(steps)}"
        cfg = self.config
        prev = previous or {}
        due = lambda s: cfg.due(s, t, final)
        pairs: dict[str, tuple[str, str]] = {}
        step_suites = {s for s in steps[t - 1].probes if s not in GROUP_SUITES and due(s)}
        self._step_keys(steps, t, step_suites, pairs)
        if cfg.lookahead and t < len(steps):
            nxt = {s for s in steps[t].probes if s not in GROUP_SUITES and cfg.due(s, t + 1, t + 1 == len(steps))}
            self._step_keys(steps, t + 1, nxt, pairs)
        if due("retention"):
            for j in range(1, t):
                self._step_keys(steps, j, {"rewrite"}, pairs)
        # group suites: every group with at least one applied step
        applied_groups = []
        for j in range(1, t + 1):
            g = _group_of(steps, j)
            if g not in applied_groups:
                applied_groups.append(g)
        group_members = {g: self._group_steps(steps, g) for g in applied_groups}
        first_of = {g: m[0] for g, m in group_members.items()}
        for g, members in group_members.items():
            suites = {s for s in GROUP_SUITES if due(s) or (s in ("conflict", "tied_fact") and first_of[g] == t)}
            for j in members:
                self._step_keys(steps, j, suites, pairs)
                if suites:   # EW / conflict success re-measure the group's edits
                    self._step_keys(steps, j, {"rewrite"}, pairs)
        cur = self._score(pairs, reference, f"probes (step {t})")

        ctx = _Ctx(t, steps, cur, reference["scores"], prev.get("scores", {}))
        recs: list[ProbeRecord] = []
        for suite in steps[t - 1].probes:
            if suite in step_suites:
                recs += _STEP_METRICS.get(suite, _generic)(ctx, suite, t)
        state: dict[str, Any] = {
            "v": 1, "step": t, "scores": cur,
            "intermediate": dict(prev.get("intermediate", {})),
            "edit_eff": dict(prev.get("edit_eff", {})),
            "general": dict(prev.get("general", {})),
        }
        # the intermediate model of a group is the version right after its first step
        for g, members in group_members.items():
            if first_of[g] == t and len(members) > 1:
                state["intermediate"][g] = {k: v for k, v in cur.items()
                                            if int(k.split("/")[0]) in members
                                            and k.split("/")[1] in ("conflict", "tied_fact")}
        rw = [_key(t, "rewrite", i, "t") for i in range(len(steps[t - 1].probes.get("rewrite", [])))]
        if rw and all(k in cur for k in rw):
            state["edit_eff"][str(t)] = M.accuracy(_top1(cur[k]) for k in rw)
        if due("retention") and t >= 1:
            recs += _retention(ctx, state["edit_eff"])
        done = [g for g, m in group_members.items() if m[-1] <= t]
        if due("multihop"):
            recs += _multihop(ctx, [g for g in done if any("multihop" in steps[j - 1].probes for j in group_members[g])], group_members)
        if due("conflict") or due("tied_fact"):
            recs += _conflict(ctx, [g for g in done if len(group_members[g]) > 1 and any(
                s in steps[j - 1].probes for j in group_members[g] for s in ("conflict", "tied_fact"))],
                group_members, state["intermediate"])
        if due("round"):
            recs += _round(ctx, [g for g in done if any("round" in steps[j - 1].probes for j in group_members[g])], group_members)
        if self.general is not None:
            gsuites = {s for s in EXPENSIVE if due(s)}
            if gsuites:
                gen = self._general(gsuites)
                recs += _general_records(gen, reference.get("general", {}), prev.get("general", {}))
                state["general"].update(gen)
        # the ledger stores finite numbers only; an undefined aggregate (no items) is not a measurement
        recs = [r for r in recs if math.isfinite(r.value)]
        return recs, state

    # ------------------------------------------------------------------------- general abilities
    def _general(self, suites: set[str]) -> dict:
        g, sc = self.general, self.scorer
        out: dict[str, Any] = {}
        if "perplexity" in suites and g.text:
            nll, n = sc.text_nll(g.text, window=g.ppl_window)
            out["perplexity"] = {"ppl": M.perplexity(nll, n), "nll": nll, "tokens": n}
        if "downstream" in suites and g.has_downstream():
            d: dict[str, Any] = {}
            pairs, owners = [], []
            for i, r in enumerate(g.sentiment):
                for c in SENTIMENT_CHOICES:
                    pairs.append((sentiment_prompt(r["text"]), c)); owners.append(("sentiment", i))
            for i, r in enumerate(g.piqa):
                for c in (r["sol1"], r["sol2"]):
                    pairs.append((piqa_prompt(r["goal"]), " " + c)); owners.append(("piqa", i))
            res = sc.score(pairs, desc="downstream choices") if pairs else []
            lls: dict[tuple[str, int], list[float]] = {}
            for o, s in zip(owners, res):
                lls.setdefault(o, []).append(s.logprob)
            if g.sentiment:
                det = [{"text": r["text"], "label": r["label"], "ll": lls[("sentiment", i)],
                        "pred": M.choice(lls[("sentiment", i)])} for i, r in enumerate(g.sentiment)]
                d["sentiment_acc"] = {"value": M.accuracy(x["pred"] == x["label"] for x in det), "detail": det}
            if g.piqa:
                det = [{"goal": r["goal"], "label": r["label"], "ll": lls[("piqa", i)],
                        "pred": M.choice(lls[("piqa", i)])} for i, r in enumerate(g.piqa)]
                d["piqa_acc"] = {"value": M.accuracy(x["pred"] == x["label"] for x in det), "detail": det}
            if g.qa:
                preds = sc.generate([qa_prompt(r["question"]) for r in g.qa], max_new_tokens=g.qa_tokens, stop="\n", desc="QA")
                det = [{"question": r["question"], "answers": r["answers"], "pred": p, "em": M.exact_match(p, r["answers"])}
                       for r, p in zip(g.qa, preds)]
                d["qa_em"] = {"value": M.accuracy(x["em"] for x in det), "detail": det}
            if g.reasoning:
                preds = sc.generate([reasoning_prompt(r["question"]) for r in g.reasoning],
                                    max_new_tokens=g.reasoning_tokens, stop="\nQuestion:", desc="reasoning")
                det = []
                for r, p in zip(g.reasoning, preds):
                    nums = M._NUM.findall(p)
                    ans = nums[-1].replace(",", "") if nums else None
                    det.append({"question": r["question"], "answer": r["answer"], "pred": p, "extracted": ans,
                                "solved": ans is not None and _num_eq(ans, r["answer"])})
                d["reasoning_solve"] = {"value": M.accuracy(x["solved"] for x in det), "detail": det}
            if g.summarization:
                preds = sc.generate([summary_prompt(r["dialogue"]) for r in g.summarization],
                                    max_new_tokens=g.summary_tokens, stop="\n", desc="summaries")
                refs = [r["summary"] for r in g.summarization]
                rg = M.rouge(preds, refs)
                det = [{"pred": p, "ref": r} for p, r in zip(preds, refs)]
                for k, v in rg.items():
                    d[f"summarization_{k}"] = {"value": v, "detail": det}
            out["downstream"] = d
        if "fluency" in suites and g.fluency_prompts:
            gens = sc.generate(g.fluency_prompts, max_new_tokens=g.fluency_tokens, desc="fluency")
            out["fluency"] = {"ngram_entropy": M.fluency(gens),
                              "detail": [{"prompt": p, "text": x, "entropy2": M.ngram_entropy(x, 2),
                                          "entropy3": M.ngram_entropy(x, 3)} for p, x in zip(g.fluency_prompts, gens)]}
        return out


def _num_eq(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return a == b


# ----------------------------------------------------------------------------- metric context
@dataclass
class _Ctx:
    t: int
    steps: list[Step]
    cur: dict[str, dict]
    ref: dict[str, dict]
    prev: dict[str, dict]

    def items(self, idx: int, suite: str) -> list[ProbeItem]:
        return self.steps[idx - 1].probes.get(suite, [])


def _rec(suite, metric, value, count, detail, against="none") -> ProbeRecord:
    return ProbeRecord(suite=suite, metric=metric, value=float(value), count=count, detail=detail, against=against)


def _with_deltas(suite: str, metric: str, fn: Callable[[dict], float | None], ctx: _Ctx, keys: list[str],
                 count: int, detail) -> list[ProbeRecord]:
    """The metric on the current scores (against none) and its difference from the same metric on
    the base and on the previous version (where those scored every key)."""
    v = fn(ctx.cur)
    out = [_rec(suite, metric, v, count, detail)]
    for name, src in (("base", ctx.ref), ("previous", ctx.prev)):
        if keys and all(k in src for k in keys):
            r = fn(src)
            out.append(_rec(suite, metric, v - r, count, {"reference_value": r, "current_value": v}, name))
    return out


def _pairs_of(ctx: _Ctx, idx: int, suite: str):
    items = ctx.items(idx, suite)
    kt = [_key(idx, suite, i, "t") for i in range(len(items))]
    ka = [_key(idx, suite, i, "a") if it.alt is not None else None for i, it in enumerate(items)]
    return items, kt, ka


def _detail(ctx: _Ctx, items, kt, ka) -> list[dict]:
    det = []
    for it, t, a in zip(items, kt, ka):
        s = ctx.cur[t]
        d = {"prompt": it.prompt, "target": it.target, "lp": s["lp"], "p": _p(s), "top1": _top1(s),
             "token_acc": _tokacc(s)}
        if a is not None:
            d["alt"] = it.alt
            d["lp_alt"] = ctx.cur[a]["lp"]
            d["p_alt"] = _p(ctx.cur[a])
        if t in ctx.ref:
            d["p_base"] = _p(ctx.ref[t])
        det.append(d)
    return det


def _efficacy_like(ctx: _Ctx, suite: str, idx: int, top1_name: str, prob_name: str) -> list[ProbeRecord]:
    items, kt, ka = _pairs_of(ctx, idx, suite)
    if not items:
        return []
    det = _detail(ctx, items, kt, ka)
    recs = _with_deltas(suite, top1_name, lambda S: M.accuracy(_top1(S[k]) for k in kt), ctx, kt, len(items), det)
    pa = [(t, a) for t, a in zip(kt, ka) if a is not None]
    if pa:
        keys = [k for ta in pa for k in ta]
        recs += _with_deltas(suite, prob_name, lambda S: M.success_rate([_p(S[t]) for t, _ in pa], [_p(S[a]) for _, a in pa]),
                             ctx, keys, len(pa), None)
        recs += _with_deltas(suite, prob_name.replace("_prob", "_magnitude"),
                             lambda S: M.magnitude([_p(S[t]) for t, _ in pa], [_p(S[a]) for _, a in pa]),
                             ctx, keys, len(pa), None)
    return recs


def _rewrite(ctx, suite, idx):
    return _efficacy_like(ctx, suite, idx, "efficacy_top1", "efficacy_prob")


def _paraphrase(ctx, suite, idx):
    return _efficacy_like(ctx, suite, idx, "generalization_top1", "generalization_prob")


def _agreement_records(ctx: _Ctx, suite: str, metric: str, kt: list[str], count: int) -> list[ProbeRecord]:
    """EasyEdit token-level locality: argmax tokens unchanged from the base / the previous version."""
    recs = []
    for name, src in (("base", ctx.ref), ("previous", ctx.prev)):
        if kt and all(k in src for k in kt):
            per = [M.token_agreement([src[k]["am"]], [ctx.cur[k]["am"]]) for k in kt]
            recs.append(_rec(suite, metric, M.mean(per), count, [{"key": k, "agreement": a} for k, a in zip(kt, per)], name))
    return recs


def _neighborhood(ctx, suite, idx):
    items, kt, ka = _pairs_of(ctx, idx, suite)
    if not items:
        return []
    det = _detail(ctx, items, kt, ka)
    pa = [(t, a) for t, a in zip(kt, ka) if a is not None]
    keys = [k for ta in pa for k in ta]
    recs = []
    if pa:
        recs += _with_deltas(suite, "ns", lambda S: M.neighborhood_score([_p(S[t]) for t, _ in pa], [_p(S[a]) for _, a in pa]),
                             ctx, keys, len(pa), det)
        recs += _with_deltas(suite, "nm", lambda S: M.neighborhood_magnitude([_p(S[t]) for t, _ in pa], [_p(S[a]) for _, a in pa]),
                             ctx, keys, len(pa), None)
    for name, src in (("base", ctx.ref), ("previous", ctx.prev)):
        ks = [k for k in kt if k in src and "dist" in src[k] and "dist" in ctx.cur[k]
              and list(src[k]["dist"]["ids"]) == list(ctx.cur[k]["dist"]["ids"])]
        if ks:
            per = [M.coarse_kl(src[k]["dist"], ctx.cur[k]["dist"]) for k in ks]
            recs.append(_rec(suite, "nkl", M.mean(per), len(ks), [{"key": k, "kl": v} for k, v in zip(ks, per)], name))
    recs += _agreement_records(ctx, suite, "locality_acc", kt, len(items))
    return recs


def _locality_like(metric: str):
    """OA / DN: EasyEdit-style token agreement with the base (the survey's locality numbers), plus
    the absolute accuracy on the true object and P(true) > P(alt) where an alt is given."""
    def f(ctx, suite, idx):
        items, kt, ka = _pairs_of(ctx, idx, suite)
        if not items:
            return []
        det = _detail(ctx, items, kt, ka)
        recs = _agreement_records(ctx, suite, metric, kt, len(items))
        recs += _with_deltas(suite, "accuracy", lambda S: M.accuracy(_top1(S[k]) for k in kt), ctx, kt, len(items), det)
        pa = [(t, a) for t, a in zip(kt, ka) if a is not None]
        if pa:
            keys = [k for ta in pa for k in ta]
            recs += _with_deltas(suite, "true_over_alt", lambda S: M.success_rate([_p(S[t]) for t, _ in pa], [_p(S[a]) for _, a in pa]),
                                 ctx, keys, len(pa), None)
        return recs
    return f


def _portability(ctx, suite, idx):
    """SR / RR / OH: EasyEdit's token-level accuracy of the expected answer (teacher-forced), and the
    stricter all-tokens top-1."""
    items, kt, ka = _pairs_of(ctx, idx, suite)
    if not items:
        return []
    det = _detail(ctx, items, kt, ka)
    return (_with_deltas(suite, "accuracy", lambda S: M.mean(_tokacc(S[k]) for k in kt), ctx, kt, len(items), det)
            + _with_deltas(suite, "exact", lambda S: M.accuracy(_top1(S[k]) for k in kt), ctx, kt, len(items), None))


def _other_task(ctx, suite, idx):
    items = ctx.items(idx, suite)
    mc = [(i, it) for i, it in enumerate(items) if it.choices and it.label is not None]
    if not mc:
        return []
    keys = [_key(idx, suite, i, f"c{j}") for i, it in mc for j in range(len(it.choices))]

    def acc(S):
        return M.accuracy(M.choice([sum(S[_key(idx, suite, i, f"c{j}")]["lp"]) for j in range(len(it.choices))]) == it.label
                          for i, it in mc)
    det = [{"prompt": it.prompt, "label": it.label,
            "ll": [sum(ctx.cur[_key(idx, suite, i, f"c{j}")]["lp"]) for j in range(len(it.choices))]} for i, it in mc]
    return _with_deltas(suite, "accuracy", acc, ctx, keys, len(mc), det)


def _generic(ctx, suite, idx):
    items, kt, ka = _pairs_of(ctx, idx, suite)
    if not items or any(k not in ctx.cur for k in kt):
        return []
    return _with_deltas(suite, "accuracy", lambda S: M.accuracy(_top1(S[k]) for k in kt), ctx, kt, len(items),
                        _detail(ctx, items, kt, ka))


_STEP_METRICS = {
    "rewrite": _rewrite, "paraphrase": _paraphrase, "neighborhood": _neighborhood,
    "attribute": _locality_like("oa"), "distract": _locality_like("dn"),
    "portability_sr": _portability, "portability_rr": _portability, "portability_oh": _portability,
    "other_task": _other_task,
}


# ----------------------------------------------------------------------------- retention
def _retention(ctx: _Ctx, edit_eff: dict[str, float]) -> list[ProbeRecord]:
    """Efficacy of every earlier step's rewrite probes at this version (forgetting curves)."""
    rows = []
    for j in range(1, ctx.t + 1):
        kt = [_key(j, "rewrite", i, "t") for i in range(len(ctx.items(j, "rewrite")))]
        if not kt or not all(k in ctx.cur for k in kt):
            continue
        row = {"step": j, "top1": M.accuracy(_top1(ctx.cur[k]) for k in kt),
               "p_new": M.mean(_p(ctx.cur[k]) for k in kt), "at_edit": edit_eff.get(str(j))}
        if all(k in ctx.prev for k in kt):
            row["top1_previous"] = M.accuracy(_top1(ctx.prev[k]) for k in kt)
        rows.append(row)
    earlier = [r for r in rows if r["step"] < ctx.t]
    if not earlier:       # nothing to retain yet at the first edit
        return []
    recs = [_rec("retention", "efficacy_top1", M.mean(r["top1"] for r in earlier), len(earlier), rows)]
    forg = [r["at_edit"] - r["top1"] for r in earlier if r["at_edit"] is not None]
    if forg:
        recs.append(_rec("retention", "forgetting", M.mean(forg), len(forg), None))
    prevs = [r["top1"] - r["top1_previous"] for r in earlier if "top1_previous" in r]
    if prevs:
        recs.append(_rec("retention", "efficacy_top1", M.mean(prevs), len(prevs), None, "previous"))
    return recs


# ----------------------------------------------------------------------------- group suites
def _group_items(ctx: _Ctx, members: list[int], suite: str):
    for j in members:
        for i, it in enumerate(ctx.items(j, suite)):
            yield j, i, it


def _multihop(ctx: _Ctx, groups: list[str], members: dict[str, list[int]]) -> list[ProbeRecord]:
    """MQuAKE: EW over the case's edits (their rewrite probes), IW over the chain's single hops
    (multihop items with meta kind="hop"; the edits when the case has none), MH over its questions.
    An answer counts when the greedy continuation starts with the target or any alias."""
    if not groups:
        return []
    ew_flags, iw_cases, mh_cases, det = [], [], [], []
    for g in groups:
        edits = [_top1(ctx.cur[_key(j, "rewrite", i, "t")]) for j in members[g] for i in range(len(ctx.items(j, "rewrite")))]
        hops, qs = [], []
        for j, i, it in _group_items(ctx, members[g], "multihop"):
            ok = _top1(ctx.cur[_key(j, "multihop", i, "t")]) or any(
                _top1(ctx.cur[_key(j, "multihop", i, f"x{x}")]) for x in range(len(it.answers)))
            (hops if it.meta.get("kind") == "hop" else qs).append(ok)
        ew_flags += edits
        iw_cases.append(hops or edits)
        if qs:
            mh_cases.append(qs)
        det.append({"group": g, "edits": edits, "hops": hops, "questions": qs})
    recs = [_rec("multihop", "ew", M.edit_wise(ew_flags), len(ew_flags), det),
            _rec("multihop", "iw", M.instance_wise(iw_cases), len(iw_cases), None)]
    if mh_cases:
        recs.append(_rec("multihop", "mh", M.multihop_accuracy(mh_cases), len(mh_cases), None))
    return recs


def _conflict(ctx: _Ctx, groups: list[str], members: dict[str, list[int]], inter: dict) -> list[ProbeRecord]:
    """ConflictEdit, per stream kind (reverse / composite): CS = 1{p'(k_new) > p'(k_old)} with the
    conflict items' target = k_new and alt = k_old; CM = relative drop of p(k_old) from the
    intermediate model (after the group's first edit); TFD = relative drop of the tied fact; success
    = top-1 efficacy of the group's rewrite probes now."""
    by_kind: dict[str, dict[str, list]] = {}
    for g in groups:
        kind = ctx.steps[members[g][0] - 1].kind
        kind = kind[:-len("_conflict")] if kind.endswith("_conflict") else kind   # reverse / composite / coverage
        b = by_kind.setdefault(kind, {"new": [], "old": [], "old_mid": [], "tied": [], "tied_mid": [], "succ": [], "det": []})
        mid = inter.get(g, {})
        for j, i, it in _group_items(ctx, members[g], "conflict"):
            kt, ka = _key(j, "conflict", i, "t"), _key(j, "conflict", i, "a")
            if ka not in ctx.cur:
                continue
            b["new"].append(_p(ctx.cur[kt])); b["old"].append(_p(ctx.cur[ka]))
            d = {"group": g, "prompt": it.prompt, "k_new": it.target, "k_old": it.alt,
                 "p_new": _p(ctx.cur[kt]), "p_old": _p(ctx.cur[ka])}
            if ka in mid:
                b["old_mid"].append((_p(mid[ka]), _p(ctx.cur[ka])))
                d["p_old_intermediate"] = _p(mid[ka])
            b["det"].append(d)
        for j, i, it in _group_items(ctx, members[g], "tied_fact"):
            kt = _key(j, "tied_fact", i, "t")
            if kt in mid:
                b["tied_mid"].append((_p(mid[kt]), _p(ctx.cur[kt])))
                b["det"].append({"group": g, "tied": it.prompt + it.target, "p": _p(ctx.cur[kt]), "p_intermediate": _p(mid[kt])})
        for j in members[g]:
            b["succ"] += [_top1(ctx.cur[_key(j, "rewrite", i, "t")]) for i in range(len(ctx.items(j, "rewrite")))
                          if _key(j, "rewrite", i, "t") in ctx.cur]
    recs = []
    for kind, b in by_kind.items():
        if b["new"]:
            recs.append(_rec("conflict", f"cs_{kind}", M.conflict_score(b["new"], b["old"]), len(b["new"]), b["det"]))
        if b["old_mid"]:
            recs.append(_rec("conflict", f"cm_{kind}", M.conflict_magnitude([m for m, _ in b["old_mid"]], [f for _, f in b["old_mid"]]),
                             len(b["old_mid"]), None, "previous"))
        if b["tied_mid"]:
            recs.append(_rec("conflict", f"tfd_{kind}", M.tied_fact_damage([m for m, _ in b["tied_mid"]], [f for _, f in b["tied_mid"]]),
                             len(b["tied_mid"]), None, "previous"))
        if b["succ"]:
            recs.append(_rec("conflict", f"success_{kind}", M.accuracy(b["succ"]), len(b["succ"]), None))
    return recs


def _round(ctx: _Ctx, groups: list[str], members: dict[str, list[int]]) -> list[ProbeRecord]:
    """RoundEdit, on the round items of the group's last step (the object set after the round trip):
    success (target is the most probable object), D = JS(base, now) in bits, IR and FR against the
    base; D also against the previous version."""
    succ, dist_b, dist_p, irs, det = [], [], [], [], []
    for g in groups:
        last = members[g][-1]
        for i, it in enumerate(ctx.items(last, "round")):
            if not it.choices or (it.label is None and it.target not in it.choices):
                continue   # no object set, or the target is not in it: nothing to compare
            tgt = it.label if it.label is not None else list(it.choices).index(it.target)
            ks = [_key(last, "round", i, f"c{j}") for j in range(len(it.choices))]
            now = M.normalise([_mlp(ctx.cur[k]) for k in ks])
            row = {"group": g, "prompt": it.prompt, "choices": list(it.choices), "target": tgt, "dist": now}
            succ.append(M.round_success(now, tgt))
            if all(k in ctx.ref for k in ks):
                base = M.normalise([_mlp(ctx.ref[k]) for k in ks])
                dist_b.append(M.distortion(base, now))
                irs.append(M.ignore_rate(base, now, tgt))
                row.update(dist_base=base, d=dist_b[-1], ir=irs[-1])
            if all(k in ctx.prev for k in ks):
                dist_p.append(M.distortion(M.normalise([_mlp(ctx.prev[k]) for k in ks]), now))
            det.append(row)
    if not succ:
        return []
    recs = [_rec("round", "success", M.accuracy(succ), len(succ), det)]
    if dist_b:
        recs += [_rec("round", "distortion", M.mean(dist_b), len(dist_b), None, "base"),
                 _rec("round", "ignore_rate", M.mean(irs), len(irs), None, "base"),
                 _rec("round", "failure_rate", M.accuracy(M.failure(x) for x in irs), len(irs), None, "base")]
    if dist_p:
        recs.append(_rec("round", "distortion", M.mean(dist_p), len(dist_p), None, "previous"))
    return recs


# ----------------------------------------------------------------------------- general records
def _general_records(gen: dict, ref: dict, prev: dict) -> list[ProbeRecord]:
    recs = []

    def add(suite, metric, v, count, detail, rv, pv):
        recs.append(_rec(suite, metric, v, count, detail))
        if rv is not None:
            recs.append(_rec(suite, metric, v - rv, count, {"reference_value": rv}, "base"))
        if pv is not None:
            recs.append(_rec(suite, metric, v - pv, count, {"reference_value": pv}, "previous"))

    if "perplexity" in gen:
        g = gen["perplexity"]
        add("perplexity", "ppl", g["ppl"], g["tokens"], {"nll": g["nll"], "tokens": g["tokens"]},
            ref.get("perplexity", {}).get("ppl"), prev.get("perplexity", {}).get("ppl"))
    for m, x in gen.get("downstream", {}).items():
        add("downstream", m, x["value"], len(x["detail"]), x["detail"],
            ref.get("downstream", {}).get(m, {}).get("value"), prev.get("downstream", {}).get(m, {}).get("value"))
    if "fluency" in gen:
        g = gen["fluency"]
        add("fluency", "ngram_entropy", g["ngram_entropy"], len(g["detail"]), g["detail"],
            ref.get("fluency", {}).get("ngram_entropy"), prev.get("fluency", {}).get("ngram_entropy"))
    return recs
