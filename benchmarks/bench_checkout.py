"""Checkout benchmark (not a test): a chain of rank-1 (ROME-shaped) edits recorded through the public
Session API in a fresh ledger, then every version checked out, verified, against one plain copy of
the touched tensor measured beside it (what a store of a full copy per version would cost to check
out), for several keyframe intervals K.

    python benchmarks/bench_checkout.py                          # Gemma 3 270M's down_proj (640 x 2048)
    python benchmarks/bench_checkout.py --shape 4096 16384 --rounds 1 --keyframes 0 8   # GPT-J's fc_out (simulation)
    python benchmarks/bench_checkout.py --json out.json          # also write the numbers

``measure(...) -> dict`` is what ``editledger bench`` calls. The factors are random (their values do
not change the cost of applying them). The copy bound copies from distinct stored full copies
into a buffer of its own (the live weights are the session's), timed just before each checkout,
so load from other processes falls on both alike. Reported per K, as ratios to the median copy:

* ``ratio``: the median verified checkout over random jumps between all versions (the goal: <= 3);
* ``worst_version_ratio``: the slowest version's median (the one furthest from a keyframe);
* ``cold_ratio``: the first checkout of each version in a new session (reads and sha256-verifies the
  artifacts from disk, reads the lineage from the database);
* ``walk_ratio``: versions 1, 2, ..., N in order (each carried forward from the one before);
* ``unverified_ratio``: random jumps without the fingerprint check;
* ``cpu_ratio``: the same jumps in CPU time of this process (less sensitive to other processes);
* ``breakdown_ms``: where a verified checkout's time goes (lineage, rebuild, fingerprints, rest).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ledger import Ledger  # noqa: E402
from simulator.deltas import EditResult, TensorDelta  # noqa: E402
from simulator.session import Session  # noqa: E402

NAME = "model.layers.5.mlp.down_proj.weight"
GOAL_RATIO = 3.0
COPY_BUDGET_BYTES = 1 << 30          # distinct stored copies for the copy bound (at least 2)


def machine() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cores": os.cpu_count(), "cpu": model, "torch_threads": torch.get_num_threads(),
            "load_1min": None if load is None else round(load, 2), "python": platform.python_version(),
            "torch": torch.__version__}


class _Synthetic:
    """The model a session needs: one parameter with the given shape, random, seeded."""

    def __init__(self, shape: tuple[int, int], seed: int):
        g = torch.Generator().manual_seed(seed)
        self.base = torch.randn(*shape, generator=g)
        self.module = torch.nn.Module()
        self.param = torch.nn.Parameter(self.base.clone(), requires_grad=False)
        self.module.register_parameter("w", self.param)
        self.fingerprint = hashlib.sha256(f"bench|{shape}|{seed}".encode()).hexdigest()

    def session(self, led: Ledger) -> Session:
        """A new session on the base weights (its own artifact and lineage caches)."""
        self.param.data.copy_(self.base)
        bm = led.register_base_model(name="bench", source="synthetic", fingerprint=self.fingerprint, config={})
        lm = SimpleNamespace(model=self.module, tokenizer=None, spec=None, fingerprint=self.fingerprint)
        return Session(led, lm, bm.id, led.base_version(bm.id).id, params={NAME: self.param})


def build(led: Ledger, model: _Synthetic, steps: int, k: int, seed: int, progress: bool) -> list[int]:
    """Record ``steps`` rank-1 edits (a keyframe every ``k`` steps, none for 0); their version ids."""
    s = model.session(led)
    shape = tuple(model.param.shape)
    g = torch.Generator().manual_seed(seed + 1)
    run = led.begin_run(base_model_id=s.base_model_id, method="synthetic", hparams={}, stream_name="bench",
                        stream_digest="0" * 64, stream_kind="sequential")
    vids = []
    for step in tqdm(range(1, steps + 1), desc=f"record K={k or '-'}", unit="step", disable=not progress,
                     file=sys.stderr, leave=False):
        d = TensorDelta(NAME, "low_rank", {"u": torch.randn(shape[0], 1, generator=g) * 1e-2,
                                           "v": torch.randn(shape[1], 1, generator=g) * 1e-2})
        s.apply("synthetic", EditResult(deltas=[d]))
        v = s.commit(run.id, step=step, requests=[], diagnostics={}, wall_time_s=0.0,
                     keyframe=bool(k) and step % k == 0)
        vids.append(v.id)
    return vids


def _stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs) * 1e3, "min": min(xs) * 1e3, "max": max(xs) * 1e3, "n": len(xs)}


class _Copies:
    """The copy bound: one plain copy of the touched tensor from one of several distinct stored
    full copies (so the source is not the one just copied, hot in the cache) into a buffer."""

    def __init__(self, base: torch.Tensor, n: int, seed: int):
        g = torch.Generator().manual_seed(seed + 2)
        self.stored = [torch.randn(base.shape, generator=g) for _ in range(n)]
        self.dst = torch.empty_like(base)
        self.i = 0
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def once(self) -> None:
        self.i = (self.i + 1) % len(self.stored)
        src = self.stored[self.i]
        t, c = time.perf_counter(), time.process_time()
        self.dst.copy_(src)
        self.wall.append(time.perf_counter() - t)
        self.cpu.append(time.process_time() - c)


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _jumps(vids: list[int], rounds: int, rng: random.Random) -> list[int]:
    """Every version ``rounds`` times, shuffled, never the same version twice in a row."""
    order: list[int] = []
    for _ in range(rounds):
        batch = list(vids)
        rng.shuffle(batch)
        if order and batch[0] == order[-1]:
            batch.append(batch.pop(0))
        order += batch
    return order


def _breakdown(s: Session, targets: list[int]) -> dict:
    """A verified checkout's steps, timed one by one (the same calls ``Session.checkout`` makes)."""
    from simulator.deltas import fingerprint_algo
    parts = {"lineage": [], "rebuild": [], "fingerprints": [], "verify+state": []}
    for vid in targets:
        t0 = time.perf_counter()
        links, expected = s._chain(vid)
        live_at = s._live_at(links)
        t1 = time.perf_counter()
        names = s._ws.materialise([lk.weights for lk in links], live_at=live_at)
        t2 = time.perf_counter()
        got = s._ws.fingerprints(names, {n: fingerprint_algo(fp) for n, fp in expected.items()})
        t3 = time.perf_counter()
        assert not s._mismatches(expected, got), f"version {vid} did not verify"
        s._fps, s.current_version_id = got, vid
        t4 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key].append(dt)
    return {k: statistics.median(v) * 1e3 for k, v in parts.items()}


def measure_k(led: Ledger, model: _Synthetic, vids: list[int], copies: _Copies, *, rounds: int, seed: int,
              breakdown: bool = True, progress: bool = False) -> dict:
    rng = random.Random(seed)
    first = len(copies.wall)

    def bar(xs, what):
        return tqdm(xs, desc=what, unit="checkout", disable=not progress, file=sys.stderr, leave=False)

    # cold: a new session, each version once
    s = model.session(led)
    cold = []
    for vid in bar(_jumps(vids, 1, rng), "cold"):
        copies.once()
        cold.append(_timed(lambda: s.checkout(vid))[0])
    # warm random jumps, verified: per version, and overall
    per_version: dict[int, list[float]] = {v: [] for v in vids}
    wall, cpu = [], []
    for vid in bar(_jumps(vids, rounds, rng), "verified"):
        copies.once()
        w, c = _timed(lambda: s.checkout(vid))
        wall.append(w)
        cpu.append(c)
        per_version[vid].append(w)
    unver = []
    for vid in bar(_jumps(vids, max(1, rounds // 2), rng), "unverified"):
        copies.once()
        unver.append(_timed(lambda: s.checkout(vid, verify=False))[0])
    walk = []
    s.checkout(s.base_version_id)
    for vid in bar(vids, "walk"):
        copies.once()
        walk.append(_timed(lambda: s.checkout(vid))[0])
    copy_med = statistics.median(copies.wall[first:])
    copy_cpu = statistics.median(copies.cpu[first:])
    worst_vid, worst = max(((v, statistics.median(ts)) for v, ts in per_version.items()), key=lambda x: x[1])
    out = {
        "copy_ms": _stats(copies.wall[first:]),
        "checkout_ms": _stats(wall),
        "ratio": statistics.median(wall) / copy_med,
        "worst_version": {"version_id": worst_vid, "step": vids.index(worst_vid) + 1, "ms": worst * 1e3},
        "worst_version_ratio": worst / copy_med,
        "cold_ratio": statistics.median(cold) / copy_med,
        "cold_ms": _stats(cold),
        "walk_ratio": statistics.median(walk) / copy_med,
        "unverified_ratio": statistics.median(unver) / copy_med,
        "cpu_ratio": statistics.median(cpu) / copy_cpu if copy_cpu > 0 else None,
    }
    if breakdown:
        s.checkout(s.base_version_id)
        targets = _jumps(vids, 1, rng)
        out["breakdown_ms"] = _breakdown(s, targets)
    return out


def measure(shape: tuple[int, int] = (640, 2048), steps: int = 40, keyframes=(0, 8, 4), rounds: int = 5,
            threads: int | None = 1, seed: int = 0, breakdown: bool = True, progress: bool = False,
            home: str | Path | None = None) -> dict:
    """Checkout against the copy bound for each keyframe interval in ``keyframes`` (0: none).
    ``threads``: torch's intra-op threads for the run (None: leave as set). Returns a JSON-able
    dict: the machine, the copy bound, and per K the ratios described in the module docstring."""
    if threads is not None:
        torch.set_num_threads(threads)
    shape = (int(shape[0]), int(shape[1]))
    nbytes = shape[0] * shape[1] * 4
    model = _Synthetic(shape, seed)
    copies = _Copies(model.base, max(2, min(steps, COPY_BUDGET_BYTES // nbytes)), seed)
    results = []
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        for k in keyframes:
            with Ledger.open(str(Path(tmp) / f"k{k}.db")) as led:
                t = time.perf_counter()
                vids = build(led, model, steps, k, seed, progress)
                record_s = time.perf_counter() - t
                r = measure_k(led, model, vids, copies, rounds=rounds, seed=seed, breakdown=breakdown,
                              progress=progress)
            results.append({"K": k or None, "record_s": record_s, **r})
    return {
        "what": f"checkout of any version of a {steps}-step chain of rank-1 deltas, verified, against one "
                f"plain copy of the touched tensor ({shape[0]}x{shape[1]} float32, "
                f"{nbytes / 2**20:.1f} MiB), side by side",
        "shape": list(shape), "steps": steps, "rounds": rounds, "goal_ratio": GOAL_RATIO,
        "copy_ms": _stats(copies.wall), "machine": machine(), "results": results,
    }


def table(res: dict) -> str:
    """The markdown table of ``measure``'s result."""
    lines = [f"{res['what']}; copy median {res['copy_ms']['median']:.2f} ms; {res['machine']['torch_threads']} "
             f"torch thread(s), load {res['machine']['load_1min']} on {res['machine']['cores']} cores",
             "",
             "| K | checkout (median) | ratio | worst version | cold | forward walk | unverified | CPU-time ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["results"]:
        cpu = "-" if r["cpu_ratio"] is None else f"{r['cpu_ratio']:.1f}x"
        lines.append(f"| {r['K'] or 'none'} | {r['checkout_ms']['median']:.2f} ms | {r['ratio']:.1f}x | "
                     f"{r['worst_version_ratio']:.1f}x (step {r['worst_version']['step']}) | {r['cold_ratio']:.1f}x | "
                     f"{r['walk_ratio']:.1f}x | {r['unverified_ratio']:.1f}x | {cpu} |")
    if any("breakdown_ms" in r for r in res["results"]):
        lines += ["", "| K | lineage | rebuild | fingerprints | verify + state |", "| --- | --- | --- | --- | --- |"]
        for r in res["results"]:
            b = r.get("breakdown_ms")
            if b:
                lines.append(f"| {r['K'] or 'none'} | " + " | ".join(f"{b[k]:.3f} ms" for k in
                                                                   ("lineage", "rebuild", "fingerprints", "verify+state"))
                             + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=2, type=int, default=[640, 2048], metavar=("ROWS", "COLS"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5, help="random jumps: each version this many times")
    ap.add_argument("--keyframes", nargs="+", type=int, default=[0, 8, 4], help="keyframe intervals (0: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the copy's and the kernel's)")
    ap.add_argument("--no-breakdown", action="store_true", help="only the public API (runs on older code too)")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    res = measure(tuple(a.shape), a.steps, a.keyframes, a.rounds, a.threads, breakdown=not a.no_breakdown,
                  progress=True)
    if tuple(a.shape) == (4096, 16384):
        res["label"] = "simulation: GPT-J-6B's fc_out shape with synthetic rank-1 deltas"
        print(f"SIMULATION — {res['label']}")
    print(table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
