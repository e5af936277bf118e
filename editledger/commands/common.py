"""Helpers shared by the command modules: opening the ledger, naming runs and versions."""
from __future__ import annotations

import re

from ledger.errors import InputError


def open_ledger(args, create: bool = True):
    from ledger import Ledger
    return Ledger.open(args.db, create=create)


def find_run(ledger, ref: str) -> int:
    """A run by id ("3") or by name."""
    ref = ref.strip()
    if ref.isdigit():
        try:
            return ledger.run(int(ref)).id
        except Exception:
            pass
    for r in ledger.runs():
        if getattr(r, "name", None) == ref:
            return r.id
    raise InputError(f"no run {ref!r} in this ledger: `editledger tui` or `editledger db status` lists the runs")


def parse_run_at(ledger, ref: str) -> tuple[int, int | None]:
    """"RUN@STEP" -> (run id, step); "RUN" -> (run id, None: the head)."""
    m = re.fullmatch(r"(.+?)(?:@(\d+))?", ref.strip())
    if not m:
        raise InputError(f"cannot read {ref!r}: write RUN or RUN@STEP, e.g. 3@12")
    return find_run(ledger, m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


def add_model_args(p) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
