"""Checkout against the copy bound, and delta bytes against a dense fp32 diff.

A chain of rank-1 (ROME-shaped) deltas with random factors is recorded in a fresh ledger (keyframes every K
steps), then random versions are checked out, forwards and backwards, verified against the recorded
fingerprints, and timed against one plain copy of the touched tensor (what a store of full copies per step
would cost) in the same process. The factors' values do not change the cost of applying them.
``benchmarks/bench_checkout.py`` prints the same measurement as a table, for any shape.
"""
from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from editledger.bench.figures import Figure, Section

NAME = "model.layers.5.mlp.down_proj.weight"


def build_chain(tmp: Path, shape: tuple[int, int], steps: int, k: int):
    """(session, version ids) of a ``steps``-step chain of rank-1 deltas on one tensor of ``shape``."""
    import torch

    from ledger import Ledger
    from simulator.checkout import Workspace
    from simulator.deltas import TensorDelta
    from simulator.session import Session, delta_to_input
    led = Ledger.open(str(tmp / f"k{k}.db"))
    g = torch.Generator().manual_seed(0)
    module = torch.nn.Module()
    attr = NAME.replace(".", "_")
    module.register_parameter(attr, torch.nn.Parameter(torch.randn(*shape, generator=g), requires_grad=False))
    ws = Workspace(params={NAME: getattr(module, attr)})
    bm = led.register_base_model(name="bench", source="synthetic", fingerprint=f"bench-{shape}-{k}", config={})
    base = led.base_version(bm.id)
    s = Session(ledger=led, lm=SimpleNamespace(model=module, fingerprint=bm.fingerprint), base_model_id=bm.id,
                base_version_id=base.id, workspace=ws, current_version_id=base.id)
    run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="bench",
                        stream_digest="0" * 64, stream_kind="sequential")
    head, fps, vids = base.id, {}, []
    for step in range(1, steps + 1):
        d = TensorDelta(NAME, "low_rank", {"u": torch.randn(shape[0], 1, generator=g) * 1e-2,
                                           "v": torch.randn(shape[1], 1, generator=g) * 1e-2})
        ws.apply(d)
        fps.update(ws.fingerprints({NAME}))
        kf = s.keyframe_of(fps) if k and step % k == 0 else None
        v = led.record_step(run.id, step=step, parent_version_id=head, requests=[], wall_time_s=0.0,
                            deltas=[delta_to_input(d, shape)], diagnostics={}, tensor_fingerprints=dict(fps),
                            keyframe=kf)
        head = v.id
        vids.append(v.id)
    s.current_version_id = head
    return s, vids


def copy_bound(shape: tuple[int, int], steps: int, jumps: int) -> list[float]:
    """Seconds of one plain copy of a stored full tensor into the live one (distinct sources, not hot)."""
    import torch
    stored = [torch.randn(*shape) for _ in range(min(steps, 8))]
    dst = torch.empty(*shape)
    rng, out = random.Random(1), []
    for _ in range(jumps):
        src = stored[rng.randrange(len(stored))]
        t = time.perf_counter()
        dst.copy_(src)
        out.append(time.perf_counter() - t)
    return out


def measure(shape: tuple[int, int], steps: int, jumps: int, keyframes: list[int]) -> dict:
    """{"copy_s": [...], K: {"verified": [...], "unverified": [...], "apply_only": [...]}} in seconds."""
    res: dict = {"copy_s": copy_bound(shape, steps, jumps)}
    with tempfile.TemporaryDirectory(prefix="bench_checkout_") as tmp:
        for k in keyframes:
            s, vids = build_chain(Path(tmp), shape, steps, k)
            rng = random.Random(0)
            order = [rng.choice(vids) for _ in range(jumps)]
            full, unver, apply_only = [], [], []
            for vid in order:
                t = time.perf_counter()
                s.checkout(vid)
                full.append(time.perf_counter() - t)
            for vid in order:
                t = time.perf_counter()
                s.checkout(vid, verify=False)
                unver.append(time.perf_counter() - t)
            for vid in order:                    # chain already read: only restore + apply + fingerprint
                links, _ = s.chain(vid)
                t = time.perf_counter()
                s.workspace.materialise(links, None)
                apply_only.append(time.perf_counter() - t)
            res[k] = {"verified": full, "unverified": unver, "apply_only": apply_only}
            s.ledger.close()
    return res


def delta_bytes(shape: tuple[int, int], rank: int = 1) -> tuple[int, int]:
    """(bytes of a rank-``rank`` delta artifact, bytes of a dense fp32 diff artifact) at ``shape``."""
    import torch

    from ledger.artifacts import serialize
    g = torch.Generator().manual_seed(0)
    low = serialize({"u": torch.randn(shape[0], rank, generator=g), "v": torch.randn(shape[1], rank, generator=g)})
    header = len(serialize({"delta": torch.zeros(1, 1)})) - 4
    return len(low), header + shape[0] * shape[1] * 4      # the dense file's header + its payload


def bench_checkout(quick: bool, shape: tuple[int, int] = (640, 2048), title: str | None = None,
                   name: str = "checkout", steps: int = 40, jumps: int | None = None,
                   keyframes: list[int] | None = None) -> Section:
    sec = Section(name, title or f"Checkout of a {steps}-step chain against one plain copy ({shape[0]}x{shape[1]} fp32)")
    jumps = jumps or (10 if quick else 30)
    ks = keyframes or ([8] if quick else [8, 0, 4])   # the first: the replay default, which the goal is about
    m = measure(shape, steps, jumps, ks)
    copy_med = statistics.median(m["copy_s"])
    sec.add(Figure("one plain copy (the bound)", "ms", [x * 1e3 for x in m["copy_s"]]))
    for k in ks:
        lab = f"K={k}" if k else "no keyframes"
        sec.add(Figure(f"checkout, verified, {lab}", "x", [x / copy_med for x in m[k]["verified"]],
                       goal="<= 3" if k == ks[0] else None, note=f"{jumps} random versions; ratio to the copy's median"),
                Figure(f"checkout, unverified, {lab}", "x", [x / copy_med for x in m[k]["unverified"]]),
                Figure(f"apply only, {lab}", "x", [x / copy_med for x in m[k]["apply_only"]]))
    low, dense = delta_bytes(shape)
    sec.add(Figure("dense fp32 bytes / rank-1 delta bytes", "x", [dense / low]))
    low10, _ = delta_bytes(shape, 10)
    sec.add(Figure("dense fp32 bytes / rank-10 delta bytes (MEMIT, 10 edits)", "x", [dense / low10]))
    sec.info = {"shape": list(shape), "steps": steps, "jumps": jumps, "keyframes": ks,
                "rank1_delta_bytes": low, "dense_fp32_bytes": dense, "copy_ms_median": copy_med * 1e3}
    return sec
