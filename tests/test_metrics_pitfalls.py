"""Every pitfall metric on a hand-computed case: a stub scorer with known probabilities drives the
ProbeRunner (so the wiring is checked too), and the values are worked out by hand below."""
from __future__ import annotations

import math

import pytest

from simulator.probes import ProbeConfig, ProbeRunner
from simulator.probes import metrics as M
from simulator.probes.scoring import TargetScore
from simulator.requests import EditRequest, ProbeItem, Step


class StubScorer:
    """Single-token targets with known probabilities per version. table[v][(prompt, target)] =
    (p, top1); dists[v][prompt] = (ids, probs, rest). A version falls back to earlier ones."""

    def __init__(self, table, dists):
        self.table, self.dists, self.version = table, dists, 0

    def _look(self, tab, key):
        for v in range(self.version, -1, -1):
            if key in tab.get(v, {}):
                return tab[v][key]
        return None

    def score(self, pairs, dists=None, desc=""):
        out = []
        for n, (p, t) in enumerate(pairs):
            prob, top1 = self._look(self.table, (p, t)) or (0.01, False)
            d = None
            if dists is not None and dists[n] is not None:
                ids, ps, rest = self._look(self.dists, p)
                d = {"ids": ids, "p": ps, "rest": rest}
            out.append(TargetScore(token_ids=[1], token_logprobs=[math.log(prob)], argmax=[1 if top1 else 2], dist=d))
        return out


def req(s):
    return [EditRequest(s, "{} is", " X", " Y")]


def build():
    steps = [
        # 1-2: reverse conflict pair (the conflict probe rides on the second step)
        Step(req("a"), kind="reverse_conflict", group="c1", role="first", probes={
            "rewrite": [ProbeItem("R1", " new", " old")],
            "neighborhood": [ProbeItem("N1", " true", " new"), ProbeItem("N2", " true", " new")]}),
        Step(req("b"), kind="reverse_conflict", group="c1", role="second", probes={
            "conflict": [ProbeItem("C", " kn", " ko")]}),
        # 3-4: composite conflict with a tied fact
        Step(req("c"), kind="composite_conflict", group="c2", role="first"),
        Step(req("d"), kind="composite_conflict", group="c2", role="second", probes={
            "conflict": [ProbeItem("Q", " kn2", " ko2")], "tied_fact": [ProbeItem("T", " f")]}),
        # 5-6: round edit A -> B -> A over the object set {A, B, C}
        Step(req("e"), kind="round", group="r1", role="forward"),
        Step(req("f"), kind="round", group="r1", role="back", probes={
            "round": [ProbeItem("O", " A", choices=(" A", " B", " C"), label=0)]}),
        # 7-8: an MQuAKE case with two edits, two single hops and two questions
        Step(req("g"), kind="multihop", group="m1", probes={"rewrite": [ProbeItem("E1", " e1")]}),
        Step(req("h"), kind="multihop", group="m1", probes={
            "rewrite": [ProbeItem("E2", " e2")],
            "multihop": [ProbeItem("H1", " h1", meta={"kind": "hop"}), ProbeItem("H2", " h2", meta={"kind": "hop"}),
                         ProbeItem("Q1", " a1", answers=(" alias1",), alt=" old1"), ProbeItem("Q2", " a2", alt=" old2")]}),
    ]
    table = {
        0: {("R1", " new"): (0.1, False), ("R1", " old"): (0.6, True),
            ("O", " A"): (0.5, True), ("O", " B"): (0.3, False), ("O", " C"): (0.2, False)},
        1: {("R1", " new"): (0.7, True), ("R1", " old"): (0.2, False),
            ("N1", " true"): (0.6, True), ("N1", " new"): (0.1, False),
            ("N2", " true"): (0.2, False), ("N2", " new"): (0.3, True),
            ("C", " kn"): (0.2, False), ("C", " ko"): (0.5, True)},          # intermediate of c1
        2: {("C", " kn"): (0.6, True), ("C", " ko"): (0.3, False)},
        3: {("Q", " ko2"): (0.4, True), ("T", " f"): (0.8, True)},            # intermediate of c2
        4: {("Q", " kn2"): (0.1, False), ("Q", " ko2"): (0.3, True), ("T", " f"): (0.6, True)},
        6: {("O", " A"): (0.7, True), ("O", " B"): (0.2, False), ("O", " C"): (0.1, False)},
        8: {("E1", " e1"): (0.9, True), ("E2", " e2"): (0.2, False),
            ("H1", " h1"): (0.9, True), ("H2", " h2"): (0.1, False),
            ("Q1", " a1"): (0.2, False), ("Q1", " alias1"): (0.5, True), ("Q2", " a2"): (0.1, False)},
    }
    dists = {0: {"N1": ([1, 2], [0.5, 0.3], 0.2), "N2": ([3], [0.9], 0.1)},
             1: {"N1": ([1, 2], [0.4, 0.4], 0.2), "N2": ([3], [0.6], 0.4)}}
    return steps, StubScorer(table, dists)


@pytest.fixture(scope="module")
def run():
    steps, stub = build()
    runner = ProbeRunner(None, None, None, ProbeConfig(), scorer=stub)
    ref = runner.reference(steps)
    out, prev = {}, None
    for t in range(1, len(steps) + 1):
        stub.version = t
        recs, prev = runner.measure(step_index=t, steps=steps, reference=ref, previous=prev, final=t == len(steps))
        out[t] = {(r.suite, r.metric, r.against): r.value for r in recs}
    return out


def test_efficacy_ns_nm_nkl(run):
    v = run[1]
    assert v[("rewrite", "efficacy_top1", "none")] == 1.0
    assert v[("rewrite", "efficacy_prob", "none")] == 1.0                        # 0.7 > 0.2
    assert v[("rewrite", "efficacy_top1", "base")] == 1.0                        # 1 - 0 (base: not top-1)
    assert v[("neighborhood", "ns", "none")] == 0.5                              # 0.6 > 0.1 yes, 0.2 > 0.3 no
    assert v[("neighborhood", "nm", "none")] == pytest.approx(((0.6 - 0.1) + (0.2 - 0.3)) / 2)   # 0.2
    # NKL: N1: .5 ln(.5/.4) + .3 ln(.3/.4) + .2 ln(.2/.2) = 0.025266;
    #      N2: .9 ln(.9/.6) + .1 ln(.1/.4) = 0.226290; mean 0.125778
    assert v[("neighborhood", "nkl", "base")] == pytest.approx(0.1257781576, abs=1e-9)


def test_conflict_reverse(run):
    v = run[2]
    assert v[("conflict", "cs_reverse", "none")] == 1.0                          # 0.6 > 0.3
    assert v[("conflict", "cm_reverse", "previous")] == pytest.approx((0.5 - 0.3) / 0.5)      # 0.4
    assert ("conflict", "cs_reverse", "none") not in run[1], "a conflict is scored once the pair is complete"


def test_conflict_composite_and_tied_fact(run):
    v = run[4]
    assert v[("conflict", "cs_composite", "none")] == 0.0                        # 0.1 < 0.3
    assert v[("conflict", "cm_composite", "previous")] == pytest.approx((0.4 - 0.3) / 0.4)    # 0.25
    assert v[("conflict", "tfd_composite", "previous")] == pytest.approx((0.8 - 0.6) / 0.8)   # 0.25


def test_round(run):
    v = run[6]
    # base distribution over {A, B, C} = (.5, .3, .2); after the round trip (.7, .2, .1)
    # M = (.6, .25, .15); KL(P||M) = .5 ln(5/6) + .3 ln(1.2) + .2 ln(4/3) = 0.021072
    # KL(Q||M) = .7 ln(7/6) + .2 ln(.8) + .1 ln(2/3) = 0.022730; JS = 0.021901 nats = 0.031597 bits
    assert v[("round", "distortion", "base")] == pytest.approx(0.0315967223, abs=1e-9)
    assert v[("round", "ignore_rate", "base")] == 1.0                           # B .3 > .2, C .2 > .1
    assert v[("round", "failure_rate", "base")] == 1.0                          # IR 1.0 > 0.5
    assert v[("round", "success", "none")] == 1.0                               # A is the argmax


def test_multihop(run):
    v = run[8]
    assert v[("multihop", "ew", "none")] == 0.5       # E1 recalled, E2 not
    assert v[("multihop", "iw", "none")] == 0.0       # hop H2 fails
    assert v[("multihop", "mh", "none")] == 1.0       # Q1 answered through its alias


def test_retention_curve(run):
    v = run[8]
    # earlier steps with rewrite probes: 1 (top-1 at version 8: R1 new is top-1 since version 1) and 7 (E1)
    assert v[("retention", "efficacy_top1", "none")] == 1.0


# ----------------------------------------------------------------------------- pure functions
def test_pure_metrics_by_hand():
    assert M.neighborhood_score([0.6, 0.2], [0.1, 0.3]) == 0.5
    assert M.neighborhood_magnitude([0.6, 0.2], [0.1, 0.3]) == pytest.approx(0.2)
    assert M.conflict_score([0.6, 0.1], [0.3, 0.3]) == 0.5
    assert M.conflict_magnitude([0.5, 0.4], [0.3, 0.3]) == pytest.approx((0.4 + 0.25) / 2)
    assert M.tied_fact_damage([0.8], [0.6]) == pytest.approx(0.25)
    assert M.ignore_rate([0.5, 0.3, 0.2], [0.4, 0.4, 0.2], target=0) == 0.0       # B gained, C equal
    assert M.ignore_rate([0.2, 0.5, 0.3], [0.6, 0.3, 0.1], target=0) == 1.0
    assert M.failure(0.5) is False and M.failure(0.51) is True
    assert M.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)          # disjoint: 1 bit
    assert M.js_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert M.edit_wise([True, False, True, True]) == 0.75
    assert M.instance_wise([[True, True], [True, False]]) == 0.5
    assert M.multihop_accuracy([[False, True, False], [False, False, False]]) == 0.5
    assert M.token_agreement([[1, 2, 3], [4]], [[1, 2, 9], [4]]) == pytest.approx((2 / 3 + 1) / 2)
    assert M.normalise([math.log(0.2), math.log(0.6)]) == pytest.approx([0.25, 0.75])
    assert M.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_text_metrics_by_hand():
    assert M.exact_match("The Pacific Ocean.", ["Pacific Ocean"])
    assert not M.exact_match("Atlantic", ["Pacific"])
    assert M.first_number("She makes $1,234 a day") == "1234"
    # "a b a b": bigrams ab, ba, ab -> H2 = -(2/3 log2 2/3 + 1/3 log2 1/3) = 0.918296;
    # trigrams aba, bab -> H3 = 1; fluency = (2/3 * 0.918296 + 4/3 * 1) / 2
    assert M.ngram_entropy("a b a b", 2) == pytest.approx(0.9182958341)
    assert M.fluency(["a b a b"]) == pytest.approx((2 / 3 * 0.9182958341 + 4 / 3 * 1.0) / 2)
    # ROUGE-1: pred "the cat sat", ref "the cat sat on the mat": P = 3/3, R = 3/6 -> F = 2/3
    r = M.rouge(["the cat sat"], ["the cat sat on the mat"])
    assert r["rouge1"] == pytest.approx(2 / 3)
    assert r["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)    # P = 2/2, R = 2/5
    assert M.perplexity(2 * math.log(3), 2) == pytest.approx(3.0)
