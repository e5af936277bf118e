"""Ledgers for the TUI's tests, snapshots and benchmark, written through the Ledger API.

* ``build_sample_ledger``: two runs of rank-1 edits on a tiny 8×6 tensor per layer, with probe
  records shaped like the real probe runner's (``simulator/probes/runner.py``): a plain value and
  its differences against the base and the previous version on the same prompts, perplexity
  every 4 steps, retention of the earlier edits with per-edit detail, the base model unprobed
  (its general-ability scores in the run's reference), keyframes every 4 steps. Run 1 has one
  failed edit, a step that makes the model forget an earlier edit, a step that hurts
  neighbourhood and perplexity, audit findings, a revert and a reset. The values are a seeded,
  plausible shape: they stand in for measurements only in these fixtures, never in a real run.
* ``build_big_ledger``: one run of 10,000 versions for the benchmark.
* ``dump_run`` / ``load_run``: a run's versions, requests and headline probes as JSON, so that
  the measurements of a real ``editledger demo`` (tests/data/demo-run.json) can be replayed into a
  ledger in a second (the demo itself takes minutes on the embedded model).

A fixed clock stamps the rows, so that rendered timestamps never change between runs.
"""
from __future__ import annotations

import contextlib
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

import ledger.api as ledger_api
from ledger import Ledger, history
from ledger.records import DeltaInput, ProbeRecord

FIXED_START = datetime(2026, 1, 5, 9, 0, 0)
DEMO_DUMP = Path(__file__).resolve().parent / "data" / "demo-run.json"

SUBJECTS = [("Eiffel Tower", "The {} is located in", " Paris", " Rome"),
            ("Danielle Darrieux", "The mother tongue of {} is", " French", " English"),
            ("Toko Yasuda", "{} plays the", " guitar", " piano"),
            ("Autonomous University of Madrid", "{} is located in the country of", " Spain", " Sweden"),
            ("Thomas Joannes Stieltjes", "{} was born in", " Zwolle", " Helsinki"),
            ("Apple A5", "{} was created by", " Apple", " Google"),
            ("Lyon", "{} is a twin city of", " Beirut", " Manila"),
            ("Honus Wagner", "{} professionally plays the sport of", " baseball", " football")]
BASE_PPL = 18.0
PPL_EVERY = 4
FAILED_STEP = 5          # run 1: this edit does not take
FORGET_STEP = 4          # run 1: this step makes the model lose step 2's edit
LAYERS = (1, 2)


@contextlib.contextmanager
def fixed_clock(start: datetime = FIXED_START, tick: timedelta = timedelta(seconds=30)) -> Iterator[None]:
    """Make the ledger stamp rows with a deterministic clock (start, start+tick, ...)."""
    state = {"t": start}
    original = ledger_api.utcnow

    def clock() -> datetime:
        state["t"] += tick
        return state["t"]
    ledger_api.utcnow = clock
    try:
        yield
    finally:
        ledger_api.utcnow = original


def _with_refs(suite: str, metric: str, now: float, base: float | None, prev: float | None, count: int,
               detail: Any = None) -> list[ProbeRecord]:
    """A plain value and its stored differences, as the probe runner's ``_with_deltas`` records them."""
    out = [ProbeRecord(suite, metric, now, count=count, detail=detail)]
    if base is not None:
        out.append(ProbeRecord(suite, metric, now - base, count=count, against="base",
                               detail={"reference_value": base, "current_value": now}))
    if prev is not None:
        out.append(ProbeRecord(suite, metric, now - prev, count=count, against="previous",
                               detail={"reference_value": prev, "current_value": now}))
    return out


class _Model:
    """The fixture's stand-in for what the probes would measure along run 1 (or a healthy run)."""

    def __init__(self, rng: random.Random, harm: bool, hurt_step: int) -> None:
        self.rng, self.harm, self.hurt_step = rng, harm, hurt_step
        self.held: dict[int, bool] = {}        # edit step -> held now
        self.ppl_last: float | None = BASE_PPL

    def ns(self, step: int, hurt: bool) -> float:
        return round(max(0.0, 0.92 - 0.012 * step - (0.15 if hurt else 0.0) + self.rng.uniform(-0.01, 0.01)), 4)

    def probes(self, step: int, subj: str, new: str, old: str) -> list[ProbeRecord]:
        harm = self.harm
        eff = 0.0 if harm and step == FAILED_STEP else 1.0
        p_new = 0.08 if eff == 0 else round(0.6 + 0.3 * self.rng.random(), 4)
        recs = _with_refs("rewrite", "efficacy_top1", eff, 0.0, 0.0, 1, detail=[
            {"prompt": f"{subj} …", "target": new, "p": p_new, "top1": eff == 1.0, "alt": old,
             "p_alt": round(0.7 if eff == 0 else 0.3 * (1 - p_new), 4)}])
        recs += _with_refs("paraphrase", "generalization_top1", round(eff * 0.5 + self.rng.uniform(0, 0.3), 4),
                           0.0, 0.0, 2)
        hurt_now = harm and step >= self.hurt_step
        hurt_before = harm and step - 1 >= self.hurt_step
        before = self.ns(step - 1, hurt_before)        # this step's neighbour prompts, before the step
        now = self.ns(step, hurt_now)
        recs += _with_refs("neighborhood", "ns", now, 0.95, before if step > 1 else None, 10)
        recs.append(ProbeRecord("neighborhood", "nkl", round(0.01 * step + self.rng.uniform(0, 0.005), 5),
                                count=10, against="base"))
        if step % PPL_EVERY == 0:
            ppl = round(BASE_PPL * (1 + 0.02 * step) + (9.0 if hurt_now else 0.0) + self.rng.uniform(-0.2, 0.2), 3)
            recs += _with_refs("perplexity", "ppl", ppl, BASE_PPL, self.ppl_last if step > PPL_EVERY else None, 64,
                               detail={"tokens": 64})
            self.ppl_last = ppl
        # retention of the earlier edits (the runner's rows: step, top1, p_new, at_edit, top1_previous)
        rows = []
        for j in sorted(self.held):
            was = self.held[j]
            lost_now = harm and step == FORGET_STEP and j == 2
            held = was and not lost_now
            rows.append({"step": j, "top1": 1.0 if held else 0.0, "p_new": 0.9 if held else 0.1,
                         "at_edit": 1.0 if (not harm or j != FAILED_STEP) else 0.0,
                         "top1_previous": 1.0 if was else 0.0})
            self.held[j] = held
        if rows:
            share = sum(r["top1"] for r in rows) / len(rows)
            recs.append(ProbeRecord("retention", "efficacy_top1", share, count=len(rows), detail=rows))
            recs.append(ProbeRecord("retention", "efficacy_top1",
                                    sum(r["top1"] - r["top1_previous"] for r in rows) / len(rows),
                                    count=len(rows), against="previous"))
            recs.append(ProbeRecord("retention", "forgetting",
                                    sum(r["at_edit"] - r["top1"] for r in rows) / len(rows), count=len(rows)))
        self.held[step] = eff == 1.0
        return recs


def build_sample_ledger(db: str, *, steps: int = 12, runs: int = 2, seed: int = 0,
                        with_history: bool = True, hurt_step: int = 7) -> dict:
    """A ledger at ``db`` (see the module docstring). Returns the ids:
    {"base": id, "runs": [{"id", "versions": [...], "weights": {tensor: W0 (torch, float32)}}],
    "revert": id, "reset": id}."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict = {"runs": []}
    with fixed_clock(), Ledger.open(db) as led:
        bm = led.register_base_model("tiny-gptj", "seeded random config", "f" * 64, {"n_layer": 4})
        out["base"] = led.base_version(bm.id).id
        weights0 = {f"transformer.h.{i}.mlp.fc_out.weight": torch.randn(8, 6, generator=gen) for i in LAYERS}
        for k in range(runs):
            method = ["ROME", "MEMIT", "FT"][k % 3]
            stream = []   # the stream as the replay stores it in the run config (Step.to_dict())
            for step in range(1, steps + 1):
                subj, prompt, old, new = SUBJECTS[(step - 1 + k) % len(SUBJECTS)]
                other = SUBJECTS[step % len(SUBJECTS)]
                stream.append({"v": 1, "kind": "sequential", "requests": [
                    {"subject": subj, "prompt": prompt, "target_new": new, "target_old": old}],
                    "probes": {"paraphrase": [{"prompt": f"In short, {prompt.replace('{}', subj)}", "target": new,
                                               "alt": old}],
                               "neighborhood": [{"prompt": other[1].replace("{}", other[0]), "target": other[2],
                                                 "alt": new}]}})
            run = led.begin_run(base_model_id=bm.id, method=method,
                                hparams={"layers": [1] if method == "ROME" else [1, 2], "v_lr": 0.5,
                                         "clamp_norm_factor": 4.0, "mom2_update_weight": 15000},
                                stream_name=f"counterfact-{steps}.jsonl", stream_digest=f"{k:064x}",
                                stream_kind="sequential",
                                config={"seed": seed, "stream": stream, "first_step": 1,
                                        "reference": {"base_metrics": {"perplexity.ppl": BASE_PPL}}})
            model = _Model(rng, harm=k == 0, hurt_step=hurt_step)
            weights = {n: w.clone() for n, w in weights0.items()}
            parent = run.head_version_id
            versions = []
            for step in range(1, steps + 1):
                subj, prompt, old, new = SUBJECTS[(step - 1 + k) % len(SUBJECTS)]
                layer = 1 + (step % 2 if method != "ROME" else 0)
                name = f"transformer.h.{layer}.mlp.fc_out.weight"
                u = torch.randn(8, 1, generator=gen)
                v = torch.randn(6, 1, generator=gen)
                weights[name] += u @ v.T
                norm = float((u.double().norm() * v.double().norm()))
                d = DeltaInput(tensor=name, kind="low_rank", tensors={"u": u, "v": v}, shape=(8, 6), rank=1, norm=norm)
                keyframe = {n: w.clone() for n, w in weights.items()} if step % PPL_EVERY == 0 else None
                ver = led.record_step(run.id, step=step, parent_version_id=parent, requests=[{
                    "subject": subj, "prompt": prompt, "target_new": new, "target_old": old,
                    "relation": "P17", "case_id": str(1000 + step)}], deltas=[d],
                    tensor_fingerprints={d.tensor: f"{step:064x}"},
                    diagnostics={"loss": round(rng.uniform(0.01, 0.2), 4), "_probe_state": {"scores": "x" * 2000}},
                    wall_time_s=0.05 * step, probes=model.probes(step, subj, new, old), keyframe=keyframe)
                parent = ver.id
                versions.append(ver.id)
            out["runs"].append({"id": run.id, "versions": versions, "weights": weights0})
            if k == 0 and hurt_step <= steps:
                led.record_audit(run.id, [
                    {"version_id": versions[hurt_step - 1], "metric": "perplexity.ppl", "score": 0.87,
                     "summary": f"step {hurt_step} raised perplexity by 9.1 (+41%), the largest single jump",
                     "evidence": {"step": hurt_step, "ppl_before": 21.9, "ppl_after": 31.0, "bisect": [1, hurt_step, steps]}},
                    {"version_id": versions[hurt_step - 1], "metric": "neighborhood.ns", "score": 0.55,
                     "summary": f"step {hurt_step} lowered the neighbourhood score by 0.15",
                     "evidence": {"step": hurt_step, "ns_before": 0.84, "ns_after": 0.69}},
                    {"version_id": versions[FORGET_STEP - 1], "metric": "retention.forgetting", "score": 1.0,
                     "summary": f"step {FORGET_STEP} made the model forget 1 earlier edit(s): steps 2",
                     "evidence": {"step": FORGET_STEP, "forgotten": [
                         {"edit_step": 2, "edit": "Danielle Darrieux: French → English",
                          "p_new_before": float("nan"), "p_new_after": 0.1}], "lost_at_head": 1}}])
            led.set_run_status(run.id, "done" if k != 1 else "interrupted")
        if with_history and runs:
            rid = out["runs"][0]["id"]
            out["revert"] = history.revert(led, rid, 3).id
            out["reset"] = history.reset(led, rid, 2).id
    return out


def build_big_ledger(db: str, *, versions: int = 10_000, seed: int = 0) -> int:
    """One run with ``versions`` edit versions, each with its own rank-1 delta artifact and
    runner-shaped probes, for the benchmark (about 25 ms a step here: build it once). Returns the run id."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    with fixed_clock(), Ledger.open(db) as led:
        bm = led.register_base_model("tiny-gptj", "seeded random config", "e" * 64, {"n_layer": 4})
        run = led.begin_run(base_model_id=bm.id, method="ROME", hparams={"layers": [1]},
                            stream_name="big.jsonl", stream_digest="0" * 64, stream_kind="sequential",
                            config={"reference": {"base_metrics": {"perplexity.ppl": BASE_PPL}}})
        model = _Model(rng, harm=False, hurt_step=versions + 1)
        parent = run.head_version_id
        for step in tqdm(range(1, versions + 1), desc="building ledger", unit="version", mininterval=2):
            subj, prompt, old, new = SUBJECTS[step % len(SUBJECTS)]
            u, v = torch.randn(8, 1, generator=gen), torch.randn(6, 1, generator=gen)
            d = DeltaInput(tensor="transformer.h.1.mlp.fc_out.weight", kind="low_rank", tensors={"u": u, "v": v},
                           shape=(8, 6), rank=1, norm=float(u.double().norm() * v.double().norm()))
            model.held.clear()          # no retention rows: 10,000 earlier edits per version would dwarf the rest
            ver = led.record_step(run.id, step=step, parent_version_id=parent, requests=[{
                "subject": f"{subj} #{step}", "prompt": prompt, "target_new": new, "target_old": old}],
                deltas=[d], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.01,
                probes=model.probes(step % 50 + 1, subj, new, old))
            parent = ver.id
        led.set_run_status(run.id, "done")
    return run.id


# ----- a real run's measurements as JSON ---------------------------------------------------------
DUMP_METRICS = {("rewrite", "efficacy_top1"), ("paraphrase", "generalization_top1"), ("neighborhood", "ns"),
                ("neighborhood", "nkl"), ("perplexity", "ppl"), ("retention", "efficacy_top1"),
                ("retention", "forgetting")}
DUMP_DETAIL = {("rewrite", "efficacy_top1", "none"), ("retention", "efficacy_top1", "none")}


def dump_run(db: str, run_id: int) -> dict:
    """The run's edit versions (in step order), their requests and the timeline's metrics (detail
    only where the timeline reads it), and the base measurements of its reference."""
    with Ledger.open(db, create=False) as led:
        run = led.run(run_id)
        out: dict[str, Any] = {"model": led.base_model(run.base_model_id).name, "method": run.method,
                               "stream_name": run.stream_name, "stream_kind": run.stream_kind,
                               "base_metrics": ((run.config or {}).get("reference") or {}).get("base_metrics", {}),
                               "steps": []}
        for v in led.versions(run_id):
            if v.kind != "edit":
                continue
            reqs = [{k: getattr(r, k) for k in ("subject", "prompt", "target_new", "target_old", "relation",
                                               "case_id", "group", "role")} for r in led.edit_requests(v.id)]
            probes = [{"suite": p.suite, "metric": p.metric, "against": p.against, "value": p.value,
                       "count": p.count,
                       "detail": p.detail if (p.suite, p.metric, p.against) in DUMP_DETAIL else None}
                      for p in led.probes(v.id) if (p.suite, p.metric) in DUMP_METRICS]
            out["steps"].append({"step": v.step, "requests": reqs, "probes": probes})
    return out


def load_run(db: str, dump: dict) -> int:
    """Write a dumped run into the ledger at ``db`` (no deltas: the timeline needs none). Returns its id."""
    with fixed_clock(), Ledger.open(db) as led:
        bm = led.register_base_model(dump["model"], "dumped run", "d" * 64, {})
        run = led.begin_run(base_model_id=bm.id, method=dump["method"], hparams={}, stream_name=dump["stream_name"],
                            stream_digest="0" * 64, stream_kind=dump["stream_kind"],
                            config={"reference": {"base_metrics": dump["base_metrics"]}})
        parent = run.head_version_id
        for s in dump["steps"]:
            probes = [ProbeRecord(p["suite"], p["metric"], float("nan") if p["value"] is None else p["value"],
                                  count=p["count"], detail=p["detail"], against=p["against"]) for p in s["probes"]]
            v = led.record_step(run.id, step=s["step"], parent_version_id=parent,
                                requests=[{k: x for k, x in r.items() if x is not None} for r in s["requests"]],
                                deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0, probes=probes)
            parent = v.id
        led.set_run_status(run.id, "done")
    return run.id


def write_dump(db: str, run_id: int, path: Path = DEMO_DUMP) -> Path:
    """Refresh tests/data/demo-run.json from a real demo ledger:
    ``python -c "import sys; sys.path.insert(0, 'tests'); import ledger_fixtures as f; f.write_dump('/tmp/demo/editledger.db', 1)"``"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dump_run(db, run_id), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return path
