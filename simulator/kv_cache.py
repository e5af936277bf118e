"""The key-value cache argument of a transformers forward pass, under the name this version uses.

transformers 5.2x renamed ``past_key_values`` to ``cache`` (in and out; the old name is deprecated and goes
in 5.40); the project supports versions on both sides, so callers ask here instead of naming it."""
from __future__ import annotations

import inspect


def cache_kwarg(model) -> str:
    """The forward keyword of the key-value cache: ``cache`` where the model takes it, else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out):
    """The key-value cache a forward pass returned, under either name."""
    c = getattr(out, "cache", None)
    return c if c is not None else out.past_key_values
