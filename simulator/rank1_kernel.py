"""A run of rank-1 updates in one pass over a float32 CPU tensor: the apply rule of
``simulator.deltas`` performed row by row, so that a row stays in the L1 cache for every term
instead of the whole tensor streaming through memory once (and a temporary outer product being
allocated) per term.

Why it is the same rule, bit for bit. The rule is ``W += u[:, k] ⊗ v[:, k]`` for k = 0..r-1, each
product rounded to float32, then added (rounded). Here every element w[i, j] goes through exactly
those IEEE-754 float32 operations, in the same order: ``p = u[i, k] * v[j, k]`` (one rounding),
``w = w + p`` (one rounding). Only the order in which *different* elements are visited changes,
and elements never interact. numba compiles it with fastmath off, so LLVM may neither contract
the multiply and the add into an FMA (one rounding instead of two) nor reassociate the sum; the
generated code is checked against the reference on first use in every process (``kernel()``),
and where it disagrees (a platform that contracts anyway) the kernel is not used: the reference
path gives the same bits, only slower.

When to load it. numba and the kernel's cached machine code cost about 0.7-0.9 s of CPU to load
in a process (a first compile on a new machine, about 3 s), and the reference path about 1.4 ns
per element and term (both measured on the 2-core development machine). So in ``MODE = "auto"`` a
process takes the reference path until it has spent about that much on it
(``REFERENCE_BUDGET``), and loads the kernel then (the ski-rental rule: never more than twice the
better choice in hindsight): a one-shot checkout of a short chain never pays for numba, a session
that rebuilds many versions pays once.
"""
from __future__ import annotations

import functools
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# Rows are split between threads only above this many elements (below it a thread hand-off costs
# more than it saves); the threads follow torch's intra-op setting.
PARALLEL_MIN_ELEMENTS = 1 << 20
# "auto": the reference path until REFERENCE_BUDGET element-terms were applied by it in this process
# (about the kernel's load cost), the kernel after; "kernel": whenever it can run; "reference": never.
MODE = "auto"
REFERENCE_BUDGET = 1 << 29


class _Spent:
    """Element-terms the reference path applied in this process while the kernel was not loaded."""
    n = 0


def _rows(w, src, copy, u, vt, lo, hi):  # pragma: no cover - runs compiled (numba), see kernel()
    """Rows lo..hi-1 of ``w`` (m, n) := (src if copy else w) + Σ_k u[:, k] ⊗ vt[k], k in order."""
    n = w.shape[1]
    r = u.shape[1]
    for i in range(lo, hi):
        wi = w[i]
        if copy:
            si = src[i]
            for j in range(n):
                wi[j] = si[j]
        k = 0
        while k + 8 <= r:                   # eight terms per sweep of the row, still one at a time per element
            a0 = u[i, k]
            a1 = u[i, k + 1]
            a2 = u[i, k + 2]
            a3 = u[i, k + 3]
            a4 = u[i, k + 4]
            a5 = u[i, k + 5]
            a6 = u[i, k + 6]
            a7 = u[i, k + 7]
            v0 = vt[k]
            v1 = vt[k + 1]
            v2 = vt[k + 2]
            v3 = vt[k + 3]
            v4 = vt[k + 4]
            v5 = vt[k + 5]
            v6 = vt[k + 6]
            v7 = vt[k + 7]
            for j in range(n):
                x = wi[j] + a0 * v0[j]
                x = x + a1 * v1[j]
                x = x + a2 * v2[j]
                x = x + a3 * v3[j]
                x = x + a4 * v4[j]
                x = x + a5 * v5[j]
                x = x + a6 * v6[j]
                wi[j] = x + a7 * v7[j]
            k += 8
        while k < r:
            a = u[i, k]
            vk = vt[k]
            for j in range(n):
                wi[j] = wi[j] + a * vk[j]
            k += 1


@functools.lru_cache(maxsize=1)
def kernel():
    """The compiled row kernel, or None where numba is absent or its code is not the rule."""
    try:
        import numba  # deferred on purpose: heavy import, needed only by a process that applies on CPU
    except ImportError:
        return None
    fn = numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=False)(_rows)
    bad = _self_check(fn)
    if bad:
        warnings.warn(f"the compiled rank-1 kernel disagrees with the apply rule on this platform ({bad}); "
                      "deltas are applied by the (slower) reference path", RuntimeWarning, stacklevel=2)
        return None
    return fn


def reference(w: torch.Tensor, u: torch.Tensor, vt: torch.Tensor) -> None:
    """The rule as ``simulator.deltas`` states it: one outer product at a time, rounded, then added."""
    for k in range(u.shape[1]):
        w.add_(torch.outer(u[:, k], vt[k]))


def _self_check(fn) -> str:
    """'' when ``fn`` reproduces ``reference`` bit for bit on awkward inputs: sizes that leave
    remainders in every loop, products and sums that round, cancel, overflow, underflow into
    subnormals, signed zeros, infinities and NaNs."""
    g = torch.Generator().manual_seed(20240607)
    m, n, r = 5, 37, 19
    w = torch.randn(m, n, generator=g) * torch.logspace(-8, 8, n, dtype=torch.float32)
    u = torch.randn(m, r, generator=g)
    vt = torch.randn(r, n, generator=g)
    w[0, :4] = torch.tensor([0.0, -0.0, float("inf"), 3.4e38])
    w[1, :3] = torch.tensor([1e-38, -1e-45, float("nan")])
    u[2, 3], u[3, 0], u[4, 1] = float("inf"), -0.0, 1e-30
    vt[5, 7], vt[6, 0] = float("nan"), 1e30
    want = w.clone()
    reference(want, u, vt)
    got = torch.empty_like(w)
    fn(got.numpy(), w.numpy(), True, u.numpy(), vt.numpy(), 0, m)
    if not torch.equal(got.view(torch.int32), want.view(torch.int32)):
        return f"{int((got.view(torch.int32) != want.view(torch.int32)).sum())} of {got.numel()} elements differ"
    return ""


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rank1")


def eligible(w: torch.Tensor, terms: int = 1) -> bool:
    """Whether ``terms`` rank-1 terms on ``w`` go through the kernel: ``w`` is a contiguous float32
    matrix on the CPU, and (``MODE``) the kernel is worth loading or already loaded."""
    if MODE == "reference" or not (w.device.type == "cpu" and w.dtype == torch.float32 and w.dim() == 2
                                   and w.is_contiguous()):
        return False
    if MODE == "auto" and kernel.cache_info().currsize == 0:
        _Spent.n += terms * w.numel()
        if _Spent.n < REFERENCE_BUDGET:
            return False
    return kernel() is not None


def apply_rows(w: torch.Tensor, u: torch.Tensor, vt: torch.Tensor, src: torch.Tensor | None = None,
               threads: int | None = None) -> None:
    """``w := (src if given else w) + Σ_k u[:, k] ⊗ vt[k]`` by the rule, in one pass. ``w`` must be
    ``eligible``; ``u`` (m, r) and ``vt`` (r, n) are float32 (made contiguous here); ``src`` (the
    base or a keyframe) has ``w``'s shape. Rows are independent, so splitting them between threads
    changes nothing in any element."""
    fn = kernel()
    assert fn is not None and eligible(w), "apply_rows needs a contiguous float32 CPU matrix and numba"
    m, n = w.shape
    assert u.shape == (m, vt.shape[0]) and vt.shape[1] == n, (
        f"factors {tuple(u.shape)} and {tuple(vt.shape)} do not fit a tensor of shape {(m, n)}")
    uu = np.ascontiguousarray(u.detach().to(torch.float32).cpu().numpy())
    vv = np.ascontiguousarray(vt.detach().to(torch.float32).cpu().numpy())
    ww = w.detach().numpy()
    if src is None:
        ss, copy = ww, False
    else:
        assert src.shape == w.shape, f"source of shape {tuple(src.shape)} for a tensor of shape {(m, n)}"
        ss, copy = np.ascontiguousarray(src.detach().to(torch.float32).cpu().numpy()), True
    threads = torch.get_num_threads() if threads is None else threads
    if threads <= 1 or m < 2 or w.numel() < PARALLEL_MIN_ELEMENTS:
        fn(ww, ss, copy, uu, vv, 0, m)
        return
    parts = min(threads, m)
    bounds = [m * p // parts for p in range(parts + 1)]
    futures = [_pool(parts).submit(fn, ww, ss, copy, uu, vv, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    for f in futures:
        f.result()
