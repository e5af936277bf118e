"""When each suite is measured: every k steps, and always at the end of a stream.

Group suites (conflict, round, multihop) are not scheduled: a case is measured when its last step
is applied (and its intermediate model after its first step), and every case again at the head.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ledger.errors import InputError

# measured on general-ability sets, not on a step's items
EXPENSIVE = ("perplexity", "downstream", "fluency", "other_task")


def default_every() -> dict[str, int]:
    """Every 5 steps for the general abilities; the Other Task (PIQA, a per-case column of Table 4)
    and everything else every step."""
    return {s: 5 for s in ("perplexity", "downstream", "fluency")}


@dataclass
class ProbeConfig:
    # suite -> every k steps (1 = each step, 0 = only at the end); a suite not named: every step
    every: dict[str, int] = field(default_factory=default_every)
    nkl_topk: int = 200            # NKL: the base's next-token distribution kept as its top-k tokens + rest mass
    lookahead: bool = True         # also score the next step's items (the "previous" of that step)

    def __post_init__(self) -> None:
        # a partial mapping overrides the defaults suite by suite
        self.every = {**default_every(), **dict(self.every)}
        for s, k in self.every.items():
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise InputError(f"probe schedule for {s!r} must be a whole number >= 0 "
                                 f"(every k steps, 0 = only at the end), got {k!r}")

    def due(self, suite: str, step_index: int, final: bool) -> bool:
        k = self.every.get(suite, 1)
        return final or (k > 0 and step_index % k == 0)
