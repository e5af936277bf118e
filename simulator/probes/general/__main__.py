"""One general-ability pass on a model, timed per task: what a ``--general`` spec costs per
measurement, and the base values.

    python -m simulator.probes.general --model gemma-3-270m --spec nq,gsm8k,sst2,samsum,boolq,piqa,wikitext --n 50
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from simulator.models import load_model
from simulator.probes.general import evaluate, general_sets
from simulator.probes.general.tasks import PERPLEXITY, TASKS
from simulator.probes.scoring import Scorer
from simulator.runtime import as_view


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.probes.general", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--spec", default="nq,gsm8k,sst2,samsum,boolq,piqa,wikitext")
    p.add_argument("--n", type=int, default=50, help="items per set (default 50: one pass as Figure 4 needs it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="the data folder (default: $EDITLEDGER_DATA, ../shared/data)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the timings and values here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = general_sets(args.spec, n=args.n, seed=args.seed, data_dir=args.data)
    t = time.perf_counter()
    lm = load_model(args.model, progress=True)
    load_s = time.perf_counter() - t
    sc = Scorer(as_view(lm.model, lm.tokenizer, lm.spec), batch_size=args.batch_size, progress=True)
    rows, total, cpu_total = [], 0.0, 0.0
    names = list(sets.task_items()) + ([PERPLEXITY] if sets.text else [])
    for name in names:
        suite = PERPLEXITY if name == PERPLEXITY else TASKS[name].suite
        t, c = time.perf_counter(), time.process_time()
        res = evaluate(sc, sets.only(name), {suite})
        dt, dc = time.perf_counter() - t, time.process_time() - c
        total += dt
        cpu_total += dc
        (r,) = res.values()
        rows.append({"task": name, "items": r["count"], "seconds": round(dt, 2), "cpu_seconds": round(dc, 2),
                     "values": r["values"]})
        print(f"{name:10s} {r['count']:6d} items  {dt:7.1f} s wall {dc:7.1f} s cpu  " +
              "  ".join(f"{k}={v:.4f}" for k, v in r["values"].items()), flush=True)
    load = os.getloadavg()
    print(f"one pass: {total:.1f} s wall, {cpu_total:.1f} s cpu over {len(rows)} sets (model load {load_s:.1f} s; "
          f"torch threads {torch.get_num_threads()}; load average {load[0]:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"spec": args.spec, "n": args.n, "seed": args.seed, "model": args.model, "tasks": rows,
                       "pass_s": round(total, 2), "pass_cpu_s": round(cpu_total, 2), "load_average": load[0]},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
