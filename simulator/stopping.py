"""Stop conditions for a replay: ``--stop-when "ppl>1.5x"``.

Grammar: ``METRIC OP NUMBER[x]``. METRIC is ``suite.metric`` as recorded in the ledger, or one of
the short aliases below. OP is one of ``> >= < <=``. A trailing ``x`` makes the number relative to
the metric's value at the run's start (the base model): ``ppl>1.5x`` stops once perplexity exceeds
1.5 times the base perplexity. Several conditions may be given; any one stops the replay.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from ledger.errors import InputError

# Short names for the metrics people stop on most.
ALIASES = {
    "ppl": ("perplexity", "ppl"),
    "efficacy": ("rewrite", "efficacy_top1"),
    "ns": ("neighborhood", "ns"),
    "retention": ("retention", "efficacy_top1"),
}

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|>|<)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(x?)\s*$")


@dataclass(frozen=True)
class StopCondition:
    text: str          # as the user wrote it, recorded with the run
    suite: str
    metric: str
    op: str
    threshold: float
    relative: bool     # threshold is a multiple of the base value

    @classmethod
    def parse(cls, text: str) -> "StopCondition":
        m = _RE.match(text)
        if not m:
            raise InputError(f"cannot read stop condition {text!r}: write METRIC OP NUMBER[x], "
                             f"e.g. 'ppl>1.5x' or 'neighborhood.ns<0.8' (aliases: {', '.join(sorted(ALIASES))})")
        name, op, num, rel = m.groups()
        if name in ALIASES:
            suite, metric = ALIASES[name]
        elif "." in name:
            suite, metric = name.split(".", 1)
        else:
            raise InputError(f"unknown metric {name!r} in stop condition {text!r}: use suite.metric "
                             f"(as `editledger report` shows them) or one of {', '.join(sorted(ALIASES))}")
        return cls(text=text.strip(), suite=suite, metric=metric, op=op, threshold=float(num),
                   relative=bool(rel))

    def limit(self, base_value: float | None) -> float | None:
        if not self.relative:
            return self.threshold
        return None if base_value is None else self.threshold * base_value

    def triggered(self, value: float | None, base_value: float | None) -> bool:
        """True when ``value`` meets the condition. A metric not measured at this step never triggers."""
        lim = self.limit(base_value)
        if value is None or lim is None:
            return False
        return _OPS[self.op](value, lim)
