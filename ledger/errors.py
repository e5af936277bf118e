"""Errors a user can hit. The CLI prints ``str(err)`` (no traceback) and exits with ``exit_code``.

Every message says what is wrong *and* what to do about it.
"""
from __future__ import annotations


class UserError(Exception):
    """Base class for errors caused by input or state the user controls."""
    exit_code = 1


class InputError(UserError):
    """A malformed file or argument given by the user (bad stream file, unknown model, ...)."""
    exit_code = 2


class SchemaError(UserError):
    """The ledger's schema is behind or ahead of this version of editledger."""
    exit_code = 3


class IntegrityError(UserError):
    """Stored data does not match its recorded digest or fingerprint (corrupted artifact, ...)."""
    exit_code = 4


class RunBusy(UserError):
    """Another live process owns the run (``ledger.lease``): one writer per run."""
    exit_code = 5


class ResourceError(UserError):
    """The environment refuses: a full disk, a read-only ledger, a database that cannot be reached."""
    exit_code = 1
