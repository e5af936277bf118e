"""The editor contract, for every weight editor and for a stateful method (tests/toy_lookup.py): a
version is base weights + weight deltas + method state, and checkout, revert, the audit's "head
without step k", branch and resume all reproduce a version's outputs exactly, as the model answers
through the session's view (the method's runtime included)."""
from __future__ import annotations

import random

import pytest
import toy_lookup  # noqa: F401  (registers the "toy-lookup" method)

from ledger import Ledger
from ledger.history import revert, version_at
from simulator.deltas import EditResult, StateDelta, TensorDelta
from simulator.editors import get_editor, method_names
from simulator.probes.scoring import Scorer
from simulator.replay import ReplayOptions, Replayer
from simulator.session import Session
from simulator.streams import make_stream
from simulator.streams.builtin import builtin_records

METHODS = ["ft", "rome", "memit", "toy-lookup", "kn", "alphaedit", "r-rome"]
FAST = dict(stats_tokens=256, keyframe_every=3, progress=False, general="none")
UNRELATED = [("The capital of the place is", " Paris"), ("Toyota is a car company from", " Japan")]


class Crash(BaseException):
    """Stands in for kill -9 in the middle of a replay."""


def _outputs(s: Session, stream) -> list[tuple[float, ...]]:
    """Per-token log-probabilities of every edit's target and a few unrelated pairs, through the view."""
    pairs = [(r.prompt.format(r.subject), r.target_new) for st in stream.steps for r in st.requests] + UNRELATED
    return [tuple(t.token_logprobs) for t in Scorer(s.view, progress=False).score(pairs)]


def _stream(n: int, seed: int = 0):
    return make_stream("sequential", builtin_records(seed=seed), n=n, seed=seed)


def _start(s: Session, method: str, stream, outs: dict | None = None, crash_after: int | None = None, **kw) -> int:
    def on_step(stepno, step, records, version):
        if outs is not None:
            outs[version.id] = _outputs(s, full)
        if crash_after is not None and stepno == crash_after:
            raise Crash()
    full = kw.pop("full", stream)
    return Replayer(s, ReplayOptions(method=method, **FAST), on_step=on_step).start(
        stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind, **kw)


def _stored_result(led: Ledger, version_id: int) -> EditResult:
    """A step's weight deltas and state delta, read back from the ledger by hand."""
    deltas, state = [], None
    for row in led.deltas(version_id):
        tensors, header = led.read_artifact_with_header(row.artifact_digest)
        if row.kind == "state":
            state = StateDelta.from_artifact(tensors, header)
        else:
            deltas.append(TensorDelta(row.tensor, row.kind, tensors))
    return EditResult(deltas=deltas, state=state)


@pytest.mark.parametrize("method", METHODS)
def test_every_version_revert_branch_and_resume_reproduce_outputs(tmp_path, method):
    stream = _stream(4)
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    base_out = _outputs(s, stream)
    outs: dict[int, list] = {}
    run_id = _start(s, method, stream, outs)
    v = {st: version_at(led, run_id, st) for st in range(1, 5)}
    stateful = get_editor(method).state is not None
    assert any(k.startswith("@") for k in v[4].tensor_fingerprints) == stateful
    assert outs[v[4].id] != base_out, f"{method}: four edits changed nothing"

    # checkout of every version, in a scrambled order, reproduces its outputs bit for bit
    order = list(outs) * 2
    random.Random(0).shuffle(order)
    for vid in order + [s.base_version_id]:
        s.checkout(vid)
        assert _outputs(s, stream) == (base_out if vid == s.base_version_id else outs[vid]), f"version {vid}"

    # revert of a middle step = the stored steps 1, 3, 4 applied by hand on a fresh session
    rv = revert(led, run_id, 2)
    s.checkout(rv.id)
    reverted = _outputs(s, stream)
    by_hand = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    for st in (1, 3, 4):
        by_hand.apply(method, _stored_result(led, v[st].id))
    assert _outputs(by_hand, stream) == reverted
    assert by_hand.fingerprints == led.version(rv.id).tensor_fingerprints   # sealed by the first checkout
    s.checkout(v[3].id)
    s.checkout(rv.id)                                                      # verified against the seal
    assert _outputs(s, stream) == reverted
    # the audit's counterfactual "head without step 2" is the same model
    s.materialise(v[4].id, without={v[2].id})
    assert _outputs(s, stream) == reverted and s.current_version_id is None

    # branch at step 2 with other steps = one uninterrupted replay of steps 1, 2 and those steps
    other = _stream(2, seed=1)
    s.checkout(v[2].id)
    branch_id = _start(s, method, other, start_version_id=v[2].id, first_step=3)
    s.checkout(led.run(branch_id).head_version_id)
    branched = _outputs(s, stream)
    joined = make_stream("sequential", builtin_records(seed=0), n=2, seed=0)
    joined.steps = joined.steps[:2] + other.steps
    led2 = Ledger.open(str(tmp_path / "joined.db"))
    s2 = Session.open(led2, "tiny-gptj", device="cpu", progress=False)
    _start(s2, method, joined)
    assert _outputs(s2, stream) == branched

    # resume after a crash ends with the outputs (and fingerprints) of the uninterrupted run
    led3 = Ledger.open(str(tmp_path / "crashed.db"))
    s3 = Session.open(led3, "tiny-gptj", device="cpu", progress=False)
    with pytest.raises(Crash):
        _start(s3, method, stream, crash_after=2)
    (crashed,) = [r.id for r in led3.runs()]
    s4 = Session.open(led3, "tiny-gptj", device="cpu", progress=False)
    Replayer(s4, ReplayOptions.from_config(led3.run(crashed).config["options"])).resume(crashed)
    head = led3.version(led3.run(crashed).head_version_id)
    assert head.step == 4 and head.tensor_fingerprints == v[4].tensor_fingerprints
    s4.checkout(head.id)
    assert _outputs(s4, stream) == outs[v[4].id]
    for x in (led, led2, led3):
        x.close()


def test_stateful_method_leaves_weights_and_unrelated_inputs_alone(tmp_path):
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    stream = _stream(3)
    unrelated = [(p, t) for p, t in UNRELATED]
    before = [t.token_logprobs for t in Scorer(s.view, progress=False).score(unrelated)]
    run_id = _start(s, "toy-lookup", stream)
    head = led.version(led.run(run_id).head_version_id)
    assert set(head.tensor_fingerprints) == {"@toy-lookup"}          # no weight changed
    assert all(r.kind == "state" for st in range(1, 4) for r in led.deltas(version_at(led, run_id, st).id))
    s.checkout(head.id)
    after = [t.token_logprobs for t in Scorer(s.view, progress=False).score(unrelated)]
    assert after == before                                           # outside every radius: untouched
    eff = [p for p in led.probes(head.id, "rewrite") if p.metric == "efficacy_top1" and p.against == "none"]
    assert eff and eff[0].value == 1.0                               # and the last edit holds


def test_export_of_a_stateful_version_writes_the_state_and_how_to_load_it(tmp_path):
    led = Ledger.open(str(tmp_path / "l.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = _start(s, "toy-lookup", _stream(2))
    out = s.export(led.run(run_id).head_version_id, tmp_path / "exp")
    state = out / "method_state" / "toy-lookup.safetensors"
    assert state.is_file() and "toy-lookup" in (out / "method_state" / "README.md").read_text()
    from safetensors.torch import load_file
    assert load_file(str(state))["keys"].shape[0] == 2


def test_registry_is_derived_from_the_editor_classes():
    assert {"ft", "rome", "memit", "toy-lookup"} <= set(method_names())
    for name in method_names():
        ed = get_editor(name)
        assert ed.name == name and hasattr(ed.hparams_class, "__dataclass_fields__")
        assert isinstance(ed.changes_weights, bool)
    assert get_editor("rome").stats_layers(get_editor("rome").hparams_class(layer=3)) == [3]
    assert get_editor("ft").stats_layers(get_editor("ft").hparams_class()) == []
