"""The audit on tiny-gptj runs with a planted cause (issue 13's "done means").

A 20-step ROME stream (gentle settings, so that the clean stream keeps the model's general ability)
is replayed three times: as it is; with one edit, at a random position, whose delta is scaled up a
hundred times; and with two edits that each add the same fixed rank-one direction, small enough
that neither hurts alone. The general-ability probe is the perplexity of tiny-gptj's own fact
sentences about subjects the stream does not edit (its "held knowledge")."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
import torch

from ledger import Ledger
from simulator.audit import audit_run, head_edits, rank_suspects
from simulator.audit_search import investigate
from simulator.deltas import TensorDelta
from simulator.editors.base import _REGISTRY, register_editor
from simulator.editors.rome import ROMEEditor, ROMEHyperParams
from simulator.models.specs import SPECS
from simulator.models.tiny import TINY_FACTS
from simulator.probes import EXPENSIVE, SUITES, GeneralSets, ProbeConfig, ProbeRunner
from simulator.requests import PROBE_SUITES
from simulator.telemetry import HealthConfig

N = 20
POSITION = random.Random(13).randint(1, N)      # where the destructive edit goes (drawn once, seeded)
PAIR = (7, 15)                                   # the two edits that do it only together
GENTLE = dict(clamp_norm_factor=0.5, v_num_grad_steps=10, mom2_adjustment=False)


@dataclass
class PlantedHyperParams(ROMEHyperParams):
    plant: list[str] = field(default_factory=list)   # subjects whose step is planted
    scale: float = 1.0                               # their ROME delta times this
    direction: float = 0.0                           # plus this norm times a fixed rank-one direction


class PlantedROME(ROMEEditor):
    """ROME, except at the planted subjects: the delta scaled up, and/or a fixed rank-one direction
    added (the same for every planted step: u random and seeded, v the mean MLP key of a fixed text)."""
    name = "rome-planted"
    hparams_class = PlantedHyperParams

    def edit(self, model, tokenizer, spec, requests, hparams, *, stats=None, state=None, progress=False):
        res = super().edit(model, tokenizer, spec, requests, hparams, stats=stats, state=state, progress=progress)
        if not any(r.subject in hparams.plant for r in requests):
            return res
        out = []
        for d in res.deltas:
            f = dict(d.factors)
            f["u"] = f["u"] * hparams.scale
            if hparams.direction:
                u, v = _direction(model, tokenizer, spec, hparams.layer, d.tensor)
                f["u"] = torch.cat([f["u"], u * hparams.direction], 1)
                f["v"] = torch.cat([f["v"], v], 1)
            out.append(TensorDelta(d.tensor, d.kind, f))
        res.deltas = out
        return res


@torch.no_grad()
def _direction(model, tokenizer, spec, layer, tensor):
    W = dict(model.named_parameters())[tensor]
    u = torch.randn(W.shape[0], 1, generator=torch.Generator().manual_seed(1234))
    cap = {}
    mod = model.get_submodule(spec.rewrite_module.format(layer))
    h = mod.register_forward_pre_hook(lambda _m, i: cap.__setitem__("k", i[0].detach()))
    try:
        model(**tokenizer("The city of Paris is located in the country of France.", return_tensors="pt"))
    finally:
        h.remove()
    v = cap["k"][0].mean(0)[:, None].float()
    return u / u.norm(), v / v.norm()


@pytest.fixture(scope="module", autouse=True)
def planted_method():
    """The planted method is registered for this module's tests only (a registry that other tests
    compare with the CLI's method list stays as the project ships it)."""
    register_editor(PlantedROME)
    yield
    _REGISTRY.pop(PlantedROME.name, None)


def _stream():
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records
    return make_stream("sequential", builtin_records(seed=0), n=N, seed=0)


def _held_text(stream) -> str:
    edited = {r.subject for st in stream.steps for r in st.requests}
    return " ".join(p.replace("{}", s) + o + "." for s, p, o in TINY_FACTS if s not in edited)


def _replay(path, plant_steps=(), scale=1.0, direction=0.0):
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    stream = _stream()
    led = Ledger.open(str(path))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    plant = [stream.steps[k - 1].requests[0].subject for k in plant_steps]
    hp = dict(SPECS["tiny-gptj"].hparams["rome"], **GENTLE, plant=plant, scale=scale, direction=direction)
    rep = Replayer(s, ReplayOptions(method="rome-planted", hparams=hp, stats_tokens=256, progress=False,
                                    general="none"))
    every = {x: 0 for x in {*PROBE_SUITES, *SUITES, *EXPENSIVE, "retention"}}
    every["perplexity"] = 1       # the general-ability probe at every step; the rest only at the end
    general = GeneralSets(text=_held_text(stream))
    rep.probes = ProbeRunner(s.view, config=ProbeConfig(every=every), general=general, progress=False)
    run_id = rep.start(stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    return led, s, run_id, general


def _audit(led, s, run_id, general):
    findings = audit_run(led, run_id)
    suspects = rank_suspects(led, findings)
    inv = investigate(s, run_id, head_edits(led, run_id), general=general, say=None, progress=False,
                      suspects=[x.version_id for x in suspects])
    return findings, suspects, inv


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    led, s, run_id, general = _replay(tmp_path_factory.mktemp("planted") / "p.db", [POSITION], scale=100.0)
    yield led, s, run_id, general
    led.close()


def test_a_destructive_edit_is_ranked_first_and_flagged_by_the_telemetry(planted):
    led, s, run_id, general = planted
    ref = led.run(run_id).config["reference"]["base_metrics"]["perplexity.ppl"]
    head = [v for _, v in led.trajectory(run_id, "perplexity", "ppl", against="none")][-1]
    assert head > 1.2 * ref, f"the planted edit at step {POSITION} should degrade the held facts' perplexity"
    findings, suspects, inv = _audit(led, s, run_id, general)
    # without the model: the ledger's shares and the telemetry put it first
    assert suspects[0].step == POSITION and suspects[0].score >= 0.5, [(x.step, x.score) for x in suspects]
    flags = [f for f in findings if f.metric == "health.outlier"]
    assert flags and flags[0].step == POSITION and flags[0].score > HealthConfig.z_threshold
    v = next(v for v in head_edits(led, run_id) if v.step == POSITION)
    online = {p.metric: p for p in led.probes(v.id, "health")}
    if POSITION > HealthConfig.min_history:       # flagged as it was recorded, against the run so far
        assert online["outlier_z"].value > HealthConfig.z_threshold
    # with the model: the search names it, alone
    culprits = inv.culprits()
    assert culprits and culprits[0].steps == (POSITION,) and culprits[0].kind == "single", inv.verdict
    assert inv.first_crossing["step"] == POSITION
    assert inv.ranking()[0]["step"] == POSITION
    assert s.current_version_id == led.run(run_id).head_version_id


def test_the_same_stream_without_it_gives_no_culprit(tmp_path):
    led, s, run_id, general = _replay(tmp_path / "clean.db")
    findings, suspects, inv = _audit(led, s, run_id, general)
    assert not [f for f in findings if f.metric == "health.outlier"]
    assert all(x.score < 0.5 for x in suspects)
    assert inv.culprits() == [] and "nothing to search" in inv.verdict
    led.close()


def test_two_edits_that_degrade_only_together_are_reported_as_a_pair(tmp_path):
    led, s, run_id, general = _replay(tmp_path / "pair.db", PAIR, direction=6.5)
    findings, suspects, inv = _audit(led, s, run_id, general)
    culprits = inv.culprits()
    assert culprits and culprits[0].steps == PAIR and culprits[0].kind == "and", inv.verdict
    assert all(p["reproduction"] < 0.5 for p in culprits[0].parts.values())
    assert f"step {PAIR[0]} and step {PAIR[1]} explain it together, and neither does alone" in inv.verdict
    led.close()


def test_cli_audit_and_bisect_on_the_planted_run(planted, capsys):
    import json
    from editledger.cli import main
    led, s, run_id, general = planted
    db = led.url
    assert main(["--db", db, "audit", str(run_id), "--json"]) == 0             # the ledger only
    got = json.loads(capsys.readouterr().out)
    assert got["suspects"][0]["step"] == POSITION and got["investigation"] is None
    assert main(["--db", db, "audit", str(run_id), "--verify", "--when", "health.cond>3x", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "group testing" in out and "verified checkouts" in out          # costs printed before the searches
    assert f"step {POSITION} explains it" in out
    rows = led.audit_findings(run_id)
    assert any(r.metric == "cause.health.cond" and r.evidence["steps"] == [POSITION] for r in rows)
    assert any(r.metric == "audit.verdict" for r in rows)
    assert main(["--db", db, "audit", str(run_id), "--bisect", "health.cond>3x", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"first version meeting health.cond>3x: step {POSITION}" in out
