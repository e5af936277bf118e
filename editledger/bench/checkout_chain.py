"""Checkout benchmark: a chain of rank-1 (ROME-shaped) edits recorded through the public
Session API in a fresh ledger, then every version checked out, verified, against one plain copy of
the touched tensor measured beside it (what a store of a full copy per version would cost to check
out), for several keyframe intervals K.

    python benchmarks/bench_checkout.py                          # Gemma 3 270M's down_proj (640 x 2048)
    python benchmarks/bench_checkout.py --shape 4096 16384 --rounds 1 --keyframes 0 8   # GPT-J's fc_out (simulation)
    python benchmarks/bench_checkout.py --json out.json          # also write the numbers

``measure(...) -> dict`` is what ``editledger bench`` calls (``section`` turns it into the bench's figures;
``table(result)`` renders it for the script ``benchmarks/bench_checkout.py``). The factors
are random (their values do not change the cost of applying them). The copy bound copies from
distinct stored full copies into a buffer of its own (the live weights are the session's), timed
just before each checkout, so load from other processes falls on both alike. Every figure is a
ratio to the median copy, in wall-clock time and in CPU time of this process: with one torch
thread both operations run on one core, so the CPU-time ratio is what the wall-clock ratio would
be on an idle machine, while on a loaded one the wall-clock median of a 3 ms checkout includes
time slices given to other processes that a 1 ms copy mostly escapes. Per keyframe interval K:

* ``ratio`` / ``cpu_ratio``: the median verified checkout over random jumps between all versions
  (each version ``rounds`` times; the goal is <= 3);
* ``worst_version``: the slowest version's median (the one furthest from a keyframe);
* ``cold``: the first checkout of each version in a new session (reads the lineage from the
  database, reads and sha256-verifies the artifacts from disk; waiting on the disk is not CPU time);
* ``walk``: versions 1, 2, ..., N in order (each carried forward from the one before);
* ``unverified``: random jumps without the fingerprint check;
* ``breakdown_cpu_ms``: where a verified checkout's CPU time goes (lineage, rebuild, fingerprints, rest).
"""
from __future__ import annotations

import hashlib
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm import tqdm

from ledger import Ledger
from simulator import rank1_kernel
from simulator.deltas import EditResult, TensorDelta
from simulator.session import Session

NAME = "model.layers.5.mlp.down_proj.weight"
GOAL_RATIO = 3.0
GPTJ_FC_OUT = (4096, 16384)          # transformer.h.*.mlp.fc_out.weight of GPT-J-6B
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
    """A verified checkout's steps, timed one by one in CPU time (the calls ``Session.checkout`` makes)."""
    from simulator.deltas import fingerprint_algo
    parts = {"lineage": [], "rebuild": [], "fingerprints": [], "verify+state": []}
    for vid in targets:
        t0 = time.thread_time()
        links, expected = s._chain(vid)
        live_at = s._live_at(links)
        t1 = time.thread_time()
        names = s._ws.materialise([lk.weights for lk in links], live_at=live_at)
        t2 = time.thread_time()
        got = s._ws.fingerprints(names, {n: fingerprint_algo(fp) for n, fp in expected.items()})
        t3 = time.thread_time()
        assert not s._mismatches(expected, got), f"version {vid} did not verify"
        s._fps, s.current_version_id = got, vid
        t4 = time.thread_time()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key].append(dt)
    return {k: statistics.median(v) * 1e3 for k, v in parts.items()}


def measure_k(led: Ledger, model: _Synthetic, vids: list[int], copies: _Copies, *, rounds: int, seed: int,
              breakdown: bool = True, progress: bool = False) -> dict:
    rng = random.Random(seed)
    first = len(copies.wall)

    def bar(xs, what):
        return tqdm(xs, desc=what, unit="checkout", disable=not progress, file=sys.stderr, leave=False)

    def run(s: Session, order: list[int], what: str, **kw) -> tuple[list[float], list[float], dict]:
        wall, cpu, per_version = [], [], {}
        for vid in bar(order, what):
            copies.once()
            w, c = _timed(lambda: s.checkout(vid, **kw))
            wall.append(w)
            cpu.append(c)
            per_version.setdefault(vid, []).append((w, c))
        return wall, cpu, per_version

    s = model.session(led)                                  # cold: a new session, each version once
    cold = run(s, _jumps(vids, 1, rng), "cold")
    warm = run(s, _jumps(vids, rounds, rng), "verified")    # random jumps between all versions
    unver = run(s, _jumps(vids, max(1, rounds // 2), rng), "unverified", verify=False)
    s.checkout(s.base_version_id)
    walk = run(s, vids, "walk")                             # 1, 2, ..., N
    copy_wall = statistics.median(copies.wall[first:])
    copy_cpu = statistics.median(copies.cpu[first:])

    def ratios(x) -> dict:
        return {"wall": statistics.median(x[0]) / copy_wall,
                "cpu": statistics.median(x[1]) / copy_cpu if copy_cpu > 0 else None}
    worst = {}
    for j, key in ((0, "wall"), (1, "cpu")):
        vid, t = max(((v, statistics.median(x[j] for x in ts)) for v, ts in warm[2].items()), key=lambda x: x[1])
        base = copy_wall if j == 0 else copy_cpu
        worst[key] = {"step": vids.index(vid) + 1, "ms": t * 1e3, "ratio": t / base if base > 0 else None}
    out = {
        "copy_ms": _stats(copies.wall[first:]), "copy_cpu_ms": _stats(copies.cpu[first:]),
        "checkout_ms": _stats(warm[0]), "checkout_cpu_ms": _stats(warm[1]),
        "ratio": ratios(warm)["wall"], "cpu_ratio": ratios(warm)["cpu"],
        "worst_version": worst,
        "cold": ratios(cold), "walk": ratios(walk), "unverified": ratios(unver),
        # per-checkout seconds, for figures with min and max (editledger bench)
        "samples_s": {"copy": copies.wall[first:], "copy_cpu": copies.cpu[first:], "verified": warm[0],
                      "verified_cpu": warm[1], "unverified": unver[0], "cold": cold[0], "walk": walk[0]},
    }
    if breakdown:
        s.checkout(s.base_version_id)
        out["breakdown_cpu_ms"] = _breakdown(s, _jumps(vids, 1, rng))
    return out


def measure(shape: tuple[int, int] = (640, 2048), steps: int = 40, keyframes=(0, 8, 4), rounds: int = 5,
            threads: int | None = 1, seed: int = 0, breakdown: bool = True, progress: bool = False,
            home: str | Path | None = None) -> dict:
    """Checkout against the copy bound for each keyframe interval in ``keyframes`` (0: none).
    ``threads``: torch's intra-op threads for the run (None: leave as set). Returns a JSON-able
    dict: the machine, the copy bound, and per K the ratios described in the module docstring."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure((int(shape[0]), int(shape[1])), steps, keyframes, rounds, seed, breakdown, progress, home)
    finally:
        torch.set_num_threads(before)


def _measure(shape, steps, keyframes, rounds, seed, breakdown, progress, home) -> dict:
    # the one-pass kernel is loaded up front and its one-time cost reported on its own (a process
    # that rebuilds as much as this one loads it anyway; see simulator.rank1_kernel)
    t = time.perf_counter()
    kernel = rank1_kernel.kernel() is not None
    kernel_load_s = time.perf_counter() - t
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
        "kernel": kernel, "kernel_load_s": kernel_load_s,
        "copy_ms": _stats(copies.wall), "machine": machine(), "results": results,
        **({"label": "simulation: GPT-J-6B's fc_out shape with synthetic rank-1 deltas"}
           if shape == GPTJ_FC_OUT else {}),
    }


def table(res: dict) -> str:
    """The markdown tables of ``measure``'s result: ratios to the copy, wall-clock / CPU time."""
    m = res["machine"]
    head = (f"SIMULATION ({res['label']}). " if "label" in res else "") + (
        f"{res['what']}; copy median {res['copy_ms']['median']:.2f} ms; {m['torch_threads']} torch thread(s); "
        f"load {m['load_1min']} on {m['cores']} cores ({m['cpu']}); "
        + (f"rank-1 kernel loaded in {res['kernel_load_s']:.2f} s, once per process" if res.get("kernel")
           else "no rank-1 kernel (numba absent): the reference path"))
    lines = [head, "",
             "ratios to the copy, wall-clock / CPU time of this process (goal: <= "
             f"{res['goal_ratio']:g}x)", "",
             "| K | checkout, median | ratio | worst version | cold | forward walk | unverified |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def pair(d) -> str:
        return f"{d['wall']:.1f}x / " + ("-" if d["cpu"] is None else f"{d['cpu']:.1f}x")
    for r in res["results"]:
        w = r["worst_version"]
        lines.append(f"| {r['K'] or 'none'} | {r['checkout_ms']['median']:.2f} ms / {r['checkout_cpu_ms']['median']:.2f} ms"
                     f" | {pair({'wall': r['ratio'], 'cpu': r['cpu_ratio']})} "
                     f"| {pair({'wall': w['wall']['ratio'], 'cpu': w['cpu']['ratio']})} (steps {w['wall']['step']}, "
                     f"{w['cpu']['step']}) | {pair(r['cold'])} | {pair(r['walk'])} | {pair(r['unverified'])} |")
    if any("breakdown_cpu_ms" in r for r in res["results"]):
        lines += ["", "where a verified checkout's CPU time goes (median per checkout, random jumps)", "",
                  "| K | lineage | rebuild | fingerprints | verify + state |", "| --- | --- | --- | --- | --- |"]
        for r in res["results"]:
            b = r.get("breakdown_cpu_ms")
            if b:
                lines.append(f"| {r['K'] or 'none'} | " + " | ".join(
                    f"{b[k]:.2f} ms" for k in ("lineage", "rebuild", "fingerprints", "verify+state")) + " |")
    return "\n".join(lines)
