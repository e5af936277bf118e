"""The ``editledger`` command line: thin. It parses arguments and calls ledger/, simulator/, tui/.

Each command group lives in ``editledger/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser(s) with ``set_defaults(func=...)``; ``func(args)``
returns an exit code (or None for 0). Heavy imports (torch, transformers, textual) happen inside
the command functions so that ``editledger --help`` and ledger-only commands stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ledger.errors import UserError

# Command modules, in the order they appear in --help. A module that is missing is skipped so
# that the CLI keeps working while a command group is being written.
COMMAND_MODULES = ["demo", "replay", "checkout", "history", "stream", "report", "audit", "tui", "db", "bench"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="editledger",
        description="Record, replay, audit and reverse knowledge edits of language models.")
    p.add_argument("--db", default=None, metavar="URL",
                   help="ledger database: a SQLAlchemy URL or a path to a SQLite file "
                        "(default: $EDITLEDGER_DB, else ./editledger.db or $EDITLEDGER_HOME/editledger.db)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"editledger.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"editledger.commands.{name}":
                continue
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except UserError as e:
        print(f"editledger: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("editledger: interrupted; everything committed so far is kept "
              "(resume a replay with `editledger replay --resume RUN`).", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno == 28:  # ENOSPC
            print(f"editledger: error: disk full ({e.filename or 'ledger home'}): free some space and "
                  "run the command again; nothing half-written was committed.", file=sys.stderr)
            return 1
        raise
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
