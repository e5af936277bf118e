"""How fast the TUI shows each screen, on a ledger with one run of N versions (default 10,000;
probes at every step, shaped like the probe runner's) and, with --demo, on a real `editledger
demo` ledger. Each screen is timed from the key that opens it to its first painted frame (data
query + view models + layout + drawing every visible line); the timeline's harm columns and the
diff's ‖B−A‖ are filled by worker threads after that, and their times are reported too. Also
timed, in fresh processes: `editledger --help`, and the TUI's start to its first painted screen.

Side by side in one run: the same timings on a 100-version ledger (how it scales) and the cost of
filling Textual's DataTable with 10,000 rows vs LazyTable (why the TUI has its own table).
Goal (issue #14): every screen under 0.5 s on the demo and the 10,000-version ledger; --help under 0.5 s.

    python benchmarks/bench_tui.py [--versions 10000] [--repeat 5] [--workdir DIR] [--demo DB]

The ledgers (tests/ledger_fixtures.py) are built once under --workdir (default: a temp dir) and
reused when present.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]   # the project, and the ledger builders in tests/

from ledger_fixtures import build_big_ledger  # noqa: E402

SCREENS = ["start (cold process)", "runs", "timeline", "timeline + harm", "detail", "diff", "diff + ‖B−A‖",
           "trajectories", "audit"]


def ensure_ledger(workdir: Path, versions: int) -> str:
    db = workdir / f"big-{versions}" / "ledger.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        build_big_ledger(str(db), versions=versions)
    else:   # a ledger kept from an earlier run: bring it to the current schema first
        from ledger import migrate
        from ledger.engine import resolve
        migrate.upgrade(resolve(str(db))[0])
    return str(db)


CPU: dict[str, float] = {}     # screen -> process CPU seconds from its key to its first frame


async def _wait(app, cls, attr: str = "shown_at", timeout: float = 120.0):
    t0 = time.perf_counter()
    while not (isinstance(app.screen, cls) and getattr(app.screen, attr) is not None):
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{cls.__name__} did not show")
        await asyncio.sleep(0.001)
    return getattr(app.screen, attr)


def _cpu(name: str, c0: float) -> None:
    """CPU time is what the screen cost; wall time on a loaded machine adds other processes' turns."""
    CPU[name] = time.process_time() - c0


async def time_screens(db: str) -> dict[str, float]:
    """Seconds from the key to the first painted frame of each screen, for one cold open of ``db``."""
    from tui.app import EditLedgerApp
    from tui.data import LedgerData
    from tui.screens.audit import AuditScreen
    from tui.screens.detail import DetailScreen
    from tui.screens.diff import DiffScreen
    from tui.screens.runs import RunsScreen
    from tui.screens.timeline import TimelineScreen
    from tui.screens.trajectories import TrajectoryScreen

    out: dict[str, float] = {}
    t0, c = time.perf_counter(), time.process_time()
    app = EditLedgerApp(LedgerData.open(db), poll_interval=0)
    async with app.run_test(size=(160, 45)) as pilot:
        out["runs"] = await _wait(app, RunsScreen) - t0
        _cpu("runs", c)
        t, c = time.perf_counter(), time.process_time()
        app.screen.action_open()                                  # Enter on the run
        out["timeline"] = await _wait(app, TimelineScreen) - t
        _cpu("timeline", c)
        out["timeline + harm"] = await _wait(app, TimelineScreen, "changes_at") - t
        _cpu("timeline + harm", c)
        timeline = app.screen
        rows = timeline.table.rows
        timeline.table.move_to(len(rows) // 2)
        t, c = time.perf_counter(), time.process_time()
        timeline.action_detail()
        out["detail"] = await _wait(app, DetailScreen) - t
        _cpu("detail", c)
        await app.workers.wait_for_complete()
        app.pop_screen()
        await pilot.pause()
        timeline.table.move_to(1)
        timeline.action_diff()
        timeline.table.move_to(len(rows) - 1)
        t, c = time.perf_counter(), time.process_time()
        timeline.action_diff()                                    # step 1 against the last version
        out["diff"] = await _wait(app, DiffScreen) - t
        _cpu("diff", c)
        await app.workers.wait_for_complete()
        out["diff + ‖B−A‖"] = time.perf_counter() - t
        _cpu("diff + ‖B−A‖", c)
        app.pop_screen()
        await pilot.pause()
        t, c = time.perf_counter(), time.process_time()
        timeline.action_trajectories()
        out["trajectories"] = await _wait(app, TrajectoryScreen) - t
        _cpu("trajectories", c)
        app.pop_screen()
        await pilot.pause()
        t, c = time.perf_counter(), time.process_time()
        timeline.action_audit()
        out["audit"] = await _wait(app, AuditScreen) - t
        _cpu("audit", c)
    app.data.close()
    out.update({f"cpu {k}": v for k, v in CPU.items()})
    return out


STARTUP = r'''
import asyncio, sys, time
t_start = float(sys.argv[2])
from tui.app import EditLedgerApp
from tui.data import LedgerData
from tui.screens.runs import RunsScreen
async def main():
    app = EditLedgerApp(LedgerData.open(sys.argv[1]), poll_interval=0)
    async with app.run_test(size=(160, 45)):
        while not isinstance(app.screen, RunsScreen) or app.screen.shown_at is None:
            await asyncio.sleep(0.001)
        print(time.time() - t_start)
asyncio.run(main())
'''


def time_process(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def time_startup(db: str) -> float:
    """A fresh Python process: imports, opening the ledger and the runs screen's first frame."""
    out = subprocess.run([sys.executable, "-c", STARTUP, db, str(time.time())], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


async def time_tables(n: int) -> tuple[float, float]:
    """Seconds to fill and draw n timeline-like rows: (DataTable, LazyTable)."""
    from textual.app import App
    from textual.widgets import DataTable

    from tui.widgets.lazy_table import Column, LazyTable

    rows = [("●", str(i), f"v{i}", "edit", f"Subject {i}: Paris → Rome", "1.00", "+0.013", "−0.002", "")
            for i in range(n)]
    cols = ["graph", "step", "ver", "kind", "edit", "eff", "d1", "d2", "flags"]

    class Bench(App):
        def compose(self):
            yield DataTable(id="dt")
            yield LazyTable([Column(c, c, flex=int(c == "edit")) for c in cols], lambda r: r, id="lt")

    out = []
    async with Bench().run_test(size=(120, 40)) as pilot:
        dt, lt = pilot.app.query_one("#dt"), pilot.app.query_one("#lt")
        lt.display = False
        t = time.perf_counter()
        dt.add_columns(*cols)
        dt.add_rows(rows)
        await pilot.pause()
        pilot.app.screen._compositor.render_strips()
        out.append(time.perf_counter() - t)
        dt.display, lt.display = False, True
        await pilot.pause()
        t = time.perf_counter()
        lt.set_items(rows)
        await pilot.pause()
        pilot.app.screen._compositor.render_strips()
        out.append(time.perf_counter() - t)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=100, help="versions of the comparison ledger")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--demo", default=None, metavar="DB", help="a ledger written by `editledger demo`")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-tui-"))
    ledgers = {f"{args.versions} versions": ensure_ledger(workdir, args.versions),
               f"{args.small} versions": ensure_ledger(workdir, args.small)}
    if args.demo:
        ledgers["demo"] = args.demo

    asyncio.run(time_screens(ledgers[f"{args.small} versions"]))    # warm caches once, not timed
    res: dict[str, list[dict[str, float]]] = {k: [] for k in ledgers}
    for _ in range(args.repeat):              # interleaved, so load on the machine hits all alike
        for name, db in ledgers.items():
            r = asyncio.run(time_screens(db))
            r["start (cold process)"] = time_startup(db)
            res[name].append(r)
    helps = [time_process([sys.executable, "-m", "editledger", "--help"]) for _ in range(args.repeat)]
    bare = [time_process([sys.executable, "-c", "pass"]) for _ in range(args.repeat)]
    tables = [asyncio.run(time_tables(args.versions)) for _ in range(max(1, args.repeat // 2))]

    load = os.getloadavg()
    med = statistics.median
    print(f"median of {args.repeat} cold opens; load average {load[0]:.1f} on {os.cpu_count()} cores; "
          f"ledgers under {workdir}")
    names = list(ledgers)
    print(f"  {'screen':<22}" + "".join(f"{n:>16}" for n in names) + "   goal < 500 ms (the largest ledger)")
    big = names[0]
    for screen in SCREENS:
        vals = {n: med([r[screen] for r in res[n]]) for n in names}
        worker = screen.endswith(("harm", "‖B−A‖"))
        verdict = "(worker, after the screen shows)" if worker else (
            "ok" if max(vals[big], vals.get("demo", 0)) < 0.5 else "MISSED")
        print(f"  {screen:<22}" + "".join(f"{vals[n] * 1000:13.1f} ms" for n in names) + f"   {verdict}")
        if f"cpu {screen}" in res[big][0]:
            cpu = {n: med([r[f"cpu {screen}"] for r in res[n]]) for n in names}
            print(f"  {'  of it CPU time':<22}" + "".join(f"{cpu[n] * 1000:13.1f} ms" for n in names))
    s_big = med([r["timeline"] for r in res[big]])
    s_small = med([r["timeline"] for r in res[names[1]]])
    print(f"  timeline {big} / {names[1]}: ratio {s_big / s_small:.2f}")
    print(f"  editledger --help: {med(helps) * 1000:.0f} ms (a bare `python -c pass`: {med(bare) * 1000:.0f} ms)"
          f"   goal < 500 ms: {'ok' if med(helps) < 0.5 else 'MISSED'}")
    dt, lt = med([t[0] for t in tables]), med([t[1] for t in tables])
    print(f"  fill+draw {args.versions} rows: DataTable {dt * 1000:.1f} ms, LazyTable {lt * 1000:.1f} ms, "
          f"ratio {dt / lt:.1f}x")


if __name__ == "__main__":
    main()
