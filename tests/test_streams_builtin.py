"""The built-in fact set, its check result, the demo stream, and `editledger stream make` on it."""
import json

import pytest

from editledger.cli import main
from simulator.facts import load_check, load_facts, passing
from simulator.requests import STREAM_KINDS
from simulator.streams import load_stream, save_stream
from simulator.streams.builtin import demo, demo_stream


def test_probes_follow_the_new_target():
    fs = load_facts()
    eiffel = fs.by_id["landmark-eiffel"]
    p = fs.probes(eiffel, "Rome")
    assert (p["rewrite"][0].prompt, p["rewrite"][0].target, p["rewrite"][0].alt) == \
        ("The Eiffel Tower is located in the city of", " Rome", " Paris")
    oh = p["portability_oh"][0]
    assert (oh.prompt, oh.target, oh.alt) == ("The Eiffel Tower is located in the country of", " Italy", " France")
    assert all(n.target != " Rome" and n.alt == " Rome" for n in p["neighborhood"])
    # same relation, the next facts in file order, skipping the Colosseum (its city is the new target)
    assert [n.prompt.split(" is located")[0] for n in p["neighborhood"]] == \
        ["The Statue of Liberty", "The Brandenburg Gate", "The Kremlin", "The Acropolis", "The Golden Gate Bridge"]
    france = fs.by_id["capital-france"]
    p = fs.probes(france, "Berlin")
    rr = p["portability_rr"][0]
    assert (rr.prompt, rr.target, rr.alt) == ("Berlin is the capital of", " France", " Germany")
    assert p["portability_sr"][0].prompt == "The capital of the French Republic is the city of"
    assert [a.prompt for a in p["attribute"]] == ["The official language of France is"]  # same subject, other relation
    assert "Rome" not in fs.candidates(fs.by_id["landmark-pisa"])  # a new city must change the country


def test_every_fact_has_paraphrase_neighbours_and_portability():
    fs = load_facts()
    assert 30 <= len(fs.facts) <= 60
    for f in fs.facts:
        new = fs.candidates(f)[0]
        p = fs.probes(f, new)
        assert p["paraphrase"] and p["neighborhood"], f.id
        assert any(s.startswith("portability_") for s in p), f"{f.id} has no portability probe"


def test_check_result_covers_the_fact_set():
    check = load_check()
    assert check is not None, "run scripts/check_facts.py"
    assert set(check["facts"]) == {f.id for f in load_facts().facts}, \
        "facts.json changed since the check: run scripts/check_facts.py again"
    ok = passing()
    assert len(ok) >= 30 and len(ok) == check["n_pass"]
    for f in ok:
        r = check["facts"][f.id]["rewrite"]
        assert r["continuation"].lstrip().startswith(f.target), f.id


def test_demo_stream(tmp_path):
    steps = demo_stream()
    assert len(steps) == 12 and all(len(s.requests) == 1 for s in steps)
    assert [s.kind for s in steps] == ["sequential"] * 4 + ["round"] * 2 + ["reverse_conflict"] * 2 + ["sequential"] * 4
    fwd, back = steps[4], steps[5]
    assert (fwd.role, back.role) == ("forward", "back") and fwd.group == back.group
    assert back.requests[0].target_new == fwd.requests[0].target_old
    assert (steps[6].role, steps[7].role) == ("first", "second")
    assert steps[7].requests[0].subject == steps[6].requests[0].target_new.strip()  # (o2, r2, s1 -> s2)
    ok = {f.id for f in passing()}
    for s in steps:
        for suite in ("rewrite", "paraphrase", "neighborhood"):
            assert s.probes.get(suite), (s.kind, s.role, suite)
        assert any(k.startswith("portability_") for k in s.probes), (s.kind, s.role)
        r = s.requests[0]
        assert r.target_new != r.target_old
    for s in steps[:6] + steps[8:]:
        assert s.requests[0].case_id in ok  # only facts that pass the check
    rnd = back.probes["round"]     # o1 (target) against o* (alt) over Obj, on the edit prompt and paraphrases
    assert "round" not in fwd.probes and [i.prompt for i in rnd][0] == fwd.requests[0].text and len(rnd) > 1
    assert (rnd[0].target, rnd[0].alt) == (fwd.requests[0].target_old, fwd.requests[0].target_new)
    assert rnd[0].choices[rnd[0].label] == fwd.requests[0].target_old and rnd[0].alt not in rnd[0].choices
    assert steps[0].probes["distract"][0].prompt.startswith(steps[0].requests[0].text + steps[0].requests[0].target_new + ". ")
    assert "distract" in fwd.probes and "distract" not in back.probes  # it would quote the forward edit
    # k_o: the first edit's own fact through its own prompts; k_n: the second edit's
    assert "conflict" not in steps[6].probes
    c = steps[7].probes["conflict"]
    ko = [i for i in c if i.meta["fact"] == "k_o"]
    kn = [i for i in c if i.meta["fact"] == "k_n"]
    assert (ko[0].prompt, ko[0].target) == (steps[6].requests[0].text, steps[6].requests[0].target_new)
    assert (kn[0].prompt, kn[0].target) == (steps[7].requests[0].text, steps[7].requests[0].target_new)
    assert len(ko) > 1 and len(kn) > 1       # + the relations' paraphrases (the conflict templates)
    assert demo_stream() == steps  # deterministic
    p = tmp_path / "demo.jsonl"
    save_stream(demo(), p)
    assert load_stream(p).steps == steps


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_cli_make_every_kind_from_builtin(tmp_path, capsys, kind):
    out = tmp_path / f"{kind}.jsonl"
    args = ["stream", "make", "--kind", kind, "--n", "3", "--from", "builtin", "--seed", "1"]
    args += ["--batch-size", "2"] if kind == "batch" else []
    args += ["-o", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    s = load_stream(out)
    assert s.name == kind and s.kind == kind and s.meta["source"] == "builtin"
    assert len({st.group for st in s.steps}) == (3 if kind != "sequential" and kind != "batch" else
                                                 (1 if kind == "sequential" else 2))
    assert main(["stream", "check", str(out)]) == 0
    # the same command gives the same file
    again = tmp_path / "again.jsonl"
    assert main(args[:-1] + [str(again)]) == 0
    assert load_stream(again).digest == s.digest


def test_builtin_composite_and_multihop_cases():
    from simulator.streams.builtin import synthesize
    comp = synthesize("composite_conflict", None, seed=0)[0]
    city_edit, landmark_edit = comp.requests
    tied = comp.probes[1]["tied_fact"][0]
    assert tied.target.strip() == city_edit.subject  # (s1, r, s2): the landmark lies in the edited city
    assert {t.meta["fact"] for t in comp.probes[1]["tied_fact"]} == {"k_f"}
    c = comp.probes[1]["conflict"]
    ko = next(i for i in c if i.meta["fact"] == "k_o")
    kn = next(i for i in c if i.meta["fact"] == "k_n")
    assert (ko.prompt, ko.target) == (city_edit.text, city_edit.target_new)
    assert (kn.prompt, kn.target) == (landmark_edit.text, landmark_edit.target_new)
    assert "conflict" not in comp.probes[0]
    mh = synthesize("multihop", None, seed=0)
    two = next(r for r in mh if len(r.requests) == 2)
    q = next(p for p in two.probes[-1]["multihop"] if p.meta["kind"] == "question")
    assert q.target == two.requests[1].target_new  # the chain ends at the second edit's new country
    assert q.meta["prompting"] == "zero-shot"      # a cloze, not MQuAKE's few-shot questions
    assert two.requests[1].subject == two.requests[0].target_new.strip()


def test_cli_make_refusals(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["stream", "make", "--kind", "sequential", "--n", "500", "--from", "builtin", "-o", str(out)]) == 2
    assert "only" in capsys.readouterr().err and not out.exists()
    assert main(["stream", "make", "--kind", "round", "--from", str(tmp_path / "none.json"), "-o", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a list"}))
    assert main(["stream", "make", "--kind", "round", "--from", str(bad), "-o", str(out)]) == 2
