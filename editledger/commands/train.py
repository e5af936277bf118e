"""`editledger train mend`: train the network a method edits with, and store it in the ledger."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ledger.errors import InputError

from .common import add_model_args, open_ledger


def register(sub) -> None:
    p = sub.add_parser("train", help="train the network a method edits with (MEND)",
                       description="Train a method's editor network on edit records and store it in the ledger.")
    tsub = p.add_subparsers(dest="train_method", metavar="METHOD")
    m = tsub.add_parser("mend", help="train MEND's gradient-transform network on ZsRE-format records",
                        description="Train MEND on ZsRE records in MEND's format (src, alt, rephrase, loc, loc_ans; "
                                    "e.g. ../shared/data/zsre/zsre_mend_train-1k.json). Progress is checkpointed: "
                                    "run the same command again to resume. The trained network is stored in the "
                                    "ledger and a hyper-parameter file naming it is written for `replay --hparams`.")
    m.add_argument("--model", default="gemma-3-270m", help="model the network edits (default: gemma-3-270m)")
    m.add_argument("--data", required=True, metavar="FILE", help="ZsRE training records (JSON list or JSON lines)")
    m.add_argument("--hparams", metavar="FILE", help="JSON file overriding MEND's hyper-parameters for this model")
    m.add_argument("--edits", type=int, default=None, metavar="N",
                   help="training budget in edits (default: the model's train_edits)")
    m.add_argument("-o", "--output", default=None, metavar="HPARAMS.json",
                   help="where to write the hyper-parameter file for replay (default: ./mend-<model>.json)")
    m.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    m.add_argument("--eval", type=int, default=20, metavar="N",
                   help="after training, edit N held-out records one at a time and report the edit success "
                        "(default 20; 0 = skip)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(m)
    m.set_defaults(func=run_mend)

    def no_method(_args) -> int:
        p.print_help()
        return 2
    p.set_defaults(func=no_method)


def run_mend(args) -> int:
    import torch  # deferred: `editledger --help` must not pay for torch

    from simulator.editors import load_hparams
    from simulator.editors.mend_train import MENDTrainer, checkpoint_path, frozen, load_records
    from simulator.models import load_model
    if args.edits is not None and args.edits < 1:
        raise InputError("--edits must be at least 1")
    records = load_records(args.data)              # checked before the model loads
    progress = not args.no_progress
    with open_ledger(args) as led:
        print(f"ledger: {led.url}", file=sys.stderr)
        lm = load_model(args.model, device=args.device, progress=progress)
        overrides = {"train_edits": args.edits} if args.edits is not None else {}
        hp = load_hparams("mend", lm.spec, args.hparams, overrides)
        torch.manual_seed(hp.seed)
        trainer = MENDTrainer(lm.model, lm.tokenizer, lm.spec, hp, records, lm.fingerprint)
        ckpt = checkpoint_path(led.home, trainer.key)
        if not args.restart and trainer.load(ckpt):
            print(f"resuming from {ckpt} at edit {trainer.stats.edits} of {hp.train_edits}", file=sys.stderr)
            if trainer.stats.edits > hp.train_edits:
                print(f"the checkpoint is past the budget: storing the network as trained for {trainer.stats.edits} "
                      "edits (--restart trains afresh)", file=sys.stderr)
        print(f"training MEND on {len(records)} records for {hp.train_edits} edits "
              f"({', '.join(t.tensor for t in trainer.net.targets)})", file=sys.stderr)
        t0 = time.perf_counter()
        stats = trainer.run(ckpt, progress=progress)
        wall = time.perf_counter() - t0
        meta = trainer.artifact_meta(wall)
        if args.eval > 0:
            t1 = time.perf_counter()
            with frozen(lm.model):
                meta["held_out"] = trainer.evaluate(trainer.held_out(args.eval), progress=progress)
            meta["held_out"]["wall_s"] = round(time.perf_counter() - t1, 1)
        digest = led.put_trained(method="mend", tensors=trainer.net.to_tensors(), meta=meta)
    out = Path(args.output or f"mend-{Path(args.model).name}.json")
    hp_file = {"network": digest, "network_ledger": led.url,
               **{f: getattr(hp, f) for f in ("layers", "modules", "rank", "n_hidden")}}
    out.write_text(json.dumps(hp_file, indent=2) + "\n")
    last = stats.history[-1] if stats.history else {}
    print(f"trained network {digest} ({stats.edits} edits, {stats.steps} optimiser steps, {wall:.0f} s this run); "
          f"last step: edit loss {last.get('l_edit', float('nan')):.3f}, locality KL {last.get('l_loc', float('nan')):.4f}, "
          f"rephrase success {last.get('success', float('nan')):.2f}", file=sys.stderr)
    if "held_out" in meta:
        h = meta["held_out"]
        seen = "never trained on" if hp.train_edits <= len(records) - h["records"] else "seen in training: the budget covers the file"
        print(f"held-out edits ({h['records']} records, {seen}): efficacy {h['efficacy_top1']:.2f}, "
              f"rephrase {h['generalization_top1']:.2f}, locality KL {h['locality_kl']:.4f}", file=sys.stderr)
    print(f"hyper-parameters written to {out}; edit with it:\n  editledger --db {args.db or led.url} replay STREAM "
          f"--model {args.model} --method mend --hparams {out}", file=sys.stderr)
    print(digest)
    return 0
