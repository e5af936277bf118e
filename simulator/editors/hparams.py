"""Hyper-parameters: resolved once, in one place, for every method.

Each editor declares a dataclass (``Editor.hparams_class``) with every default commented. The values
a run uses are that dataclass's defaults, then the model spec's overrides (``spec.hparams[method]``),
then a JSON file, then explicit overrides (later wins). Unknown names and values of the wrong type
are refused with a message naming the field, so a typo never falls back to a default silently.
"""
from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import asdict, field, fields
from pathlib import Path
from typing import Any

from ledger.errors import InputError
from simulator.editors.base import editor_class

# Prefixes put in front of the edit prompt so that the key and the new value hold in many contexts
# (ROME samples them from the model; fixed text keeps an edit a pure, replayable function of its inputs).
DEFAULT_CONTEXT_PREFIXES = [
    "", "The following is true. ", "I read this in the news. ", "Here is a short fact. ",
    "In other words, ", "According to the book, ",
]


def load_hparams(method: str, spec: Any = None, path: str | None = None, overrides: dict | None = None):
    """The method's hyper-parameters: defaults < ``spec.hparams[method]`` < JSON file < ``overrides``."""
    cls = editor_class(method).hparams_class
    m = method.lower()
    values: dict[str, Any] = {}
    if spec is not None:
        values.update(spec.hparams.get(m, {}))
    if path is not None:
        values.update(_read_file(Path(path)))
    values.update(overrides or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown {m} hyper-parameters {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        _check_type(m, name, value, hints[name])
    hp = cls(**values)
    _check_layers(m, hp, spec)
    for f in fields(cls):
        low = f.metadata.get("min")
        v = getattr(hp, f.name)
        if low is not None and isinstance(v, (int, float)) and v < low:
            raise InputError(f"{m} hyper-parameter {f.name!r} must be >= {low}, got {v!r}")
    return hp


def _check_layers(method: str, hp: Any, spec: Any) -> None:
    """Layer indices inside the model (when the spec knows its depth)."""
    n = int(getattr(spec, "n_layers", 0) or 0)
    for name in ("layer", "layers"):
        if not hasattr(hp, name):
            continue
        val = getattr(hp, name)
        layers = list(val) if isinstance(val, (list, tuple)) else [val]
        if name == "layers" and not layers:
            raise InputError(f"{method} hyper-parameter 'layers' is empty; name at least one layer")
        bad = [x for x in layers if x < 0 or (n and x >= n)]
        if bad:
            raise InputError(f"{method} hyper-parameter {name!r}: layer(s) {bad} outside the model"
                             + (f" (it has layers 0..{n - 1})" if n else " (layers count from 0)"))


def _read_file(p: Path) -> dict:
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"hyper-parameter file {p} not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read hyper-parameter file {p} ({e.__class__.__name__}); give a JSON file") from None
    except json.JSONDecodeError as e:
        raise InputError(f"hyper-parameter file {p} is not valid JSON ({e}); fix it or drop --hparams") from None
    except ValueError as e:   # e.g. an integer of more than 4,300 digits: Python refuses to convert it
        raise InputError(f"hyper-parameter file {p} cannot be read ({str(e)[:100]}); fix it or drop --hparams") from None
    except RecursionError:
        raise InputError(f"hyper-parameter file {p} is nested too deeply to be a hyper-parameter file") from None
    if not isinstance(data, dict):
        raise InputError(f"hyper-parameter file {p} must hold a JSON object of name: value")
    return data


def _type_name(t) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _matches(value: Any, t) -> bool:
    origin = typing.get_origin(t)
    if t is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(t))
    if t is type(None):
        return value is None
    if t is bool:
        return isinstance(value, bool)
    if t is int:   # and it fits the 64-bit integers torch and the databases hold
        return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if t is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = typing.get_args(t)
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, t) if isinstance(t, type) else True


def _check_type(method: str, name: str, value: Any, t) -> None:
    if not _matches(value, t):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise InputError(f"{method} hyper-parameter {name!r} must be {_type_name(t)}, got {shown} "
                         f"({type(value).__name__})")


def at_least(low: float, default: Any):
    """A dataclass field with a lower bound that ``load_hparams`` checks."""
    return field(default=default, metadata={"min": low})


def hparams_to_dict(hp: Any) -> dict[str, Any]:
    """JSON-serialisable form, for the ledger."""
    return asdict(hp)
