"""apply_delta against a float64 reference, and its determinism."""
import torch

from simulator.deltas import TensorDelta, apply_delta, tensor_fingerprint


def test_low_rank_apply_matches_float64_reference():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 48, generator=g)
    u, v = torch.randn(64, 3, generator=g), torch.randn(48, 3, generator=g)
    got = w.clone()
    apply_delta(got, TensorDelta("w", "low_rank", {"u": u, "v": v}))
    ref = w.double() + u.double() @ v.double().T
    assert torch.allclose(got.double(), ref, atol=1e-5, rtol=0)
    # rank-1 steps: element (i, j) of step k is the single product u[i,k] * v[j,k], rounded once
    manual = w.clone()
    for k in range(3):
        manual = manual + (u[:, k:k + 1] * v[:, k].unsqueeze(0))
    assert torch.equal(got, manual)


def test_apply_is_bit_deterministic_and_fingerprint_sensitive():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(32, 16, generator=g)
    d = TensorDelta("w", "low_rank", {"u": torch.randn(32, 2, generator=g), "v": torch.randn(16, 2, generator=g)})
    a, b = w.clone(), w.clone()
    apply_delta(a, d)
    apply_delta(b, d)
    assert tensor_fingerprint(a) == tensor_fingerprint(b)
    b.view(-1)[5] = torch.nextafter(b.view(-1)[5], torch.tensor(float("inf")))
    assert tensor_fingerprint(a) != tensor_fingerprint(b)


def test_dense_and_sparse_and_norm():
    w = torch.zeros(4, 5)
    dense = torch.arange(20, dtype=torch.float32).view(4, 5)
    apply_delta(w, TensorDelta("w", "dense", {"delta": dense}))
    assert torch.equal(w, dense)
    apply_delta(w, TensorDelta("w", "sparse", {"indices": torch.tensor([0, 7]), "values": torch.tensor([1.0, -7.0])}))
    assert w.view(-1)[0] == 1.0 and w.view(-1)[7] == 0.0
    u, v = torch.tensor([[3.0], [4.0]]), torch.tensor([[1.0], [0.0], [0.0]])
    assert abs(TensorDelta("x", "low_rank", {"u": u, "v": v}).norm() - 5.0) < 1e-12


def test_half_precision_weights_apply_in_float32_then_cast():
    w16 = torch.randn(8, 8).half()
    u, v = torch.randn(8, 1), torch.randn(8, 1)
    got = w16.clone()
    apply_delta(got, TensorDelta("w", "low_rank", {"u": u, "v": v}))
    assert torch.equal(got, w16 + torch.outer(u[:, 0], v[:, 0]).half())
