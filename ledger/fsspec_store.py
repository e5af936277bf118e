"""The artifact store on any fsspec filesystem: ``s3://bucket/ledger``, ``gs://…``, ``memory://…``,
``file:///shared/artifacts`` — the store a team's nodes share.

The same layout and the same promises as the local store (``ledger.artifacts``):

* **content addressing**: ``<root>/<first 2 hex>/<sha256>.safetensors``, named by the sha256 of the
  bytes; a read hashes what it got and refuses a mismatch (ArtifactCorrupt);
* **atomic writes**: the bytes go to a temp object in the same folder, then one rename (``fs.mv``)
  gives it its final name, so the final name holds all the bytes or nothing. On a local filesystem
  the rename is ``rename(2)`` and the file is fsync'd first; on an object store (S3, GCS) an object
  appears whole when its upload completes, so the copy ``mv`` makes is whole too. A failed write
  removes its temp object;
* **no escapes**: a digest must be 64 lowercase hex characters, and every path fsck hands back is
  checked to lie under the root.

fsck walks it like the local store: the paths it yields (``StorePath``) offer the few file
operations fsck and its repair need.
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Iterator

import fsspec

from ledger.artifacts import DIGEST_RE, SUFFIX, TMP_PREFIX, VerifiedReads, serialize
from ledger.errors import InputError

if TYPE_CHECKING:
    import torch


def _mtime(info: dict) -> float | None:
    """Modification time of an entry, from whichever key the filesystem uses (None if none)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(key)
        if isinstance(v, datetime):
            return v.timestamp()
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


class StorePath:
    """One file of an fsspec store, with the ``pathlib.Path`` operations fsck uses."""

    def __init__(self, store: "FsspecArtifactStore", path: str):
        self.store, self.path = store, path

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> "StorePath":
        return StorePath(self.store, posixpath.dirname(self.path))

    def read_bytes(self) -> bytes:
        return self.store.fs.cat_file(self.path)

    def exists(self) -> bool:
        return self.store.fs.exists(self.path)

    def is_file(self) -> bool:
        return self.store.fs.isfile(self.path)

    def stat(self) -> SimpleNamespace:
        info = self.store.fs.info(self.path)
        t = _mtime(info)
        # no time known: say "just now", so that repair's age rule keeps the file rather than guess
        return SimpleNamespace(st_mtime=t if t is not None else datetime.now().timestamp(),
                               st_size=info.get("size"))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.store.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def __str__(self) -> str:
        return self.store.fs.unstrip_protocol(self.path)

    def __repr__(self) -> str:
        return f"StorePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorePath) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


class FsspecArtifactStore(VerifiedReads):
    """``ArtifactStore``'s interface on an fsspec filesystem (module docstring)."""

    def __init__(self, url: str, *, fs: Any = None):
        try:
            if fs is None:
                fs, path = fsspec.core.url_to_fs(url)
            else:
                path = fs._strip_protocol(url)
        except ImportError as e:     # e.g. s3:// without s3fs: fsspec says which package to install
            raise InputError(f"artifact store {url!r}: {e}") from None
        except ValueError as e:      # an unknown protocol
            raise InputError(f"artifact store {url!r}: {e}; use a path or an fsspec URL such as "
                             "s3://bucket/ledger or file:///shared/artifacts") from None
        self.fs = fs
        self.root_path = path.rstrip("/") or "/"
        self.root = fs.unstrip_protocol(self.root_path)      # what messages show
        self._local = "file" in _protocols(fs)

    # ---- paths
    def _key(self, digest: str) -> str:
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise InputError(f"{digest!r} is not an artifact digest (64 lowercase hex characters); "
                             "take digests from the ledger (`editledger db fsck` lists them)")
        return posixpath.join(self.root_path, digest[:2], f"{digest}{SUFFIX}")

    def path_for(self, digest: str) -> StorePath:
        return StorePath(self, self._key(digest))

    def file(self, text: str) -> StorePath:
        """The store file named by ``text`` (a path fsck listed); refuses anything outside the root."""
        path = posixpath.normpath(self.fs._strip_protocol(str(text)))
        if not path.startswith(self.root_path.rstrip("/") + "/"):
            raise InputError(f"{text} is not inside the artifact store {self.root}; the ledger only touches "
                             "its own files")
        return StorePath(self, path)

    def resolve_inside(self, text: str) -> str:
        """Digest of a store file given by path; refuses anything that is not one."""
        p = self.file(text)
        digest = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else ""
        if posixpath.dirname(posixpath.dirname(p.path)) != self.root_path or not DIGEST_RE.match(digest):
            raise InputError(f"{text} is not an artifact of the store {self.root}")
        return digest

    def exists(self, digest: str) -> bool:
        return self.fs.isfile(self._key(digest))

    def move(self, src: StorePath, dst: StorePath) -> None:
        """fsck's repair: a verified file back into its folder."""
        self.fs.makedirs(posixpath.dirname(dst.path), exist_ok=True)
        self.fs.mv(src.path, dst.path)

    # ---- write
    def write_bytes(self, data: bytes) -> str:
        """Store ``data`` under its sha256: a temp object, then one rename. Returns the digest."""
        digest = hashlib.sha256(data).hexdigest()
        final = self._key(digest)
        try:
            if self.fs.size(final) == len(data):
                return digest       # content-addressed: already there (a corrupt copy is caught on read/fsck)
        except FileNotFoundError:
            pass
        folder = posixpath.dirname(final)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}{SUFFIX}")
        try:
            self.fs.makedirs(folder, exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
                if self._local:
                    f.flush()
                    _fsync(f)
            self.fs.mv(tmp, final)
        except BaseException:
            try:
                self.fs.rm_file(tmp)
            except Exception:
                pass
            raise
        if self._local:
            _fsync_dir(folder)
        return digest

    def write(self, tensors: dict[str, "torch.Tensor"], metadata: dict[str, Any] | None = None) -> tuple[str, int]:
        data = serialize(tensors, metadata)
        return self.write_bytes(data), len(data)

    # ---- read
    def _fetch(self, digest: str) -> tuple[bytes, str]:
        key = self._key(digest)
        return self.fs.cat_file(key), self.fs.unstrip_protocol(key)

    # ---- listing
    def iter_files(self) -> Iterator[StorePath]:
        """Every file under the store (artifacts, stray files, temp objects of interrupted writes)."""
        try:
            found = self.fs.find(self.root_path, detail=False)
        except FileNotFoundError:
            return
        for path in sorted(found):
            yield StorePath(self, path)


def _protocols(fs) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _fsync(f) -> None:
    try:
        os.fsync(f.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
