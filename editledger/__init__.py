"""editledger: every knowledge edit of a language model as a recorded, replayable, reversible transaction.

The Python API (docs/python.md walks through it):

    import editledger
    led = editledger.open("editledger.db")                 # a path or any SQLAlchemy URL
    run = led.replay(editledger.make_stream("sequential", n=10), model="tiny-gptj", method="rome")
    led.trajectory(run, "retention.efficacy_top1")          # pandas DataFrames
    led.checkout(f"{run}@3").generate("The Eiffel Tower is located in the city of")
    led.revert(run, 3); led.report(run).reliability; led.audit(run)

``help(editledger.open)``, ``help(editledger.EditLedger)`` and ``help`` on each method say the rest.

The names are loaded on first use (PEP 562): ``editledger --help`` imports this package for its CLI
(editledger/cli.py) and must not wait for the ledger, pandas or torch.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_API = {name: "editledger.api" for name in (
    "open", "EditLedger", "EditedModel", "Report", "Stream", "make_stream", "load_stream", "save_stream",
    "stream_from_requests", "stream_from_easyedit", "hparams_from_easyedit", "UserError", "InputError",
    "IntegrityError", "RunBusy", "SchemaError", "ResourceError")}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value            # later lookups skip this function
        return value
    raise AttributeError(f"module 'editledger' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
