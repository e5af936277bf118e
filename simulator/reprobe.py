"""Measure a version that was recorded without measurements (a reset, a revert, a branch marker):
`editledger probe RUN@STEP`, which the TUI's "re-probe" runs.

Which of the run's stream steps are in effect at a version follows from its lineage: an edit
contributes its own step; a revert contributes what the versions whose deltas it re-applies
contributed (``diagnostics["reapplied_steps"]``, recursively); markers contribute nothing (their
weights are their parent's). The version is then checked out (verified, method state included)
and scored with ``ProbeRunner.measure(applied=...)`` as the head of its stream (``final``), so
every suite and every complete group is measured, against the base (the run's reference) and
against its parent's recorded probe state.
"""
from __future__ import annotations

from ledger.errors import InputError
from ledger.history import version_at
from simulator.probes import STATE_KEY, ProbeRunner, general_sets
from simulator.replay import ReplayOptions
from simulator.requests import Step


def steps_in_effect(ledger, run_id: int, version_id: int) -> list[int]:
    """The run's step numbers whose edits the weights and method state of ``version_id`` contain."""
    cache: dict[int, set[int]] = {}

    def contribution(v) -> set[int]:
        if v.id not in cache:
            if v.kind == "edit":
                cache[v.id] = {v.step} if v.run_id == run_id else set()
            elif v.kind == "revert":
                out: set[int] = set()
                for s in (v.diagnostics or {}).get("reapplied_steps", []):
                    out |= contribution(version_at(ledger, v.run_id, int(s)))
                cache[v.id] = out if v.run_id == run_id else set()
            else:
                cache[v.id] = set()
        return cache[v.id]

    applied: set[int] = set()
    for v in ledger.lineage(version_id):
        applied |= contribution(v)
    return sorted(applied)


def reprobe(session, run_id: int, step: int, *, progress: bool = True) -> tuple[int, int]:
    """Measure the version at ``run_id``'s ``step`` and record the measurements with it.
    Returns (version id, number of records)."""
    led = session.ledger
    v = version_at(led, run_id, step)
    if led.probes(v.id):
        raise InputError(f"run {run_id} step {step} (v{v.id}) is already measured: its values are in the "
                         f"ledger (`editledger report {run_id}`, or the TUI's detail screen)")
    cfg = led.run(run_id).config or {}
    steps = [Step.from_dict(d) for d in cfg.get("stream", [])]
    first = int(cfg.get("first_step", 1))
    if not steps:
        raise InputError(f"run {run_id} records no stream: nothing to measure v{v.id} on")
    applied = [s - first + 1 for s in steps_in_effect(led, run_id, v.id) if 1 <= s - first + 1 <= len(steps)]
    if not applied:
        raise InputError(f"run {run_id} step {step} (v{v.id}) holds none of the run's edits: it is the model "
                         f"the run started from, whose values are the run's reference (`editledger report {run_id}`)")
    opts = ReplayOptions.from_config(cfg.get("options", {}))
    runner = ProbeRunner(session.view, progress=progress,
                         general=general_sets(opts.general, opts.general_n, opts.general_seed))
    session.checkout(v.id)
    parent = led.version(v.parent_id) if v.parent_id else None
    previous = (parent.diagnostics or {}).get(STATE_KEY) if parent is not None else None
    records, _state = runner.measure(step_index=max(applied), steps=steps, reference=cfg.get("reference", {}),
                                     previous=previous, final=True, applied=applied)
    led.record_probes(v.id, records)
    return v.id, len(records)
