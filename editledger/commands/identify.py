"""`editledger identify DIR`: which ledger version a Hugging Face model directory holds."""
from __future__ import annotations

import json

from simulator.identify import describe, identify

from .common import add_model_args, open_ledger


def register(sub) -> None:
    p = sub.add_parser("identify", help="name the ledger version a model directory holds",
                       description="Fingerprint every tensor of DIR (an export from `editledger checkout RUN@STEP "
                                   "--export DIR`, or weights from elsewhere) and name the version whose recorded "
                                   "fingerprints it matches, or the nearest version and the tensors that differ. "
                                   "Exit code 0 for an exact match, 1 when only a nearest version is found.")
    p.add_argument("directory", metavar="DIR", help="a Hugging Face model directory with .safetensors weights")
    p.add_argument("--model", default=None, help="the base model, if it is not where the ledger's runs found it")
    p.add_argument("--json", action="store_true", help="print the identification as JSON")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    with open_ledger(args, create=False) as led:
        ident = identify(led, args.directory, model=args.model, device=args.device)
    if args.json:
        print(json.dumps(ident.to_dict(), indent=2))
    else:
        print("\n".join(describe(ident)))
    return 0 if ident.exact else 1
