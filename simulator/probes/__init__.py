"""Probes: batched scoring of a model version, the survey's pitfall metrics, general abilities.

``ProbeRunner`` (runner.py) is what the replay engine calls; ``scoring.py`` holds the model code,
``metrics.py`` the pure metric arithmetic, ``general.py`` the general-ability sets.
"""
from .general import GeneralSets
from .runner import DERIVED_SUITES, GROUP_SUITES, STEP_SUITES, ProbeConfig, ProbeRunner

__all__ = ["ProbeConfig", "ProbeRunner", "GeneralSets", "STEP_SUITES", "GROUP_SUITES", "DERIVED_SUITES"]
