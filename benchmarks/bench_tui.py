"""How fast the TUI opens a big ledger: the runs screen and a run's timeline, each timed from the
request to a fully rendered screen (data query + view models + layout + drawing every visible
line), on a ledger with one run of N versions (default 10,000; probes at every step).

Side by side in one run: the same timings on a 100-version ledger (how it scales) and the cost of
filling Textual's DataTable with the same 10,000 rows vs LazyTable (why the TUI has its own
table). Goal (issue #6): runs screen and timeline each under 0.5 s for 10,000 versions. The timeline's
Δ columns (two trajectories) are filled by a worker thread after the rows show; that time is
reported too.

    python benchmarks/bench_tui.py [--versions 10000] [--repeat 5] [--workdir DIR]

The ledgers are built once under --workdir (default: a temp dir) and reused when present.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]   # the project, and the ledger builders in tests/

from ledger_fixtures import build_big_ledger  # noqa: E402


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


def render_all(app) -> None:
    """Draw every visible line of the current screen now (what the terminal would show)."""
    app.screen._compositor.render_strips()


# Screens stamp ``shown_at`` in a call_after_refresh callback: after the compositor has painted
# the frame that holds their rows (the headless driver paints like a terminal would).
async def time_screens(db: str) -> tuple[float, float, int, float]:
    """(runs screen s, timeline s, rows in the timeline, timeline with its Δ columns s) for one
    cold open of ``db``. The Δ columns are read by a worker thread after the rows show."""
    from tui.app import EditLedgerApp
    from tui.data import LedgerData
    from tui.screens.runs import RunsScreen
    from tui.screens.timeline import TimelineScreen

    t0 = time.perf_counter()
    app = EditLedgerApp(LedgerData.open(db), poll_interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, RunsScreen) or app.screen.shown_at is None:
            await asyncio.sleep(0.001)
        t_runs = app.screen.shown_at - t0
        t1 = time.perf_counter()
        app.screen.action_open()               # what Enter on the run does
        while not isinstance(app.screen, TimelineScreen) or app.screen.changes_at is None:
            await asyncio.sleep(0.001)
        t_timeline = app.screen.shown_at - t1
        t_changes = app.screen.changes_at - t1
        n = len(app.screen.table.rows)
    app.data.close()
    return t_runs, t_timeline, n, t_changes


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
            yield LazyTable([Column(c, c, flex=c == "edit") for c in cols], lambda r: r, id="lt")

    out = []
    async with Bench().run_test(size=(120, 40)) as pilot:
        dt, lt = pilot.app.query_one("#dt"), pilot.app.query_one("#lt")
        lt.display = False
        t = time.perf_counter()
        dt.add_columns(*cols)
        dt.add_rows(rows)
        await pilot.pause()
        render_all(pilot.app)
        out.append(time.perf_counter() - t)
        dt.display, lt.display = False, True
        await pilot.pause()
        t = time.perf_counter()
        lt.set_items(rows)
        await pilot.pause()
        render_all(pilot.app)
        out.append(time.perf_counter() - t)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=100, help="versions of the comparison ledger")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-tui-"))
    big, small = ensure_ledger(workdir, args.versions), ensure_ledger(workdir, args.small)

    asyncio.run(time_screens(small))          # warm imports and caches once, not timed
    res: dict[str, list[tuple[float, float, int, float]]] = {"big": [], "small": []}
    for _ in range(args.repeat):              # interleaved, so load on the machine hits both alike
        res["big"].append(asyncio.run(time_screens(big)))
        res["small"].append(asyncio.run(time_screens(small)))
    tables = [asyncio.run(time_tables(args.versions)) for _ in range(max(1, args.repeat // 2))]

    import os
    load = os.getloadavg()
    med = lambda xs: statistics.median(xs)
    b_runs, b_tl = med([r[0] for r in res["big"]]), med([r[1] for r in res["big"]])
    s_runs, s_tl = med([r[0] for r in res["small"]]), med([r[1] for r in res["small"]])
    dt, lt = med([t[0] for t in tables]), med([t[1] for t in tables])
    print(f"ledger: {big} ({res['big'][0][2]} timeline rows); median of {args.repeat} cold opens; "
          f"load average {load[0]:.1f} on {os.cpu_count()} cores")
    print(f"  runs screen    {args.versions:>6} versions: {b_runs * 1000:7.1f} ms   "
          f"{args.small} versions: {s_runs * 1000:7.1f} ms   ratio {b_runs / s_runs:.2f}   "
          f"goal < 500 ms: {'ok' if b_runs < 0.5 else 'MISSED'}")
    print(f"  timeline       {args.versions:>6} versions: {b_tl * 1000:7.1f} ms   "
          f"{args.small} versions: {s_tl * 1000:7.1f} ms   ratio {b_tl / s_tl:.2f}   "
          f"goal < 500 ms: {'ok' if b_tl < 0.5 else 'MISSED'}")
    b_ch, s_ch = med([r[3] for r in res["big"]]), med([r[3] for r in res["small"]])
    print(f"  timeline + Δ   {args.versions:>6} versions: {b_ch * 1000:7.1f} ms   "
          f"{args.small} versions: {s_ch * 1000:7.1f} ms   ratio {b_ch / s_ch:.2f}   (Δ columns filled by a worker)")
    print(f"  fill+draw {args.versions} rows: DataTable {dt * 1000:.1f} ms, LazyTable {lt * 1000:.1f} ms, "
          f"ratio {dt / lt:.1f}x")


if __name__ == "__main__":
    main()
