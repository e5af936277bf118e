"""Health telemetry: condition numbers against torch.linalg.cond in float64, the editors' solve
diagnostics against a direct float64 computation (with the edits unchanged), robust z-scores by
hand, and the recorded health values of a tiny-gptj replay against the weights themselves."""
from __future__ import annotations

import math

import pytest
import torch

from ledger import Ledger
from ledger.health import features, flag_outliers, outcome_z, robust_z, step_z
from simulator.editors.common import solve_psd
from simulator.editors.memit import memit_closed_form, memit_solve
from simulator.editors.rome import rome_closed_form, rome_solve
from simulator.condition import condition_number
from simulator.telemetry import HealthConfig


def _with_spectrum(m: int, n: int, sv: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    k = min(m, n)
    return U[:, :k] @ torch.diag(sv) @ V[:, :k].T


@pytest.mark.parametrize("shape", [(40, 120), (120, 40), (64, 64)])
@pytest.mark.parametrize("kappa", [3.0, 1e3, 1e5])
def test_exact_condition_number_matches_torch_cond(shape, kappa):
    k = min(shape)
    sv = torch.logspace(0, -math.log10(kappa), k, dtype=torch.float64)
    W = _with_spectrum(*shape, sv)
    ref = float(torch.linalg.cond(W))                       # 2-norm, float64, via the SVD
    assert ref == pytest.approx(kappa, rel=1e-9)
    got, how = condition_number(W.float() if kappa < 1e4 else W)
    assert how == "exact"
    want = ref if kappa >= 1e4 else float(torch.linalg.cond(W.float().double()))
    assert got == pytest.approx(want, rel=1e-6)


def test_lanczos_estimate_is_a_lower_bound_and_exact_with_enough_steps():
    sv = torch.logspace(0, -2, 60, dtype=torch.float64)      # κ = 100
    W = _with_spectrum(60, 150, sv, seed=1)
    ref = float(torch.linalg.cond(W))
    full, how = condition_number(W, exact_max=10, lanczos_steps=60)
    assert how == "lanczos" and full == pytest.approx(ref, rel=1e-6)
    few, _ = condition_number(W, exact_max=10, lanczos_steps=12)
    assert 1.0 < few <= ref * (1 + 1e-9)


def test_robust_z_by_hand():
    # median 3, |x - 3| = 2,1,0,1,97 -> MAD 1, scale 1.4826: z(10) = 7 / 1.4826
    assert robust_z([1, 2, 3, 4, 100], 10.0, floor=0.0) == pytest.approx(7 / 1.4826)
    # identical history: MAD 0, the floor sets the scale
    assert robust_z([2.0] * 6, 2.5, floor=0.25) == pytest.approx(2.0)


def test_outcome_features_flag_and_causes_explain():
    cfg = HealthConfig()
    hist = [{"delta_rel": 0.1 * (1 + 0.1 * i), "ppl_step": 1.0 + 0.01 * i, "denominator": 20.0 + i}
            for i in range(8)]
    # a step 40x the usual size, with an ordinary denominator
    z = step_z(hist, {"delta_rel": 4.0, "ppl_step": 1.02, "denominator": 24.0}, cfg)
    assert z["delta_rel"] > cfg.z_threshold and outcome_z(z) == z["delta_rel"]
    # a small denominator alone explains but does not flag
    z2 = step_z(hist, {"delta_rel": 0.12, "ppl_step": 1.01, "denominator": 0.5}, cfg)
    assert z2["denominator"] > cfg.z_threshold and outcome_z(z2) < cfg.z_threshold
    assert features({"denominator": 0.5})["denominator"] == pytest.approx(-math.log(0.5))
    flagged = flag_outliers([(i, h) for i, h in enumerate(hist)] + [("big", {"delta_rel": 4.0})], cfg)
    assert [k for k, _ in flagged] == ["big"]


def test_rome_solve_reports_its_denominator_and_leaves_the_update_unchanged():
    g = torch.Generator().manual_seed(3)
    d_in, d_out = 24, 16
    W, b = torch.randn(d_out, d_in, generator=g), torch.randn(d_out, generator=g)
    A = torch.randn(d_in, 3 * d_in, generator=g, dtype=torch.float64)
    C = A @ A.T / A.shape[1]
    k, v = torch.randn(d_in, generator=g), torch.randn(d_out, generator=g)
    u1, v1, info = rome_solve(W, b, C, k, v)
    u0, v0 = rome_closed_form(W, b, C, k, v)
    assert torch.equal(u0, u1) and torch.equal(v0, v1)
    k64 = k.double()
    ck = torch.linalg.solve(C, k64)                           # C^-1 k, the paper's eq. 2
    assert info["denominator"] == pytest.approx(float(ck @ k64), rel=1e-10)
    assert info["solve_cos"] == pytest.approx(float(ck @ k64 / (ck.norm() * k64.norm())), rel=1e-10)
    resid = v.double() - (W.double() @ k64 + b.double())
    assert info["residual_norm"] == pytest.approx(float(resid.norm()), rel=1e-10)
    # identity C: the denominator is ||k||^2 and the cosine 1
    _, _, info_i = rome_solve(W, b, None, k, v)
    assert info_i["denominator"] == pytest.approx(float(k64 @ k64), rel=1e-12)
    assert info_i["solve_cos"] == pytest.approx(1.0, rel=1e-12)


def test_memit_solve_denominator_is_the_smallest_eigenvalue_of_kt_cinv_k():
    g = torch.Generator().manual_seed(4)
    d, n, lam = 20, 3, 15.0
    A = torch.randn(d, 4 * d, generator=g, dtype=torch.float64)
    C = A @ A.T / A.shape[1]
    K, R = torch.randn(d, n, generator=g), torch.randn(12, n, generator=g)
    u1, v1, info = memit_solve(C, K, R, lam)
    u0, v0 = memit_closed_form(C, K, R, lam)
    assert torch.equal(u0, u1) and torch.equal(v0, v1)
    K64 = K.double()
    direct = torch.linalg.eigvalsh(K64.T @ torch.linalg.solve(C, K64))
    assert info["denominator"] == pytest.approx(float(direct[0]), rel=1e-8)
    gain = torch.linalg.eigvalsh(K64.T @ solve_psd(lam * C + K64 @ K64.T, K64))
    assert info["gain_min"] == pytest.approx(float(gain[0]), rel=1e-10)
    assert info["gain_max"] == pytest.approx(float(gain[-1]), rel=1e-10)
    assert info["key_norm"] == pytest.approx(float(K64.norm(dim=0).max()), rel=1e-12)
    # one request: MEMIT's denominator is ROME's (C^-1 k)^T k
    k = K[:, :1]
    _, _, one = memit_solve(C, k, R[:, :1], lam)
    ck = torch.linalg.solve(C, k.double()[:, 0])
    assert one["denominator"] == pytest.approx(float(ck @ k.double()[:, 0]), rel=1e-8)


# ----------------------------------------------------------------------------- on a replay
FAST = dict(stats_tokens=256, keyframe_every=2, progress=False, general="none")


def _stream(n):
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records
    return make_stream("sequential", builtin_records(seed=0), n=n, seed=0)


def _health(led, run_id):
    out = {}
    for v in led.versions(run_id):
        out[v.step] = {p.metric: p for p in led.probes(v.id, "health") if p.against == "none"}
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A 3-step ROME replay on tiny-gptj (the telemetry on by default)."""
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    stream = _stream(3)
    led = Ledger.open(str(tmp_path_factory.mktemp("health") / "h.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(**FAST)).start(stream.steps, stream_name=stream.name,
                                                       stream_digest=stream.digest, stream_kind=stream.kind)
    yield led, s, run_id, stream
    led.close()


def test_replay_records_health_that_matches_the_weights(replayed):
    from simulator.telemetry import PROXY_TEXT
    from simulator.probes import GeneralSets, ProbeRunner
    led, s, run_id, stream = replayed
    h = _health(led, run_id)
    assert set(h) == {1, 2, 3}
    versions = {v.step: v for v in led.versions(run_id)}
    (name,) = {d.tensor for v in versions.values() for d in led.deltas(v.id) if d.kind != "keyframe"}
    s.checkout(s.base_version_id)
    W0 = s.param(name).detach().double().clone()
    ppl_of = lambda: ProbeRunner(s.view, general=GeneralSets(text=PROXY_TEXT), progress=False
                                 ).reference([])["base_metrics"]["perplexity.ppl"]
    base_ppl = ppl_of()
    prev_cond = float(torch.linalg.cond(W0))
    for step in (1, 2, 3):
        s.checkout(versions[step].id)
        W = s.param(name).detach().double()
        hv = {m: p.value for m, p in h[step].items()}
        (d,) = [x for x in led.deltas(versions[step].id) if x.kind != "keyframe"]
        assert hv["delta_norm"] == pytest.approx(d.norm, rel=1e-9)            # the ledger's own delta norm
        assert hv["delta_rel"] == pytest.approx(d.norm / float(W0.norm()), rel=1e-5)
        assert hv["drift"] == pytest.approx(float((W - W0).norm() / W0.norm()), rel=1e-4)
        assert hv["weight_norm_ratio"] == pytest.approx(float(W.norm() / W0.norm()), rel=1e-6)
        cond = float(torch.linalg.cond(W))
        assert hv["cond"] == pytest.approx(cond, rel=1e-6)
        assert hv["cond_ratio"] == pytest.approx(cond / float(torch.linalg.cond(W0)), rel=1e-5)
        assert hv["cond_step"] == pytest.approx(cond / prev_cond, rel=1e-5)
        prev_cond = cond
        diag = versions[step].diagnostics["requests"][0]
        assert hv["key_norm"] == pytest.approx(diag["key_norm"]) and hv["denominator"] == pytest.approx(diag["denominator"])
        ppl = ppl_of()
        assert hv["ppl"] == pytest.approx(ppl, rel=1e-6)
        assert hv["ppl_ratio"] == pytest.approx(ppl / base_ppl, rel=1e-6)
        assert h[step]["ppl"].detail["base"] == pytest.approx(base_ppl, rel=1e-9)
    assert "outlier_z" not in h[3]        # fewer than min_history steps before it


class Crash(BaseException):
    """Stands in for kill -9 after a committed step."""


def test_resumed_replay_continues_the_health_record(replayed):
    from simulator.replay import ReplayOptions, Replayer
    led, s, whole, stream = replayed

    def crash(stepno, *_):
        if stepno == 2:
            raise Crash()
    with pytest.raises(Crash):
        Replayer(s, ReplayOptions(**FAST), on_step=crash).start(stream.steps, stream_name="b",
                                                                stream_digest=stream.digest, stream_kind=stream.kind)
    cut = max(r.id for r in led.runs())
    Replayer(s, ReplayOptions(**FAST)).resume(cut)
    a, b = _health(led, whole), _health(led, cut)
    for m in ("delta_norm", "delta_rel", "drift", "cond", "cond_ratio", "cond_step", "ppl", "ppl_ratio", "ppl_step"):
        assert b[3][m].value == pytest.approx(a[3][m].value, rel=1e-6), m


def test_stop_condition_on_a_health_metric(tmp_path):
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    stream = _stream(3)
    led = Ledger.open(str(tmp_path / "s.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(stop_when=["health.drift>0"], **FAST)).start(
        stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    run = led.run(run_id)
    assert run.status == "stopped" and "health.drift>0" in run.note
    head = led.version(run.head_version_id)          # a reset marker back to the start (the base)
    assert head.kind == "reset" and head.parent_id == run.start_version_id
    led.close()


def test_stop_conditions_on_health_are_checked_before_the_run(replayed):
    from ledger.errors import InputError
    from simulator.replay import ReplayOptions, Replayer, known_suites
    led, s, run_id, _ = replayed
    runs = len(led.runs())
    assert "health" in known_suites()
    ReplayOptions(stop_when=["health.cond_ratio>5", "health.outlier_z>6"], **FAST).validate()
    with pytest.raises(InputError, match="health records no metric 'cnd'.*it records delta_norm"):
        ReplayOptions(stop_when=["health.cnd>5"], **FAST).validate()
    with pytest.raises(InputError, match="recorded with every step"):
        ReplayOptions(probe_every={"health": 2}, **FAST).validate()
    with pytest.raises(InputError, match="grace changes no weights, so no health telemetry"):
        Replayer(s, ReplayOptions(method="grace", stop_when=["health.drift>0.1"], **FAST))
    assert len(led.runs()) == runs         # nothing was started
