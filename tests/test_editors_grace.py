"""GRACE: the codebook rules against hand-worked geometry, the hook's replacement (bit for bit elsewhere),
the fold of any sub-sequence of steps, and the editor contract on tiny-gptj (every version, revert of a
middle step, the audit's "head without step k", branch and resume reproduce outputs exactly)."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from test_contract import UNRELATED, _start, _stream
from test_contract import test_every_version_revert_branch_and_resume_reproduce_outputs as contract_check
from torch import nn

from ledger import Ledger
from ledger.history import version_at
from simulator.audit import Finding, verify
from simulator.deltas import StateDelta
from simulator.editors import get_editor, load_hparams
from simulator.editors.grace import SPLIT_MARGIN, Codebook, Entry, GRACERuntime, _query, nearest, place
from simulator.editors.common import token_ids
from simulator.requests import EditRequest
from simulator.session import Session


def _e(key, radius, label, value=(0.0, 0.0)) -> Entry:
    return Entry(0, torch.tensor(key, dtype=torch.float32), torch.tensor(value, dtype=torch.float32), radius, label)


# ---------------------------------------------------------------- the codebook rule (reference iteration 0)
def test_place_follows_the_reference_rules_on_hand_worked_geometry():
    a = ("a", _e([0.0, 0.0], 1.0, " Rome"))
    q = torch.tensor
    assert place([], q([1.0, 1.0]), " Rome", 1.0, "coverage").kind == "add"
    # |(3,4)| = 5 > eps 1 + radius 1: a new entry with radius eps
    p = place([a], q([3.0, 4.0]), " Rome", 1.0, "coverage")
    assert (p.kind, p.near, p.distance, p.new_radius) == ("add", "a", 5.0, 1.0)
    # |(0.6,0.8)| = 1, another label: a new entry; radii split to d/2 - 1e-5 (old) and d/2 (new)
    p = place([a], q([0.6, 0.8]), " Paris", 1.0, "coverage")
    assert p.kind == "split" and p.near_radius == pytest.approx(0.5 - SPLIT_MARGIN, abs=1e-12)
    assert p.new_radius == pytest.approx(0.5, abs=1e-7)
    # |(1.2,1.6)| = 2 <= eps + radius, same label, beyond the radius: coverage expands it to 2
    p = place([a], q([1.2, 1.6]), " Rome", 1.0, "coverage")
    assert (p.kind, p.near_key) == ("expand", None) and p.near_radius == pytest.approx(2.0, abs=1e-6)
    # moving_average: the key moves halfway, to (0.6, 0.8), and the radius is the distance 2
    p = place([a], q([1.2, 1.6]), " Rome", 1.0, "moving_average")
    assert p.near_radius == pytest.approx(2.0, abs=1e-6)
    assert torch.allclose(p.near_key, q([0.6, 0.8]))
    # |(0.3,0.4)| = 0.5 inside the radius, same label: nothing moves (the value is retrained)
    p = place([a], q([0.3, 0.4]), " Rome", 1.0, "coverage")
    assert (p.kind, p.near_radius, p.new_radius) == ("within", None, None)


def test_nearest_breaks_ties_towards_the_newest_key():
    keys = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    dist, idx = nearest(keys, torch.tensor([[0.0, 0.0], [0.9, 0.0], [0.0, 3.0]]))
    assert idx.tolist() == [2, 1, 2] and dist.tolist() == pytest.approx([0.0, 0.1, 3.0], abs=1e-6)


# ---------------------------------------------------------------- the hook
def test_runtime_replaces_within_radius_and_leaves_every_other_position_bit_identical():
    torch.manual_seed(0)
    model = nn.Module()
    model.h = nn.ModuleList([nn.Linear(3, 2)])
    spec = SimpleNamespace(rewrite_module="h.{}")
    book = Codebook({"a": Entry(0, torch.tensor([1.0, 0.0, 0.0]), torch.tensor([7.0, 7.0]), 0.5, " A"),
                     "b": Entry(0, torch.tensor([0.0, 1.0, 0.0]), torch.tensor([8.0, 8.0]), 0.2, " B"),
                     "c": Entry(0, torch.tensor([0.0, 1.0, 0.0]), torch.tensor([9.0, 9.0]), 0.2, " C")})
    x = torch.tensor([[[1.0, 0.0, 0.3],     # 0.3 from a (radius 0.5): a's value
                       [0.0, 1.1, 0.0],     # 0.1 from b and c (same key): the newest, c
                       [0.0, 0.0, 1.0],     # far from all: untouched
                       [1.0, 0.6, 0.0]]])   # nearest a at 0.6 > 0.5: untouched
    base = model.h[0](x)
    with GRACERuntime(model, spec, book).active():
        out = model.h[0](x)
    assert out[0, 0].tolist() == [7.0, 7.0] and out[0, 1].tolist() == [9.0, 9.0]
    assert torch.equal(out[0, 2:], base[0, 2:])
    with GRACERuntime(model, spec, book).active():       # nothing in any radius: the very same numbers
        assert torch.equal(model.h[0](x[:, 2:]), base[:, 2:])
    assert not model.h[0]._forward_hooks                  # removed on exit


# ---------------------------------------------------------------- fold of any sub-sequence
def _add(i, eid, key, value, radius, label="x"):
    return ({"op": "add", "id": eid, "layer": 0, "label": label, "radius": radius},
            {f"{i}.key": torch.tensor(key), f"{i}.value": torch.tensor(value)})


def _steps():
    s1 = _add(0, "A", [0.0, 0.0], [1.0], 1.0)
    a, at = _add(0, "B", [5.0, 0.0], [2.0], 1.0)
    s2 = StateDelta({**at}, {"ops": [a, {"op": "radius", "id": "A", "radius": 0.75}]})
    s3 = StateDelta({"0.value": torch.tensor([3.0])}, {"ops": [{"op": "value", "id": "A"}]})
    s4 = StateDelta({"0.key": torch.tensor([4.0, 0.0])},
                    {"ops": [{"op": "key", "id": "B"}, {"op": "radius", "id": "B", "radius": 2.0}]})
    return [StateDelta(s1[1], {"ops": [s1[0]]}), s2, s3, s4]


def _fold(steps):
    ed = get_editor("grace")
    st = ed.empty_state()
    for d in steps:
        st = ed.fold(st, d)
    return st


def test_fold_applies_each_step_and_skips_operations_on_entries_a_revert_removed():
    s = _steps()
    full = _fold(s)
    assert list(full.entries) == ["A", "B"]
    assert full.entries["A"].radius == 0.75 and full.entries["A"].value.tolist() == [3.0]
    assert full.entries["B"].key.tolist() == [4.0, 0.0] and full.entries["B"].radius == 2.0
    without_1 = _fold([s[1], s[2], s[3]])                  # A's own step gone: its radius and value skipped
    assert list(without_1.entries) == ["B"] and without_1.entries["B"].radius == 2.0
    without_2 = _fold([s[0], s[2], s[3]])                  # B gone: A keeps radius 1.0, takes step 3's value
    assert list(without_2.entries) == ["A"] and without_2.entries["A"].radius == 1.0
    assert without_2.entries["A"].value.tolist() == [3.0]
    snap = get_editor("grace").snapshot(full)
    assert snap.data["ids"] == ["A", "B"] and snap.data["radii"] == [0.75, 2.0]
    assert snap.tensors["keys"].tolist() == [[0.0, 0.0], [4.0, 0.0]]
    assert s[0].tensors["0.key"].tolist() == [0.0, 0.0]     # the (cached) step artifacts were not mutated
    with pytest.raises(ValueError, match="added twice"):
        _fold([s[0], s[0]])


# ---------------------------------------------------------------- on tiny-gptj
def test_grace_follows_the_editor_contract_on_tiny_gptj(tmp_path):
    contract_check(tmp_path, "grace")


def test_edited_inputs_change_and_inputs_outside_every_radius_give_base_logits_bit_for_bit(tmp_path):
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    lm = s.lm
    stream = _stream(3)
    texts = [st.requests[0].text for st in stream.steps]
    others = [p for p, _ in UNRELATED] + ["The Louvre is a museum in", "Paris is the capital of"]

    def logits(text):
        ids = torch.tensor([token_ids(lm.tokenizer, text)])
        with s.view.active():
            return lm.model(input_ids=ids).logits[0]
    base = {t: logits(t) for t in texts + others}
    run_id = _start(s, "grace", stream)
    s.checkout(led.run(run_id).head_version_id)
    book = s.state("grace")
    assert len(book.entries) == 3 and set(s.fingerprints) == {"@grace"}
    for t in texts:                                       # the edited prompt's last position is replaced
        assert not torch.equal(logits(t)[-1], base[t][-1]), t
    hp = load_hparams("grace", lm.spec)
    keys = torch.stack([e.key for e in book.entries.values()])
    radii = torch.tensor([e.radius for e in book.entries.values()])
    for t in others:
        ids = torch.tensor([token_ids(lm.tokenizer, t)])
        xs = torch.stack([_query(lm.model, lm.spec, hp.layer, ids, i)[0] for i in range(ids.shape[1])])
        dist, idx = nearest(keys, xs)
        assert bool((dist > radii[idx]).all()), f"{t!r} lies inside a radius; pick another prompt"
        assert torch.equal(logits(t), base[t]), t
    # and the weights never moved
    assert all(torch.equal(p, q) for p, q in zip(lm.model.state_dict().values(),
                                                 Session.open(led, "tiny-gptj", device="cpu",
                                                              progress=False).lm.model.state_dict().values()))


def test_same_label_expands_and_another_label_splits_recorded_as_operations(tiny):
    ed = get_editor("grace")
    hp = load_hparams("grace", tiny.spec, None, {"n_iter": 5})
    weights = copy.deepcopy(tiny.model.state_dict())
    req = EditRequest("Japan", "The capital of {} is", " Rome")
    torch.manual_seed(0)
    r1 = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [req], hp)
    st = ed.fold(ed.empty_state(), r1.state)
    assert [o["op"] for o in r1.state.data["ops"]] == ["add"] and r1.deltas == []
    r2 = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [req], hp, state=st)        # same prompt, same label
    assert r2.diagnostics["edits"][0]["placement"] == "within"
    assert [o["op"] for o in r2.state.data["ops"]] == ["value"]
    other = EditRequest("Japan", "The capital of {} is", " Paris")
    r3 = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [other], hp, state=st)      # same prompt, other label
    assert [o["op"] for o in r3.state.data["ops"]] == ["radius", "add"]
    split = ed.fold(st, r3.state)
    (old, new) = split.entries.values()
    assert old.radius == pytest.approx(-SPLIT_MARGIN, abs=1e-9) and new.radius == 0.0    # d = 0: d/2 - 1e-5, d/2
    assert all(torch.equal(weights[k], v) for k, v in tiny.model.state_dict().items())   # the edit is pure


def test_audit_head_without_a_step_for_grace(tmp_path):
    """The audit's counterfactual: the head without step 2 (its entry gone, the others kept), measured,
    and the session back at the head afterwards."""
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = _start(s, "grace", _stream(3))
    v = {k: version_at(led, run_id, k) for k in (1, 2, 3)}
    ids = {k: [o["id"] for o in led_state_ops(led, v[k].id) if o["op"] == "add"] for k in v}
    s.materialise(led.run(run_id).head_version_id, without={v[2].id})
    assert list(s.state("grace").entries) == ids[1] + ids[3] and s.current_version_id is None
    # a forgetting finding names the edits it made the model forget; the check re-reads their prompts
    suspect = Finding(v[2].id, 2, "retention.forgetting", 1.0, "suspect", evidence={"forgotten": [{"edit_step": 1}]})
    (f,) = verify(s, run_id, [suspect], progress=False)
    assert 0.0 <= f.evidence["counterfactual"]["head_without_step"] <= 1.0
    assert s.fingerprints == led.version(led.run(run_id).head_version_id).tensor_fingerprints


def led_state_ops(led: Ledger, version_id: int) -> list[dict]:
    (row,) = [r for r in led.deltas(version_id) if r.kind == "state"]
    tensors, header = led.read_artifact_with_header(row.artifact_digest)
    return StateDelta.from_artifact(tensors, header).data["ops"]
