"""Fair under sharing: ROME edits alone, then beside one other torch process doing the same (a second
replay), for a thread policy; the ratio beside / alone is the figure (a fair share of 2 cores is 2x).

Two processes are started with ``python -m editledger.bench.sharing``: the measured one times its edits
alone, then waits while the competitor loads and starts editing in a loop, then times the same number of
edits beside it. Policies: ``passive`` (``OMP_WAIT_POLICY=PASSIVE``, the project's, see simulator/threads.py)
and ``spin`` (torch loaded before the policy is set: libgomp's default of spinning before it sleeps, which
is what the issue measured).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from editledger.bench.figures import Figure, Section


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    t = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark worker exited with {proc.returncode} before writing {path.name}")
        if time.time() - t > timeout:
            raise TimeoutError(f"benchmark worker did not write {path.name} within {timeout:.0f} s")
        time.sleep(0.2)


def _spawn(role: str, policy: str, d: Path, n: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    log = open(d / f"{role}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "editledger.bench.sharing", "--role", role, "--policy", policy,
                             "--dir", str(d), "--n", str(n)], env=env, stdout=log, stderr=subprocess.STDOUT)


def run_policy(policy: str, n: int, timeout: float = 900) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench_sharing_{policy}_") as tmp:
        d = Path(tmp)
        measured = _spawn("measured", policy, d, n)
        competitor = None
        try:
            _wait_for(d / "alone.json", measured, timeout)
            competitor = _spawn("competitor", policy, d, n)
            _wait_for(d / "competitor.running", competitor, timeout)
            (d / "go").touch()
            measured.wait(timeout)
            if measured.returncode != 0:
                raise RuntimeError(f"measured worker failed: {(d / 'measured.log').read_text()[-500:]}")
            res = {"alone": json.loads((d / "alone.json").read_text()),
                   "beside": json.loads((d / "beside.json").read_text())}
        finally:
            (d / "stop").touch()
            for p in (measured, competitor):
                if p is not None:
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
    return res


def bench_sharing(quick: bool) -> Section:
    sec = Section("sharing", "Fair under sharing: ROME beside one other torch process (fair share: 2x)")
    n = 1 if quick else 5          # quick (CI's smoke test, under 5 minutes in all): one edit each way
    for policy in (["passive"] if quick else ["passive", "spin"]):
        try:
            r = run_policy(policy, n)
        except (RuntimeError, TimeoutError) as e:
            sec.info.setdefault("failed", {})[policy] = str(e)
            continue
        alone, beside = r["alone"]["wall"], r["beside"]["wall"]
        med = statistics.median(alone)
        label = "PASSIVE (the policy)" if policy == "passive" else "spin (libgomp default)"
        sec.add(Figure(f"ROME alone, {label}", "s", alone),
                Figure(f"ROME beside a second replay, {label}", "s", beside),
                Figure(f"beside / alone, {label}", "x", [b / med for b in beside],
                       goal="<= 2.5" if policy == "passive" else None,
                       note="2x is a fair share of the cores"))
        sec.info[policy] = {"alone_cpu_s": r["alone"]["cpu"], "beside_cpu_s": r["beside"]["cpu"],
                            "threads": r["alone"]["threads"]}
    return sec


# ------------------------------------------------------------------------------------------------ worker
def _worker(role: str, policy: str, d: Path, n: int) -> None:
    if policy == "spin":   # torch loaded before any policy is set: libgomp keeps its default (spin, then sleep)
        importlib.import_module("torch")
    from ledger import Ledger
    from simulator.editors import get_editor, load_hparams
    from simulator.session import Session
    from simulator.stats_ledger import ledger_stats_provider

    from editledger.bench.editors import requests
    led = Ledger.open(str(d / f"{role}.db"))
    s = Session.open(led, "gemma-3-270m", progress=False)
    lm = s.lm
    hp = load_hparams("rome", lm.spec)
    stats = ledger_stats_provider(s, "self", None, progress=False, default_tokens=int(hp.mom2_n_samples))
    stats.prepare(lm.model, lm.tokenizer, lm.spec, [hp.layer])
    ed = get_editor("rome")
    reqs = requests(n + 1)

    def edit(req):
        t, c = time.perf_counter(), time.process_time()
        ed.edit(lm.model, lm.tokenizer, lm.spec, [req], hp, stats=stats)
        return time.perf_counter() - t, time.process_time() - c

    edit(reqs[0])                                               # warm-up
    if role == "competitor":
        (d / "competitor.running").touch()
        i = 0
        while not (d / "stop").exists():
            edit(reqs[i % len(reqs)])
            i += 1
        return
    import torch
    for phase in ("alone", "beside"):
        if phase == "beside":
            while not (d / "go").exists():
                time.sleep(0.2)
        times = [edit(r) for r in reqs[1:]]
        (d / f"{phase}.json").write_text(json.dumps({"wall": [w for w, _ in times], "cpu": [c for _, c in times],
                                                     "threads": torch.get_num_threads()}))


def main() -> None:
    ap = argparse.ArgumentParser(description="a worker of `editledger bench`'s sharing benchmark")
    ap.add_argument("--role", choices=["measured", "competitor"], required=True)
    ap.add_argument("--policy", choices=["passive", "spin"], required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--n", type=int, default=3)
    a = ap.parse_args()
    _worker(a.role, a.policy, Path(a.dir), a.n)


if __name__ == "__main__":
    main()
