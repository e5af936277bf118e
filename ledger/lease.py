"""Who writes a run: one owner at a time, recorded in the run's row (a lease).

A replay takes the lease of its run when it starts or resumes and gives it back when it ends;
every step it records renews it. Anything else that would move the run (a second replay, a reset
or revert from the CLI or the TUI) is refused while the owner is alive:

* an owner on this host is alive while a process with its id exists *and* started when the owner
  did (a reused process id is not mistaken for it: Linux's /proc gives the start time);
* an owner on another host (a team's PostgreSQL ledger) is alive while its lease was renewed
  within ``LEASE_TTL_S``.

A replay killed by SIGKILL never gives its lease back; the next writer finds its owner dead and
takes over (``editledger db fsck`` lists such runs, ``--repair`` marks them interrupted).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.errors import RunBusy  # noqa: F401  (raised by the ledger's writers; re-exported here)

LEASE_TTL_S = 3600.0   # another host's owner is presumed dead after this long without a step


def _host() -> str:
    return socket.gethostname()[:255]


def process_started(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), or None where
    it cannot be read (no /proc, or no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after the last ')'
    fields = data[data.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str | None
    token: str
    renewed_at: datetime | None

    @classmethod
    def me(cls, token: str, now: datetime) -> "Owner":
        pid = os.getpid()
        return cls(_host(), pid, process_started(pid), token, now)

    @classmethod
    def of(cls, run) -> "Owner | None":
        if not run.owner_token:
            return None
        return cls(run.owner_host or "", int(run.owner_pid or 0), run.owner_started, run.owner_token,
                   run.lease_renewed_at)

    def alive(self, now: datetime) -> bool:
        if self.host == _host():
            if not _pid_exists(self.pid):
                return False
            started = process_started(self.pid)
            return self.started is None or started is None or started == self.started
        return self.renewed_at is not None and now - self.renewed_at < timedelta(seconds=LEASE_TTL_S)

    def describe(self) -> str:
        since = f", last step at {self.renewed_at:%Y-%m-%d %H:%M:%S} UTC" if self.renewed_at else ""
        return f"process {self.pid} on {self.host}{since}"

    def write_to(self, run) -> None:
        run.owner_host, run.owner_pid, run.owner_started = self.host, self.pid, self.started
        run.owner_token, run.lease_renewed_at = self.token, self.renewed_at


def clear(run) -> None:
    run.owner_host = run.owner_pid = run.owner_started = run.owner_token = run.lease_renewed_at = None
