"""Content-addressed safetensors files: ``<home>/artifacts/<first 2 hex>/<sha256>.safetensors``.

The name of a file is the sha256 of its bytes, so identical content is stored once and a read can
verify what it got. Writes are atomic: bytes go to a temp file in the same directory, which is
fsync'd, renamed onto the final name and the directory fsync'd, so a crash leaves either nothing
or a complete file under the final name (at worst a ``.tmp-*`` file, which ``fsck`` reports).

Only safetensors is ever read (never pickle), and only from inside the store. torch is imported
lazily, inside the functions that convert tensors.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ledger.errors import InputError, IntegrityError

if TYPE_CHECKING:
    import torch

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".safetensors"
TMP_PREFIX = ".tmp-"
META_PREFIX = "editledger."   # header metadata keys we write: editledger.run, editledger.tensor, ...


class ArtifactCorrupt(IntegrityError):
    """The bytes of an artifact do not hash to its name (or cannot be parsed)."""

    def __init__(self, digest: str, message: str):
        super().__init__(message)
        self.digest = digest


class ArtifactMissing(IntegrityError):
    def __init__(self, digest: str, message: str):
        super().__init__(message)
        self.digest = digest


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once its directory entry is on disk. (No-op where unsupported.)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def serialize(tensors: dict[str, "torch.Tensor"], metadata: dict[str, Any] | None = None) -> bytes:
    """safetensors bytes for ``tensors`` (made contiguous, on CPU) with string header metadata.
    No tensors is allowed: a header-only file holds a method state's JSON part."""
    from safetensors.torch import save  # torch: the ledger opens without it (the TUI); only a writer needs it

    flat = {}
    seen: set[int] = set()
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        # safetensors refuses tensors that share storage (views, the same tensor twice): clone those
        ptr = t.untyped_storage().data_ptr()
        if (ptr in seen or t.storage_offset() != 0
                or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        flat[name] = t
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    return _canonical_header(save(flat, metadata=meta))


def _canonical_header(data: bytes) -> bytes:
    """Re-emit the JSON header with sorted keys. safetensors writes its metadata map in hash
    order, so the same content would get a different digest on every save; content addressing
    needs identical tensors + metadata to give identical bytes. Offsets are relative to the data
    section, so only the header changes; it is padded with spaces to a multiple of 8 as the
    format asks."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def atomic_write(path: Path, data: bytes, *, prefix: str = ".tmp-", suffix: str = "") -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either nothing new or all of it: a temp file in
    the same directory, fsync, rename, fsync of the directory. The temp file never outlives a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        # mkstemp makes the file 0600; a team's shared ledger needs its artifacts readable like its
        # database (what the umask allows an ordinary new file)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)     # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def _header_metadata(data: bytes) -> dict[str, str]:
    (n,) = struct.unpack("<Q", data[:8])
    return dict(json.loads(data[8:8 + n]).get("__metadata__", {}) or {})


class VerifiedReads:
    """Reads that check what they return: the bytes hash to the digest that names them, and a
    tensor read is a valid safetensors file. A store gives ``_fetch(digest) -> (bytes, where)``
    (FileNotFoundError when absent) and a ``root``."""

    root: Any

    def _fetch(self, digest: str) -> tuple[bytes, str]:
        raise NotImplementedError

    def read_bytes(self, digest: str) -> bytes:
        try:
            data, where = self._fetch(digest)
        except FileNotFoundError:
            raise ArtifactMissing(digest, f"artifact {digest} is missing from {self.root}: "
                                          "run `editledger db fsck` to list what else is missing") from None
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise ArtifactCorrupt(digest, f"artifact {digest} is corrupted (its bytes hash to {got[:16]}...); "
                                          f"file {where}")
        return data

    def read(self, digest: str) -> dict[str, "torch.Tensor"]:
        return self.read_with_header(digest)[0]

    def read_with_header(self, digest: str) -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
        """The tensors and the header metadata, from one verified read."""
        from safetensors.torch import load  # torch: the ledger opens without it (the TUI); only a reader of tensors needs it

        data = self.read_bytes(digest)
        try:
            return load(data), _header_metadata(data)
        except Exception as e:  # digest matched, so the writer stored something that is not safetensors
            raise ArtifactCorrupt(digest, f"artifact {digest} is not a valid safetensors file ({e})") from None

    def read_metadata(self, digest: str) -> dict[str, str]:
        return _header_metadata(self.read_bytes(digest))


class ArtifactStore(VerifiedReads):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    # ---- paths
    def path_for(self, digest: str) -> Path:
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise InputError(f"{digest!r} is not an artifact digest (64 lowercase hex characters); "
                             "take digests from the ledger (`editledger db fsck` lists them)")
        return self.root / digest[:2] / f"{digest}{SUFFIX}"

    def resolve_inside(self, path: str | os.PathLike) -> str:
        """Digest of a file given by path; refuses anything that is not a store file."""
        p = Path(path).resolve()
        if self.root not in p.parents or p.suffix != SUFFIX or p.parent.parent != self.root:
            raise InputError(f"{path} is not inside the artifact store {self.root}; "
                             "the ledger only reads its own content-addressed safetensors files")
        digest = p.name[: -len(SUFFIX)]
        self.path_for(digest)  # validates the name
        return digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def file(self, text: str) -> Path:
        """A file fsck listed, by its path (the fsspec store checks that it lies under its root)."""
        return Path(text)

    def move(self, src: Path, dst: Path) -> None:
        """fsck's repair: a verified file back into its folder."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)

    # ---- write
    def write_bytes(self, data: bytes) -> str:
        """Store ``data`` under its sha256; atomic and durable. Returns the digest."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if final.is_file() and final.stat().st_size == len(data):
            return digest   # content-addressed: already there (a corrupt copy is caught on read/fsck)
        atomic_write(final, data, prefix=TMP_PREFIX, suffix=SUFFIX)
        return digest

    def write(self, tensors: dict[str, "torch.Tensor"], metadata: dict[str, Any] | None = None) -> tuple[str, int]:
        """Serialize and store; returns (digest, size in bytes)."""
        data = serialize(tensors, metadata)
        return self.write_bytes(data), len(data)

    # ---- read
    def _fetch(self, digest: str) -> tuple[bytes, str]:
        path = self.path_for(digest)
        return path.read_bytes(), str(path)

    def iter_files(self) -> Iterator[Path]:
        """Every file under the store (artifacts and stray temp files)."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                yield from sorted(p for p in sub.iterdir() if p.is_file())
            elif sub.is_file():     # nothing of ours lives at the top: fsck reports it as stray
                yield sub
