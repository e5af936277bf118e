"""The first demo after install: ``editledger demo`` from an empty cache (the GGUF dequantised, the
statistics sampled), then again warm, each in a fresh process with its own ledger. The cache is a temp
directory (``$EDITLEDGER_CACHE``), so the machine's shared cache is neither used nor touched."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from editledger.bench.figures import Figure, Section

# "run 1: done, 12 steps in 151 s (load 41 s, statistics 38 s, edits 30 s, probes 35 s, ledger 0.7 s)"
_SPLIT = re.compile(r"in (\d+) s \(load (\d+) s, statistics (\d+) s, edits (\d+) s, probes (\d+) s, ledger ([\d.]+) s\)")


def _demo(tmp: Path, db: str) -> tuple[float, dict]:
    env = {**os.environ, "EDITLEDGER_CACHE": str(tmp / "models")}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "editledger", "--db", str(tmp / db), "demo"], env=env,
                       capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"editledger demo failed ({p.returncode}): {p.stderr[-800:]}")
    m = _SPLIT.search(p.stdout)
    split = dict(zip(("replay", "load", "statistics", "edits", "probes", "ledger"), map(float, m.groups()))) if m else {}
    return wall, split


def bench_demo() -> Section:
    sec = Section("demo", "First demo: `editledger demo` from an empty cache, then warm (fresh processes)")
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        cold, cold_split = _demo(Path(tmp), "cold.db")
        warm, warm_split = _demo(Path(tmp), "warm.db")
    sec.add(Figure("first demo, empty cache", "s", [cold], goal="<= 180",
                   note="dequantise + sample statistics + 12 edits with probes"),
            Figure("demo again (model and statistics cached)", "s", [warm], goal="<= 60"))
    sec.info = {"cold_split_s": cold_split, "warm_split_s": warm_split}
    return sec
