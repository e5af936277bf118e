"""Per-step suites: a step's own items, measured right after its edit (``build(ctx, suite, idx)``).

Sources of the formulas: ROME's CounterFact metrics (kmeng01/rome, experiments/summarize.py:
efficacy / paraphrase success = P(new) > P(old), neighbourhood success = P(true) > P(new),
magnitudes as probability differences), CounterFact+'s NKL (apartresearch/specificityplus), and
EasyEdit's token-level locality and portability accuracy (Yao et al.: OA, DN, SR, RR, OH).
"""
from __future__ import annotations

from ledger.records import ProbeRecord

from .. import items as I
from .. import metrics as M
from .context import Ctx, detail, pairs_of, rec, with_deltas


def _efficacy_like(ctx: Ctx, suite: str, idx: int, top1_name: str, prob_name: str) -> list[ProbeRecord]:
    items, kt, ka = pairs_of(ctx, idx, suite)
    if not items:
        return []
    det = detail(ctx, items, kt, ka)
    recs = with_deltas(suite, top1_name, lambda S: M.accuracy(I.top1(S[k]) for k in kt), ctx, kt, len(items), det)
    pa = [(t, a) for t, a in zip(kt, ka) if a is not None]
    if pa:
        keys = [k for ta in pa for k in ta]
        recs += with_deltas(suite, prob_name,
                            lambda S: M.success_rate([I.prob(S[t]) for t, _ in pa], [I.prob(S[a]) for _, a in pa]),
                            ctx, keys, len(pa), None)
        recs += with_deltas(suite, prob_name.replace("_prob", "_magnitude"),
                            lambda S: M.magnitude([I.prob(S[t]) for t, _ in pa], [I.prob(S[a]) for _, a in pa]),
                            ctx, keys, len(pa), None)
    return recs


def rewrite(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
    """Efficacy: top-1 on the edit prompt; ROME's efficacy success P(new) > P(old) and magnitude."""
    return _efficacy_like(ctx, suite, idx, "efficacy_top1", "efficacy_prob")


def paraphrase(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
    """Generalisation: the same on paraphrases of the edit prompt."""
    return _efficacy_like(ctx, suite, idx, "generalization_top1", "generalization_prob")


def _agreement(ctx: Ctx, suite: str, metric: str, kt: list[str], count: int) -> list[ProbeRecord]:
    """EasyEdit's token-level locality: argmax tokens unchanged from the base / the previous version."""
    recs = []
    for name, src in (("base", ctx.ref), ("previous", ctx.prev)):
        if kt and all(k in src for k in kt):
            per = [M.token_agreement([src[k]["am"]], [ctx.cur[k]["am"]]) for k in kt]
            recs.append(rec(suite, metric, M.mean(per), count, [{"key": k, "agreement": a} for k, a in zip(kt, per)], name))
    return recs


def neighborhood(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
    """NS / NM (P(true) vs P(new) on other subjects), NKL (KL(P_edited || P_reference) of the next
    token, nats, summed over the coarse-grained vocabulary) and token-level locality."""
    items, kt, ka = pairs_of(ctx, idx, suite)
    if not items:
        return []
    det = detail(ctx, items, kt, ka)
    pa = [(t, a) for t, a in zip(kt, ka) if a is not None]
    keys = [k for ta in pa for k in ta]
    recs = []
    if pa:
        recs += with_deltas(suite, "ns", lambda S: M.neighborhood_score([I.prob(S[t]) for t, _ in pa],
                                                                        [I.prob(S[a]) for _, a in pa]),
                            ctx, keys, len(pa), det)
        recs += with_deltas(suite, "nm", lambda S: M.neighborhood_magnitude([I.prob(S[t]) for t, _ in pa],
                                                                            [I.prob(S[a]) for _, a in pa]),
                            ctx, keys, len(pa), None)
    for name, src in (("base", ctx.ref), ("previous", ctx.prev)):
        ks = [k for k in kt if k in src and "dist" in src[k] and "dist" in ctx.cur[k]
              and list(src[k]["dist"]["ids"]) == list(ctx.cur[k]["dist"]["ids"])]
        if ks:
            per = [M.neighborhood_kl(ctx.cur[k]["dist"], src[k]["dist"]) for k in ks]
            recs.append(rec(suite, "nkl", M.mean(per), len(ks),
                            [{"key": k, "kl": v, "direction": "KL(edited || reference)"} for k, v in zip(ks, per)], name))
    recs += _agreement(ctx, suite, "locality_acc", kt, len(items))
    return recs


def locality_like(metric: str):
    """OA / DN: EasyEdit-style token agreement with the base (the survey's locality numbers), plus
    the absolute accuracy on the true object and P(true) > P(alt) where an alt is given."""
    def build(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
        items, kt, ka = pairs_of(ctx, idx, suite)
        if not items:
            return []
        det = detail(ctx, items, kt, ka)
        recs = _agreement(ctx, suite, metric, kt, len(items))
        recs += with_deltas(suite, "accuracy", lambda S: M.accuracy(I.top1(S[k]) for k in kt), ctx, kt, len(items), det)
        pa = [(t, a) for t, a in zip(kt, ka) if a is not None]
        if pa:
            keys = [k for ta in pa for k in ta]
            recs += with_deltas(suite, "true_over_alt",
                                lambda S: M.success_rate([I.prob(S[t]) for t, _ in pa], [I.prob(S[a]) for _, a in pa]),
                                ctx, keys, len(pa), None)
        return recs
    return build


def portability(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
    """SR / RR / OH: EasyEdit's token-level accuracy of the expected answer (teacher-forced), and the
    stricter all-tokens top-1."""
    items, kt, ka = pairs_of(ctx, idx, suite)
    if not items:
        return []
    det = detail(ctx, items, kt, ka)
    return (with_deltas(suite, "accuracy", lambda S: M.mean(I.token_acc(S[k]) for k in kt), ctx, kt, len(items), det)
            + with_deltas(suite, "exact", lambda S: M.accuracy(I.top1(S[k]) for k in kt), ctx, kt, len(items), None))


def other_task(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
    """OT from a stream's own multiple-choice items: accuracy of the highest log-likelihood choice."""
    items = ctx.items(idx, suite)
    mc = [(i, it) for i, it in enumerate(items) if it.choices and it.label is not None]
    if not mc:
        return []
    keys = [I.key(idx, suite, i, f"c{j}") for i, it in mc for j in range(len(it.choices))]

    def acc(S):
        return M.accuracy(M.choice([I.logprob(S[I.key(idx, suite, i, f"c{j}")]) for j in range(len(it.choices))])
                          == it.label for i, it in mc)
    det = [{"prompt": it.prompt, "label": it.label,
            "ll": [I.logprob(ctx.cur[I.key(idx, suite, i, f"c{j}")]) for j in range(len(it.choices))]} for i, it in mc]
    return with_deltas(suite, "accuracy", acc, ctx, keys, len(mc), det)


def generic(ctx: Ctx, suite: str, idx: int) -> list[ProbeRecord]:
    """A suite without a builder of its own: top-1 accuracy of its targets."""
    items, kt, ka = pairs_of(ctx, idx, suite)
    if not items or any(k not in ctx.cur for k in kt):
        return []
    return with_deltas(suite, "accuracy", lambda S: M.accuracy(I.top1(S[k]) for k in kt), ctx, kt, len(items),
                       detail(ctx, items, kt, ka))
