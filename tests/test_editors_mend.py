"""MEND on tiny-gptj: training (seconds), the trained network's round trip through the ledger, reproducible
edits from it, resumable training, and the `editledger train mend` command."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from editledger.cli import main
from ledger import Ledger
from ledger.errors import InputError
from simulator.deltas import apply_delta
from simulator.editors import get_editor, load_hparams
from simulator.editors.mend import MENDNetwork, load_network
from simulator.editors.mend_train import MENDTrainer, load_records
from simulator.models.tiny import TINY_FACTS
from simulator.requests import EditRequest

EIFFEL = EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome",
                     target_old=" Paris")


def tiny_records() -> list[dict]:
    """ZsRE-format (MEND) records over tiny-gptj's toy facts: the new answer is another object of the same
    relation, the rephrase adds a prefix the model was trained with, locality is an unrelated fact."""
    by_rel: dict[str, list[str]] = {}
    for _s, p, o in TINY_FACTS:
        by_rel.setdefault(p, []).append(o)
    recs = []
    for i, (s, p, o) in enumerate(TINY_FACTS):
        alt = next((x for x in by_rel[p] if x != o), " Paris")
        ls, lp, lo = TINY_FACTS[(i + 7) % len(TINY_FACTS)]
        q = p.replace("{}", s)
        recs.append({"subject": s, "src": q, "alt": alt.strip(), "rephrase": "The following is true. " + q,
                     "loc": lp.replace("{}", ls), "loc_ans": lo.strip(), "answers": [o.strip()]})
    return recs


HP = {"train_edits": 40, "accumulate": 2, "checkpoint_every": 5}


@pytest.fixture(scope="module")
def trained(tiny):
    hp = load_hparams("mend", tiny.spec, overrides=HP)
    tr = MENDTrainer(tiny.model, tiny.tokenizer, tiny.spec, hp, tiny_records(), tiny.fingerprint)
    tr.run(None, progress=False)
    return tr


def _logp(model, tok, text, target) -> float:
    ids = tok(text + target)["input_ids"]
    n = len(tok(text)["input_ids"])
    with torch.no_grad():
        lp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    return float(sum(lp[n - 1 + j, ids[n + j]] for j in range(len(ids) - n)))


def test_mend_network_starts_as_the_identity_and_training_learns_to_edit(tiny, trained):
    fresh = MENDNetwork(tiny.model, tiny.spec, trained.hp)
    x, d = torch.randn(5, 256), torch.randn(5, 64)
    gt = fresh.nets[fresh.targets[0].net_key]
    gt.observe(x, d)
    xt, dt = gt(x, d, 0)                       # the reference's IDMLP: u = 0 at init, so x + relu(b) = x
    assert torch.allclose(xt, gt.standardise(x, "x")) and torch.allclose(dt, gt.standardise(d, "d"))
    assert trained.stats.edits == 40 and trained.stats.steps == 20
    assert (trained.net.edit_lrs < 0).all()    # learned to descend the loss (the reference adds lr * grad)
    # an edit from the trained network raises the new answer on its prompt
    ed = get_editor("mend")
    ed._networks["mem"] = trained.net
    hp = load_hparams("mend", tiny.spec, overrides={**HP, "network": "mem"})
    res = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp)
    assert all(d.kind == "low_rank" for d in res.deltas) and res.stats_used == ["mem"]
    m = copy.deepcopy(tiny.model)
    for d in res.deltas:
        apply_delta(m.get_parameter(d.tensor), d)
    before, after = _logp(tiny.model, tiny.tokenizer, EIFFEL.text, " Rome"), _logp(m, tiny.tokenizer, EIFFEL.text, " Rome")
    assert after > before + 2.0, f"log p(Rome) {before:.2f} -> {after:.2f}"


def test_mend_update_is_the_transformed_gradient_outer_product(tiny, trained):
    """dW = edit_lr * sum_t delta~_t x~_t^T (the reference's einsum 'bi,bj->ji'), stored as exact factors."""
    from simulator.editors.mend import gradient_factors, make_example, transformed_updates
    ex = make_example(tiny.tokenizer, tiny.spec, EIFFEL.text, " Rome")
    factors, _ = gradient_factors(tiny.model, trained.net, [ex], 0)
    # the factors are the true gradient: sum_t delta_t x_t^T equals autograd's dL/dW
    t = trained.net.targets[0]
    W = tiny.model.get_parameter(t.tensor)
    was = W.requires_grad
    try:
        W.requires_grad_(True)
        lp = tiny.model(input_ids=torch.tensor([ex.ids])).logits[0].log_softmax(-1)
        loss = -torch.stack([lp[p, y] for p, y in zip(ex.pos, ex.targets)]).mean()
        (g,) = torch.autograd.grad(loss, W)
    finally:
        W.requires_grad_(was)
    x, d = factors[t.module]
    assert torch.allclose(d.double().T @ x.double(), g.double(), atol=1e-6 * float(g.abs().max()))
    with torch.no_grad():
        ups = transformed_updates(trained.net, factors)
        xt, dt = trained.net.nets[t.net_key](x, d, t.mode)
    A, B = ups[t.module]
    ref = float(trained.net.edit_lrs[0].detach()) * torch.einsum("bi,bj->ji", xt.double(), dt.double())
    assert torch.allclose(A.double().T @ B.double(), ref, atol=1e-6 * float(ref.abs().max()))


def test_trained_network_round_trips_through_the_ledger_and_edits_reproducibly(tiny, trained, tmp_path):
    led = Ledger.open(str(tmp_path / "l.db"))
    digest = led.put_trained(method="mend", tensors=trained.net.to_tensors(), meta=trained.artifact_meta(1.0))
    assert led.put_trained(method="mend", tensors=trained.net.to_tensors(), meta=trained.artifact_meta(1.0)) == digest
    tensors, meta = led.trained(digest)
    orig = trained.net.to_tensors()
    assert set(tensors) == set(orig) and all(torch.equal(tensors[k], orig[k]) for k in orig)
    assert meta["method"] == "mend" and meta["arch"]["layers"] == trained.hp.layers
    led.close()
    hp = load_hparams("mend", tiny.spec, overrides={**HP, "network": digest, "network_ledger": str(tmp_path / "l.db")})
    a = get_editor("mend").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp)   # read from the ledger
    b = get_editor("mend").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp)   # a fresh editor, again
    ed = get_editor("mend")
    ed._networks[digest] = trained.net                                                   # the in-memory network
    c = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp)
    for x in (b, c):
        assert all(torch.equal(p.factors[k], q.factors[k]) for p, q in zip(a.deltas, x.deltas) for k in p.factors)
    assert a.stats_used == [digest]
    # a network used with other architecture hyper-parameters is refused with a message
    with pytest.raises(InputError, match="rank"):
        load_network(tiny.model, tiny.spec, load_hparams("mend", tiny.spec, overrides={"rank": 3}), tensors, meta)
    with pytest.raises(InputError, match="train mend"):
        get_editor("mend").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], load_hparams("mend", tiny.spec))


def test_resumed_training_ends_where_an_uninterrupted_one_does(tiny, tmp_path):
    recs = tiny_records()
    full = MENDTrainer(tiny.model, tiny.tokenizer, tiny.spec, load_hparams("mend", tiny.spec, overrides={**HP, "train_edits": 12}),
                       recs, tiny.fingerprint)
    full.run(None, progress=False)
    ck = tmp_path / "ck.safetensors"
    first = MENDTrainer(tiny.model, tiny.tokenizer, tiny.spec, load_hparams("mend", tiny.spec, overrides={**HP, "train_edits": 6}),
                        recs, tiny.fingerprint)
    first.run(ck, progress=False)                  # stands in for a kill after 6 edits (its last checkpoint)
    resumed = MENDTrainer(tiny.model, tiny.tokenizer, tiny.spec, load_hparams("mend", tiny.spec, overrides={**HP, "train_edits": 12}),
                          recs, tiny.fingerprint)
    assert resumed.load(ck) and resumed.stats.edits == 6
    resumed.run(None, progress=False)
    a, b = full.net.to_tensors(), resumed.net.to_tensors()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    # another training's checkpoint is not taken
    other = MENDTrainer(tiny.model, tiny.tokenizer, tiny.spec, load_hparams("mend", tiny.spec, overrides={**HP, "lr": 0.5}),
                        recs, tiny.fingerprint)
    assert not other.load(ck)


def test_train_command_stores_the_network_and_replay_edits_with_it(tiny, tmp_path, capsys):
    data = tmp_path / "zsre.json"
    data.write_text(json.dumps(tiny_records()))
    db, hp_file = tmp_path / "l.db", tmp_path / "mend-tiny.json"
    rc = main(["--db", str(db), "train", "mend", "--model", "tiny-gptj", "--data", str(data), "--edits", "8",
               "--eval", "3", "-o", str(hp_file), "--no-progress", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr()
    digest = out.out.strip().splitlines()[-1]
    hp = json.loads(hp_file.read_text())
    assert hp["network"] == digest and "held-out edits (3 records" in out.err
    with Ledger.open(str(db)) as led:
        _, meta = led.trained(digest)
    assert meta["edits"] == 8 and 0.0 <= meta["held_out"]["efficacy_top1"] <= 1.0
    # run again: the checkpoint says it is done, nothing is retrained and the same network comes out (its
    # artifact differs only in the recorded wall time and evaluation)
    assert main(["--db", str(db), "train", "mend", "--model", "tiny-gptj", "--data", str(data), "--edits", "8",
                 "--eval", "0", "-o", str(tmp_path / "again.json"), "--no-progress", "--device", "cpu"]) == 0
    again = capsys.readouterr()
    assert "resuming" in again.err and "at edit 8 of 8" in again.err
    with Ledger.open(str(db)) as led:
        a, _ = led.trained(digest)
        b, meta_b = led.trained(again.out.strip().splitlines()[-1])
    assert meta_b["edits"] == 8 and all(torch.equal(a[k], b[k]) for k in a)
    # a replay with the written hyper-parameters records the network in every step
    stream = tmp_path / "s.jsonl"
    assert main(["stream", "make", "--kind", "sequential", "--n", "2", "--from", "builtin", "-o", str(stream)]) == 0
    assert main(["--db", str(db), "replay", str(stream), "--model", "tiny-gptj", "--method", "mend", "--hparams",
                 str(hp_file), "--general", "none", "--device", "cpu"]) == 0
    with Ledger.open(str(db)) as led:
        (run,) = led.runs()
        versions = [v for v in led.versions(run.id) if v.kind == "edit"]
        assert len(versions) == 2 and all(v.stats_used == [digest] for v in versions)
        assert led.run(run.id).hparams["network"] == digest


def test_bad_training_data_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"src": "q"}]))
    with pytest.raises(InputError, match="no record with all of src, alt, rephrase"):
        load_records(bad)
    assert main(["--db", str(tmp_path / "l.db"), "train", "mend", "--model", "tiny-gptj", "--data",
                 str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_shared_zsre_training_file_loads(shared_dir):
    recs = load_records(shared_dir / "data" / "zsre" / "zsre_mend_train-1k.json")
    assert len(recs) > 900 and {"src", "alt", "rephrase", "loc", "loc_ans"} == set(recs[0])


def test_mend_in_the_contract_exactness_test(tiny, trained, tmp_path, monkeypatch):
    """The editor contract's exactness test (every version, revert, branch, resume reproduce outputs
    exactly) for MEND, whose replays need the trained network's hyper-parameters."""
    import test_contract
    with Ledger.open(str(tmp_path / "net.db")) as led:
        digest = led.put_trained(method="mend", tensors=trained.net.to_tensors(), meta=trained.artifact_meta(1.0))
    hp = {**HP, "network": digest, "network_ledger": str(tmp_path / "net.db")}
    monkeypatch.setattr(test_contract, "FAST", {**test_contract.FAST, "hparams": hp})
    (tmp_path / "contract").mkdir()
    test_contract.test_every_version_revert_branch_and_resume_reproduce_outputs(tmp_path / "contract", "mend")


def test_mend_steps_record_health_that_matches_the_weights(tiny, trained, tmp_path):
    """The health telemetry of a MEND replay (several tensors per step): ‖Δ‖ is the root sum of squares of
    the ledger's delta norms, drift, ‖W‖/‖W₀‖ and κ the largest over the tensors the step changed, each
    recomputed here from the checked-out weights; MEND solves nothing, so no key norm or denominator."""
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records

    with Ledger.open(str(tmp_path / "net.db")) as led:
        digest = led.put_trained(method="mend", tensors=trained.net.to_tensors(), meta=trained.artifact_meta(1.0))
    hp = {**HP, "network": digest, "network_ledger": str(tmp_path / "net.db")}
    stream = make_stream("sequential", builtin_records(seed=0), n=2, seed=0)
    led = Ledger.open(str(tmp_path / "run.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(method="mend", hparams=hp, keyframe_every=4, progress=False,
                                       general="none")).start(stream.steps, stream_name=stream.name,
                                                              stream_digest=stream.digest, stream_kind=stream.kind)
    versions = {v.step: v for v in led.versions(run_id)}
    s.checkout(s.base_version_id)
    names = sorted({d.tensor for v in versions.values() for d in led.deltas(v.id) if d.kind != "keyframe"})
    assert len(names) == len(trained.hp.layers)                # one tensor per edited layer
    W0 = {n: s.param(n).detach().double().clone() for n in names}
    for step in (1, 2):
        v = versions[step]
        h = {p.metric: p.value for p in led.probes(v.id, "health") if p.against == "none"}
        deltas = [d for d in led.deltas(v.id) if d.kind != "keyframe"]
        s.checkout(v.id)
        W = {n: s.param(n).detach().double() for n in names}
        assert h["delta_norm"] == pytest.approx(sum(d.norm ** 2 for d in deltas) ** 0.5, rel=1e-9)
        assert h["drift"] == pytest.approx(max(float((W[n] - W0[n]).norm() / W0[n].norm()) for n in names), rel=1e-4)
        assert h["weight_norm_ratio"] == pytest.approx(max(float(W[n].norm() / W0[n].norm()) for n in names), rel=1e-6)
        assert h["cond"] == pytest.approx(max(float(torch.linalg.cond(W[n])) for n in names), rel=1e-6)
        assert h["drift"] > 0 and "ppl" in h
        assert "key_norm" not in h and "denominator" not in h
    led.close()
