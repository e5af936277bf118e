"""`editledger audit RUN [--verify]`: name the edits that caused a degradation, with evidence."""
from __future__ import annotations

import json

from .common import add_model_args, find_run, open_ledger


def register(sub) -> None:
    p = sub.add_parser("audit", help="name the edits that caused a degradation, with evidence",
                       description="Read a run's probes from the ledger and name the steps behind forgetting, "
                                   "declines of cumulative metrics and locality leaks. --verify loads the model "
                                   "and re-measures the head without each suspect step's delta.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--verify", action="store_true", help="counterfactual check with the model (slower)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--model", default=None, help="the base model, if it is not where the run found it")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from simulator.audit import audit_run, verify
    with open_ledger(args, create=False) as led:
        run_id = find_run(led, args.run)
        findings = audit_run(led, run_id)
        if args.verify and findings:
            from simulator.session import Session
            s = Session.for_run(led, run_id, device=args.device, model=args.model)
            findings = verify(s, run_id, findings)
        led.record_audit(run_id, [f.to_dict() for f in findings])
        if args.json:
            print(json.dumps([f.to_dict() for f in findings], indent=2))
            return 0
        if not findings:
            print(f"run {run_id}: no degradation found in its recorded probes")
            return 0
        print(f"run {run_id}: {len(findings)} finding(s)")
        for f in findings:
            print(f"  [{f.metric}] score {f.score:.2f}  {f.summary}")
            cf = f.evidence.get("counterfactual")
            if cf:
                print(f"      without this step: {cf['metric']} {cf['head']:.4g} → {cf['head_without_step']:.4g}")
            for fg in f.evidence.get("forgotten", [])[:5]:
                print(f"      forgot step {fg['edit_step']}: {fg['edit']}")
        print(f"browse them: editledger tui {run_id}")
    return 0
