"""Concurrency: one writer per run (a lease with the writer's process id and a liveness check), step
numbers unique by constraint, and a replay with two readers on one SQLite ledger through a 40-step
run: no lock error, no half-written step seen."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from editledger.cli import main
from ledger import DeltaInput, Ledger, ProbeRecord
from ledger.errors import RunBusy
from ledger.history import reset, revert
from ledger.schema import utcnow
from test_crash_sigkill import CHILD, ROOT, _stream

REQ = {"subject": "S", "prompt": "{} is in", "target_new": " X"}


def _step(led, run_id, step, parent):
    return led.record_step(run_id, step=step, parent_version_id=parent, requests=[REQ],
                           deltas=[DeltaInput("w", "dense", {"delta": torch.full((2, 2), float(step))}, (2, 2))],
                           tensor_fingerprints={"w": str(step)}, diagnostics={}, wall_time_s=0.0)


@pytest.fixture
def two(tmp_path):
    """Two Ledger instances on one file: two would-be writers (as two processes would be)."""
    db = str(tmp_path / "c.db")
    a, b = Ledger.open(db), Ledger.open(db)
    bm = a.register_base_model("tiny", "t", "a" * 64, {})
    run = a.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s", stream_digest="b" * 64,
                      stream_kind="sequential", own=True)
    yield a, b, run
    a.close()
    b.close()


def test_second_writer_is_refused_while_the_owner_lives(two):
    a, b, run = two
    v1 = _step(a, run.id, 1, run.head_version_id)
    with pytest.raises(RunBusy, match=rf"run {run.id} is being written by process {os.getpid()}"):
        b.acquire_run(run.id)
    with pytest.raises(RunBusy):
        _step(b, run.id, 2, v1.id)              # a second replay's step
    with pytest.raises(RunBusy):
        reset(b, run.id, 0)                     # a reset during a live replay is refused, not undone later
    with pytest.raises(RunBusy):
        revert(b, run.id, 1)
    with pytest.raises(RunBusy):
        b.set_run_status(run.id, "done")
    assert [v.step for v in a.versions(run.id)] == [1]
    assert b.fsck(progress=False).orphans == [], "a refused step writes nothing"
    a.release_run(run.id)
    b.acquire_run(run.id)                       # given back: the next writer takes it
    _step(b, run.id, 2, v1.id)
    with pytest.raises(RunBusy):
        _step(a, run.id, 3, v1.id)


def test_a_dead_owner_is_taken_over(two, tmp_path):
    a, b, run = two
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with a._write() as s:                      # the owner is a process that has exited (SIGKILL, crash)
        s.execute(sa.text("UPDATE run SET owner_pid = :p, owner_started = NULL WHERE id = :r"),
                  {"p": gone.pid, "r": run.id})
    assert b.run_owner(run.id)[1] is False
    assert b.fsck(progress=False).dead_runs == [run.id]
    b.acquire_run(run.id)
    assert b.run_owner(run.id)[0].token == b._token
    # a live pid that is another process than the one recorded (its start time differs): a reused pid
    with a._write() as s:
        s.execute(sa.text("UPDATE run SET owner_pid = :p, owner_started = '1', owner_token = 'x' WHERE id = :r"),
                  {"p": os.getpid(), "r": run.id})
    a.acquire_run(run.id)
    # another host: alive while its lease is fresh, dead once it is older than LEASE_TTL_S
    from ledger import lease
    with a._write() as s:
        s.execute(sa.text("UPDATE run SET owner_host = 'elsewhere', owner_token = 'y', lease_renewed_at = :t "
                          "WHERE id = :r"), {"t": utcnow(), "r": run.id})
    with pytest.raises(RunBusy, match="on elsewhere"):
        b.acquire_run(run.id)
    with a._write() as s:
        s.execute(sa.text("UPDATE run SET lease_renewed_at = :t WHERE id = :r"),
                  {"t": utcnow() - timedelta(seconds=lease.LEASE_TTL_S + 1), "r": run.id})
    b.acquire_run(run.id)
    assert a.repair(a.fsck(progress=False), min_age=0).interrupted_runs == []   # b is alive: not touched


def test_fsck_repair_marks_a_dead_running_run_interrupted(two):
    a, b, run = two
    _step(a, run.id, 1, run.head_version_id)
    with a._write() as s:
        s.execute(sa.text("UPDATE run SET owner_pid = 999999999 WHERE id = :r"), {"r": run.id})
    rep = b.fsck(progress=False)
    assert rep.ok and rep.dead_runs == [run.id]
    assert b.repair(rep, min_age=0).interrupted_runs == [run.id]
    r = b.run(run.id)
    assert r.status == "interrupted" and "fsck --repair" in r.note and r.owner_token is None


def test_step_numbers_are_unique_by_database_constraint(two):
    a, _, run = two
    v1 = _step(a, run.id, 1, run.head_version_id)
    with pytest.raises(sa.exc.IntegrityError, match="(?i)unique"):
        with a.engine.begin() as c:    # past the API's own check: the database itself refuses
            c.execute(sa.text("INSERT INTO version (base_model_id, run_id, parent_id, step, kind, "
                              "tensor_fingerprints, n_requests, diagnostics, stats_used, wall_time_s, created_at) "
                              "SELECT base_model_id, run_id, id, step, 'edit', '{}', 0, '{}', '[]', 0, created_at "
                              "FROM version WHERE id = :v"), {"v": v1.id})


def test_second_replay_and_reset_refused_during_a_live_replay(tmp_path):
    """A real replay process, held inside its second edit for a while (not killed): `replay --resume`,
    `reset` and `revert` of its run are refused with exit code 5, and the run ends with 4 versions."""
    db = tmp_path / "live.db"
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(root=str(ROOT), tests=str(ROOT / "tests")))
    stream = _stream(tmp_path / "s.jsonl")
    env = {**os.environ, "EDITLEDGER_NO_MACHINE_STATS": "1", "OMP_NUM_THREADS": "1", "CRASH_PHASE": "edit",
           "CRASH_AT": "2", "CRASH_STALL": "600", "CRASH_MARK": str(tmp_path / "mark"),
           "CRASH_RELEASE": str(tmp_path / "release")}
    p = subprocess.Popen([sys.executable, str(child), "--db", str(db), "replay", str(stream), "--model", "tiny-gptj",
                          "--method", "toy-lookup", "--general", "none", "--device", "cpu"],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (tmp_path / "mark").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read()
        with Ledger.open(str(db)) as led:
            (r,) = led.runs()
            owner, alive = led.run_owner(r.id)
            assert alive and owner.pid == p.pid
        codes = [main(["--db", str(db), "replay", "--resume", str(r.id), "--device", "cpu"]),
                 main(["--db", str(db), "reset", str(r.id), "--to", "0"]),
                 main(["--db", str(db), "revert", str(r.id), "1"])]
        assert codes == [5, 5, 5]
    finally:
        (tmp_path / "release").write_text("")       # let the replay go on
        err = p.communicate(timeout=900)[1]
    assert p.returncode == 0, err[-2000:]
    with Ledger.open(str(db)) as led:
        vs = led.versions(r.id)
        assert [(v.step, v.kind) for v in vs] == [(s, "edit") for s in (1, 2, 3, 4)]
        assert led.run(r.id).status == "done" and led.run(r.id).owner_token is None


READER = textwrap.dedent(r'''
    import json, sys, time
    sys.path.insert(0, {root!r})
    import sqlalchemy as sa
    from ledger import Ledger
    db, role, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    stats = {{"reads": 0, "lock_errors": 0, "half_written": [], "max_seen": 0, "errors": []}}
    import os, io, contextlib
    from editledger.cli import main
    led = Ledger.open(db, create=False)
    seen_ok = set()
    while True:
        done = os.path.exists(stop)
        if not done and not led.runs():             # the replay has not created its run yet
            time.sleep(0.05)
            continue
        try:
            if role == "poll":                      # what the TUI does: runs, timeline, a step's detail
                for r in led.runs():
                    tl = led.timeline(r.id)
                    stats["max_seen"] = max(stats["max_seen"], len(tl))
                    for row in tl:
                        if row.version_id in seen_ok:
                            continue
                        v = led.version(row.version_id)
                        reqs, deltas = led.edit_requests(v.id), led.deltas(v.id)
                        probes = led.probes(v.id)
                        ok = (len(reqs) == v.n_requests == 1 and deltas and v.tensor_fingerprints and probes
                              and row.efficacy is not None)
                        for d in deltas:
                            led.read_artifact(d.artifact_digest)      # the file is there and verifies
                        if ok:
                            seen_ok.add(v.id)
                        else:
                            stats["half_written"].append(v.id)
            else:                                   # the CLI: log and a report
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    codes = [main(["--db", db, "log", "1"]), main(["--db", db, "report", "1", "--format", "json"])]
                if codes != [0, 0]:
                    stats["errors"].append(codes)
                stats["max_seen"] = max(stats["max_seen"], out.getvalue().count("[edit]"))
            stats["reads"] += 1
        except sa.exc.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                stats["lock_errors"] += 1
            else:
                stats["errors"].append(str(e)[:200])
        except Exception as e:
            stats["errors"].append(f"{{type(e).__name__}}: {{str(e)[:200]}}")
        if done:
            break
        time.sleep(0.05)
    print(json.dumps(stats))
''')


def test_replay_with_two_readers_40_steps_no_lock_error_no_half_step(tmp_path):
    from simulator.streams import make_stream, read_benchmark, save_stream
    s = make_stream("sequential", read_benchmark("builtin"), n=40, seed=1)
    for st in s.steps:
        st.probes = {"rewrite": st.probes["rewrite"]}
    stream = tmp_path / "s40.jsonl"
    save_stream(s, stream)
    assert len(s.steps) == 40
    db = tmp_path / "shared.db"
    Ledger.open(str(db)).close()
    reader = tmp_path / "reader.py"
    reader.write_text(READER.format(root=str(ROOT)))
    stop = tmp_path / "stop"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDITLEDGER_NO_MACHINE_STATS": "1"}
    readers = [subprocess.Popen([sys.executable, str(reader), str(db), role, str(stop)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for role in ("poll", "cli")]
    writer = subprocess.run([sys.executable, "-m", "editledger", "--db", str(db), "replay", str(stream),
                             "--model", "tiny-gptj", "--method", "rome", "--general", "none", "--stats-tokens", "128",
                             "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    stop.write_text("")
    results = [json.loads(r.communicate(timeout=600)[0].strip().splitlines()[-1]) for r in readers]
    assert writer.returncode == 0, writer.stderr[-2000:]
    with Ledger.open(str(db)) as led:
        (run,) = led.runs()
        assert run.status == "done" and run.steps == 40
    poll, cli = results
    print(f"\nwriter: 40 steps; poll reader {poll['reads']} reads, cli reader {cli['reads']} log+report pairs; "
          f"lock errors {poll['lock_errors'] + cli['lock_errors']}; half-written steps seen {len(poll['half_written'])}")
    for r in results:
        assert r["lock_errors"] == 0 and r["errors"] == [] and r["half_written"] == [], r
        assert r["reads"] > 0
    assert poll["max_seen"] == 40 and cli["max_seen"] == 40
