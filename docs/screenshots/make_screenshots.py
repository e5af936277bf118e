"""Regenerate the TUI screenshots (SVG, Textual's own screenshot, in colour) from a real ledger
written by `editledger demo`:

    python -m editledger --db /tmp/demo/editledger.db demo        # once: a few minutes on a CPU
    python docs/screenshots/make_screenshots.py --db /tmp/demo/editledger.db [--size 140x36]

The ledger is copied to a temporary directory first: the shots run the audit from inside the TUI
(A) and revert a step (v, y), and your ledger stays as it was.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tui.app import EditLedgerApp  # noqa: E402
from tui.data import LedgerData  # noqa: E402
from tui.screens.job import JobScreen  # noqa: E402

# name -> (run to open or None, keys); "#N" moves the main table's cursor to row N, "wait" waits for
# a command run from the TUI to end. In order: the audit and the revert change the ledger for the
# shots after them.
SHOTS = {
    "audit-running": (1, ["A", "wait"]),
    "timeline": (1, ["#8"]),
    "runs": (None, []),
    "detail-edit": (1, ["#8", "enter"]),
    "detail-deltas": (1, ["#7", "enter", "2"]),
    "detail-probes": (1, ["#7", "enter", "3", "down", "down"]),
    "trajectories": (1, ["t", "down", "space", "down", "down", "down", "space", "m"]),
    "diff": (1, ["#2", "d", "#12", "d"]),
    "audit": (1, ["a"]),
    "confirm-revert": (1, ["#7", "v"]),
    "timeline-revert": (1, ["#7", "v", "y"]),
    "help": (1, ["question_mark"]),
}


async def shoot(name: str, run_id, steps, size) -> Path:
    data = LedgerData.open("editledger.db", label="editledger.db")
    data.db_arg = "editledger.db"        # commands run from the TUI: relative to the temp dir they run in
    app = EditLedgerApp(data, run_id, poll_interval=0)
    async with app.run_test(size=size) as pilot:
        for step in [None] + steps:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            if step is None:
                continue
            if step == "wait":
                while not isinstance(app.screen, JobScreen) or app.screen.returncode is None:
                    await asyncio.sleep(0.1)
            elif step.startswith("#"):
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
    ap.add_argument("--db", required=True, help="a ledger written by `editledger demo` (copied, never changed)")
    ap.add_argument("--size", default="140x36", help="terminal COLSxROWS (default 140x36)")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    src = Path(args.db).resolve()
    with tempfile.TemporaryDirectory() as d:
        for suffix in ("", "-wal", "-shm"):         # a WAL not yet checkpointed holds committed rows
            if Path(f"{src}{suffix}").exists():
                shutil.copy2(f"{src}{suffix}", Path(d) / f"editledger.db{suffix}")
        shutil.copytree(src.parent / "artifacts", Path(d) / "artifacts")
        os.chdir(d)                                  # the shots show "editledger.db", not a temp path
        os.environ["PYTHONPATH"] = str(ROOT)         # commands run from the TUI use this checkout
        for name, (run_id, steps) in SHOTS.items():
            print(asyncio.run(shoot(name, run_id, steps, size)))
        print(asyncio.run(shoot("timeline-80x24", 1, [], (80, 24))))


if __name__ == "__main__":
    main()
