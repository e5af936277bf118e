"""Replay: run a stream against a model step by step — editor → session.apply → probes →
session.commit (one ledger transaction per step).

The replay never touches weights or method state itself: the session owns them. Any method of the
editor registry runs the same way; the second-moment statistics an editor declares
(``Editor.stats_layers``) are collected before the first edit.

Determinism: every step seeds torch from (run seed, step number) before the editor runs, so the
same stream, method, model and seed give the same fingerprints, and a resumed replay ends where an
uninterrupted one would. The stream itself is stored in the run's config, so ``resume`` needs only
the ledger and the model.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from ledger.errors import InputError
from ledger.history import reset
from ledger.values import preferred_value
from simulator.editors import get_editor, load_hparams
from simulator.probes import GeneralSets, ProbeConfig, ProbeRunner
from simulator.requests import Step
from simulator.session import Session
from simulator.stats_ledger import ledger_stats_provider
from simulator.stopping import StopCondition
from simulator.telemetry import HealthMonitor

RESUMABLE = ("running", "interrupted", "failed")
PROBE_STATE = "_probe_state"    # diagnostics key: the probes' comparison state after the step (for resume)


@dataclass
class ReplayOptions:
    method: str = "rome"                      # editor name (simulator.editors.method_names())
    hparams_file: str | None = None           # JSON file of hyper-parameters (overrides the spec's defaults)
    hparams: dict = field(default_factory=dict)   # further overrides, e.g. {"layers": [4]}
    seed: int = 0                             # seeds every step: torch.manual_seed(seed * 1_000_003 + step)
    keyframe_every: int = 8                   # full copy of touched tensors every K steps (0 = never)
    stop_when: list[str] = field(default_factory=list)   # e.g. ["ppl>1.5x"]; see simulator/stopping.py
    probe_every: dict[str, int] = field(default_factory=dict)  # suite -> every k steps (0 = only at the end)
    stats_corpus: str = "self"                # "self" (text sampled from the model), "wikitext", or a file path
    stats_tokens: int | None = None           # tokens for second-moment statistics (None: the method's default)
    general: str = "builtin"                  # general-ability sets: "builtin" (all), "loglik" (no generation), "none"
    progress: bool = True

    def to_config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, d: dict) -> "ReplayOptions":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def seed_step(seed: int, step: int) -> None:
    s = seed * 1_000_003 + step
    torch.manual_seed(s)
    random.seed(s)


class Replayer:
    """Runs streams on a session. One instance per process; ``on_step`` is called after every
    committed step (the demo prints its table from it)."""

    def __init__(self, session: Session, options: ReplayOptions, on_step=None):
        self.s, self.opt, self.on_step = session, options, on_step
        lm = session.lm
        self.editor = get_editor(options.method)          # unknown method: InputError naming the known ones
        self.hparams = load_hparams(options.method, lm.spec, options.hparams_file, options.hparams)
        cfg = ProbeConfig(every=dict(options.probe_every)) if options.probe_every else ProbeConfig()
        # probes see the model through the session's view: the method's runtime included
        self.probes = ProbeRunner(session.view, config=cfg, general=_general_sets(options.general),
                                  progress=options.progress)
        self.stops = [StopCondition.parse(t) for t in options.stop_when]
        self.stats_layers = self.editor.stats_layers(self.hparams)
        self.stats = None
        if self.stats_layers:
            self.stats = ledger_stats_provider(session, options.stats_corpus, options.stats_tokens,
                                               options.progress,
                                               default_tokens=int(getattr(self.hparams, "mom2_n_samples", 4096)))
        self.timing = {"edit_s": 0.0, "probe_s": 0.0, "record_s": 0.0, "reference_s": 0.0}

    # ---- entry points ------------------------------------------------------------------------
    def start(self, steps: list[Step], *, stream_name: str, stream_digest: str, stream_kind: str,
              name: str | None = None, start_version_id: int | None = None, first_step: int = 1,
              extra_config: dict | None = None) -> int:
        """Begin a new run from ``start_version_id`` (default: the base version) and replay it."""
        if not steps:
            raise InputError(f"stream {stream_name} has no steps: nothing to replay")
        led = self.s.ledger
        start = start_version_id or self.s.base_version_id
        reference = self._reference(steps, start)
        self._prepare_stats()       # before the run exists: an interrupted collection leaves no empty run
        config = {"model": self.s.model_ref or self.s.lm.spec.name, "options": self.opt.to_config(),
                  "stream": [st.to_dict() for st in steps], "first_step": first_step,
                  "reference": reference, "stop_when": list(self.opt.stop_when),
                  **(extra_config or {})}
        run = led.begin_run(base_model_id=self.s.base_model_id, method=self.opt.method,
                            hparams=_as_dict(self.hparams), stream_name=stream_name,
                            stream_digest=stream_digest, stream_kind=stream_kind, config=config,
                            parent_version_id=start, name=name)
        head = start
        if start != self.s.base_version_id:     # a branch: its first version marks where it leaves
            origin = led.version(start)
            head = led.add_marker(run.id, kind="branch", parent_version_id=start, step=first_step - 1,
                                  tensor_fingerprints=dict(origin.tensor_fingerprints or {}),
                                  note=f"branch from run {origin.run_id} step {origin.step}").id
            self.s.checkout(head)
        return self._replay(run.id, steps, first_step, head, reference, previous=None, index=0)

    def resume(self, run_id: int) -> int:
        led = self.s.ledger
        run = led.run(run_id)
        if run.status not in RESUMABLE:
            raise InputError(f"run {run_id} is {run.status}; only a run that is running, interrupted or "
                             "failed can be resumed (start a new one with `editledger replay`)")
        cfg = run.config or {}
        steps = [Step.from_dict(d) for d in cfg["stream"]]
        first = int(cfg.get("first_step", 1))
        done = led.last_committed_step(run_id)
        index = max(0, done - first + 1)            # steps already committed
        head = run.head_version_id
        self._prepare_stats()                       # before the first edit, on the base weights
        self.s.checkout(head)                       # verified: weights and state are the committed ones
        # the comparison state the last committed step left (stored with it, so nothing is re-measured)
        previous = (led.version(head).diagnostics or {}).get(PROBE_STATE) if index > 0 else None
        led.set_run_status(run_id, "running", note=f"resumed after step {done}")
        return self._replay(run_id, steps, first, head, cfg["reference"], previous, index)

    def _prepare_stats(self) -> None:
        """Collect (or find) the second-moment statistics the editor declared, on the base weights,
        before the first edit, so that their cost is visible on its own and never mixes with an edit's."""
        if self.stats is None:
            return
        t = time.perf_counter()
        self.s.prepare_statistics(self.stats, self.stats_layers)
        self.timing["stats_s"] = self.timing.get("stats_s", 0.0) + time.perf_counter() - t

    # ---- the loop ------------------------------------------------------------------------------
    def _reference(self, steps: list[Step], start_version_id: int) -> dict:
        """Score what later comparisons need, on the *base* weights (rule 5: measure against the base)."""
        t = time.perf_counter()
        here = self.s.current_version_id
        if here != self.s.base_version_id:
            self.s.checkout(self.s.base_version_id)
        ref = self.probes.reference(steps)
        if start_version_id != self.s.current_version_id:
            self.s.checkout(start_version_id)
        self.timing["reference_s"] += time.perf_counter() - t
        return ref

    def _replay(self, run_id: int, steps: list[Step], first_step: int, head: int, reference: dict,
                previous: dict | None, index: int) -> int:
        led, s = self.s.ledger, self.s
        base_values = _base_values(reference)
        bar = tqdm(total=len(steps), initial=index, desc=f"run {run_id}", unit="edit",
                   disable=not self.opt.progress, leave=True, dynamic_ncols=True)
        health = HealthMonitor(s, run_id, head)     # per-step health telemetry (suite "health")
        try:
            for i in range(index, len(steps)):
                step, stepno = steps[i], first_step + i
                req = step.requests[0]
                bar.set_postfix_str(f"{req.subject}: {(req.target_old or '?').strip()} → {req.target_new.strip()}")
                seed_step(self.opt.seed, stepno)
                t0 = time.perf_counter()
                lm = s.lm
                result = self.editor.edit(lm.model, lm.tokenizer, lm.spec, step.requests, self.hparams,
                                          stats=self.stats, state=s.state(self.opt.method) if self.editor.state else None)
                s.apply(self.opt.method, result)
                t1 = time.perf_counter()
                records, state = self.probes.measure(step_index=i + 1, steps=steps, reference=reference,
                                                     previous=previous, final=(i == len(steps) - 1))
                records += health.step(result)      # health telemetry: norms, κ, solve, perplexity proxy
                t2 = time.perf_counter()
                diag = dict(result.diagnostics)
                diag["timing_s"] = {"edit": round(t1 - t0, 4), "probes": round(t2 - t1, 4)}
                diag[PROBE_STATE] = state
                version = s.commit(
                    run_id, step=stepno, parent_version_id=head, requests=[r.to_dict() for r in step.requests],
                    diagnostics=diag, wall_time_s=t2 - t0, probes=records,
                    keyframe=bool(self.opt.keyframe_every) and stepno % self.opt.keyframe_every == 0,
                    group=step.group, role=step.role)
                t3 = time.perf_counter()
                self.timing["edit_s"] += t1 - t0
                self.timing["probe_s"] += t2 - t1
                self.timing["record_s"] += t3 - t2
                head, previous = version.id, state
                eff = preferred_value(records, "rewrite", "efficacy_top1")
                bar.set_postfix_str(f"{req.subject} → {req.target_new.strip()}  efficacy "
                                    f"{'?' if eff is None else f'{eff:.2f}'}")
                bar.update(1)
                if self.on_step:
                    self.on_step(stepno, step, records, version)
                hit = next((c for c in self.stops
                            if c.triggered(preferred_value(records, c.suite, c.metric),
                                           base_values.get((c.suite, c.metric)))), None)
                if hit:
                    self._stop(run_id, hit, version, stepno, records, base_values)
                    return run_id
        except KeyboardInterrupt:
            led.set_run_status(run_id, "interrupted", note=f"interrupted after step {led.last_committed_step(run_id)}")
            raise
        except BaseException as e:
            led.set_run_status(run_id, "failed", note=f"{type(e).__name__}: {e}"[:500])
            raise
        finally:
            bar.close()
        led.set_run_status(run_id, "done")
        return run_id

    def _stop(self, run_id, cond: StopCondition, version, stepno, records, base_values) -> None:
        """Record the condition, roll the head back to the last good version, stop the run."""
        led = self.s.ledger
        value = preferred_value(records, cond.suite, cond.metric)
        limit = cond.limit(base_values.get((cond.suite, cond.metric)))
        good = version.parent_id
        good_step = led.version(good).step
        reset(led, run_id, to_step=good_step,
              note=f"stop condition {cond.text!r} met at step {stepno} ({cond.suite}.{cond.metric}="
                   f"{value:.4g}, limit {limit:.4g}); rolled back to step {good_step}")
        self.s.checkout(led.run(run_id).head_version_id)
        led.set_run_status(run_id, "stopped", note=f"{cond.text} at step {stepno}; head reset to step {good_step}")


def _base_values(reference: dict) -> dict[tuple[str, str], float]:
    """Base-model values of run-level metrics (perplexity, downstream) if the probes put them in the
    reference under "base_metrics": {"suite.metric": value}."""
    out = {}
    for k, v in (reference or {}).get("base_metrics", {}).items():
        suite, metric = k.split(".", 1)
        out[(suite, metric)] = float(v)
    return out


def _general_sets(name: str):
    if name == "none":
        return None
    if name == "builtin":
        return GeneralSets.builtin()
    if name == "loglik":      # the built-in sets that need no generation: perplexity, sentiment, PIQA
        b = GeneralSets.builtin()
        return GeneralSets(text=b.text, sentiment=b.sentiment, piqa=b.piqa)
    raise InputError(f"unknown general-ability set {name!r}: use 'builtin', 'loglik' or 'none'")


def _as_dict(hparams) -> dict:
    if hasattr(hparams, "__dataclass_fields__"):
        return asdict(hparams)
    return dict(hparams)
