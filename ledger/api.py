"""The ``Ledger``: the one API the simulator, the audit, the CLI and the TUI use to read and write
the record of edits.

A step is one transaction: every artifact it references is written first (atomic, fsync'd,
content-addressed), then one database transaction inserts the version, its edit requests, deltas
and probes and moves the run's head. A crash in between leaves at most an orphan artifact, which
``fsck`` lists. Row objects returned are the SQLModel classes of ``ledger.schema``, detached from
any session: read them, do not modify them.

No torch at import time: it is imported inside the functions that write or read tensors.
"""
from __future__ import annotations

import contextlib
import gc
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ledger import fsck as _fsck
from ledger import lease, migrate
from ledger.artifacts import META_PREFIX, ArtifactCorrupt, ArtifactMissing, ArtifactStore
from ledger.chain import ChainDelta, ChainStep, CheckoutChain, chain_queries
from ledger.engine import BEGIN_IMMEDIATE, check_sqlite_file, is_sqlite, make_engine, resolve, sqlite_path
from ledger.errors import InputError, IntegrityError, RunBusy, UserError
from ledger.failures import translated
from ledger.fsck import FsckReport, RepairResult
from ledger.records import DeltaInput, ProbeRecord
from ledger.schema import (
    DELTA_KINDS, PROBE_AGAINST, RUN_STATUSES, VERSION_KINDS, ArtifactRow, AuditFindingRow,
    BaseModelRow, DeltaRow, EditRequestRow, ProbeResultRow, RunRow, StatsCacheRow, VersionRow, utcnow,
)
from ledger.values import against_rank

if TYPE_CHECKING:
    import torch

REQUEST_KEYS = ("subject", "prompt", "target_new", "target_old", "relation", "case_id")
EFFICACY = ("rewrite", "efficacy_top1")   # (suite, metric) the timeline shows as "efficacy"


class RunSummary(NamedTuple):
    id: int
    name: str | None
    base_model_id: int
    model_name: str
    method: str
    stream_name: str
    stream_kind: str
    status: str
    steps: int                     # highest step recorded
    head_version_id: int
    created_at: datetime
    updated_at: datetime


class TimelineRow(NamedTuple):
    # A NamedTuple, without timestamps (version(id).created_at has them): converting 10,000
    # datetimes and building 10,000 dataclasses cost more than the query itself.
    version_id: int
    parent_id: int | None
    step: int
    kind: str                      # base / edit / revert / reset / branch
    n_requests: int
    subject: str | None            # first request of the step (a batch step has n_requests)
    target_old: str | None
    target_new: str | None
    group: str | None
    role: str | None
    wall_time_s: float
    note: str | None
    efficacy: float | None         # EFFICACY probe value if recorded (against "none" preferred)


@contextlib.contextmanager
def _gc_paused():
    """Building 10,000 row objects triggers Python's cyclic GC several times, each pass walking
    every object in the process (SQLAlchemy alone holds ~10^5); pausing it halves the median
    time of a 10,000-version timeline. Rows hold no reference cycles, so nothing is deferred
    that matters."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _jsonable(x: Any, what: str) -> Any:
    try:
        json.dumps(x, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} is not JSON-serialisable ({e}); pass plain dicts, lists, numbers and strings") from None
    return x


class Ledger:
    """Open with ``Ledger.open(db)``; use as a context manager or call ``close()``."""

    def __init__(self, url: str, home: Path, engine: sa.Engine):
        self.url = url
        self.home = Path(home)
        self.engine = engine
        self.store = ArtifactStore(self.home / "artifacts")
        self._sqlite = is_sqlite(url)
        self._token = uuid.uuid4().hex      # names this instance as a run's owner (ledger.lease)

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(cls, db: str | None = None, *, create: bool = True) -> "Ledger":
        """Resolve ``db`` (see ``ledger.resolve``) and check the schema. A ledger that does not
        exist yet is created at head when ``create``; one that is behind or ahead raises SchemaError."""
        url, home = resolve(db)
        with translated(url):
            return cls._open(url, home, create)

    @classmethod
    def _open(cls, url: str, home: Path, create: bool) -> "Ledger":
        path = sqlite_path(url)
        if path is not None:
            check_sqlite_file(path)
        if path is None and is_sqlite(url):   # in-memory (tests, scratch): lives as long as its engine
            engine = make_engine(url)
            migrate.upgrade(url, engine=engine)
            return cls(url, home, engine)
        if path is not None and not path.exists():
            if not create:
                raise InputError(f"no ledger at {path}: run a replay, or `editledger --db {path} db upgrade` "
                                 "to create an empty one (or check --db / EDITLEDGER_DB / EDITLEDGER_HOME)")
            migrate.upgrade(url)
        else:
            found = migrate.current_revision(url)
            if found == (None, False) and create:
                migrate.upgrade(url)   # an empty database (e.g. a fresh PostgreSQL database)
            else:
                migrate.check(url, found)
        return cls(url, home, make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def _write(self):
        """A session in one write transaction, committed on exit. On SQLite it starts with BEGIN
        IMMEDIATE: a deferred transaction that reads first and then finds another process
        (a replay, the TUI) committed meanwhile fails with "database is locked" at once, instead
        of waiting for the busy timeout. Database errors a user can meet (a full disk, a read-only
        file, a damaged page) become UserErrors (``ledger.failures``)."""
        with translated(self.url), self.engine.connect() as conn:
            if self._sqlite:
                conn.info[BEGIN_IMMEDIATE] = True
            try:
                with Session(bind=conn, expire_on_commit=False) as s, s.begin():
                    yield s
            finally:
                conn.info.pop(BEGIN_IMMEDIATE, None)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _get(s: Session, cls, key, what: str):
        row = s.get(cls, key)
        if row is None:
            raise InputError(f"{what} {key} does not exist in this ledger; `editledger db status` lists the "
                             "runs (or check --db)")
        return row

    def _write_artifact(self, tensors: dict[str, "torch.Tensor"], kind: str, meta: dict[str, Any]) -> tuple[str, int]:
        meta = {f"{META_PREFIX}{k}": v for k, v in meta.items() if v is not None}
        meta[f"{META_PREFIX}artifact_kind"] = kind
        return self.store.write(tensors, meta)

    @staticmethod
    def _ensure_artifact_row(s: Session, digest: str, kind: str, size: int) -> None:
        if s.get(ArtifactRow, digest) is None:
            s.add(ArtifactRow(digest=digest, kind=kind, size_bytes=size, created_at=utcnow()))
            s.flush()

    # ------------------------------------------------------------------ base models
    def register_base_model(self, name: str, source: str, fingerprint: str, config: dict,
                            tensor_fingerprints: dict[str, str] | None = None) -> BaseModelRow:
        """Idempotent on ``fingerprint``: returns the existing row when the model is known.
        Also creates the model's one base version (step 0, no run, no parent)."""
        _jsonable(config, "the model config")
        try:
            return self._register_base_model(name, source, fingerprint, config, tensor_fingerprints)
        except sa.exc.IntegrityError:   # another process registered it in between: use theirs
            return self._register_base_model(name, source, fingerprint, config, tensor_fingerprints)

    def _register_base_model(self, name, source, fingerprint, config, tensor_fingerprints) -> BaseModelRow:
        with self._write() as s:
            row = s.execute(sa.select(BaseModelRow).where(BaseModelRow.fingerprint == fingerprint)).scalar_one_or_none()
            if row is not None:
                return row
            row = BaseModelRow(name=name, source=source, fingerprint=fingerprint, config=config,
                               created_at=utcnow())
            s.add(row)
            s.flush()
            s.add(VersionRow(base_model_id=row.id, run_id=None, parent_id=None, step=0, kind="base",
                             tensor_fingerprints=dict(tensor_fingerprints or {}), n_requests=0,
                             diagnostics={}, stats_used=[], wall_time_s=0.0, note=None, created_at=utcnow()))
        return row

    def base_models(self) -> list[BaseModelRow]:
        with self._session() as s:
            return list(s.execute(sa.select(BaseModelRow).order_by(BaseModelRow.id)).scalars())

    def base_model(self, base_model_id: int) -> BaseModelRow:
        with self._session() as s:
            return self._get(s, BaseModelRow, base_model_id, "base model")

    def base_version(self, base_model_id: int) -> VersionRow:
        with self._session() as s:
            row = s.execute(sa.select(VersionRow).where(VersionRow.base_model_id == base_model_id,
                                                        VersionRow.kind == "base")).scalar_one_or_none()
            if row is None:
                raise InputError(f"base model {base_model_id} is not registered in this ledger")
            return row

    # ------------------------------------------------------------------ runs
    def begin_run(self, *, base_model_id: int, method: str, hparams: dict, stream_name: str,
                  stream_digest: str, stream_kind: str, config: dict | None = None,
                  parent_version_id: int | None = None, name: str | None = None, own: bool = False) -> RunRow:
        """A new run, status "running", whose head is ``parent_version_id`` (default: the base
        version; a branch passes a version of another run of the same base model). ``own``: this
        ledger instance holds the run's lease from the start (a replay; release it with ``release_run``)."""
        _jsonable(hparams, "hparams")
        _jsonable(config or {}, "the run config")
        start = parent_version_id if parent_version_id is not None else self.base_version(base_model_id).id
        with self._write() as s:
            v = self._get(s, VersionRow, start, "version")
            if v.base_model_id != base_model_id:
                raise InputError(f"version {start} belongs to base model {v.base_model_id}, not {base_model_id}; "
                                 "a branch starts from a version of the same base model")
            now = utcnow()
            run = RunRow(name=name, base_model_id=base_model_id, method=method, hparams=hparams,
                         stream_name=stream_name, stream_digest=stream_digest, stream_kind=stream_kind,
                         config=dict(config or {}), status="running", note=None, start_version_id=start,
                         head_version_id=start, step_count=0, created_at=now, updated_at=now)
            if own:
                lease.Owner.me(self._token, now).write_to(run)
            s.add(run)
            s.flush()
            if run.name is None:
                run.name = f"run-{run.id}"
        return run

    def set_run_status(self, run_id: int, status: str, note: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise InputError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")
        with self._write() as s:
            run = self._get(s, RunRow, run_id, "run")
            now = utcnow()
            self._check_writer(run, now)
            run.status = status
            if note is not None:
                run.note = note
            run.updated_at = now

    # ------------------------------------------------------------------ the run's one writer
    def acquire_run(self, run_id: int) -> None:
        """Take the run's lease (``ledger.lease``): refused with RunBusy while another live
        process holds it; a dead holder's lease is taken over."""
        with self._write() as s:
            run = self._get(s, RunRow, run_id, "run")
            now = utcnow()
            self._check_writer(run, now)
            lease.Owner.me(self._token, now).write_to(run)

    def release_run(self, run_id: int) -> None:
        """Give the lease back (a no-op unless this instance holds it). Never fails: a lease that
        could not be given back (a full disk) belongs to a process that is about to end, and the
        next writer takes over a dead owner's lease."""
        try:
            with self._write() as s:
                run = s.get(RunRow, run_id)
                if run is not None and run.owner_token == self._token:
                    lease.clear(run)
        except UserError:
            pass

    def run_owner(self, run_id: int) -> tuple[lease.Owner, bool] | None:
        """(owner, alive now) of the run's lease, or None when nobody holds it."""
        owner = lease.Owner.of(self.run(run_id))
        return None if owner is None else (owner, owner.alive(utcnow()))

    def mark_interrupted_if_dead(self, run_id: int) -> bool:
        """A run left "running" by a writer that is gone becomes "interrupted" (fsck --repair)."""
        with self._write() as s:
            run = self._get(s, RunRow, run_id, "run")
            owner = lease.Owner.of(run)
            if run.status != "running" or (owner is not None and owner.alive(utcnow())):
                return False
            who = f" (its writer, {owner.describe()}, is gone)" if owner else ""
            run.status, run.note = "interrupted", f"marked interrupted by `db fsck --repair`{who}; resume it"
            lease.clear(run)
            run.updated_at = utcnow()
            return True

    def _check_writer(self, run: RunRow, now: datetime | None) -> None:
        """Refuse to change ``run`` while another live process owns it; renew our own lease (when
        ``now`` is given: inside the write transaction). The clock is read only when needed."""
        owner = lease.Owner.of(run)
        if owner is None:
            return
        if owner.token == self._token:
            if now is not None:
                run.lease_renewed_at = now
            return
        if owner.alive(now or utcnow()):
            raise RunBusy(f"run {run.id} is being written by {owner.describe()}: one writer at a time. "
                          f"Wait for it to finish (or stop it), then try again; `editledger log {run.id}` "
                          "shows what it has recorded so far")

    def record_step(self, run_id: int, *, step: int, parent_version_id: int, kind: str = "edit",
                    requests: Sequence[dict], deltas: Sequence[DeltaInput], tensor_fingerprints: dict[str, str],
                    diagnostics: dict, wall_time_s: float, probes: Iterable[ProbeRecord] = (),
                    stats_used: Sequence[str] = (), keyframe: dict[str, "torch.Tensor"] | None = None,
                    group: str | None = None, role: str | None = None, note: str | None = None,
                    base_fingerprint: str = "") -> VersionRow:
        """Record one step: artifacts first, then one transaction (version, requests, deltas,
        keyframe rows, probes, run head and step count). Returns the new version."""
        if kind not in ("edit", "revert"):
            raise InputError(f"record_step records edit and revert versions, not {kind!r} (markers go through add_marker)")
        _jsonable(diagnostics, "step diagnostics")
        probes = self._checked_probes(probes)
        for d in deltas:
            if d.kind not in DELTA_KINDS or d.kind == "keyframe":
                raise InputError(f"delta for {d.tensor}: unknown kind {d.kind!r}; use one of "
                                 f"{', '.join(k for k in DELTA_KINDS if k != 'keyframe')}")
        for r in requests:
            missing = [k for k in ("subject", "prompt", "target_new") if k not in r]
            if missing:
                raise InputError(f"edit request {r!r} lacks {missing} (pass EditRequest.to_dict())")

        # 0. a refused writer writes nothing (the transaction checks again: this is only the cheap early no)
        with self._session() as s:
            self._check_writer(self._get(s, RunRow, run_id, "run"), None)
        # 1. artifacts, each written atomically before any row can reference it
        written: list[tuple[str, int | None]] = []
        for d in deltas:
            if d.artifact is not None:      # reuse (a revert re-applies stored deltas): checked in the transaction
                written.append((d.artifact, None))
                continue
            state = d.kind == "state"
            written.append(self._write_artifact(d.tensors, "state" if state else "delta", {
                "run": run_id, "step": step, "tensor": d.tensor, "kind": d.kind,
                "base_fingerprint": base_fingerprint, "state": d.payload if state else None}))
        kf_written: list[tuple[str, str, list[int], float, int, int]] = []
        for tname, t in (keyframe or {}).items():
            digest, size = self._write_artifact({tname: t}, "keyframe", {
                "run": run_id, "step": step, "tensor": tname, "kind": "keyframe",
                "base_fingerprint": base_fingerprint})
            kf_written.append((tname, digest, list(t.shape), float(t.detach().double().norm()),
                               t.numel() * t.element_size(), size))

        # 2. one transaction
        with self._write() as s:
            now = utcnow()
            run, v = self._new_version(s, run_id, parent_version_id, now, step=step, kind=kind,
                                       tensor_fingerprints=dict(tensor_fingerprints), n_requests=len(requests),
                                       diagnostics=diagnostics, stats_used=list(stats_used),
                                       wall_time_s=float(wall_time_s), note=note)
            for i, r in enumerate(requests):
                s.add(EditRequestRow(version_id=v.id, position=i, subject=r["subject"], prompt=r["prompt"],
                                     target_new=r["target_new"], target_old=r.get("target_old"),
                                     relation=r.get("relation"), case_id=r.get("case_id"),
                                     group=r.get("group", group), role=r.get("role", role),
                                     extra={k: x for k, x in r.items()
                                            if k not in REQUEST_KEYS + ("group", "role")}))
            pos = 0
            for d, (digest, size) in zip(deltas, written):
                if size is None:
                    used = s.execute(sa.select(DeltaRow.nbytes).where(DeltaRow.artifact_digest == digest)
                                     .limit(1)).scalar_one_or_none()
                    if used is None:
                        raise IntegrityError(f"delta artifact {digest} is not in this ledger; a reused delta "
                                             "must name an artifact another version already uses")
                    nbytes = used
                else:
                    self._ensure_artifact_row(s, digest, "state" if d.kind == "state" else "delta", size)
                    nbytes = sum(t.numel() * t.element_size() for t in d.tensors.values()) + len(d.payload or "")
                s.add(DeltaRow(version_id=v.id, position=pos, tensor=d.tensor, kind=d.kind,
                               artifact_digest=digest, shape=[int(x) for x in d.shape], rank=d.rank,
                               norm=float(d.norm), nbytes=int(nbytes), meta=_jsonable(dict(d.meta), "delta meta")))
                pos += 1
            for tname, digest, shape, norm, nbytes, size in kf_written:
                self._ensure_artifact_row(s, digest, "keyframe", size)
                s.add(DeltaRow(version_id=v.id, position=pos, tensor=tname, kind="keyframe",
                               artifact_digest=digest, shape=shape, rank=None, norm=norm, nbytes=nbytes, meta={}))
                pos += 1
            self._add_probes(s, v, probes, now)
            run.head_version_id = v.id
            run.step_count = max(run.step_count, step)
            run.updated_at = now
        return v

    @staticmethod
    def _checked_probes(probes: Iterable[ProbeRecord]) -> list[ProbeRecord]:
        probes = list(probes)
        for p in probes:
            if p.against not in PROBE_AGAINST:
                raise InputError(f"probe {p.suite}/{p.metric}: against={p.against!r}; use one of {', '.join(PROBE_AGAINST)}")
            _jsonable(p.detail, f"probe {p.suite}/{p.metric} detail")
        return probes

    @staticmethod
    def _add_probes(s: Session, v: VersionRow, probes: list[ProbeRecord], now: datetime) -> None:
        if probes:
            s.execute(sa.insert(ProbeResultRow.__table__), [
                dict(version_id=v.id, run_id=v.run_id, step=v.step, suite=p.suite, metric=p.metric,
                     against=p.against, value=float(p.value), count=int(p.count), detail=p.detail,
                     created_at=now) for p in probes])

    def _new_version(self, s: Session, run_id: int, parent_version_id: int, now: datetime,
                     **fields) -> tuple[RunRow, VersionRow]:
        """Insert a version of ``run_id`` under ``parent_version_id`` (same base model) and flush it."""
        run = self._get(s, RunRow, run_id, "run")
        self._check_writer(run, now)
        taken = s.execute(sa.select(VersionRow.id).where(VersionRow.run_id == run_id,
                                                          VersionRow.step == fields["step"])).scalar_one_or_none()
        if taken is not None:
            raise IntegrityError(f"run {run_id} already has a step {fields['step']} (version {taken}); step "
                                 "numbers are unique within a run. See `editledger log "
                                 f"{run_id}`; continue from an earlier step with `editledger branch`")
        parent = self._get(s, VersionRow, parent_version_id, "version")
        if parent.base_model_id != run.base_model_id:
            raise InputError(f"version {parent_version_id} belongs to another base model than run {run_id}; "
                             "a run's versions stay on its own base model")
        v = VersionRow(base_model_id=run.base_model_id, run_id=run_id, parent_id=parent_version_id,
                       created_at=now, **fields)
        s.add(v)
        s.flush()
        return run, v

    def add_marker(self, run_id: int, *, kind: str, parent_version_id: int, step: int,
                   tensor_fingerprints: dict[str, str], note: str) -> VersionRow:
        """A reset or branch marker (no deltas): a version whose weights equal its parent's; moves head."""
        if kind not in ("reset", "branch"):
            raise InputError(f"markers are 'reset' or 'branch', not {kind!r}")
        with self._write() as s:
            now = utcnow()
            run, v = self._new_version(s, run_id, parent_version_id, now, step=step, kind=kind,
                                       tensor_fingerprints=dict(tensor_fingerprints), n_requests=0,
                                       diagnostics={}, stats_used=[], wall_time_s=0.0, note=note)
            run.head_version_id = v.id
            run.updated_at = now
        return v

    def seal_version(self, version_id: int, tensor_fingerprints: dict[str, str]) -> None:
        """Record the fingerprints of a version made without the model (a revert) the first time it
        is materialised; a sealed version is never resealed (later checkouts verify against it)."""
        with self._write() as s:
            v = self._get(s, VersionRow, version_id, "version")
            if v.tensor_fingerprints:
                raise IntegrityError(f"version {version_id} is already sealed; its fingerprints are not rewritten")
            v.tensor_fingerprints = dict(tensor_fingerprints)

    def set_head(self, run_id: int, version_id: int) -> None:
        with self._write() as s:
            run = self._get(s, RunRow, run_id, "run")
            now = utcnow()
            self._check_writer(run, now)
            v = self._get(s, VersionRow, version_id, "version")
            if v.base_model_id != run.base_model_id:
                raise InputError(f"version {version_id} is a version of another base model; "
                                 f"run {run_id}'s head must stay on base model {run.base_model_id}")
            run.head_version_id = version_id
            run.updated_at = now

    def record_probes(self, version_id: int, probes: Iterable[ProbeRecord]) -> None:
        probes = self._checked_probes(probes)
        with self._write() as s:
            v = self._get(s, VersionRow, version_id, "version")
            self._add_probes(s, v, probes, utcnow())

    # ------------------------------------------------------------------ reading
    def run(self, run_id: int) -> RunRow:
        with self._session() as s:
            return self._get(s, RunRow, run_id, "run")

    def runs(self) -> list[RunSummary]:
        r, b = RunRow.__table__.c, BaseModelRow.__table__.c
        q = (sa.select(r.id, r.name, r.base_model_id, b.name, r.method, r.stream_name, r.stream_kind,
                       r.status, r.step_count, r.head_version_id, r.created_at, r.updated_at)
             .join_from(RunRow.__table__, BaseModelRow.__table__, r.base_model_id == b.id).order_by(r.id))
        with self.engine.connect() as c:
            return [RunSummary(*row) for row in c.execute(q)]

    def version(self, version_id: int) -> VersionRow:
        with self._session() as s:
            return self._get(s, VersionRow, version_id, "version")

    def lineage(self, version_id: int) -> list[VersionRow]:
        """Root (base version) .. ``version_id``, following parents across runs (one recursive query)."""
        v = VersionRow.__table__
        anc = sa.select(v.c.id, v.c.parent_id, sa.literal(0).label("depth")).where(v.c.id == version_id) \
            .cte("anc", recursive=True)
        anc = anc.union_all(sa.select(v.c.id, v.c.parent_id, (anc.c.depth + 1).label("depth"))
                            .join(anc, v.c.id == anc.c.parent_id))
        q = sa.select(VersionRow).join(anc, VersionRow.id == anc.c.id).order_by(anc.c.depth.desc())
        with self._session() as s, _gc_paused():
            rows = list(s.execute(q).scalars())
        if not rows:
            raise InputError(f"version {version_id} does not exist in this ledger")
        return rows

    def lineage_deltas(self, version_id: int) -> list[tuple[VersionRow, list[DeltaRow], dict[str, str] | None]]:
        """``lineage`` with each version's deltas (apply order) and keyframe (tensor -> digest, or
        None), in three queries whatever the length: what a checkout needs."""
        lin = self.lineage(version_id)
        ids = [v.id for v in lin]
        by_v: dict[int, list[DeltaRow]] = {i: [] for i in ids}
        kf: dict[int, dict[str, str]] = {}
        with self._session() as s, _gc_paused():
            for chunk in range(0, len(ids), 500):   # stay under SQLite's bound-parameter limit
                q = sa.select(DeltaRow).where(DeltaRow.version_id.in_(ids[chunk:chunk + 500])) \
                    .order_by(DeltaRow.version_id, DeltaRow.position)
                for d in s.execute(q).scalars():
                    if d.kind == "keyframe":
                        kf.setdefault(d.version_id, {})[d.tensor] = d.artifact_digest
                    else:
                        by_v[d.version_id].append(d)
        return [(v, by_v[v.id], kf.get(v.id)) for v in lin]

    # ------------------------------------------------------------------ checkout chain (fast path)
    # What a checkout reads, as plain tuples from one recursive query (no ORM rows): every version
    # of the lineage with its parent, deltas in apply order and keyframe, plus the target's
    # fingerprints. A version never changes once committed (only an unsealed revert gains its
    # fingerprints, once), so the simulator's session keeps what it read (simulator.checkout).
    def checkout_chain(self, version_id: int) -> CheckoutChain:
        """Root (base version) .. ``version_id`` as ``ChainStep``s, and the target's fingerprints."""
        q, fq = chain_queries()
        with self.engine.connect() as c:
            rows = c.execute(q, {"vid": version_id}).all()
            fps = c.execute(fq, {"vid": version_id}).scalar()
        if not rows:
            raise InputError(f"version {version_id} does not exist in this ledger")
        steps: list[ChainStep] = []
        cur = None
        for vid, parent, tensor, kind, digest in rows:
            if cur is None or cur[0] != vid:
                cur = (vid, parent, [], {})
                steps.append(cur)
            if kind == "keyframe":
                cur[3][tensor] = digest
            elif kind is not None:
                cur[2].append(ChainDelta(tensor, kind, digest))
        return CheckoutChain([ChainStep(vid, parent, tuple(ds), kf or None) for vid, parent, ds, kf in steps],
                             dict(fps or {}))

    def version_fingerprints(self, version_id: int) -> dict[str, str]:
        """The tensor (and method-state) fingerprints recorded for a version; empty while unsealed."""
        with self.engine.connect() as c:
            fps = c.execute(chain_queries()[1], {"vid": version_id}).scalar()
        if fps is None:
            raise InputError(f"version {version_id} does not exist in this ledger")
        return dict(fps)
    # ------------------------------------------------------------------ (end of checkout chain)

    def versions(self, run_id: int) -> list[VersionRow]:
        with self._session() as s, _gc_paused():
            q = sa.select(VersionRow).where(VersionRow.run_id == run_id).order_by(VersionRow.step, VersionRow.id)
            return list(s.execute(q).scalars())

    def timeline(self, run_id: int, *, efficacy: tuple[str, str] = EFFICACY) -> list[TimelineRow]:
        """Every version of the run in (step, id) order with its first request and the efficacy
        probe. Two queries: versions joined with their first request, and the efficacy values
        read from the covering trajectory index (a per-version subquery or a join against a
        derived table is several times slower on SQLite)."""
        v, er, pr = VersionRow.__table__.c, EditRequestRow.__table__.c, ProbeResultRow.__table__.c
        q = (sa.select(v.id, v.parent_id, v.step, v.kind, v.n_requests, er.subject, er.target_old,
                       er.target_new, er.group, er.role, v.wall_time_s, v.note)
             .select_from(VersionRow.__table__)
             .outerjoin(EditRequestRow.__table__, sa.and_(er.version_id == v.id, er.position == 0))
             .where(v.run_id == run_id)
             .order_by(v.step, v.id))
        qe = sa.select(pr.version_id, pr.against, pr.value).where(
            pr.run_id == run_id, pr.suite == efficacy[0], pr.metric == efficacy[1])
        with self.engine.connect() as c, _gc_paused():
            rows = c.execute(q).all()
            rank: dict[int, int] = {}
            best: dict[int, float] = {}
            for vid, against, value in c.execute(qe).all():
                r = against_rank(against)
                if r < rank.get(vid, r + 1):
                    rank[vid], best[vid] = r, value
            make, get = TimelineRow._make, best.get
            return [make((*r, get(r[0]))) for r in rows]

    def deltas(self, version_id: int) -> list[DeltaRow]:
        """The version's deltas in apply order (keyframe rows excluded: see ``keyframe``)."""
        with self._session() as s:
            q = sa.select(DeltaRow).where(DeltaRow.version_id == version_id, DeltaRow.kind != "keyframe") \
                .order_by(DeltaRow.position)
            return list(s.execute(q).scalars())

    def keyframe(self, version_id: int) -> dict[str, str] | None:
        """tensor name -> artifact digest of the full tensors stored at this version, if any."""
        with self._session() as s:
            q = sa.select(DeltaRow.tensor, DeltaRow.artifact_digest).where(
                DeltaRow.version_id == version_id, DeltaRow.kind == "keyframe").order_by(DeltaRow.position)
            rows = s.execute(q).all()
        return {t: d for t, d in rows} or None

    def versions_using(self, digest: str) -> list[int]:
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(sa.select(DeltaRow.__table__.c.version_id).distinct()
                                            .where(DeltaRow.__table__.c.artifact_digest == digest)
                                            .order_by(DeltaRow.__table__.c.version_id))]

    def read_artifact(self, digest: str) -> dict[str, "torch.Tensor"]:
        """The tensors of an artifact, verified against its digest."""
        return self.read_artifact_with_header(digest)[0]

    def read_artifact_with_header(self, digest: str) -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
        """The tensors and header metadata of an artifact, verified against its digest (one read)."""
        try:
            return self.store.read_with_header(digest)
        except (ArtifactCorrupt, ArtifactMissing) as e:
            users = sorted(_fsck.versions_needing(self, {digest}))
            with self.engine.connect() as c:
                stats = c.execute(sa.select(StatsCacheRow.__table__.c.layer).where(
                    StatsCacheRow.__table__.c.artifact_digest == digest)).scalars().all()
            who = []
            if users:
                who.append("needed by version" + ("s " if len(users) > 1 else " ") + ", ".join(map(str, users[:20]))
                           + (" ..." if len(users) > 20 else ""))
            if stats:
                who.append("holds the statistics of " + ", ".join(stats))
            who_s = "; ".join(who) or "referenced by no row"
            raise type(e)(digest, f"{e} [{who_s}]. Those versions cannot be checked out bit-exactly; "
                                  "restore the file from a backup or replay the run "
                                  "(`editledger db fsck` lists every damaged artifact)") from None

    def probes(self, version_id: int, suite: str | None = None) -> list[ProbeResultRow]:
        with self._session() as s:
            q = sa.select(ProbeResultRow).where(ProbeResultRow.version_id == version_id)
            if suite is not None:
                q = q.where(ProbeResultRow.suite == suite)
            return list(s.execute(q.order_by(ProbeResultRow.id)).scalars())

    def trajectory(self, run_id: int, suite: str, metric: str, against: str | None = None) -> list[tuple[int, float]]:
        """(step, value) of a metric over all versions of a run that recorded it, in step order
        (ties by version id). ``against=None`` returns every reference: pass
        it when a metric is recorded against several references."""
        pr = ProbeResultRow.__table__.c
        q = sa.select(pr.step, pr.value).where(pr.run_id == run_id, pr.suite == suite, pr.metric == metric)
        if against is not None:
            q = q.where(pr.against == against)
        q = q.order_by(pr.step, pr.version_id)   # the covering index's order: no sort step
        with self.engine.connect() as c, _gc_paused():
            return [(int(a), float(b)) for a, b in c.execute(q)]

    def metrics(self, run_id: int) -> list[tuple[str, str]]:
        pr = ProbeResultRow.__table__.c
        q = sa.select(pr.suite, pr.metric).where(pr.run_id == run_id).distinct().order_by(pr.suite, pr.metric)
        with self.engine.connect() as c:
            return [(a, b) for a, b in c.execute(q)]

    def edit_requests(self, version_id: int) -> list[EditRequestRow]:
        with self._session() as s:
            q = sa.select(EditRequestRow).where(EditRequestRow.version_id == version_id) \
                .order_by(EditRequestRow.position)
            return list(s.execute(q).scalars())

    def last_committed_step(self, run_id: int) -> int:
        """Highest step of an edit/revert version of the run (0 if none): where a resume continues."""
        v = VersionRow.__table__.c
        with self.engine.connect() as c:
            got = c.execute(sa.select(sa.func.max(v.step)).where(
                v.run_id == run_id, v.kind.in_(("edit", "revert")))).scalar()
        return int(got or 0)

    # ------------------------------------------------------------------ statistics cache
    def put_stats(self, *, model_fingerprint: str, layer: str, corpus_digest: str, sample_count: int,
                  tensors: dict[str, "torch.Tensor"]) -> str:
        """Store second-moment statistics; returns the artifact digest (idempotent on the key)."""
        digest, size = self._write_artifact(tensors, "stats", {
            "model_fingerprint": model_fingerprint, "layer": layer, "corpus_digest": corpus_digest,
            "sample_count": sample_count})
        with self._write() as s:
            key = self._stats_key(model_fingerprint, layer, corpus_digest, sample_count)
            row = s.execute(sa.select(StatsCacheRow).where(*key)).scalar_one_or_none()
            self._ensure_artifact_row(s, digest, "stats", size)
            if row is None:
                s.add(StatsCacheRow(model_fingerprint=model_fingerprint, layer=layer, corpus_digest=corpus_digest,
                                    sample_count=sample_count, artifact_digest=digest, created_at=utcnow()))
            else:
                row.artifact_digest = digest
        return digest

    @staticmethod
    def _stats_key(model_fingerprint, layer, corpus_digest, sample_count):
        return (StatsCacheRow.model_fingerprint == model_fingerprint, StatsCacheRow.layer == layer,
                StatsCacheRow.corpus_digest == corpus_digest, StatsCacheRow.sample_count == sample_count)

    def get_stats(self, *, model_fingerprint: str, layer: str, corpus_digest: str,
                  sample_count: int) -> tuple[str, dict] | None:
        """(digest, tensors) of cached statistics, or None; the artifact is verified on read."""
        with self._session() as s:
            row = s.execute(sa.select(StatsCacheRow).where(
                *self._stats_key(model_fingerprint, layer, corpus_digest, sample_count))).scalar_one_or_none()
        if row is None:
            return None
        return row.artifact_digest, self.read_artifact(row.artifact_digest)

    # ------------------------------------------------------------------ audit
    def record_audit(self, run_id: int, findings: list[dict]) -> None:
        """Replace the run's audit findings (an audit is recomputable; the latest one stands).
        Each finding: version_id (or None), metric, score, evidence (JSON), summary."""
        with self._write() as s:
            self._get(s, RunRow, run_id, "run")
            s.execute(sa.delete(AuditFindingRow.__table__).where(AuditFindingRow.__table__.c.run_id == run_id))
            now = utcnow()
            for f in findings:
                missing = [k for k in ("metric", "score", "summary") if k not in f]
                if missing:
                    raise InputError(f"audit finding {f!r} lacks {missing}")
                s.add(AuditFindingRow(run_id=run_id, version_id=f.get("version_id"), metric=f["metric"],
                                      score=float(f["score"]), evidence=_jsonable(f.get("evidence", {}), "evidence"),
                                      summary=f["summary"], created_at=now))

    def audit_findings(self, run_id: int) -> list[AuditFindingRow]:
        with self._session() as s:
            q = sa.select(AuditFindingRow).where(AuditFindingRow.run_id == run_id) \
                .order_by(AuditFindingRow.score.desc(), AuditFindingRow.id)
            return list(s.execute(q).scalars())

    # ------------------------------------------------------------------ integrity
    def counts(self) -> dict[str, int]:
        out = {}
        with self.engine.connect() as c:
            for name, t in (("base_models", BaseModelRow), ("runs", RunRow), ("versions", VersionRow),
                            ("deltas", DeltaRow), ("probe_results", ProbeResultRow),
                            ("artifacts", ArtifactRow), ("stats", StatsCacheRow)):
                out[name] = int(c.execute(sa.select(sa.func.count()).select_from(t.__table__)).scalar())
        return out

    def fsck(self, *, progress: bool = True) -> FsckReport:
        """Check the database, every row's references, every artifact file and every version's
        chain; list crash leftovers (see ``ledger.fsck``)."""
        with translated(self.url):
            return _fsck.check(self, progress=progress)

    def repair(self, report: FsckReport, *, min_age: float = 600.0) -> RepairResult:
        """Remove unreferenced files and rows, move misplaced artifacts back, mark dead runs
        interrupted; never deletes anything referenced (see ``ledger.fsck.repair``)."""
        with translated(self.url):
            return _fsck.repair(self, report, min_age=min_age)

    # ------------------------------------------------------------------ trained networks (issue 12: MEND)
    # A method that must be trained before it edits (MEND's hyper-network) keeps the trained network as a
    # content-addressed artifact (row kind "other", header kind "trained"); every step that edits with it
    # names its digest in ``stats_used`` and the run's hyper-parameters name it too.
    def put_trained(self, *, method: str, tensors: dict[str, "torch.Tensor"], meta: dict[str, Any]) -> str:
        """Store a trained network of ``method``; returns its digest (idempotent on content)."""
        _jsonable(meta, "trained-network metadata")
        digest, size = self._write_artifact(tensors, "trained", {"method": method, "meta": json.dumps(meta, sort_keys=True)})
        with self._write() as s:
            self._ensure_artifact_row(s, digest, "other", size)
        return digest

    def trained(self, digest: str) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
        """(tensors, metadata) of a trained network, verified against its digest."""
        with self._session() as s:
            row = s.get(ArtifactRow, digest)
        if row is None:
            raise InputError(f"no trained network {digest[:12]}… in this ledger ({self.url}); train one with "
                             "`editledger --db LEDGER train mend --model NAME --data FILE`")
        tensors, header = self.read_artifact_with_header(digest)
        if header.get(f"{META_PREFIX}artifact_kind") != "trained":
            raise InputError(f"artifact {digest[:12]}… is not a trained network (it is a "
                             f"{header.get(f'{META_PREFIX}artifact_kind', 'file')} artifact)")
        return tensors, {"method": header.get(f"{META_PREFIX}method"),
                         **json.loads(header.get(f"{META_PREFIX}meta", "{}"))}


    # ================================================================== TUI read queries
    # Added on the `tui` branch, kept together for the merge. Read-only; they return plain tuples
    # from indexed columns (no row objects, no JSON columns), so that the TUI reads a
    # 10,000-version run in milliseconds.
    def lineage_ids(self, version_id: int) -> list[tuple[int, int | None, int | None, int, str]]:
        """(id, parent_id, run_id, step, kind) from the root to ``version_id`` (one recursive query)."""
        v = VersionRow.__table__
        anc = sa.select(v.c.id, v.c.parent_id, sa.literal(0).label("depth")).where(v.c.id == version_id) \
            .cte("anc", recursive=True)
        anc = anc.union_all(sa.select(v.c.id, v.c.parent_id, (anc.c.depth + 1).label("depth"))
                            .join(anc, v.c.id == anc.c.parent_id))
        q = sa.select(v.c.id, v.c.parent_id, v.c.run_id, v.c.step, v.c.kind).join(anc, v.c.id == anc.c.id) \
            .order_by(anc.c.depth.desc())
        with self.engine.connect() as c:
            rows = [tuple(r) for r in c.execute(q)]
        if not rows:
            raise InputError(f"version {version_id} does not exist in this ledger")
        return rows

    def metric_values(self, run_id: int, suite: str, metric: str) -> list[tuple[int, int, str, float]]:
        """(version_id, step, against, value) of one metric over a run, every reference, in
        (step, version id) order; read from the covering trajectory index."""
        pr = ProbeResultRow.__table__.c
        q = sa.select(pr.version_id, pr.step, pr.against, pr.value).where(
            pr.run_id == run_id, pr.suite == suite, pr.metric == metric).order_by(pr.step, pr.version_id)
        with self.engine.connect() as c, _gc_paused():
            return c.execute(q).all()

    def probe_values(self, version_ids: Sequence[int]) -> list[tuple[int, str, str, str, float, int]]:
        """(version_id, suite, metric, against, value, count) of the versions' probes, without detail."""
        pr = ProbeResultRow.__table__.c
        out: list[tuple[int, str, str, str, float, int]] = []
        ids = list(version_ids)
        with self.engine.connect() as c:
            for chunk in range(0, len(ids), 500):   # SQLite's bound-parameter limit
                q = sa.select(pr.version_id, pr.suite, pr.metric, pr.against, pr.value, pr.count) \
                    .where(pr.version_id.in_(ids[chunk:chunk + 500])).order_by(pr.version_id, pr.id)
                out.extend(tuple(r) for r in c.execute(q))
        return out

    def probe_details(self, version_ids: Sequence[int], suite: str, metric: str,
                      against: str = "none") -> dict[int, Any]:
        """version id -> the stored per-prompt detail of one metric (versions without it are absent)."""
        pr = ProbeResultRow.__table__.c
        out: dict[int, Any] = {}
        ids = list(version_ids)
        with self.engine.connect() as c:
            for chunk in range(0, len(ids), 500):
                q = sa.select(pr.version_id, pr.detail).where(
                    pr.version_id.in_(ids[chunk:chunk + 500]), pr.suite == suite, pr.metric == metric,
                    pr.against == against)
                out.update((vid, d) for vid, d in c.execute(q) if d is not None)
        return out

    def delta_origins(self, digests: Sequence[str]) -> dict[str, tuple[int, int]]:
        """artifact digest -> (version id, step) of the edit version that first recorded it (a
        revert re-applies the same artifacts under its own version)."""
        d, v = DeltaRow.__table__.c, VersionRow.__table__.c
        out: dict[str, tuple[int, int]] = {}
        wanted = list(dict.fromkeys(digests))
        with self.engine.connect() as c:
            for chunk in range(0, len(wanted), 500):
                q = sa.select(d.artifact_digest, v.id, v.step).join_from(
                    DeltaRow.__table__, VersionRow.__table__, d.version_id == v.id).where(
                    d.artifact_digest.in_(wanted[chunk:chunk + 500]), v.kind == "edit").order_by(v.id)
                for digest, vid, step in c.execute(q):
                    out.setdefault(digest, (vid, step))
        return out

    def run_keyframes(self, run_id: int, tensor: str) -> list[tuple[int, str, float]]:
        """(version id, artifact digest, ‖W‖_F) of every keyframe of ``tensor`` in the run (a keyframe
        is the full tensor after that version's deltas; its norm is recorded with it)."""
        d, v = DeltaRow.__table__.c, VersionRow.__table__.c
        q = sa.select(v.id, d.artifact_digest, d.norm).join_from(
            DeltaRow.__table__, VersionRow.__table__, d.version_id == v.id).where(
            v.run_id == run_id, d.kind == "keyframe", d.tensor == tensor).order_by(v.step, v.id)
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(q)]
    def versions_light(self, version_ids: Sequence[int]) -> dict[int, tuple[int | None, int | None, int, str]]:
        """version id -> (parent_id, run_id, step, kind), without the JSON columns."""
        v = VersionRow.__table__.c
        out: dict[int, tuple[int | None, int | None, int, str]] = {}
        ids = list(dict.fromkeys(version_ids))
        with self.engine.connect() as c:
            for chunk in range(0, len(ids), 500):
                q = sa.select(v.id, v.parent_id, v.run_id, v.step, v.kind).where(v.id.in_(ids[chunk:chunk + 500]))
                out.update((r[0], tuple(r[1:])) for r in c.execute(q))
        return out

    def run_light(self, run_id: int) -> tuple[str | None, str, int, int]:
        """(name, method, start_version_id, head_version_id) of a run, without its config and hparams."""
        r = RunRow.__table__.c
        with self.engine.connect() as c:
            row = c.execute(sa.select(r.name, r.method, r.start_version_id, r.head_version_id)
                            .where(r.id == run_id)).first()
        if row is None:
            raise InputError(f"run {run_id} does not exist in this ledger")
        return tuple(row)
    def deltas_light(self, version_ids: Sequence[int]) -> dict[int, list[tuple[str, str, str, list, int | None, float]]]:
        """version id -> [(tensor, kind, artifact_digest, shape, rank, norm)] of its deltas in apply
        order (keyframes excluded), without the row objects: a diff across 10,000 versions."""
        d = DeltaRow.__table__.c
        out: dict[int, list] = {vid: [] for vid in version_ids}
        ids = list(out)
        with self.engine.connect() as c, _gc_paused():
            for chunk in range(0, len(ids), 500):
                q = sa.select(d.version_id, d.tensor, d.kind, d.artifact_digest, d.shape, d.rank, d.norm).where(
                    d.version_id.in_(ids[chunk:chunk + 500]), d.kind != "keyframe").order_by(d.version_id, d.position)
                for vid, *rest in c.execute(q):
                    out[vid].append(tuple(rest))
        return out
    # ================================================================== end of TUI read queries


__all__ = ["Ledger", "RunSummary", "TimelineRow", "FsckReport", "RepairResult", "UserError", "IntegrityError",
           "RunBusy"]
