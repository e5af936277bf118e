"""Helpers shared by the command modules: opening the ledger, naming runs and versions, checking
arguments before anything is loaded or written, and printing stored text safely."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from editledger.text import printable  # noqa: F401  (the commands print stored text through it)
from ledger.errors import InputError

MAX_SEED = 2**32 - 1            # replay seeds each step with seed * 1_000_003 + step: keep it in int64


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
    raise InputError(f"no run {printable(ref)!r} in this ledger (runs: {printable(known)}); "
                     "`editledger tui` lists them all")


def parse_run_at(ledger, ref: str) -> tuple[int, int | None]:
    """"RUN@STEP" -> (run id, step); "RUN" -> (run id, None: the head)."""
    ref = ref.strip()
    m = re.fullmatch(r"(.+?)@([0-9]{1,9})", ref)      # 9 digits: a step fits every database's integer
    if m:
        return find_run(ledger, m.group(1)), int(m.group(2))
    if "@" in ref and not any(r.name == ref for r in ledger.runs()):
        raise InputError(f"cannot read {printable(ref)!r}: write RUN or RUN@STEP with a step number, e.g. 3@12")
    return find_run(ledger, ref), None


def device_arg(text: str) -> str:
    """argparse type for --device: a torch device this machine has (checked before any loading)."""
    import torch  # torch only when --device is given: the check needs it, --help does not
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                                             "use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"{text!r}: there are {n} CUDA device(s), numbered 0..{n - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise argparse.ArgumentTypeError(f"{text!r}: Apple's MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: editledger runs on cpu, cuda or mps")
    return text


def bounded_int(lo: int, hi: int | None = None, what: str = "a number"):
    """argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if v < lo or (hi is not None and v > hi):
            rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range: {what} is {rng}")
        return v
    return parse


def seed_arg(text: str) -> int:
    return bounded_int(0, MAX_SEED, "a seed")(text)


def writable_target(path: str, what: str, *, directory: bool) -> Path:
    """Check, before any work, that ``path`` can be created: it does not exist yet (or, for a
    directory, is empty), its parent directory exists and is writable. Returns it resolved."""
    try:
        p = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"{what} {path!r} is not a usable path ({e})") from None
    if p.exists():
        if not directory or not p.is_dir():
            raise InputError(f"{what} {printable(str(p))} already exists; choose a new name or delete it first")
        if any(p.iterdir()):
            raise InputError(f"{what} {printable(str(p))} exists and is not empty; choose a new directory "
                             "or delete it first")
    parent = p.parent
    if not parent.is_dir():
        raise InputError(f"{what} {printable(str(p))}: the directory {printable(str(parent))} does not exist; "
                         "create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {printable(str(p))}: cannot write in {printable(str(parent))} (read-only or "
                         "no permission); choose another place")
    return p


def add_model_args(p) -> None:
    p.add_argument("--device", default=None, type=device_arg,
                   help="torch device (default: cuda if available, else cpu)")
