"""Schema revisions: what a ledger is at, what this editledger needs, and the upgrade.

Policy (documented in the README of the ledger): a SQLite file that does not exist yet (or an
empty database) is created at head by running the migrations; an existing ledger that is behind
raises SchemaError with the exact ``editledger --db X db upgrade`` command; a ledger at a revision
this editledger does not know (written by a newer version) raises SchemaError and is not written.
"""
from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from ledger.engine import BEGIN_IMMEDIATE, is_sqlite, make_engine, sqlite_path, sqlite_readonly_engine
from ledger.errors import SchemaError

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


@functools.lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    heads = script_directory().get_heads()
    assert len(heads) == 1, f"the migration chain must be linear, found heads {heads}"
    return heads[0]


def known_revisions() -> set[str]:
    return {s.revision for s in script_directory().walk_revisions()}


def inspect_revision(conn: sa.Connection) -> tuple[str | None, bool]:
    """(current revision or None, whether the database holds any table at all)."""
    rev = MigrationContext.configure(conn).get_current_revision()
    has_tables = bool(sa.inspect(conn).get_table_names())
    return rev, has_tables


def current_revision(url: str) -> tuple[str | None, bool]:
    """Read the revision without writing anything (SQLite: a read-only connection)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None, False
    engine = sqlite_readonly_engine(path) if path is not None else make_engine(url)
    try:
        with engine.connect() as conn:
            return inspect_revision(conn)
    finally:
        engine.dispose()


def _cmd(url: str) -> str:
    path = sqlite_path(url)
    target = str(path) if path is not None else make_engine_safe_url(url)
    return f"editledger --db {target} db upgrade"


def make_engine_safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def describe(url: str) -> str:
    path = sqlite_path(url)
    return str(path) if path is not None else make_engine_safe_url(url)


def check(url: str, found: tuple[str | None, bool] | None = None) -> str:
    """Raise SchemaError unless the ledger at ``url`` is exactly at head. Returns the revision.
    ``found``: (revision, has tables) if the caller already read them."""
    rev, has_tables = found if found is not None else current_revision(url)
    head = head_revision()
    if rev == head:
        return rev
    if rev is None:
        if has_tables:
            raise SchemaError(f"{describe(url)} holds tables but no editledger schema revision: it is not "
                              "an editledger ledger; point --db at another file or database")
        raise SchemaError(f"ledger {describe(url)} is empty: run `{_cmd(url)}` to create it")
    if rev not in known_revisions():
        raise SchemaError(f"ledger {describe(url)} is at schema {rev}, which this editledger does not know "
                          f"(it needs {head}): it was written by a newer editledger; upgrade editledger "
                          "(pip install -U editledger). The ledger was not modified.")
    raise SchemaError(f"ledger {describe(url)} is at schema {rev}, this editledger needs {head}: "
                      f"run `{_cmd(url)}`")


def upgrade(url: str, revision: str = "head", *, engine: sa.Engine | None = None) -> tuple[str | None, str]:
    """Bring the ledger at ``url`` to ``revision`` (creating it if needed). Returns (before, after).
    Refuses (SchemaError, nothing written) a ledger at an unknown revision. ``engine``: use this
    engine (and leave it open) instead of a new one - an in-memory SQLite ledger lives in it."""
    if engine is not None:
        with engine.connect() as conn:
            before, has_tables = inspect_revision(conn)
    else:
        before, has_tables = current_revision(url)
    if before is None and has_tables:
        raise SchemaError(f"{describe(url)} holds tables but no editledger schema revision: refusing to "
                          "upgrade something that is not an editledger ledger")
    if before is not None and before not in known_revisions():
        raise SchemaError(f"ledger {describe(url)} is at schema {before}, which this editledger does not "
                          "know: it was written by a newer editledger; upgrade editledger instead. "
                          "The ledger was not modified.")
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    after = _run(url, command.upgrade, revision, engine)
    return before, after


def downgrade(url: str, revision: str) -> tuple[str | None, str | None]:
    """Take the ledger at ``url`` back to ``revision`` (tests, and a user going back to an older
    editledger). Same rules as ``upgrade``: one transaction, foreign keys off on SQLite."""
    before, _ = current_revision(url)
    return before, _run(url, command.downgrade, revision, None)


def _run(url: str, fn, revision: str, engine: sa.Engine | None) -> str | None:
    """Run an alembic command as one transaction; returns the revision after it."""
    own = engine is None
    engine = engine if engine is not None else make_engine(url)
    sqlite = is_sqlite(url)
    try:
        with engine.connect() as conn:
            if sqlite:
                raw = conn.connection.driver_connection
                # Batch migrations copy and drop tables; with foreign keys on, dropping `version`
                # would cascade-delete every delta. The pragma is a no-op inside a transaction, so
                # it goes through the raw connection before SQLAlchemy begins one.
                raw.execute("PRAGMA foreign_keys=OFF")
                # take the write lock before reading the revision: two processes creating the
                # same ledger at once then run the migrations one after the other, not both
                conn.info[BEGIN_IMMEDIATE] = True
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                # One transaction for the whole chain: alembic commits each SQLite migration on its
                # own unless the connection is already in a transaction, and a process killed
                # between two of them left a ledger half-created (at 0002). Now a ledger is either
                # at its old revision or at the new one.
                conn.begin()
                fn(cfg, revision)
                conn.commit()
            finally:
                if sqlite:
                    conn.rollback()
                    conn.info.pop(BEGIN_IMMEDIATE, None)
                    bad = raw.execute("PRAGMA foreign_key_check").fetchall()
                    raw.execute("PRAGMA foreign_keys=ON")
            if sqlite and bad:
                raise SchemaError(f"after migrating {describe(url)} to {revision}, foreign keys are broken in "
                                  f"{bad[:5]}; restore the ledger from a backup and report this")
            after = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
    finally:
        if own:
            engine.dispose()
    return after
