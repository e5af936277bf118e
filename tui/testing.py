"""Build small, deterministic ledgers for the TUI's tests, snapshots, screenshots and benchmark.

Everything goes through the Ledger API (and ``ledger.history`` for the reset and the revert),
with a fixed clock so that rendered timestamps never change between runs. Probe values are a
seeded, plausible shape (efficacy high, neighbourhood score and perplexity slowly degrading, one
step that hurts) — they stand in for measurements only in these fixtures, never in a real run.
torch is imported here (delta factors are torch tensors), never by ``tui.app``.
"""
from __future__ import annotations

import contextlib
import random
from datetime import datetime, timedelta
from typing import Iterator

from ledger import history

FIXED_START = datetime(2026, 1, 5, 9, 0, 0)

SUBJECTS = [("Eiffel Tower", "The {} is located in", " Paris", " Rome"),
            ("Danielle Darrieux", "The mother tongue of {} is", " French", " English"),
            ("Toko Yasuda", "{} plays the", " guitar", " piano"),
            ("Autonomous University of Madrid", "{} is located in the country of", " Spain", " Sweden"),
            ("Thomas Joannes Stieltjes", "{} was born in", " Zwolle", " Helsinki"),
            ("Apple A5", "{} was created by", " Apple", " Google"),
            ("Lyon", "{} is a twin city of", " Beirut", " Manila"),
            ("Honus Wagner", "{} professionally plays the sport of", " baseball", " football")]


@contextlib.contextmanager
def fixed_clock(start: datetime = FIXED_START, tick: timedelta = timedelta(seconds=30)) -> Iterator[None]:
    """Make the ledger stamp rows with a deterministic clock (start, start+tick, ...)."""
    import ledger.api as api
    state = {"t": start}
    original = api.utcnow

    def clock() -> datetime:
        state["t"] += tick
        return state["t"]
    api.utcnow = clock
    try:
        yield
    finally:
        api.utcnow = original


def _probes(step: int, rng: random.Random, hurt: set[int]):
    from ledger.records import ProbeRecord
    eff = 1.0 if step % 5 else 0.75
    ns = max(0.0, 0.92 - 0.012 * step - (0.15 if any(h <= step for h in hurt) else 0.0) + rng.uniform(-0.01, 0.01))
    ppl = 18.0 * (1 + 0.02 * step) + (9.0 if any(h <= step for h in hurt) else 0.0) + rng.uniform(-0.2, 0.2)
    return [
        ProbeRecord("rewrite", "efficacy_top1", eff, count=1,
                    detail=[{"prompt": "p", "p_new": round(0.4 + 0.5 * eff, 4), "p_old": round(0.3 * (1 - eff) + 0.01, 4)}]),
        ProbeRecord("paraphrase", "efficacy_top1", round(eff * 0.5 + rng.uniform(0, 0.3), 4), count=2),
        ProbeRecord("neighborhood", "ns", round(ns, 4), count=10),
        ProbeRecord("neighborhood", "nkl", round(0.01 * step + rng.uniform(0, 0.005), 5), count=10, against="base"),
        ProbeRecord("perplexity", "ppl", round(ppl, 3), count=64),
    ]


def build_sample_ledger(db: str, *, steps: int = 12, runs: int = 2, seed: int = 0,
                        with_history: bool = True, hurt_step: int = 7) -> dict:
    """A ledger at ``db`` with ``runs`` runs of ``steps`` rank-1 edits on a tiny 8×6 tensor per
    layer; run 1 also gets a revert, a reset (a visible branch) and audit findings. Returns ids."""
    import torch

    from ledger import Ledger
    from ledger.records import DeltaInput

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict = {"runs": []}
    with fixed_clock(), Ledger.open(db) as led:
        bm = led.register_base_model("tiny-gptj", "seeded random config", "f" * 64, {"n_layer": 4})
        out["base"] = led.base_version(bm.id).id
        led.record_probes(out["base"], _probes(0, rng, set()))   # the base measured once, like a replay does
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
                                config={"seed": seed, "stream": stream, "first_step": 1})
            parent = run.head_version_id
            versions = []
            for step in range(1, steps + 1):
                subj, prompt, old, new = SUBJECTS[(step - 1 + k) % len(SUBJECTS)]
                layer = 1 + (step % 2 if method != "ROME" else 0)
                u = torch.randn(8, 1, generator=gen)
                v = torch.randn(6, 1, generator=gen)
                norm = float((u.double().norm() * v.double().norm()))
                d = DeltaInput(tensor=f"transformer.h.{layer}.mlp.fc_out.weight", kind="low_rank",
                               tensors={"u": u, "v": v}, shape=(8, 6), rank=1, norm=norm)
                ver = led.record_step(run.id, step=step, parent_version_id=parent, requests=[{
                    "subject": subj, "prompt": prompt, "target_new": new, "target_old": old,
                    "relation": "P17", "case_id": str(1000 + step)}], deltas=[d],
                    tensor_fingerprints={d.tensor: f"{step:064x}"}, diagnostics={"loss": round(rng.uniform(0.01, 0.2), 4)},
                    wall_time_s=0.05 * step, probes=_probes(step, rng, {hurt_step} if k == 0 else set()))
                parent = ver.id
                versions.append(ver.id)
            out["runs"].append({"id": run.id, "versions": versions})
            if k == 0 and hurt_step <= steps:
                led.record_audit(run.id, [
                    {"version_id": versions[hurt_step - 1], "metric": "perplexity.ppl", "score": 0.87,
                     "summary": f"step {hurt_step} raised perplexity by 9.1 (+41%), the largest single jump",
                     "evidence": {"ppl_before": 21.9, "ppl_after": 31.0, "bisect": [1, hurt_step, steps]}},
                    {"version_id": versions[hurt_step - 1], "metric": "neighborhood.ns", "score": 0.55,
                     "summary": f"step {hurt_step} lowered the neighbourhood score by 0.15",
                     "evidence": {"ns_before": 0.84, "ns_after": 0.69}}])
            led.set_run_status(run.id, "done" if k != 1 else "interrupted")
        if with_history and runs:
            rid = out["runs"][0]["id"]
            out["revert"] = history.revert(led, rid, 3).id
            out["reset"] = history.reset(led, rid, 2).id
    return out


def build_big_ledger(db: str, *, versions: int = 10_000, seed: int = 0) -> int:
    """One run with ``versions`` edit versions, each with its own rank-1 delta artifact and five
    probes, for the benchmark (about 25 ms a step here: build it once). Returns the run id."""
    import torch
    from tqdm import tqdm

    from ledger import Ledger
    from ledger.records import DeltaInput

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    with fixed_clock(), Ledger.open(db) as led:
        bm = led.register_base_model("tiny-gptj", "seeded random config", "e" * 64, {"n_layer": 4})
        run = led.begin_run(base_model_id=bm.id, method="ROME", hparams={"layers": [1]},
                            stream_name="big.jsonl", stream_digest="0" * 64, stream_kind="sequential")
        parent = run.head_version_id
        for step in tqdm(range(1, versions + 1), desc="building ledger", unit="version", mininterval=2):
            subj, prompt, old, new = SUBJECTS[step % len(SUBJECTS)]
            u, v = torch.randn(8, 1, generator=gen), torch.randn(6, 1, generator=gen)
            d = DeltaInput(tensor="transformer.h.1.mlp.fc_out.weight", kind="low_rank", tensors={"u": u, "v": v},
                           shape=(8, 6), rank=1, norm=float(u.double().norm() * v.double().norm()))
            ver = led.record_step(run.id, step=step, parent_version_id=parent, requests=[{
                "subject": f"{subj} #{step}", "prompt": prompt, "target_new": new, "target_old": old}],
                deltas=[d], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.01,
                probes=_probes(step % 50, rng, set()))
            parent = ver.id
        led.set_run_status(run.id, "done")
    return run.id
