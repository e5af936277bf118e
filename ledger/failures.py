"""Errors of the environment a user can meet, said in words: a full disk, a read-only ledger, a
damaged database file, a server that cannot be reached, a lock held too long.

``explain(exc)`` turns such an exception (from SQLAlchemy, the database driver or the OS) into a
``UserError`` whose message says what happened and what to do, or returns None for anything else (a
bug keeps its traceback). ``translated(url)`` applies it around a block. The CLI calls ``explain``
on whatever escapes a command, so no user sees a traceback for any of these.
"""
from __future__ import annotations

import contextlib
import errno

import sqlalchemy as sa

from ledger.errors import IntegrityError, ResourceError, UserError


def _where(url: str | None) -> str:
    if not url:
        return "the ledger"
    try:
        u = sa.engine.make_url(url)
    except Exception:
        return "the ledger"
    if u.get_backend_name() == "sqlite":
        return f"the ledger {u.database}" if u.database else "the in-memory ledger"
    return f"the ledger database {u.render_as_string(hide_password=True)}"


def explain(exc: BaseException, url: str | None = None) -> UserError | None:
    where = _where(url)
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, sa.exc.DBAPIError) or type(exc).__module__.startswith(("sqlite3", "psycopg")):
        orig = getattr(exc, "orig", None) or exc
        msg = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        low = msg.lower()
        if "disk is full" in low or "no space left" in low:
            return ResourceError(f"the disk holding {where} is full ({msg}): free some space and run the "
                                 "command again. Nothing half-written was committed: the ledger is as it was "
                                 "after its last complete step (`editledger db fsck` checks it).")
        if "readonly" in low or "read-only" in low or "read only" in low:
            return ResourceError(f"{where} is read-only ({msg}): this command writes to it. Make the file and "
                                 "its directory writable, or work on a copy; reading commands (log, report, "
                                 "tui) work on a read-only ledger.")
        if "unable to open database file" in low:
            return ResourceError(f"cannot open {where} ({msg}): its directory must exist and be readable and "
                                 "writable (SQLite keeps its -wal and -shm files beside it); check --db")
        if "not a database" in low or "malformed" in low or "file is encrypted" in low or "corrupt" in low:
            return IntegrityError(f"{where} is damaged ({msg}). Restore it from a backup; SQLite's `.recover` "
                                  "command (sqlite3 CLI) may save what is left. Nothing was written.")
        if "locked" in low or "busy" in low:
            return ResourceError(f"{where} stayed locked by another process for longer than the busy timeout "
                                 f"({msg}): a long write is in progress elsewhere; try again")
        if "disk i/o error" in low:
            return ResourceError(f"{where}: the disk reported an I/O error ({msg}); check the device and free "
                                 "space, then run `editledger db fsck`")
        if isinstance(exc, sa.exc.IntegrityError) or "unique constraint" in low or "duplicate key" in low:
            return IntegrityError(f"{where} refused a write that would break its rules ({msg}); another "
                                  "process probably recorded the same thing first. Run the command again; "
                                  "`editledger db fsck` checks the ledger.")
        if isinstance(exc, sa.exc.OperationalError):
            return ResourceError(f"cannot use {where} ({msg}); check that the database is reachable and the "
                                 "URL, user and password are right")
        return None
    if isinstance(exc, OSError) and not isinstance(exc, (BrokenPipeError,)):
        name = f" ({exc.filename})" if exc.filename else ""
        if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
            return ResourceError(f"disk full{name}: free some space and run the command again. Nothing "
                                 "half-written was committed (`editledger db fsck` checks the ledger).")
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return ResourceError(f"permission denied or read-only file system{name}: {exc.strerror}. Choose "
                                 "a place you can write to, or fix the permissions")
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG):
            return ResourceError(f"{exc.strerror}{name}: check the path")
        if exc.errno == errno.EIO:
            return ResourceError(f"the disk reported an I/O error{name}; check the device, then run "
                                 "`editledger db fsck`")
    return None


@contextlib.contextmanager
def translated(url: str | None = None):
    """Re-raise the exceptions ``explain`` knows as UserErrors."""
    try:
        yield
    except UserError:
        raise
    except (sa.exc.SQLAlchemyError, OSError) as e:
        err = explain(e, url)
        if err is None:
            raise
        raise err from e
