"""Running a sweep: plan the cells against the ledger, hand them to a backend, follow them.

Backends (``simulator.sweep.backends``): the sweep's own process (cells one after another), a pool
of N local worker processes, or Ray tasks on a cluster. They differ only in where ``CellRunner.run``
executes; the ledger is the one place that says what is done, and every worker writes only its own
cell's run (one writer per run: the run's lease; one run per cell: a unique constraint).

Statistics are collected once. A method that needs second-moment statistics (ROME, MEMIT, ...)
collects them before its run exists in the ledger; so the first cell that needs a layer's
statistics (of one model, corpus and sample count) goes first, and the other cells needing them
are handed out only once that cell's run exists (its statistics are then stored) or it has ended.
They find the statistics in the ledger and reuse them.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from ledger import Ledger
from ledger.errors import InputError
from simulator.editors import get_editor, load_hparams
from simulator.models.specs import SPECS
from simulator.sweep.backends import default_threads, make_backend
from simulator.sweep.cell import FINISHED, CellOutcome, task_for
from simulator.sweep.grid import Grid
from simulator.sweep.progress import SweepDisplay

POLL_S = 0.5


@dataclass
class PlannedCell:
    cell: object                      # grid.Cell
    state: str                        # new / resume / done / busy
    run_id: int | None = None
    steps_done: int = 0
    status: str | None = None         # its run's status, when it has a run
    waits_for: set[str] = field(default_factory=set)   # cell keys whose statistics it reuses


@dataclass
class SweepResult:
    name: str
    sweep_id: int
    outcomes: list[CellOutcome]
    wall_s: float

    def count(self, outcome: str) -> int:
        return sum(o.outcome == outcome for o in self.outcomes)


def plan(ledger: Ledger, grid: Grid, sweep_id: int | None) -> list[PlannedCell]:
    """Each cell with what it needs, read from the ledger: new, resume, done (skipped) or busy."""
    runs = ledger.sweep_cells(sweep_id) if sweep_id is not None else {}
    out = []
    for cell in grid.cells:
        r = runs.get(cell.key)
        if r is None:
            out.append(PlannedCell(cell, "new"))
        elif r.status in FINISHED:
            out.append(PlannedCell(cell, "done", r.run_id, r.steps, r.status))
        elif r.writer_alive:
            out.append(PlannedCell(cell, "busy", r.run_id, r.steps, r.status))
        else:
            out.append(PlannedCell(cell, "resume", r.run_id, r.steps, r.status))
    _statistics_order(out)
    return out


def _stats_keys(cell) -> set[tuple]:
    """(model, corpus, sample count, layer) of every second-moment statistic the cell's method reads."""
    hp = load_hparams(cell.method.name, SPECS.get(cell.model.name), None, cell.method.hparams)
    layers = get_editor(cell.method.name).stats_layers(hp)
    if not layers:
        return set()
    tokens = cell.options.get("stats_tokens") or int(getattr(hp, "mom2_n_samples", 4096))
    return {(cell.model.name, cell.options.get("stats_corpus", "self"), tokens, int(layer)) for layer in layers}


def _statistics_order(planned: list[PlannedCell]) -> None:
    """A cell that needs statistics another cell (earlier in the grid) collects waits for it."""
    first: dict[tuple, str] = {}
    for p in planned:
        if p.state not in ("new", "resume"):
            continue
        for k in sorted(_stats_keys(p.cell)):
            if k in first and first[k] != p.cell.key:
                p.waits_for.add(first[k])
            else:
                first.setdefault(k, p.cell.key)
        if p.state == "resume":          # its run exists: its statistics are stored already
            p.waits_for.clear()


def run_sweep(grid: Grid, *, db: str | None = None, artifacts: str | None = None, workers: int = 1,
              ray: str | None = None, device: str | None = None, threads: int | None = None,
              progress: bool = True, out=None) -> SweepResult:
    """Run every cell of ``grid`` that is not done; see the module docstring. ``threads``: torch
    threads per cell (default: an equal share of this machine's cores; on Ray, the cell's cpus).
    Cells give bit-identical numbers in any backend when they compute with the same thread count."""
    if threads is None and not ray:
        threads = default_threads(workers)
    out = out or sys.stderr
    t0 = time.perf_counter()
    with Ledger.open(db, artifacts=artifacts) as led:
        if (workers > 1 or ray) and "memory" in getattr(getattr(led.store, "fs", None), "protocol", ()):
            raise InputError(f"the artifact store {led.store.root} lives in one process's memory: other "
                             "processes cannot share it; use a path or a shared URL, or --workers 1")
        sweep = led.record_sweep(grid.name, grid.to_json())
        planned = plan(led, grid, sweep.id)
        store = str(led.store.root)
        display = SweepDisplay(grid.name, planned, enabled=progress, file=out)
        outcomes: dict[str, CellOutcome] = {}
        for p in planned:
            if p.state in ("done", "busy"):
                o = CellOutcome(p.cell.key, p.cell.label, "skipped" if p.state == "done" else "busy",
                                run_id=p.run_id, status=p.status, steps=p.steps_done)
                if p.state == "busy":
                    o.error = f"run {p.run_id} is being written by another live process; run the sweep again later"
                outcomes[p.cell.key] = o
                display.finished(o)
        todo = [p for p in planned if p.state in ("new", "resume")]
        backend = make_backend(led, workers=workers, ray=ray, device=device, quiet=progress,
                               on_step=lambda key, step: display.poll(led, sweep.id))
        try:
            _drive(led, sweep.id, todo, backend, display, outcomes,
                   lambda cell: task_for(cell, db=led.url, artifacts=store, sweep_id=sweep.id, sweep=grid.name,
                                         device=device, threads=threads))
        finally:
            backend.close()
            display.close()
        result = SweepResult(grid.name, sweep.id, [outcomes[c.key] for c in grid.cells if c.key in outcomes],
                             time.perf_counter() - t0)
    return result


def _drive(led, sweep_id, todo, backend, display, outcomes, make_task) -> None:
    waiting = list(todo)
    running: dict[str, PlannedCell] = {}
    while waiting or running:
        if waiting:
            started = {k for k, r in led.sweep_cells(sweep_id).items()} if any(p.waits_for for p in waiting) else set()
            ready = []
            for p in waiting:
                if len(running) + len(ready) >= backend.capacity:
                    break
                # a statistics source is met once its run exists (statistics stored) or it has ended
                if all(k in started or k in outcomes for k in p.waits_for):
                    ready.append(p)
            for p in ready:
                waiting.remove(p)
                running[p.cell.key] = p
                display.started(p)
                backend.submit(p.cell, make_task(p.cell))
        if not running:                  # everything left waits for statistics nobody collects: go on
            p = waiting[0]
            p.waits_for.clear()
            continue
        for o in backend.wait(POLL_S):
            running.pop(o.key, None)
            outcomes[o.key] = o
            display.finished(o)
        display.poll(led, sweep_id)
