"""Helpers shared by the command modules: opening the ledger, naming runs and versions."""
from __future__ import annotations

import re

from ledger.errors import InputError


def open_ledger(args, create: bool = True):
    from ledger import Ledger
    return Ledger.open(args.db, create=create)


def find_run(ledger, ref: str) -> int:
    """A run by id ("3") or by name -> run id (InputError naming the known runs otherwise)."""
    ref = ref.strip()
    runs = ledger.runs()
    for r in runs:
        if ref == str(r.id) or ref == (r.name or ""):
            return r.id
    known = ", ".join(f"{r.id} ({r.name})" for r in runs[:10]) or "none"
    raise InputError(f"no run {ref!r} in this ledger (runs: {known}); `editledger tui` lists them all")


def parse_run_at(ledger, ref: str) -> tuple[int, int | None]:
    """"RUN@STEP" -> (run id, step); "RUN" -> (run id, None: the head)."""
    m = re.fullmatch(r"(.+?)(?:@(\d+))?", ref.strip())
    if not m:
        raise InputError(f"cannot read {ref!r}: write RUN or RUN@STEP, e.g. 3@12")
    return find_run(ledger, m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


def add_model_args(p) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
