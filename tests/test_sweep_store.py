"""The artifact store on fsspec filesystems (a team's shared store: s3://, gs://, a mounted path),
tested on fsspec's own in-memory and local filesystems: the same bytes and names as the local store,
atomic writes (a failed write leaves nothing under the final name and no temp object), verified reads,
no path escapes, fsck and its repair, and a ledger whose artifacts live there."""
from __future__ import annotations

import hashlib
import uuid

import fsspec
import pytest
import torch

from ledger import DeltaInput, Ledger
from ledger.api import open_store
from ledger.artifacts import ArtifactCorrupt, ArtifactMissing, ArtifactStore
from ledger.errors import InputError
from ledger.fsspec_store import FsspecArtifactStore


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    if request.param == "memory":
        url = f"memory://editledger-test-{uuid.uuid4().hex}/artifacts"
    else:
        url = f"file://{tmp_path}/shared/artifacts"
    s = FsspecArtifactStore(url)
    yield s
    if request.param == "memory" and s.fs.exists(s.root_path):     # the memory filesystem lives as long as pytest
        s.fs.rm(s.root_path, recursive=True)


def _t(seed=0, shape=(5, 3)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_same_bytes_and_names_as_the_local_store_and_verified_reads(store, tmp_path):
    local = ArtifactStore(tmp_path / "local")
    t = _t()
    meta = {"editledger.kind": "dense", "run": 3}
    digest, size = store.write({"x": t}, meta)
    assert (digest, size) == local.write({"x": t}, meta)       # identical content, identical bytes
    data = store.fs.cat_file(f"{store.root_path}/{digest[:2]}/{digest}.safetensors")
    assert hashlib.sha256(data).hexdigest() == digest and len(data) == size
    assert torch.equal(store.read(digest)["x"], t)
    assert store.read_metadata(digest) == {"editledger.kind": "dense", "run": "3"}
    assert store.exists(digest) and store.write({"x": t}, meta)[0] == digest   # written once
    assert [p.name for p in store.iter_files()] == [f"{digest}.safetensors"]
    # a flipped byte: refused on read, naming the digest
    key = f"{store.root_path}/{digest[:2]}/{digest}.safetensors"
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    store.fs.pipe_file(key, bytes(bad))
    with pytest.raises(ArtifactCorrupt, match=digest):
        store.read(digest)
    store.fs.rm_file(key)
    with pytest.raises(ArtifactMissing, match="missing"):
        store.read(digest)


def test_a_failed_write_leaves_nothing_behind(store, monkeypatch):
    """The bytes reach their final name only by one rename; if it (or the upload) fails, the final name
    holds nothing and the temp object is gone."""
    t = _t(1)
    real_mv = store.fs.mv

    def broken_mv(src, dst, **kw):
        assert ".tmp-" in src and store.fs.exists(src)    # the whole file sits under its temp name
        raise OSError("connection reset during rename")
    monkeypatch.setattr(store.fs, "mv", broken_mv)
    with pytest.raises(OSError, match="connection reset"):
        store.write({"x": t})
    assert list(store.iter_files()) == []
    monkeypatch.setattr(store.fs, "mv", real_mv)
    real_open = store.fs.open

    class Truncating:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError("disk full")

        def __exit__(self, *exc):
            self.f.__exit__(*exc)

    monkeypatch.setattr(store.fs, "open", lambda path, mode="rb", **kw: Truncating(real_open(path, mode, **kw)))
    with pytest.raises(OSError, match="disk full"):
        store.write({"x": t})
    assert list(store.iter_files()) == []
    monkeypatch.setattr(store.fs, "open", real_open)
    digest, _ = store.write({"x": t})
    assert torch.equal(store.read(digest)["x"], t)


def test_no_path_escapes(store):
    for bad in ("../" * 3 + "etc/passwd", "a" * 63, "A" * 64, "0" * 64 + "/../x", "", None):
        with pytest.raises(InputError):
            store.path_for(bad)
    outside = store.fs.unstrip_protocol(store.root_path + "/../elsewhere/x.safetensors")
    for path in (outside, "/etc/passwd", store.root + "/../x"):
        with pytest.raises(InputError, match="not inside the artifact store"):
            store.file(path)
    digest, _ = store.write({"x": _t(2)})
    assert store.resolve_inside(str(store.path_for(digest))) == digest
    with pytest.raises(InputError):
        store.resolve_inside(store.root + "/stray.safetensors")


def test_a_ledger_on_an_fsspec_store_records_checks_and_repairs(store, tmp_path, monkeypatch):
    monkeypatch.delenv("EDITLEDGER_ARTIFACTS", raising=False)
    with Ledger.open(str(tmp_path / "l.db"), artifacts=store.root) as led:
        assert isinstance(led.store, FsspecArtifactStore) and led.store.root == store.root
        bm = led.register_base_model("tiny", "t", "a" * 64, {})
        run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s",
                            stream_digest="b" * 64, stream_kind="sequential", own=True)
        v = led.record_step(run.id, step=1, parent_version_id=run.head_version_id,
                            requests=[{"subject": "S", "prompt": "{} is", "target_new": " X"}],
                            deltas=[DeltaInput("w", "dense", {"delta": torch.full((2, 2), 3.0)}, (2, 2))],
                            tensor_fingerprints={"w": "1"}, diagnostics={}, wall_time_s=0.0)
        digest = led.deltas(v.id)[0].artifact_digest
        assert torch.equal(led.read_artifact(digest)["delta"], torch.full((2, 2), 3.0))
        assert led.fsck(progress=False).ok
        # crash leftovers on the shared store: an orphan, a temp object, a file in the wrong folder
        orphan, _ = store.write({"y": _t(3)})
        store.fs.pipe_file(f"{store.root_path}/{digest[:2]}/.tmp-dead.safetensors", b"half")
        moved = f"{store.root_path}/zz/{digest}.safetensors"
        store.fs.makedirs(f"{store.root_path}/zz", exist_ok=True)
        store.fs.mv(str(store.path_for(digest).path), moved)
        rep = led.fsck(progress=False)
        assert rep.orphans == [orphan] and len(rep.temp_files) == 1 and rep.misplaced == [store.fs.unstrip_protocol(moved)]
        assert rep.unusable == [digest] and not rep.ok
        res = led.repair(rep, min_age=0)
        assert res.moved == [digest] and orphan in res.removed_files
        rep2 = led.fsck(progress=False)
        assert rep2.ok and rep2.orphans == [] and rep2.temp_files == []
        # a flipped byte is named by fsck with the versions that need it
        key = str(store.path_for(digest).path)
        data = bytearray(store.fs.cat_file(key))
        data[-1] ^= 1
        store.fs.pipe_file(key, bytes(data))
        rep3 = led.fsck(progress=False)
        assert rep3.corrupt == [digest] and rep3.damaged_versions == {v.id: [digest]}


def test_where_the_store_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("EDITLEDGER_ARTIFACTS", raising=False)
    assert open_store(None, tmp_path).root == (tmp_path / "artifacts").resolve()
    assert open_store(str(tmp_path / "x"), tmp_path).root == (tmp_path / "x").resolve()
    monkeypatch.setenv("EDITLEDGER_ARTIFACTS", "memory://env-store/a")
    s = open_store(None, tmp_path)
    assert isinstance(s, FsspecArtifactStore) and s.root_path == "/env-store/a" and s.root == "memory:///env-store/a"
    with pytest.raises(InputError, match="nosuchproto"):
        open_store("nosuchproto://bucket/x", tmp_path)
    assert fsspec.filesystem("memory").exists("/env-store") is False     # nothing written by opening
