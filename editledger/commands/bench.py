"""`editledger bench [--quick]`: every benchmark, side by side in one run; a JSON file and a markdown table."""
from __future__ import annotations

import sys
from pathlib import Path

from editledger.bench.run import SECTIONS


def register(sub) -> None:
    p = sub.add_parser("bench", help="run every benchmark; write bench.json and bench.md",
                       description="Run the benchmarks (ledger, checkout, GPT-J-scale simulation, edit latency per "
                                   "method, scoring, an end-to-end replay with its audit, sharing the CPU, and the "
                                   "first demo) and write OUT/bench.json and OUT/bench.md. Each figure is a median "
                                   "over several runs after a warm-up, with min and max.")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats and steps, no cold demo: a smoke test of a few minutes")
    p.add_argument("--out", default="bench-results", help="directory for bench.json and bench.md (default: %(default)s)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    p.set_defaults(func=run)


def run(args) -> int:
    from simulator import threads
    threads.early()     # before anything loads torch: the thread policy the benchmarks measure
    from ledger.errors import InputError
    only = None
    if args.only:
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = sorted(set(only) - set(SECTIONS))
        if bad:
            raise InputError(f"unknown benchmark(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    from editledger.bench.run import run_all
    from editledger.bench.table import markdown
    out = Path(args.out)
    result = run_all(args.quick, only, out)
    print(markdown(result))
    print(f"\nwritten: {out / 'bench.json'}, {out / 'bench.md'}", file=sys.stderr)
    failed = [s["name"] for s in result["sections"] if s.get("error")]
    return 1 if failed else 0
