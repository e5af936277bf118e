"""`editledger demo`: the main job. A built-in stream of ~12 ROME edits (with a round edit and a
reverse conflict) on the embedded Gemma 3 270M, recorded in ./editledger.db, with a table of the
headline metrics per step and the command that opens the TUI."""
from __future__ import annotations

import sys
import time

from .common import add_model_args, bounded_int, open_ledger, seed_arg

# (column title, suite, metric): the headline metrics printed per step.
COLUMNS = [
    ("eff", "rewrite", "efficacy_top1"),
    ("P>old", "rewrite", "efficacy_prob"),
    ("para", "paraphrase", "generalization_top1"),
    ("NS", "neighborhood", "ns"),
    ("NKL", "neighborhood", "nkl"),
    ("retain", "retention", "efficacy_top1"),
]


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: a 12-edit ROME replay on the embedded model",
                       description="Replay the built-in demo stream (12 ROME edits on facts the embedded "
                                   "Gemma 3 270M knows, with a round edit and a reverse conflict) into the "
                                   "ledger (default ./editledger.db) and print the headline metrics per step.")
    p.add_argument("--model", default="gemma-3-270m", help="model to edit (default: gemma-3-270m)")
    p.add_argument("--method", default="rome", help="editing method (default: rome)")
    p.add_argument("--steps", type=bounded_int(1, what="--steps"), default=None, help="replay only the first N steps")
    p.add_argument("--seed", type=seed_arg, default=0)
    add_model_args(p)
    p.set_defaults(func=run)


def _fmt(v) -> str:
    return "   -  " if v is None else f"{v:6.2f}"


def run(args) -> int:
    from ledger.values import preferred_value
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams.builtin import demo
    stream = demo()
    steps = stream.steps[: args.steps] if args.steps else stream.steps
    t0 = time.perf_counter()
    with open_ledger(args) as led:
        print(f"ledger: {led.url}", file=sys.stderr)
        print(f"loading {args.model} …", file=sys.stderr)
        session = Session.open(led, args.model, device=args.device)
        t_load = time.perf_counter() - t0
        header = f"{'step':>4}  {'edit':<44}" + "".join(f"{c[0]:>7}" for c in COLUMNS)
        rows: list[str] = []

        def on_step(stepno, step, records, version):
            r = step.requests[0]
            edit = f"{r.subject}: {(r.target_old or '?').strip()} → {r.target_new.strip()}"
            tag = f" ({step.kind.replace('_', ' ')} {step.role})" if step.role else ""
            rows.append(f"{stepno:>4}  {(edit + tag)[:44]:<44}"
                        + "".join(f" {_fmt(preferred_value(records, s, m))}" for _, s, m in COLUMNS))

        # cheap suites every step; general abilities scored by log-likelihood (perplexity, sentiment,
        # PIQA) every 4 edits; the generation-based sets (QA, reasoning, summaries, fluency) are left to
        # `editledger replay --general builtin`, to keep the demo within a few minutes on a CPU
        opts = ReplayOptions(method=args.method, seed=args.seed, general="loglik",
                             probe_every={"perplexity": 4, "downstream": 4})
        replayer = Replayer(session, opts, on_step=on_step)
        run_id = replayer.start(steps, stream_name=stream.name, stream_digest=stream.digest,
                                stream_kind=stream.kind, name="demo")
        total = time.perf_counter() - t0
        print()
        print(header)
        print("\n".join(rows))
        tm = replayer.timing
        print(f"\nrun {run_id}: {led.run(run_id).status}, {len(rows)} steps in {total:.0f} s "
              f"(load {t_load:.0f} s, statistics {tm.get('stats_s', 0.0):.0f} s, edits {tm['edit_s']:.0f} s, "
              f"probes {tm['probe_s'] + tm['reference_s']:.0f} s, ledger {tm['record_s']:.1f} s)")
        print("columns: eff = new target is the top prediction, P>old = P(new) > P(old), para = paraphrases, "
              "NS = neighbourhood score, NKL = neighbourhood KL to the base model, retain = earlier edits still held")
        db = "" if args.db is None else f"--db {args.db} "
        print(f"\nopen the TUI:   editledger {db}tui {run_id}")
        print(f"survey tables:  editledger {db}report {run_id}")
    return 0
