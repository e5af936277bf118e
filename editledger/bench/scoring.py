"""Batched scoring (``Scorer.score``: one padded pass per batch, lm head at the target positions only)
against one full forward pass per pair (``Scorer.score_one_by_one``), the same pairs on the same weights,
run alternately. Pairs: the built-in facts' probe items (targets and alternatives, multi-token ones
included), so the benchmark needs no data set."""
from __future__ import annotations

from editledger.bench.figures import Figure, Section, repeat


def probe_pairs(n: int) -> list[tuple[str, str]]:
    """n (prompt, target) pairs from the built-in facts' probes, every suite, targets and alternatives."""
    from simulator.streams.builtin import builtin_records
    pairs: list[tuple[str, str]] = []
    seen = set()
    for rec in builtin_records():
        for probes in rec.probes:
            for items in probes.values():
                for it in items:
                    for tgt in (it.target, it.alt):
                        if tgt and (it.prompt, tgt) not in seen:
                            seen.add((it.prompt, tgt))
                            pairs.append((it.prompt, tgt))
    return pairs[:n]


def bench_scoring(lm, quick: bool) -> Section:
    from simulator.probes.scoring import Scorer
    sec = Section("scoring", "Batched against one-by-one scoring")
    sc = Scorer(lm.model, lm.tokenizer, prefix=lm.spec.prompt_prefix, batch_size=16)
    pairs = probe_pairs(16 if quick else 192)
    ntok = [len(sc.encode(p, t)[1]) for p, t in pairs]
    n = 1 if quick else 5
    batched, loop = [], []
    sc.score(pairs[:4])
    sc.score_one_by_one(pairs[:2])
    for _ in range(n):          # alternated, so both see the same machine
        batched += repeat(lambda: sc.score(pairs), 1, warmup=0)
        loop += repeat(lambda: sc.score_one_by_one(pairs), 1, warmup=0)
    a, b = sc.score(pairs), sc.score_one_by_one(pairs)
    diff = max(abs(x - y) for p, q in zip(a, b) for x, y in zip(p.token_logprobs, q.token_logprobs))
    sec.add(Figure("batched", "s", batched, note=f"{len(pairs)} pairs, batch 16"),
            Figure("one by one", "s", loop, note=f"{len(pairs)} pairs"),
            Figure("speed-up (one by one / batched)", "x", [l_ / b_ for l_, b_ in zip(loop, batched)]))
    sec.info = {"pairs": len(pairs), "target_tokens": sum(ntok), "multi_token_targets": sum(k > 1 for k in ntok),
                "max_abs_logprob_diff": diff, "same_argmax": all(p.argmax == q.argmax for p, q in zip(a, b))}
    return sec
