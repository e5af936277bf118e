"""Layers import one way: ``ledger`` imports neither ``simulator`` nor ``tui``; ``tui`` imports
``ledger`` and neither ``simulator`` nor torch (nor transformers). Checked by importing, not by
reading text: a subprocess puts a finder first on ``sys.meta_path`` that refuses the forbidden
packages, then imports every module of the layer, and for the TUI also drives every screen and
both of its writes (reset, revert) on a sample ledger, so that an import deferred into a
function is caught too."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ledger_fixtures import build_sample_ledger

ROOT = Path(__file__).resolve().parents[1]

# Installs the blocker, then imports every module of the package named in argv[1].
BLOCK = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys, traceback
    FORBIDDEN = tuple(sys.argv[2].split(","))

    class LayerViolation(ImportError):
        pass

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                importer = next((f.filename for f in reversed(traceback.extract_stack()[:-1])
                                 if "importlib" not in f.filename), "?")
                raise LayerViolation(f"{sys.argv[1]} imports {name} (from {importer})")
            return None

    sys.meta_path.insert(0, Refuse())
    pkg = importlib.import_module(sys.argv[1])
    names = [pkg.__name__] + [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    for name in names:
        importlib.import_module(name)
    print("imported", len(names), "modules")
""")

# Then (TUI only) every screen and both writes on the ledger at argv[3].
DRIVE = textwrap.dedent("""
    import asyncio
    from tui.app import EditLedgerApp
    from tui.data import LedgerData

    async def drive(db):
        app = EditLedgerApp(LedgerData.open(db), poll_interval=0)
        async with app.run_test(size=(120, 36)) as pilot:
            async def settle():
                await pilot.pause(); await app.workers.wait_for_complete(); await pilot.pause()
            await settle()
            for keys in (["t"], ["a"], ["question_mark"]):
                await pilot.press(*keys); await settle(); await pilot.press("escape"); await settle()
            await pilot.press("enter"); await settle()                         # timeline of run 1
            app.screen.table.move_to(7)
            await pilot.press("enter"); await settle()                         # detail
            for tab in "123":
                await pilot.press(tab); await settle()
            await pilot.press("escape"); await settle()
            app.screen.table.move_to(2); await pilot.press("d")
            app.screen.table.move_to(8); await pilot.press("d"); await settle()   # diff
            await pilot.press("escape"); await settle()
            app.screen.table.move_to(1); await pilot.press("r"); await settle(); await pilot.press("y"); await settle()
            app.screen.table.move_to(1); await pilot.press("v"); await settle(); await pilot.press("y"); await settle()
            for keys in (["t"], ["a"]):
                await pilot.press(*keys); await settle(); await pilot.press("escape"); await settle()
            kinds = [it.kind for it in app.screen.table.rows[-2:]]
            assert kinds == ["reset", "revert"], kinds
        app.data.close()
        print("drove every screen")

    asyncio.run(drive(sys.argv[3]))
""")


def _run(package: str, forbidden: list[str], *extra: str, drive: bool = False) -> subprocess.CompletedProcess:
    code = BLOCK + (DRIVE if drive else "")
    return subprocess.run([sys.executable, "-c", code, package, ",".join(forbidden), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ledger_imports_neither_simulator_nor_tui():
    _check(_run("ledger", ["simulator", "tui"]))


def test_tui_imports_neither_simulator_nor_torch():
    _check(_run("tui", ["simulator", "torch", "transformers"]))


def test_every_tui_screen_runs_with_simulator_and_torch_refused(tmp_path):
    db = str(tmp_path / "ledger.db")
    build_sample_ledger(db)
    proc = _run("tui", ["simulator", "torch", "transformers"], db, drive=True)
    _check(proc)
    assert "drove every screen" in proc.stdout


def test_the_check_fails_on_a_violation(tmp_path):
    """The same check on a package that does import the simulator fails and names the importer."""
    pkg = tmp_path / "leaky"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "view.py").write_text("import simulator.audit\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + BLOCK
    proc = subprocess.run([sys.executable, "-c", code, "leaky", "simulator,torch"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "LayerViolation: leaky imports simulator" in proc.stderr and "view.py" in proc.stderr
