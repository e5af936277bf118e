"""`editledger stream make|check`: build stream files from benchmarks or the built-in facts; validate them."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from ledger.errors import InputError
from simulator.requests import STREAM_KINDS
from simulator.streams import load_stream, make_stream, read_benchmark, save_stream


def register(subparsers) -> None:
    p = subparsers.add_parser("stream", help="build and check edit stream files",
                              description="Build edit streams from benchmark files or the built-in "
                                          "facts, and validate stream files (docs/stream-format.md).")
    sub = p.add_subparsers(dest="stream_command", metavar="SUBCOMMAND")

    m = sub.add_parser("make", help="build a stream file of one kind",
                       description="Build a stream of one kind from a benchmark file (format "
                                   "auto-detected), a stream file, or the built-in facts.")
    m.add_argument("--kind", required=True, choices=STREAM_KINDS, help="the stream kind")
    m.add_argument("--n", type=int, default=20,
                   help="how many cases to draw (edits for sequential/batch, pairs for round and "
                        "conflicts, MQuAKE cases for multihop; default 20)")
    m.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="a benchmark file, a stream file, or the word `builtin`")
    m.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    m.add_argument("--batch-size", type=int, default=1, help="requests per step for --kind batch")
    m.add_argument("--mquake-prompts", default=None, metavar="DIR|zero-shot",
                   help="MQuAKE's prompts/ folder (multihop-prompts.txt, rel-prompts.json); default: looked "
                        "for next to the MQuAKE file. `zero-shot` asks the questions without demonstrations "
                        "(reported as mh_zeroshot, not MH)")
    m.add_argument("--name", default=None, help="stream name (default: the output file's stem)")
    m.add_argument("-o", "--output", required=True, metavar="OUT.jsonl", help="the stream file to write")
    m.set_defaults(func=cmd_make)

    c = sub.add_parser("check", help="validate a stream file and summarise it")
    c.add_argument("file", metavar="FILE", help="a stream file (.jsonl)")
    c.set_defaults(func=cmd_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def summary(stream) -> str:
    kinds = Counter(s.kind for s in stream.steps)
    suites = Counter()
    for s in stream.steps:
        for suite, items in s.probes.items():
            suites[suite] += len(items)
    groups = len({s.group for s in stream.steps if s.group is not None})
    lines = [f"stream {stream.name!r}: kind {stream.kind}, {len(stream.steps)} steps, "
             f"{stream.n_requests} edit requests, {groups} groups",
             "  steps by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
             "  probes by suite: " + (", ".join(f"{k} {v}" for k, v in sorted(suites.items())) or "none"),
             f"  digest: {stream.digest}"]
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    stream = load_stream(args.file)
    print(f"{args.file}: valid (format v1)")
    print(summary(stream))
    return 0


def cmd_make(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    records = read_benchmark(args.source, mquake_prompts=args.mquake_prompts)
    stream = make_stream(args.kind, records, n=args.n, seed=args.seed, batch_size=args.batch_size)
    stream.name = args.name or Path(args.output).stem
    stream.meta.update({"source": str(args.source), "seed": args.seed, "n": args.n})
    if args.mquake_prompts is not None:
        stream.meta["mquake_prompts"] = str(args.mquake_prompts)
    save_stream(stream, args.output)
    print(f"wrote {args.output}")
    print(summary(stream))
    return 0
