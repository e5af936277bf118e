"""`editledger probe RUN@STEP`: a revert or reset recorded without measurements gets them, with the
edits in effect worked out from the lineage (a revert of a revert included)."""
from __future__ import annotations

import pytest

from editledger.cli import main
from ledger import Ledger
from ledger.history import revert, version_at
from simulator.reprobe import steps_in_effect

TINY = ["--model", "tiny-gptj", "--device", "cpu", "--stats-tokens", "128", "--general", "none"]


@pytest.fixture()
def replayed(tmp_path):
    out = tmp_path / "seq.jsonl"
    assert main(["stream", "make", "--kind", "sequential", "--n", "3", "--from", "builtin", "-o", str(out)]) == 0
    db = str(tmp_path / "l.db")
    assert main(["--db", db, "replay", str(out), *TINY]) == 0
    return db


def test_steps_in_effect_follow_reverts_of_reverts(replayed):
    with Ledger.open(replayed) as led:
        assert steps_in_effect(led, 1, version_at(led, 1, 3).id) == [1, 2, 3]
        r4 = revert(led, 1, 2)                  # step 4: the head without step 2 -> {1, 3}
        assert steps_in_effect(led, 1, r4.id) == [1, 3]
        r5 = revert(led, 1, 1)                  # step 5: that head without step 1 -> {3} (re-applies step 4's)
        assert steps_in_effect(led, 1, r5.id) == [3]
        assert steps_in_effect(led, 1, led.run(1).start_version_id) == []


def test_probe_fills_a_revert_and_refuses_twice(replayed, capsys):
    db = replayed
    assert main(["--db", db, "revert", "1", "2"]) == 0
    with Ledger.open(db) as led:
        v4 = version_at(led, 1, 4)
        assert led.probes(v4.id) == []
        edit3 = {(p.suite, p.metric, p.against): p.value for p in led.probes(version_at(led, 1, 3).id)}
    assert main(["--db", db, "probe", "1@4", "--device", "cpu"]) == 0
    assert "measurement(s) recorded" in capsys.readouterr().err
    with Ledger.open(db) as led:
        got = {(p.suite, p.metric, p.against): p.value for p in led.probes(v4.id)}
    # measured as the head of steps {1, 3}: step 3's own items are scored, and retention reads step 1 only
    assert ("rewrite", "efficacy_top1", "none") in got
    assert ("retention", "efficacy_top1", "none") in got
    # against the base and absolute, like the edit that made step 3; "previous" is its lineage parent
    # (step 1's version), which never scored step 3's items, so there is no such comparison
    assert got.keys() >= {k for k in edit3 if k[0] == "rewrite" and k[2] != "previous"}
    assert ("rewrite", "efficacy_prob", "previous") not in got
    # a second probe of the same version is refused with a clear message, not a duplicate row set
    assert main(["--db", db, "probe", "1@4", "--device", "cpu"]) != 0
    assert "already measured" in capsys.readouterr().err
