"""`editledger checkout RUN@STEP [--export DIR]`: materialise a version bit-exactly (verified)."""
from __future__ import annotations

import time

from .common import add_model_args, open_ledger, parse_run_at, writable_target


def register(sub) -> None:
    p = sub.add_parser("checkout", help="materialise the weights of a version and verify them",
                       description="Rebuild the weights of RUN@STEP (base + its chain of deltas), verify "
                                   "every touched tensor's fingerprint, optionally export a model directory.")
    p.add_argument("ref", metavar="RUN@STEP", help="a run id or name, optionally @STEP (default: the head)")
    p.add_argument("--export", metavar="DIR", help="write the weights as a Hugging Face model directory")
    p.add_argument("--model", default=None, help="the base model, if it is not where the run found it")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ledger.history import version_at
    from simulator.session import Session
    if args.export:                  # before the model loads: a bad place fails in a second, not a minute
        writable_target(args.export, "--export", directory=True)
    with open_ledger(args, create=False) as led:
        run_id, step = parse_run_at(led, args.ref)
        v = led.version(led.run(run_id).head_version_id) if step is None else version_at(led, run_id, step)
        s = Session.for_run(led, run_id, device=args.device, model=args.model)
        t = time.perf_counter()
        fps = s.checkout(v.id)
        dt = time.perf_counter() - t
        print(f"version {v.id} (run {run_id} step {v.step}, {v.kind}): {len(fps)} touched tensor(s) "
              f"verified in {dt:.2f} s")
        for name, fp in fps.items():
            print(f"  {name}  {fp[:16]}…")
        if args.export:
            out = s.export(v.id, args.export)
            print(f"exported to {out} (load it with transformers' from_pretrained)")
    return 0
