"""Health telemetry benchmark (a script, not a test): what the per-step condition number costs at the
shapes the registry edits, exact against the Lanczos estimate, side by side in one run.

    python benchmarks/bench_health.py [--device cuda] [--threads 2] [--shapes gemma,gpt2] [--out result.json]

For each shape (Gemma 3 270M's down_proj 640 x 2048, GPT-2 XL's c_proj 1600 x 6400, GPT-J's fc_out
4096 x 16384), a float32 matrix with a known spectrum (singular values i^-1/2, κ = √min(m, n), the
slow decay of a trained MLP matrix) plus a ROME-sized rank-one update:

* exact κ (float64 Gram eigenvalues) and the Lanczos estimate (64 steps): median seconds over 3
  runs after a warm-up, and their ratio;
* each against the float64 SVD (``torch.linalg.svdvals``), the reference: relative error of κ;
* a reference operation timed beside them: one float32 product W @ X with X of 512 columns (a
  512-token forward through that one matrix), so the cost reads as "so many such products".

Only torch is needed (``simulator.condition``), so it runs on a bare accelerator machine.
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

from simulator.condition import condition_number  # noqa: E402

SHAPES = {"gemma-3-270m down_proj": (640, 2048), "gpt2-xl c_proj": (1600, 6400), "gpt-j fc_out": (4096, 16384)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int = 3) -> tuple[float, object]:
    out = fn()                       # warm-up (kernels, allocator)
    _sync(device)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        _sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def matrix(m: int, n: int, device: str, seed: int = 0) -> torch.Tensor:
    """float32 (m, n) with singular values i^-1/2 and random singular vectors, plus a rank-one update."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g))
    s = torch.arange(1, k + 1, dtype=torch.float32) ** -0.5
    W = (U * s) @ V.T
    W += 0.05 * torch.outer(torch.randn(m, generator=g), torch.randn(n, generator=g)) / (m * n) ** 0.5
    return W.to(device)


def measure(device: str, shapes: dict = SHAPES) -> dict:
    rows = {}
    for label, (m, n) in shapes.items():
        W = matrix(m, n, device)
        X = torch.randn(n, 512, device=device)
        ref = torch.linalg.svdvals(W.double())
        kappa = float(ref[0] / ref[-1])
        t_exact, (k_exact, _) = timed(lambda: condition_number(W, exact_max=10 ** 9), device)
        t_lanczos, (k_lanczos, _) = timed(lambda: condition_number(W, exact_max=0, lanczos_steps=64), device)
        t_mm, _ = timed(lambda: W @ X, device, repeat=10)
        rows[label] = {
            "shape": [m, n], "kappa_svd": kappa,
            "exact_s": t_exact, "exact_rel_err": abs(k_exact - kappa) / kappa,
            "lanczos_s": t_lanczos, "lanczos_rel_err": abs(k_lanczos - kappa) / kappa,
            "exact_over_lanczos": t_exact / t_lanczos,
            "matmul_512_s": t_mm, "exact_in_matmuls": t_exact / t_mm, "lanczos_in_matmuls": t_lanczos / t_mm,
        }
    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "shapes": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--shapes", default=None, help="comma-separated words picking shapes, e.g. gemma,gpt2")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    shapes = {k: v for k, v in SHAPES.items() if not a.shapes or any(w in k for w in a.shapes.split(","))}
    res = measure(a.device, shapes)
    for label, r in res["shapes"].items():
        print(f"{label:24s} {r['shape'][0]}x{r['shape'][1]}  κ {r['kappa_svd']:.1f}  "
              f"exact {r['exact_s'] * 1e3:8.1f} ms (err {r['exact_rel_err']:.1e}, {r['exact_in_matmuls']:.0f} matmuls)  "
              f"lanczos {r['lanczos_s'] * 1e3:8.1f} ms (err {r['lanczos_rel_err']:.1e}, "
              f"{r['lanczos_in_matmuls']:.0f} matmuls)  exact/lanczos {r['exact_over_lanczos']:.2f}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
