"""One cell of a sweep, run in whatever process it lands in (the sweep's own, a worker process, a Ray
task): skip it if done, resume it if interrupted, start it otherwise.

A cell's task is plain JSON (``CellTask.to_json``): the database URL, the artifact store, the sweep
and the cell with its stream steps. So a worker needs nothing from the machine that read the grid,
and nothing but a string crosses a process boundary.

The ledger decides what a cell needs: its run is found by (sweep, cell key). Done or stopped:
skipped. Running with a live writer elsewhere: left alone. Interrupted, failed, or running with
its writer gone (a SIGKILL): resumed from its last committed step (``Replayer.resume``, which
takes the run's lease). No run: started, tagged with the cell in the transaction that creates it;
if another worker created it first the database refuses the second (``CellTaken``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import torch
from threadpoolctl import threadpool_limits

from ledger import Ledger
from ledger.errors import CellTaken, UserError
from simulator.replay import ReplayOptions, Replayer
from simulator.requests import Step
from simulator.session import Session

FINISHED = ("done", "stopped")        # run statuses of a cell that needs nothing more


@dataclass
class CellTask:
    db: str                           # SQLAlchemy URL of the ledger
    artifacts: str | None             # the artifact store (None: the ledger's default)
    sweep_id: int
    sweep: str
    cell: dict                        # Cell.describe() plus "options" and the stream's steps, name, digest, recipe
    device: str | None = None
    threads: int | None = None        # torch threads of the cell (None: as the process has them)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CellTask":
        return cls(**json.loads(text))


@dataclass
class CellOutcome:
    key: str
    label: str
    outcome: str                      # done / resumed / skipped / busy / failed
    run_id: int | None = None
    status: str | None = None         # the run's status at the end
    steps: int = 0
    wall_s: float = 0.0
    error: str | None = None
    timing: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CellOutcome":
        return cls(**json.loads(text))


def task_for(cell, *, db: str, artifacts: str | None, sweep_id: int, sweep: str, device: str | None,
             threads: int | None = None) -> CellTask:
    desc = cell.describe()
    desc.update(options=cell.options, stream_steps=cell.stream.steps, stream_name=cell.stream.name,
                stream_digest=cell.stream.digest, stream_recipe=cell.stream.recipe)
    return CellTask(db=db, artifacts=artifacts, sweep_id=sweep_id, sweep=sweep, cell=desc, device=device,
                    threads=threads)


class CellRunner:
    """Runs cells in one process against one ledger, keeping the last model loaded (cells of one
    model follow each other; a session moves between runs by verified checkouts)."""

    def __init__(self, ledger: Ledger, *, device: str | None = None, on_step=None):
        self.ledger, self.device, self.on_step = ledger, device, on_step
        self._session: Session | None = None
        self._model: str | None = None

    def session(self, model: str) -> Session:
        if self._session is None or self._model != model:
            self._session = None                 # drop the previous model before loading the next
            self._session = Session.open(self.ledger, model, device=self.device, progress=False)
            self._model = model
        return self._session

    def run(self, task: CellTask) -> CellOutcome:
        c = task.cell
        out = CellOutcome(key=c["key"], label=c["label"], outcome="failed")
        t0 = time.perf_counter()
        led = self.ledger
        if task.threads:
            # CPU kernels sum in an order that depends on the thread count: equal counts, equal numbers.
            # torch's own pool and the BLAS/OpenMP pools numpy and scipy use (float64 norms, solves)
            torch.set_num_threads(task.threads)
            threadpool_limits(task.threads)
        try:
            run_id = led.cell_run(task.sweep_id, c["key"])
            if run_id is not None:
                run = led.run(run_id)
                out.run_id = run_id
                if run.status in FINISHED:
                    out.outcome, out.status, out.steps = "skipped", run.status, run.step_count
                    return out
                owner = led.run_owner(run_id)
                if owner is not None and owner[1]:
                    out.outcome, out.status = "busy", run.status
                    out.error = f"its run {run_id} is being written by {owner[0].describe()}"
                    return out
                led.acquire_run(run_id)          # refused at once if another process took it meanwhile
                try:
                    opts = ReplayOptions.from_config((run.config or {}).get("options", {}))
                    opts.progress = False
                    session = self.session(c["model"])
                    if session.base_model_id != run.base_model_id:
                        raise UserError(f"cell {c['label']}: run {run_id} was recorded on another base model "
                                        f"than {c['model']!r} loads now")
                    replayer = Replayer(session, opts, on_step=self._step_hook(c))
                except BaseException:
                    led.release_run(run_id)
                    raise
                replayer.resume(run_id)
                out.outcome, out.timing = "resumed", _rounded(replayer.timing)
            else:
                opts = ReplayOptions.from_config(c["options"])
                opts.progress = False
                session = self.session(c["model"])
                replayer = Replayer(session, opts, on_step=self._step_hook(c))
                steps = [Step.from_dict(d) for d in c["stream_steps"]]
                out.run_id = replayer.start(
                    steps, stream_name=c["stream_name"], stream_digest=c["stream_digest"],
                    stream_kind=c["stream_kind"],
                    name=f"{task.sweep}/{c['label']}"[:200], sweep_cell=(task.sweep_id, c["key"]),
                    extra_config={"sweep": {"name": task.sweep, "torch_threads": torch.get_num_threads(),
                                            **{k: c[k] for k in (
                        "key", "label", "model", "method", "method_label", "stream", "stream_kind", "protocol",
                        "seed", "config", "stream_recipe")}}})
                out.outcome, out.timing = "done", _rounded(replayer.timing)
            run = led.run(out.run_id)
            out.status, out.steps = run.status, run.step_count
            if run.status not in FINISHED:
                out.outcome, out.error = "failed", run.note
        except CellTaken as e:
            out.outcome, out.error = "busy", str(e)
        except Exception as e:                    # a cell's failure is reported; the sweep goes on
            out.outcome, out.error = "failed", f"{type(e).__name__}: {e}"[:1000]
            if out.run_id is None:
                out.run_id = led.cell_run(task.sweep_id, c["key"])
        finally:
            out.wall_s = round(time.perf_counter() - t0, 3)
        return out

    def _step_hook(self, cell: dict):
        if self.on_step is None:
            return None
        return lambda stepno, step, records, version: self.on_step(cell["key"], stepno)


def _rounded(timing: dict) -> dict:
    return {k: round(float(v), 3) for k, v in timing.items()}


# ---- entry points of other processes ---------------------------------------------------------------
_WORKER: dict = {}


def quiet_libraries() -> None:
    """The sweep's display owns the terminal: transformers' own progress bars (a model's loading)
    and deprecation notes stay out of it. Errors still show."""
    import warnings

    import transformers  # already imported by the session module; only its logging is set here
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def worker_init(db: str, artifacts: str | None, device: str | None) -> None:
    """A worker process of the local pool: one ledger connection and one model cache for its life."""
    quiet_libraries()
    led = Ledger.open(db, create=False, artifacts=artifacts)
    _WORKER["runner"] = CellRunner(led, device=device)


def worker_run(task_json: str) -> str:
    """Run one cell in a pool worker; JSON in, JSON out."""
    return _WORKER["runner"].run(CellTask.from_json(task_json)).to_json()


def run_task_once(task_json: str) -> str:
    """Run one cell in a fresh ledger connection and model (a Ray task): JSON in, JSON out."""
    task = CellTask.from_json(task_json)
    with Ledger.open(task.db, create=False, artifacts=task.artifacts) as led:
        return CellRunner(led, device=task.device).run(task).to_json()
