"""κ₂(W) = σ_max / σ_min of an edited matrix, for the health telemetry (PRUNE ties collapse after many
edits to the condition number of the edited matrices).

Exact while the smaller side is at most ``exact_max``: the eigenvalues of the float64 Gram matrix of
that side (σ² = λ(W Wᵀ); accurate while κ ≪ 1e8). Above it, ``lanczos_steps`` Lanczos steps with full
reorthogonalisation on the Gram matrix, from a seeded start: the Ritz values lie inside the spectrum,
so the estimate is a lower bound of κ (the largest σ converges first, the smallest last). torch only,
so that a benchmark can time it anywhere.
"""
from __future__ import annotations

import math

import torch

# Exact up to this smaller side: Gemma 3 270M (640), SmolLM2 (576), GPT-2 XL (1600). GPT-J's fc_out
# (4096 x 16384) takes the estimate: measured by benchmarks/bench_health.py on 2 loaded CPU cores, exact
# 95 s (64 products of that matrix with 512 columns) against 36 s for Lanczos (24), κ within 3.9 %.
EXACT_MAX = 2048
LANCZOS_STEPS = 64


@torch.no_grad()
def condition_number(W: torch.Tensor, *, exact_max: int = EXACT_MAX,
                     lanczos_steps: int = LANCZOS_STEPS) -> tuple[float, str]:
    """κ₂(W) = σ_max / σ_min of a 2-D tensor, and how it was obtained ("exact" or "lanczos").
    Exact: eigenvalues of the float64 Gram matrix of the smaller side. Lanczos: ``lanczos_steps``
    steps with full reorthogonalisation on that Gram matrix (a lower bound of κ)."""
    assert W.dim() == 2, f"a condition number needs a matrix, got shape {tuple(W.shape)}"
    A = W.detach().to(torch.float64)
    if A.shape[0] > A.shape[1]:
        A = A.T
    if A.shape[0] <= exact_max:
        lam = torch.linalg.eigvalsh(A @ A.T)
        lo, hi = float(lam[0]), float(lam[-1])
        how = "exact"
    else:
        lo, hi = _lanczos_extremes(A, lanczos_steps)
        how = "lanczos"
    if hi <= 0.0:
        return float("nan"), how
    return (math.sqrt(hi / lo) if lo > 0.0 else float("inf")), how


def _lanczos_extremes(A: torch.Tensor, steps: int) -> tuple[float, float]:
    """Smallest and largest Ritz values of A Aᵀ after ``steps`` Lanczos steps (seeded start)."""
    n = A.shape[0]
    k = min(steps, n)
    g = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(n, generator=g, dtype=torch.float64).to(A.device)
    Q = torch.zeros(n, k, dtype=torch.float64, device=A.device)
    alpha, beta = [], []
    q = q / q.norm()
    for j in range(k):
        Q[:, j] = q
        w = A @ (A.T @ q)
        a = float(q @ w)
        w = w - Q[:, :j + 1] @ (Q[:, :j + 1].T @ w)      # full reorthogonalisation (twice is enough)
        w = w - Q[:, :j + 1] @ (Q[:, :j + 1].T @ w)
        alpha.append(a)
        b = float(w.norm())
        if j == k - 1 or b < 1e-12 * max(abs(a), 1e-300):
            break
        beta.append(b)
        q = w / b
    T = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if beta:
        off = torch.tensor(beta[:len(alpha) - 1], dtype=torch.float64)
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(T)
    return float(ritz[0]), float(ritz[-1])
