"""Probe items as the scorer sees them: which (prompt, target) pairs an item needs, their keys, and
the JSON form of a score.

A key is ``"{step}/{suite}/{item}/{variant}"``: variant ``t`` the target, ``a`` the alt, ``x{j}`` the
j-th further answer (an alias), ``c{j}`` the j-th choice. A score's JSON form is
``{"lp": [token log-probs], "ids": [token ids], "am": [argmax ids], "dist": {...}?}``
(``TargetScore.to_json``): the raw numbers every metric is computed from, kept in the ledger.
"""
from __future__ import annotations

import math

from simulator.requests import ProbeItem, Step

# suites whose items are scored as a set of choices (c{j}) rather than a target/alt pair
CHOICE_SUITES = ("other_task",)


def key(step: int, suite: str, i: int, variant: str) -> str:
    return f"{step}/{suite}/{i}/{variant}"


def step_of(k: str) -> int:
    return int(k.split("/", 1)[0])


def variants(suite: str, item: ProbeItem) -> list[tuple[str, str]]:
    """(variant, target) pairs to score for one item of ``suite``."""
    if item.choices and (suite in CHOICE_SUITES or suite == "round"):
        out = [(f"c{j}", c) for j, c in enumerate(item.choices)]
        if suite == "round":                 # the intermediate object o*, not in Obj
            alt = item.alt or item.meta.get("o_star")
            if alt is not None:
                out.append(("a", alt))
        return out
    out = [("t", item.target)]
    if item.alt is not None:
        out.append(("a", item.alt))
    if suite == "multihop":
        out += [(f"x{j}", a) for j, a in enumerate(item.answers)]
    return out


def step_pairs(steps: list[Step], idx: int, suites, out: dict[str, tuple[str, str]]) -> None:
    """Add the pairs of step ``idx``'s items of the given suites to ``out`` (key -> (prompt, target))."""
    for suite, items in steps[idx - 1].probes.items():
        if suite in suites:
            for i, it in enumerate(items):
                for v, target in variants(suite, it):
                    out[key(idx, suite, i, v)] = (it.prompt, target)


# ----------------------------------------------------------------------------- a score's JSON form
def prob(s: dict) -> float:
    """Per-token geometric-mean probability exp(mean log-prob) (ROME's and Li et al.'s)."""
    return math.exp(sum(s["lp"]) / len(s["lp"]))


def logprob(s: dict) -> float:
    return float(sum(s["lp"]))


def top1(s: dict) -> bool:
    """The greedy continuation starts with the target: every target token is the argmax."""
    return all(a == b for a, b in zip(s["am"], s["ids"]))


def token_acc(s: dict) -> float:
    return sum(a == b for a, b in zip(s["am"], s["ids"])) / len(s["ids"])
