"""``editledger report RUN... [--format text|json|csv|markdown] [--plot out.png] [--recompute]``: the
survey's Table 3 / Table 4 layouts and the general-ability curves (Figure 4), from the ledger alone."""
from __future__ import annotations

import sys

from pathlib import Path

from editledger.commands.common import find_run, open_ledger, writable_target
from ledger.errors import InputError
from simulator import report


def register(sub) -> None:
    p = sub.add_parser("report", help="the survey's tables and general-ability curves for runs",
                       description="Print Table 3 (SR, RR, OH, MH, CS/CM) and Table 4 (OA, DN, OT, Succ, D, "
                                   "IR, FR) with one row per run and its protocol, and the general abilities "
                                   "against the number of edits. Reads the ledger only; no model is loaded.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run id or name (several: one row each)")
    p.add_argument("--sweep", metavar="NAME", default=None,
                   help="the cells of a sweep side by side (`editledger sweep`): one row per method, one curve "
                        "per method in Figure 4, each the mean over its cells")
    p.add_argument("--format", choices=("text", "json", "csv", "markdown"), default="text",
                   help="output format (default: text)")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="also write the general-ability curves (Figure 4) as a PNG")
    p.add_argument("--recompute", action="store_true",
                   help="recompute every metric from the raw probabilities kept in the ledger (today's "
                        "definitions, docs/metrics.md) instead of reading the stored values")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.plot:                    # checked first: the tables are not printed for nothing
        if not args.plot.lower().endswith(".png"):
            raise InputError(f"--plot writes a PNG: give a file name ending in .png, not {args.plot!r}")
        if not Path(args.plot).is_file():       # replacing an earlier plot is fine; a missing directory is not
            writable_target(args.plot, "--plot", directory=False)
    if bool(args.runs) == bool(args.sweep):
        raise InputError("name one or more RUNs, or a sweep with --sweep NAME (not both)")
    if args.sweep:
        return _sweep(args)
    led = open_ledger(args, create=False)
    try:
        ids = [find_run(led, r) for r in args.runs]
        reports = report.collect(led, ids, recompute=args.recompute)
    finally:
        led.close()
    sys.stdout.write(report.render(reports, args.format))
    if args.plot:
        panels = report.plot(reports, args.plot)
        print(f"wrote {args.plot} ({len(panels)} panels)", file=sys.stderr)
    return 0


def _sweep(args) -> int:
    from simulator.sweep import report as sweep_report   # the sweep package loads torch; a run's report must not
    with open_ledger(args, create=False) as led:
        sr = sweep_report.collect_sweep(led, args.sweep, recompute=args.recompute)
    sys.stdout.write(sweep_report.render(sr, args.format))
    if args.plot:
        if not sr.curves:
            raise InputError(f"sweep {args.sweep!r} has no finished cells to plot yet")
        panels = sweep_report.plot(sr, args.plot)
        print(f"wrote {args.plot} ({len(panels)} panels)", file=sys.stderr)
    return 0
