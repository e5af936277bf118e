"""Every metric of a run again, from the raw scores the ledger kept (no model).

Each version's probe state (its diagnostics under ``STATE_KEY``) holds the raw token log-probs of
every target it scored, the intermediate scores of its groups and what was due; the run's config
holds the stream and the base scores (``reference``). The item-based records are rebuilt with
today's suite builders (``records_from_state``), and general abilities are rescored from the
outputs kept in their records (``general.rescore``). So a metric whose definition changed can be
recomputed for an old run, and a stored number can be checked against its raw probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import InputError
from ledger.health import NAME as HEALTH
from ledger.records import ProbeRecord
from simulator.requests import Step

from .general import TASKS, rescore
from .general.tasks import FLUENCY, PERPLEXITY
from .runner import STATE_KEY, STATE_VERSION, records_from_state

# (suite, headline metric) -> the general task whose stored outputs it carries
_GENERAL = {(t.suite, t.metrics[0]): name for name, t in TASKS.items()}
_GENERAL.update({(PERPLEXITY, "ppl"): PERPLEXITY, (FLUENCY, "ngram_entropy"): FLUENCY})


@dataclass
class Recomputed:
    version_id: int
    step: int
    records: list[ProbeRecord]


def _general_base(reference: dict) -> dict[str, float]:
    """The base values of general metrics, rescored from the reference's outputs where it kept them."""
    out = dict(reference.get("base_metrics", {}))
    for name, r in (reference.get("general") or {}).items():
        if isinstance(r, dict) and "detail" in r and (name in TASKS or name in (PERPLEXITY, FLUENCY)):
            for m, v in rescore(name, r["detail"]).items():
                out[f"{r['suite']}.{m}"] = v
    return out


def _general_records(stored, base: dict[str, float], previous: dict[str, float]) -> tuple[list[ProbeRecord], dict]:
    recs, now = [], {}
    for row in stored:
        name = _GENERAL.get((row.suite, row.metric))
        if name is None or row.against != "none" or row.detail is None:
            continue
        for m, v in rescore(name, row.detail).items():
            if v != v:
                continue
            now[f"{row.suite}.{m}"] = v
            recs.append(ProbeRecord(row.suite, m, float(v), row.count, None, "none"))
            for against, ref in (("base", base), ("previous", previous)):
                rv = ref.get(f"{row.suite}.{m}")
                if rv is not None:
                    recs.append(ProbeRecord(row.suite, m, float(v) - rv, row.count, {"reference_value": rv}, against))
    return recs, now


def recompute_run(ledger, run_id: int) -> list[Recomputed]:
    """The records of every edit version of the run, recomputed; in (step, id) order."""
    run = ledger.run(run_id)
    cfg = run.config or {}
    steps = [Step.from_dict(d) for d in cfg.get("stream", [])]
    reference = cfg.get("reference") or {}
    if not steps or not reference:
        raise InputError(f"run {run_id} keeps no stream or base scores in its config: nothing to recompute from")
    versions = [v for v in ledger.versions(run_id) if v.kind == "edit"]
    states = {v.id: (v.diagnostics or {}).get(STATE_KEY) for v in versions}
    old = [v.step for v in versions if not states[v.id] or states[v.id].get("v") != STATE_VERSION]
    if old:
        raise InputError(f"run {run_id} was recorded without complete raw probe states (steps {old[:5]}"
                         f"{'…' if len(old) > 5 else ''}); recompute needs a run replayed by this version of editledger")
    base = _general_base(reference)
    latest: dict[int, dict[str, float]] = {}       # version -> general values as of that version
    out = []
    for v in versions:
        prev_state = states.get(v.parent_id)
        recs = records_from_state(steps, reference, prev_state, states[v.id])
        before = latest.get(v.parent_id, {})
        stored = ledger.probes(v.id)
        grecs, now = _general_records(stored, base, before)
        latest[v.id] = {**before, **now}
        # health telemetry is measured on the weights, not from probe scores: there is nothing to
        # recompute it from, so it is carried as recorded
        kept = [ProbeRecord(r.suite, r.metric, float(r.value), r.count, r.detail, r.against)
                for r in stored if r.suite == HEALTH]
        out.append(Recomputed(v.id, v.step, recs + grecs + kept))
    return out
