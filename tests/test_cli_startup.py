"""`editledger --help` answers without importing any command module (each imports the ledger:
SQLAlchemy and Alembic, about a second); the table of command names and helps in editledger/cli.py
says exactly what the command modules register."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys

import editledger.commands
from editledger.cli import COMMANDS, build_parser, command_of, main


def _registered(module: str) -> dict[str, str]:
    """name -> help of the sub-parsers a command module registers."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    importlib.import_module(f"editledger.commands.{module}").register(sub)
    return {a.dest: a.help for a in sub._choices_actions}


def test_table_matches_what_the_modules_register():
    modules = {name for _, name, _ in pkgutil.iter_modules(editledger.commands.__path__)} - {"common"}
    assert modules == {m for m, _ in COMMANDS.values()}, "a command module is missing from cli.COMMANDS"
    for module in modules:
        got = _registered(module)
        table = {name: help_ for name, (m, help_) in COMMANDS.items() if m == module}
        assert got == table, f"cli.COMMANDS disagrees with editledger/commands/{module}.py"


def test_help_imports_no_command_module_and_no_ledger():
    code = ("import sys; from editledger.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.startswith(('editledger.commands.', 'ledger', "
            "'sqlalchemy', 'torch', 'textual')))\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for name in COMMANDS:
        assert f"\n    {name} " in out


def test_a_command_loads_only_its_module_and_gets_its_real_parser():
    assert command_of(["--db", "x.db", "revert", "3", "4"]) == "revert"
    assert command_of(["--db=x.db", "log", "1"]) == "log"
    assert command_of(["--help"]) is None and command_of(["nosuch"]) is None
    args = build_parser("revert").parse_args(["--db", "x.db", "revert", "3", "4"])
    assert args.func.__module__ == "editledger.commands.history" and (args.run, args.step) == ("3", 4)
    full = build_parser(load_all=True)
    assert full.parse_args(["db", "status"]).func.__module__ == "editledger.commands.db"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_replay_help_names_every_registered_method():
    from editledger.commands.replay import METHODS
    from simulator.editors import method_names
    assert sorted(METHODS) == sorted(method_names())
