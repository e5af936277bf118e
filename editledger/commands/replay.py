"""`editledger replay`: run a stream against a model, or resume a killed replay."""
from __future__ import annotations

import sys

from ledger.errors import InputError

from .common import add_model_args, bounded_int, find_run, open_ledger, printable, seed_arg

# the registry's names, written out so that --help needs no torch; tests/test_cli_startup.py checks them
METHODS = ("rome", "r-rome", "memit", "alphaedit", "ft", "kn", "mend", "grace", "ike", "serac")


def register(sub) -> None:
    p = sub.add_parser("replay", help="replay a stream file step by step into the ledger",
                       description="Replay STREAM (a stream file, see docs/stream-format.md) on a model with "
                                   "an editing method: editor → delta artifact → apply → probes → one "
                                   "committed ledger transaction per step.")
    p.add_argument("stream", nargs="?", help="stream file (.jsonl)")
    p.add_argument("--resume", metavar="RUN", help="continue a killed replay from its last committed step")
    p.add_argument("--model", default="gemma-3-270m",
                   help="registry name (gemma-3-270m, smollm2-135m, tiny-gptj, gpt-j-6b, ...) or a path to a "
                        "local Hugging Face directory or .gguf file (default: gemma-3-270m)")
    p.add_argument("--method", default="rome",
                   help="editing method: " + ", ".join(METHODS) + " (default: rome; see docs/methods.md)")
    p.add_argument("--hparams", metavar="FILE", help="JSON file of hyper-parameters overriding the model's defaults")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of every step (0 .. 2^32-1; default 0)")
    p.add_argument("--name", help="a label for the run")
    p.add_argument("--stop-when", action="append", default=[], metavar="COND",
                   help="stop and roll back to the last good version when COND holds, e.g. 'ppl>1.5x' (repeatable)")
    p.add_argument("--keyframe-every", type=bounded_int(0, what="--keyframe-every"), default=8, metavar="K",
                   help="store full copies of the touched tensors every K steps (bounds checkout cost; 0 = never)")
    p.add_argument("--probe-every", action="append", default=[], metavar="SUITE=K",
                   help="run probe suite SUITE every K steps (0 = only at the end); repeatable")
    p.add_argument("--stats-corpus", default="self",
                   help="second-moment statistics corpus: 'self' (text sampled from the model), 'wikitext' "
                        "(../shared sample), or a text file")
    p.add_argument("--stats-tokens", type=bounded_int(1, what="--stats-tokens"), default=None,
                   help="tokens for the statistics (default: the method's)")
    p.add_argument("--general", default="builtin", metavar="SPEC",
                   help="general-ability sets measured along the run: builtin = hand-written perplexity text, "
                        "QA, sentiment, reasoning, summarisation, PIQA, fluency; loglik = only those scored "
                        "without generation; none; or real test sets as NAME[=FILE][:N],... (wikitext, nq, "
                        "gsm8k, sst2, samsum, boolq, dialogue, rte, mmlu, piqa; read from ../shared/data or "
                        "$EDITLEDGER_DATA), "
                        "see docs/metrics.md (default: builtin)")
    p.add_argument("--general-n", type=bounded_int(1, what="--general-n"), default=10, metavar="N",
                   help="items drawn from each real general-ability set (default 10; NAME:N in --general overrides)")
    p.add_argument("--general-seed", type=seed_arg, default=0, help="seed of that draw (default 0)")
    p.add_argument("--protocol", default="sequential", choices=["sequential", "independent"],
                   help="sequential: every step edits the model the step before left (the survey's Figure 4); "
                        "independent: every case starts from the base model (Tables 3 and 4 as their papers "
                        "measure them); default sequential")
    add_model_args(p)
    p.set_defaults(func=run)


def _probe_every(items: list[str]) -> dict[str, int]:
    out = {}
    for it in items:
        suite, _, k = it.partition("=")
        if not suite or not k.isdigit() or len(k) > 9:
            raise InputError(f"--probe-every {it!r}: write SUITE=K, e.g. perplexity=5")
        out[suite] = int(k)
    return out


def run(args) -> int:
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    if bool(args.stream) == bool(args.resume):
        raise InputError("give either a STREAM file to replay or --resume RUN")
    if args.resume:
        with open_ledger(args, create=False) as led:
            run_id = find_run(led, args.resume)
            led.acquire_run(run_id)          # refused at once while another replay writes it (before the model loads)
            try:
                r = led.run(run_id)
                opts = ReplayOptions.from_config((r.config or {}).get("options", {}))
                session = Session.for_run(led, run_id, device=args.device)
                Replayer(session, opts).resume(run_id)
            except BaseException:
                led.release_run(run_id)
                raise
            _summary(led, run_id)
        return 0
    from simulator.streams import load_stream
    stream = load_stream(args.stream)            # validated completely before anything is written
    opts = ReplayOptions(method=args.method.lower(), hparams_file=args.hparams, seed=args.seed,
                         stop_when=list(args.stop_when), keyframe_every=args.keyframe_every,
                         probe_every=_probe_every(args.probe_every), stats_corpus=args.stats_corpus,
                         stats_tokens=args.stats_tokens, general=args.general, protocol=args.protocol,
                         general_n=args.general_n, general_seed=args.general_seed)
    opts.validate()                              # before the model loads and before the ledger is touched
    from simulator.editors import get_editor, load_hparams
    from simulator.models.specs import SPECS
    get_editor(opts.method)                      # an unknown method, bad hyper-parameters: refused before the
    load_hparams(opts.method, SPECS.get(args.model.strip().lower()), opts.hparams_file)   # base model is registered
    with open_ledger(args) as led:
        session = Session.open(led, args.model, device=args.device)
        replayer = Replayer(session, opts)
        run_id = replayer.start(stream.steps, stream_name=stream.name, stream_digest=stream.digest,
                                stream_kind=stream.kind, name=args.name,
                                extra_config={"stream_path": str(args.stream)})
        _summary(led, run_id)
    return 0


def _summary(led, run_id: int) -> None:
    r = led.run(run_id)
    print(f"run {run_id}: {r.status}, {r.step_count} steps, head version {r.head_version_id}"
          + (f" — {printable(r.note)}" if r.note else ""), file=sys.stderr)
    print(f"browse it: editledger tui {run_id}    tables: editledger report {run_id}", file=sys.stderr)
