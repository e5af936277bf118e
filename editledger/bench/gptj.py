"""GPT-J-6B's scale, labelled as simulation: the delta store, checkout and ledger at GPT-J's real shapes
(28 layers, d_model 4096, d_ff 16384: ``fc_out`` is 4096 x 16384, 256 MiB in fp32) with synthetic deltas,
measured; and ROME's and MEMIT's time and memory on GPT-J from the cost model (editledger/bench/costmodel.py)
at the FLOP rates measured on the embedded model, predicted (no GPT-J weights are loaded)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from editledger.bench import costmodel
from editledger.bench.checkout import bench_checkout, delta_bytes
from editledger.bench.figures import Figure, Section
from editledger.bench.ledger_io import record_chain

FC_OUT = (4096, 16384)
MEMIT_LAYERS = [3, 4, 5, 6, 7, 8]


def bench_gptj_store(quick: bool) -> Section:
    from ledger import Ledger
    sec = Section("gptj_store", "GPT-J shapes, synthetic deltas (simulation): ledger and delta store")
    steps = 50 if quick else 400
    with tempfile.TemporaryDirectory(prefix="bench_gptj_") as tmp:
        with Ledger.open(str(Path(tmp) / "rome.db")) as led:
            _, _, rome = record_chain(led, steps, FC_OUT, rank=1, tensors=["transformer.h.5.mlp.fc_out.weight"],
                                      desc="GPT-J ROME steps")
        with Ledger.open(str(Path(tmp) / "memit.db")) as led:
            _, _, memit = record_chain(led, steps // 5, FC_OUT, rank=10,
                                       tensors=[f"transformer.h.{i}.mlp.fc_out.weight" for i in MEMIT_LAYERS],
                                       desc="GPT-J MEMIT steps")
    sec.add(Figure("record a ROME step (rank 1 on fc_out)", "ms", [x * 1e3 for x in rome], note=f"{steps} steps"),
            Figure("record a MEMIT step (rank 10 on 6 fc_out)", "ms", [x * 1e3 for x in memit],
                   note=f"{steps // 5} steps"))
    low, dense = delta_bytes(FC_OUT, 1)
    low10, _ = delta_bytes(FC_OUT, 10)
    sec.add(Figure("dense fp32 bytes / ROME delta bytes", "x", [dense / low]),
            Figure("dense fp32 bytes / MEMIT rank-10 delta bytes (per layer)", "x", [dense / low10]))
    sec.info = {"rome_delta_bytes": low, "memit_delta_bytes_per_layer": low10, "dense_fp32_bytes": dense}
    return sec


def bench_gptj_checkout(quick: bool) -> Section:
    steps = 8 if quick else 40
    return bench_checkout(quick, shape=FC_OUT, name="gptj_checkout", steps=steps, rounds=1,
                          keyframes=[4] if quick else [8],
                          title=f"GPT-J fc_out (4096x16384), synthetic {steps}-step chain (simulation): checkout "
                                "against one copy")


def predict(editors_info: dict, gemma_cfg: dict) -> Section:
    """ROME and MEMIT on GPT-J from the cost model, at the rates measured on the embedded model."""
    import torch
    sec = Section("gptj_model", "GPT-J-6B ROME / MEMIT from the cost model (prediction, not a measurement)")
    g = costmodel.Shapes.of("gemma-3-270m", gemma_cfg)
    batch = editors_info.get("rome_batch")
    split = editors_info.get("rome_mean_split")
    if not batch or not split or not split.get("value_s"):
        sec.error = "needs the editors benchmark's ROME split (run it first)"
        return sec
    b = costmodel.Batch(**batch)
    gm = costmodel.rome(g, editors_info["rome_layer"], b, factor_cached=True)
    rate = (gm["keys_flop"] + gm["value_flop"]) / split["value_s"]          # FLOP/s the value loop reached
    # float64 Cholesky rate on this machine, at Gemma's key width
    C = torch.randn(g.f, g.f, dtype=torch.float64)
    C = C @ C.T / g.f + torch.eye(g.f, dtype=torch.float64)
    t = time.perf_counter()
    torch.linalg.cholesky(C)
    chol_s = time.perf_counter() - t
    chol_rate = (g.f ** 3 / 3 * 2) / chol_s
    j = costmodel.GPTJ_6B
    jb = costmodel.Batch(rows=7, width=b.width, prefix=b.prefix, positions=b.positions, steps=b.steps)
    jr = costmodel.rome(j, 5, jb)
    jm = costmodel.memit(j, MEMIT_LAYERS, 10, jb)
    sec.info = {"gemma_value_flop": gm["keys_flop"] + gm["value_flop"], "gemma_value_s": split["value_s"],
                "value_rate_gflops": rate / 1e9, "cholesky_fp64_gflops": chol_rate / 1e9,
                "gemma_cholesky_s": chol_s, "gptj_rome": jr, "gptj_memit_10": jm, "gptj_batch": costmodel.to_dict(jb)}
    sec.add(Figure("ROME value optimisation on GPT-J, CPU here (predicted)", "s",
                   [(jr["keys_flop"] + jr["value_flop"]) / rate], note=f"{rate / 1e9:.0f} GFLOP/s measured on Gemma"),
            Figure("ROME first solve on GPT-J: Cholesky of C 16384^2, fp64 (predicted)", "s",
                   [jr["solve_flop"] / chol_rate], note=f"{chol_rate / 1e9:.0f} GFLOP/s measured at 2048^2"),
            Figure("MEMIT solve, 10 edits, 6 layers, (lam C + K K^T) each (predicted)", "s",
                   [jm["solve_flop"] / chol_rate]),
            Figure("MEMIT solve with cached chol(C) (Woodbury; predicted)", "s", [jm["solve_flop_woodbury"] / chol_rate]),
            Figure("ROME statistics of one layer (fp32)", "MB", [jr["stats_bytes_fp32"] / 1e6]),
            Figure("MEMIT statistics of 6 layers (fp32)", "MB", [jm["stats_bytes_fp32"] / 1e6]))
    return sec
