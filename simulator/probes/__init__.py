"""Probes: what a version of the model is measured on, and how.

    schedule.py   when each suite is due (ProbeConfig)
    items.py      the (prompt, target) pairs of an item, their keys, the JSON form of a score
    suites/       the suite registry (SUITES): per-step and per-group record builders
    general/      general abilities: the sets (built-in and real), the tasks, their records
    runner.py     ProbeRunner: reference(), measure(); records_from_state()
    recompute.py  every metric again from the raw scores the ledger kept
    metrics.py    the arithmetic, one function per reference formula
    scoring.py    the model code (torch)
"""
from .general import GeneralSets, general_sets
from .runner import STATE_KEY, ProbeRunner, records_from_state
from .schedule import EXPENSIVE, ProbeConfig
from .suites import HEAD, SUITES

__all__ = ["EXPENSIVE", "GeneralSets", "HEAD", "ProbeConfig", "ProbeRunner", "STATE_KEY", "SUITES",
           "general_sets", "records_from_state"]
