"""The replay engine on tiny-gptj: every stream kind, determinism, resume after crashes, and the
versions and weights that reset / revert / branch promise."""
from __future__ import annotations

import pytest
import torch

from ledger import Ledger
from ledger.history import reset, revert, version_at
from simulator.deltas import EditResult, TensorDelta
from simulator.replay import ReplayOptions, Replayer
from simulator.requests import STREAM_KINDS
from simulator.session import Session

FAST = dict(stats_tokens=256, keyframe_every=3, progress=False, general="none")


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs in the crashed process."""


def _stream(kind: str, n: int = 2):
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records, synthesize
    records = builtin_records(seed=0) if kind in ("sequential", "round", "batch") else synthesize(kind, None, 0)
    return make_stream(kind, records, n=n * (2 if kind == "batch" else 1), seed=0,
                       batch_size=2 if kind == "batch" else 1)


def _replay(tmp_path, stream, name="l.db", method="rome", **kw):
    led = Ledger.open(str(tmp_path / name))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    opts = ReplayOptions(method=method, **{**FAST, **kw})
    run_id = Replayer(s, opts).start(stream.steps, stream_name=stream.name, stream_digest=stream.digest,
                                     stream_kind=stream.kind)
    return led, s, run_id


def _fingerprints(led, run_id):
    return [dict(v.tensor_fingerprints) for v in led.versions(run_id)]


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_every_stream_kind_replays_and_checks_out(tmp_path, kind):
    stream = _stream(kind)
    led, s, run_id = _replay(tmp_path, stream, method="memit" if kind == "batch" else "rome")
    run = led.run(run_id)
    assert run.status == "done"
    versions = led.versions(run_id)
    assert [v.step for v in versions] == list(range(1, len(stream.steps) + 1))
    assert all(v.tensor_fingerprints for v in versions)
    assert sum(v.n_requests for v in versions) == sum(len(st.requests) for st in stream.steps)
    # probes recorded at every step, rewrite efficacy included
    for v in versions:
        assert any(p.suite == "rewrite" for p in led.probes(v.id))
    s.checkout(versions[0].id)            # verified against the recorded fingerprints
    s.checkout(run.head_version_id)
    led.close()


def test_same_inputs_give_same_fingerprints(tmp_path):
    stream = _stream("sequential", 3)
    a, _, ra = _replay(tmp_path, stream, "a.db")
    b, _, rb = _replay(tmp_path, stream, "b.db")
    assert _fingerprints(a, ra) == _fingerprints(b, rb)


def _crash_run(tmp_path, stream, monkeypatch, where: str):
    led = Ledger.open(str(tmp_path / "crash.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    if where == "between artifact and commit":
        real = Ledger._write_artifact
        calls = {"n": 0}

        def write_then_die(self, tensors, kind, meta):
            out = real(self, tensors, kind, meta)
            if kind == "delta" and meta.get("step") == 3:
                raise Crash()
            return out
        monkeypatch.setattr(Ledger, "_write_artifact", write_then_die)
        on_step = None
    else:
        def on_step(stepno, *_):
            if stepno == 3:
                raise Crash()
    rep = Replayer(s, ReplayOptions(**FAST), on_step=on_step)
    with pytest.raises(Crash):
        rep.start(stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    monkeypatch.undo()
    run_id = led.runs()[-1].id
    return led, run_id


@pytest.mark.parametrize("where", ["between artifact and commit", "after commit"])
def test_resume_after_crash_ends_with_reference_fingerprints(tmp_path, monkeypatch, where):
    stream = _stream("sequential", 5)
    ref_led, _, ref_run = _replay(tmp_path, stream, "ref.db")
    led, run_id = _crash_run(tmp_path, stream, monkeypatch, where)
    assert led.last_committed_step(run_id) == (2 if where.startswith("between") else 3)
    fresh = Session.for_run(led, run_id, device="cpu", progress=False)     # a new process: a fresh model
    opts = ReplayOptions.from_config(led.run(run_id).config["options"])
    Replayer(fresh, opts).resume(run_id)
    assert led.run(run_id).status == "done"
    assert _fingerprints(led, run_id) == _fingerprints(ref_led, ref_run)
    if where.startswith("between"):
        assert led.fsck(progress=False).orphans == []     # the orphan of the crash was reused on resume


def test_reset_revert_branch(tmp_path):
    stream = _stream("sequential", 4)
    led, s, run_id = _replay(tmp_path, stream)
    v = {st: version_at(led, run_id, st) for st in range(1, 5)}
    head_before = led.run(run_id).head_version_id

    # reset: a marker whose parent is step 2; the head moves; later versions stay
    marker = reset(led, run_id, 2)
    assert marker.kind == "reset" and marker.parent_id == v[2].id
    assert led.run(run_id).head_version_id == marker.id
    assert head_before in [x.id for x in led.versions(run_id)]
    s.checkout(marker.id)
    assert s.fingerprints == v[2].tensor_fingerprints

    # revert step 2 of the original head: base + d1 + d3 + d4, applied by hand on a fresh model
    led.set_head(run_id, head_before)
    rv = revert(led, run_id, 2)
    assert rv.kind == "revert" and rv.parent_id == v[1].id
    s.checkout(rv.id)
    by_hand = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    for st in (1, 3, 4):
        for row in led.deltas(v[st].id):
            by_hand.apply("rome", EditResult([TensorDelta(row.tensor, row.kind, led.read_artifact(row.artifact_digest))]))
    for name, p in s.lm.model.named_parameters():
        assert torch.equal(p, dict(by_hand.lm.model.named_parameters())[name]), name
    assert led.version(rv.id).tensor_fingerprints, "the first checkout seals a revert's fingerprints"
    s.checkout(v[3].id)
    s.checkout(rv.id)                      # now verified against the sealed fingerprints

    # branch at step 2 with other steps: a new run sharing the prefix
    other = _stream("sequential", 2)
    s.checkout(v[2].id)
    new_id = Replayer(s, ReplayOptions(**FAST)).start(
        other.steps, stream_name=other.name, stream_digest=other.digest, stream_kind=other.kind,
        start_version_id=v[2].id, first_step=3)
    lineage = led.lineage(led.run(new_id).head_version_id)
    assert [x.id for x in lineage[:3]] == [s.base_version_id, v[1].id, v[2].id]
    assert lineage[3].kind == "branch" and lineage[3].run_id == new_id
    assert [x.step for x in lineage[4:]] == [3, 4]
    s.checkout(led.run(new_id).head_version_id)


def test_ten_step_replay_records_full_probe_set_and_report_renders_from_ledger(tmp_path):
    from simulator import report
    stream = _stream("sequential", 10)
    every = {s: 1 for s in ("perplexity", "downstream", "fluency")}
    led, s, run_id = _replay(tmp_path, stream, general="builtin", probe_every=every)
    versions = led.versions(run_id)
    assert len(versions) == 10
    for v in versions:
        suites = {p.suite for p in led.probes(v.id)}
        assert {"rewrite", "paraphrase", "neighborhood", "perplexity", "downstream", "fluency"} <= suites, suites
        if v.step > 1:
            assert "retention" in suites
    assert [st for st, _ in led.trajectory(run_id, "perplexity", "ppl", against="none")] == list(range(1, 11))
    led.close()
    # the report needs the ledger alone
    again = Ledger.open(str(tmp_path / "l.db"), create=False)
    reports = report.collect(again, [run_id])
    for fmt in ("text", "json", "csv", "markdown"):
        out = report.render(reports, fmt)
        assert out.strip() and "rome" in out.lower()
    assert report.plot(reports, str(tmp_path / "fig4.png"))
    assert (tmp_path / "fig4.png").stat().st_size > 1000


def test_statistics_are_recorded_in_each_ledger_and_reused_across_ledgers(tmp_path, monkeypatch):
    import simulator.stats.second_moment as sm
    import simulator.stats_ledger
    monkeypatch.setattr(simulator.stats_ledger, "cache_root", lambda: tmp_path / "machine" / "models")
    stream = _stream("sequential", 2)
    a, _, ra = _replay(tmp_path, stream, "a.db")
    used_a = {d for v in a.versions(ra) for d in v.stats_used}
    assert len(used_a) == 1

    def no_collect(*args, **kw):
        raise AssertionError("statistics were collected again instead of reused")
    monkeypatch.setattr(sm, "collect_second_moment", no_collect)
    b, _, rb = _replay(tmp_path, stream, "b.db")
    used_b = {d for v in b.versions(rb) for d in v.stats_used}
    assert used_b == used_a                                   # same bytes, same digest
    assert b.store.exists(next(iter(used_b)))                 # and the artifact is in ledger b itself
    assert _fingerprints(a, ra) == _fingerprints(b, rb)
