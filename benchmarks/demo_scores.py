"""The demo stream's scores and timings under one corpus recipe, as JSON: for side-by-side comparisons of
code versions and statistics (a script, not a test). It measures the checkout it is run from:

    python benchmarks/demo_scores.py --out new.json                              # this code, default corpus
    python benchmarks/demo_scores.py --seq-len 256 --sampler 1 --out old.json    # the first corpus recipe
    (cd /path/to/other/checkout && python /this/repo/benchmarks/demo_scores.py --seq-len 256 --out base.json)
    python benchmarks/demo_scores.py --compare base.json old.json new.json       # one table

Each run replays the built-in demo stream (12 ROME edits, the demo's probe schedule) into a fresh ledger in
a temp dir, with the second-moment statistics of the named recipe (taken from the per-machine cache, or
sampled once). Per step: the demo's headline metrics, the edit's and the probes' wall and CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())          # the checkout being measured is the one it is run from

COLUMNS = [("eff", "rewrite", "efficacy_top1"), ("P>old", "rewrite", "efficacy_prob"),
           ("para", "paraphrase", "generalization_top1"), ("NS", "neighborhood", "ns"),
           ("NKL", "neighborhood", "nkl"), ("retain", "retention", "efficacy_top1")]


def run(args) -> dict:
    try:
        from simulator import threads
        threads.early()
    except ImportError:                  # a checkout from before the thread policy
        pass
    import torch

    from ledger import Ledger
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.models import cache_root
    from simulator.stats import Corpus, StatsProvider
    from simulator.stats_ledger import LedgerStatsCache
    from simulator.streams.builtin import demo

    if args.threads:
        torch.set_num_threads(args.threads)
    stream = demo()
    steps = stream.steps[: args.steps] if args.steps else stream.steps
    led = Ledger.open(str(Path(tempfile.mkdtemp(prefix="demo_scores_")) / "demo.db"))
    session = Session.open(led, "gemma-3-270m", progress=False)
    kw = {} if args.sampler is None else {"sampler": args.sampler}
    corpus = Corpus(n_tokens=4096, seq_len=args.seq_len, seed=args.seed, **kw)
    rows, clock = [], {}

    def on_step(stepno, step, records, version):
        vals = {}
        for r in records:
            if r.against == "none" or (r.against == "base" and (r.suite, r.metric) not in vals):
                vals[(r.suite, r.metric)] = r.value
        d = version.diagnostics or {}
        req = (d.get("requests") or [{}])[0]
        rows.append({"step": stepno, "edit": f"{step.requests[0].subject} -> {step.requests[0].target_new.strip()}",
                     **{c: vals.get((s, m)) for c, s, m in COLUMNS},
                     "edit_s": d.get("timing_s", {}).get("edit"), "probes_s": d.get("timing_s", {}).get("probes"),
                     "opt_steps": req.get("steps"), "cpu_s": round(time.process_time() - clock["cpu"], 2),
                     "edit_cpu_s": round(cpu_edit[-1], 2) if cpu_edit else None})
        clock["cpu"] = time.process_time()

    opts = ReplayOptions(method="rome", seed=0, general="loglik", probe_every={"perplexity": 4, "downstream": 4},
                         progress=False)
    rep = Replayer(session, opts, on_step=on_step)
    edit, cpu_edit = rep.editor.edit, []

    def timed_edit(*a, **k):             # the edit's CPU time on its own (the step's CPU time less it: probes)
        c = time.process_time()
        try:
            return edit(*a, **k)
        finally:
            cpu_edit.append(time.process_time() - c)
    rep.editor.edit = timed_edit
    rep.stats = StatsProvider(session.lm.fingerprint, corpus,
                              LedgerStatsCache(session.ledger, cache_root().parent / "stats"), progress=False)
    t = time.perf_counter()
    rep._prepare_stats()                 # outside the timed replay (cached statistics are what is compared)
    stats_s = time.perf_counter() - t
    clock["cpu"] = time.process_time()
    t = time.perf_counter()
    rep.start(steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind, name="demo")
    edits = [r["edit_s"] for r in rows]
    ecpu = [r["edit_cpu_s"] for r in rows if r["edit_cpu_s"] is not None]
    return {"corpus": {"seq_len": args.seq_len, "sampler": args.sampler, "seed": args.seed,
                       "digest": corpus.recipe_digest},
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0], "stats_s": round(stats_s, 1),
            "replay_s": round(time.perf_counter() - t, 1), "edit_median_s": statistics.median(edits),
            "edit_min_s": min(edits), "edit_max_s": max(edits),
            "edit_cpu_median_s": statistics.median(ecpu) if ecpu else None,
            "probes_cpu_s": round(sum(r["cpu_s"] - (r["edit_cpu_s"] or 0) for r in rows), 1),
            "timing": rep.timing, "steps": rows}


def compare(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    names = [Path(p).stem for p in paths]
    cols = [c for c, _, _ in COLUMNS]
    head = f"{'step':>4} {'edit':<34}" + "".join(f" | {n[:14]:^{7 * len(cols) - 1}}" for n in names)
    print(head)
    print(f"{'':>4} {'':<34}" + "".join(" | " + " ".join(f"{c:>6}" for c in cols) for _ in names))
    for i, row in enumerate(runs[0]["steps"]):
        line = f"{row['step']:>4} {row['edit'][:34]:<34}"
        for r in runs:
            s = r["steps"][i] if i < len(r["steps"]) else {}
            line += " | " + " ".join("     -" if s.get(c) is None else f"{s[c]:6.2f}" for c in cols)
        print(line)
    for c in cols:
        print(f"mean {c:<8}" + "".join(f" | {statistics.mean(s[c] for s in r['steps'] if s.get(c) is not None):.3f}"
                                      for r in runs))
    for n, r in zip(names, runs):
        if r.get("edit_cpu_median_s") is not None:
            print(f"{n}: ROME CPU time median {r['edit_cpu_median_s']:.2f} s per edit; probes' CPU time "
                  f"{r['probes_cpu_s']} s in all")
        print(f"{n}: ROME median {r['edit_median_s']:.2f} s per edit (min {r['edit_min_s']:.2f}, max "
              f"{r['edit_max_s']:.2f}), optimisation steps {[s['opt_steps'] for s in r['steps']]}, replay "
              f"{r['replay_s']} s, load average {r['load_average']:.1f}, threads {r['threads']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--sampler", type=int, default=None, help="corpus sampler (default: the checkout's)")
    ap.add_argument("--seed", type=int, default=0, help="corpus sampling seed (another sample of the same recipe)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", nargs="+", default=None, help="JSON files written by earlier runs")
    args = ap.parse_args()
    if args.compare:
        compare(args.compare)
        return
    res = run(args)
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
