"""FT, ROME and MEMIT on tiny-gptj: the edit takes, the model is untouched, deltas have the promised shape."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from ledger.errors import InputError
from simulator.deltas import apply_delta
from simulator.editors import get_editor, load_hparams, method_names
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


def _prob(model, tok, req):
    ids = tok(req.text, return_tensors="pt")
    with torch.no_grad():
        p = model(**ids).logits[0, -1].softmax(-1)
    t = tok(req.target_new)["input_ids"][0]
    return float(p[t]), int(p.argmax()) == t


def _applied(model, result):
    m = copy.deepcopy(model)
    for d in result.deltas:
        apply_delta(m.get_parameter(d.tensor), d)
    return m


@pytest.mark.parametrize("method", ["ft", "rome", "memit"])
def test_edit_takes_and_model_untouched(tiny, provider, method):
    p0, top0 = _prob(tiny.model, tiny.tokenizer, EIFFEL)
    assert not top0
    res = get_editor(method).edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL],
                                  load_hparams(method, tiny.spec), stats=provider)
    assert model_fingerprint(tiny.model) == tiny.fingerprint, f"{method} changed the model it was given"
    json.dumps(res.diagnostics)  # JSON-serialisable
    p1, top1 = _prob(_applied(tiny.model, res), tiny.tokenizer, EIFFEL)
    assert p1 > p0 * 10 and top1, f"{method}: p(Rome) {p0:.4f} -> {p1:.4f}, top={top1}"
    hp = load_hparams(method, tiny.spec)
    if method == "ft":
        (d,) = res.deltas
        assert d.kind == "dense" and float(d.factors["delta"].abs().max()) <= hp.norm_constraint + 1e-7
    elif method == "rome":
        (d,) = res.deltas
        assert d.kind == "low_rank" and d.rank == 1 and d.tensor == "transformer.h.1.mlp.fc_out.weight"
        assert d.factors["u"].shape == (64, 1) and d.factors["v"].shape == (256, 1)
        assert len(res.stats_used) == 1
    else:
        assert [d.tensor for d in res.deltas] == [tiny.spec.rewrite_weight(i) for i in hp.layers]
        assert all(d.kind == "low_rank" and d.rank == 1 for d in res.deltas)
        assert len(res.stats_used) == len(hp.layers)


def test_memit_batch_rank_and_both_targets_rise(tiny, provider):
    hp = load_hparams("memit", tiny.spec)
    res = get_editor("memit").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL, TOYOTA], hp, stats=provider)
    assert all(d.rank == 2 for d in res.deltas)
    m = _applied(tiny.model, res)
    for req in (EIFFEL, TOYOTA):
        assert _prob(m, tiny.tokenizer, req)[0] > 2 * _prob(tiny.model, tiny.tokenizer, req)[0], req.subject
    assert _prob(m, tiny.tokenizer, EIFFEL)[1]
    assert model_fingerprint(tiny.model) == tiny.fingerprint


def test_rome_sequential_requests_make_two_deltas(tiny):
    hp = load_hparams("rome", tiny.spec, overrides={"mom2_adjustment": False})
    res = get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL, TOYOTA], hp)
    assert len(res.deltas) == 2 and res.stats_used == []
    assert res.diagnostics["second_moment"] == "identity"
    assert model_fingerprint(tiny.model) == tiny.fingerprint


def test_stats_are_cached_and_recorded(tiny):
    cache = InMemoryStatsCache()
    prov = StatsProvider(tiny.fingerprint, Corpus(n_tokens=256, seq_len=64), cache, progress=False)
    d1, C1 = prov.get(tiny.model, tiny.tokenizer, tiny.spec, 1)
    d2, C2 = prov.get(tiny.model, tiny.tokenizer, tiny.spec, 1)
    assert d1 == d2 and len(cache) == 1 and torch.equal(C1, C2)
    assert C1.shape == (256, 256) and torch.allclose(C1, C1.T)


def test_hparams_loading(tiny, tmp_path):
    assert {"ft", "rome", "memit"} <= set(method_names())
    hp = load_hparams("rome", tiny.spec)
    assert hp.layer == 1 and hp.clamp_norm_factor == 20.0
    f = tmp_path / "hp.json"
    f.write_text(json.dumps({"v_lr": 0.1, "layer": 2}))
    hp = load_hparams("rome", tiny.spec, path=str(f), overrides={"layer": 3})
    assert hp.v_lr == 0.1 and hp.layer == 3
    with pytest.raises(InputError, match="unknown rome hyper-parameters"):
        load_hparams("rome", tiny.spec, overrides={"v_lrr": 1})
    f.write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        load_hparams("rome", tiny.spec, path=str(f))
    with pytest.raises(InputError, match="unknown editing method 'no-such-method'; known: .*rome"):
        load_hparams("no-such-method", tiny.spec)
    with pytest.raises(InputError, match="unknown editing method"):
        get_editor("no-such-method")
    with pytest.raises(InputError, match="'layer' must be int, got 'x'"):
        load_hparams("rome", tiny.spec, overrides={"layer": "x"})
    with pytest.raises(InputError, match="outside the model"):
        load_hparams("rome", tiny.spec, overrides={"layer": tiny.spec.n_layers})
    with pytest.raises(InputError, match="'v_lr' must be >= 0"):
        load_hparams("rome", tiny.spec, overrides={"v_lr": -0.5})
    with pytest.raises(InputError, match="must be bool"):
        load_hparams("rome", tiny.spec, overrides={"fast": "yes"})
    with pytest.raises(InputError, match="'layers' must be list"):
        load_hparams("memit", tiny.spec, overrides={"layers": [1, "2"]})
    gj = load_hparams("memit", None, overrides=None)
    assert gj.layers == [3, 4, 5, 6, 7, 8] and gj.mom2_update_weight == 15000.0


def test_fast_path_matches_naive_loop(tiny):
    """Blocks below the edit replayed + lm head on the needed positions only == the plain loop."""
    hp = dict(mom2_adjustment=False, early_stop_prob=2.0, v_num_grad_steps=8)
    fast = get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL],
                                   load_hparams("rome", tiny.spec, overrides=hp))
    naive = get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.spec, [EIFFEL],
                                    load_hparams("rome", tiny.spec, overrides={**hp, "fast": False}))
    a, b = fast.deltas[0].dense(torch.float64), naive.deltas[0].dense(torch.float64)
    assert float((a - b).norm() / b.norm()) < 1e-3
    fl, nl = fast.diagnostics["requests"][0]["losses"], naive.diagnostics["requests"][0]["losses"]
    assert fl == pytest.approx(nl, rel=1e-3)


def test_stats_refuse_to_collect_on_an_edited_model(tiny):
    from ledger.errors import IntegrityError
    m = copy.deepcopy(tiny.model)
    with torch.no_grad():
        m.transformer.h[1].mlp.fc_out.weight[0, 0] += 1.0
    prov = StatsProvider(tiny.fingerprint, Corpus(n_tokens=64, seq_len=32), InMemoryStatsCache(), progress=False)
    with pytest.raises(IntegrityError, match="base model"):
        prov.get(m, tiny.tokenizer, tiny.spec, 1)
    assert prov.prepare(tiny.model, tiny.tokenizer, tiny.spec, [1]) == [prov.get(m, tiny.tokenizer, tiny.spec, 1)[0]]
