"""Editor benchmarks (a script, not a test): ratios measured side by side in one run.

    python benchmarks/bench_editors.py [--model gemma-3-270m] [--edits 5] [--stats-tokens 2048] [--threads 2]

1. ROME latency per edit on the embedded model with second-moment statistics cached, the fast path
   (blocks below the edit run once, lm head only at the scored positions, early stop) against the naive
   loop (every block every step, full logits, all steps), median over the same edits.
2. MEMIT latency for one batch of 10 edits.
3. Bytes stored per ROME edit against a dense fp32 diff of the same tensor, and the same at GPT-J's fc_out
   shape (4096 x 16384) with synthetic rank-1 factors (serialised with safetensors).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from simulator.deltas import TensorDelta  # noqa: E402
from simulator.editors import get_editor, load_hparams  # noqa: E402
from simulator.models import load_model  # noqa: E402
from simulator.requests import EditRequest  # noqa: E402
from simulator.stats import Corpus, InMemoryStatsCache, StatsProvider  # noqa: E402

REQUESTS = [
    EditRequest("Eiffel Tower", "The {} is located in the city of", " Rome"),
    EditRequest("Toyota", "{} is a car company from", " Germany"),
    EditRequest("Danielle Darrieux", "The mother tongue of {} is", " English"),
    EditRequest("Mount Fuji", "{} is a mountain in", " Italy"),
    EditRequest("Lionel Messi", "{} is a professional", " basketball"),
    EditRequest("The Louvre", "{} is a museum in", " London"),
    EditRequest("Albert Einstein", "{} was born in", " France"),
    EditRequest("Microsoft", "{} was founded by Bill", " Clinton"),
    EditRequest("The Colosseum", "{} is located in the city of", " Athens"),
    EditRequest("Big Ben", "{} is a clock tower in", " Paris"),
]


def safetensors_bytes(tensors: dict[str, torch.Tensor]) -> int:
    from safetensors.torch import save
    return len(save({k: v.contiguous() for k, v in tensors.items()}))


def _top1_count(lm, result, reqs) -> int:
    """How many requests' first target token is the top prediction once ``result`` is applied (on a copy)."""
    import copy

    from simulator.deltas import apply_delta
    m = copy.deepcopy(lm.model)
    for d in result.deltas:
        apply_delta(m.get_parameter(d.tensor), d)
    n = 0
    for r in reqs:
        ids = lm.tokenizer(lm.spec.prompt_prefix + r.text, return_tensors="pt").to(m.device)
        full = lm.tokenizer(lm.spec.prompt_prefix + r.text + r.target_new)["input_ids"]
        with torch.no_grad():
            n += int(m(**ids, logits_to_keep=1).logits[0, -1].argmax()) == full[ids["input_ids"].shape[1]]
    del m
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--edits", type=int, default=5, help="ROME edits timed per variant")
    ap.add_argument("--memit-batch", type=int, default=10)
    ap.add_argument("--stats-tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"model": args.model, "threads": args.threads}

    t = time.perf_counter()
    lm = load_model(args.model)
    out["load_s"] = round(time.perf_counter() - t, 2)
    spec = lm.spec
    prov = StatsProvider(lm.fingerprint, Corpus(n_tokens=args.stats_tokens, seq_len=128), InMemoryStatsCache())
    t = time.perf_counter()
    layers = sorted(set([spec.rome_layer, *load_hparams("memit", spec).layers]))
    for layer in layers:
        prov.get(lm.model, lm.tokenizer, spec, layer)
    out["stats_s"] = round(time.perf_counter() - t, 2)
    out["stats_detail"] = prov.timings

    rome = get_editor("rome")
    fast_hp = load_hparams("rome", spec)
    naive_hp = load_hparams("rome", spec, overrides={"fast": False, "early_stop_prob": 2.0})
    reqs = REQUESTS[: args.edits]
    times: dict[str, list[float]] = {"fast": [], "naive": []}
    steps: dict[str, list[int]] = {"fast": [], "naive": []}
    for req in reqs:  # interleaved, so both variants see the same machine load
        for name, hp in (("fast", fast_hp), ("naive", naive_hp)):
            t = time.perf_counter()
            res = rome.edit(lm.model, lm.tokenizer, spec, [req], hp, stats=prov)
            times[name].append(time.perf_counter() - t)
            steps[name].append(res.diagnostics["requests"][0]["steps"])
            print(f"rome {name:5s} {req.subject:18s} {times[name][-1]:6.2f}s steps={steps[name][-1]}",
                  file=sys.stderr)
    out["rome_fast_median_s"] = round(statistics.median(times["fast"]), 2)
    out["rome_naive_median_s"] = round(statistics.median(times["naive"]), 2)
    out["rome_speedup"] = round(out["rome_naive_median_s"] / out["rome_fast_median_s"], 2)
    out["rome_steps"] = steps

    memit_reqs = (REQUESTS * 2)[: args.memit_batch]
    t = time.perf_counter()
    mres = get_editor("memit").edit(lm.model, lm.tokenizer, spec, memit_reqs, load_hparams("memit", spec),
                                    stats=prov, progress=True)
    out["memit_batch"] = len(memit_reqs)
    out["memit_batch_s"] = round(time.perf_counter() - t, 2)
    out["memit_ranks"] = [d.rank for d in mres.deltas]
    out["memit_top1"] = f"{_top1_count(lm, mres, memit_reqs)}/{len(memit_reqs)}"
    out["rome_top1"] = f"{_top1_count(lm, res, reqs[-1:])}/1 (last edit)"

    d = res.deltas[0]
    W = lm.model.get_parameter(d.tensor)
    dense = torch.zeros(W.shape, dtype=torch.float32)
    out["rome_delta_bytes"] = safetensors_bytes(d.factors)
    out["dense_fp32_bytes"] = safetensors_bytes({"delta": dense})
    out["rome_bytes_ratio"] = round(out["dense_fp32_bytes"] / out["rome_delta_bytes"], 1)
    g = torch.Generator().manual_seed(0)
    gptj = TensorDelta("transformer.h.5.mlp.fc_out.weight", "low_rank",
                       {"u": torch.randn(4096, 1, generator=g), "v": torch.randn(16384, 1, generator=g)})
    out["gptj_rome_delta_bytes"] = safetensors_bytes(gptj.factors)
    out["gptj_dense_fp32_bytes"] = 4096 * 16384 * 4 + 100  # header of a one-tensor file is ~100 bytes
    out["gptj_bytes_ratio"] = round(out["gptj_dense_fp32_bytes"] / out["gptj_rome_delta_bytes"], 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
