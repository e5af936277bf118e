"""Naming runs and versions the way a user writes them: a run by id or name, a version as RUN@STEP.
Shared by the CLI's commands and the Python API (``editledger.api``), so both accept the same words
and refuse the same mistakes with the same messages."""
from __future__ import annotations

import re

from editledger.text import printable
from ledger.errors import InputError


def find_run(ledger, ref) -> int:
    """A run by id ("3" or 3) or by name -> run id (InputError naming the known runs otherwise)."""
    ref = str(ref).strip()
    runs = ledger.runs()
    for r in runs:
        if ref == str(r.id) or ref == (r.name or ""):
            return r.id
    known = ", ".join(f"{r.id} ({r.name})" for r in runs[:10]) or "none"
    raise InputError(f"no run {printable(ref)!r} in this ledger (runs: {printable(known)}); "
                     "`editledger tui` lists them all")


def parse_run_at(ledger, ref) -> tuple[int, int | None]:
    """"RUN@STEP" -> (run id, step); "RUN" -> (run id, None: the head)."""
    ref = str(ref).strip()
    m = re.fullmatch(r"(.+?)@([0-9]{1,9})", ref)      # 9 digits: a step fits every database's integer
    if m:
        return find_run(ledger, m.group(1)), int(m.group(2))
    if "@" in ref and not any(r.name == ref for r in ledger.runs()):
        raise InputError(f"cannot read {printable(ref)!r}: write RUN or RUN@STEP with a step number, e.g. 3@12")
    return find_run(ledger, ref), None
