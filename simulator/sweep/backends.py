"""Where a sweep's cells run: here, in N local worker processes, or as Ray tasks.

Every backend has ``capacity`` (cells it takes at once), ``submit(cell, task)``, ``wait(timeout)``
(the outcomes of cells that ended meanwhile) and ``close()``. Tasks and outcomes cross process
boundaries as JSON strings (``CellTask`` / ``CellOutcome``).

Local workers share the ledger the way the reliability work measured it safe: SQLite in WAL mode
with a 30 s busy timeout, and every write transaction taking the write lock at its start
(``BEGIN IMMEDIATE``, ``ledger.engine``), so two writers queue instead of failing with "database is
locked"; each worker writes only its own cell's run. Each worker gets an equal share of the CPU
threads. Ray is imported only here, only when ``--ray`` is given.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from pathlib import Path

from ledger.errors import InputError
from simulator.sweep.cell import CellOutcome, CellRunner, quiet_libraries, run_task_once, worker_init, worker_run


def require_ray():
    """The ray module, or an InputError saying how to install it (checked before the ledger is touched)."""
    try:
        import ray  # optional extra: only --ray needs it
    except ImportError:
        raise InputError("--ray needs Ray, which is an optional extra: pip install -e \".[ray]\" "
                         "(or pip install ray); without --ray the sweep runs on this machine") from None
    return ray


def default_threads(workers: int) -> int:
    """torch threads per cell on this machine: an equal share of its cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def make_backend(ledger, *, workers: int = 1, ray: str | None = None, device: str | None = None, on_step=None,
                 quiet: bool = False):
    """``quiet``: the display is on; the libraries' own bars and notes stay out of it."""
    if ray:
        return RayBackend(ray, ledger)
    if workers <= 1:
        return InProcess(ledger, device=device, on_step=on_step, quiet=quiet)
    return LocalPool(workers, ledger, device=device)


class InProcess:
    """Cells one after another in this process (the model stays loaded between cells of one model)."""
    capacity = 1

    def __init__(self, ledger, *, device=None, on_step=None, quiet: bool = False):
        if quiet:
            quiet_libraries()
        self.runner = CellRunner(ledger, device=device, on_step=on_step)
        self.queue: list = []

    def submit(self, cell, task) -> None:
        self.queue.append(task)

    def wait(self, timeout: float) -> list[CellOutcome]:
        return [self.runner.run(self.queue.pop(0))] if self.queue else []

    def close(self) -> None:
        self.queue.clear()


class LocalPool:
    """N worker processes on this machine, each with its own ledger connection and model."""

    def __init__(self, workers: int, ledger, *, device=None):
        self.capacity = workers
        # forkserver: workers fork from a clean server process that has imported the cell runner once
        # (torch, transformers: seconds each), never from this one, which may hold torch's threads;
        # spawn where the platform has no forkserver
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["simulator.sweep.cell"])
        else:
            ctx = multiprocessing.get_context("spawn")
        self.ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init,
                                         initargs=(ledger.url, str(ledger.store.root), device))
        self.futures: dict[cf.Future, object] = {}

    def submit(self, cell, task) -> None:
        self.futures[self.ex.submit(worker_run, task.to_json())] = cell

    def wait(self, timeout: float) -> list[CellOutcome]:
        if not self.futures:
            return []
        done, _ = cf.wait(list(self.futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for f in done:
            cell = self.futures.pop(f)
            try:
                out.append(CellOutcome.from_json(f.result()))
            except cf.process.BrokenProcessPool as e:
                raise RuntimeError(f"a sweep worker process died ({e}); run the sweep again: it resumes "
                                   "the cells that were running") from None
            except Exception as e:      # the worker could not even start the cell (its ledger, its imports)
                out.append(CellOutcome(cell.key, cell.label, "failed", error=f"{type(e).__name__}: {e}"[:1000]))
        return out

    def close(self) -> None:
        self.ex.shutdown(wait=True, cancel_futures=True)


class RayBackend:
    """Each cell a Ray task asking for its model's resources (``gpus``, ``cpus`` in the grid; GPT-J
    asks for a GPU). ``address``: ``local`` starts Ray on this machine (``ray.init()``), anything
    else is passed to ``ray.init(address=...)`` (``auto``, ``ray://head:10001``)."""
    capacity = 1 << 30                 # Ray queues tasks by their resources

    def __init__(self, address: str, ledger):
        self.ray = ray = require_ray()
        if address == "local":
            # a cluster of this machine: its workers run this checkout's code
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(x for x in (root, os.environ.get("PYTHONPATH")) if x)
            ray.init(runtime_env={"env_vars": {"PYTHONPATH": path}}, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
            self._owns = True
        else:
            try:
                ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
            except ConnectionError as e:
                raise InputError(f"--ray {address}: no Ray cluster there ({e}); start one with `ray start --head` "
                                 "(and `ray start --address HEAD:6379` on each node), or use --ray local") from None
            self._owns = False
        self.remote = ray.remote(max_retries=0)(run_task_once)
        self.refs: dict = {}

    def submit(self, cell, task) -> None:
        task.device = task.device or ("cuda" if cell.model.gpus > 0 else "cpu")
        task.threads = task.threads or max(1, int(cell.model.cpus))
        ref = self.remote.options(num_cpus=cell.model.cpus, num_gpus=cell.model.gpus,
                                  name=f"editledger-cell-{cell.label}"[:120]).remote(task.to_json())
        self.refs[ref] = cell

    def wait(self, timeout: float) -> list[CellOutcome]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        out = []
        for ref in ready:
            cell = self.refs.pop(ref)
            try:
                out.append(CellOutcome.from_json(self.ray.get(ref)))
            except Exception as e:       # the task died (its node went away, out of memory, ...)
                out.append(CellOutcome(cell.key, cell.label, "failed", error=f"{type(e).__name__}: {e}"[:1000]))
        return out

    def close(self) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref, force=False)
        self.refs.clear()
        if self._owns:
            self.ray.shutdown()
