"""The ``editledger`` command line: thin. It parses arguments and calls ledger/, simulator/, tui/.

Each command group lives in ``editledger/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser(s) with ``set_defaults(func=...)``; ``func(args)``
returns an exit code (or None for 0). Heavy imports (torch, transformers, textual) happen inside
the command functions so that ``editledger --help`` and ledger-only commands stay fast.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys

from ledger.errors import UserError

# Command modules, in the order they appear in --help. A module that is missing is skipped so
# that the CLI keeps working while a command group is being written.
COMMAND_MODULES = ["demo", "replay", "checkout", "history", "stream", "report", "audit", "tui", "db"]


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
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()            # a closed pipe (`editledger log 3 | head`) shows up here, not at exit
    except UserError as e:
        return _fail(e)
    except KeyboardInterrupt:
        print("editledger: interrupted; everything committed so far is kept "
              "(resume a replay with `editledger replay --resume RUN`).", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away: stop quietly, as `git log | head` does (128 + SIGPIPE)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        # errors of the environment (full disk, read-only or damaged ledger, unreachable server)
        # in words; anything else is a bug and keeps its traceback
        from ledger.failures import explain
        err = explain(e, _ledger_url(args))
        if err is None:
            raise
        return _fail(err)
    return int(code or 0)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse's own messages quote what was typed; they go out without control characters."""
    from editledger.commands.common import printable
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return parser.parse_args(argv)
    finally:
        sys.stderr.write(printable(buf.getvalue()))


def _fail(e: UserError) -> int:
    from editledger.commands.common import printable
    print(f"editledger: error: {printable(str(e))}", file=sys.stderr)
    return e.exit_code


def _ledger_url(args) -> str | None:
    try:
        from ledger.engine import resolve
        return resolve(args.db)[0]
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
