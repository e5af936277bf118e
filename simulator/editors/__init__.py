"""Editors: every editing method behind one contract (``simulator.editors.base.Editor``).

    from simulator.editors import get_editor, load_hparams
    hp = load_hparams("rome", lm.spec)
    result = get_editor("rome").edit(lm.model, lm.tokenizer, lm.spec, [request], hp, stats=provider)
    # result.deltas: weight deltas; result.state: a stateful method's StateDelta. The model is untouched.

The registry is derived from the editor classes: an editor module decorates its class with
``@register_editor``, and importing the module (the line below) makes the method known. Adding a
method is one new module and its name on that line.
"""
from __future__ import annotations

from simulator.editors import (  # noqa: F401  (importing an editor module registers it)
    alphaedit, ft, grace, ike, kn, memit, mend, rome, rrome, serac)
from simulator.editors.base import Editor, StateDelta, editor_class, register_editor, registered
from simulator.editors.ft import FTHyperParams
from simulator.editors.hparams import hparams_to_dict, load_hparams
from simulator.editors.memit import MEMITHyperParams
from simulator.editors.rome import ROMEHyperParams


def method_names() -> list[str]:
    return sorted(registered())


def get_editor(method: str) -> Editor:
    """An instance of the method's editor (InputError naming the known methods otherwise)."""
    return editor_class(method)()


__all__ = ["Editor", "FTHyperParams", "MEMITHyperParams", "ROMEHyperParams", "StateDelta", "editor_class",
           "get_editor", "hparams_to_dict", "load_hparams", "method_names", "register_editor", "registered"]
