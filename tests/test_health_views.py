"""The telemetry's outliers where a person looks, from the ledger alone: ``ledger.health.flagged``
against a hand-computed robust z, the report's health table, ``editledger log`` and the TUI
timeline; and a method that changes no weights is reported as such, not with made-up numbers."""
from __future__ import annotations

import json
import math

import pytest

from ledger import Ledger, health
from ledger.records import ProbeRecord
from simulator import report

# delta_rel per step: five ordinary steps and one ten times larger
DELTA_REL = [0.1, 0.1, 0.1, 0.1, 0.1, 1.0]
BIG = 6


def _run(led, bm, method, with_health, config=None):
    run = led.begin_run(base_model_id=bm.id, method=method, hparams={}, stream_name="s", stream_digest="0" * 64,
                        stream_kind="sequential", config=config or {})
    head = led.run(run.id).start_version_id
    for step, d in enumerate(DELTA_REL, start=1):
        probes = [ProbeRecord("rewrite", "efficacy_top1", 1.0, 1)]
        if with_health:
            probes += [ProbeRecord("health", "delta_rel", d, 1), ProbeRecord("health", "drift", 0.1 * step, 1),
                       ProbeRecord("health", "cond_ratio", 1.0 + 0.01 * step, 1),
                       ProbeRecord("health", "ppl_ratio", 1.0, 1), ProbeRecord("health", "ppl_step", 1.0, 1)]
        head = led.record_step(run.id, step=step, parent_version_id=head,
                               requests=[{"subject": f"S{step}", "prompt": "{} is in", "target_new": " X",
                                          "target_old": " Y"}],
                               deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0, probes=probes).id
    led.set_run_status(run.id, "done")
    return run.id


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("health") / "h.db")
    led = Ledger.open(path)
    bm = led.register_base_model(name="m", source="test", fingerprint="f" * 64, config={})
    weights = _run(led, bm, "rome", True)
    memory = _run(led, bm, "grace", False,
                  {"telemetry": {"health": "not recorded: grace changes no weights (its edits live in its method state)"}})
    yield led, path, weights, memory
    led.close()


def test_flagged_matches_the_robust_z_by_hand(ledger):
    led, _, run_id, _ = ledger
    got = health.flagged(led, run_id)
    (vid,) = got
    assert {v.id: v.step for v in led.versions(run_id)}[vid] == BIG
    # against the five others: log(0.1) each, MAD 0, so the scale is the floor 0.25
    assert got[vid]["delta_rel"] == pytest.approx((math.log(1.0) - math.log(0.1)) / 0.25)
    assert health.flagged(led, ledger[3]) == {}


def test_report_shows_the_health_table_and_the_flagged_step(ledger):
    led, _, run_id, grace = ledger
    reps = report.collect(led, [run_id, grace])
    r = reps[0]
    assert r.health["max ‖Δ‖/‖W₀‖"] == 1.0 and r.health["drift"] == pytest.approx(0.6)
    assert r.health["max κ/κ₀"] == pytest.approx(1.06) and [f["step"] for f in r.health_flags] == [BIG]
    assert reps[1].health == {} and reps[1].health_note.startswith("not recorded: grace changes no weights")
    text = report.render(reps)
    assert f"run-{run_id} step {BIG}: possible disabling edit (update size z=9.2)" in text
    assert f"run-{grace} (grace): not recorded: grace changes no weights" in text
    js = json.loads(report.render(reps, "json"))["health"]
    assert js[str(run_id)]["flagged"][0]["step"] == BIG and js[str(grace)]["columns"] is None
    assert "Health telemetry" in report.render(reps, "csv")


def test_log_marks_the_outlier(ledger):
    from editledger.commands.history import render_log
    led, _, run_id, _ = ledger
    lines = render_log(led, run_id).splitlines()
    marked = [ln for ln in lines if "telemetry outlier" in ln]
    assert len(marked) == 1 and f"step {BIG} " in marked[0] and "update size z=9.2" in marked[0]


def test_tui_timeline_flags_it(ledger):
    from tui.data import LedgerData
    from tui.screens.timeline import flags_text
    _, path, run_id, grace = ledger
    data = LedgerData.open(path)
    try:
        items, _ = data.timeline(run_id)
        flagged = [it for it in items if it.health]
        assert [it.step for it in flagged] == [BIG] and flagged[0].harmed and "health" in flagged[0].flag_words()
        assert "⚠‖Δ‖ z9" in flags_text(flagged[0]).plain
        items, _ = data.timeline(grace)
        assert not any(it.health for it in items)
    finally:
        data.close()
