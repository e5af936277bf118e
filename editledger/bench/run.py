"""Run the benchmarks in order, one ``Section`` each, with its wall time and peak memory; a benchmark that
fails is recorded with its error and the others still run."""
from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Callable

from editledger.bench.figures import Section, describe_machine, peak_rss_mb, reset_peak_rss

SECTIONS = ("ledger", "checkout", "gptj", "editors", "scoring", "replay", "sharing", "demo")


def _timed(name: str, fn: Callable[[], Section]) -> Section:
    reset_peak_rss()
    t = time.perf_counter()
    try:
        sec = fn()
    except Exception as e:  # noqa: BLE001 - one failing benchmark must not lose the others' figures
        sec = Section(name, name, error=f"{type(e).__name__}: {e}")
        sec.info["traceback"] = traceback.format_exc()[-2000:]
    sec.wall_s = round(time.perf_counter() - t, 1)
    sec.peak_rss_mb = round(peak_rss_mb(), 1)
    print(f"editledger bench: {sec.name} done in {sec.wall_s:.0f} s{' (FAILED: ' + sec.error + ')' if sec.error else ''}",
          flush=True)
    return sec


def run_all(quick: bool, only: list[str] | None = None, out: Path | None = None) -> dict:
    import tempfile

    from editledger.bench import checkout, demo, editors, gptj, ledger_io, replay, scoring, sharing
    from simulator import threads
    threads.apply()                             # the thread count a model load would set, before anything runs
    want = [s for s in SECTIONS if not only or s in only]
    if quick and not only:
        want.remove("demo")                     # ~3 minutes from an empty cache: the full bench only
    result = {"quick": quick, "machine": describe_machine(), "sections": []}
    secs = result["sections"]

    def save():
        if out is not None:
            from editledger.bench.table import markdown
            out.mkdir(parents=True, exist_ok=True)
            (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
            (out / "bench.md").write_text(markdown(result))

    if "ledger" in want:
        secs.append(_timed("ledger", lambda: ledger_io.bench_ledger(quick)).to_dict())
    if "checkout" in want:
        secs.append(_timed("checkout", lambda: checkout.bench_checkout(quick)).to_dict())
    if "gptj" in want:
        secs.append(_timed("gptj_store", lambda: gptj.bench_gptj_store(quick)).to_dict())
        secs.append(_timed("gptj_checkout", lambda: gptj.bench_gptj_checkout(quick)).to_dict())
    save()
    if "editors" in want or "scoring" in want:
        from ledger import Ledger
        from simulator.session import Session
        with tempfile.TemporaryDirectory(prefix="bench_editors_") as tmp, Ledger.open(f"{tmp}/e.db") as led:
            session = Session.open(led, editors.MODEL, progress=True)
            if "editors" in want:
                ed = _timed("editors", lambda: editors.bench_editors(session, quick))
                secs.append(ed.to_dict())
                if "gptj" in want:
                    secs.append(_timed("gptj_model", lambda: gptj.predict(session, ed.info, quick)).to_dict())
            if "scoring" in want:
                secs.append(_timed("scoring", lambda: scoring.bench_scoring(session.lm, quick)).to_dict())
            del session
        save()
    if "replay" in want:
        secs.append(_timed("replay", lambda: replay.bench_replay(quick)).to_dict())
        save()
    if "sharing" in want:
        secs.append(_timed("sharing", lambda: sharing.bench_sharing(quick)).to_dict())
        save()
    if "demo" in want:
        secs.append(_timed("demo", demo.bench_demo).to_dict())
    save()
    return result
