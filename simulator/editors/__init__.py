"""Editors: pure functions (model, tokenizer, spec, requests, hparams, stats) -> EditResult.

    from simulator.editors import get_editor, load_hparams
    hp = load_hparams("rome", lm.spec)
    result = get_editor("rome").edit(lm.model, lm.tokenizer, lm.spec, [request], hp, stats=provider)
    # result.deltas: TensorDelta list (apply with simulator.deltas.apply_delta); the model is untouched.

An editor never writes to the model's parameters (tentative changes are forward hooks, removed before
it returns) and keeps no state between calls.
"""
from __future__ import annotations

from typing import Any, Protocol

from ledger.errors import InputError
from simulator.deltas import EditResult
from simulator.editors.hparams import (FTHyperParams, MEMITHyperParams, ROMEHyperParams, hparams_to_dict,
                                       load_hparams)


class Editor(Protocol):
    name: str

    def edit(self, model, tokenizer, spec, requests: list, hparams: Any = None, stats: Any = None,
             progress: bool = False) -> EditResult: ...


def _registry() -> dict[str, type]:
    from simulator.editors.ft import FTEditor
    from simulator.editors.memit import MEMITEditor
    from simulator.editors.rome import ROMEEditor
    return {"ft": FTEditor, "rome": ROMEEditor, "memit": MEMITEditor}


def method_names() -> list[str]:
    return list(_registry())


def get_editor(method: str) -> Editor:
    reg = _registry()
    key = method.lower()
    if key not in reg:
        raise InputError(f"unknown editing method {method!r}; known: {', '.join(reg)}")
    return reg[key]()


__all__ = ["Editor", "FTHyperParams", "MEMITHyperParams", "ROMEHyperParams", "get_editor", "hparams_to_dict",
           "load_hparams", "method_names"]
