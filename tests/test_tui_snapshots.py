"""Snapshot tests pinning the look of the main screens (pytest-textual-snapshot).

The SVGs live in tests/snapshots/test_tui_snapshots/; after an intended change of the look,
regenerate them with `python -m pytest tests/test_tui_snapshots.py --snapshot-update` and review
the SVGs. The ledger has fixed timestamps and the app shows no clock, so the output is stable.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension

import json

from ledger_fixtures import DEMO_DUMP, build_sample_ledger, load_run
from tui.app import EditLedgerApp
from tui.data import LedgerData


class _SnapshotsDir(SVGImageExtension):
    """Keep the SVGs under tests/snapshots/ (syrupy's default is tests/__snapshots__/)."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / test_location.basename)


@pytest.fixture
def snapshot(snapshot):
    # pytest-textual-snapshot calls snapshot.use_extension(SVGImageExtension); route it to ours
    ours = snapshot.use_extension(_SnapshotsDir)
    ours.use_extension = lambda *_a, **_k: ours
    return ours


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("snap") / "ledger.db"
    build_sample_ledger(str(path))
    return str(path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> str:
    """The measurements of a real `editledger demo` (tests/data/demo-run.json)."""
    path = tmp_path_factory.mktemp("snap-demo") / "ledger.db"
    load_run(str(path), json.loads(DEMO_DUMP.read_text(encoding="utf-8")))
    return str(path)


def app_for(db: str, run_id=None) -> EditLedgerApp:
    data = LedgerData.open(db, label="ledger.db")
    data.db_arg = "ledger.db"    # the export command shows this instead of the temp path
    return EditLedgerApp(data, run_id, poll_interval=0)


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_snapshot_runs(db, snap_compare):
    assert snap_compare(app_for(db), terminal_size=(100, 24), run_before=settle)


def test_snapshot_timeline(db, snap_compare):
    assert snap_compare(app_for(db, 1), terminal_size=(80, 24), run_before=settle)


def test_snapshot_timeline_wide(db, snap_compare):
    assert snap_compare(app_for(db, 1), terminal_size=(140, 36), run_before=settle)


def test_snapshot_detail_probes(db, snap_compare):
    async def open_detail(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#main").move_to(7)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("3")
        await pilot.pause()
    assert snap_compare(app_for(db, 1), terminal_size=(80, 24), run_before=open_detail)


def test_snapshot_diff(db, snap_compare):
    async def open_diff(pilot):
        await settle(pilot)
        t = pilot.app.screen.query_one("#main")
        t.move_to(2)
        await pilot.press("d")
        t.move_to(8)
        await pilot.press("d")
        await settle(pilot)
    assert snap_compare(app_for(db, 1), terminal_size=(80, 24), run_before=open_diff)


def test_snapshot_audit(db, snap_compare):
    assert snap_compare(app_for(db, 1), press=["a"], terminal_size=(80, 24), run_before=settle)


def test_snapshot_trajectories(db, snap_compare):
    async def plot(pilot):
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        pilot.app.screen.query_one("#metric-list").select(("perplexity", "ppl"))
        await settle(pilot)
    assert snap_compare(app_for(db, 1), terminal_size=(100, 30), run_before=plot)


def test_snapshot_confirm_revert(db, snap_compare):
    async def ask(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#main").move_to(4)
        await pilot.press("v")
        await pilot.pause()
    assert snap_compare(app_for(db, 1), terminal_size=(80, 24), run_before=ask)


def test_snapshot_demo_timeline(demo, snap_compare):
    """Harm at a glance on the real demo's measurements, at 160 columns: the failed step 8, the
    forgetting steps, retention, Δ on the same prompts, in colour."""
    assert snap_compare(app_for(demo, 1), terminal_size=(160, 24), run_before=settle)


def test_snapshot_detail_edit_outcome(db, snap_compare):
    async def open_detail(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#main").move_to(5)       # the failed edit
        await pilot.press("enter")
        await settle(pilot)
    assert snap_compare(app_for(db, 1), terminal_size=(100, 30), run_before=open_detail)


def test_snapshot_audit_evidence(db, snap_compare):
    async def open_audit(pilot):
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
    assert snap_compare(app_for(db, 1), terminal_size=(100, 30), run_before=open_audit)
