"""The ledger's tables (SQLModel). The Alembic chain under ``migrations/`` must describe exactly
this schema; ``tests/test_ledger_schema.py`` checks it with ``compare_metadata``.

Conventions:
* every constraint and index is named through ``NAMING_CONVENTION`` (set on our own MetaData
  before the first table, so Alembic batch mode on SQLite can find them by name);
* timestamps are naive UTC ``datetime``s (SQLite keeps no zone);
* JSON columns hold plain dicts/lists (``sa.JSON``: TEXT on SQLite, JSON on PostgreSQL);
* these classes are also the row objects the API returns (detached, read-only by convention).

Tables: base_model, artifact, run, version, edit_request, delta, probe_result, stats_cache,
audit_finding. ``run.head_version_id`` and ``version.run_id`` point at each other, so the head
foreign key is created after both tables (``use_alter``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Our own registry/MetaData so that nothing else declared on SQLModel's global metadata leaks in.
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class LedgerTable(SQLModel, registry=registry(metadata=metadata)):
    pass


VERSION_KINDS = ("base", "edit", "revert", "reset", "branch")
RUN_STATUSES = ("running", "done", "failed", "interrupted", "stopped")
# delta kinds: simulator.deltas.DELTA_KINDS, "keyframe" (a full copy of a touched tensor) and "state" (a
# step's addition to its method's state; its ``tensor`` is the state's name, "@" + method). "adapter" is
# kept for ledgers written before method state existed (none holds such a row).
DELTA_KINDS = ("low_rank", "dense", "sparse", "adapter", "keyframe", "state")
PROBE_AGAINST = ("base", "previous", "none")
ARTIFACT_KINDS = ("delta", "keyframe", "stats", "other", "state")


class MeasuredFloat(sa.TypeDecorator):
    """A float that may be NaN (a broken model's perplexity, a diverged norm). SQLite stores NaN
    as NULL (and would break NOT NULL), so NaN is written as NULL and read back as NaN; such
    columns are nullable for that reason only. +-inf are stored as they are."""
    impl = sa.Float
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None or value != value else float(value)

    def process_result_value(self, value, dialect):
        return float("nan") if value is None else value


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in values)})"


def _col(type_: Any, *args: Any, **kw: Any) -> Any:
    """A Field backed by an explicit Column, so the migration and the model agree on types."""
    return Field(sa_column=sa.Column(type_, *args, **kw))


def _fk(target: str, **kw: Any) -> sa.ForeignKey:
    return sa.ForeignKey(target, **kw)


class BaseModelRow(LedgerTable, table=True):
    """An unedited model, identified by the content fingerprint of all its tensors."""
    __tablename__ = "base_model"
    __table_args__ = (sa.UniqueConstraint("fingerprint"),)

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    name: str = _col(sa.String(200), nullable=False)            # e.g. "gemma-3-270m", "tiny-gptj"
    source: str = _col(sa.Text, nullable=False)                 # where the weights came from (path, package)
    fingerprint: str = _col(sa.String(64), nullable=False)      # sha256 over every tensor fingerprint
    config: dict = _col(sa.JSON, nullable=False)                # model config (architecture, dtype, ...)
    created_at: datetime = _col(sa.DateTime, nullable=False)


class ArtifactRow(LedgerTable, table=True):
    """A content-addressed safetensors file under ``<home>/artifacts``."""
    __tablename__ = "artifact"
    __table_args__ = (sa.CheckConstraint(_in("kind", ARTIFACT_KINDS), name="kind"),)

    digest: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))  # sha256 of the file bytes
    kind: str = _col(sa.String(16), nullable=False)             # delta / keyframe / stats / other
    size_bytes: int = _col(sa.BigInteger, nullable=False)       # size of the file
    created_at: datetime = _col(sa.DateTime, nullable=False)


class RunRow(LedgerTable, table=True):
    """One replay of one stream with one method on one base model."""
    __tablename__ = "run"
    __table_args__ = (
        sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        sa.Index(None, "base_model_id"),
    )

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    name: Optional[str] = _col(sa.String(200), nullable=True)   # user label; default "run-<id>"
    base_model_id: int = _col(sa.Integer, _fk("base_model.id"), nullable=False)
    method: str = _col(sa.String(64), nullable=False)           # "ROME", "MEMIT", "FT", ...
    hparams: dict = _col(sa.JSON, nullable=False)               # method hyper-parameters
    stream_name: str = _col(sa.Text, nullable=False)            # stream file name / benchmark slice
    stream_digest: str = _col(sa.String(64), nullable=False)    # sha256 of the stream's canonical form
    stream_kind: str = _col(sa.String(32), nullable=False)      # one of simulator.requests.STREAM_KINDS
    config: dict = _col(sa.JSON, nullable=False)                # stream path, seed, stop conditions, probe schedule...
    status: str = _col(sa.String(16), nullable=False)           # one of RUN_STATUSES
    note: Optional[str] = _col(sa.Text, nullable=True)          # why it stopped / failed
    start_version_id: int = _col(sa.Integer, _fk("version.id", use_alter=True), nullable=False)
    head_version_id: int = _col(sa.Integer, _fk("version.id", use_alter=True), nullable=False)
    step_count: int = _col(sa.Integer, nullable=False)          # highest step recorded by record_step
    created_at: datetime = _col(sa.DateTime, nullable=False)
    updated_at: datetime = _col(sa.DateTime, nullable=False)
    # the run's one writer (a lease): who holds it, since when, last renewed (NULL: nobody). A live
    # holder on this host is checked by process id and start time, one elsewhere by the renewal time.
    owner_host: Optional[str] = _col(sa.String(255), nullable=True)
    owner_pid: Optional[int] = _col(sa.Integer, nullable=True)
    owner_started: Optional[str] = _col(sa.String(64), nullable=True)   # the process's start time (/proc)
    owner_token: Optional[str] = _col(sa.String(64), nullable=True)     # random per Ledger instance
    lease_renewed_at: Optional[datetime] = _col(sa.DateTime, nullable=True)


class VersionRow(LedgerTable, table=True):
    """One state of the weights: a node of the DAG rooted at a base model's base version."""
    __tablename__ = "version"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", VERSION_KINDS), name="kind"),
        sa.UniqueConstraint("run_id", "step"),     # one version per step of a run (0005)
        sa.Index(None, "parent_id"),
        sa.Index(None, "base_model_id", "kind"),
    )

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    base_model_id: int = _col(sa.Integer, _fk("base_model.id"), nullable=False)
    run_id: Optional[int] = _col(sa.Integer, _fk("run.id"), nullable=True)       # NULL for the base version
    parent_id: Optional[int] = _col(sa.Integer, _fk("version.id"), nullable=True)  # NULL for the base version
    step: int = _col(sa.Integer, nullable=False)                # step number in the run's stream (0 = base)
    kind: str = _col(sa.String(16), nullable=False)             # one of VERSION_KINDS
    tensor_fingerprints: dict = _col(sa.JSON, nullable=False)   # tensor name -> sha256 of every touched tensor
    n_requests: int = _col(sa.Integer, nullable=False)          # edit requests applied at this step
    diagnostics: dict = _col(sa.JSON, nullable=False)           # per editor call: final loss, norms, ...
    stats_used: list = _col(sa.JSON, nullable=False)            # digests of second-moment artifacts used
    wall_time_s: float = _col(sa.Float, nullable=False)         # editor wall time for the step
    note: Optional[str] = _col(sa.Text, nullable=True)          # revert/reset/branch explanation
    created_at: datetime = _col(sa.DateTime, nullable=False)


class EditRequestRow(LedgerTable, table=True):
    """One fact change applied at a version (a batch step has several, ordered by position)."""
    __tablename__ = "edit_request"
    __table_args__ = (
        sa.UniqueConstraint("version_id", "position"),
        sa.Index(None, "subject"),
        sa.Index(None, "group"),
    )

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    version_id: int = _col(sa.Integer, _fk("version.id", ondelete="CASCADE"), nullable=False)
    position: int = _col(sa.Integer, nullable=False)            # index in the step's request list
    subject: str = _col(sa.Text, nullable=False)
    prompt: str = _col(sa.Text, nullable=False)                 # template with "{}" for the subject
    target_new: str = _col(sa.Text, nullable=False)
    target_old: Optional[str] = _col(sa.Text, nullable=True)
    relation: Optional[str] = _col(sa.String(64), nullable=True)
    case_id: Optional[str] = _col(sa.String(128), nullable=True)
    group: Optional[str] = _col(sa.String(128), nullable=True)  # stream group: round pair, conflict pair, case
    role: Optional[str] = _col(sa.String(32), nullable=True)    # role in the group: forward/back, first/second
    extra: dict = _col(sa.JSON, nullable=False)                 # any other keys of the request dict


class DeltaRow(LedgerTable, table=True):
    """What one version did to one tensor (or a keyframe: a full copy of a touched tensor; or a step's
    addition to its method's state, kind "state")."""
    __tablename__ = "delta"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", DELTA_KINDS), name="kind"),
        sa.UniqueConstraint("version_id", "position"),
        sa.Index(None, "artifact_digest"),
        sa.Index(None, "tensor"),
    )

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    version_id: int = _col(sa.Integer, _fk("version.id", ondelete="CASCADE"), nullable=False)
    position: int = _col(sa.Integer, nullable=False)            # apply order within the version
    tensor: str = _col(sa.String(255), nullable=False)          # state-dict name of the tensor it changes
    kind: str = _col(sa.String(16), nullable=False)             # one of DELTA_KINDS
    artifact_digest: str = _col(sa.String(64), _fk("artifact.digest"), nullable=False)
    shape: list = _col(sa.JSON, nullable=False)                 # shape of the tensor it changes
    rank: Optional[int] = _col(sa.Integer, nullable=True)       # low-rank deltas only
    norm: float = _col(MeasuredFloat, nullable=True)            # Frobenius norm (float64); NaN stored as NULL
    nbytes: int = _col(sa.BigInteger, nullable=False)           # bytes of the stored factors
    meta: dict = _col(sa.JSON, nullable=False)


class ProbeResultRow(LedgerTable, table=True):
    """One measurement at one version; run_id and step copied from the version for fast trajectories."""
    __tablename__ = "probe_result"
    __table_args__ = (
        sa.CheckConstraint(_in("against", PROBE_AGAINST), name="against"),
        # trajectories and the timeline's efficacy column read only this index (it covers them)
        sa.Index("ix_probe_result_trajectory", "run_id", "suite", "metric", "step", "version_id",
                 "against", "value"),
        sa.Index(None, "version_id"),
    )

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    version_id: int = _col(sa.Integer, _fk("version.id", ondelete="CASCADE"), nullable=False)
    run_id: Optional[int] = _col(sa.Integer, _fk("run.id"), nullable=True)  # NULL when probing a base version
    step: int = _col(sa.Integer, nullable=False)
    suite: str = _col(sa.String(64), nullable=False)
    metric: str = _col(sa.String(64), nullable=False)
    against: str = _col(sa.String(16), nullable=False)          # base / previous / none
    value: float = _col(MeasuredFloat, nullable=True)           # NaN stored as NULL (see MeasuredFloat)
    count: int = _col(sa.Integer, nullable=False)               # prompts/items aggregated
    detail: Optional[Any] = _col(sa.JSON, nullable=True)        # per-prompt detail
    created_at: datetime = _col(sa.DateTime, nullable=False)


class StatsCacheRow(LedgerTable, table=True):
    """Second-moment statistics of one layer, computed once per (model, layer, corpus, samples)."""
    __tablename__ = "stats_cache"
    __table_args__ = (
        # explicit name: the convention's would exceed PostgreSQL's 63-character identifiers
        sa.UniqueConstraint("model_fingerprint", "layer", "corpus_digest", "sample_count",
                            name="uq_stats_cache_key"),
        sa.Index(None, "artifact_digest"),
    )

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    model_fingerprint: str = _col(sa.String(64), nullable=False)
    layer: str = _col(sa.String(255), nullable=False)           # module name the statistics belong to
    corpus_digest: str = _col(sa.String(64), nullable=False)
    sample_count: int = _col(sa.Integer, nullable=False)
    artifact_digest: str = _col(sa.String(64), _fk("artifact.digest"), nullable=False)
    created_at: datetime = _col(sa.DateTime, nullable=False)


class AuditFindingRow(LedgerTable, table=True):
    """An audit's verdict that one version (edit) caused a degradation, with its evidence."""
    __tablename__ = "audit_finding"
    __table_args__ = (sa.Index(None, "run_id"), sa.Index(None, "version_id"))

    id: Optional[int] = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    run_id: int = _col(sa.Integer, _fk("run.id", ondelete="CASCADE"), nullable=False)
    version_id: Optional[int] = _col(sa.Integer, _fk("version.id"), nullable=True)
    metric: str = _col(sa.String(128), nullable=False)
    score: float = _col(MeasuredFloat, nullable=True)
    evidence: Any = _col(sa.JSON, nullable=False)
    summary: str = _col(sa.Text, nullable=False)
    created_at: datetime = _col(sa.DateTime, nullable=False)


TABLES = [BaseModelRow, ArtifactRow, RunRow, VersionRow, EditRequestRow, DeltaRow,
          ProbeResultRow, StatsCacheRow, AuditFindingRow]
