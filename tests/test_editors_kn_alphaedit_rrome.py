"""KN, AlphaEdit and r-ROME on tiny-gptj: each edit takes on its prompt, and each method's defining property
is checked against a by-hand (float64) computation of its reference code's formula."""
from __future__ import annotations

import copy

import pytest
import torch

import simulator.editors.rome as rome_mod
from ledger.errors import InputError
from simulator.deltas import StateDelta, apply_delta
from simulator.editors import get_editor, load_hparams
from simulator.editors.alphaedit import AlphaState
from simulator.editors.common import build_rows, pad_id_of
from simulator.editors.kn import integrated_gradients, neurons_of_delta
from simulator.models import model_fingerprint
from simulator.requests import EditRequest
from simulator.stats import Corpus, InMemoryStatsCache, StatsProvider

EIFFEL = EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome",
                     target_old=" Paris")
TOYOTA = EditRequest(subject="Toyota", prompt="{} was founded in", target_new=" Germany", target_old=" Japan")


@pytest.fixture(scope="module")
def provider(tiny):
    return StatsProvider(tiny.fingerprint, Corpus(kind="self", n_tokens=1024, seq_len=64, seed=0),
                         InMemoryStatsCache(), progress=False)


def _probs(model, tok, req) -> tuple[float, float, bool]:
    """p(new), p(old) of the first target token after the prompt, and whether new is the top token."""
    ids = tok(req.text, return_tensors="pt")
    with torch.no_grad():
        p = model(**ids).logits[0, -1].softmax(-1)
    new, old = tok(req.target_new)["input_ids"][0], tok(req.target_old)["input_ids"][0]
    return float(p[new]), float(p[old]), int(p.argmax()) == new


def _applied(model, result):
    m = copy.deepcopy(model)
    for d in result.deltas:
        apply_delta(m.get_parameter(d.tensor), d)
    return m


# ------------------------------------------------------------------------------------------------ r-ROME
class _Spy:
    """Records what ROME's closed form is called with (the keys of both computations)."""

    def __init__(self, monkeypatch):
        self.calls = []
        orig = rome_mod.rome_solve          # the closed form with its solve diagnostics (what the editor calls)

        def spy(W, b, C, k, v_star, k_left=None):
            self.calls.append({"k": k.clone(), "k_left": (k if k_left is None else k_left).clone(),
                               "v_star": v_star.clone()})
            return orig(W, b, C, k, v_star, k_left=k_left)
        monkeypatch.setattr(rome_mod, "rome_solve", spy)


def _keys_by_hand(tiny, req, prefixes) -> torch.Tensor:
    """fc_out's input at the subject's last token for each context prefix, by a forward hook (float64)."""
    spec, tok = tiny.spec, tiny.tokenizer
    rows = build_rows(tok, spec, req, prefixes, None, pad_id_of(tok))
    mod = tiny.model.get_submodule(spec.rewrite_module.format(1))
    got = {}
    h = mod.register_forward_pre_hook(lambda _m, i: got.__setitem__("x", i[0].detach()))
    try:
        with torch.no_grad():
            tiny.model(input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    finally:
        h.remove()
    return torch.stack([got["x"][r, int(rows.lookup[r])].double() for r in range(len(prefixes))])


def test_rrome_key_is_the_same_in_the_value_and_key_computations(tiny, provider, monkeypatch):
    spy = _Spy(monkeypatch)
    hp = load_hparams("r-rome", tiny.spec)
    res = get_editor("r-rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp, stats=provider)
    (call,) = spy.calls
    assert torch.equal(call["k"], call["k_left"])                       # one key on both sides
    by_hand = _keys_by_hand(tiny, EIFFEL, hp.context_prefixes).mean(0)  # k*: the mean over the prefixes
    assert torch.allclose(call["k"].double(), by_hand, rtol=1e-5, atol=1e-6)
    assert res.diagnostics["requests"][0]["keys_consistent"] is True
    # the update writes v* at exactly that key: W' k* + b = v*
    m = _applied(tiny.model, res)
    fc = m.get_submodule(tiny.spec.rewrite_module.format(1))
    out = fc(call["k"][None].float())[0].double()
    assert torch.allclose(out, call["v_star"].double(), rtol=1e-4, atol=1e-4 * float(call["v_star"].norm()))
    p_new, _, top = _probs(m, tiny.tokenizer, EIFFEL)
    assert top and p_new > 0.3, f"r-rome did not take: p(Rome) = {p_new:.3f}"
    assert model_fingerprint(tiny.model) == tiny.fingerprint


def test_rrome_original_switch_reproduces_published_rome_keys(tiny, provider, monkeypatch):
    spy = _Spy(monkeypatch)
    hp = load_hparams("r-rome", tiny.spec, overrides={"keys": "original"})
    res = get_editor("r-rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp, stats=provider)
    (call,) = spy.calls
    keys = _keys_by_hand(tiny, EIFFEL, hp.context_prefixes)
    assert torch.allclose(call["k_left"].double(), keys.mean(0), rtol=1e-5, atol=1e-6)   # compute_u: k*
    assert torch.allclose(call["k"].double(), keys[0], rtol=1e-5, atol=1e-6)             # compute_v: k(s)
    assert not torch.equal(call["k"], call["k_left"]) and res.diagnostics["requests"][0]["key_gap_rel"] > 0.01
    with pytest.raises(InputError, match="keys"):
        get_editor("r-rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL],
                                  load_hparams("r-rome", tiny.spec, overrides={"keys": "both"}), stats=provider)


def test_rome_is_published_rome_and_differs_from_rrome(tiny, provider):
    """editledger's ROME is ROME as published: r-ROME with keys="original", bit for bit; r-ROME's own
    keys (k* on both sides) give a different update."""
    a = get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], load_hparams("rome", tiny.spec),
                                stats=provider)
    b = get_editor("r-rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL],
                                  load_hparams("r-rome", tiny.spec, overrides={"keys": "original"}), stats=provider)
    assert all(torch.equal(x.factors[k], y.factors[k]) for x, y in zip(a.deltas, b.deltas) for k in x.factors)
    c = get_editor("r-rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], load_hparams("r-rome", tiny.spec),
                                  stats=provider)
    assert not torch.equal(a.deltas[0].factors["u"], c.deltas[0].factors["u"])
    assert a.diagnostics["method"] == "rome" and b.diagnostics["method"] == "r-rome"


# -------------------------------------------------------------------------------------------- AlphaEdit
def test_alphaedit_update_is_orthogonal_to_the_preserved_keys_and_takes(tiny, provider):
    hp = load_hparams("alphaedit", tiny.spec)
    ed = get_editor("alphaedit")
    res = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp, stats=provider)
    assert model_fingerprint(tiny.model) == tiny.fingerprint
    assert [d.tensor for d in res.deltas] == [tiny.spec.rewrite_weight(i) for i in hp.layers]
    for d, layer in zip(res.deltas, hp.layers):
        _, C = provider.get(tiny.model, tiny.tokenizer, tiny.spec, layer)
        # the reference (get_project): SVD of the covariance; the preserved keys span its singular vectors
        # with singular value >= threshold
        U, S, _ = torch.linalg.svd(C.double(), full_matrices=False)
        kept = U[:, S >= hp.nullspace_threshold]
        assert 0 < kept.shape[1] < C.shape[0]
        D = d.dense(torch.float64)                                   # (out, in) for GPT-J's fc_out
        rel = float((D @ kept).norm() / (D.norm() * kept.norm()))
        assert rel < 1e-5, f"layer {layer}: update not orthogonal to the preserved keys ({rel:.2e})"
    m = _applied(tiny.model, res)
    p0, _, _ = _probs(tiny.model, tiny.tokenizer, EIFFEL)
    p1, _, top = _probs(m, tiny.tokenizer, EIFFEL)
    assert top and p1 > 10 * p0, f"alphaedit: p(Rome) {p0:.4f} -> {p1:.4f}"


def test_alphaedit_closed_form_matches_the_reference_expression_with_earlier_keys(tiny, provider):
    """Delta^T = solve(P (K K^T + cache_c) + L2 I, P K R^T) (AlphaEdit_main.py), with cache_c the folded
    keys of an earlier edit; and the state folds to the sum of the earlier keys' outer products."""
    hp = load_hparams("alphaedit", tiny.spec)
    ed = get_editor("alphaedit")
    first = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [TOYOTA], hp, stats=provider)
    assert first.state is not None and set(first.state.tensors) == {f"keys.{i}" for i in hp.layers}
    st = ed.fold(ed.empty_state(), StateDelta(first.state.tensors, first.state.data))
    for layer in hp.layers:
        k = first.state.tensors[f"keys.{layer}"].double()
        assert torch.equal(st.cache[layer], sum(torch.outer(r, r) for r in k))
    # canonical snapshot: folding the snapshot from empty gives the same state
    st2 = ed.fold(ed.empty_state(), ed.snapshot(st))
    assert all(torch.equal(st.cache[i], st2.cache[i]) for i in hp.layers)
    assert ed.snapshot(st).fingerprint() == ed.snapshot(st2).fingerprint()

    import simulator.editors.alphaedit as ae
    seen = []
    orig = ae.alphaedit_closed_form

    def spy(P, K, R, Kp_cov, l2):
        seen.append((P.clone(), K.clone(), R.clone(), None if Kp_cov is None else Kp_cov.clone()))
        return orig(P, K, R, Kp_cov, l2)
    ae.alphaedit_closed_form = spy
    try:
        second = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp, stats=provider, state=st)
    finally:
        ae.alphaedit_closed_form = orig
    for (P, K, R, Kp), d in zip(seen, second.deltas):
        assert Kp is not None
        P, K, R, Kp = P.double(), K.double(), R.double(), Kp.double()
        ref = torch.linalg.solve(P @ (K @ K.T + Kp) + hp.L2 * torch.eye(P.shape[0], dtype=torch.float64), P @ K @ R.T)
        got = d.dense(torch.float64).T                               # the reference's (in, out) layout
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    # without the earlier keys the update differs (the state matters)
    alone = ed.edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp, stats=provider, state=AlphaState())
    assert not torch.allclose(alone.deltas[0].dense(), second.deltas[0].dense())


# ----------------------------------------------------------------------------------------------------- KN
def _ig_by_hand(tiny, ids, target, layer, steps) -> torch.Tensor:
    """The reference's integrated gradients for one layer, one alpha at a time, in float64."""
    m = copy.deepcopy(tiny.model).double()
    mod = m.get_submodule(tiny.spec.rewrite_module.format(layer))
    x = torch.tensor([ids])
    got = {}
    h = mod.register_forward_pre_hook(lambda _m, i: got.__setitem__("a", i[0][0, -1].detach().clone()))
    with torch.no_grad():
        m(input_ids=x)
    h.remove()
    a = got["a"]
    total = torch.zeros_like(a)
    for alpha in torch.linspace(0, 1, steps, dtype=torch.float64):
        s = (alpha * a).requires_grad_(True)

        def rep(_m, inputs, s=s):
            act = inputs[0].clone()
            act[0, -1] = s
            return (act,)
        h = mod.register_forward_pre_hook(rep)
        p = m(input_ids=x).logits[0, -1].softmax(-1)[target]
        h.remove()
        (g,) = torch.autograd.grad(p, s)
        total += g
    return total * a / steps


def test_kn_integrated_gradients_match_the_reference_formula_by_hand(tiny):
    ids = tiny.tokenizer(EIFFEL.text)["input_ids"]
    paris = tiny.tokenizer(" Paris")["input_ids"][0]
    for layer in (0, 3):
        got = integrated_gradients(tiny.model, tiny.spec, ids, paris, layer, steps=20, batch_size=7)
        ref = _ig_by_hand(tiny, ids, paris, layer, 20)
        assert torch.allclose(got.double(), ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))


def test_kn_delta_touches_only_the_neurons_it_reports_and_takes(tiny):
    hp = load_hparams("kn", tiny.spec)
    res = get_editor("kn").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL], hp)
    assert model_fingerprint(tiny.model) == tiny.fingerprint
    reported = {tuple(n) for n in res.diagnostics["requests"][0]["neurons"]}
    assert reported and all(d.kind == "sparse" for d in res.deltas)
    m = _applied(tiny.model, res)
    touched = set()
    for d in res.deltas:
        layer = int(d.tensor.split(".")[2])
        W0 = tiny.model.get_parameter(d.tensor).detach()
        cols = neurons_of_delta(tiny.spec, d, tuple(W0.shape))
        touched |= {(layer, c) for c in cols}
        changed = (m.get_parameter(d.tensor).detach() != W0)
        assert set(torch.nonzero(changed.any(0)).flatten().tolist()) <= cols   # fc_out (out, in): a neuron is a column
        assert not changed[:, [c for c in range(W0.shape[1]) if c not in cols]].any()
    assert touched == reported
    # each column moved by 2 e(Rome) - 2 e(prediction) (a one-token target), the reference's edit
    emb = tiny.model.get_input_embeddings().weight.detach()
    pred = res.diagnostics["requests"][0]["predicted_ids"][0]
    rome = tiny.tokenizer(" Rome")["input_ids"][0]
    layer, col = sorted(reported)[0]
    name = tiny.spec.rewrite_weight(layer)
    diff = m.get_parameter(name).detach()[:, col] - tiny.model.get_parameter(name).detach()[:, col]
    assert torch.allclose(diff, 2 * emb[rome] - 2 * emb[pred], atol=1e-6)
    # the edit moves the prediction towards the new target on its prompt
    p_new0, p_old0, _ = _probs(tiny.model, tiny.tokenizer, EIFFEL)
    p_new1, p_old1, _ = _probs(m, tiny.tokenizer, EIFFEL)
    assert p_new1 > 3 * p_new0 and p_old1 < p_old0, (p_new0, p_new1, p_old0, p_old1)


def test_kn_needs_the_old_answer(tiny):
    req = EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome")
    with pytest.raises(InputError, match="target_old"):
        get_editor("kn").edit(tiny.model, tiny.tokenizer, tiny.spec, [req], load_hparams("kn", tiny.spec))
