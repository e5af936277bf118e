"""Ledger benchmark (not a test): record N steps with 5 probes each into a fresh SQLite ledger,
then time reading the N-version timeline and one metric's trajectory.

    python benchmarks/bench_ledger.py                 # 10,000 steps, a rank-1 delta artifact per step
    python benchmarks/bench_ledger.py --no-deltas     # rows only (no artifact writes / fsyncs)

Goal: timeline and trajectory each under 100 ms for 10,000 versions. Reads are timed warm (the
median of --repeat calls on an open ledger) and cold (the first call after opening the ledger).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from ledger import DeltaInput, Ledger, ProbeRecord  # noqa: E402


def record(db: Path, steps: int, with_deltas: bool):
    import torch
    torch.set_num_threads(1)
    L = Ledger.open(str(db))
    bm = L.register_base_model("bench", "synthetic", "0" * 64, {})
    run = L.begin_run(base_model_id=bm.id, method="ROME", hparams={"layer": 5}, stream_name="bench",
                      stream_digest="1" * 64, stream_kind="sequential")
    g = torch.Generator().manual_seed(0)
    parent = run.head_version_id
    t0 = time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc="record", unit="step", file=sys.stderr):
        deltas = [] if not with_deltas else [DeltaInput(
            "transformer.h.5.mlp.fc_out.weight", "low_rank",
            {"u": torch.randn(64, 1, generator=g), "v": torch.randn(256, 1, generator=g)}, (64, 256), 1, 1.0)]
        req = {"subject": f"Subject {step}", "prompt": "{} is located in", "target_new": " Rome",
               "target_old": " Paris", "relation": "P131"}
        probes = [ProbeRecord("rewrite", "efficacy_top1", (step % 10) / 10, 1),
                  ProbeRecord("paraphrase", "efficacy_top1", 0.5, 2),
                  ProbeRecord("neighborhood", "ns", 0.9, 10, against="base"),
                  ProbeRecord("neighborhood", "nkl", 0.01, 10, against="base"),
                  ProbeRecord("perplexity", "ppl", 20.0 + step / 1000, 32, against="none")]
        v = L.record_step(run.id, step=step, parent_version_id=parent, requests=[req], deltas=deltas,
                          tensor_fingerprints={"transformer.h.5.mlp.fc_out.weight": f"{step:064x}"},
                          diagnostics={"loss": 0.01}, wall_time_s=0.1, probes=probes)
        parent = v.id
    record_s = time.perf_counter() - t0
    L.close()
    return run, parent, record_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--no-deltas", action="store_true", help="record no delta artifacts")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where to create the ledger (default: a temp dir)")
    ap.add_argument("--reads-only", action="store_true",
                    help="skip recording: time the reads on the ledger a previous run left in --dir")
    args = ap.parse_args()

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="bench_ledger_"))
    db = tmp / "bench.db"
    record_s = None
    if args.reads_only:
        assert args.dir and db.exists(), "--reads-only needs --dir with a ledger a previous run recorded"
        with Ledger.open(str(db), create=False) as L:
            run = L.runs()[0]
            parent = run.head_version_id
            args.steps = run.steps
    else:
        assert not db.exists(), f"{db} exists; the benchmark needs a fresh ledger (or pass --reads-only)"
        run, parent, record_s = record(db, args.steps, not args.no_deltas)

    def timed(fn):
        """(wall seconds, CPU seconds of this process, result): on a shared machine the CPU time
        says what the code costs, the wall time what a user waits."""
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - t, time.process_time() - c, out

    L = Ledger.open(str(db))
    reads = {
        "timeline": lambda: L.timeline(run.id),
        "trajectory": lambda: L.trajectory(run.id, "perplexity", "ppl", "none"),
        "lineage": lambda: L.lineage(parent),
    }
    cold = {name: timed(fn) for name, fn in reads.items()}   # first call after opening
    tl, tr, ln = cold["timeline"][2], cold["trajectory"][2], cold["lineage"][2]
    assert len(tl) == args.steps and [r.step for r in tl] == list(range(1, args.steps + 1))
    assert len(tr) == args.steps and [s for s, _ in tr] == list(range(1, args.steps + 1))
    assert len(ln) == args.steps + 1
    warm = {}
    for name, fn in reads.items():
        runs = [timed(fn) for _ in range(args.repeat)]
        warm[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    L.close()
    size = db.stat().st_size + sum(p.stat().st_size for p in (tmp / "artifacts").rglob("*") if p.is_file()) \
        if (tmp / "artifacts").exists() else db.stat().st_size
    print(f"ledger: {db} ({size / 1e6:.1f} MB with artifacts); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    if record_s is not None:
        print(f"record: {args.steps} steps x 5 probes{'' if args.no_deltas else ' + 1 delta artifact'}: "
              f"{record_s:.1f} s ({1000 * record_s / args.steps:.2f} ms/step)")
    for name in reads:
        (cw, cc, _), (ww, wc) = cold[name], warm[name]
        goal = "" if name == "lineage" else f"  goal <100 ms: {'met' if max(cw, ww) < 0.1 else 'MISSED'} (wall)"
        print(f"{name:<10} {args.steps} versions: cold {1000 * cw:.1f} ms wall / {1000 * cc:.1f} ms CPU, "
              f"warm median {1000 * ww:.1f} ms wall / {1000 * wc:.1f} ms CPU{goal}")

if __name__ == "__main__":
    main()
