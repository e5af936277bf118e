"""The Python API (``import editledger``) on tiny-gptj: what it returns is what the ledger recorded and
what the CLI's code computes; a checked-out version answers as the probes measured it (through the
method's runtime for GRACE and IKE); a run exported as kmeng01/rome's case files gives, through an
independent implementation of rome's summarize.py arithmetic, the numbers of ``editledger report``."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import editledger
from editledger.cli import main
from ledger import errors
from simulator import audit as audit_mod
from simulator import report as report_mod
from simulator.probes import STATE_KEY

FAST = dict(model="tiny-gptj", device="cpu", general="none", stats_tokens=128, progress=False)
TAJ = {"subject": "Taj Mahal", "prompt": "The {} is located in the city of", "target_new": " Rome",
       "target_old": " Agra"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    led = editledger.open(d / "l.db")
    run = led.replay(editledger.make_stream("sequential", n=2, seed=0), **FAST)
    yield d, led, run
    led.close()


def _scores(led, version_id: int) -> dict:
    return led.ledger.version(version_id).diagnostics[STATE_KEY]["scores"]


def _first_token_logprob(out, token_id: int) -> float:
    return float(torch.log_softmax(out.logits[0, -1].float(), -1)[token_id])


# ----------------------------------------------------------------------------------------- frames
def test_runs_log_and_trajectories_are_the_ledgers(world):
    _, led, run = world
    row = led.runs().loc[run]
    assert (row["method"], row["model"], row["status"], row["steps"], row["protocol"]) == \
        ("rome", "tiny-gptj", "done", 2, "sequential")
    log = led.log(run)
    assert list(log["kind"]) == ["edit", "edit"] and log["is_head"].tolist() == [False, True]
    assert "retention.efficacy_top1" in led.metrics(run)

    traj = led.trajectory(run, "rewrite.efficacy_prob")
    assert list(zip(traj["step"], traj["value"])) == led.ledger.trajectory(run, "rewrite", "efficacy_prob", "none")
    assert set(traj["against"]) == {"none"} and traj["on_head"].all()
    # NKL is recorded against the base and the previous version only: the rule picks the base
    nkl = led.trajectory(run, "neighborhood.nkl")
    assert set(nkl["against"]) == {"base"}
    assert list(nkl["value"]) == [v for _, v in led.ledger.trajectory(run, "neighborhood", "nkl", "base")]
    prev = led.trajectory(run, "neighborhood.nkl", against="previous")
    assert list(prev["value"]) == [v for _, v in led.ledger.trajectory(run, "neighborhood", "nkl", "previous")]
    both = led.trajectory(run, "rewrite.efficacy_prob", "retention.efficacy_top1")
    assert set(zip(both["suite"], both["metric"])) == {("rewrite", "efficacy_prob"), ("retention", "efficacy_top1")}


def test_report_and_audit_frames_hold_the_reports_numbers(world):
    _, led, run = world
    reports = report_mod.collect(led.ledger, [run])
    js = report_mod.to_json(reports)
    rep = led.report(run)
    for title, frame in rep.tables.items():
        (want,) = js["tables"][title]
        for col, v in want.items():
            if col in ("run_id", "method", "protocol"):
                continue
            got = frame.loc[run, col]
            assert (v is None and math.isnan(got)) or got == v, (title, col)
    curves = [(name, x, v) for name, per_run in js["curves"].items() for x, v in per_run[str(run)]]
    assert sorted(zip(rep.figure4["curve"], rep.figure4["edits"], rep.figure4["value"])) == sorted(curves)
    assert rep.text() == report_mod.render(reports, "text")

    findings = led.audit(run)
    want = audit_mod.audit_run(led.ledger, run)
    assert list(zip(findings["step"], findings["metric"], findings["score"])) == \
        [(f.step, f.metric, f.score) for f in want]
    assert len(led.ledger.audit_findings(run)) == len(want)       # recorded, as the CLI records it


# ----------------------------------------------------------------------------------------- models
def test_checkout_answers_as_the_probes_measured_and_stays_itself(world):
    _, led, run = world
    m = led.checkout(f"{run}@2")
    v = led.ledger.version(m.version_id)
    assert (m.run_id, m.step, v.step) == (run, 2, 2) and m.methods == []
    assert m.fingerprints == v.tensor_fingerprints                  # verified against the ledger
    # the step's own edit prompt: the model's first-token log-prob is the one the replay recorded
    step2 = led.ledger.run(run).config["stream"][1]
    prompt = step2["probes"]["rewrite"][0]["prompt"]
    s = _scores(led, v.id)["2/rewrite/0/t"]
    assert _first_token_logprob(m.forward(prompt), s["ids"][0]) == pytest.approx(s["lp"][0], abs=1e-4)
    text = m.generate(prompt, max_new_tokens=3)
    tok = m.tokenizer
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        plain = m.model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.eos_token_id)
    assert text == tok.decode(plain[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    # another checkout moves the shared model; this object makes its own version live again
    other = led.checkout(f"{run}@1")
    assert other.fingerprints != m.fingerprints
    assert m.generate(prompt, max_new_tokens=3) == text and m.session.fingerprints == m.fingerprints


def test_stateful_methods_answer_through_their_runtime(world):
    _, led, _ = world
    # GRACE: a codebook of hooks around one layer
    g = led.replay([TAJ], method="grace", name="grace", **FAST)
    m = led.checkout(g)
    assert m.methods == ["grace"] and m.context("x") == ""
    prompt = "The Taj Mahal is located in the city of"
    s = _scores(led, m.version_id)["1/rewrite/0/t"]
    hooked = _first_token_logprob(m.forward(prompt), s["ids"][0])
    assert hooked == pytest.approx(s["lp"][0], abs=1e-4)
    with torch.no_grad():
        bare = _first_token_logprob(m.model(**m.tokenizer(prompt, return_tensors="pt")), s["ids"][0])
    assert abs(hooked - bare) > 1e-2, "the codebook changed nothing: the test would not see a missing hook"
    assert m.generate(prompt, max_new_tokens=1) == m.tokenizer.decode(
        [int(m.forward(prompt).logits[0, -1].argmax())])
    # IKE: retrieved demonstrations put before the prompt
    k = led.replay([TAJ], method="ike", name="ike", **FAST)
    m = led.checkout(k)
    ctx = m.context(prompt)
    assert m.methods == ["ike"] and "Taj Mahal" in ctx and m.prompt_text(prompt) == ctx + prompt
    s = _scores(led, m.version_id)["1/rewrite/0/t"]
    assert _first_token_logprob(m.forward(prompt), s["ids"][0]) == pytest.approx(s["lp"][0], abs=1e-4)
    with torch.no_grad():
        bare = _first_token_logprob(m.model(**m.tokenizer(prompt, return_tensors="pt")), s["ids"][0])
    assert abs(bare - s["lp"][0]) > 1e-2


def test_branch_reset_revert_and_the_counterfactual(world):
    d, led, run = world
    b = led.branch(f"{run}@1", [{**TAJ, "subject": "Louvre", "target_old": " Paris", "target_new": " Berlin"}],
                   name="b")
    assert led.runs().loc[b, "status"] == "done"
    assert list(led.log(b)["kind"]) == ["branch", "edit"]
    origin = led.checkout(f"{run}@1").fingerprints
    without = led.checkout(f"{b}@2", without=[2])                  # the head without its one edit
    assert without.fingerprints == origin and without.without
    with pytest.raises(editledger.InputError, match="counterfactual"):
        without.save(d / "nope")
    rv = led.revert(b, 2)
    head = led.checkout(b)
    assert head.version_id == rv and head.fingerprints == origin
    marker = led.reset(b, 2)
    assert led.checkout(b).version_id == marker and led.checkout(b).fingerprints != origin
    log = led.log(b)
    assert list(log["kind"]) == ["branch", "edit", "revert", "reset"] and log["is_head"].tolist()[-1]
    out = led.export(f"{b}@2", d / "hf")
    assert json.loads((out / "editledger.json").read_text())["version_id"] == led.version_id(f"{b}@2")


def test_errors_are_the_clis(world, tmp_path):
    d, led, run = world
    assert editledger.InputError is errors.InputError and editledger.UserError is errors.UserError
    n_runs = len(led.runs())
    cases = [
        (lambda: led.checkout("99@1"), "no run '99'"),
        (lambda: led.checkout(f"{run}@9"), "has no step 9"),
        (lambda: led.trajectory(run, "rewrite"), "suite.metric"),
        (lambda: led.trajectory(run, "rewrite.nope"), "recorded no rewrite.nope"),
        (lambda: led.replay([TAJ], method="nope", **FAST), "unknown editing method"),
        (lambda: led.replay([TAJ], hparams={"layer": 99}, **FAST), "outside the model"),
        (lambda: led.replay([{**TAJ, "target_new": "Rome"}], **FAST), "line 1, field requests[0].target_new"),
        (lambda: led.replay([{"subject": "X"}], **FAST), "missing 'prompt'"),
        (lambda: led.replay(d / "missing.jsonl", **FAST), "not found"),
        (lambda: led.revert(run, 0), "whole number >= 1"),
        (lambda: editledger.open(tmp_path / "none.db", create=False), "no ledger at"),
    ]
    for call, words in cases:
        with pytest.raises(editledger.UserError) as e:
            call()
        assert words in str(e.value) and e.value.exit_code == 2, (words, str(e.value))
    assert len(led.runs()) == n_runs                                # nothing was written


# ----------------------------------------------------------------------------------------- rome out
def summarize(run_dir: Path) -> dict[str, float]:
    """kmeng01/rome experiments/summarize.py's arithmetic for one run directory, re-implemented: per
    case the mean over its prompts, then the mean over cases (not x100, not rounded)."""
    cur = defaultdict(list)
    for f in sorted(run_dir.glob("case_*.json"), key=lambda p: int(p.stem.split("_")[-1])):
        data = json.loads(f.read_text())
        cur["time"].append(data["time"])
        for prefix in ("pre", "post"):
            block = data.get(prefix, {})
            for key in ("rewrite_prompts_probs", "paraphrase_prompts_probs"):
                if key in block:
                    name = key.split("_")[0]
                    cur[f"{prefix}_{name}_success"].append(np.mean([x["target_true"] > x["target_new"] for x in block[key]]))
                    cur[f"{prefix}_{name}_diff"].append(
                        np.mean([np.exp(-x["target_new"]) - np.exp(-x["target_true"]) for x in block[key]]))
            if "neighborhood_prompts_probs" in block:
                xs = block["neighborhood_prompts_probs"]
                cur[f"{prefix}_neighborhood_success"].append(np.mean([x["target_true"] < x["target_new"] for x in xs]))
                cur[f"{prefix}_neighborhood_diff"].append(
                    np.mean([np.exp(-x["target_true"]) - np.exp(-x["target_new"]) for x in xs]))
    return {k: float(np.mean(v)) for k, v in cur.items()}


def test_summarize_reimplementation_by_hand(tmp_path):
    cases = [{"case_id": 0, "time": 1.0, "post": {
                  "rewrite_prompts_probs": [{"target_new": 0.1, "target_true": 2.0}],
                  "paraphrase_prompts_probs": [{"target_new": 1.0, "target_true": 0.5},
                                               {"target_new": 0.2, "target_true": 3.0}],
                  "neighborhood_prompts_probs": [{"target_new": 0.3, "target_true": 0.1}]}},
             {"case_id": 1, "time": 3.0, "post": {
                  "rewrite_prompts_probs": [{"target_new": 2.0, "target_true": 1.0}],
                  "paraphrase_prompts_probs": [{"target_new": 0.5, "target_true": 0.6}],
                  "neighborhood_prompts_probs": [{"target_new": 0.3, "target_true": 0.5},
                                                 {"target_new": 1.0, "target_true": 0.2}]}}]
    for c in cases:
        (tmp_path / f"case_{c['case_id']}.json").write_text(json.dumps(c))
    s = summarize(tmp_path)
    # rewrite: case 0 new more likely (nll 0.1 < 2.0) -> 1, case 1 not -> 0: mean 0.5
    assert s["post_rewrite_success"] == 0.5
    # diff: case 0 e^-0.1 - e^-2 = 0.904837 - 0.135335 = 0.769502; case 1 e^-2 - e^-1 = 0.135335 - 0.367879
    assert s["post_rewrite_diff"] == pytest.approx((0.769502 + (0.135335 - 0.367879)) / 2, abs=1e-6)
    # paraphrase: case 0 (0 + 1) / 2 = 0.5, case 1 1 -> 0.75
    assert s["post_paraphrase_success"] == 0.75
    # neighbourhood (true must be more likely): case 0 1, case 1 (0 + 1) / 2 -> 0.75
    assert s["post_neighborhood_success"] == 0.75
    assert s["time"] == 2.0


def _rome_nll(model, tok, prompt: str, target: str) -> float:
    """kmeng01/rome eval_utils_counterfact.py test_batch_prediction for one (prompt, target): the
    sequence f"{prompt} {target}", the target's tokens tok(f" {target}"), the mean of -log_softmax at
    positions prefix_len + j - 1. (CounterFact's objects have no leading space.)"""
    prefix_len = len(tok(prompt)["input_ids"])
    t_ids = tok(f" {target}")["input_ids"]
    with torch.no_grad():
        logits = model(**tok(f"{prompt} {target}", return_tensors="pt")).logits[0]
    return float(sum(-torch.log_softmax(logits[prefix_len + j - 1].double(), 0)[t] for j, t in enumerate(t_ids))
                 / len(t_ids))


def test_rome_export_reads_back_as_editledger_reports(world):
    d, led, run = world
    out = led.export_rome(run, d / "rome")
    assert out == d / "rome" / f"run_{run:03d}"
    assert sorted(p.name for p in out.iterdir()) == ["case_1.json", "case_2.json", "params.json"]
    s = summarize(out)
    rel = led.report(run).reliability.loc[run]
    assert s["post_rewrite_success"] == pytest.approx(rel["Eff P"], abs=1e-12)
    assert s["post_paraphrase_success"] == pytest.approx(rel["Gen P"], abs=1e-12)
    assert s["post_neighborhood_success"] == pytest.approx(rel["NS"], abs=1e-12)
    assert s["post_neighborhood_diff"] == pytest.approx(rel["NM"], abs=1e-12)
    mag = led.trajectory(run, "rewrite.efficacy_magnitude")
    assert s["post_rewrite_diff"] == pytest.approx(mag["value"].mean(), abs=1e-12)
    # pre: the base model's value of each step's metric, as the ledger's comparison with the base keeps it
    base = [r.detail["reference_value"] for v in led.ledger.versions(run)
            for r in led.ledger.probes(v.id, "rewrite") if r.metric == "efficacy_prob" and r.against == "base"]
    assert s["pre_rewrite_success"] == pytest.approx(float(np.mean(base)), abs=1e-12)

    # the NLLs themselves, recomputed from the model with rome's own formula, before and after step 1
    case = json.loads((out / "case_1.json").read_text())
    rw = case["requested_rewrite"]
    prompt = rw["prompt"].format(rw["subject"])
    for prefix, ref in (("pre", f"{run}@0"), ("post", f"{run}@1")):
        m = led.checkout(ref)
        got = case[prefix]["rewrite_prompts_probs"][0]
        assert got["target_new"] == pytest.approx(_rome_nll(m.model, m.tokenizer, prompt, rw["target_new"]["str"]), abs=1e-4)
        assert got["target_true"] == pytest.approx(_rome_nll(m.model, m.tokenizer, prompt, rw["target_true"]["str"]), abs=1e-4)

    # the CLI writes the same files, and refuses to write over them
    db = led.url.removeprefix("sqlite:///")
    assert main(["--db", db, "export", str(run), str(d / "rome-cli"), "--format", "rome"]) == 0
    cli = d / "rome-cli" / out.name
    assert [json.loads(p.read_text()) for p in sorted(cli.glob("case_*.json"))] == \
        [json.loads(p.read_text()) for p in sorted(out.glob("case_*.json"))]
    assert main(["--db", db, "export", str(run), str(d / "rome-cli")]) == 2
