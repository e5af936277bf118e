"""Benchmark adapters on the real samples in ../shared/data (skipped when absent): every adapter
parses its sample, and the first record of each maps to the fields read off the file by hand."""
import json
import os
from pathlib import Path

import pytest

from ledger.errors import InputError
from simulator.streams import make_stream, read_benchmark
from simulator.streams.adapters import detect

SHARED = Path(os.environ.get("EDITLEDGER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATA = SHARED / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared benchmark samples absent")

FILES = {
    "counterfact-rome": "counterfact/rome_format/cf_preview.json",
    "counterfact-easyedit": "counterfact/easyedit_format/counterfact-edit-1k.json",
    "zsre-mend": "zsre/zsre_mend_train-1k.json",
    "zsre-portability": "portability/zsre_mend_eval_portability_gpt4.json",
    "knowedit-counterfact": "portability/knowedit_wiki_counterfact/test_cf.json",
    "mquake": "mquake/MQuAKE-hard.json",
    "conflictedit-reverse": "conflictedit/GPT-J/reverse_edit.json",
    "conflictedit-composite": "conflictedit/GPT-J/composite_edit.json",
    "conflictedit-coverage": "conflictedit/GPT-J/coverage_edit.json",
    "roundedit-easy": "roundedit/GPT-J/easy.json",
    "roundedit-hard": "roundedit/GPT-J/hard.json",
}
_cache = {}


def records(name):
    if name not in _cache:
        _cache[name] = read_benchmark(DATA / FILES[name])
    return _cache[name]


def items(rec, suite, step=0):
    return rec.probes[step][suite]


@needs_data
@pytest.mark.parametrize("name", list(FILES))
def test_every_adapter_parses_its_sample(name):
    raw = json.loads((DATA / FILES[name]).read_text("utf-8"))
    recs = records(name)
    # at most 1% of records can be unusable (subject absent from the prompt, braces, empty target)
    assert len(recs) >= 0.99 * len(raw), (name, len(recs), len(raw))
    for r in recs[:50]:
        for req in r.requests:
            assert req.target_new.startswith(" ") and req.target_new.strip()
            assert req.prompt.count("{}") == 1 and req.text.startswith(req.prompt.split("{}")[0])
        assert "rewrite" in r.probes[0]


@needs_data
def test_counterfact_rome_first_record():
    r = records("counterfact-rome")[0]
    (req,) = r.requests
    assert (req.subject, req.prompt, req.target_new, req.target_old, req.relation, req.case_id) == \
        ("Danielle Darrieux", "The mother tongue of {} is", " English", " French", "P103", "0")
    assert items(r, "rewrite")[0].prompt == "The mother tongue of Danielle Darrieux is"
    assert [p.prompt for p in items(r, "paraphrase")][1].startswith("An album was recorded for Capitol")
    nb = items(r, "neighborhood")
    assert len(nb) == 10 and nb[0].prompt == "The mother tongue of Léon Blum is"
    assert (nb[0].target, nb[0].alt) == (" French", " English")
    dn = items(r, "distract")[0]  # the edit sentence, then a neighbour's prompt
    assert dn.prompt == "The mother tongue of Danielle Darrieux is English. The mother tongue of Léon Blum is"
    assert (dn.target, dn.alt) == (" French", " English")
    # ROME's attribute_prompts ask about other subjects, not other attributes of this one: not OA
    assert "attribute" not in r.probes[0]


@needs_data
def test_counterfact_easyedit_and_zsre_first_records():
    r = records("counterfact-easyedit")[0]
    assert r.requests[0].prompt == "{} professionally plays the sport"
    assert (r.requests[0].target_new, r.requests[0].target_old) == (" baseball", " basketball")
    assert items(r, "neighborhood")[0].prompt == "Shaquille O'Neal plays"
    z = records("zsre-mend")[0]
    assert (z.requests[0].subject, z.requests[0].prompt) == ("UniFirst", "What is the product made by {}?")
    assert (z.requests[0].target_new, z.requests[0].target_old) == (" unmanned aircraft", " uniform")
    assert items(z, "paraphrase")[0].prompt == "What will be the product of UniFirst?"
    loc = items(z, "neighborhood")[0]
    assert (loc.prompt, loc.target) == ("nq question: john goodman's character in the big lebowski", " Walter Sobchak")
    p = records("zsre-portability")[0]
    oh = items(p, "portability_oh")[0]
    assert oh.target == " Athletics" and oh.prompt.startswith("What type of sports event is the IAAF")


@needs_data
def test_knowedit_portability_first_record():
    r = records("knowedit-counterfact")[0]
    assert r.requests[0].prompt == "The name of the country of citizenship of {} is"
    assert (r.requests[0].target_new, r.requests[0].target_old) == (" Syria", " United States of America")
    sr = items(r, "portability_sr")
    assert sr[0].prompt == "The name of the country of citizenship of Di Caprio is" and sr[0].target == " Syria"
    assert " Syrian Arab Republic" in sr[0].answers
    oh = items(r, "portability_oh")[0]
    assert oh.target == " Syrian pound" and " SYP" in oh.answers
    at = items(r, "attribute")[0]
    assert (at.prompt, at.target) == ("The name of the mother of Leonardo DiCaprio is", " Irmelin DiCaprio")


@needs_data
def test_mquake_first_case():
    r = records("mquake")[0]
    assert r.native == "multihop" and len(r.requests) == 4
    assert (r.requests[0].subject, r.requests[0].target_new, r.requests[0].target_old) == \
        ("Hey Jude", " Madonna", " The Beatles")
    assert r.requests[3].prompt == "The official language of {} is"
    assert "multihop" not in r.probes[0] and items(r, "paraphrase", 1)[0].prompt == "Who is the director of Madonna?"
    mh = items(r, "multihop", 3)
    qs = [p for p in mh if p.meta["kind"] == "question"]
    hops = [p for p in mh if p.meta["kind"] == "hop"]
    assert len(qs) == 3 and len(hops) == 4
    assert (qs[0].target, qs[0].alt) == (" Arabic", " English") and " Arabic language" in qs[0].answers
    # MQuAKE's official few-shot prompt (found next to the file) before "Q: ... A:"
    demos = (DATA / "mquake/official_prompts/multihop-prompts.txt").read_text("utf-8").strip()
    assert qs[0].prompt == demos + "\nQ: " + json.loads((DATA / FILES["mquake"]).read_text())[0]["questions"][0] + " A:"
    assert {q.meta["prompting"] for q in qs} == {"few-shot"}
    # every hop of MQuAKE-hard is edited: asked as its cloze statement (MQuAKE's setup for edited facts)
    assert (hops[0].prompt, hops[0].target, hops[0].meta["prompting"]) == ("Hey Jude was performed by", " Madonna", "cloze")


@needs_data
def test_mquake_prompts_required_or_zero_shot_on_request(tmp_path):
    lone = tmp_path / "mq.json"
    lone.write_text((DATA / FILES["mquake"]).read_text("utf-8"))
    with pytest.raises(InputError, match="--mquake-prompts zero-shot"):
        read_benchmark(lone)
    zs = read_benchmark(lone, mquake_prompts="zero-shot")[0]
    q = next(p for p in items(zs, "multihop", 3) if p.meta["kind"] == "question")
    assert q.prompt.startswith("Q: ") and q.prompt.endswith(" A:") and q.meta["prompting"] == "zero-shot"
    again = read_benchmark(lone, mquake_prompts=DATA / "mquake/official_prompts")[0]
    assert items(again, "multihop", 3)[0].prompt.startswith("Q: What is the country where The Rotunda")


@needs_data
def test_conflictedit_cases():
    r = records("conflictedit-reverse")[0]
    assert r.native == "reverse_conflict"
    e1, e2 = r.requests
    assert (e1.subject, e1.target_new, e1.target_old) == \
        ("Francisco de Goya", " landscape with fighting bulls", " The Second of May 1808")
    assert (e2.subject, e2.prompt, e2.target_new, e2.target_old) == \
        ("landscape with fighting bulls", "The creater of {} is", " Richard Strauss", " Francisco de Goya")
    # evaluate_conflictedit.py (explicit): k_o = edit 1's fact through edit 1's prompt, k_n = edit 2's
    # fact through edit 2's prompt, each also through the relation's templates in conflict_prompts.json
    assert "conflict" not in r.probes[0]
    c = items(r, "conflict", 1)
    ko = [p for p in c if p.meta["fact"] == "k_o"]
    kn = [p for p in c if p.meta["fact"] == "k_n"]
    templates = json.loads((DATA / "conflictedit/GPT-J/conflict_prompts.json").read_text("utf-8"))
    assert len(ko) == 1 + len(templates["P800"]) and len(kn) == 1 + len(templates["P170"])
    assert (ko[0].prompt, ko[0].target) == ("The notable work of Francisco de Goya is", " landscape with fighting bulls")
    assert (kn[0].prompt, kn[0].target) == ("The creater of landscape with fighting bulls is", " Richard Strauss")
    assert ko[1].prompt == templates["P800"][0].replace("{}", "Francisco de Goya").rstrip()
    assert all(p.alt is None for p in c)
    r = records("conflictedit-composite")[0]
    c = items(r, "conflict", 1)
    ko = next(p for p in c if p.meta["fact"] == "k_o")
    kn = next(p for p in c if p.meta["fact"] == "k_n")
    assert (ko.prompt, ko.target) == ("The jurisdiction of member of the House of Commons of Canada is", " Hungary")
    assert (kn.prompt, kn.target) == ("The citizenship of Irwin Cotler is", " Republic of Ireland")
    tied = items(r, "tied_fact", 1)
    assert (tied[0].prompt, tied[0].target) == ("Irwin Cotler held the position of",
                                                " member of the House of Commons of Canada")
    assert len(tied) == 1 + len(templates["P39"]) and {t.meta["fact"] for t in tied} == {"k_f"}
    r = records("conflictedit-coverage")[0]
    assert r.native == "coverage_conflict"
    assert [q.target_new for q in r.requests] == [" Ludwig Cromme", " Heinz Prüfer"]


@needs_data
def test_roundedit_case_and_round_stream():
    r = records("roundedit-easy")[0]
    assert r.native == "round" and r.objects == (" North America", " Asia", " Europe")
    (req,) = r.requests
    assert (req.subject, req.prompt, req.target_new, req.target_old) == \
        ("Human World Tour", "{} is located in", " Château de Chantilly", " North America")
    templates = json.loads((DATA / "roundedit/GPT-J/round_prompts.json").read_text("utf-8"))[req.relation]
    assert r.round_prompts == tuple(t.rstrip().replace("{}", "Human World Tour") for t in templates)
    assert items(r, "paraphrase")  # the same templates, as paraphrases of the edit
    s = make_stream("round", [r], n=1, seed=0)
    fwd, back = s.steps
    assert "round" not in fwd.probes
    rnd = back.probes["round"]
    assert [i.prompt for i in rnd] == [req.text, *r.round_prompts]
    assert all((i.choices, i.label, i.target, i.alt) == (r.objects, 0, " North America", " Château de Chantilly")
               for i in rnd)
    assert back.requests[0].target_new == " North America"


@needs_data
def test_native_case_streams_from_real_files():
    for name, kind in (("conflictedit-reverse", "reverse_conflict"), ("conflictedit-composite", "composite_conflict"),
                       ("mquake", "multihop")):
        s = make_stream(kind, records(name), n=3, seed=1)
        assert {st.kind for st in s.steps} == {kind}
        assert len({st.group for st in s.steps}) == 3
    with pytest.raises(InputError, match="needs cases made for it"):
        make_stream("multihop", records("counterfact-easyedit"), n=3, seed=0)


def test_detect_and_bad_inputs(tmp_path):
    assert detect({"src": "q", "alt": "a", "subject": "s"}) == "zsre-mend"
    assert detect({"edit": {}, "true_objects": []}) == "roundedit"
    assert detect({"foo": 1}) is None
    p = tmp_path / "odd.json"
    p.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(InputError, match="unrecognised benchmark format"):
        read_benchmark(p)
    p.write_text("[not json")
    with pytest.raises(InputError, match="not a JSON benchmark file"):
        read_benchmark(p)
    p.write_text(json.dumps([{"src": "Who is X?", "alt": "Y", "subject": "X", "rephrase": 3, "answers": []},
                             {"subject": "X", "alt": "Z"}]))
    with pytest.raises(InputError, match="record 1 does not follow the zsre-mend format"):
        read_benchmark(p)
    with pytest.raises(InputError, match="not found"):
        read_benchmark(tmp_path / "missing.json")


@needs_data
def test_cli_make_from_benchmark_files(tmp_path, capsys):
    from editledger.cli import main
    from simulator.streams import load_stream
    for fname, kind in (("conflictedit/GPT-J/composite_edit.json", "composite_conflict"),
                        ("counterfact/rome_format/cf_preview.json", "round"),
                        ("mquake/MQuAKE-hard.json", "multihop")):
        out = tmp_path / f"{kind}.jsonl"
        assert main(["stream", "make", "--kind", kind, "--n", "2", "--from", str(DATA / fname),
                     "--seed", "0", "-o", str(out)]) == 0, capsys.readouterr().err
        s = load_stream(out)
        assert s.kind == kind and len({st.group for st in s.steps}) == 2
        # a stream file is itself a valid source
        out2 = tmp_path / f"{kind}-again.jsonl"
        assert main(["stream", "make", "--kind", kind, "--n", "2", "--from", str(out), "-o", str(out2)]) == 0
        assert {st.group for st in load_stream(out2).steps} == {st.group for st in s.steps}
