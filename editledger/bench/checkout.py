"""Checkout against the copy bound, and delta bytes against a dense fp32 diff.

The measurement is ``checkout_chain.measure`` (also the script ``benchmarks/bench_checkout.py``): a chain
of rank-1 (ROME-shaped) deltas recorded through the Session API, every version checked out in random
jumps, verified, each checkout timed beside one plain copy of the touched tensor. Here its per-checkout
times become figures: ratios to the median copy, wall-clock and CPU time, for each keyframe interval.
"""
from __future__ import annotations

import statistics

from editledger.bench.figures import Figure, Section

GEMMA_DOWN_PROJ = (640, 2048)        # model.layers.*.mlp.down_proj.weight of Gemma 3 270M
REPLAY_K = 8                         # the replay's default keyframe interval: the one the goal is about


def delta_bytes(shape: tuple[int, int], rank: int = 1) -> tuple[int, int]:
    """(bytes of a rank-``rank`` delta artifact, bytes of a dense fp32 diff artifact) at ``shape``."""
    import torch  # deferred: `editledger bench --help` must not load torch

    from ledger.artifacts import serialize
    g = torch.Generator().manual_seed(0)
    low = serialize({"u": torch.randn(shape[0], rank, generator=g), "v": torch.randn(shape[1], rank, generator=g)})
    header = len(serialize({"delta": torch.zeros(1, 1)})) - 4
    return len(low), header + shape[0] * shape[1] * 4      # the dense file's header + its payload


def bench_checkout(quick: bool, shape: tuple[int, int] = GEMMA_DOWN_PROJ, title: str | None = None,
                   name: str = "checkout", steps: int = 40, rounds: int | None = None,
                   keyframes: list[int] | None = None) -> Section:
    from editledger.bench.checkout_chain import measure
    sec = Section(name, title or f"Checkout of any version of a {steps}-step chain against one plain copy "
                                 f"({shape[0]}x{shape[1]} fp32)")
    ks = keyframes or ([REPLAY_K] if quick else [REPLAY_K, 0, 4])
    rounds = rounds or (1 if quick else 5)
    res = measure(shape, steps, ks, rounds, threads=1, breakdown=not quick)
    for r in res["results"]:
        x = r["samples_s"]
        copy_w, copy_c = statistics.median(x["copy"]), statistics.median(x["copy_cpu"])
        lab = f"K={r['K']}" if r["K"] else "no keyframes"
        goal = "<= 3" if r["K"] == REPLAY_K else None
        sec.add(Figure(f"checkout, verified, {lab}", "x", [w / copy_w for w in x["verified"]], goal=goal,
                       note=f"random jumps, each version {rounds}x; wall clock / median copy"))
        if copy_c > 0:
            sec.add(Figure(f"checkout, verified, {lab}, CPU time", "x", [c / copy_c for c in x["verified_cpu"]],
                           note="CPU time of this process: the wall-clock ratio of an idle machine"))
        sec.add(Figure(f"worst version, {lab}", "x", [r["worst_version"]["wall"]["ratio"]],
                       note=f"step {r['worst_version']['wall']['step']}, its median"),
                Figure(f"first checkout in a new session, {lab}", "x", [w / copy_w for w in x["cold"]],
                       note="lineage from the database, artifacts read and verified from disk"),
                Figure(f"checkout, unverified, {lab}", "x", [w / copy_w for w in x["unverified"]]))
    sec.add(Figure("one plain copy (the bound)", "ms", [w * 1e3 for w in res["results"][0]["samples_s"]["copy"]]))
    low, dense = delta_bytes(shape)
    low10, _ = delta_bytes(shape, 10)
    sec.add(Figure("dense fp32 bytes / rank-1 delta bytes", "x", [dense / low]),
            Figure("dense fp32 bytes / rank-10 delta bytes (MEMIT, 10 edits)", "x", [dense / low10]))
    sec.info = {"shape": list(shape), "steps": steps, "rounds": rounds, "keyframes": ks, "kernel": res["kernel"],
                "kernel_load_s": round(res["kernel_load_s"], 3), "rank1_delta_bytes": low, "dense_fp32_bytes": dense,
                "breakdown_cpu_ms": {str(r["K"]): r.get("breakdown_cpu_ms") for r in res["results"]},
                **({"label": res["label"]} if "label" in res else {})}
    return sec
