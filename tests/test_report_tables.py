"""The report renders from a ledger alone: hand-checked aggregates, the protocol, all formats, the
PNG, the CLI."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from ledger import Ledger
from ledger.records import ProbeRecord


def _fill(path, protocol=None):
    led = Ledger.open(str(path))
    base = led.register_base_model("tiny-gptj", "test", "a" * 64, {}, tensor_fingerprints={})
    runs = []
    for method, k in (("ROME", 1.0), ("MEMIT", 0.5)):
        config = {"reference": {"base_metrics": {"downstream.qa_em": 0.6, "perplexity.ppl": 20.0}}}
        if protocol and method == "MEMIT":
            config["options"] = {"protocol": protocol}
        run = led.begin_run(base_model_id=base.id, method=method, hparams={}, stream_name="s.jsonl",
                            stream_digest="b" * 64, stream_kind="sequential", name=f"{method.lower()}-run",
                            config=config)
        parent = run.head_version_id
        for step in (1, 2, 3, 4):
            probes = [
                ProbeRecord("portability_sr", "accuracy", k * step / 10, 2),           # mean over steps
                ProbeRecord("portability_rr", "accuracy", 0.5, 2),
                ProbeRecord("attribute", "oa", 1 - step / 20, 3, against="base"),       # the only OA value
                ProbeRecord("attribute", "oa", 0.99, 3, against="previous"),           # less preferred than base
                ProbeRecord("distract", "dn", 0.8, 1, against="base"),
                ProbeRecord("neighborhood", "nkl", 0.01 * step, 2, against="base"),
                ProbeRecord("retention", "efficacy_top1", 1 - step / 10, step - 1),
                ProbeRecord("downstream", "qa_em", 0.5 - 0.1 * step * k, 8),
                ProbeRecord("perplexity", "ppl", 20 + step * k, 100),
                ProbeRecord("perplexity", "ppl", step * k, 100, against="base"),       # the plain value wins
            ]
            if step in (2, 4):   # a case completes at steps 2 and 4: its metrics are recorded there, once
                probes += [ProbeRecord("conflict", "cs_reverse", step / 4, 1),
                           ProbeRecord("conflict", "cm_reverse", 0.1 * step, 1, against="previous"),
                           ProbeRecord("round", "distortion", 0.02 * step, 1, against="base"),
                           ProbeRecord("round", "ignore_rate", 0.25, 1, against="base"),
                           ProbeRecord("multihop", "mh_zeroshot", 1.0 if step == 4 else 0.0, 1)]
            if step == 4:        # the head: every case again
                probes += [ProbeRecord("conflict@head", "cs_reverse", 0.5, 2),
                           ProbeRecord("round@head", "distortion", 0.07, 2, against="base")]
            v = led.record_step(run.id, step=step, parent_version_id=parent,
                                requests=[{"subject": "s", "prompt": "{} is", "target_new": " x"}] * (2 if step == 3 else 1),
                                deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0, probes=probes)
            parent = v.id
        runs.append(run.id)
    led.close()
    return runs


@pytest.fixture()
def db(tmp_path):
    p = tmp_path / "l.db"
    return p, _fill(p, protocol="independent")


def test_collect_aggregates(db):
    from simulator import report
    path, runs = db
    led = Ledger.open(str(path), create=False)
    reps = report.collect(led, runs)
    led.close()
    rome, memit = reps
    assert rome.method == "ROME" and memit.method == "MEMIT"
    assert (rome.protocol, memit.protocol) == ("sequential", "independent")
    assert rome.columns["SR"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4) / 4)       # mean over steps
    assert memit.columns["SR"] == pytest.approx(0.125)
    assert rome.columns["OA"] == pytest.approx(1 - (1 + 2 + 3 + 4) / 80)          # base preferred over previous
    # group metrics: mean over the cases, each recorded where it completed (steps 2 and 4)
    assert rome.columns["CS rev"] == pytest.approx((0.5 + 1.0) / 2)
    assert rome.columns["CM rev"] == pytest.approx((0.2 + 0.4) / 2)
    assert rome.columns["D"] == pytest.approx((0.04 + 0.08) / 2) and rome.columns["IR"] == 0.25
    assert rome.columns["MH"] == 0.5 and rome.marks["MH"] == "*"                   # zero-shot stands in, marked
    assert rome.columns["OH"] is None and rome.columns["FR"] is None
    assert rome.columns["NKL·|V|"] == pytest.approx(0.025)
    assert rome.columns["Retention"] == pytest.approx(0.6)                        # the last step
    assert rome.columns["CS rev@head"] == 0.5 and rome.columns["D@head"] == 0.07
    assert memit.columns.get("CS rev@head") is None                               # no head in the independent protocol
    # Figure 4: x = number of edit requests (step 3 holds two), the base at 0 edits
    assert rome.curves["Perplexity"] == [(0, 20.0), (1, 21.0), (2, 22.0), (4, 23.0), (5, 24.0)]
    assert rome.curves["QA built-in (EM)"][0] == (0, 0.6)
    assert rome.curves["Retention (efficacy)"][0] == (1, 0.9)


def test_formats(db):
    from simulator import report
    path, runs = db
    led = Ledger.open(str(path), create=False)
    reps = report.collect(led, runs)
    led.close()
    text = report.render(reps, "text")
    assert "Table 3" in text and "Table 4" in text and "Figure 4" in text
    assert "protocol: independent: each case from the base model" in text and "sequential: each case measured" in text
    row = next(l for l in text.splitlines() if l.startswith("rome-run") and "25.00" in l)
    assert "50.00" in row and "sequential" in row          # SR 25.00, RR 50.00, protocol column
    assert "50.00*" in text                                # MH from zero-shot questions, marked
    md = report.render(reps, "markdown")
    assert "| run | method | protocol | SR | RR | OH | MH |" in md
    js = json.loads(report.render(reps, "json"))
    t3 = js["tables"]["Table 3: portability and generalisation"]
    assert t3[0]["SR"] == pytest.approx(0.25) and t3[0]["OH"] is None and t3[1]["protocol"] == "independent"
    assert js["curves"]["QA built-in (EM)"][str(runs[1])][:2] == [[0, 0.6], [1, pytest.approx(0.45)]]
    rows = list(csv.DictReader(io.StringIO(report.render(reps, "csv"))))
    sr = [r for r in rows if r["column"] == "SR" and r["run"] == "memit-run"]
    assert len(sr) == 1 and float(sr[0]["value"]) == pytest.approx(0.125) and sr[0]["protocol"] == "independent"
    assert any(r["table"] == "Figure 4" and r["edits"] == "4" for r in rows)


def test_cli_and_plot_without_model(db, tmp_path):
    """The CLI renders from the ledger in a fresh interpreter that never imports torch."""
    path, runs = db
    png = tmp_path / "fig4.png"
    code = ("import sys; from editledger.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'report imported torch'; "
            "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "--db", str(path), "report", "rome-run", str(runs[1]),
                        "--format", "markdown", "--plot", str(png)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "| rome-run | ROME | sequential |" in r.stdout and "| memit-run | MEMIT | independent |" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    bad = subprocess.run([sys.executable, "-m", "editledger", "--db", str(path), "report", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no run 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    old = subprocess.run([sys.executable, "-m", "editledger", "--db", str(path), "report", "rome-run", "--recompute"],
                         capture_output=True, text=True, timeout=120)
    assert old.returncode == 2 and "stream or base scores" in old.stderr and "Traceback" not in old.stderr
