"""The independent protocol end to end on tiny-gptj: every case from the base model (a fan of one-
and two-step branches inside one run), measured with ``ProbeRunner.measure(applied=...)``; the report
then prints Table 3 and Table 4 with every column filled, OT included, and names the protocol.

The run is made by the replay itself (``ReplayOptions(protocol="independent")``), as
``editledger replay --protocol independent`` makes it."""
from __future__ import annotations

import pytest

from ledger import Ledger
from simulator import report
from simulator.probes import GeneralSets, ProbeConfig, ProbeRunner
from simulator.probes.general.builtin import BUILTIN_PIQA
from simulator.probes.runner import groups_of
from simulator.replay import ReplayOptions, Replayer
from simulator.session import Session
from simulator.streams import MIXED, Stream, make_stream, read_benchmark
from simulator.streams.builtin import builtin_records


def _stream(data) -> Stream:
    seq = make_stream("sequential", builtin_records(seed=0), n=8, seed=2)
    parts = [seq,
             make_stream("reverse_conflict", read_benchmark(data / "conflictedit/GPT-J/reverse_edit.json"), n=1, seed=0),
             make_stream("composite_conflict", read_benchmark(data / "conflictedit/GPT-J/composite_edit.json"), n=1, seed=0),
             make_stream("round", read_benchmark(data / "roundedit/GPT-J/easy.json"), n=1, seed=0),
             # MQuAKE's few-shot prompt (~630 tokens here) does not fit tiny-gptj's 256 positions: zero-shot, labelled
             make_stream("multihop", read_benchmark(data / "mquake/MQuAKE-hard.json", mquake_prompts="zero-shot"),
                         n=1, seed=0)]
    return Stream("independent-mix", MIXED, [st for p in parts for st in p.steps])


@pytest.fixture(scope="module")
def independent(tmp_path_factory, shared_dir):
    stream = _stream(shared_dir / "data")
    led = Ledger.open(str(tmp_path_factory.mktemp("ind") / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    opts = ReplayOptions(method="rome", stats_tokens=256, keyframe_every=0, progress=False, general="none",
                         protocol="independent")
    rp = Replayer(s, opts)
    # the Other Task column (PIQA) on the built-in items only: the test needs no downstream files
    rp.probes = ProbeRunner(s.view, config=ProbeConfig(), progress=False,
                            general=GeneralSets(piqa=list(BUILTIN_PIQA), spec="piqa"))
    run_id = rp.start(stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind,
                      name="independent")
    yield led, run_id, stream
    led.close()


def test_every_case_starts_from_the_base(independent):
    led, run_id, stream = independent
    base = led.run(run_id).start_version_id
    parents = {v.step: v.parent_id for v in led.versions(run_id)}
    for members in groups_of(stream.steps).values():
        assert parents[members[0]] == base                      # the case's first edit is on the base
        for a, b in zip(members, members[1:]):                  # later ones on the case's own versions
            assert parents[b] != base


def test_report_fills_tables_3_and_4(independent):
    led, run_id, _ = independent
    (rep,) = report.collect(led, [run_id])
    assert rep.protocol == "independent"
    for col in list(report.TABLE3) + list(report.TABLE4):
        assert rep.columns[col] is not None, f"column {col} is empty"
    assert rep.marks == {"MH": "*"}, "zero-shot MQuAKE questions are marked as such"
    assert not any(c.endswith("@head") and v is not None for c, v in rep.columns.items())
    text = report.render([rep])
    assert text.count("protocol: independent: each case from the base model") == 3   # Tables 3, 4 and reliability
    (again,) = report.collect(led, [run_id], recompute=True)
    for col in list(report.TABLE3) + list(report.TABLE4):
        assert again.columns[col] == pytest.approx(rep.columns[col], rel=1e-12, abs=1e-12), col
