"""An end-to-end replay with the standard probes (``ReplayOptions()``: every suite, the built-in general
sets every 5 steps), then the audit of that run; per step, the probe pass against its edit; and which part
of a full probe pass costs what. The stream: sequential edits of the built-in facts (no data set needed)."""
from __future__ import annotations

import statistics
import time

from editledger.bench.figures import Figure, Section


class TimingScorer:
    """A Scorer that notes (what, pairs, seconds) of every call; the runner cannot tell it apart."""

    def __init__(self, scorer):
        self.inner, self.calls = scorer, []

    def _timed(self, what, n, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        self.calls.append((what, n, time.perf_counter() - t))
        return out

    def score(self, pairs, dists=None, desc="scoring"):
        return self._timed(_label(desc), len(pairs), self.inner.score, pairs, dists, desc=desc)

    def text_nll(self, text, **kw):
        return self._timed("perplexity", 1, self.inner.text_nll, text, **kw)

    def generate(self, prompts, **kw):
        return self._timed(kw.get("desc", "generate"), len(prompts), self.inner.generate, prompts, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _label(desc: str) -> str:
    return "item probes (every suite, one batched pass)" if desc.startswith("probes") else desc


def suite_pairs(steps, t: int) -> dict[str, list[tuple[str, str]]]:
    """The (prompt, target) pairs of step t's standard pass, by what they measure (a reconstruction of the
    runner's choice, to cost each part on its own)."""
    out: dict[str, list] = {}

    def add(name, items):
        for it in items:
            for tgt in ([*it.choices] if it.choices else [it.target, it.alt, *it.answers]):
                if tgt:
                    out.setdefault(name, []).append((it.prompt, tgt))

    for suite, items in steps[t - 1].probes.items():
        add(suite, items)
    if t < len(steps):
        for suite, items in steps[t].probes.items():
            add("lookahead (next step's items)", items)
    for j in range(1, t):
        add("retention (earlier rewrites)", steps[j - 1].probes.get("rewrite", []))
    return out


def bench_replay(quick: bool) -> Section:
    import tempfile
    from pathlib import Path

    from ledger import Ledger
    from simulator.audit import audit_run, verify
    from simulator.probes import ProbeRunner
    from simulator.probes.scoring import Scorer
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams.builtin import builtin_records
    from simulator.streams.make import make_stream

    n = 3 if quick else 40
    sec = Section("replay", f"End-to-end: a {n}-step ROME replay with the standard probes, then its audit")
    stream = make_stream("sequential", builtin_records(), n, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp, Ledger.open(str(Path(tmp) / "r.db")) as led:
        t = time.perf_counter()
        session = Session.open(led, "gemma-3-270m", progress=False)
        load_s = time.perf_counter() - t
        rep = Replayer(session, ReplayOptions(method="rome", progress=True))
        t = time.perf_counter()
        run_id = rep.start(stream.steps, stream_name=stream.name, stream_digest=stream.digest,
                           stream_kind=stream.kind, name="bench")
        replay_s = time.perf_counter() - t
        rows = [v for v in led.lineage(led.run(run_id).head_version_id) if v.step and (v.diagnostics or {}).get("timing_s")]
        edit = [v.diagnostics["timing_s"]["edit"] for v in rows]
        probe = [v.diagnostics["timing_s"]["probes"] for v in rows]
        sec.add(Figure("replay, total", "s", [replay_s], note=f"{n} steps; reference scores and statistics included"),
                Figure("edit per step", "s", edit),
                Figure("probe pass per step", "s", probe),
                Figure("probe pass / edit, per step", "x", [p / e for p, e in zip(probe, edit)], goal="<= 1"))
        t = time.perf_counter()
        findings = audit_run(led, run_id)
        sec.add(Figure("audit (ledger only)", "s", [time.perf_counter() - t], note=f"{len(findings)} findings"))
        t = time.perf_counter()
        verified = verify(session, run_id, findings[:3], progress=False)
        sec.add(Figure("audit --verify (3 suspects, counterfactual)", "s", [time.perf_counter() - t],
                       note=f"{len(verified[:3])} suspects re-measured"))
        # one full standard pass (every suite due) at the head, the runner's real batching, timed by part
        lm = session.lm
        timing = TimingScorer(Scorer(lm.model, lm.tokenizer, prefix=lm.spec.prompt_prefix, batch_size=16))
        runner = ProbeRunner(lm.model, lm.tokenizer, lm.spec, rep.probes.config, general=rep.probes.general,
                             scorer=timing)
        ref = led.run(run_id).config["reference"]
        t = time.perf_counter()
        runner.measure(step_index=n, steps=stream.steps, reference=ref, previous=None, final=True)
        full = time.perf_counter() - t
        parts = {}
        for what, npairs, s in timing.calls:
            p = parts.setdefault(what, {"calls": 0, "pairs": 0, "s": 0.0})
            p["calls"] += 1
            p["pairs"] += npairs
            p["s"] = round(p["s"] + s, 3)
        # the item probes, each suite on its own (they share batches in the real pass)
        mid = max(1, n // 2)
        per_suite = {}
        for name, pairs in suite_pairs(stream.steps, mid).items():
            t = time.perf_counter()
            timing.inner.score(pairs, desc=name)
            per_suite[name] = {"pairs": len(pairs), "s": round(time.perf_counter() - t, 3)}
        sec.info = {"steps": n, "load_s": round(load_s, 1), "timing": {k: round(v, 2) for k, v in rep.timing.items()},
                    "findings": len(findings), "full_pass_s": round(full, 2), "full_pass_parts": parts,
                    f"item_suites_at_step_{mid}_scored_alone": per_suite,
                    "probe_over_edit_median": round(statistics.median(p / e for p, e in zip(probe, edit)), 2)}
    return sec
