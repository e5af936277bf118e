"""`editledger audit RUN [--verify] [--when COND] [--bisect COND]`: which edits did this, and how sure
are we. Without the model: the ledger's evidence and the health telemetry, ranked. With it: the
suspects re-measured without their step, and the causal search (bisection, group testing, pairs)."""
from __future__ import annotations

import json

from tqdm import tqdm

from ledger.errors import InputError
from simulator.audit import audit_run, head_edits, independent, rank_suspects, verify
from simulator.audit_search import (Oracle, bisect_first, bisection_bound, choose_target, investigate, measurer)

from .common import add_model_args, find_run, open_ledger


def register(sub) -> None:
    p = sub.add_parser("audit", help="name the edits that caused a degradation, with evidence",
                       description="Read a run's probes and health telemetry from the ledger and rank the steps "
                                   "behind declines of general abilities, with forgetting and locality leaks "
                                   "beside them. --verify loads the model: each suspect is re-measured without "
                                   "its step, and a search names the steps (or pairs of steps) whose removal "
                                   "undoes the degradation and which do it on their own.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--verify", action="store_true",
                   help="with the model: counterfactual checks and the causal search (bisection, group testing, pairs)")
    p.add_argument("--when", metavar="COND", default=None,
                   help="what counts as degraded, in the --stop-when grammar (e.g. 'perplexity.ppl>1.2x', "
                        "'downstream.sentiment_acc<0.8x'); default: the most degraded general ability")
    p.add_argument("--bisect", metavar="COND", default=None,
                   help="only bisect the head's lineage for the first version meeting COND (verified checkouts)")
    p.add_argument("--tolerance", type=float, default=0.2,
                   help="without --when, a general ability is degraded beyond this fraction of its base value (0.2)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="a step or pair is a culprit when removing it undoes, and keeping only it does, at least "
                        "this share of the degradation (0.5)")
    p.add_argument("--max-evals", type=int, default=None, help="cap on the group-testing measurements")
    p.add_argument("--json", action="store_true", help="print the findings and the search as JSON")
    p.add_argument("--model", default=None, help="the base model, if it is not where the run found it")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if not 0.0 < args.threshold <= 1.0:
        raise InputError(f"--threshold {args.threshold}: give a share between 0 and 1, e.g. 0.5")
    if args.tolerance <= 0.0:
        raise InputError(f"--tolerance {args.tolerance}: give a positive fraction, e.g. 0.2")
    with open_ledger(args, create=False) as led:
        run_id = find_run(led, args.run)
        say = (lambda _t: None) if args.json else print
        if (args.verify or args.bisect) and independent(led, run_id):
            raise InputError(f"run {run_id} was replayed with the independent protocol: every case starts from the "
                             "base model, so no step's damage carries into another and there is no head to search. "
                             "Run the audit without --verify/--bisect for its leaks and telemetry outliers, or audit "
                             "a sequential run of the same stream")
        if args.bisect:
            return _bisect_only(args, led, run_id, say)
        findings = audit_run(led, run_id, tolerance=args.tolerance)
        suspects = rank_suspects(led, findings)
        if not args.json:
            _print_ledger(run_id, findings, suspects, args.threshold)
        inv = None
        if args.verify:
            from simulator.session import Session  # torch and the model: only --verify and --bisect load them
            s = Session.for_run(led, run_id, device=args.device, model=args.model)
            if findings:
                order = {x.version_id: i for i, x in enumerate(suspects)}
                findings.sort(key=lambda f: order.get(f.version_id, len(order)))
                n = min(8, len({f.version_id for f in findings}))
                say(f"\n  re-measuring the head and the head without each of {n} suspect step(s): "
                    f"{n + 1} models, each on the metrics its findings name")
                findings = verify(s, run_id, findings, limit=8, progress=not args.json)
                if not args.json:
                    _print_counterfactuals(findings)
            say(f"\nrun {run_id}: causal search (with the model)")
            inv = investigate(s, run_id, head_edits(led, run_id), when=args.when, tolerance=args.tolerance,
                              suspects=[x.version_id for x in suspects], rho=args.threshold,
                              max_evals=args.max_evals, say=(lambda t: say("  " + t)), progress=not args.json)
        rows = _records(findings, inv)
        led.record_audit(run_id, rows)
        if args.json:
            print(json.dumps({"findings": [f.to_dict() for f in findings],
                              "suspects": [vars(x) for x in suspects],
                              "investigation": None if inv is None else inv.to_dict()}, indent=2, default=str))
            return 0
        if inv is not None:
            _print_search(inv)
        print(f"run {run_id}: {len(rows)} finding(s) recorded; browse them: editledger tui {run_id}")
    return 0


def _records(findings, inv) -> list[dict]:
    """What the ledger keeps of this audit: every finding, each culprit the search named (one row per
    culprit, on its first step), and the verdict (a run-level row)."""
    rows = [f.to_dict() for f in findings]
    if inv is not None and inv.target is not None:
        for e in inv.culprits():
            steps = " and ".join(f"step {s}" for s in e.steps)
            rows.append({"version_id": e.version_ids[0], "metric": f"cause.{inv.target.name}", "score": e.score,
                         "summary": f"{steps} ({e.kind}): without {'them' if len(e.steps) > 1 else 'it'} "
                                    f"{100 * e.recovery:.0f}% of the {inv.target.name} damage is undone; "
                                    f"{'only them' if len(e.steps) > 1 else 'alone'} {100 * e.reproduction:.0f}%",
                         "evidence": {"steps": list(e.steps), "version_ids": list(e.version_ids), "kind": e.kind,
                                      "recovery": e.recovery, "reproduction": e.reproduction,
                                      "condition": inv.target.condition.text,
                                      "parts": {str(k): v for k, v in e.parts.items()}}})
    if inv is not None:
        rows.append({"version_id": None, "metric": "audit.verdict", "score": 0.0, "summary": inv.verdict,
                     "evidence": inv.to_dict()})
    return rows


def _print_ledger(run_id, findings, suspects, rho) -> None:
    print(f"run {run_id}: ledger evidence (no model)")
    above = [x for x in suspects if x.score >= rho]
    if suspects:
        print(f"  suspects (declines of general abilities, health telemetry), most suspicious first; "
              f"{len(above)} at or above {rho:.2f}:")
        for i, x in enumerate(suspects[:10], 1):
            print(f"  {i:2d}. step {x.step} ({x.label})  score {x.score:.2f}")
            for r in x.reasons:
                print(f"        {r}")
    else:
        print("  no step accounts for a degraded general ability, and the telemetry flags none")
    other = [f for f in findings if f.metric != "health.outlier"
             and not (f.evidence.get("degraded") and f.evidence.get("window", [f.step])[0] == f.step)]
    if other:
        print(f"  other findings ({len(other)}):")
        for f in other[:15]:
            print(f"    [{f.metric}] score {f.score:.2f}  {f.summary}")
            for fg in f.evidence.get("forgotten", [])[:3]:
                print(f"        forgot step {fg['edit_step']}: {fg['edit']}")


def _print_counterfactuals(findings) -> None:
    cfs = [f for f in findings if f.evidence.get("counterfactual")]
    if cfs:
        print("  re-measured on the head without each suspect's step:")
        for f in cfs:
            cf = f.evidence["counterfactual"]
            print(f"    step {f.step} [{f.metric}]: {cf['metric']} {cf['head']:.4g} at the head → "
                  f"{cf['head_without_step']:.4g} without it")


def _print_search(inv) -> None:
    if inv.target is None and inv.considered:
        print("  general abilities recorded (base → head; degraded when the condition holds):")
        for c in inv.considered:
            why = f" ({c['skipped']})" if c.get("skipped") else ""
            print(f"    {c['metric']}: {c['base']:.4g} → {c['head']:.4g}; {c['condition']} "
                  f"{'holds' if c['degraded'] else 'does not hold'}{why}")
    if inv.first_crossing:
        fc = inv.first_crossing
        how = (f"{fc['checkouts']} verified checkout(s)" if fc["checkouts"] else "from the recorded values")
        print(f"  first version meeting {inv.target.condition.text}: step {fc['step']} ({how}; bound {fc['bound']})")
    rows = inv.ranking()
    if rows:
        print("  steps measured on their own (r: removing it undoes, q: alone it does, s: applied it did; "
              "score min(q, max(r, s))):")
        for d in rows:
            print(f"    step {d['step']:>4}  r {100 * d['recovery']:4.0f}%  q {100 * d['reproduction']:4.0f}%  "
                  f"s {100 * d['share']:4.0f}%  score {d['score']:.2f}")
    for row in inv.pairs_tested:
        q = "" if row["reproduction"] is None else f", only them {100 * row['reproduction']:.0f}%"
        print(f"    pair steps {row['steps'][0]} + {row['steps'][1]}: without them {100 * row['recovery']:.0f}% undone{q}")
    print(f"  verdict: {inv.verdict}")
    c = inv.cost
    if c.evaluations:
        print(f"  cost: {c.evaluations} measurements ({c.checkouts} verified checkouts, {c.materialisations} "
              f"models without some steps) in {c.seconds:.1f} s")


def _bisect_only(args, led, run_id, say) -> int:
    from simulator.session import Session  # torch and the model: only --verify and --bisect load them
    items = head_edits(led, run_id)
    target, _ = choose_target(led, run_id, items, args.bisect)
    s = Session.for_run(led, run_id, device=args.device, model=args.model)
    oracle = Oracle(s, run_id, target, measurer(s, run_id, target.condition.suite, target.condition.metric), items)
    if target.base_value is None and target.condition.relative:
        say(f"{target.condition.text} is relative to the base value, which the run did not record: "
            "measuring the base first (one more measurement)")
        target.base_value = oracle.base()
    bound = bisection_bound(len(items))
    say(f"bisection over {len(items)} versions for the first meeting {target.condition.text}: "
        f"at most {bound} verified checkouts")
    try:
        with tqdm(total=bound, desc="bisection", disable=args.json) as oracle.bar:
            idx = bisect_first(lambda i: oracle.at(items[i].id), len(items), target.degraded)
    finally:
        oracle.bar = None
        oracle.restore()
    result = {"condition": target.condition.text, "checkouts": oracle.cost.checkouts, "bound": bound,
              "first": None if idx is None else {"step": items[idx].step, "version_id": items[idx].id,
                                                 "value": oracle.at(items[idx].id)}}
    if args.json:
        print(json.dumps(result, indent=2))
    elif idx is None:
        print(f"run {run_id}: the head does not meet {target.condition.text}; nothing to bisect")
    else:
        print(f"run {run_id}: first version meeting {target.condition.text}: step {items[idx].step} "
              f"(version {items[idx].id}, {target.name} = {result['first']['value']:.4g}); "
              f"{oracle.cost.checkouts} verified checkouts")
    return 0
