"""Checkout benchmark (not a test): ``editledger.bench.checkout_chain`` as a script, for any shape.

    python benchmarks/bench_checkout.py                          # Gemma 3 270M's down_proj (640 x 2048)
    python benchmarks/bench_checkout.py --shape 4096 16384 --rounds 1 --keyframes 0 8   # GPT-J's fc_out (simulation)
    python benchmarks/bench_checkout.py --json out.json          # also write the numbers

``measure`` and ``table`` live in the package so that ``editledger bench`` runs the same code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editledger.bench.checkout_chain import measure, table  # noqa: E402,F401  (table: also for tests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=2, type=int, default=[640, 2048], metavar=("ROWS", "COLS"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5, help="random jumps: each version this many times")
    ap.add_argument("--keyframes", nargs="+", type=int, default=[0, 8, 4], help="keyframe intervals (0: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the copy's and the kernel's)")
    ap.add_argument("--no-breakdown", action="store_true", help="only the public API (runs on older code too)")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    res = measure(tuple(a.shape), a.steps, a.keyframes, a.rounds, a.threads, breakdown=not a.no_breakdown,
                  progress=True)
    print(table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
