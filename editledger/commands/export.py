"""`editledger export RUN --format rome DIR`: a run in another tool's result format, from the ledger alone."""
from __future__ import annotations

import sys

from .common import open_ledger, printable

FORMATS = ("rome",)


def register(sub) -> None:
    p = sub.add_parser("export", help="write a run in another tool's result format (kmeng01/rome's case files)",
                       description="Write RUN's measurements in another tool's result format. rome: "
                                   "DIR/run_<id>/case_<step>.json with pre/post rewrite, paraphrase and "
                                   "neighbourhood NLLs, as kmeng01/rome's experiments/evaluate.py writes them, "
                                   "so that its experiments/summarize.py (or MEMIT's) reads the run. Reads the "
                                   "ledger only; no model is loaded.")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("dir", metavar="DIR", help="the results directory (the run's own directory is made inside)")
    p.add_argument("--format", choices=FORMATS, default="rome", help="the format (default: rome)")
    p.set_defaults(func=run)


def run(args) -> int:
    from editledger.api import EditLedger
    with open_ledger(args, create=False) as led:
        out = EditLedger(led, owned=False).export_rome(args.run, args.dir)
    n = len(list(out.glob("case_*.json")))
    print(f"wrote {n} case file(s) to {printable(str(out))}")
    print(f"summarise them with kmeng01/rome: python -m experiments.summarize --dir_name {printable(str(out.parent))} "
          "(or summarize.main(DIR, None, abs_path=True))", file=sys.stderr)
    return 0
