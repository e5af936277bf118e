"""Regenerate the TUI screenshots (SVG, Textual's own screenshot) on a sample ledger:

    python docs/screenshots/make_screenshots.py [--size 100x30]

The sample ledger is built by ``tui.testing.build_sample_ledger`` (two runs of 12 rank-1 edits on
the tiny GPT-J shape, a revert, a reset, audit findings; fixed timestamps), so the pictures show
real ledger contents and change only when the TUI does.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (run to open or None, keys/steps to get there); "#N" moves the table cursor to row N
SHOTS = {
    "runs": (None, []),
    "timeline": (1, []),
    "detail-edit": (1, ["#7", "enter"]),
    "detail-deltas": (1, ["#7", "enter", "2"]),
    "detail-probes": (1, ["#7", "enter", "3"]),
    "trajectories": (1, ["t", "down", "down", "down", "down", "down", "space"]),
    "diff": (1, ["#2", "d", "#8", "d"]),
    "audit": (1, ["a"]),
    "confirm-revert": (1, ["#4", "v"]),
    "confirm-reset": (1, ["#1", "r"]),
    "help": (1, ["question_mark"]),
}


async def shoot(db: str, name: str, run_id, steps, size) -> Path:
    from tui.app import EditLedgerApp
    from tui.data import LedgerData

    data = LedgerData.open(db, label="editledger.db")
    data.db_arg = "editledger.db"
    app = EditLedgerApp(data, run_id, poll_interval=0)
    async with app.run_test(size=size) as pilot:
        for step in [None] + steps:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            if step is None:
                continue
            if step.startswith("#"):
                app.screen.query_one("#main").move_to(int(step[1:]))
            else:
                await pilot.press(step)
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        out = HERE / f"{name}.svg"
        app.save_screenshot(filename=out.name, path=str(HERE))
    data.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="100x30", help="terminal COLSxROWS (default 100x30)")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    from tui.testing import build_sample_ledger

    with tempfile.TemporaryDirectory() as d:
        db = str(Path(d) / "editledger.db")
        build_sample_ledger(db)
        for name, (run_id, steps) in SHOTS.items():
            print(asyncio.run(shoot(db, name, run_id, steps, size)))
        print(asyncio.run(shoot(db, "timeline-80x24", 1, [], (80, 24))))


if __name__ == "__main__":
    main()
