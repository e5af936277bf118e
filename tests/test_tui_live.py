"""Live: while another process writes steps to the same ledger, the open TUI shows them within a
few seconds (its own poll timer), and neither side sees "database is locked" — the TUI even
records a reset while the writer is busy."""
from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import textwrap
import time

from tui.app import EditLedgerApp
from tui.data import LedgerData
from ledger_fixtures import build_sample_ledger


def run_async(test):
    """Run an async test with asyncio.run (no async pytest plugin needed); pytest still sees the
    test's fixtures through functools.wraps."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


WRITER = textwrap.dedent("""
    import sys, time
    from ledger import Ledger
    from ledger.records import ProbeRecord
    db, run_id, parent, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with Ledger.open(db) as led:
        for i in range(n):
            v = led.record_step(run_id, step=100 + i, parent_version_id=parent, requests=[
                {"subject": f"Live subject {i}", "prompt": "{} is in", "target_new": " Mars", "target_old": " Earth"}],
                deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.01,
                probes=[ProbeRecord("perplexity", "ppl", 20.0 + i, count=8)])
            parent = v.id
            time.sleep(0.25)
    print("writer done")
""")


@run_async
async def test_live_replay_appears_and_nobody_sees_locked(tmp_path):
    db = str(tmp_path / "ledger.db")
    ids = build_sample_ledger(db, runs=2, steps=6, with_history=False)
    run2 = ids["runs"][1]
    data = LedgerData.open(db)
    app = EditLedgerApp(data, run2["id"], poll_interval=0.5)
    errors: list[str] = []
    n_new = 12
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        app.notify = lambda msg, **kw: errors.append(str(msg)) if kw.get("severity") == "error" else None
        table = app.screen.query_one("#main")
        before = len(table.rows)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, db, str(run2["id"]), str(run2["versions"][-1]),
                                   str(n_new)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the TUI writes too while the writer is busy: reset the *other* run's head
        reset_id = app.data.reset(ids["runs"][0]["id"], ids["runs"][0]["versions"][1])   # to step 2
        assert app.data.ledger.run(ids["runs"][0]["id"]).head_version_id == reset_id
        committed_at = shown_at = None      # when the first new step was in the ledger / on screen
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            await pilot.pause(0.1)
            if committed_at is None and app.data.ledger.last_committed_step(run2["id"]) >= 100:
                committed_at = time.monotonic()
            shown = len(table.rows) - before
            if shown > 0 and shown_at is None:
                shown_at = time.monotonic()
            if shown == n_new and writer.poll() is not None:
                break
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0 and "writer done" in out, err
        assert "locked" not in err
        assert len(table.rows) - before == n_new, "the TUI did not show every step the writer committed"
        assert table.cell_texts(len(table.rows) - 1)[4] == f"Live subject {n_new - 1}: Earth → Mars"
        lag = shown_at - committed_at
        assert lag < 5.0, f"the first new step was shown {lag:.1f} s after it was committed (poll every 0.5 s)"
        assert not errors
    data.close()
