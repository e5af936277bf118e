"""`editledger tui [RUN]`: browse the ledger in the terminal (no model needed)."""
from __future__ import annotations

from .common import find_run


def register(sub) -> None:
    p = sub.add_parser("tui", help="browse runs, timelines, edits, trajectories, diffs and audits",
                       description="Open the Textual TUI on the ledger given by --db. It reads the ledger "
                                   "only (no model); reset and revert are recorded like the CLI's. "
                                   "Press ? in any screen for its keys.")
    p.add_argument("run", nargs="?", metavar="RUN", help="open this run's timeline directly (id or name)")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                   help="how often to look for new steps written by a running replay (default 2; 0 = never)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tui.app import EditLedgerApp
    from tui.data import LedgerData

    data = LedgerData.open(args.db)
    try:
        run_id = find_run(data.ledger, args.run) if args.run else None
        EditLedgerApp(data, run_id, poll_interval=args.poll).run()
    finally:
        data.close()
    return 0
