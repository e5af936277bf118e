"""The replay/history CLI end to end on tiny-gptj, and its user errors (exit codes, no tracebacks)."""
from __future__ import annotations

import json

import pytest

from editledger.cli import main
from ledger import Ledger

TINY = ["--model", "tiny-gptj", "--device", "cpu", "--stats-tokens", "256", "--general", "none"]


@pytest.fixture()
def stream_file(tmp_path):
    out = tmp_path / "seq.jsonl"
    assert main(["stream", "make", "--kind", "sequential", "--n", "4", "--from", "builtin", "--seed", "0",
                 "-o", str(out)]) == 0
    return out


def test_replay_log_reset_revert_checkout_export(tmp_path, stream_file, capsys):
    db = str(tmp_path / "l.db")
    assert main(["--db", db, "replay", str(stream_file), *TINY]) == 0
    with Ledger.open(db) as led:
        (run,) = [led.run(r.id) for r in led.runs()]
        assert run.status == "done" and run.step_count == 4
    assert main(["--db", db, "log", str(run.id)]) == 0
    log = capsys.readouterr().out
    assert log.count("[edit]") == 4 and "(HEAD)" in log
    assert main(["--db", db, "reset", str(run.id), "--to", "2"]) == 0
    assert main(["--db", db, "revert", str(run.id), "1"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "checkout", f"{run.id}@3", "--export", str(tmp_path / "out"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and (tmp_path / "out" / "config.json").exists()
    meta = json.loads((tmp_path / "out" / "editledger.json").read_text())
    with Ledger.open(db) as led:
        kinds = [v.kind for v in led.versions(run.id)]
        assert kinds.count("reset") == 1 and kinds.count("revert") == 1
        assert meta["tensor_fingerprints"] == led.version(meta["version_id"]).tensor_fingerprints


def test_stop_condition_rolls_back_and_is_recorded(tmp_path, stream_file, capsys):
    db = str(tmp_path / "l.db")
    # retention is first measured at step 2 and is at most 1: the condition holds there
    assert main(["--db", db, "replay", str(stream_file), *TINY, "--stop-when", "retention.efficacy_top1<=1"]) == 0
    with Ledger.open(db) as led:
        (run,) = [led.run(r.id) for r in led.runs()]
        assert run.status == "stopped" and "step 2" in run.note
        head = led.version(run.head_version_id)
        assert head.kind == "reset" and "retention.efficacy_top1<=1" in head.note
        assert led.version(head.parent_id).step == 1
        assert run.config["stop_when"] == ["retention.efficacy_top1<=1"]


BAD_LINES = {
    "missing field": '{"v": 1, "kind": "sequential", "requests": [{"prompt": "{} is in", "target_new": " Rome"}]}',
    "wrong type": '{"v": 1, "kind": "sequential", "requests": [{"subject": 3, "prompt": "{} is in", "target_new": " Rome"}]}',
    "empty target": '{"v": 1, "kind": "sequential", "requests": [{"subject": "X", "prompt": "{} is in", "target_new": ""}]}',
    "unknown kind": '{"v": 1, "kind": "sideways", "requests": [{"subject": "X", "prompt": "{} is in", "target_new": " Rome"}]}',
    "truncated line": '{"v": 1, "kind": "sequential", "requests": [{"subject": "X"',
}


@pytest.mark.parametrize("case", sorted(BAD_LINES) + ["not UTF-8"])
def test_malformed_stream_exit_2_names_line_and_field_and_writes_nothing(tmp_path, stream_file, case, capsys):
    good = stream_file.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    if case == "not UTF-8":
        bad.write_bytes(("\n".join(good[:2]) + "\n").encode() + b'{"v": 1, "kind": "sequ\xe9ntial"}\n')
    else:
        bad.write_text("\n".join(good[:2] + [BAD_LINES[case]]) + ("\n" if case != "truncated line" else ""))
    db = tmp_path / "l.db"
    assert main(["--db", str(db), "replay", str(bad), *TINY]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "Traceback" not in err, err
    assert not db.exists() or Ledger.open(str(db)).runs() == []


def test_user_errors_are_one_line_messages(tmp_path, stream_file, capsys):
    db = str(tmp_path / "l.db")
    assert main(["--db", db, "replay", str(stream_file), "--model", "no-such-model"]) == 2
    assert "Known names" in capsys.readouterr().err
    assert main(["--db", db, "replay", str(tmp_path / "missing.jsonl"), *TINY]) == 2
    assert main(["--db", db, "reset", "99", "--to", "1"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no run" in err
