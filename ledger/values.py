"""Reading a probe value: which stored comparison wins.

A metric can be stored several times at one version: as a plain value (``against="none"``), as a
comparison with the base model (``"base"``) and with the previous version (``"previous"``). Some
metrics only exist as a comparison (NKL against the base, CM against the intermediate model).
Whoever reads "the value of suite.metric at this version" (the replay's stop conditions, the
audit, the report, the TUI's timeline and trajectories) uses this one rule: the plain value
first, then the comparison with the base, then the one with the previous version.
"""
from __future__ import annotations

from typing import Any, Iterable

AGAINST_ORDER = ("none", "base", "previous")
_RANK = {a: i for i, a in enumerate(AGAINST_ORDER)}


def against_rank(against: str) -> int:
    """Position of a reference in the preference order (unknown references come last)."""
    return _RANK.get(against, len(AGAINST_ORDER))


def preferred(rows: Iterable[Any], suite: str, metric: str) -> Any | None:
    """The row (anything with ``suite``, ``metric``, ``against``) that stands for ``suite.metric``,
    or None when there is none. Ties keep the first row."""
    best, rank = None, len(AGAINST_ORDER) + 1
    for r in rows:
        if r.suite == suite and r.metric == metric:
            k = against_rank(r.against)
            if k < rank:
                best, rank = r, k
    return best


def preferred_value(rows: Iterable[Any], suite: str, metric: str) -> float | None:
    """``preferred(...).value`` as a float, or None."""
    r = preferred(rows, suite, metric)
    return None if r is None else float(r.value)
