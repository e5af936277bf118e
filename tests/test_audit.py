"""The audit on a ledger whose probes are written by hand: the culprits and shares are known."""
from __future__ import annotations

import pytest

from ledger import Ledger
from ledger.records import ProbeRecord
from simulator.audit import audit_run, decline, forgetting, leaks


def _req(subject, prompt="The capital of {} is", new=" X", old=" Y"):
    return {"subject": subject, "prompt": prompt, "target_new": new, "target_old": old}


@pytest.fixture()
def ledger(tmp_path):
    led = Ledger.open(str(tmp_path / "a.db"))
    bm = led.register_base_model(name="m", source="test", fingerprint="f" * 64, config={})
    run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s", stream_digest="0" * 64,
                        stream_kind="sequential", config={"reference": {"base_metrics": {"perplexity.ppl": 10.0}}})
    # step: (request, perplexity, retention rows {edit step: top1}, neighbourhood NS change vs base)
    plan = [
        (_req("A"), 10.0, {}, 0.0),
        (_req("B"), 11.0, {1: 1.0}, 0.0),
        (_req("C"), 17.0, {1: 0.0, 2: 0.0}, -0.5),       # step 3 loses edits 1 and 2, ppl +6, leaks
        (_req("A", new=" Y", old=" X"), 18.0, {1: 0.0, 2: 0.0, 3: 1.0}, 0.0),  # overwrites step 1's fact
        (_req("D"), 18.0, {1: 0.0, 2: 1.0, 3: 0.0, 4: 1.0}, 0.0),  # regains 2, loses 3
    ]
    head = led.run(run.id).start_version_id
    for step, (req, ppl, ret, dns) in enumerate(plan, start=1):
        probes = [ProbeRecord("perplexity", "ppl", ppl, 1)]
        if ret:
            rows = [{"step": j, "top1": t, "p_new": t, "at_edit": 1.0} for j, t in ret.items()]
            probes.append(ProbeRecord("retention", "efficacy_top1", sum(ret.values()) / len(ret), len(ret), rows))
        probes.append(ProbeRecord("neighborhood", "ns", 1.0 + dns, 2,
                                  [{"prompt": "The capital of Z is", "target": " Z", "p": 0.1, "p_base": 0.9,
                                    "top1": dns == 0.0}]))
        probes.append(ProbeRecord("neighborhood", "ns", dns, 2, None, against="base"))
        head = led.record_step(run.id, step=step, parent_version_id=head, requests=[req], deltas=[],
                               tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0, probes=probes).id
    yield led, run.id
    led.close()


def test_forgetting_names_the_step_that_lost_each_edit(ledger):
    led, run_id = ledger
    f = {x.step: x for x in forgetting(led, run_id)}
    # edit 1 was lost at step 3 but step 4 rewrote the same fact: superseded, not forgotten.
    # edit 2 was lost at step 3 and regained at step 5; edit 3 was lost at step 5.
    assert set(f) == {5}
    assert [g["edit_step"] for g in f[5].evidence["forgotten"]] == [3]
    assert f[5].score == pytest.approx(1.0)


def test_decline_splits_the_change_from_the_base(ledger):
    led, run_id = ledger
    found = decline(led, run_id, "perplexity", "ppl", higher_is_better=False, base_value=10.0)
    # 10 -> 10 -> 11 -> 17 -> 18 -> 18: total +8; step 3 is 6/8, then step 2 and 4 are 1/8 each
    assert [x.step for x in found][:1] == [3]
    assert found[0].score == pytest.approx(6 / 8)
    assert sum(x.score for x in found) >= 0.8
    assert found[0].evidence["before"] == 11.0 and found[0].evidence["after"] == 17.0


def test_leaks_and_the_whole_audit(ledger):
    led, run_id = ledger
    (leak,) = leaks(led, run_id)
    assert leak.step == 3 and leak.score == pytest.approx(0.5)
    assert leak.evidence["prompts_not_kept"][0]["prompt"] == "The capital of Z is"
    findings = audit_run(led, run_id)
    assert {x.metric for x in findings} == {"retention.forgetting", "perplexity.ppl", "neighborhood.ns"}
    led.record_audit(run_id, [x.to_dict() for x in findings])
    assert len(led.audit_findings(run_id)) == len(findings)


def test_verify_rebuilds_the_head_without_each_suspect(tmp_path):
    """Counterfactual evidence on a real tiny-gptj replay: the head without step 2 is measured, and
    the live weights are back at the head afterwards."""
    from simulator.audit import Finding, verify
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records
    stream = make_stream("sequential", builtin_records(seed=0), n=3, seed=0)
    led = Ledger.open(str(tmp_path / "v.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(stats_tokens=256, general="none", progress=False)).start(
        stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    v2 = [v for v in led.versions(run_id) if v.step == 2][0]
    (f,) = verify(s, run_id, [Finding(v2.id, 2, "retention.forgetting", 1.0, "suspect")], progress=False)
    cf = f.evidence["counterfactual"]
    assert cf["metric"] == "retention.efficacy_top1" and 0.0 <= cf["head_without_step"] <= 1.0
    head = led.version(led.run(run_id).head_version_id)
    assert s.fingerprints == head.tensor_fingerprints
    led.close()
