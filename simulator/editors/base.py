"""The editor contract: what every editing method declares and implements.

An editor is a class with a few declarations and one pure function:

    @register_editor
    class ROMEEditor(Editor):
        name = "rome"                         # the method's name on the CLI and in the ledger
        hparams_class = ROMEHyperParams       # a dataclass, resolved once by ``load_hparams``
        changes_weights = True                # it returns weight deltas
        state = None                          # what method state it carries (None: none)

        def stats_layers(self, hp): return [hp.layer]     # second-moment statistics it needs
        def edit(self, model, tokenizer, spec, requests, hp, *, stats=None, state=None,
                 progress=False) -> EditResult: ...

``edit`` never writes to the model and keeps nothing between calls: it returns weight deltas and,
for a stateful method, a ``StateDelta`` (what this step adds to the method's state). The session
applies both. A version is base weights + weight deltas + method state, and the method state of a
version is the fold of its lineage's state deltas, in order, from ``empty_state()``:

    state = editor.empty_state()
    for delta in lineage_state_deltas:  state = editor.fold(state, delta)

so "revert step k" and "the head without step k" are the same fold without step k's delta. A
stateful method also says how the model answers through its state (``runtime``: hooks, a prompt
context) and gives the state a canonical form (``snapshot``) that is fingerprinted and exported.
"""
from __future__ import annotations

from typing import Any, ClassVar

from ledger.errors import InputError
from simulator.deltas import STATE_META_KEY, EditResult, StateDelta
from simulator.runtime import MethodRuntime

STATE_SLOT_PREFIX = "@"                   # a state's name in the ledger: "@" + method name


def state_slot(method: str) -> str:
    """The ledger's name for a method's state (where a weight delta names its tensor)."""
    return STATE_SLOT_PREFIX + method


def is_state_slot(name: str) -> bool:
    return name.startswith(STATE_SLOT_PREFIX)


class Editor:
    """Base class of every editing method; see the module docstring for the contract."""
    name: ClassVar[str]
    hparams_class: ClassVar[type]
    changes_weights: ClassVar[bool] = True
    state: ClassVar[str | None] = None       # in words, e.g. "codebook of keys, values and radii"
    # The ledger the session records into (set by the replay), for an editor that reads artifacts
    # from it, e.g. MEND's trained network; None when an editor is used on its own.
    ledger: Any = None

    # ---- what every method implements
    def stats_layers(self, hparams: Any) -> list[int]:
        """Layers whose second-moment statistics ``edit`` reads (collected before the first edit)."""
        return []

    def edit(self, model, tokenizer, spec, requests: list, hparams: Any, *, stats: Any = None,
             state: Any = None, progress: bool = False) -> EditResult:
        raise NotImplementedError

    # ---- what a stateful method implements (``state`` is not None)
    def empty_state(self) -> Any:
        """The state of the base model (before any step)."""
        raise NotImplementedError(f"{self.name} carries no method state")

    def fold(self, state: Any, delta: StateDelta) -> Any:
        """The state after one more step's delta. Deterministic; may reuse ``state``'s storage (the
        caller never uses the old state again). A delta that refers to something a revert removed
        (an entry of a reverted step) is skipped, so any sub-sequence of steps folds."""
        raise NotImplementedError(f"{self.name} carries no method state")

    def snapshot(self, state: Any) -> StateDelta:
        """The whole state in canonical form: fingerprinted after every step and exported."""
        raise NotImplementedError(f"{self.name} carries no method state")

    def runtime(self, model, tokenizer, spec, state: Any) -> MethodRuntime:
        """How the model answers through ``state`` (hooks and/or a prompt context)."""
        raise NotImplementedError(f"{self.name} carries no method state")

    def state_fingerprint(self, state: Any) -> str:
        return self.snapshot(state).fingerprint()

    # ---- export of a stateful version
    def export_readme(self) -> str:
        """How to use an exported state outside editledger (the export writes it beside the weights)."""
        return (f"`{self.name}` keeps its edits outside the weights ({self.state}). The file "
                f"`method_state/{self.name}.safetensors` holds the state; its header key "
                f"`{STATE_META_KEY}` holds the JSON part. editledger rebuilds the model's answers from it with "
                f"`simulator.editors.get_editor('{self.name}').runtime(model, tokenizer, spec, state)`.")


_REGISTRY: dict[str, type[Editor]] = {}


def register_editor(cls: type[Editor]) -> type[Editor]:
    """Class decorator: make ``cls`` known by ``cls.name`` (each editor module decorates its class)."""
    for attr in ("name", "hparams_class"):
        if not hasattr(cls, attr):
            raise TypeError(f"editor {cls.__name__} must declare `{attr}`")
    key = cls.name.lower()
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise TypeError(f"two editors are named {key!r}: {_REGISTRY[key].__name__} and {cls.__name__}")
    _REGISTRY[key] = cls
    return cls


def registered() -> dict[str, type[Editor]]:
    return dict(_REGISTRY)


def editor_class(method: str) -> type[Editor]:
    key = (method or "").lower()
    if key not in _REGISTRY:
        raise InputError(f"unknown editing method {method!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]
