"""Sweeps: a grid of (model x method x stream x protocol x seed) cells, each one run in one ledger,
here, in local worker processes, or as Ray tasks (docs/sweeps.md).

    grid = load_grid("grid.toml")          # read and checked whole (InputError otherwise)
    result = run_sweep(grid, db=..., workers=2)
    report = collect_sweep(ledger, "name")  # the cells side by side (simulator.sweep.report)

Modules: grid (the file and its cells), cell (one cell in any process), backends (where cells
run), driver (plan, statistics order, follow), progress (the display), report (tables and Figure 4
across the cells).
"""
from simulator.sweep.driver import PlannedCell, SweepResult, plan, run_sweep
from simulator.sweep.grid import Cell, Grid, build_grid, cell_key, load_grid

__all__ = ["Cell", "Grid", "PlannedCell", "SweepResult", "build_grid", "cell_key", "load_grid", "plan", "run_sweep"]
