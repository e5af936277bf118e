"""Commands run from inside the TUI as CLI subprocesses (the audit needs the simulator, which the
TUI never imports): their output streams into a dialog, a progress bar's carriage returns update
one line, and the screens below show what the command recorded when it ends."""
from __future__ import annotations

import asyncio
import sys
import time

import pytest

from ledger import Ledger, history
from ledger_fixtures import build_sample_ledger
from tui.screens.job import JobScreen, split_output
from tui_pilot import column, make_app, run_async, settle, table, text_of

PROGRESS = ("import sys, time\n"
            "print('loading', flush=True)\n"
            "for i in range(1, 4):\n"
            "    sys.stderr.write(f'\\rsteps: {i}/3'); sys.stderr.flush(); time.sleep(0.05)\n"
            "print('\\ndone: 3 findings', flush=True)\n")


@pytest.fixture
def ledger(tmp_path):
    db = str(tmp_path / "ledger.db")
    ids = build_sample_ledger(db)
    with Ledger.open(db) as led:                  # no audit yet; run 1's head back at step 12
        led.record_audit(ids["runs"][0]["id"], [])
        history.reset(led, ids["runs"][0]["id"], 12)
    return db, ids


def test_split_output_by_hand():
    pieces, rest = split_output("a\rb\r\nc\nd")
    assert pieces == [("a", "\r"), ("b", "\r"), ("", "\n"), ("c", "\n")] and rest == "d"


async def wait_for(pilot, screen: JobScreen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while screen.returncode is None and time.monotonic() - t0 < timeout:
        await pilot.pause(0.1)
    assert screen.returncode is not None, "the command did not end"
    await settle(pilot)


@run_async
async def test_output_and_progress_stream_into_the_dialog(ledger):
    db, _ = ledger
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        job = JobScreen("test", [sys.executable, "-c", PROGRESS])
        await app.push_screen(job)
        await wait_for(pilot, job)
        assert job.returncode == 0
        assert job.lines == ["loading", "steps: 3/3", "done: 3 findings"]   # the bar's last state ends with the newline
        assert job.progress == "steps: 3/3"
        assert text_of(app, "#job-status").startswith("done")
        await pilot.press("escape")
        assert not isinstance(app.screen, JobScreen)


@run_async
async def test_a_running_command_stops_with_k(ledger):
    db, _ = ledger
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        job = JobScreen("sleep", [sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"])
        await app.push_screen(job)
        while not job.running:
            await asyncio.sleep(0.05)
        await pilot.press("escape")                               # refused while it runs
        assert isinstance(app.screen, JobScreen)
        await pilot.press("k")
        await wait_for(pilot, job, 30)
        assert job.returncode < 0 and "stopped" in text_of(app, "#job-status")


@run_async
async def test_run_the_audit_from_the_timeline(ledger):
    """A on the timeline runs `editledger audit RUN` and the flags appear when it ends."""
    db, ids = ledger
    run1 = ids["runs"][0]["id"]
    app = make_app(db, run1)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        assert not any(it.findings for it in table(app).rows)
        await pilot.press("A")
        await settle(pilot)
        job = app.screen
        assert isinstance(job, JobScreen) and job.argv[1:] == ["-m", "editledger", "--db", db, "audit", str(run1)]
        await wait_for(pilot, job)
        assert job.returncode == 0, "\n".join(job.lines)
        assert any("finding(s)" in line for line in job.lines), job.lines
        await pilot.press("escape")
        await settle(pilot)
        assert app.data.ledger.audit_findings(run1)
        flags = [table(app).cell_texts(i)[column(app, "flags")] for i in range(len(table(app).rows))]
        assert any("⚑" in f for f in flags)


@run_async
async def test_re_probe_says_when_the_cli_lacks_the_command(ledger):
    db, ids = ledger
    run1 = ids["runs"][0]["id"]
    app = make_app(db, run1)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        table(app).move_to(13)                                    # the revert
        await pilot.press("p")
        await settle(pilot)
        job = app.screen
        assert job.argv[-2:] == ["probe", f"{run1}@13"]
        await wait_for(pilot, job)
        assert job.returncode == 2
        assert "no `probe RUN@STEP` command yet" in text_of(app, "#job-status")
