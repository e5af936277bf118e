"""History operations that need no model: reset, revert and the version of a step. They are
pointer moves and new versions in the ledger (the TUI and the CLI call them without torch);
materialising the weights and method state of the resulting versions is the simulator session's
job when somebody asks for them.

* reset RUN --to S   a "reset" marker version whose parent is the version of step S; the head moves
                     to it. Later versions stay in the history.
* revert RUN S       a "revert" version whose parent is the version before step S and which carries
                     the deltas of every later step in the head's lineage, in order (the same
                     artifacts, not copies): the weights and method state without step S's.
* branch RUN@S       a new run whose first version is a "branch" marker on the version of step S
                     (``branch`` writes the marker; replaying the new steps is the simulator's).

A revert's tensor fingerprints cannot be known without the model, so it is recorded unsealed
(empty fingerprints); the first checkout computes and seals them, and every later checkout
verifies against them.
"""
from __future__ import annotations

from ledger.errors import InputError
from ledger.records import DeltaInput


def version_at(ledger, run_id: int, step: int):
    """The version of ``run_id`` at ``step`` (step numbers are unique within a run; step 0 is where
    the run started: the base or the version it branched from)."""
    run = ledger.run(run_id)
    if step == 0:
        return ledger.version(run.start_version_id)
    for v in ledger.versions(run_id):
        if v.step == step:
            return v
    known = sorted(v.step for v in ledger.versions(run_id))
    raise InputError(f"run {run_id} has no step {step} (its steps: {_ranges(known) or 'none'}); "
                     f"see `editledger log {run_id}`")


def _next_step(ledger, run_id: int) -> int:
    return max([v.step for v in ledger.versions(run_id)] + [0]) + 1


def reset(ledger, run_id: int, to_step: int, note: str | None = None):
    target = version_at(ledger, run_id, to_step)
    return ledger.add_marker(run_id, kind="reset", parent_version_id=target.id,
                             step=_next_step(ledger, run_id),
                             tensor_fingerprints=dict(target.tensor_fingerprints or {}),
                             note=note or f"reset to step {to_step}")


def branch(ledger, run_id: int, origin_version_id: int, first_step: int):
    """Mark where a new run (``run_id``, begun at ``origin_version_id``) leaves its origin: a "branch"
    version on the origin with the origin's fingerprints, at step ``first_step - 1``; the head moves
    to it. The new run's steps are then recorded under it."""
    origin = ledger.version(origin_version_id)
    where = f"run {origin.run_id} step {origin.step}" if origin.run_id is not None else "the base model"
    return ledger.add_marker(run_id, kind="branch", parent_version_id=origin.id, step=first_step - 1,
                             tensor_fingerprints=dict(origin.tensor_fingerprints or {}),
                             note=f"branch from {where}")


def revert(ledger, run_id: int, step: int, note: str | None = None):
    run = ledger.run(run_id)
    lineage = ledger.lineage(run.head_version_id)
    target = version_at(ledger, run_id, step)
    if target.kind != "edit":
        raise InputError(f"step {step} of run {run_id} is a {target.kind}, not an edit: only edits can be reverted")
    ids = [v.id for v in lineage]
    if target.id not in ids:
        raise InputError(f"step {step} of run {run_id} is not in the history of its head (it was reset or "
                         f"reverted away); see `editledger log {run_id}`")
    j = ids.index(target.id)
    parent = lineage[j - 1]
    carried = []
    for v in lineage[j + 1:]:
        for row in ledger.deltas(v.id):
            carried.append(DeltaInput(tensor=row.tensor, kind=row.kind, tensors={},
                                      shape=tuple(row.shape), rank=row.rank, norm=row.norm,
                                      artifact=row.artifact_digest))
    later = [v.step for v in lineage[j + 1:] if v.kind in ("edit", "revert")]
    return ledger.record_step(
        run_id, step=_next_step(ledger, run_id), parent_version_id=parent.id, kind="revert",
        requests=[], deltas=carried, tensor_fingerprints={}, diagnostics={"reverted_step": step,
                                                                        "reapplied_steps": later},
        wall_time_s=0.0, note=note or f"revert step {step}"
        + (f" (re-applies steps {_ranges(later)})" if later else ""))


def _ranges(nums: list[int]) -> str:
    """[1,2,3,5] -> '1-3, 5'"""
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)
