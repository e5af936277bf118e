"""The CPU thread policy of a process that runs torch: how many threads, and how idle ones wait.

Why it is set on purpose: torch's OpenMP runtime (libgomp) lets a thread that waits at the end of a
parallel region spin for about 300,000 iterations before it sleeps. Alone that saves microseconds;
beside another torch process on the same cores (a replay next to the TUI, two replays) the spinning
threads of each process take the cores the other one's working threads need, and a ROME edit ran 6 to
13 times slower instead of 2. With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep at once.

libgomp reads ``OMP_WAIT_POLICY`` once, when ``import torch`` loads it; setting it later does nothing.
So the policy has two halves:

* ``early()`` puts the wait policy in the environment. It must run before the process's first
  ``import torch`` (the entry point of the CLI, or the first line of a script); it never overrides a
  value the user set.
* ``apply()`` runs when a model is loaded (``simulator.models.load_model``): it sets torch's intra-op
  thread count to the CPUs this process may really use (its affinity mask and its cgroup CPU quota),
  never more than the caller already chose, or exactly ``$EDITLEDGER_THREADS``.

This module imports nothing heavy at the top so that ``early()`` can run before torch.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

WAIT_ENV = "OMP_WAIT_POLICY"
WAIT_POLICY = "PASSIVE"             # waiting threads sleep instead of spinning
THREADS_ENV = "EDITLEDGER_THREADS"  # an explicit thread count for every editledger process

# Where the wait policy of this process came from: "user" (set before Python started), "early" (set by
# early() before torch loaded), "late" (early() ran after torch loaded: libgomp never saw it), None.
_wait_source: str | None = "user" if WAIT_ENV in os.environ else None


def early() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy. True when the policy in force is
    the environment's (it was there before torch loaded); False when torch was already loaded without it
    (the variable is still set, so child processes get it)."""
    global _wait_source
    if _wait_source == "user":
        return True
    if WAIT_ENV not in os.environ:
        os.environ[WAIT_ENV] = WAIT_POLICY
        _wait_source = "early" if "torch" not in sys.modules else "late"
    return _wait_source in ("user", "early")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, bounded by a cgroup v2 CPU quota (a container
    on a large host often sees every core but may use two)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota) if quota else n)


def _cgroup_quota() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except OSError:
        return None
    if len(text) != 2 or text[0] == "max":
        return None
    return max(1, math.ceil(int(text[0]) / int(text[1])))


def apply(threads: int | None = None) -> dict:
    """Set torch's intra-op threads: ``threads``, else ``$EDITLEDGER_THREADS``, else the usable CPUs, but
    never more than the count already set (a test or a user that chose fewer keeps its choice).
    Returns ``describe()``."""
    import torch  # deferred: importing this module must not load torch (see early)

    explicit = threads or _env_threads()
    n = explicit if explicit else min(torch.get_num_threads(), usable_cpus())
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return describe()


def _env_threads() -> int | None:
    v = os.environ.get(THREADS_ENV, "").strip()
    if not v:
        return None
    if not v.isdigit() or int(v) < 1:
        from ledger.errors import InputError
        raise InputError(f"{THREADS_ENV}={v!r} is not a thread count; set it to a positive integer or unset it")
    return int(v)


def describe() -> dict:
    """The policy in force, for benchmarks and reports."""
    import torch  # deferred, as in apply

    return {"torch_threads": torch.get_num_threads(), "usable_cpus": usable_cpus(),
            "wait_policy": os.environ.get(WAIT_ENV, "(libgomp default: spin, then sleep)"),
            "wait_policy_in_force": _wait_source in ("user", "early"), "wait_policy_source": _wait_source}
