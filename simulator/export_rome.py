"""A run as kmeng01/rome's per-case result files, so that the anchors' own scripts can check its numbers.

kmeng01/rome's ``experiments/evaluate.py`` writes ``<dir>/run_<id>/case_<case_id>.json`` per edit, and
``experiments/summarize.py`` (and MEMIT's copy in zjunlp/PitfallsKnowledgeEditing, ``memit/experiments/
summarize.py``, which globs ``*case_*.json``) reads them back:

    {"case_id": int, "requested_rewrite": {...}, "time": seconds,
     "pre":  {"rewrite_prompts_probs": [{"target_new": nll, "target_true": nll}, ...],
              "paraphrase_prompts_probs": [...], "neighborhood_prompts_probs": [...]},
     "post": {... the same after the edit ...}}

Each ``nll`` is what ``eval_utils_counterfact.py:test_batch_prediction`` computes: the mean over the
target's tokens of -log P(token | prompt, earlier target tokens), natural log. summarize.py counts
rewrite and paraphrase success as ``target_true > target_new`` (P(new) > P(true)), neighbourhood success
as ``target_true < target_new``, and its ``*_diff`` as ``exp(-nll)`` differences.

editledger keeps exactly these numbers: every probe's per-token log-probabilities at the version it was
measured on (the probe state in the version's diagnostics) and on the base (the run's reference). A
step is one case (``case_id`` = step number, an integer as summarize.py sorts them): ``post`` is the
step's own version, right after its edit, ``pre`` the base model. The rewrite and paraphrase items give
(target_new, target_true) = (target, alt); the neighbourhood items, whose target is the true object and
alt the new one, give (alt, target). Items without an alt have no pair and are left out, as editledger's
P(new) > P(old) metrics leave them out. The ledger alone is read: no model is loaded.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ledger.errors import InputError
from simulator.probes import STATE_KEY
from simulator.probes.items import key
from simulator.requests import Step

# editledger suite -> kmeng01/rome key, and whether the item's target is the new object
SUITES = {"rewrite": ("rewrite_prompts_probs", True), "paraphrase": ("paraphrase_prompts_probs", True),
          "neighborhood": ("neighborhood_prompts_probs", False)}


def nll(score: dict) -> float:
    """test_batch_prediction's number: the mean negative log-probability of the target's tokens."""
    lp = score["lp"]
    return -sum(lp) / len(lp)


def _probs(step: Step, idx: int, scores: dict) -> dict[str, list[dict]]:
    out = {}
    for suite, (name, target_is_new) in SUITES.items():
        rows = []
        for i, item in enumerate(step.probes.get(suite, [])):
            kt, ka = key(idx, suite, i, "t"), key(idx, suite, i, "a")
            if item.alt is None or kt not in scores or ka not in scores:
                continue
            t, a = nll(scores[kt]), nll(scores[ka])
            rows.append({"target_new": t, "target_true": a} if target_is_new else {"target_new": a, "target_true": t})
        if rows:
            out[name] = rows
    return out


def _rewrite(step: Step) -> dict:
    """The step's (first) request in CounterFact's requested_rewrite shape (objects without their space)."""
    r = step.requests[0]
    out = {"prompt": r.prompt, "subject": r.subject, "target_new": {"str": r.target_new[1:] if r.target_new.startswith(" ") else r.target_new}}
    if r.target_old is not None:
        out["target_true"] = {"str": r.target_old[1:] if r.target_old.startswith(" ") else r.target_old}
    if r.relation is not None:
        out["relation_id"] = r.relation
    return out


def cases(ledger, run_id: int) -> list[dict]:
    """The run's case records (one per edit step, in step order), as summarize.py reads them."""
    run = ledger.run(run_id)
    cfg = run.config or {}
    steps = [Step.from_dict(d) for d in cfg.get("stream", [])]
    base = (cfg.get("reference") or {}).get("scores")
    if not steps or base is None:
        raise InputError(f"run {run_id} keeps no stream or base scores in its config: it cannot be exported")
    first = int(cfg.get("first_step", 1))
    out = []
    for v in ledger.versions(run_id):
        if v.kind != "edit":
            continue
        state = (v.diagnostics or {}).get(STATE_KEY)
        if not state or "scores" not in state:
            raise InputError(f"run {run_id} step {v.step} was recorded without its raw probe scores; export needs a "
                             "run replayed by this version of editledger")
        idx = v.step - first + 1
        step = steps[idx - 1]
        case = {"case_id": v.step, "requested_rewrite": _rewrite(step),
                "time": float(((v.diagnostics or {}).get("timing_s") or {}).get("edit", v.wall_time_s)),
                "pre": _probs(step, idx, base), "post": _probs(step, idx, state["scores"]),
                "editledger": {"run_id": run_id, "step": v.step, "version_id": v.id, "method": run.method,
                               "protocol": (cfg.get("options") or {}).get("protocol", "sequential"),
                               "requests": [r.to_dict() for r in step.requests],
                               "case_id": step.requests[0].case_id}}
        out.append(case)
    if not out:
        raise InputError(f"run {run_id} has no edit steps to export")
    return out


def export_run(ledger, run_id: int, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/run_<id>/case_<step>.json`` (one per edit step) and ``params.json`` (the run's
    hyper-parameters, as evaluate.py copies its own), so that ``summarize.main(out_dir, None,
    abs_path=True)`` reads the run. The run directory is written whole or not at all."""
    records = cases(ledger, run_id)
    run = ledger.run(run_id)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file; give a directory for the run's case files")
    target = root / f"run_{run_id:03d}"
    if target.exists() and any(target.iterdir()):
        raise InputError(f"{target} exists and is not empty; choose another directory or delete it first")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for c in records:
            (tmp / f"case_{c['case_id']}.json").write_text(json.dumps(c, indent=1))
        (tmp / "params.json").write_text(json.dumps({"method": run.method, **(run.hparams or {})}, indent=1))
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:       # a full disk, a kill: no half-written run directory is left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
