"""Crash safety: a harness SIGKILLs a real replay process at random moments and checks, after every
kill, that the ledger is consistent (fsck), that ``replay --resume`` finishes the run, and that the
finished run has exactly the fingerprints of an uninterrupted one.

The child is the real CLI (``editledger replay`` / ``replay --resume``) in its own process, with the
toy stateful method registered by importing ``tests/toy_lookup.py``. Only so that a kill can be aimed
*inside* a phase, the child wraps five functions: when it enters the phase the harness aims at, it
writes a marker and stays in the phase for ``STALL_S`` seconds (doing nothing else) before going on.
The harness waits for the marker, then kills with SIGKILL at a random moment of that window. The
phases: model load, statistics collection, an edit, the gap between a step's artifact write and its
commit, and the probes. Nothing in the child catches or softens the kill.

Scale: tiny-gptj, 4-step streams with one probe suite, ``--general none``: 21 kills for two methods
(ROME and the toy lookup). The numbers are printed at the end (``-s`` shows them).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
STALL_S = 1.5
SEED = int(os.environ.get("EDITLEDGER_CRASH_SEED", "17"))

CHILD = r'''
import os, sys, time
sys.path[:0] = [{root!r}, {tests!r}]                 # this checkout's code, not an installed copy
import toy_lookup                                   # registers the stateful toy method
import ledger.api, ledger.artifacts, simulator.session, simulator.stats.second_moment as sm
from simulator.probes import ProbeRunner
from simulator.editors.rome import ROMEEditor

target, want = os.environ["CRASH_PHASE"], int(os.environ["CRASH_AT"])
seen = {{}}
in_step = [False]

def enter(phase):
    seen[phase] = seen.get(phase, 0) + 1
    if phase == target and seen[phase] == want:
        with open(os.environ["CRASH_MARK"], "w") as f:
            f.write(phase)
        end = time.monotonic() + float(os.environ["CRASH_STALL"])   # the harness kills inside this window
        release = os.environ.get("CRASH_RELEASE", "")
        while time.monotonic() < end and not (release and os.path.exists(release)):
            time.sleep(0.02)

def wrap(owner, name, phase, before=False):
    real = getattr(owner, name)
    def f(*a, **k):
        if before:
            enter(phase)
            return real(*a, **k)
        out = real(*a, **k)
        if phase != "gap" or in_step[0]:
            enter(phase)
        return out
    setattr(owner, name, f)

wrap(simulator.session, "load_model", "load")
wrap(sm, "collect_second_moment", "stats")
wrap(ROMEEditor, "edit", "edit")
wrap(toy_lookup.ToyLookupEditor, "edit", "edit")
wrap(ProbeRunner, "measure", "probes")
wrap(ledger.artifacts.ArtifactStore, "write", "gap")    # after an artifact write, inside record_step only
real_record = ledger.api.Ledger.record_step
def record_step(*a, **k):
    in_step[0] = True
    try:
        return real_record(*a, **k)
    finally:
        in_step[0] = False
ledger.api.Ledger.record_step = record_step

from editledger.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _stream(path: Path) -> Path:
    """4 sequential edits on facts tiny-gptj knows, with only the rewrite probes (fast)."""
    from simulator.streams import make_stream, read_benchmark, save_stream
    s = make_stream("sequential", read_benchmark("builtin"), n=4, seed=3)
    for st in s.steps:
        st.probes = {"rewrite": st.probes["rewrite"]}
    s.name = "crash"
    save_stream(s, path)
    return path


class Harness:
    def __init__(self, tmp: Path, method: str):
        self.tmp, self.method = tmp, method
        self.child = tmp / "child.py"
        self.child.write_text(CHILD.format(root=str(ROOT), tests=str(ROOT / "tests")))
        self.stream = _stream(tmp / "s.jsonl")
        self.env = {**os.environ, "EDITLEDGER_NO_MACHINE_STATS": "1", "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": "1", "CRASH_STALL": str(STALL_S), "CRASH_MARK": str(tmp / "mark")}
        self.kills, self.log = 0, []

    def args(self, db: Path, resume: int | None) -> list[str]:
        common = ["--device", "cpu"]
        if resume is not None:
            return ["--db", str(db), "replay", "--resume", str(resume), *common]
        return ["--db", str(db), "replay", str(self.stream), "--model", "tiny-gptj", "--method", self.method,
                "--general", "none", "--stats-tokens", "128", "--keyframe-every", "2", "--seed", "5", *common]

    def run(self, db: Path, resume: int | None, phase: str = "none", at: int = 1, rng=None) -> str:
        """Run the child; if ``phase`` is reached, SIGKILL it at a random moment inside it."""
        mark = self.tmp / "mark"
        mark.unlink(missing_ok=True)
        env = {**self.env, "CRASH_PHASE": phase, "CRASH_AT": str(at)}
        p = subprocess.Popen([sys.executable, str(self.child), *self.args(db, resume)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while p.poll() is None and not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if p.poll() is None and mark.exists():
            time.sleep(rng.uniform(0.0, STALL_S * 0.8))
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            p.stderr.close()
            self.kills += 1
            self.log.append(phase)
            return "killed"
        err = p.communicate(timeout=600)[1]
        assert p.returncode == 0, f"child exited {p.returncode} without being killed:\n{err[-3000:]}"
        assert "Traceback" not in err, err[-3000:]
        return "finished"


def _fingerprints(db: Path, run_id: int) -> dict[int, dict]:
    with Ledger.open(str(db)) as led:
        return {v.step: v.tensor_fingerprints for v in led.versions(run_id)}


def _only_run(db: Path) -> int | None:
    if not db.exists():
        return None
    with Ledger.open(str(db)) as led:
        runs = led.runs()
    assert len(runs) <= 1, "a killed start must not leave a second run behind"
    return runs[0].id if runs else None


def _consistent(db: Path) -> None:
    if not db.exists():
        return
    with Ledger.open(str(db)) as led:
        rep = led.fsck(progress=False)
        assert rep.ok, f"fsck after a kill: {rep}"
        for r in led.runs():   # a killed writer's run is listed as dead, never as "being written"
            assert r.status != "running" or r.id in rep.dead_runs


# (phase, occurrence) for kills of fresh starts (no run yet, or a run with no step) and then resumes.
# Occurrence 2 of a per-step phase lets one step commit first, so the run advances between kills.
PLANS = {
    "rome": ([("load", 1), ("stats", 1), ("edit", 1)],
             [("gap", 1), ("probes", 2), ("load", 1), ("edit", 1), ("gap", 2), ("probes", 1), ("edit", 1),
              ("gap", 1)]),
    "toy-lookup": ([("load", 1), ("edit", 1)],
                   [("gap", 1), ("probes", 2), ("load", 1), ("edit", 1), ("gap", 2), ("probes", 1), ("edit", 1),
                    ("gap", 1)]),
}
RESULTS: dict[str, dict] = {}


@pytest.mark.parametrize("method", sorted(PLANS))
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path, method):
    rng = random.Random(f"{SEED}-{method}")
    h = Harness(tmp_path, method)
    ref_db = tmp_path / "reference.db"
    assert h.run(ref_db, None) == "finished"
    ref_run = _only_run(ref_db)
    reference = _fingerprints(ref_db, ref_run)
    assert sorted(reference) == [1, 2, 3, 4] and all(reference.values())

    db = tmp_path / "crashed.db"
    starts, resumes = PLANS[method]
    resumes = list(resumes)
    rng.shuffle(resumes)                   # a different order of moments per seed
    for phase, at in starts:
        assert h.run(db, None, phase, at, rng) == "killed", f"the start was not killed in {phase}"
        _consistent(db)
    # a killed start may leave no run (killed before the run row) or one: start again until one exists
    while (run_id := _only_run(db)) is None:
        h.run(db, None, "edit", 1, rng)
        _consistent(db)
    for phase, at in resumes:
        outcome = h.run(db, run_id, phase, at, rng)
        _consistent(db)
        if outcome == "finished":
            break
    if _fingerprints(db, run_id) and Ledger.open(str(db)).run(run_id).status != "done":
        assert h.run(db, run_id) == "finished"
    with Ledger.open(str(db)) as led:
        run = led.run(run_id)
        assert run.status == "done" and run.owner_token is None
        assert led.fsck(progress=False).ok
    got = _fingerprints(db, run_id)
    assert got == reference, "a killed and resumed run must end with the uninterrupted run's fingerprints"
    RESULTS[method] = {"kills": h.kills, "phases": sorted(set(h.log)), "resumed_to_done": True}
    assert h.kills >= len(starts) + len(resumes) - 2
    need = {"load", "edit", "gap", "probes"} | ({"stats"} if method == "rome" else set())
    assert need <= set(h.log), f"phases never hit: {need - set(h.log)}"
    print(f"\n{method}: {h.kills} SIGKILLs survived ({', '.join(h.log)}); fsck consistent after each; "
          f"resumed to done; fingerprints of steps 1-4 equal the uninterrupted run's")
