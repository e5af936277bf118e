"""GPT-J-6B's scale, labelled as simulation: the delta store, checkout and ledger at GPT-J's real shapes
(28 layers, d_model 4096, d_ff 16384: ``fc_out`` is 4096 x 16384, 256 MiB in fp32) with synthetic deltas,
measured; and ROME's and MEMIT's time and memory on GPT-J from the cost model (editledger/bench/costmodel.py)
at the FLOP rates measured on the embedded model, predicted (no GPT-J weights are loaded)."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from editledger.bench import costmodel
from editledger.bench.checkout import bench_checkout, delta_bytes
from editledger.bench.figures import Figure, Section
from editledger.bench.ledger_io import record_chain

FC_OUT = (4096, 16384)
MEMIT_LAYERS = [3, 4, 5, 6, 7, 8]
# One H200 as measured in this workplace (bf16 matrix products; a device-to-device copy's bytes): the
# roofline the GPT-J prediction uses until benchmarks/gpu_check.sh measures the real thing
H200_FLOPS, H200_BYTES = 7.9e14, 4.3e12


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
    steps = 4 if quick else 40
    return bench_checkout(quick, shape=FC_OUT, name="gptj_checkout", steps=steps, rounds=1,
                          keyframes=[4] if quick else [8],
                          title=f"GPT-J fc_out (4096x16384), synthetic {steps}-step chain (simulation): checkout "
                                "against one copy")


def predict(session, editors_info: dict, quick: bool) -> Section:
    """The cost model checked on the embedded model, then ROME and MEMIT on GPT-J-6B from it (prediction).

    FLOPs: one ROME edit on Gemma counted by torch (eager attention, so that every product is seen) against
    the model for its batch and steps. Time: for each ROME edit of the editors benchmark, the model's FLOPs
    of its value optimisation over its measured seconds (a rate); time is FLOPs / rate if the rate holds
    across edits of different lengths and step counts: the spread says how well."""
    from dataclasses import replace

    import torch  # deferred: `editledger bench --help` must not load torch
    from torch.utils.flop_counter import FlopCounterMode

    from editledger.bench.editors import batch_of, requests
    from simulator.editors import get_editor, load_hparams
    from simulator.models.specs import SPECS
    sec = Section("gptj_model", "The cost model on the embedded model, and GPT-J-6B's ROME / MEMIT from it "
                                "(prediction, not a measurement)")
    loops = editors_info.get("rome_value_loops")
    if not loops:
        sec.error = "needs the editors benchmark's ROME edits (run it first)"
        return sec
    lm = session.lm
    g = costmodel.Shapes.of(lm.spec.name, lm.config["hf_config"])
    hp = replace(load_hparams("rome", lm.spec), mom2_adjustment=False)   # the solve is not counted by torch
    req = requests(1)[0]
    before = lm.model.config._attn_implementation
    lm.model.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as fc:
            res = get_editor("rome").edit(lm.model, lm.tokenizer, lm.spec, [req], hp)
    finally:
        lm.model.set_attn_implementation(before)
    gm = costmodel.rome(g, hp.layer, batch_of(lm, hp, req, res.diagnostics["requests"][0]["steps"]))
    modelled = gm["keys_flop"] + gm["value_flop"] + 2 * g.d * g.f          # + u v^T: torch counts that product
    sec.add(Figure("cost model FLOPs / FLOPs counted by torch, one ROME edit on Gemma", "x",
                   [modelled / fc.get_total_flops()], note=f"{fc.get_total_flops() / 1e9:.1f} GFLOP counted"))
    rates = [x["flop"] / x["value_s"] for x in loops]
    rate = statistics.median(rates)
    sec.add(Figure("rate of ROME's value optimisation on Gemma", "GFLOP/s", [r / 1e9 for r in rates],
                   note="model FLOPs / measured seconds, per edit"),
            Figure("predicted / measured value time, per edit (at the median rate)", "x",
                   [x["flop"] / rate / x["value_s"] for x in loops]))
    # the roofline of this machine: a large matrix product and a large copy, measured here
    peak, bw = _matmul_flops(), _copy_bytes_per_s()
    sec.add(Figure("weights read by ROME's value optimisation on Gemma, per edit (model)", "GB",
                   [x["weight_bytes"] / 1e9 for x in loops], note="fp32; each pass reads every matrix it uses"),
            Figure("measured / roofline value time, per edit", "x",
                   [x["value_s"] / costmodel.roofline_s(x["model"], x["steps"], peak, bw) for x in loops],
                   note=f"roofline here: {peak / 1e9:.0f} GFLOP/s (matrix product), {bw / 1e9:.1f} GB/s (copy)"))
    # float64 Cholesky rate on this machine, at Gemma's key width (the solve's rate)
    C = torch.randn(g.f, g.f, dtype=torch.float64)
    C = C @ C.T / g.f + torch.eye(g.f, dtype=torch.float64)
    chol_s = min(_timed(lambda: torch.linalg.cholesky(C)) for _ in range(2 if quick else 3))
    chol_rate = gm["cholesky_flop"] / chol_s
    # GPT-J-6B: its ROME/MEMIT hyper-parameters, Gemma's mean batch (token counts), on this CPU's rates
    j, jspec = costmodel.GPTJ_6B, SPECS["gpt-j-6b"]
    jr_hp, jm_hp = load_hparams("rome", jspec), load_hparams("memit", jspec)
    mb = editors_info["rome_batch"]
    jb = costmodel.Batch(rows=len(jr_hp.context_prefixes) + 1, width=mb["width"], prefix=mb["prefix"],
                         positions=mb["positions"], steps=mb["steps"], plain_width=mb["plain_width"])
    jr = costmodel.rome(j, jr_hp.layer, jb)
    jm = costmodel.memit(j, jm_hp.layers, 10, replace(jb, rows=len(jm_hp.context_prefixes) + 1))
    sec.info = {"gemma": costmodel.to_dict(g), "gemma_rome_counted_flop": fc.get_total_flops(),
                "gemma_rome_modelled_flop": modelled, "value_rate_gflops": rate / 1e9,
                "cholesky_fp64_gflops": chol_rate / 1e9, "gemma_cholesky_s": chol_s, "gptj": costmodel.to_dict(j),
                "gptj_batch": costmodel.to_dict(jb), "gptj_rome": jr, "gptj_memit_10": jm,
                "gptj_rome_layer": jr_hp.layer, "gptj_memit_layers": jm_hp.layers}
    rome_v = jr["keys_flop"] + jr["value_flop"]
    jr16 = costmodel.value(j, jr_hp.layer, jb, dtype_bytes=2)
    h200 = costmodel.roofline_s(jr16, jb.steps, H200_FLOPS, H200_BYTES)
    sec.add(Figure("GPT-J ROME value optimisation, FLOPs (model)", "TFLOP", [rome_v / 1e12],
                   note=f"{jb.rows} rows, {jb.width} columns, {jb.steps} steps"),
            Figure("GPT-J ROME value optimisation on this CPU (predicted)", "s", [rome_v / rate],
                   note=f"at {rate / 1e9:.0f} GFLOP/s, Gemma's rate"),
            Figure("GPT-J ROME value optimisation on one H200, fp16 (roofline, predicted)", "s", [h200],
                   note=f"weights read {jr16['value_weight_bytes'] / 1e9:.0f} GB at {H200_BYTES / 1e12:.1f} TB/s; "
                        f"benchmarks/gpu_check.sh measures it"),
            Figure("GPT-J ROME first solve: Cholesky of C (16384^2, fp64) on this CPU (predicted)", "s",
                   [jr["solve_flop"] / chol_rate], note=f"{chol_rate / 1e9:.0f} GFLOP/s measured at {g.f}^2"),
            Figure("GPT-J MEMIT, 10 edits on 6 layers: targets + keys, FLOPs (model)", "TFLOP",
                   [(jm["targets_flop"] + jm["keys_flop"]) / 1e12]),
            Figure("GPT-J MEMIT, 10 edits on 6 layers, on this CPU (predicted)", "s",
                   [(jm["targets_flop"] + jm["keys_flop"]) / rate + jm["solve_flop"] / chol_rate]),
            Figure("GPT-J weights (fp16)", "GB", [jr["weights_bytes_fp16"] / 1e9]),
            Figure("GPT-J ROME statistics of one layer (fp32) / solve memory (fp64)", "GB",
                   [jr["stats_bytes_fp32"] / 1e9], note=f"solve {jr['solve_bytes_fp64'] / 1e9:.1f} GB"),
            Figure("GPT-J MEMIT statistics of 6 layers (fp32)", "GB", [jm["stats_bytes_fp32"] / 1e9]))
    return sec


def _matmul_flops() -> float:
    """FLOP/s of a 1024^3 float32 matrix product here (the best of three)."""
    import torch  # deferred, as above
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    return 2 * 1024 ** 3 / min(_timed(lambda: a @ b) for _ in range(3))


def _copy_bytes_per_s() -> float:
    """Bytes per second read by a copy of a 256 MiB float32 tensor here (the best of three)."""
    import torch  # deferred, as above
    src = torch.randn(64, 1 << 20)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return src.numel() * 4 / min(_timed(lambda: dst.copy_(src)) for _ in range(3))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
