"""The audit's searches. The logic on synthetic runs whose damage is a known function of the steps
present (a stand-in session: what each model holds is a set of steps); bisection on a real
200-step chain of deltas on tiny-gptj with verified checkouts; and the search on a stateful method,
through the session only, never re-running an editor."""
from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch

from ledger import Ledger
from simulator.audit_search import (Oracle, Target, bisect_first, bisection_bound, group_test, group_test_bound,
                                    investigate)
from simulator.deltas import EditResult, TensorDelta
from simulator.stopping import StopCondition


# ----------------------------------------------------------------------------- synthetic runs
class FakeLedger:
    def __init__(self, n: int):
        self._run = SimpleNamespace(config={}, head_version_id=n, start_version_id=0)

    def run(self, run_id):
        return self._run

    def probes(self, version_id, suite=None):
        return []

    def metrics(self, run_id):
        return []


class FakeSession:
    """Steps 1..n; a model is the set of steps it holds, and ``damage`` maps that set to the metric."""

    def __init__(self, n: int, damage):
        self.ledger, self.damage = FakeLedger(n), damage
        self.present: frozenset[int] = frozenset(range(1, n + 1))

    def checkout(self, version_id):
        self.present = frozenset(range(1, version_id + 1))

    def materialise(self, version_id, without=()):
        self.present = frozenset(range(1, version_id + 1)) - frozenset(without)

    def value(self) -> float:
        return float(self.damage(self.present))


def _search(n, damage, when, **kw):
    s = FakeSession(n, damage)
    items = [SimpleNamespace(id=i, step=i, parent_id=i - 1) for i in range(1, n + 1)]
    return investigate(s, 1, items, when=when, measure=s.value, say=None, progress=False, **kw)


def test_one_culprit_among_500_steps_costs_logarithmically_many_measurements():
    c = 337
    inv = _search(500, lambda P: 10.0 * (c in P) + 0.001 * len(P), "synthetic.bad>5")
    (e,) = inv.culprits()
    assert e.steps == (c,) and e.kind == "single" and e.recovery > 0.9 and e.reproduction > 0.9
    assert inv.first_crossing["step"] == c
    # head, base, bisection (<= 1 + 9), two group tests (~2 x 18), the candidate: far below 500
    assert inv.cost.evaluations <= 2 + bisection_bound(500) + 2 * group_test_bound(500) + 4
    assert inv.cost.evaluations < 60


def test_two_steps_that_do_it_only_together_are_reported_as_a_pair():
    a, b = 9, 41
    inv = _search(64, lambda P: 10.0 * (a in P and b in P) + 0.01 * len(P), "synthetic.bad>5")
    (e,) = inv.culprits()
    assert e.steps == (a, b) and e.kind == "and"
    assert all(p["reproduction"] < 0.5 and p["recovery"] > 0.5 for p in e.parts.values())
    assert "neither does alone" in inv.verdict


def test_two_steps_that_each_do_it_alone_are_reported_as_a_pair():
    a, b = 5, 50
    inv = _search(64, lambda P: 10.0 * (a in P or b in P) + 0.01 * len(P), "synthetic.bad>5")
    (e,) = inv.culprits()
    assert e.steps == (a, b) and e.kind == "or"
    assert all(p["reproduction"] > 0.5 and p["recovery"] < 0.5 for p in e.parts.values())


def test_damage_spread_over_every_step_names_no_culprit():
    inv = _search(50, lambda P: 0.1 * len(P), "synthetic.bad>1")
    assert inv.head_degraded and inv.culprits() == []
    assert "spread over many steps" in inv.verdict


def test_a_culprit_whose_later_steps_keep_its_damage_is_found_by_where_it_was_applied():
    """Steps after the culprit keep the damage once three of them are present (they were computed on
    the model it damaged): removing the culprit alone undoes little, but it did the damage when it
    was applied and does it alone."""
    c, n = 6, 20
    inv = _search(n, lambda P: max(10.0 * (c in P), 9.0 * (sum(j > c for j in P) >= 3)), "synthetic.bad>5")
    (e,) = inv.culprits()
    assert e.steps == (c,) and e.recovery < 0.5 and e.share == pytest.approx(1.0) and e.reproduction == pytest.approx(1.0)
    assert "computed on the model it had damaged" in inv.verdict


def test_a_head_that_is_not_degraded_is_not_searched():
    inv = _search(10, lambda P: 0.01 * len(P), "synthetic.bad>5")
    assert not inv.head_degraded and inv.culprits() == [] and inv.cost.evaluations == 2


def test_bisection_uses_known_values_and_says_when_the_end_does_not_cross():
    calls = []

    def at(i):
        calls.append(i)
        return float(i >= 30)
    assert bisect_first(at, 100, lambda v: v > 0.5) == 30 and len(calls) <= bisection_bound(100)
    calls.clear()
    known = {i: float(i >= 30) for i in range(0, 100, 10)}       # a value every 10 steps: bracket (20, 30]
    assert bisect_first(at, 100, lambda v: v > 0.5, known) == 30            # the end (99), then inside (20, 30]
    assert calls[0] == 99 and len(calls) <= 1 + math.ceil(math.log2(10))
    assert bisect_first(at, 100, lambda v: v > 5) is None                           # the end never crosses


def test_group_testing_bound_for_one_culprit():
    n, c = 500, 123
    s = FakeSession(n, lambda P: 10.0 * (c in P))
    items = [SimpleNamespace(id=i, step=i, parent_id=i - 1) for i in range(1, n + 1)]
    o = Oracle(s, 1, Target(StopCondition.parse("synthetic.bad>5"), 0.0), s.value, items)
    o.head(), o.base()
    before = o.cost.evaluations
    g = group_test(o, 0.5, cap=100, mode="without")
    assert list(g.singles) == [c] and o.cost.evaluations - before <= group_test_bound(n)


# ----------------------------------------------------------------------------- a real 200-step chain
@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """200 steps on tiny-gptj, each adding a small rank-1 delta to one weight entry: step k adds a
    (0.001 normally). Returns the session, the run, its versions and the tensor."""
    from simulator.session import Session
    led = Ledger.open(str(tmp_path_factory.mktemp("chain") / "c.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    name = "transformer.h.1.mlp.fc_out.weight"
    W = s.param(name)
    run = led.begin_run(base_model_id=s.base_model_id, method="synthetic", hparams={}, stream_name="chain",
                        stream_digest="0" * 64, stream_kind="sequential", config={})
    u = torch.zeros(W.shape[0], 1)
    v = torch.zeros(W.shape[1], 1)
    u[0, 0], v[0, 0] = 1.0, 1.0
    versions = []
    for k in range(1, 201):
        s.apply("synthetic", EditResult(deltas=[TensorDelta(name, "low_rank", {"u": u * (1e-3 * k), "v": v.clone()})]))
        versions.append(s.commit(run.id, step=k, requests=[{"subject": f"s{k}", "prompt": "{} is", "target_new": " x"}],
                                 diagnostics={}, wall_time_s=0.0))
    yield s, run.id, versions, name
    led.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bisection_on_a_200_step_chain_needs_at_most_log2_checkouts(chain, seed):
    """The metric is entry (0, 0) of the edited matrix; it rises by 0.001·k at step k, so it first
    exceeds a threshold at a step we choose at random. Every checkout is verified."""
    s, run_id, versions, name = chain
    s.checkout(s.base_version_id)
    w0 = float(s.param(name)[0, 0])
    k = random.Random(seed).randint(1, 200)
    # the value at step j is w0 + 0.001 * j (j + 1) / 2: the threshold sits between steps k-1 and k
    limit = w0 + 1e-3 * (k * (k + 1) / 2 + (k - 1) * k / 2) / 2
    cond = StopCondition.parse(f"synthetic.w00>{limit!r}")
    o = Oracle(s, run_id, Target(cond, None), lambda: float(s.param(name)[0, 0]), versions)
    found = bisect_first(lambda i: o.at(versions[i].id), len(versions), o.target.degraded)
    assert versions[found].step == k
    assert o.cost.checkouts <= math.ceil(math.log2(200)) + 1


# ----------------------------------------------------------------------------- a stateful method
def test_search_on_a_stateful_method_goes_through_the_session_only(toy_method, tmp_path, monkeypatch):
    from ledger.history import revert
    from simulator.audit import head_edits
    from simulator.audit_search import measurer
    from simulator.editors import editor_class
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records
    stream = make_stream("sequential", builtin_records(seed=0), n=3, seed=0)
    led = Ledger.open(str(tmp_path / "t.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(method="toy-lookup", stats_tokens=256, progress=False, general="none")).start(
        stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    items = head_edits(led, run_id)
    # a method that changes no weight records no health telemetry, and its run says why
    assert all(not led.probes(v.id, "health") for v in items)
    assert led.run(run_id).config["telemetry"]["health"].startswith("not recorded: toy-lookup changes no weights")
    monkeypatch.setattr(editor_class("toy-lookup"), "edit", lambda *a, **k: pytest.fail("an editor was re-run"))
    # what changed at the head: the third edit's own prompts now answer its target (any metric's
    # change is searched the same way); the step that did it is the third
    inv = investigate(s, run_id, items, when="rewrite.efficacy_prob>0.5", say=None, progress=False)
    assert inv.head_degraded and inv.cost.materialisations > 0
    assert [e.steps for e in inv.culprits()] == [(3,)]
    assert s.current_version_id == items[-1].id                 # the head is live again, verified
    measure = measurer(s, run_id, "rewrite", "efficacy_prob", step_index=2)
    o = Oracle(s, run_id, Target(StopCondition.parse("rewrite.efficacy_prob<2"), None), measure, items)
    without_2 = o.without([items[1].id])
    s.checkout(revert(led, run_id, 2).id)                      # the same model, as a ledger version
    assert measure() == without_2
    led.close()


@pytest.fixture
def toy_method():
    """The toy stateful method (tests/toy_lookup.py), registered for this test only: the registry
    that tests/test_cli_startup.py compares with the CLI's method list stays as the project ships it."""
    import sys

    from simulator.editors.base import _REGISTRY
    before = "toy-lookup" in _REGISTRY
    import toy_lookup  # noqa: F401  (registers the "toy-lookup" method)
    yield
    if not before:
        _REGISTRY.pop("toy-lookup", None)
        sys.modules.pop("toy_lookup", None)
