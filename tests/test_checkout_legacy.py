"""Ledgers written before migration 0006 (sha256 fingerprints, deltas applied one outer product at a
time) still check out bit for bit: a ledger is built here with that old code path, taken below 0006,
upgraded, and every version checked out (verified) by today's session. Also: the fast lineage read
agrees with the ORM one, a live ancestor is carried forward to the same bits, and a live tensor
changed behind the session's back is rebuilt rather than reported."""
import hashlib
import random
from types import SimpleNamespace

import pytest
import torch

from ledger import DeltaInput, Ledger, migrate
from ledger.errors import SchemaError
from ledger.history import reset, revert
from simulator.deltas import EditResult, TensorDelta
from simulator.session import Session

SHAPES = {"a.weight": (12, 20), "b.weight": (20, 12)}


def _old_apply(w: torch.Tensor, d: dict) -> None:
    """simulator.deltas.apply_delta before the one-pass kernel (rule 1 as it was written)."""
    if "delta" in d:
        w.add_((1 * d["delta"]).to(w.dtype))
        return
    u, v = d["u"].to(torch.float32), d["v"].to(torch.float32)
    for i in range(u.shape[1]):
        w.add_((1 * torch.outer(u[:, i], v[:, i])).to(w.dtype))


def _old_fingerprint(t: torch.Tensor) -> str:
    """simulator.deltas.tensor_fingerprint before migration 0006: bare sha256 hex."""
    t = t.detach().contiguous().cpu()
    h = hashlib.sha256()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


def _base_params(seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(*s, generator=g) for n, s in SHAPES.items()}


def _session(led: Ledger, fingerprint: str) -> Session:
    params = {n: torch.nn.Parameter(t, requires_grad=False) for n, t in _base_params().items()}
    module = torch.nn.Module()
    for n, p in params.items():
        module.register_parameter(n.replace(".", "_"), p)
    bm = led.register_base_model(name="legacy", source="test", fingerprint=fingerprint, config={})
    lm = SimpleNamespace(model=module, tokenizer=None, spec=None, fingerprint=fingerprint)
    return Session(led, lm, bm.id, led.base_version(bm.id).id, params=params)


def _build_old_ledger(path) -> tuple[dict[int, dict], int, int]:
    """What editledger before 0006 wrote: 12 steps (rank 1-3 and dense deltas, keyframes every 4),
    a revert and a reset. Returns {version: weights}, the run and the revert version."""
    fp = "1" * 64
    snapshots = {}
    with Ledger.open(str(path)) as led:
        bm = led.register_base_model(name="legacy", source="test", fingerprint=fp, config={})
        run = led.begin_run(base_model_id=bm.id, method="synthetic", hparams={}, stream_name="old",
                            stream_digest="0" * 64, stream_kind="sequential")
        live = _base_params()
        snapshots[led.base_version(bm.id).id] = {n: t.clone() for n, t in live.items()}
        g = torch.Generator().manual_seed(1)
        touched: dict[str, str] = {}
        head = run.head_version_id
        for step in range(1, 13):
            name = "a.weight" if step % 3 else "b.weight"
            m, n = SHAPES[name]
            if step % 5 == 0:
                factors, kind, rank = {"delta": 0.01 * torch.randn(m, n, generator=g)}, "dense", None
            else:
                rank = 1 + step % 3
                factors = {"u": 0.1 * torch.randn(m, rank, generator=g), "v": 0.1 * torch.randn(n, rank, generator=g)}
                kind = "low_rank"
            _old_apply(live[name], factors)
            touched[name] = _old_fingerprint(live[name])
            kf = {k: live[k].clone() for k in sorted(touched)} if step % 4 == 0 else None
            v = led.record_step(run.id, step=step, parent_version_id=head, requests=[], wall_time_s=0.0,
                                deltas=[DeltaInput(name, kind, factors, (m, n), rank, 1.0)], diagnostics={},
                                tensor_fingerprints=dict(touched), keyframe=kf)
            head = v.id
            snapshots[v.id] = {n: t.clone() for n, t in live.items()}
        marker = reset(led, run.id, 9)
        snapshots[marker.id] = snapshots[[v.id for v in led.versions(run.id) if v.step == 9][0]]
        rv = revert(led, run.id, 7)                        # unsealed: the first checkout seals it
        want = _base_params()                               # by hand: steps 1-6 and 8-9 in order
        for v in led.lineage(rv.id)[1:]:
            for row in led.deltas(v.id):
                _old_apply(want[row.tensor], led.read_artifact(row.artifact_digest))
        snapshots[rv.id] = want
    # take it below 0006, as the old editledger left it
    # (through migrate.downgrade: later migrations rebuild tables, which SQLite does with foreign keys off)
    migrate.downgrade(f"sqlite:///{path}", migrate.script_directory().get_revision("0006").down_revision)
    return snapshots, run.id, rv.id


def test_old_ledger_upgrades_and_checks_out_bit_for_bit(tmp_path):
    path = tmp_path / "old.db"
    snapshots, run_id, rv_id = _build_old_ledger(path)
    with pytest.raises(SchemaError, match="db upgrade"):
        Ledger.open(str(path))
    migrate.upgrade(f"sqlite:///{path}")
    with Ledger.open(str(path)) as led:
        recorded = {vid: led.version(vid).tensor_fingerprints for vid in snapshots}
        assert all(fp.startswith("sha256:") and len(fp) == 7 + 64 for fps in recorded.values() for fp in fps.values())
        s = _session(led, "1" * 64)
        order = list(snapshots) * 2
        random.Random(0).shuffle(order)
        for vid in order:
            s.checkout(vid)                                # verified: sha256 for the old versions
            for name, want in snapshots[vid].items():
                assert torch.equal(s.param(name), want), f"{name} differs at version {vid}"
        sealed = led.version(rv_id).tensor_fingerprints
        assert sealed and all(fp.startswith("xxh3-128:") for fp in sealed.values())
        # a new step on an old version records every touched tensor with today's algorithm
        s.checkout(rv_id)
        v12 = [v.id for v in led.versions(run_id) if v.step == 12][0]
        s.checkout(v12)
        g = torch.Generator().manual_seed(5)
        s.apply("synthetic", EditResult(deltas=[TensorDelta("b.weight", "low_rank", {
            "u": torch.randn(20, 1, generator=g), "v": torch.randn(12, 1, generator=g)})]))
        new = s.commit(run_id, step=20, requests=[], diagnostics={}, wall_time_s=0.0, parent_version_id=v12)
        assert set(new.tensor_fingerprints) == {"a.weight", "b.weight"}
        assert all(fp.startswith("xxh3-128:") for fp in new.tensor_fingerprints.values())
        after = {n: s.param(n).clone() for n in SHAPES}
        s.checkout(next(iter(snapshots)))                  # the base, then back: rebuilt and verified
        s.checkout(new.id)
        assert all(torch.equal(s.param(n), after[n]) for n in SHAPES)
    # an older editledger could not verify xxh3-128: going below 0006 is refused
    with pytest.raises(SchemaError, match="xxh3-128 fingerprints"):
        migrate.downgrade(f"sqlite:///{path}", migrate.script_directory().get_revision("0006").down_revision)


def test_fast_lineage_read_agrees_with_the_orm_one(tmp_path):
    path = tmp_path / "old.db"
    snapshots, run_id, rv_id = _build_old_ledger(path)
    migrate.upgrade(f"sqlite:///{path}")
    with Ledger.open(str(path)) as led:
        for vid in snapshots:
            fast = led.checkout_chain(vid)
            slow = led.lineage_deltas(vid)
            assert [s.version_id for s in fast.steps] == [v.id for v, _, _ in slow]
            assert [s.parent_id for s in fast.steps] == [v.parent_id for v, _, _ in slow]
            assert [[(d.tensor, d.kind, d.digest) for d in s.deltas] for s in fast.steps] == \
                [[(d.tensor, d.kind, d.artifact_digest) for d in ds] for _, ds, _ in slow]
            assert [s.keyframe for s in fast.steps] == [kf for _, _, kf in slow]
            assert fast.fingerprints == led.version(vid).tensor_fingerprints


def test_carried_forward_equals_rebuilt_and_a_changed_live_tensor_is_rebuilt(tmp_path, monkeypatch):
    with Ledger.open(str(tmp_path / "l.db")) as led:
        s = _session(led, "2" * 64)
        run = led.begin_run(base_model_id=s.base_model_id, method="synthetic", hparams={}, stream_name="t",
                            stream_digest="0" * 64, stream_kind="sequential")
        g = torch.Generator().manual_seed(2)
        vids, snaps = [], {}
        for step in range(1, 11):
            name = "a.weight" if step % 2 else "b.weight"
            m, n = SHAPES[name]
            s.apply("synthetic", EditResult(deltas=[TensorDelta(name, "low_rank", {
                "u": torch.randn(m, 2, generator=g), "v": torch.randn(n, 2, generator=g)})]))
            v = s.commit(run.id, step=step, requests=[], diagnostics={}, wall_time_s=0.0, keyframe=step == 6)
            vids.append(v.id)
            snaps[v.id] = {k: s.param(k).clone() for k in SHAPES}
        fresh = _session(led, "2" * 64)
        fresh.checkout(vids[1])
        for vid in vids[2:]:                               # forward along the run: carried, not rebuilt
            fresh.checkout(vid)
            assert all(torch.equal(fresh.param(k), snaps[vid][k]) for k in SHAPES)
        calls = []
        real = Session._materialise

        def spy(self, links, algos, *, live_at=None, reference=False):
            calls.append((live_at, reference))
            return real(self, links, algos, live_at=live_at, reference=reference)
        monkeypatch.setattr(Session, "_materialise", spy)
        fresh.checkout(vids[1])
        with torch.no_grad():
            fresh.param("a.weight")[0, 0] += 1.0           # behind the session's back
        fresh.checkout(vids[4])                            # carried forward, mismatch, rebuilt, verified
        assert calls[-2:] == [(2, False), (None, True)]
        assert all(torch.equal(fresh.param(k), snaps[vids[4]][k]) for k in SHAPES)
