"""``fsck``: is the ledger consistent, and if not, what exactly is damaged and which versions can no
longer be checked out.

What is checked:

* the database file itself (SQLite ``integrity_check`` and ``foreign_key_check``);
* every row's references: parents, heads, base models, delta and statistics artifacts, probe copies
  of run and step, digests that could name a path outside the store;
* every file under the store: its name (an artifact digest, in its two-letter folder), its bytes
  (they must hash to the name) and its format (a safetensors header whose tensors fit the file);
* every version's chain: the damaged artifacts a checkout of it would read, by the same rule as the
  session's checkout (deltas after the latest keyframe of their tensor, that keyframe, every state
  delta), so a damaged delta names the later versions that need it too, and not those whose
  keyframe already holds it;
* runs left "running" by a writer that is gone.

Orphans (a file no row references: a step killed between its artifact write and its commit),
leftover temp files and dead runs are the normal traces of a crash: they are listed but the ledger
is still consistent. ``repair`` removes unreferenced files and rows only, moves a verified file
that sits in the wrong folder back, and marks dead runs interrupted. It never deletes anything a
row references.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from tqdm import tqdm

from ledger.artifacts import DIGEST_RE, SUFFIX, TMP_PREFIX
from ledger.lease import Owner
from ledger.schema import (
    ArtifactRow, BaseModelRow, DeltaRow, ProbeResultRow, RunRow, StatsCacheRow, VersionRow, utcnow,
)

# safetensors dtypes and their sizes in bytes (the format's own table)
_DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass
class FsckReport:
    checked: int = 0                                        # artifact files hashed
    database: list[str] = field(default_factory=list)       # problems the database engine reports
    bad_rows: list[str] = field(default_factory=list)       # rows whose references are wrong
    corrupt: list[str] = field(default_factory=list)        # referenced or not: bytes do not hash to the name / not safetensors
    why: dict[str, str] = field(default_factory=dict)       # digest -> what is wrong with it
    missing: list[str] = field(default_factory=list)        # rows whose file is absent
    misplaced: list[str] = field(default_factory=list)      # paths of artifacts outside their folder
    orphans: list[str] = field(default_factory=list)        # files no row references
    stray: list[str] = field(default_factory=list)          # files that are not artifacts at all
    temp_files: list[str] = field(default_factory=list)     # leftovers of interrupted writes
    unreferenced_rows: list[str] = field(default_factory=list)  # artifact rows no delta/stats row uses
    unusable: list[str] = field(default_factory=list)       # missing or corrupt, and referenced by a row
    damaged_versions: dict[int, list[str]] = field(default_factory=dict)  # version -> damaged artifacts it needs
    dead_runs: list[int] = field(default_factory=list)      # "running", but their writer is gone
    materialised: int = 0                                   # versions re-materialised (CLI --materialise)

    @property
    def ok(self) -> bool:
        """True when the ledger is consistent: the database is sound, every reference resolves and
        every version can be checked out. Orphans, temp files and dead runs are crash leftovers:
        harmless, listed, repairable."""
        return not (self.database or self.bad_rows or self.unusable or self.damaged_versions)


@dataclass
class RepairResult:
    removed_files: list[str] = field(default_factory=list)
    removed_rows: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    interrupted_runs: list[int] = field(default_factory=list)
    kept_young: int = 0          # unreferenced files younger than min_age (a writer may be about to commit)


def safetensors_problem(data: bytes) -> str | None:
    """Why ``data`` is not a well-formed safetensors file (None if it is). Reads the header only:
    no tensor is built, no torch needed."""
    if len(data) < 8:
        return "shorter than a safetensors header"
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        return f"header length {n} runs past the end of the file ({len(data)} bytes)"
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError) as e:
        return f"header is not JSON ({e})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    body = len(data) - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                return "__metadata__ is not a map of strings"
            continue
        try:
            dtype, shape, (a, b) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            return f"tensor {name!r}: entry lacks dtype, shape or data_offsets"
        if dtype not in _DTYPE_SIZE or not isinstance(shape, list) or not all(
                isinstance(x, int) and x >= 0 for x in shape):
            return f"tensor {name!r}: bad dtype {dtype!r} or shape {shape!r}"
        numel = 1
        for x in shape:
            numel *= x
        if not (isinstance(a, int) and isinstance(b, int) and 0 <= a <= b <= body):
            return f"tensor {name!r}: data offsets {a}..{b} outside the {body}-byte data section"
        if b - a != numel * _DTYPE_SIZE[dtype]:
            return f"tensor {name!r}: {b - a} bytes for {numel} {dtype} values"
        spans.append((a, b))
    end = 0
    for a, b in sorted(spans):
        if a != end:
            return "tensor data overlaps or leaves a gap"
        end = b
    if end != body:
        return f"{body - end} bytes after the last tensor"
    return None


def _hash_file(p: Path) -> tuple[str, bytes]:
    data = p.read_bytes()
    return hashlib.sha256(data).hexdigest(), data


def versions_needing(ledger, damaged: set[str]) -> dict[int, list[str]]:
    """Version id -> the artifacts in ``damaged`` that its checkout reads. Mirrors the session's
    checkout rule (``simulator.session.Session._chain``): for each tensor, the latest keyframe in the
    lineage and the deltas after it; every state delta. Parents come before children (ids grow)."""
    if not damaged:
        return {}
    v, d = VersionRow.__table__.c, DeltaRow.__table__.c
    with ledger.engine.connect() as c:
        parents = dict(c.execute(sa.select(v.id, v.parent_id).order_by(v.id)).all())
        rows: dict[int, list[tuple[str, str, str]]] = {}
        for vid, tensor, kind, digest in c.execute(
                sa.select(d.version_id, d.tensor, d.kind, d.artifact_digest).order_by(d.version_id, d.position)):
            rows.setdefault(vid, []).append((tensor, kind, digest))
    empty: dict[str, frozenset] = {}
    need: dict[int, dict[str, frozenset]] = {}        # version -> tensor (or "@method") -> damaged digests read
    out: dict[int, list[str]] = {}
    for vid, parent in parents.items():
        cur = need.get(parent, empty) if parent is not None else empty
        mine = rows.get(vid, ())
        kf = {t: dg for t, k, dg in mine if k == "keyframe"}
        hits = [(t, k, dg) for t, k, dg in mine if k != "keyframe" and dg in damaged]
        if kf or hits:
            cur = dict(cur)
            for t, dg in kf.items():               # the keyframe holds the tensor after this version
                if dg in damaged:
                    cur[t] = frozenset({dg})
                else:
                    cur.pop(t, None)
            for t, k, dg in hits:
                if t in kf:                        # a weight delta inside this version's keyframe: not read
                    continue
                cur[t] = cur.get(t, frozenset()) | {dg}
        need[vid] = cur
        if cur:
            out[vid] = sorted(set().union(*cur.values()))
    return out


def check(ledger, *, progress: bool = True) -> FsckReport:
    rep = FsckReport()
    _check_database(ledger, rep)
    _check_rows(ledger, rep)
    _check_files(ledger, rep, progress)
    rep.damaged_versions = versions_needing(ledger, set(rep.unusable))
    _check_runs(ledger, rep)
    return rep


def _check_database(ledger, rep: FsckReport) -> None:
    if not ledger._sqlite:
        return                                       # a server database checks its own pages
    with ledger.engine.connect() as c:
        for (msg,) in c.exec_driver_sql("PRAGMA integrity_check").all():
            if msg != "ok":
                rep.database.append(f"integrity_check: {msg}")
        for row in c.exec_driver_sql("PRAGMA foreign_key_check").all():
            rep.database.append(f"foreign_key_check: table {row[0]} row {row[1]} refers to a missing {row[2]} row")


def _check_rows(ledger, rep: FsckReport) -> None:
    v, r, d, st, a, p, b = (t.__table__ for t in (VersionRow, RunRow, DeltaRow, StatsCacheRow, ArtifactRow,
                                                   ProbeResultRow, BaseModelRow))
    par, hv, sv = v.alias("par"), v.alias("hv"), v.alias("sv")
    bad = rep.bad_rows
    with ledger.engine.connect() as c:
        for vid, pid in c.execute(sa.select(v.c.id, v.c.parent_id).where(
                v.c.parent_id.is_not(None), v.c.parent_id >= v.c.id)):
            bad.append(f"version {vid}: parent {pid} is not older than it (a cycle is possible)")
        for vid, pid in c.execute(sa.select(v.c.id, v.c.parent_id).select_from(
                v.outerjoin(par, par.c.id == v.c.parent_id)).where(v.c.parent_id.is_not(None), par.c.id.is_(None))):
            bad.append(f"version {vid}: parent version {pid} does not exist")
        for vid, pid in c.execute(sa.select(v.c.id, par.c.id).select_from(
                v.join(par, par.c.id == v.c.parent_id)).where(par.c.base_model_id != v.c.base_model_id)):
            bad.append(f"version {vid}: its parent {pid} belongs to another base model")
        for vid, kind in c.execute(sa.select(v.c.id, v.c.kind).where(v.c.parent_id.is_(None), v.c.kind != "base")):
            bad.append(f"version {vid}: a {kind} version without a parent")
        for vid, rid in c.execute(sa.select(v.c.id, v.c.run_id).select_from(v.join(r, r.c.id == v.c.run_id))
                                  .where(r.c.base_model_id != v.c.base_model_id)):
            bad.append(f"version {vid}: belongs to run {rid}, whose base model is another")
        for vid, bid in c.execute(sa.select(v.c.id, v.c.base_model_id).select_from(
                v.outerjoin(b, b.c.id == v.c.base_model_id)).where(b.c.id.is_(None))):
            bad.append(f"version {vid}: base model {bid} does not exist")
        for rid, head, start, hb, sb, rb in c.execute(
                sa.select(r.c.id, r.c.head_version_id, r.c.start_version_id, hv.c.base_model_id, sv.c.base_model_id,
                          r.c.base_model_id)
                .select_from(r.outerjoin(hv, hv.c.id == r.c.head_version_id).outerjoin(sv, sv.c.id == r.c.start_version_id))):
            if hb is None:
                bad.append(f"run {rid}: head version {head} does not exist")
            elif hb != rb:
                bad.append(f"run {rid}: head version {head} belongs to another base model")
            if sb is None:
                bad.append(f"run {rid}: start version {start} does not exist")
        for table, key in ((d, d.c.id), (st, st.c.id)):
            for rid, digest in c.execute(sa.select(key, table.c.artifact_digest).select_from(
                    table.outerjoin(a, a.c.digest == table.c.artifact_digest)).where(a.c.digest.is_(None))):
                bad.append(f"{table.name} row {rid}: artifact {digest!r} has no artifact row")
        for (digest,) in c.execute(sa.select(a.c.digest)):
            if not (isinstance(digest, str) and DIGEST_RE.match(digest)):
                bad.append(f"artifact row {digest!r}: not a sha256 digest (it could name a path outside the store)")
        for pid, vid in c.execute(sa.select(p.c.id, p.c.version_id).select_from(p.join(v, v.c.id == p.c.version_id))
                                  .where(sa.or_(p.c.step != v.c.step,
                                                sa.func.coalesce(p.c.run_id, -1) != sa.func.coalesce(v.c.run_id, -1)))):
            bad.append(f"probe_result {pid}: its run or step differs from its version {vid}'s")
            if len(bad) > 1000:
                break


def referenced_digests(conn, *, strict: bool = False) -> set[str]:
    """Every artifact some row names: delta and statistics rows and (unless ``strict``) the digests a
    version lists in ``stats_used`` (statistics, a trained network such as MEND's). Strict: only
    those a checkout or a statistics lookup reads."""
    d, st, v = DeltaRow.__table__.c, StatsCacheRow.__table__.c, VersionRow.__table__.c
    used = set(conn.execute(sa.select(d.artifact_digest).distinct()).scalars()) | \
        set(conn.execute(sa.select(st.artifact_digest).distinct()).scalars())
    if not strict:
        for (names,) in conn.execute(sa.select(v.stats_used)):      # (no DISTINCT: PostgreSQL has no = for json)
            used.update(x for x in (names or []) if isinstance(x, str))
    return used


# Only a step writes these kinds, in the transaction that references them: an artifact row of such a
# kind that nothing uses is a leftover (a downgrade dropped its delta rows). Statistics and trained
# networks are kept for later runs even while no row names them.
REMOVABLE_KINDS = ("delta", "keyframe", "state")


def _check_files(ledger, rep: FsckReport, progress: bool) -> None:
    store = ledger.store
    a = ArtifactRow.__table__.c
    with ledger.engine.connect() as c:
        rows = set(c.execute(sa.select(a.digest)).scalars())
        used = referenced_digests(c)
        needed = referenced_digests(c, strict=True)
    found: set[str] = set()
    files = list(store.iter_files())
    for p in tqdm(files, desc="fsck", unit="file", disable=not progress or len(files) < 200):
        name = p.name
        if name.startswith(TMP_PREFIX):
            rep.temp_files.append(str(p))
            continue
        digest = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None
        if digest is None or not DIGEST_RE.match(digest):
            rep.stray.append(str(p))
            continue
        try:
            got, data = _hash_file(p)
        except OSError as e:
            rep.corrupt.append(digest)
            rep.why[digest] = f"cannot be read ({e.strerror})"
            continue
        rep.checked += 1
        if p.parent.name != digest[:2]:
            rep.misplaced.append(str(p))
            continue
        found.add(digest)
        if got != digest:
            rep.corrupt.append(digest)
            rep.why[digest] = f"its bytes hash to {got[:16]}…"
        else:
            problem = safetensors_problem(data)
            if problem:
                rep.corrupt.append(digest)
                rep.why[digest] = f"not a readable safetensors file: {problem}"
        if digest not in rows and digest not in used:
            rep.orphans.append(digest)
    rep.missing = sorted((rows | needed) - found)
    rep.unusable = sorted((set(rep.missing) | set(rep.corrupt)) & needed)
    rep.unreferenced_rows = sorted(rows - used)
    rep.corrupt = sorted(set(rep.corrupt))
    rep.orphans.sort()


def _check_runs(ledger, rep: FsckReport) -> None:
    now = utcnow()
    r = RunRow.__table__.c
    with ledger.engine.connect() as c:
        for row in c.execute(sa.select(r.id, r.owner_host, r.owner_pid, r.owner_started, r.owner_token,
                                       r.lease_renewed_at).where(r.status == "running").order_by(r.id)):
            owner = Owner.of(row)
            if owner is None or not owner.alive(now):
                rep.dead_runs.append(row.id)


def repair(ledger, rep: FsckReport, *, min_age: float = 600.0) -> RepairResult:
    """Remove what nothing references (files and artifact rows older than ``min_age`` seconds:
    a replay writing right now has files that its next commit will reference), move verified files
    back into their folder, mark dead runs interrupted. Never deletes anything referenced."""
    res = RepairResult()
    store = ledger.store
    now = time.time()
    a = ArtifactRow.__table__.c

    def old_enough(p: Path) -> bool:
        try:
            return now - p.stat().st_mtime >= min_age
        except FileNotFoundError:
            return False

    for path in rep.misplaced:
        p = Path(path)
        digest = p.name[: -len(SUFFIX)]
        target = store.path_for(digest)
        got, _ = _hash_file(p)
        if got == digest and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
            res.moved.append(digest)
    with ledger._write() as s:      # re-read the references inside the write lock
        referenced = referenced_digests(s.connection())
        cutoff = utcnow() - timedelta(seconds=min_age)
        for digest in rep.unreferenced_rows:
            if digest in referenced:
                continue
            created, kind = s.execute(sa.select(a.created_at, a.kind).where(a.digest == digest)).one_or_none() \
                or (None, None)
            if kind not in REMOVABLE_KINDS:
                continue
            if created is None or created > cutoff:
                res.kept_young += created is not None
                continue
            s.execute(sa.delete(ArtifactRow.__table__).where(a.digest == digest))
            res.removed_rows.append(digest)
        rows = set(s.execute(sa.select(a.digest)).scalars())
        for digest in rep.orphans + res.removed_rows:
            if digest in referenced or digest in rows:
                continue
            p = store.path_for(digest)
            if p.exists():
                if not old_enough(p):
                    res.kept_young += 1
                    continue
                p.unlink()
                res.removed_files.append(digest)
        for path in rep.temp_files:
            p = Path(path)
            if old_enough(p):
                p.unlink(missing_ok=True)
                res.removed_files.append(p.name)
            else:
                res.kept_young += 1
    for run_id in rep.dead_runs:
        if ledger.mark_interrupted_if_dead(run_id):
            res.interrupted_runs.append(run_id)
    return res
