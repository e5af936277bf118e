"""The TUI on a ledger written by the real replay engine (tiny-gptj, ROME, 3 steps) and audited by
simulator.audit: every screen opens and shows what the simulator recorded, in its formats."""
from __future__ import annotations

import asyncio
import functools

import pytest

from tui.app import EditLedgerApp
from tui.data import LedgerData


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    from ledger import Ledger
    from simulator.audit import audit_run
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records

    db = str(tmp_path_factory.mktemp("replayed") / "ledger.db")
    stream = make_stream("sequential", builtin_records(seed=0), n=3, seed=0, batch_size=1)
    with Ledger.open(db) as led:
        s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
        opts = ReplayOptions(method="rome", stats_tokens=256, keyframe_every=3, progress=False, general="none")
        run_id = Replayer(s, opts).start(stream.steps, stream_name=stream.name, stream_digest=stream.digest,
                                         stream_kind=stream.kind)
        findings = [f.to_dict() for f in audit_run(led, run_id)]
        led.record_audit(run_id, findings)
    return db, run_id, stream, findings


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@run_async
async def test_every_screen_on_a_replayed_ledger(replayed):
    db, run_id, stream, findings = replayed
    app = EditLedgerApp(LedgerData.open(db), poll_interval=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        runs = app.screen.table
        assert runs.cell_texts(0)[:6] == ["run-1", "tiny-gptj", "rome", stream.name, "3", "done"]
        # how many edits took, from the real rewrite probes (the preferred value: the plain one)
        effs = [v for _s, v in app.data.ledger.trajectory(run_id, "rewrite", "efficacy_top1", against="none")]
        assert runs.cell_texts(0)[6] == f"{sum(e == 1.0 for e in effs)}/{len(effs)}" and len(effs) == 3
        await pilot.press("enter")
        await settle(pilot)
        tl = app.screen.table
        assert len(tl.rows) == 4                                  # base + 3 edits
        first = stream.steps[0].requests[0]
        edit_col = [c.key for c in tl.columns].index("edit")
        assert tl.cell_texts(1)[edit_col].startswith(f"{first.subject}: {first.target_old.strip()} → "
                                                     f"{first.target_new.strip()}")
        assert app.screen.changes_loaded and any(it.changes for it in tl.rows[1:])
        tl.move_to(2)
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert detail.view.deltas and detail.view.deltas[0].kind == "low_rank" and detail.view.deltas[0].rank == 1
        suites = {p.suite for p in detail.view.probes}
        assert {"rewrite", "paraphrase", "neighborhood"} <= suites
        nkl = next(p for p in detail.view.probes if p.metric == "nkl")
        assert nkl.vs_base is not None and not nkl.base_computed   # stored by the probes, shown as stored
        assert detail.view.step_probes                              # the step's probe items from the run config
        await pilot.press("3")
        await settle(pilot)
        assert "detail" in str(app.screen.query_one("#probe-detail").render())
        await pilot.press("escape", "t")
        await settle(pilot)
        assert app.screen.series and app.screen.series[0].steps == [1, 2, 3]
        await pilot.press("escape")
        tl = app.screen.table
        tl.move_to(1)
        await pilot.press("d")
        tl.move_to(3)
        await pilot.press("d")
        await settle(pilot)
        diff = app.screen.query_one("#tensor-table")
        # steps 2 and 3 only on B; the norm is computed from the stored factors
        assert diff.rows and all(t.only_b == [2, 3] for t in diff.rows) and diff.rows[0].norm > 0
        await pilot.press("escape", "a")
        await settle(pilot)
        assert len(app.screen.query_one("#main").rows) == len(findings)
