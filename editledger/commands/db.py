"""`editledger db status | upgrade | fsck`: the ledger's schema and integrity."""
from __future__ import annotations

import sys
import time


def register(sub) -> None:
    p = sub.add_parser("db", help="ledger database: schema status, upgrade, integrity check")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    s = dsub.add_parser("status", help="where the ledger is, its schema revision, what it holds")
    s.set_defaults(func=status)
    s = dsub.add_parser("upgrade", help="create the ledger or bring its schema to this editledger's revision")
    s.set_defaults(func=upgrade)
    s = dsub.add_parser("fsck", help="verify every artifact's digest; list orphan, missing and corrupt artifacts")
    s.add_argument("--prune", action="store_true",
                   help="delete orphan artifacts and leftover temp files older than --min-age")
    s.add_argument("--min-age", type=float, default=600.0, metavar="SECONDS",
                   help="only prune files at least this old, so a replay writing right now is safe (default 600)")
    s.set_defaults(func=fsck)


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
        print(f"checked {rep.checked} artifact files under {led.store.root}")
        for title, items in (("corrupt (bytes do not match the name)", rep.corrupt),
                             ("missing (referenced, no file)", rep.missing),
                             ("orphan (file, no row: a write whose step never committed)", rep.orphans),
                             ("temp files (interrupted writes)", rep.temp_files),
                             ("artifact rows no delta or statistics row uses", rep.unreferenced_rows)):
            if items:
                print(f"{title}: {len(items)}")
                for x in items[:50]:
                    users = led.versions_using(x) if title.startswith(("corrupt", "missing")) else []
                    print(f"  {x}" + (f"  (versions {', '.join(map(str, users[:10]))})" if users else ""))
                if len(items) > 50:
                    print(f"  ... {len(items) - 50} more")
        if args.prune:
            now, pruned = time.time(), 0
            paths = [led.store.path_for(d) for d in rep.orphans] + [led.store.root / p for p in rep.temp_files]
            for p in paths:
                try:
                    if now - p.stat().st_mtime >= args.min_age:
                        p.unlink()
                        pruned += 1
                except FileNotFoundError:
                    pass
            print(f"pruned {pruned} of {len(paths)} orphan/temp files (min age {args.min_age:g} s)")
        if not rep.ok:
            raise IntegrityError(f"{len(rep.corrupt)} corrupt and {len(rep.missing)} missing artifacts: the versions "
                                 "listed cannot be checked out bit-exactly; restore the files from a backup "
                                 "or replay those runs")
        print("ok" if not (rep.orphans or rep.temp_files) else "ok (orphans are harmless; --prune removes them)")
    return 0
