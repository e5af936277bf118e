"""The suite registry: every probe suite, per-step or per-group, and the one function that turns
its scored items into records. A new metric goes here: a builder in single.py (a step's own items)
or cases.py (a group of steps), and one line in ``SUITES``.

    scope "step"   build(ctx, suite, step_index)   after the step's edit, when the schedule says so
    scope "group"  build(ctx, label, groups)       when a group's last step is applied (label: the
                                                   suite name) and at the head (label: suite@head);
                                                   its items are also scored after the group's first
                                                   step, the intermediate model theta_m
    scope "items"  no builder: items another suite reads (``reads_into`` names it)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import cases, single
from .context import Ctx, group_of
from .retention import retention

HEAD = "@head"      # suite label of group metrics measured at the head of a run


@dataclass(frozen=True)
class Suite:
    name: str
    scope: str                          # "step" | "group" | "items"
    build: Callable | None = None
    nkl: bool = False                   # its targets also need the next-token distribution (NKL)
    reads_into: str | None = None       # for scope "items": the group suite that reads them


SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("rewrite", "step", single.rewrite),
    Suite("paraphrase", "step", single.paraphrase),
    Suite("neighborhood", "step", single.neighborhood, nkl=True),
    Suite("attribute", "step", single.locality_like("oa")),
    Suite("distract", "step", single.locality_like("dn")),
    Suite("portability_sr", "step", single.portability),
    Suite("portability_rr", "step", single.portability),
    Suite("portability_oh", "step", single.portability),
    Suite("other_task", "step", single.other_task),
    Suite("multihop", "group", cases.multihop),
    Suite("conflict", "group", cases.conflict),
    Suite("tied_fact", "items", reads_into="conflict"),
    Suite("round", "group", cases.round_trip),
]}
GENERIC = Suite("generic", "step", single.generic)     # a step suite nobody registered: top-1 accuracy


def suite(name: str) -> Suite:
    return SUITES.get(name, GENERIC)


def group_suites() -> list[str]:
    return [n for n, s in SUITES.items() if s.scope == "group"]


def case_suites() -> list[str]:
    """Suites whose items belong to a group of steps (group suites and the items they read)."""
    return [n for n, s in SUITES.items() if s.scope in ("group", "items")]


__all__ = ["Ctx", "HEAD", "SUITES", "GENERIC", "Suite", "suite", "group_suites", "case_suites", "group_of",
           "retention"]
