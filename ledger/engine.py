"""Where the ledger lives (URL and home directory) and the SQLAlchemy engine that talks to it.

``resolve`` is the one place that turns ``--db`` / ``$EDITLEDGER_DB`` / ``$EDITLEDGER_HOME`` into a
URL and a home directory (artifacts live under ``<home>/artifacts``). Every SQLite connection gets
WAL journaling, a busy timeout and foreign keys; these pragmas are the only SQLite-specific code.
"""
from __future__ import annotations

import sqlite3
import json
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ledger.errors import InputError

DB_FILENAME = "editledger.db"
BUSY_TIMEOUT_MS = 30_000   # several processes (replay + TUI) share one file; wait rather than fail


def _default_home() -> Path:
    return Path(os.environ.get("EDITLEDGER_HOME") or os.getcwd()).resolve()


def resolve(db: str | None) -> tuple[str, Path]:
    """(SQLAlchemy URL, home directory) for ``--db`` (a URL or a path to a SQLite file), else
    ``$EDITLEDGER_DB``, else ``<$EDITLEDGER_HOME or .>/editledger.db``."""
    db = db or os.environ.get("EDITLEDGER_DB") or None
    if db is None:
        home = _default_home()
        return f"sqlite:///{home / DB_FILENAME}", home
    if not isinstance(db, str) or "\x00" in db or not db.strip():
        raise InputError(f"--db {db!r} is not a usable path or URL; use e.g. ./editledger.db or "
                         "postgresql+psycopg://user@host/dbname")
    if "://" not in db:
        path = _sqlite_file(db)
        return f"sqlite:///{path}", path.parent
    try:
        url = make_url(db)
    except Exception as e:
        raise InputError(f"--db {db!r} is neither a SQLAlchemy URL nor a file path ({e}); "
                         "use e.g. ./editledger.db or postgresql+psycopg://user@host/dbname") from None
    backend = url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise InputError(f"--db {url.render_as_string(hide_password=True)!r}: {backend!r} is not a database "
                         f"editledger can keep a ledger in; use a SQLite path or URL (sqlite:///x.db) or "
                         "PostgreSQL (postgresql+psycopg://user@host/dbname)")
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            return db, _default_home()
        path = _sqlite_file(url.database)
        return url.set(database=str(path)).render_as_string(hide_password=False), path.parent
    return db, _default_home()


SUPPORTED_BACKENDS = ("sqlite", "postgresql")
SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_file(raw: str) -> Path:
    try:
        path = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"--db {raw!r} is not a usable path ({e})") from None
    if path.is_dir():
        raise InputError(f"--db {raw!r} is a directory; give the ledger's file, e.g. {path / DB_FILENAME}")
    return path


def check_sqlite_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a path that is not a SQLite database (a text file, a
    directory): SQLite would either fail with a terse message or, for an empty file, use it."""
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a ledger file; give e.g. --db {path / DB_FILENAME}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as e:
        raise InputError(f"cannot read the ledger {path}: {e.strerror}; check its permissions") from None
    if head and head != SQLITE_MAGIC:
        raise InputError(f"{path} is not a SQLite database (it starts with {head[:16]!r}); point --db at a "
                         "ledger file, or at a path that does not exist yet to create one")


def sqlite_readonly_engine(path: Path) -> sa.Engine:
    """An engine that cannot write (used to inspect a ledger before deciding to touch it)."""
    return sa.create_engine("sqlite://", poolclass=sa.pool.NullPool,
                            creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                            timeout=BUSY_TIMEOUT_MS / 1000))


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory or non-SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite would otherwise run DDL outside any transaction (a half-applied migration) and
    # open transactions only before DML; we switch its handling off and emit BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


BEGIN_IMMEDIATE = "editledger_begin_immediate"   # conn.info flag: take the write lock at BEGIN


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get(BEGIN_IMMEDIATE) else "BEGIN")


def _finite(x):
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _json_dumps_finite(obj) -> str:
    """PostgreSQL's json refuses NaN/Infinity tokens: non-finite floats inside JSON columns
    (per-prompt detail, diagnostics) become null there. SQLite keeps them (Python's json)."""
    return json.dumps(_finite(obj), allow_nan=False)


def make_engine(url: str) -> sa.Engine:
    if is_sqlite(url):
        kw: dict = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
        if sqlite_path(url) is None:   # in-memory: one shared connection, or every session sees a new DB
            kw["poolclass"] = sa.pool.StaticPool
            kw["connect_args"]["check_same_thread"] = False
        engine = sa.create_engine(url, **kw)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, json_serializer=_json_dumps_finite)
    except ModuleNotFoundError as e:
        raise InputError(f"the database driver for {make_url(url).drivername} is not installed ({e.name}); "
                         "pip install it (e.g. `pip install psycopg[binary]` for postgresql+psycopg)") from None
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ValueError, TypeError) as e:
        raise InputError(f"cannot use the database URL {make_url(url).render_as_string(hide_password=True)!r} "
                         f"({e}); use e.g. postgresql+psycopg://user@host/dbname") from None
