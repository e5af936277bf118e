"""Bit-exact checkout: a 20-step chain of recorded deltas, then 50 random jumps forwards and
backwards, each compared bit for bit with the weights recorded when the step was made."""
import random

import pytest
import torch

from ledger import Ledger
from ledger.errors import IntegrityError
from simulator import rank1_kernel
from simulator.deltas import EditResult, TensorDelta
from simulator.session import Session


@pytest.fixture()
def session(tmp_path):
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    yield s
    led.close()


def _random_delta(s: Session, g: torch.Generator, step: int) -> TensorDelta:
    names = [s.lm.spec.rewrite_weight(l) for l in range(s.lm.spec.n_layers)]
    name = names[step % len(names)] if step % 3 else names[1]
    w = s.param(name)
    if step % 5 == 0:
        return TensorDelta(name, "dense", {"delta": 0.01 * torch.randn(w.shape, generator=g)})
    r = 1 + step % 3
    return TensorDelta(name, "low_rank", {"u": 0.1 * torch.randn(w.shape[0], r, generator=g),
                                          "v": 0.1 * torch.randn(w.shape[1], r, generator=g)})


def _record_chain(s: Session, n: int, keyframe_every: int):
    led = s.ledger
    run = led.begin_run(base_model_id=s.base_model_id, method="synthetic", hparams={}, stream_name="t",
                        stream_digest="0" * 64, stream_kind="sequential")
    g = torch.Generator().manual_seed(0)
    snapshots = {}
    for step in range(1, n + 1):
        s.apply("synthetic", EditResult(deltas=[_random_delta(s, g, step)]))
        v = s.commit(run.id, step=step, requests=[], diagnostics={}, wall_time_s=0.0,
                     keyframe=bool(keyframe_every) and step % keyframe_every == 0)
        snapshots[v.id] = {k: p.detach().clone() for k, p in s.lm.model.named_parameters()}
    return run.id, snapshots


@pytest.mark.parametrize("keyframe_every,mode", [(0, "kernel"), (4, "kernel"), (4, "reference")])
def test_random_jumps_are_bit_identical(session, keyframe_every, mode, monkeypatch):
    monkeypatch.setattr(rank1_kernel, "MODE", "reference")  # recorded one outer product at a time
    run_id, snapshots = _record_chain(session, 20, keyframe_every)
    monkeypatch.setattr(rank1_kernel, "MODE", mode)         # checked out by the one-pass kernel, or not
    base = session.base_version_id
    base_params = {k: p.detach().clone() for k, p in Session.open(
        session.ledger, "tiny-gptj", device="cpu", progress=False).lm.model.named_parameters()}
    targets = list(snapshots) + [base]
    rng = random.Random(1)
    for _ in range(50):
        vid = rng.choice(targets)
        session.checkout(vid)
        want = base_params if vid == base else snapshots[vid]
        for name, p in session.lm.model.named_parameters():
            assert torch.equal(p, want[name]), f"{name} differs after checkout of version {vid}"


def test_tampered_fingerprint_is_an_error_not_silence(session):
    run_id, snapshots = _record_chain(session, 3, 0)
    vid = list(snapshots)[1]
    with session.ledger._session() as s, s.begin():       # simulate a ledger recorded on another base
        from ledger.schema import VersionRow
        v = s.get(VersionRow, vid)
        v.tensor_fingerprints = {k: "0" * 64 for k in v.tensor_fingerprints}
    with pytest.raises(IntegrityError, match="does not reproduce what was recorded"):
        session.checkout(vid)


def test_export_loads_back_with_equal_weights(session, tmp_path):
    from simulator.models import load_model
    run_id, snapshots = _record_chain(session, 5, 0)
    vid = list(snapshots)[3]
    out = session.export(vid, tmp_path / "export")
    back = load_model(str(out), device="cpu", dtype=torch.float32, progress=False)
    got = dict(back.model.named_parameters())
    for name, want in snapshots[vid].items():
        assert torch.equal(got[name], want), name
