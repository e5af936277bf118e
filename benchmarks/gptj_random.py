"""ROME and MEMIT timed on a randomly initialised GPT-J-6B (the real config: 28 layers, d_model 4096,
d_ff 16384, vocabulary 50400), fp16 on a GPU. TIMING ONLY: the weights are random (nothing is downloaded),
so no edit means anything; the shapes, and so the time and memory, are GPT-J's.

    python benchmarks/gptj_random.py --device cuda --dtype float16 --out gptj_random.json
    python benchmarks/gptj_random.py --device cpu --tiny          # the same code path at toy size (a check)

Prompts are tokenised with tiny-gptj's tokenizer (ids fit GPT-J's vocabulary; lengths are what matter).
Statistics: 4,096 tokens sampled from the random model, for the edited layers. Reports the model's memory,
the statistics' time and bytes, each method's time (median of --repeats after a warm-up), the rate it ran
at by the cost model's FLOPs (editledger/bench/costmodel.py), the cost model against torch's FLOP count
of one ROME edit at these shapes, and the peak memory.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import threads  # noqa: E402

threads.early()

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from editledger.bench import costmodel  # noqa: E402
from simulator.editors import get_editor, load_hparams  # noqa: E402
from simulator.models import load_model  # noqa: E402
from simulator.models.specs import SPECS  # noqa: E402
from simulator.requests import EditRequest  # noqa: E402
from simulator.stats import Corpus, InMemoryStatsCache, StatsProvider  # noqa: E402

REQUESTS = [EditRequest("Eiffel Tower", "The {} is located in the city of", " Rome"),
            EditRequest("Toyota", "{} was founded in", " Germany"),
            EditRequest("Danielle Darrieux", "The mother tongue of {} is", " English"),
            EditRequest("Mount Fuji", "{} is a mountain in", " Italy"),
            EditRequest("Lionel Messi", "{} is a professional", " basketball"),
            EditRequest("The Louvre", "{} is a museum in", " London")]


def model_flops(method, shapes, hp, tok, spec, reqs, steps) -> float:
    """The cost model's FLOPs of one edit of ``reqs`` (value loops + keys, and the u v^T products torch
    counts), each request with its own batch and optimisation steps."""
    from simulator.editors.common import SuffixBatch, build_rows, pad_id_of
    batches = []
    for req, st in zip(reqs, steps):
        rows = build_rows(tok, spec, req, hp.context_prefixes, hp.kl_prompt, pad_id_of(tok))
        b = SuffixBatch.of(rows)
        batches.append(costmodel.Batch(rows=rows.input_ids.shape[0], width=b.input_ids.shape[1], prefix=b.start,
                                       positions=max(len(t) for t in rows.targets), steps=st or 0,
                                       plain_width=rows.input_ids.shape[1]))
    if method == "rome":
        r = costmodel.rome(shapes, hp.layer, batches[0])
        return r["keys_flop"] + r["value_flop"] + 2 * shapes.d * shapes.f
    n, m = len(reqs), len(hp.layers)
    parts = [costmodel.memit(shapes, hp.layers, 1, b) for b in batches]
    return sum(x["targets_flop"] + x["keys_flop"] for x in parts) + m * (2 * shapes.f ** 2 * n + 2 * shapes.d * shapes.f * n)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--tiny", action="store_true", help="GPT-J's code path at toy size (checkable on a CPU)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memit-batch", type=int, default=10)
    ap.add_argument("--stats-tokens", type=int, default=4096)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from transformers import GPTJConfig, GPTJForCausalLM
    dev, dtype = torch.device(a.device), getattr(torch, a.dtype)
    cfg = (GPTJConfig(n_embd=256, n_layer=10, n_head=4, rotary_dim=16, n_positions=512, vocab_size=50400) if a.tiny
           else GPTJConfig())                              # the defaults are GPT-J-6B's
    out = {"label": "random weights: timing only", "device": str(dev), "dtype": a.dtype,
           "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
           "config": {k: getattr(cfg, k) for k in ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions")}}
    t = time.perf_counter()
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)                          # initialise in the target dtype, on the device
    with torch.device(dev):
        model = GPTJForCausalLM(cfg)
    torch.set_default_dtype(prev)
    model.eval().requires_grad_(False)
    sync(dev)
    out["init_s"] = round(time.perf_counter() - t, 2)
    out["weights_gib"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30, 2)
    tok = load_model("tiny-gptj", device="cpu", progress=False).tokenizer
    spec = replace(SPECS["gpt-j-6b"], n_layers=cfg.n_layer)
    rome_hp = load_hparams("rome", spec)
    memit_hp = load_hparams("memit", spec)
    if a.tiny:
        rome_hp.layer, memit_hp.layers = 2, [1, 2, 3]
    layers = sorted({rome_hp.layer, *memit_hp.layers})
    stats = StatsProvider("random-gptj", Corpus(n_tokens=a.stats_tokens, seq_len=64), InMemoryStatsCache(),
                          progress=True, verify_base=False)
    t = time.perf_counter()
    for layer in layers:
        stats.get(model, tok, spec, layer)
    sync(dev)
    out["stats_s"] = round(time.perf_counter() - t, 2)
    out["stats_detail_s"] = stats.timings
    out["stats_bytes_per_layer"] = cfg.n_inner * cfg.n_inner * 4 if cfg.n_inner else (4 * cfg.n_embd) ** 2 * 4
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cm_shapes = costmodel.Shapes.of("gpt-j", cfg.to_dict())
    for method, hp, batch in (("rome", rome_hp, 1), ("memit", memit_hp, a.memit_batch)):
        ed = get_editor(method)
        times, steps = [], []
        for i in range(a.repeats + 1):
            reqs = [REQUESTS[(i + j) % len(REQUESTS)] for j in range(batch)]
            sync(dev)
            t = time.perf_counter()
            res = ed.edit(model, tok, spec, reqs, hp, stats=stats)
            sync(dev)
            if i:                                           # the first is the warm-up
                times.append(time.perf_counter() - t)
                steps.append([r.get("steps") for r in res.diagnostics.get("requests", [])])
        flop = [model_flops(method, cm_shapes, hp, tok, spec, [REQUESTS[(i + j) % len(REQUESTS)] for j in range(batch)],
                            st) for i, st in enumerate(steps, start=1)]
        out[method] = {"batch": batch, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                       "n": len(times), "opt_steps": steps, "layers": getattr(hp, "layers", [getattr(hp, "layer", None)]),
                       "model_tflop": [f / 1e12 for f in flop],
                       "achieved_tflops": [f / t / 1e12 for f, t in zip(flop, times)]}
        print(f"{method}: {out[method]['median_s']:.2f} s median ({batch} request(s), random weights: timing only), "
              f"{statistics.median(out[method]['achieved_tflops']):.1f} TFLOP/s by the cost model", file=sys.stderr)
    # the cost model against torch's count of one ROME edit at these shapes (eager attention: every product seen)
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    hp0 = replace(rome_hp, mom2_adjustment=False)
    with FlopCounterMode(display=False) as fc:
        res = get_editor("rome").edit(model, tok, spec, REQUESTS[:1], hp0)
    model.set_attn_implementation(before)
    counted = fc.get_total_flops()
    modelled = model_flops("rome", cm_shapes, hp0, tok, spec, REQUESTS[:1], [res.diagnostics["requests"][0]["steps"]])
    out["flop_check"] = {"counted": counted, "modelled": modelled, "ratio": modelled / counted}
    print(f"cost model / torch's count, one ROME edit: {modelled / counted:.6f}", file=sys.stderr)
    if dev.type == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
