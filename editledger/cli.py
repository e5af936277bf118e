"""The ``editledger`` command line: thin. It parses arguments and calls ledger/, simulator/, tui/.

Each command group lives in ``editledger/commands/<module>.py`` and exposes
``register(subparsers)``, which adds its parser(s) with ``set_defaults(func=...)``; ``func(args)``
returns an exit code (or None for 0).

Startup: ``editledger --help`` must answer in well under half a second, and every command module
imports the ledger (SQLAlchemy, Alembic: about a second). So the top-level parser is built from
``COMMANDS``, a table of names and one-line helps, and only the module of the command being run is
imported and registered. ``tests/test_cli_startup.py`` checks that the table says what the modules
register.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys

from editledger.text import printable
from simulator import threads

# command -> (module under editledger.commands, one-line help), in --help order. A module may own
# several commands (history: reset, revert, branch, log); its register() adds all of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: a 12-edit ROME replay on the embedded model"),
    "replay": ("replay", "replay a stream file step by step into the ledger"),
    "checkout": ("checkout", "materialise the weights of a version and verify them"),
    "reset": ("history", "move a run's head back to an earlier step (history kept)"),
    "revert": ("history", "make a new version without one step's delta"),
    "branch": ("history", "continue from an earlier version with other steps, as a new run"),
    "log": ("history", "show a run's version history like `git log --graph`"),
    "stream": ("stream", "build and check edit stream files"),
    "sweep": ("sweep", "run a grid of models, methods, streams and seeds into one ledger"),
    "report": ("report", "the survey's tables and general-ability curves for runs"),
    "probe": ("probe", "measure a version recorded without measurements (a reset or revert)"),
    "audit": ("audit", "name the edits that caused a degradation, with evidence"),
    "export": ("export", "write a run in another tool's result format (kmeng01/rome's case files)"),
    "identify": ("identify", "name the ledger version a model directory holds"),
    "train": ("train", "train the network a method edits with (MEND)"),
    "tui": ("tui", "browse runs, timelines, edits, trajectories, diffs and audits"),
    "db": ("db", "ledger database: schema status, upgrade, integrity check"),
    "bench": ("bench", "run every benchmark; write bench.json and bench.md"),
}


def _global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL",
                   help="ledger database: a SQLAlchemy URL or a path to a SQLite file "
                        "(default: $EDITLEDGER_DB, else ./editledger.db or $EDITLEDGER_HOME/editledger.db)")
    p.add_argument("--artifacts", default=None, metavar="PATH|URL",
                   help="the artifact store: a directory or an fsspec URL (s3://bucket/ledger, "
                        "file:///shared/artifacts) every node of a team shares (default: $EDITLEDGER_ARTIFACTS, "
                        "else artifacts/ beside the database)")


def command_of(argv: list[str]) -> str | None:
    """The command named on the command line (None for none or an unknown one)."""
    pre = argparse.ArgumentParser(add_help=False)
    _global_options(pre)
    _, rest = pre.parse_known_args(argv)
    name = rest[0] if rest and not rest[0].startswith("-") else None
    return name if name in COMMANDS else None


def build_parser(command: str | None = None, *, load_all: bool = False) -> argparse.ArgumentParser:
    """The parser. The module owning ``command`` (every module with ``load_all``) registers its
    real sub-parsers; the other commands get a placeholder that carries their help line."""
    p = argparse.ArgumentParser(
        prog="editledger",
        description="Record, replay, audit and reverse knowledge edits of language models.")
    _global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {m for m, _ in COMMANDS.values()} if load_all else (
        {COMMANDS[command][0]} if command in COMMANDS else set())
    registered: set[str] = set()
    for name, (module, help_) in COMMANDS.items():
        if module in wanted:
            if module not in registered:
                importlib.import_module(f"editledger.commands.{module}").register(sub)
                registered.add(module)
        else:
            sub.add_parser(name, help=help_)
    return p


def main(argv: list[str] | None = None) -> int:
    # the wait policy of torch's OpenMP threads is read when torch loads, so it is set before any
    # command imports torch (simulator/threads.py: why a replay beside another one needs it)
    threads.early()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.artifacts:
        # the same as $EDITLEDGER_ARTIFACTS: every ledger this process opens, and the processes it
        # starts (the TUI's audit, a sweep's workers), use that store
        os.environ["EDITLEDGER_ARTIFACTS"] = args.artifacts
    # deferred: the ledger package loads SQLAlchemy and Alembic (~1 s), which --help must not wait for
    from ledger.errors import UserError
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
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return parser.parse_args(argv)
    finally:
        sys.stderr.write(printable(buf.getvalue()))


def _fail(e) -> int:
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
