"""`editledger db status | upgrade | fsck`: the ledger's schema and integrity."""
from __future__ import annotations

import argparse
import sys

from .common import device_arg, printable


def register(sub) -> None:
    p = sub.add_parser("db", help="ledger database: schema status, upgrade, integrity check")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    s = dsub.add_parser("status", help="where the ledger is, its schema revision, what it holds")
    s.set_defaults(func=status)
    s = dsub.add_parser("upgrade", help="create the ledger or bring its schema to this editledger's revision")
    s.set_defaults(func=upgrade)
    s = dsub.add_parser("fsck", help="check the database, every reference, artifact and version chain",
                        description="Check the database file, every row's references, every artifact (digest, "
                                    "place, safetensors format) and every version's chain; list the versions a "
                                    "damaged artifact makes impossible to check out, orphans and runs left "
                                    "'running' by a writer that is gone. Exit 0 when consistent, 4 when not.")
    s.add_argument("--repair", "--prune", dest="repair", action="store_true",
                   help="remove unreferenced artifacts and temp files older than --min-age, move misplaced "
                        "artifacts back, mark dead runs interrupted; never deletes anything referenced")
    s.add_argument("--min-age", type=_seconds, default=600.0, metavar="SECONDS",
                   help="only remove files at least this old, so a replay writing right now is safe (default 600)")
    s.add_argument("--materialise", action="store_true",
                   help="also rebuild every version with its model and compare the fingerprints (slow; "
                        "needs each run's model)")
    s.add_argument("--device", default=None, type=device_arg, help="torch device for --materialise")
    s.set_defaults(func=fsck)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (0 <= v < float("inf")):
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: give a number of seconds >= 0")
    return v


def status(args) -> int:
    from ledger import Ledger, migrate, resolve

    url, home = resolve(args.db)
    path = migrate.sqlite_path(url)
    print(f"url:      {migrate.describe(url) if path is None else url}")
    print(f"home:     {home}")
    head = migrate.head_revision()
    if path is not None and not path.exists():
        print(f"schema:   no ledger yet (this editledger creates schema {head}; "
              f"`editledger --db {path} db upgrade` creates an empty one)")
        return 0
    rev, _ = migrate.current_revision(url)
    state = "up to date" if rev == head else ("unknown: written by a newer editledger" if rev and rev not in
                                               migrate.known_revisions() else "behind: run `db upgrade`")
    print(f"schema:   {rev or 'none'} (this editledger: {head}; {state})")
    if rev != head:
        return 0
    with Ledger.open(args.db, create=False) as led:
        counts = led.counts()
        print("holds:    " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
        runs = led.runs()
        if runs:
            print(f"\n{'run':>4}  {'name':<20} {'model':<16} {'method':<8} {'stream':<24} {'status':<11} {'steps':>5} {'head':>6}")
            for r in runs:
                print(f"{r.id:>4}  {(r.name or '')[:20]:<20} {r.model_name[:16]:<16} {r.method[:8]:<8} "
                      f"{r.stream_name[-24:]:<24} {r.status:<11} {r.steps:>5} {r.head_version_id:>6}")
    return 0


def upgrade(args) -> int:
    from ledger import migrate, resolve

    url, _ = resolve(args.db)
    before, after = migrate.upgrade(url)
    where = migrate.describe(url)
    if before == after:
        print(f"{where}: already at schema {after}")
    elif before is None:
        print(f"{where}: created at schema {after}")
    else:
        print(f"{where}: upgraded from schema {before} to {after}")
    return 0


def fsck(args) -> int:
    from ledger import Ledger
    from ledger.errors import IntegrityError

    with Ledger.open(args.db, create=False) as led:
        rep = led.fsck(progress=sys.stderr.isatty())
        if args.materialise:
            _materialise(led, rep, args.device)
        print(f"checked {rep.checked} artifact files under {led.store.root}"
              + (f"; re-materialised {rep.materialised} versions" if args.materialise else ""))
        damaged = rep.damaged_versions
        by_artifact: dict[str, list[int]] = {}
        for vid, digests in damaged.items():
            for dg in digests:
                by_artifact.setdefault(dg, []).append(vid)

        def versions(dg: str) -> str:
            vs = sorted(by_artifact.get(dg, []))
            return f"  (needed by versions {_ids(vs)})" if vs else ""

        sections = [
            ("database file", rep.database, str),
            ("broken references", rep.bad_rows, str),
            ("corrupt artifacts", rep.corrupt, lambda d: f"{d}: {rep.why.get(d, '')}{versions(d)}"),
            ("missing artifacts (a row names them, no file)", rep.missing, lambda d: f"{d}{versions(d)}"),
            ("misplaced artifacts (in the wrong folder; --repair moves them back)", rep.misplaced, str),
            ("orphan artifacts (no row: a step that never committed; --repair removes them)", rep.orphans, str),
            ("temp files (interrupted writes; --repair removes them)", rep.temp_files, str),
            ("stray files (not editledger artifacts: left alone, remove them by hand)", rep.stray, str),
            ("artifact rows no delta or statistics row uses (--repair removes them)", rep.unreferenced_rows, str),
            ("runs left 'running' by a writer that is gone (--repair marks them interrupted; resume them)",
             rep.dead_runs, lambda r: f"run {r}"),
        ]
        for title, items, fmt in sections:
            if items:
                print(f"{title}: {len(items)}")
                for x in items[:50]:
                    print(f"  {printable(fmt(x))}")
                if len(items) > 50:
                    print(f"  ... {len(items) - 50} more")
        if damaged:
            print(f"versions that cannot be checked out: {len(damaged)} ({_ids(sorted(damaged))}); every other "
                  "version can")
        if args.repair:
            res = led.repair(rep, min_age=args.min_age)
            print(f"repaired: removed {len(res.removed_files)} files and {len(res.removed_rows)} unreferenced rows, "
                  f"moved {len(res.moved)} artifacts back, marked {len(res.interrupted_runs)} runs interrupted"
                  + (f"; kept {res.kept_young} files younger than {args.min_age:g} s" if res.kept_young else ""))
        if not rep.ok:
            raise IntegrityError(
                f"the ledger is not consistent: {len(rep.database)} database problems, {len(rep.bad_rows)} broken "
                f"references, {len(rep.unusable)} damaged artifacts, {len(damaged)} versions that cannot be "
                "checked out. Restore the damaged files from a backup or replay those runs; --repair never "
                "touches referenced data"
                + (f". (Artifacts were looked for in {led.store.root}: if this ledger keeps them elsewhere, "
                   "give --artifacts PATH|URL or $EDITLEDGER_ARTIFACTS)" if rep.missing else ""))
        leftovers = rep.orphans or rep.temp_files or rep.dead_runs or rep.unreferenced_rows or rep.misplaced
        print("ok: consistent" + (" (crash leftovers listed above are harmless; --repair tidies them)"
                                  if leftovers and not args.repair else ""))
    return 0


def _ids(ids: list[int]) -> str:
    from ledger.history import _ranges
    return _ranges(ids)


def _materialise(led, rep, device) -> None:
    """Rebuild every version (base + chain) with its run's model and verify its fingerprints."""
    from ledger.errors import UserError
    from simulator.session import Session

    sessions: dict[int, Session] = {}
    for r in led.runs():
        try:
            s = sessions.get(r.base_model_id) or Session.for_run(led, r.id, device=device, progress=False)
        except UserError as e:
            rep.bad_rows.append(f"run {r.id}: its model cannot be loaded to re-materialise it ({e})")
            continue
        sessions[r.base_model_id] = s
        for v in led.versions(r.id):
            if v.id in rep.damaged_versions:
                continue
            try:
                s.checkout(v.id)
                rep.materialised += 1
            except UserError as e:
                rep.bad_rows.append(f"version {v.id} (run {r.id} step {v.step}): {e}")
