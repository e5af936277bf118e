"""make_stream on hand-made records: what each kind builds, seeding, and refusals."""
import pytest

from ledger.errors import InputError
from simulator.requests import EditRequest, ProbeItem
from simulator.streams import Record, load_stream, make_stream, read_benchmark, save_stream
from simulator.streams.records import distract


def rec(i, subject=None, old=" Paris", new=" Rome", rel="P36", **kw):
    subject = subject or f"Country{i}"
    req = EditRequest(subject, "The capital of {} is", new, old, rel, f"c{i}")
    probes = {"rewrite": [ProbeItem(req.text, new, alt=old)],
              "paraphrase": [ProbeItem(f"{subject}'s capital is", new, alt=old)],
              "neighborhood": [ProbeItem(f"The capital of Country{(i + 1) % 10} is", " Paris", alt=new)]}
    probes["distract"] = distract(req, probes["neighborhood"])
    return Record("test", f"c{i}", [req], [probes], **kw)


RECS = [rec(i, old=f" City{i}", new=f" City{(i + 5) % 10}") for i in range(10)]


def test_sequential_and_seed():
    s = make_stream("sequential", RECS, n=4, seed=0)
    assert len(s.steps) == 4 and all(st.kind == "sequential" and len(st.requests) == 1 for st in s.steps)
    assert len({st.requests[0].subject for st in s.steps}) == 4
    assert make_stream("sequential", RECS, n=4, seed=0).digest == s.digest
    assert make_stream("sequential", RECS, n=4, seed=1).digest != s.digest


def test_locality_items_about_already_edited_facts_are_dropped():
    s = make_stream("sequential", RECS, n=10, seed=3)
    edited = set()
    for st in s.steps:
        edited.add(st.requests[0].text)
        for p in st.probes.get("neighborhood", []):
            assert p.prompt not in edited
        for p in st.probes.get("distract", []):
            assert p.meta["neighbor"] not in edited
    # Country{i+1}'s neighbour item survives only where Country{i+1} is edited later
    kept = sum(len(st.probes.get("neighborhood", [])) for st in s.steps)
    assert 0 < kept < 10


def test_batch_groups_requests():
    s = make_stream("batch", RECS, n=7, seed=0, batch_size=3)
    assert [len(st.requests) for st in s.steps] == [3, 3, 1]
    assert all(st.kind == "batch" for st in s.steps)
    assert sum(len(st.probes["rewrite"]) for st in s.steps) == 7
    with pytest.raises(InputError, match="only for --kind batch"):
        make_stream("sequential", RECS, n=2, seed=0, batch_size=2)


def test_round_pairs_swap_targets_and_build_object_set():
    s = make_stream("round", RECS, n=2, seed=0)
    assert [st.role for st in s.steps] == ["forward", "back", "forward", "back"]
    fwd, back = s.steps[0], s.steps[1]
    assert fwd.group == back.group
    r, b = fwd.requests[0], back.requests[0]
    assert (b.subject, b.prompt, b.target_new, b.target_old) == (r.subject, r.prompt, r.target_old, r.target_new)
    assert back.probes["rewrite"][0].target == r.target_old and back.probes["rewrite"][0].alt == r.target_new
    assert back.probes["paraphrase"][0].target == r.target_old
    assert "round" not in fwd.probes            # the round items ride on the back step
    rnd = back.probes["round"]
    # the edit prompt, then its paraphrase (records without round templates average over paraphrases)
    assert [i.prompt for i in rnd] == [r.text, fwd.probes["paraphrase"][0].prompt]
    objs = rnd[0].choices
    assert objs[0] == r.target_old and len(objs) == 4 and r.target_new not in objs  # o1 + 3 same-relation objects
    assert all((i.target, i.alt, i.label, i.choices) == (r.target_old, r.target_new, 0, objs) for i in rnd)


def test_conflict_kinds_need_native_cases():
    with pytest.raises(InputError, match="needs cases made for it"):
        make_stream("reverse_conflict", RECS, n=1, seed=0)
    a, b = EditRequest("A", "{} wrote", " B", " C"), EditRequest("B", "{} was written by", " D", " A")
    case = Record("test", "k", [a, b], [{"conflict": [ProbeItem("A wrote", " B", meta={"fact": "k_o"})]}] * 2,
                  native="reverse_conflict")
    s = make_stream("reverse_conflict", RECS + [case], n=1, seed=0)
    assert [st.role for st in s.steps] == ["first", "second"] and s.steps[0].group == "k"


def test_too_many_and_unknown():
    with pytest.raises(InputError, match="only 10"):
        make_stream("sequential", RECS, n=11, seed=0)
    with pytest.raises(InputError, match="unknown stream kind"):
        make_stream("spiral", RECS, n=1, seed=0)


def test_stream_file_as_source_round_trip(tmp_path):
    s = make_stream("round", RECS, n=3, seed=0)
    p = tmp_path / "r.jsonl"
    save_stream(s, p)
    again = read_benchmark(p)
    assert len(again) == 3 and all(r.native == "round" for r in again)
    s2 = make_stream("round", again, n=3, seed=0)
    assert sorted(st.requests[0].subject for st in s2.steps) == sorted(st.requests[0].subject for st in s.steps)
    save_stream(s2, tmp_path / "r2.jsonl")
    assert load_stream(tmp_path / "r2.jsonl").digest == s2.digest
