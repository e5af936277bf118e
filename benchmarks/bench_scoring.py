"""Batched probe scoring vs a loop of one forward per prompt, side by side in one run.

    python benchmarks/bench_scoring.py [--model gemma-3-270m] [--n 96] [--batch-size 16] [--repeats 3]

Both paths score the same (prompt, target) pairs on the same weights: the batched path runs one
padded forward per batch with the LM head applied only at target positions; the loop runs
``model(...)`` once per pair (full logits), as evaluation scripts usually do. The two are run
alternately, ``--repeats`` times each; the ratio of the medians is reported, with the largest
log-probability difference between them. Probes: CounterFact prompts from ../shared when present
(rewrite, paraphrase and neighbourhood prompts with their new/true objects), else a built-in set.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def probe_pairs(n: int) -> list[tuple[str, str]]:
    shared = Path(os.environ.get("EDITLEDGER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    f = shared / "data" / "counterfact" / "easyedit_format" / "counterfact-edit-1k.json"
    pairs: list[tuple[str, str]] = []
    if f.is_file():
        for r in json.loads(f.read_text()):
            pairs += [(r["prompt"], " " + r["target_new"]), (r["prompt"], " " + r["ground_truth"]),
                      (r["rephrase_prompt"], " " + r["target_new"]),
                      (r["locality_prompt"], " " + r["locality_ground_truth"])]
            if len(pairs) >= n:
                break
    else:
        base = [("The Eiffel Tower is located in", " Paris"), ("The mother tongue of Danielle Darrieux is", " French"),
                ("Toyota is headquartered in", " Japan"), ("The capital of Italy is", " Rome"),
                ("Michael Jordan plays the sport of", " basketball"), ("Mozart was born in", " Salzburg, Austria")]
        pairs = [(p, t) for _ in range(n // len(base) + 1) for p, t in base]
    return pairs[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--n", type=int, default=96, help="number of (prompt, target) pairs")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from simulator.models import load_model
    from simulator.probes.scoring import Scorer

    t0 = time.perf_counter()
    lm = load_model(a.model, device=a.device, dtype=torch.float32)
    print(f"loaded {a.model} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    sc = Scorer(lm.model, lm.tokenizer, prefix=lm.spec.prompt_prefix, batch_size=a.batch_size)
    pairs = probe_pairs(a.n)
    ntok = [len(sc.encode(p, t)[1]) for p, t in pairs]
    sc.score(pairs[:4]); sc.score_one_by_one(pairs[:2])          # warm-up
    tb, tl = [], []
    for _ in range(a.repeats):
        t = time.perf_counter(); batched = sc.score(pairs); tb.append(time.perf_counter() - t)
        t = time.perf_counter(); loop = sc.score_one_by_one(pairs); tl.append(time.perf_counter() - t)
    diff = max(abs(x - y) for b, l in zip(batched, loop) for x, y in zip(b.token_logprobs, l.token_logprobs))
    same_top = all(b.argmax == l.argmax for b, l in zip(batched, loop))
    res = {"model": a.model, "device": str(next(lm.model.parameters()).device), "threads": a.threads,
           "pairs": len(pairs), "target_tokens": sum(ntok), "multi_token_targets": sum(n > 1 for n in ntok),
           "batch_size": a.batch_size, "repeats": a.repeats,
           "batched_s_median": statistics.median(tb), "loop_s_median": statistics.median(tl),
           "speedup": statistics.median(tl) / statistics.median(tb),
           "max_abs_logprob_diff": diff, "same_argmax": same_top}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
