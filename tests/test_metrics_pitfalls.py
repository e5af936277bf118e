"""Every pitfall metric on hand-computed cases: a stub scorer with known probabilities drives the
ProbeRunner (so the wiring is checked too), and the expected values are worked out by hand below
from the reference code's formulas (zjunlp/PitfallsKnowledgeEditing experiments/summarize.py,
kmeng01/rome experiments/summarize.py, apartresearch/specificityplus experiments/analyze.py,
MQuAKE's README)."""
from __future__ import annotations

import math

import pytest

from simulator.probes import ProbeConfig, ProbeRunner
from simulator.probes import metrics as M
from simulator.probes.scoring import TargetScore
from simulator.requests import EditRequest, ProbeItem, Step


class StubScorer:
    """Single-token targets with known probabilities per version. table[v][(prompt, target)] =
    (p, top1); dists[v][prompt] = (ids, probs, rest). A version falls back to earlier ones; an
    unknown pair has p = 0.01, not top-1."""

    def __init__(self, table, dists):
        self.table, self.dists, self.version = table, dists, 0
        self.calls = []

    def _look(self, tab, key):
        for v in range(self.version, -1, -1):
            if key in tab.get(v, {}):
                return tab[v][key]
        return None

    def score(self, pairs, dists=None, desc=""):
        self.calls.append((self.version, list(pairs)))
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


def fact(prompt, target, role):
    return ProbeItem(prompt, target, meta={"fact": role})


def build():
    rnd = [ProbeItem(p, " A", alt=" S", choices=(" A", " B", " C"), label=0) for p in ("O1", "O2")]
    steps = [
        # 1-2 reverse conflict c1; step 1 also carries ROME-style single-edit probes
        Step(req("a"), kind="reverse_conflict", group="c1", role="first", probes={
            "rewrite": [ProbeItem("R1", " new", " old")],
            "neighborhood": [ProbeItem("N1", " true", " new"), ProbeItem("N2", " true", " new")],
            "attribute": [ProbeItem("A1", " t1"), ProbeItem("A2", " t2")],
            "distract": [ProbeItem("D1", " d", alt=" new")],
            "portability_sr": [ProbeItem("S1", " new"), ProbeItem("S2", " new")],
            "portability_oh": [ProbeItem("H0", " h")],
            "other_task": [ProbeItem("G1", " a", choices=(" a", " b"), label=1),
                           ProbeItem("G2", " a", choices=(" a", " b"), label=0)]}),
        Step(req("b"), kind="reverse_conflict", group="c1", role="second", probes={
            "conflict": [fact("RO1", " o2", "k_o"), fact("RO2", " o2", "k_o"),
                         fact("RN1", " s2", "k_n"), fact("RN2", " s2", "k_n")]}),
        # 3-4 reverse conflict c2: a tiny CM denominator
        Step(req("c"), kind="reverse_conflict", group="c2", role="first"),
        Step(req("d"), kind="reverse_conflict", group="c2", role="second", probes={
            "conflict": [fact("SO", " o", "k_o"), fact("SN", " n", "k_n")]}),
        # 5-6 composite conflict c3 with a tied fact read through two prompts
        Step(req("e"), kind="composite_conflict", group="c3", role="first"),
        Step(req("f"), kind="composite_conflict", group="c3", role="second", probes={
            "conflict": [fact("CO", " o2", "k_o"), fact("CN", " o3", "k_n")],
            "tied_fact": [fact("T1", " f", "k_f"), fact("T2", " f", "k_f")]}),
        # 7-8 round edit A -> S -> A, Obj = {A, B, C} (|Obj| = 3), two prompts
        Step(req("g"), kind="round", group="r1", role="forward"),
        Step(req("h"), kind="round", group="r1", role="back", probes={"round": rnd}),
        # 9-10 an MQuAKE case: two edits, two hops, three questions
        Step(req("i"), kind="multihop", group="m1", probes={"rewrite": [ProbeItem("E1", " e1")]}),
        Step(req("j"), kind="multihop", group="m1", probes={
            "rewrite": [ProbeItem("E2", " e2")],
            "multihop": [ProbeItem("H1", " h1", meta={"kind": "hop", "prompting": "cloze"}),
                         ProbeItem("H2", " h2", meta={"kind": "hop", "prompting": "few-shot"}),
                         ProbeItem("Q1", " a1", answers=(" alias1",), meta={"kind": "question", "prompting": "few-shot"}),
                         ProbeItem("Q2", " a2", meta={"kind": "question", "prompting": "few-shot"}),
                         ProbeItem("Q3", " a3", meta={"kind": "question", "prompting": "zero-shot"})]}),
    ]
    table = {
        0: {("R1", " new"): (0.1, False), ("R1", " old"): (0.6, True),
            ("A1", " t1"): (0.5, True), ("A2", " t2"): (0.4, True), ("D1", " d"): (0.6, True),
            ("T1", " f"): (0.8, True), ("T2", " f"): (0.6, True),                           # P0(k_f) = .7
            ("O1", " A"): (0.5, True), ("O1", " B"): (0.3, False), ("O1", " C"): (0.2, False),
            ("O2", " A"): (0.3, False), ("O2", " B"): (0.1, False), ("O2", " C"): (0.4, True)},
        1: {("R1", " new"): (0.7, True), ("R1", " old"): (0.2, False),
            ("A1", " t1"): (0.3, False), ("A2", " t2"): (0.5, True), ("D1", " d"): (0.2, False),
            ("S1", " new"): (0.6, True), ("S2", " new"): (0.1, False), ("H0", " h"): (0.3, False),
            ("G1", " a"): (0.2, False), ("G1", " b"): (0.5, True), ("G2", " a"): (0.1, False), ("G2", " b"): (0.3, True),
            ("N1", " true"): (0.6, True), ("N1", " new"): (0.1, False),
            ("N2", " true"): (0.2, False), ("N2", " new"): (0.3, True),
            ("RO1", " o2"): (0.5, True), ("RO2", " o2"): (0.3, True)},                      # theta_m of c1
        2: {("RO1", " o2"): (0.02, False), ("RO2", " o2"): (0.04, False),
            ("RN1", " s2"): (0.6, True), ("RN2", " s2"): (0.2, False)},
        3: {("SO", " o"): (0.001, False)},                                                  # theta_m of c2
        4: {("SO", " o"): (0.05, False), ("SN", " n"): (0.01, False)},
        5: {("CO", " o2"): (0.4, True), ("T1", " f"): (0.9, True), ("T2", " f"): (0.9, True)},   # theta_m of c3
        6: {("CO", " o2"): (0.3, True), ("CN", " o3"): (0.1, False),
            ("T1", " f"): (0.5, True), ("T2", " f"): (0.2, False)},
        7: {("O1", " S"): (0.6, True), ("O1", " A"): (0.1, False),                         # theta_m of r1
            ("O2", " S"): (0.2, False), ("O2", " A"): (0.3, True)},
        8: {("O1", " A"): (0.7, True), ("O1", " B"): (0.1, False), ("O1", " C"): (0.1, False), ("O1", " S"): (0.2, False),
            ("O2", " A"): (0.5, True), ("O2", " B"): (0.3, False), ("O2", " C"): (0.1, False), ("O2", " S"): (0.4, False)},
        9: {("E1", " e1"): (0.9, True)},
        10: {("E2", " e2"): (0.2, False), ("H1", " h1"): (0.9, True), ("H2", " h2"): (0.1, False),
             ("Q1", " a1"): (0.2, False), ("Q1", " alias1"): (0.5, True), ("Q2", " a2"): (0.1, False),
             ("Q3", " a3"): (0.7, True)},
    }
    dists = {0: {"N1": ([1, 2], [0.5, 0.3], 0.2), "N2": ([3], [0.9], 0.1)},
             1: {"N1": ([1, 2], [0.4, 0.4], 0.2), "N2": ([3], [0.6], 0.4)}}
    return steps, StubScorer(table, dists)


def _values(recs):
    return {(r.suite, r.metric, r.against): r.value for r in recs}


@pytest.fixture(scope="module")
def run():
    steps, stub = build()
    runner = ProbeRunner(None, None, None, ProbeConfig(), scorer=stub)
    ref = runner.reference(steps)
    out, prev, states = {}, None, {}
    for t in range(1, len(steps) + 1):
        stub.version = t
        recs, prev = runner.measure(step_index=t, steps=steps, reference=ref, previous=prev, final=t == len(steps))
        out[t] = _values(recs)
        out[t, "records"] = recs
        states[t] = prev
    out["ref"], out["states"] = ref, states
    return out


def test_efficacy_ns_nm_nkl(run):
    v = run[1]
    assert v[("rewrite", "efficacy_top1", "none")] == 1.0
    assert v[("rewrite", "efficacy_prob", "none")] == 1.0                        # 0.7 > 0.2
    assert v[("rewrite", "efficacy_top1", "base")] == 1.0                        # 1 - 0 (base: not top-1)
    assert v[("neighborhood", "ns", "none")] == 0.5                              # 0.6 > 0.1 yes, 0.2 > 0.3 no
    assert v[("neighborhood", "nm", "none")] == pytest.approx(((0.6 - 0.1) + (0.2 - 0.3)) / 2)   # 0.2
    # NKL in CounterFact+'s direction KL(P_edited || P_base), nats, not divided by |V|:
    #   N1: .4 ln(.4/.5) + .4 ln(.4/.3) + .2 ln(.2/.2) = -0.08925742 + 0.11507283 = 0.02581541
    #   N2: .6 ln(.6/.9) + .4 ln(.4/.1)               = -0.24327906 + 0.55451774 = 0.31123868   mean 0.16852704
    assert v[("neighborhood", "nkl", "base")] == pytest.approx(0.1685270440, abs=1e-9)


def test_single_edit_locality_portability_and_other_task(run):
    v = run[1]
    # OA, DN (EasyEdit): share of target tokens whose argmax is unchanged from the base
    #   A1 lost its top-1 (argmax changed), A2 kept it -> OA = 1/2; D1 changed -> DN = 0
    assert v[("attribute", "oa", "base")] == 0.5
    assert v[("distract", "dn", "base")] == 0.0
    # SR / OH: token-level accuracy of the expected answer: S1 right, S2 wrong -> 1/2; H0 wrong -> 0
    assert v[("portability_sr", "accuracy", "none")] == 0.5
    assert v[("portability_oh", "accuracy", "none")] == 0.0
    # OT (stream items): the higher-likelihood choice; G1 picks b (label 1, right), G2 picks b (label 0, wrong)
    assert v[("other_task", "accuracy", "none")] == 0.5


def test_conflict_score_and_magnitude(run):
    v = run[2]
    # P'(k_n) = (.6 + .2)/2 = .4 > P'(k_o) = (.02 + .04)/2 = .03
    assert v[("conflict", "cs_reverse", "none")] == 1.0
    # CM = (P_m(k_o) - P'(k_o)) / P_m(k_o) = (.4 - .03) / .4 = .925, P_m = (.5 + .3)/2 after the first edit
    assert v[("conflict", "cm_reverse", "previous")] == pytest.approx(0.925)
    assert v[("conflict", "success_reverse", "none")] == 1.0                     # R1 still top-1
    assert ("conflict", "cs_reverse", "none") not in run[1], "a case is measured when its last step is applied"


def test_conflict_magnitude_tiny_denominator_is_clipped(run):
    v = run[4]
    # P_m(k_o) = .001, P'(k_o) = .05: (.001 - .05) / .001 = -49, clipped at -1 by summarize.py
    assert v[("conflict", "cm_reverse", "previous")] == -1.0
    assert v[("conflict", "cs_reverse", "none")] == 0.0                          # .01 < .05


def test_composite_and_tied_fact_damage(run):
    v = run[6]
    assert v[("conflict", "cs_composite", "none")] == 0.0                        # .1 < .3
    assert v[("conflict", "cm_composite", "previous")] == pytest.approx((0.4 - 0.3) / 0.4)    # .25
    # TFD as summarize.py: against the *unedited* model: P0(k_f) = (.8 + .6)/2 = .7, P'(k_f) = (.5 + .2)/2 = .35
    #   (.7 - .35) / .7 = .5   (the survey's theta_m, P_m = .9, would give .6111)
    assert v[("conflict", "tfd_composite", "base")] == pytest.approx(0.5)


def test_round_success_distortion_ignore_failure(run):
    v = run[8]
    # Succ: theta_m  P(o*) = (.6 + .2)/2 = .4 > P(o1) = (.1 + .3)/2 = .2        -> .5
    #       theta'   P(o1) = (.7 + .5)/2 = .6 > P(o*) = (.2 + .4)/2 = .3        -> .5
    assert v[("round", "success", "none")] == 1.0
    # P-bar over Obj = [A, B, C]: base (.4, .2, .3), after (.6, .2, .1)
    # IR over {B, C}: B .2 > .2 no, C .3 > .1 yes -> 1/2; FR = 1{.5 > .5} = 0
    assert v[("round", "ignore_rate", "base")] == 0.5
    assert v[("round", "failure_rate", "base")] == 0.0
    # D (summarize.py js_div): p = (.6,.2,.1)/.9 = (6/9, 2/9, 1/9), q = (.4,.2,.3)/.9 = (4/9, 2/9, 3/9), m = (5/9, 2/9, 2/9)
    #   KL(p||m) = 6/9 ln(6/5) + 1/9 ln(1/2) = 0.12154770 - 0.07701635 = 0.04453135
    #   KL(q||m) = 4/9 ln(4/5) + 3/9 ln(3/2) = -0.09917491 + 0.13515504 = 0.03598012
    #   JS = 0.04025574 nats; batchmean over |Obj| = 3 -> D = 0.01341858
    assert v[("round", "distortion", "base")] == pytest.approx(0.0134185792, abs=1e-9)


def test_multihop(run):
    v = run[10]
    assert v[("multihop", "ew", "none")] == 0.5            # E1 recalled, E2 not
    assert v[("multihop", "iw", "none")] == 0.0            # hop H2 fails
    assert v[("multihop", "mh", "none")] == 1.0            # Q1 answered through its alias (few-shot questions)
    assert v[("multihop", "mh_zeroshot", "none")] == 1.0   # Q3, asked without demonstrations: labelled apart


def test_head_remeasures_every_case(run):
    v = run[10]
    # at the head: c1 (CS 1, CM .925) and c2 (CS 0, CM -1) again: means .5 and -.0375
    assert v[("conflict@head", "cs_reverse", "none")] == 0.5
    assert v[("conflict@head", "cm_reverse", "previous")] == pytest.approx((0.925 - 1.0) / 2)
    assert v[("round@head", "success", "none")] == 1.0
    assert v[("multihop@head", "mh", "none")] == 1.0
    assert not any(s.endswith("@head") for s, _, _ in run[9]), "head records only at the final version"


def test_retention_curve(run):
    v = run[10]
    # applied steps with edit prompts besides 10: 1 (R1 top-1 since version 1) and 9 (E1)
    assert v[("retention", "efficacy_top1", "none")] == 1.0


def test_records_keep_the_raw_probabilities(run):
    cs = next(r for r in run[2, "records"] if (r.suite, r.metric) == ("conflict", "cs_reverse"))
    (row,) = cs.detail
    assert row["k_o"]["p"] == pytest.approx([0.02, 0.04]) and row["k_o"]["p_intermediate"] == pytest.approx([0.5, 0.3])
    assert row["k_n"]["p"] == pytest.approx([0.6, 0.2]) and row["k_o"]["prompts"] == ["RO1", "RO2"]
    succ = next(r for r in run[8, "records"] if (r.suite, r.metric) == ("round", "success"))
    (row,) = succ.detail
    assert row["p"][0] == pytest.approx([0.7, 0.5]) and row["p_base"][2] == pytest.approx([0.2, 0.4])
    assert row["p_o_star"] == pytest.approx([0.2, 0.4]) and row["p_intermediate_o_star"] == pytest.approx([0.6, 0.2])


def test_independent_protocol_measures_each_case_from_its_own_versions():
    """A case from the base: its first step alone, then both; only applied steps are considered."""
    steps, stub = build()
    runner = ProbeRunner(None, None, None, ProbeConfig(), scorer=stub)
    ref = runner.reference(steps)
    stub.version = 7
    r7, s7 = runner.measure(step_index=7, steps=steps, reference=ref, previous=None, applied=[7])
    assert not any(r.suite == "retention" for r in r7), "no other applied step to retain"
    stub.version = 8
    r8, _ = runner.measure(step_index=8, steps=steps, reference=ref, previous=s7, applied=[7, 8])
    assert _values(r8)[("round", "success", "none")] == 1.0          # theta_m came from the case's first version
    # the version after the case's last step does not score the next case's items (built on the base)
    stub.version = 2
    runner.measure(step_index=2, steps=steps, reference=ref, previous=None, applied=[1, 2])
    assert not any(p == "O1" for p, _ in stub.calls[-1][1]) and not any(p == "SO" for p, _ in stub.calls[-1][1])
    # a case's first version scores its second step's items (the "previous" of that step)
    stub.version = 9
    runner.measure(step_index=9, steps=steps, reference=ref, previous=None, applied=[9])
    assert any(p == "E2" for p, _ in stub.calls[-1][1])
    with pytest.raises(ValueError, match="include step"):
        runner.measure(step_index=9, steps=steps, reference=ref, previous=None, applied=[1])


# ----------------------------------------------------------------------------- pure functions
def test_reference_formulas_by_hand():
    assert M.neighborhood_score([0.6, 0.2], [0.1, 0.3]) == 0.5
    assert M.neighborhood_magnitude([0.6, 0.2], [0.1, 0.3]) == pytest.approx(0.2)
    # one case each: P-bar over the prompts first, then the rule
    assert M.conflict_score([0.6, 0.1], [0.3, 0.3]) == 1.0                    # .35 > .3
    assert M.conflict_score([0.3], [0.3]) == 0.0                               # ties are not a win
    assert M.conflict_magnitude([0.5, 0.3], [0.1, 0.1]) == pytest.approx(0.75)       # (.4 - .1) / .4
    assert M.conflict_magnitude([1e-6], [0.5]) == -1.0                         # clipped
    assert M.conflict_magnitude([0.4], [0.6]) == pytest.approx(-0.5)           # not clipped above -1
    assert M.tied_fact_damage([0.8], [0.6]) == pytest.approx(0.25)
    assert M.round_success([0.4], [0.2], [0.1], [0.3]) == 0.5                  # first edit took, edit back did not
    assert M.ignore_rate([0.5, 0.3], [0.4, 0.4]) == 0.5
    assert M.failure(0.5) is False and M.failure(0.51) is True
    # D with |Obj| = 2: p = q -> 0; disjoint-ish: p = (1, 0), q = (0, 1) -> JS = ln 2, D = ln 2 / 2
    assert M.distortion([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert M.distortion([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2) / 2)
    # unnormalised P-bar vectors are L1-normalised first: (2, 0) is (1, 0)
    assert M.distortion([2.0, 0.0], [0.0, 0.5]) == pytest.approx(math.log(2) / 2)
    assert M.edit_wise([True, False, True, True]) == 0.75
    assert M.instance_wise([[True, True], [True, False]]) == 0.5
    assert M.multihop_accuracy([[False, True, False], [False, False, False]]) == 0.5
    assert M.token_agreement([[1, 2, 3], [4]], [[1, 2, 9], [4]]) == pytest.approx((2 / 3 + 1) / 2)
    assert M.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    # NKL direction: KL(edited || reference)
    e, r = {"ids": [7], "p": [0.5], "rest": 0.5}, {"ids": [7], "p": [0.25], "rest": 0.75}
    assert M.neighborhood_kl(e, r) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_text_metrics_by_hand():
    assert M.exact_match("The Pacific Ocean.", ["Pacific Ocean"])
    assert not M.exact_match("Atlantic", ["Pacific"])
    assert M.last_number("3 ducks at $1,234 each") == "1234" and M.last_number("none") is None
    # "a b a b": bigrams ab, ba, ab -> H2 = -(2/3 log2 2/3 + 1/3 log2 1/3) = 0.918296;
    # trigrams aba, bab -> H3 = 1; fluency = (2/3 * 0.918296 + 4/3 * 1) / 2
    assert M.ngram_entropy("a b a b", 2) == pytest.approx(0.9182958341)
    assert M.fluency(["a b a b"]) == pytest.approx((2 / 3 * 0.9182958341 + 4 / 3 * 1.0) / 2)
    # ROUGE-1: pred "the cat sat", ref "the cat sat on the mat": P = 3/3, R = 3/6 -> F = 2/3
    r = M.rouge(["the cat sat"], ["the cat sat on the mat"])
    assert r["rouge1"] == pytest.approx(2 / 3)
    assert r["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)    # P = 2/2, R = 2/5
    assert M.perplexity(2 * math.log(3), 2) == pytest.approx(3.0)
