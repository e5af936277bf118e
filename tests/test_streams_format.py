"""Stream file format: round trip, canonical digest, and malformed files -> line + field + exit 2."""
import hashlib
import json

import pytest

from editledger.cli import main
from simulator.requests import EditRequest, ProbeItem, Step
from simulator.streams import Stream, StreamFormatError, load_stream, save_stream


def _step(**over):
    d = {"v": 1, "kind": "sequential",
         "requests": [{"subject": "France", "prompt": "The capital of {} is", "target_new": " Rome",
                       "target_old": " Paris", "relation": "capital"}],
         "probes": {"rewrite": [{"prompt": "The capital of France is", "target": " Rome", "alt": " Paris"}],
                    "round": [{"prompt": "The capital of France is", "target": " Rome",
                               "choices": [" Paris", " Rome"], "label": 1}]}}
    d.update(over)
    return d


def _write(tmp_path, lines, name="s.jsonl"):
    p = tmp_path / name
    p.write_bytes(b"".join((ln if isinstance(ln, bytes) else json.dumps(ln).encode()) + b"\n"
                           for ln in lines))
    return p


def test_round_trip_and_digest(tmp_path):
    steps = [Step(requests=[EditRequest("France", "The capital of {} is", " Rome", " Paris", "capital")],
                  kind="round", group="g0", role="forward",
                  probes={"round": [ProbeItem("The capital of France is", " Rome",
                                              choices=(" Paris", " Rome"), label=1, meta={"x": "é"})]}),
             Step(requests=[EditRequest("France", "The capital of {} is", " Paris", " Rome", "capital")],
                  kind="round", group="g0", role="back")]
    s = Stream("demo", "round", steps, meta={"seed": 0})
    p = tmp_path / "out" / "demo.jsonl"
    save_stream(s, p)
    back = load_stream(p)
    assert back.steps == steps and back.name == "demo" and back.kind == "round"
    assert back.meta == {"seed": 0}
    # digest = sha256 of the canonical step lines, computed by hand here (header excluded)
    body = p.read_bytes().split(b"\n", 1)[1]
    assert back.digest == s.digest == hashlib.sha256(body).hexdigest()
    # a header-less file with the same steps in another key order has the same digest
    lines = [json.dumps(st.to_dict(), indent=None, sort_keys=False) for st in steps]
    q = tmp_path / "plain.jsonl"
    q.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plain = load_stream(q)
    assert plain.digest == s.digest and plain.name == "plain" and plain.kind == "round"


def test_mixed_kind_without_header(tmp_path):
    p = _write(tmp_path, [_step(), _step(kind="round")])
    assert load_stream(p).kind == "mixed"


MALFORMED = [
    # (what, lines, line number, field text expected in the message)
    ("missing field", [_step(), {"v": 1, "kind": "sequential",
                                 "requests": [{"subject": "France", "prompt": "The capital of {} is"}]}],
     2, "requests[0].target_new"),
    ("wrong type", [_step(requests=[{"subject": "France", "prompt": "The capital of {} is",
                                     "target_new": 7}])], 1, "requests[0].target_new"),
    ("empty target", [_step(), _step(), _step(requests=[{"subject": "France", "prompt": "The capital of {} is",
                                                         "target_new": "  "}])], 3, "requests[0].target_new"),
    ("empty probe target", [_step(probes={"rewrite": [{"prompt": "p", "target": ""}]})], 1,
     "probes.rewrite[0].target"),
    ("unknown kind", [_step(kind="zigzag")], 1, "field kind"),
    ("unknown suite", [_step(probes={"vibes": []})], 1, "probes.vibes"),
    ("missing version", [{k: v for k, v in _step().items() if k != "v"}], 1, "field v"),
    ("future version", [_step(v=2)], 1, "field v"),
    ("no placeholder", [_step(requests=[{"subject": "France", "prompt": "The capital is",
                                         "target_new": " Rome"}])], 1, "requests[0].prompt"),
    ("typo field", [_step(requets=[])], 1, "field requets"),
    ("label out of range", [_step(probes={"round": [{"prompt": "p", "target": " a", "choices": [" a"],
                                                     "label": 3}]})], 1, "probes.round[0].label"),
    ("two requests in a sequential step", [_step(requests=_step()["requests"] * 2)], 1, "field requests"),
]


@pytest.mark.parametrize("what,lines,lineno,fld", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_names_line_and_field(tmp_path, capsys, what, lines, lineno, fld):
    p = _write(tmp_path, lines)
    with pytest.raises(StreamFormatError) as e:
        load_stream(p)
    assert f"line {lineno}" in str(e.value) and fld in str(e.value), str(e.value)
    assert main(["stream", "check", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"line {lineno}" in err and fld in err and "Traceback" not in err


def test_truncated_line(tmp_path, capsys):
    good = json.dumps(_step()).encode()
    p = tmp_path / "t.jsonl"
    p.write_bytes(good + b"\n" + good[: len(good) // 2])  # cut off mid-line, no final newline
    assert main(["stream", "check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "truncated" in err


def test_not_utf8(tmp_path, capsys):
    good = json.dumps(_step()).encode()
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(good + b"\n" + good.replace(b"France", b"Fran\xe7e") + b"\n")
    assert main(["stream", "check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "not UTF-8" in err and "0xe7" in err


def test_bom_and_crlf_are_accepted(tmp_path):
    p = tmp_path / "win.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(_step()).encode() + b"\r\n" + json.dumps(_step()).encode() + b"\r\n")
    s = load_stream(p)
    assert len(s.steps) == 2 and s.digest == Stream("x", "sequential", s.steps).digest


def test_bad_json_header_misplaced_and_empty(tmp_path):
    p = _write(tmp_path, [_step(), b"{not json"])
    with pytest.raises(StreamFormatError, match="line 2.*not valid JSON"):
        load_stream(p)
    p = _write(tmp_path, [_step(), {"v": 1, "stream": "late"}])
    with pytest.raises(StreamFormatError, match="line 2, field stream"):
        load_stream(p)
    p = _write(tmp_path, [{"v": 1, "stream": "empty", "kind": "sequential"}])
    with pytest.raises(StreamFormatError, match="no steps"):
        load_stream(p)
    p = _write(tmp_path, [{"v": 1, "stream": "h", "kind": "round"}, _step()])
    with pytest.raises(StreamFormatError, match="header says kind 'round'"):
        load_stream(p)
    with pytest.raises(StreamFormatError, match="not found"):
        load_stream(tmp_path / "nope.jsonl")


def test_check_prints_summary(tmp_path, capsys):
    p = _write(tmp_path, [_step(), _step()])
    assert main(["stream", "check", str(p)]) == 0
    out = capsys.readouterr().out
    assert "2 steps" in out and "rewrite 2" in out and "valid" in out
