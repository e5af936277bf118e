"""The one-pass rank-1 kernel IS the apply rule: bit for bit equal to one outer product at a time (torch),
to the rule worked out elementwise in numpy float32 by hand, and within float32 rounding of a float64
reference; on awkward values too. Fingerprints: the algorithm named, old sha256 values reproduced."""
import hashlib

import numpy as np
import pytest
import torch
import xxhash

from simulator import rank1_kernel
from simulator.deltas import (
    TensorDelta, apply_delta, apply_run, canonical_fingerprint, fingerprint_algo, tensor_fingerprint,
)

needs_kernel = pytest.mark.skipif(rank1_kernel.kernel() is None, reason="numba is not installed")


@pytest.fixture(autouse=True)
def kernel_whenever_it_can_run(monkeypatch):
    """Tests apply small tensors, which a process in "auto" mode leaves to the reference path."""
    monkeypatch.setattr(rank1_kernel, "MODE", "kernel")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32)


def _by_hand(w: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The rule elementwise in numpy float32: p = u[i,k] * v[j,k] rounded, then w + p rounded, k in order."""
    w = w.astype(np.float32).copy()
    for k in range(u.shape[1]):
        p = np.multiply(u[:, k:k + 1].astype(np.float32), v[:, k][None, :].astype(np.float32), dtype=np.float32)
        w = np.add(w, p, dtype=np.float32)
    return w


def _deltas(g, m, n, ranks, scale=1e-2):
    return [TensorDelta("w", "low_rank", {"u": scale * torch.randn(m, r, generator=g),
                                          "v": scale * torch.randn(n, r, generator=g)}) for r in ranks]


@needs_kernel
@pytest.mark.parametrize("m,n,ranks", [(1, 1, [1]), (3, 5, [2, 1]), (17, 33, [1] * 9), (64, 130, [3, 8, 1, 5]),
                                       (640, 2048, [1] * 40)])
def test_kernel_equals_one_outer_product_at_a_time(m, n, ranks):
    g = torch.Generator().manual_seed(m * 1000 + n)
    base = torch.randn(m, n, generator=g)
    ds = _deltas(g, m, n, ranks)
    want = base.clone()
    for d in ds:                                      # the rule as written: torch, one term at a time
        for k in range(d.rank):
            want.add_(torch.outer(d.factors["u"][:, k], d.factors["v"][:, k]))
    got = torch.empty_like(base)
    apply_run(got, ds, src=base)                      # one pass, copy of the base fused in
    assert torch.equal(_bits(got), _bits(want))
    again = base.clone()
    for d in ds:                                      # delta by delta, in place (Session.apply's path)
        apply_delta(again, d)
    assert torch.equal(_bits(again), _bits(want))
    u = torch.cat([d.factors["u"] for d in ds], 1).numpy()
    v = torch.cat([d.factors["v"] for d in ds], 1).numpy()
    if m * n <= 64 * 130:
        assert np.array_equal(got.numpy().view(np.int32), _by_hand(base.numpy(), u, v).view(np.int32))
    # and the rule is float32 arithmetic on the exact sum: within a few ulps per term of float64
    exact = base.double() + torch.from_numpy(u).double() @ torch.from_numpy(v).double().T
    terms = base.double().abs() + torch.from_numpy(np.abs(u)).double() @ torch.from_numpy(np.abs(v)).double().T
    bound = 2 * sum(ranks) * 2.0 ** -24 * terms + 1e-45
    assert bool(((got.double() - exact).abs() <= bound).all())


@needs_kernel
def test_kernel_on_special_values_and_row_split_between_threads(monkeypatch):
    g = torch.Generator().manual_seed(7)
    m, n, r = 9, 41, 13
    base = torch.randn(m, n, generator=g) * torch.logspace(-30, 30, n, dtype=torch.float32)
    base[0, :5] = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan")])
    base[1, :3] = torch.tensor([1e-40, -1e-45, 3.4e38])           # subnormals, near overflow
    u, v = torch.randn(m, r, generator=g), torch.randn(n, r, generator=g)
    u[2, 0], u[3, 4], v[6, 2], v[7, 9] = float("inf"), -0.0, float("nan"), 1e38
    d = TensorDelta("w", "low_rank", {"u": u, "v": v})
    want = base.clone()
    for k in range(r):
        want.add_(torch.outer(u[:, k], v[:, k]))
    got = base.clone()
    apply_delta(got, d)
    assert torch.equal(_bits(got), _bits(want))
    assert np.array_equal(got.numpy().view(np.int32), _by_hand(base.numpy(), u.numpy(), v.numpy()).view(np.int32))
    monkeypatch.setattr(rank1_kernel, "PARALLEL_MIN_ELEMENTS", 1)   # rows split between 3 threads
    split = torch.empty_like(base)
    rank1_kernel.apply_rows(split, u, v.T.contiguous(), src=base, threads=3)
    assert torch.equal(_bits(split), _bits(want))


@needs_kernel
def test_self_check_rejects_code_that_is_not_the_rule():
    def fused_in_float64(w, src, copy, u, vt, lo, hi):    # what an FMA-contracting compiler would give
        with np.errstate(invalid="ignore", over="ignore"):
            acc = src[lo:hi].astype(np.float64) + u[lo:hi].astype(np.float64) @ vt.astype(np.float64)
            w[lo:hi] = acc.astype(np.float32)
    assert "elements differ" in rank1_kernel._self_check(fused_in_float64)
    assert rank1_kernel._self_check(rank1_kernel.kernel()) == ""


def test_reference_path_is_taken_where_the_kernel_cannot_run():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 10, generator=g)
    ds = _deltas(g, 6, 10, [2, 3])
    fast, ref = base.clone(), base.clone()
    apply_run(fast, ds)
    apply_run(ref, ds, reference=True)
    assert torch.equal(_bits(fast), _bits(ref))
    half = base.half()                                # not float32: product rounded to float32, cast, added
    apply_run(half, ds[:1])
    want = base.half()
    for k in range(2):
        want.add_(torch.outer(ds[0].factors["u"][:, k], ds[0].factors["v"][:, k]).half())
    assert torch.equal(half, want)
    strided = torch.randn(10, 6, generator=g).T       # a non-contiguous float32 view
    want = strided.clone()
    apply_run(want, ds, reference=True)
    apply_run(strided, ds)
    assert torch.equal(strided, want)


def test_dense_and_sparse_break_a_run_of_low_rank_deltas():
    g = torch.Generator().manual_seed(4)
    base = torch.randn(5, 7, generator=g)
    ds = _deltas(g, 5, 7, [1, 2]) + [TensorDelta("w", "dense", {"delta": torch.randn(5, 7, generator=g)}),
                                     TensorDelta("w", "sparse", {"indices": torch.tensor([3, 30]),
                                                                 "values": torch.tensor([1.5, -2.0])})] \
        + _deltas(g, 5, 7, [3])
    want = base.clone()
    for d in ds:
        apply_delta(want, d, reference=True)
    got = torch.zeros_like(base)
    apply_run(got, ds, src=base)
    assert torch.equal(_bits(got), _bits(want))


def _old_sha256(t: torch.Tensor) -> str:
    """tensor_fingerprint as every ledger before migration 0006 recorded it."""
    t = t.detach().contiguous().cpu()
    h = hashlib.sha256()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fingerprints_name_their_algorithm_and_old_ones_still_verify(dtype):
    t = torch.randn(33, 17).to(dtype)
    old = _old_sha256(t)
    assert tensor_fingerprint(t, "sha256") == f"sha256:{old}" == canonical_fingerprint(old)
    assert fingerprint_algo(old) == "sha256" and fingerprint_algo(f"sha256:{old}") == "sha256"
    raw = (t.view(torch.int16) if dtype == torch.bfloat16 else t).numpy().tobytes()
    by_hand = xxhash.xxh3_128(f"{t.dtype}|{tuple(t.shape)}|".encode() + raw).hexdigest()
    new = tensor_fingerprint(t)
    assert new == f"xxh3-128:{by_hand}" and fingerprint_algo(new) == "xxh3-128" and len(by_hand) == 32
    assert tensor_fingerprint(t.T.contiguous().T) == new                   # layout-independent content
    bumped = t.clone()                                                      # one ulp of one element
    bumped.view(torch.int32 if dtype == torch.float32 else torch.int16).view(-1)[5] += 1
    assert tensor_fingerprint(bumped) != new and tensor_fingerprint(bumped, "sha256") != f"sha256:{old}"
    assert tensor_fingerprint(t.reshape(17, 33)) != new                     # shape is part of it
    with pytest.raises(ValueError, match="newer editledger"):
        tensor_fingerprint(t, "blake9")


def test_auto_mode_loads_the_kernel_once_the_reference_path_has_cost_as_much(monkeypatch):
    import importlib.util
    monkeypatch.setattr(rank1_kernel, "MODE", "auto")
    monkeypatch.setattr(rank1_kernel, "REFERENCE_BUDGET", 1000)
    monkeypatch.setattr(rank1_kernel._Spent, "n", 0)
    rank1_kernel.kernel.cache_clear()                 # as in a new process
    w = torch.zeros(10, 20)
    assert not rank1_kernel.eligible(w, 4)            # 800 element-terms: cheaper than loading numba
    assert rank1_kernel.kernel.cache_info().currsize == 0
    assert rank1_kernel.eligible(w, 1) == (importlib.util.find_spec("numba") is not None)   # 1000: load it
    assert not rank1_kernel.eligible(w.half()) and not rank1_kernel.eligible(w.T)
    monkeypatch.setattr(rank1_kernel, "MODE", "reference")
    assert not rank1_kernel.eligible(w)
