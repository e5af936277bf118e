"""`editledger probe RUN@STEP`: measure a version recorded without measurements (reset, revert)."""
from __future__ import annotations

import sys

from .common import add_model_args, open_ledger, parse_run_at


def register(sub) -> None:
    p = sub.add_parser("probe", help="measure a version recorded without measurements (a reset or revert)",
                       description="Check out RUN@STEP (verified) and run the run's probes on it, with the "
                                   "edits in effect at that version, then record the measurements with it. "
                                   "A reset or a revert is recorded without measurements; this fills them "
                                   "(the TUI's re-probe runs it).")
    p.add_argument("ref", metavar="RUN@STEP", help="a run id or name, optionally @STEP (default: the head)")
    p.add_argument("--model", default=None, help="the base model, if it is not where the run found it")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from simulator.reprobe import reprobe
    from simulator.session import Session
    with open_ledger(args, create=False) as led:
        run_id, step = parse_run_at(led, args.ref)
        if step is None:
            step = led.version(led.run(run_id).head_version_id).step
        s = Session.for_run(led, run_id, device=args.device, model=args.model)
        vid, n = reprobe(s, run_id, step)
        print(f"v{vid} (run {run_id} step {step}): {n} measurement(s) recorded", file=sys.stderr)
    return 0
