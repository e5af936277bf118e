"""The content-addressed safetensors artifact store and integrity checks."""
from __future__ import annotations

import hashlib
import os

import pytest
import torch
from safetensors.torch import load as st_load

from ledger import DeltaInput, Ledger
from ledger.artifacts import ArtifactStore
from ledger.errors import InputError, IntegrityError

CASES = [
    ("float32", torch.float32, (7, 5)),
    ("float16", torch.float16, (3, 4, 2)),
    ("bfloat16", torch.bfloat16, (16,)),
    ("int64", torch.int64, (2, 3)),
    ("float64", torch.float64, (1, 1)),
    ("scalar", torch.float32, ()),
    ("empty", torch.float32, (0, 4)),
]


def _tensor(dtype, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g, dtype=torch.float32).to(dtype)
    return torch.randint(-2**40, 2**40, shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("name,dtype,shape", CASES, ids=[c[0] for c in CASES])
def test_round_trip_dtypes_and_shapes(tmp_path, name, dtype, shape):
    store = ArtifactStore(tmp_path / "artifacts")
    t = _tensor(dtype, shape)
    digest, size = store.write({"x": t, "idx": torch.arange(3)}, {"editledger.kind": "dense", "run": 7})
    path = store.path_for(digest)
    assert path == tmp_path / "artifacts" / digest[:2] / f"{digest}.safetensors"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest and path.stat().st_size == size
    got = store.read(digest)
    assert got["x"].dtype == dtype and tuple(got["x"].shape) == shape
    assert torch.equal(got["x"], t) and torch.equal(got["idx"], torch.arange(3))
    # the file is plain safetensors, readable by the reference loader, with our metadata
    assert torch.equal(st_load(path.read_bytes())["x"], t)
    assert store.read_metadata(digest) == {"editledger.kind": "dense", "run": "7"}


def test_identical_content_gives_identical_bytes(tmp_path):
    store = ArtifactStore(tmp_path)
    t = _tensor(torch.float32, (4, 4))
    meta = {f"k{i}": str(i) for i in range(20)}   # many keys: safetensors' own order is hash order
    d1, _ = store.write({"b": t, "a": t.clone()}, meta)
    d2, _ = store.write({"a": t.clone(), "b": t}, dict(reversed(list(meta.items()))))
    assert d1 == d2
    assert len(list(store.iter_files())) == 1


def test_views_and_shared_tensors_are_stored(tmp_path):
    store = ArtifactStore(tmp_path)
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    digest, _ = store.write({"a": base, "b": base, "col": base[:, 1], "t": base.T})
    got = store.read(digest)
    assert torch.equal(got["a"], base) and torch.equal(got["b"], base)
    assert torch.equal(got["col"], base[:, 1]) and torch.equal(got["t"], base.T)


def _ledger_with_step(tmp_path):
    L = Ledger.open(str(tmp_path / "l.db"))
    bm = L.register_base_model("tiny", "t", "a" * 64, {})
    run = L.begin_run(base_model_id=bm.id, method="FT", hparams={}, stream_name="s", stream_digest="b" * 64,
                      stream_kind="sequential")
    d = DeltaInput("h.0.w", "dense", {"delta": torch.ones(3, 3)}, (3, 3), norm=3.0)
    v1 = L.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[], deltas=[d],
                       tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    # same tensors, but the header names the step, so step 2 gets its own artifact
    v2 = L.record_step(run.id, step=2, parent_version_id=v1.id, requests=[], deltas=[d],
                       tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    assert L.deltas(v1.id)[0].artifact_digest != L.deltas(v2.id)[0].artifact_digest
    return L, v1, v2


def test_flipped_byte_is_detected_with_a_clear_message(tmp_path):
    L, v1, v2 = _ledger_with_step(tmp_path)
    (row,) = L.deltas(v1.id)
    path = L.store.path_for(row.artifact_digest)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01                      # one bit of one float
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as e:
        L.read_artifact(row.artifact_digest)
    msg = str(e.value)
    assert row.artifact_digest in msg and "corrupted" in msg
    assert f"needed by versions {v1.id}, {v2.id}]" in msg and "fsck" in msg   # v2 builds on v1's delta
    assert torch.equal(L.read_artifact(L.deltas(v2.id)[0].artifact_digest)["delta"], torch.ones(3, 3))
    rep = L.fsck(progress=False)
    assert rep.corrupt == [row.artifact_digest] and not rep.ok
    L.close()


def test_missing_artifact_names_versions(tmp_path):
    L, v1, _ = _ledger_with_step(tmp_path)
    (row,) = L.deltas(v1.id)
    L.store.path_for(row.artifact_digest).unlink()
    with pytest.raises(IntegrityError, match=f"{row.artifact_digest} is missing.*version"):
        L.read_artifact(row.artifact_digest)
    assert L.fsck(progress=False).missing == [row.artifact_digest]
    L.close()


def test_interrupted_write_leaves_no_half_file(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    t = _tensor(torch.float32, (64, 64))
    real_fsync = os.fsync

    def crash(fd):   # the process dies after writing some bytes but before the file is durable
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write({"x": t})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list(store.iter_files()) == [], "an interrupted write must leave nothing behind"

    # a crash that skips our cleanup (kill -9) leaves only a temp file, never the final name
    def die_before_rename(src, dst):
        raise SystemExit("killed before rename")

    monkeypatch.setattr(os, "replace", die_before_rename)
    monkeypatch.setattr(os, "unlink", lambda p: None)   # cleanup never runs either
    with pytest.raises(SystemExit):
        store.write({"x": t})
    monkeypatch.undo()
    files = list(store.iter_files())
    assert len(files) == 1 and files[0].name.startswith(".tmp-")
    digest, _ = store.write({"x": t})
    assert store.path_for(digest).is_file() and torch.equal(store.read(digest)["x"], t)


def test_fsck_reports_orphans_and_temp_files(tmp_path):
    L, v1, _ = _ledger_with_step(tmp_path)
    orphan, _ = L.store.write({"x": torch.zeros(2)})          # written, never committed (a crash)
    (L.store.root / orphan[:2] / ".tmp-abc.safetensors").write_bytes(b"half")
    rep = L.fsck(progress=False)
    assert rep.orphans == [orphan] and len(rep.temp_files) == 1 and rep.ok
    assert rep.checked == 3   # two committed deltas + the orphan
    L.close()


def test_only_store_paths_and_digests_are_accepted(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest, _ = store.write({"x": torch.zeros(2)})
    assert store.resolve_inside(store.path_for(digest)) == digest
    outside = tmp_path / f"{digest}.safetensors"
    outside.write_bytes(store.path_for(digest).read_bytes())
    with pytest.raises(InputError, match="not inside the artifact store"):
        store.resolve_inside(outside)
    with pytest.raises(InputError, match="not inside the artifact store"):
        store.resolve_inside(store.root / digest[:2] / ".." / ".." / f"{digest}.safetensors")
    for bad in ("../../etc/passwd", "A" * 64, digest[:-1], digest + ".pt"):
        with pytest.raises(InputError, match="not an artifact digest"):
            store.read(bad)
