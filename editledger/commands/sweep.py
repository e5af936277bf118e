"""`editledger sweep GRID`: every cell of a grid (models x methods x streams x protocols x seeds) as a
run in one ledger, here, in N local worker processes, or as Ray tasks (docs/sweeps.md)."""
from __future__ import annotations

import sys

from ledger.errors import InputError

from .common import add_model_args, bounded_int, printable


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of models, methods, streams and seeds into one ledger",
                       description="Run every cell of GRID (a TOML file, docs/sweeps.md) as a run in the "
                                   "ledger, tagged with the sweep and the cell. Cells are identified by the "
                                   "hash of their configuration: running the same grid again skips the cells "
                                   "already done and resumes the ones that were interrupted.")
    p.add_argument("grid", metavar="GRID", help="the grid file (.toml)")
    p.add_argument("--workers", type=bounded_int(1, 256, "--workers"), default=1, metavar="N",
                   help="run N cells at once in worker processes on this machine (default 1: one after another "
                        "in this process)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run each cell as a Ray task with the resources it needs (GPUs for GPT-J): `local` starts "
                        "Ray on this machine, `auto` or ray://HOST:10001 joins a cluster. Needs the [ray] extra. On "
                        "a cluster the ledger is PostgreSQL and the store shared: editledger --db "
                        "postgresql+psycopg://... --artifacts s3://... sweep GRID --ray auto")
    p.add_argument("--threads", type=bounded_int(1, 1024, "--threads"), default=None, metavar="T",
                   help="torch threads per cell (default: this machine's cores divided by --workers; with --ray, "
                        "the cell's cpus). CPU results are bit-identical across backends at equal thread counts")
    p.add_argument("--plan", action="store_true",
                   help="list the cells and what a run would do with each (new, resume, done, busy); run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, only a line per cell")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.ray and args.workers > 1:
        raise InputError("--workers is for this machine; with --ray, Ray decides how many cells run at once "
                         "(from the resources each cell asks for)")
    if args.ray and args.device:
        raise InputError("--device is for this machine; with --ray each cell runs where Ray places it, on a GPU "
                         "when its model asks for one (`gpus` in the grid's model table)")
    from simulator.sweep import load_grid, plan, run_sweep
    grid = load_grid(args.grid)                  # checked whole before anything runs or is written
    if args.ray and not args.plan:
        from simulator.sweep.backends import require_ray
        require_ray()                            # a missing extra is said before the ledger is touched
    if args.plan:
        return _plan(args, grid, plan)
    if args.ray:
        _warn_sqlite_on_ray(args)
    try:
        result = run_sweep(grid, db=args.db, workers=args.workers, ray=args.ray, device=args.device,
                           threads=args.threads, progress=not args.no_progress and sys.stderr.isatty())
    except KeyboardInterrupt:
        print(f"editledger: sweep {printable(grid.name)} interrupted; everything committed is kept. Run "
              f"`editledger sweep {printable(args.grid)}` again: it skips the cells that are done and resumes "
              "the interrupted ones.", file=sys.stderr)
        return 130
    return _summary(grid, result)


def _plan(args, grid, plan) -> int:
    from ledger import Ledger
    from ledger.errors import InputError as _IE
    try:
        led = Ledger.open(args.db, create=False)
    except _IE:
        led = None                                # no ledger yet: every cell is new
    try:
        sweep_id = None
        if led is not None:
            known = {s.name: s.id for s in led.sweeps()}
            sweep_id = known.get(grid.name)
        planned = plan(led, grid, sweep_id) if led is not None else None
    finally:
        if led is not None:
            led.close()
    print(f"sweep {printable(grid.name)}: {len(grid.cells)} cells")
    rows = [("cell", "key", "steps", "would", "run")]
    for i, c in enumerate(grid.cells):
        p = planned[i] if planned else None
        state = p.state if p else "new"
        would = {"new": "start", "resume": f"resume after step {p.steps_done}" if p else "resume",
                 "done": "skip (done)", "busy": "skip (running elsewhere)"}[state]
        rows.append((c.label, c.key[:12], str(len(c.stream.steps)), would,
                     str(p.run_id) if p and p.run_id is not None else "—"))
    _print_table(rows)
    return 0


def _summary(grid, result) -> int:
    outcomes = result.outcomes
    counts = ", ".join(f"{result.count(k)} {k}" for k in ("done", "resumed", "skipped", "busy", "failed")
                       if result.count(k))
    print(f"sweep {printable(grid.name)}: {len(outcomes)} cells — {counts} ({result.wall_s:.1f} s)")
    rows = [("cell", "run", "status", "steps", "outcome", "wall s")]
    for o in outcomes:
        rows.append((o.label, str(o.run_id) if o.run_id is not None else "—", o.status or "—", str(o.steps),
                     o.outcome, f"{o.wall_s:.1f}" if o.wall_s else "—"))
    _print_table(rows)
    for o in outcomes:
        if o.error and o.outcome in ("failed", "busy"):
            print(f"  {printable(o.label)}: {printable(o.error)}", file=sys.stderr)
    print(f"tables and Figure 4: editledger report --sweep {printable(grid.name)} [--plot fig4.png]", file=sys.stderr)
    if result.count("failed"):
        print(f"editledger: {result.count('failed')} cell(s) failed; fix the cause and run the sweep again "
              "(it resumes them)", file=sys.stderr)
        return 1
    return 0


def _print_table(rows) -> None:
    w = [max(len(printable(str(r[i]))) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        print("  ".join(printable(str(x)).ljust(w[i]) for i, x in enumerate(r)).rstrip())
        if n == 0:
            print("  ".join("-" * x for x in w))


def _warn_sqlite_on_ray(args) -> None:
    from ledger.engine import is_sqlite, resolve
    url, _ = resolve(args.db)
    if is_sqlite(url) and args.ray != "local":
        print("editledger: warning: a SQLite ledger on a Ray cluster works only if every node sees this file "
              "(and SQLite over a network filesystem is unsafe); give --db postgresql+psycopg://... for a team",
              file=sys.stderr)
