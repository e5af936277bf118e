"""How well the base model, conditioned on a retrieved edit, acts as SERAC's counterfactual model.

The first N edits of the built-in sequential stream (seed 0) go into one SERAC memory; each conditioning
text is scored by top-1 of the new target on every edit's prompt and two paraphrases, and of the true
object on one neighbour (the numbers in docs/methods.md, SERAC section).

    python scripts/compare_serac_conditioning.py [--model gemma-3-270m] [--n 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulator.editors.memory import Memory  # noqa: E402  (the repository's, not an installed copy)
from simulator.editors.serac import TUNED_THRESHOLD, SERACRuntime  # noqa: E402
from simulator.models import load_model  # noqa: E402
from simulator.probes.scoring import Scorer  # noqa: E402
from simulator.runtime import ModelView, RuntimeView  # noqa: E402
from simulator.streams import make_stream  # noqa: E402
from simulator.streams.builtin import builtin_records  # noqa: E402

CONDITIONINGS = {
    "new fact (default)": "New Fact: {fact}\nPrompt: ",
    "EasyEdit PROMPT": "Please acknowledge the following new facts and use them to answer the question:\n"
                       "New Fact: {fact}.\nPrompt: ",
    "fictional example": "New Fact: The capital of Atlantis is the city of Zorn\nPrompt: The seat of government "
                         "of Atlantis is the city of Zorn\n\nNew Fact: {fact}\nPrompt: ",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args()
    lm = load_model(args.model, device="cpu", progress=False)
    steps = make_stream("sequential", builtin_records(seed=0), n=args.n, seed=0).steps
    facts = [s.requests[0] for s in steps]
    items = [(suite, p.prompt, p.target) for s in steps for suite in ("rewrite", "paraphrase", "neighborhood")
             for p in s.probes.get(suite, [])[:2 if suite == "paraphrase" else 1]]
    views = {"base model": ModelView(lm.model, lm.tokenizer, lm.spec)}
    for name, cond in CONDITIONINGS.items():
        mem = Memory(facts, {"threshold": TUNED_THRESHOLD, "conditioning": cond})
        views[name] = RuntimeView(lm.model, lm.tokenizer, lm.spec, [SERACRuntime(mem)])
    for name, view in views.items():
        t = time.perf_counter()
        with torch.no_grad():
            scores = Scorer(view, batch_size=8).score([(p, tgt) for _, p, tgt in items])
        got: dict[str, list[bool]] = {}
        for (suite, _, _), sc in zip(items, scores):
            got.setdefault(suite, []).append(sc.top1)
        print(f"{name:20s}", "  ".join(f"{k} {sum(v)}/{len(v)}" for k, v in got.items()),
              f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
