"""docs/python.md runs as written: every ```python block, in order, in one namespace, in an empty
directory, on tiny-gptj. Then its results are checked through the public module only: this file
imports editledger and nothing of ledger, simulator or tui (nor does the walk-through)."""
from __future__ import annotations

import re
from pathlib import Path

import editledger

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_walkthrough_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")              # files only, never a window
    blocks = BLOCK.findall(DOC.read_text("utf-8"))
    assert len(blocks) >= 8
    for b in blocks:
        assert not re.search(r"^\s*(from|import)\s+(ledger|simulator|tui)\b", b, re.M), b
    ns: dict = {}
    for i, code in enumerate(blocks, 1):
        exec(compile(code, f"{DOC.name}, python block {i}", "exec"), ns)

    # what the walk-through said it did
    assert Path("retention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run, culprit = ns["run"], ns["culprit"]
    with editledger.open("walkthrough.db", create=False) as led:
        runs = led.runs()
        assert list(runs["status"]) == ["done", "done"] and runs.loc[ns["ee_run"], "name"] == "easyedit"
        log = led.log(run)
        head = log[log["is_head"]].iloc[0]
        assert head["kind"] == "revert" and f"revert step {culprit}" in head["note"]
        # the revert is the counterfactual it was tried as: the same answers, the same probabilities
        prompt = "The Taj Mahal is located in the city of"
        assert led.checkout(run).next_token(prompt, k=3) == ns["without_it"]
    assert sorted(p.name for p in Path("rome-results", f"run_{run:03d}").glob("case_*.json")) == \
        [f"case_{k}.json" for k in range(1, len(ns["stream"].steps) + 1)]
    assert "fact_token: 'last'" in ns["refused"]
