"""The Ledger API: runs, steps, probes, lineage, trajectories, timeline, statistics, audit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ledger import DeltaInput, Ledger, ProbeRecord
from ledger.errors import InputError, IntegrityError


def _req(i: int) -> dict:
    return {"subject": f"Subject {i}", "prompt": "{} is located in", "target_new": f" New{i}",
            "target_old": f" Old{i}", "relation": "P131", "case_id": str(i)}


def _low_rank(name: str, seed: int, shape=(8, 6)) -> DeltaInput:
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(shape[0], 1, generator=g), torch.randn(shape[1], 1, generator=g)
    return DeltaInput(tensor=name, kind="low_rank", tensors={"u": u, "v": v}, shape=shape, rank=1,
                      norm=float(u.double().norm() * v.double().norm()))


PG_URL = os.environ.get("EDITLEDGER_TEST_PG_URL")


def wipe_pg(url: str) -> None:
    """Empty the disposable PostgreSQL database the tests were given."""
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("DROP SCHEMA public CASCADE")
        c.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path, monkeypatch):
    """The same API tests on SQLite and, where EDITLEDGER_TEST_PG_URL names a server (.ci/run starts
    one), on PostgreSQL through the same migrations."""
    if request.param == "sqlite":
        with Ledger.open(str(tmp_path / "l.db")) as L:
            yield L
        return
    if not PG_URL:
        pytest.skip("EDITLEDGER_TEST_PG_URL not set (no PostgreSQL server)")
    monkeypatch.setenv("EDITLEDGER_HOME", str(tmp_path))
    wipe_pg(PG_URL)
    with Ledger.open(PG_URL) as L:
        yield L
    wipe_pg(PG_URL)


@pytest.fixture
def base(ledger):
    return ledger.register_base_model("tiny-gptj", "test", "a" * 64, {"n_layer": 2},
                                      tensor_fingerprints={"h.0.w": "0" * 64})


def _run(ledger, base, **kw):
    return ledger.begin_run(base_model_id=base.id, method="ROME", hparams={"layer": 1},
                            stream_name="s.jsonl", stream_digest="b" * 64, stream_kind="sequential", **kw)


def test_open_does_not_import_torch(tmp_path):
    code = ("import sys; from ledger import Ledger; L = Ledger.open(sys.argv[1]); L.runs(); L.close(); "
            "assert 'torch' not in sys.modules, 'ledger imported torch'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.db")], check=True)


def test_register_base_model_is_idempotent(ledger, base):
    again = ledger.register_base_model("other name", "x", "a" * 64, {})
    assert again.id == base.id
    bv = ledger.base_version(base.id)
    assert (bv.kind, bv.step, bv.run_id, bv.parent_id) == ("base", 0, None, None)
    assert bv.tensor_fingerprints == {"h.0.w": "0" * 64}
    assert len(ledger.base_models()) == 1


def test_run_with_40_steps_and_probes_reads_back_in_order(ledger, base):
    run = _run(ledger, base, config={"seed": 0})
    assert run.status == "running" and run.head_version_id == ledger.base_version(base.id).id
    parent = run.head_version_id
    made = []
    for step in range(1, 41):
        v = ledger.record_step(
            run.id, step=step, parent_version_id=parent, requests=[_req(step)],
            deltas=[_low_rank("h.0.w", step)], tensor_fingerprints={"h.0.w": f"{step:064x}"},
            diagnostics={"loss": 1.0 / step}, wall_time_s=0.01 * step,
            probes=[ProbeRecord("rewrite", "efficacy_top1", step / 40, 1, detail=[{"p": step}]),
                    ProbeRecord("neighborhood", "ns", 1 - step / 100, 3, against="base"),
                    ProbeRecord("neighborhood", "ns", 0.5, 3, against="previous")],
            group=f"g{step // 2}", role="forward")
        made.append(v)
        parent = v.id
    run = ledger.run(run.id)
    assert run.head_version_id == made[-1].id and run.step_count == 40
    assert ledger.last_committed_step(run.id) == 40
    vs = ledger.versions(run.id)
    assert [v.step for v in vs] == list(range(1, 41))
    assert [v.id for v in vs] == [v.id for v in made]
    # per-version content
    v17 = vs[16]
    reqs = ledger.edit_requests(v17.id)
    assert [(r.subject, r.target_new, r.group, r.role, r.position) for r in reqs] == \
        [("Subject 17", " New17", "g8", "forward", 0)]
    assert v17.diagnostics == {"loss": 1.0 / 17} and v17.wall_time_s == pytest.approx(0.17)
    ps = ledger.probes(v17.id)
    assert [(p.suite, p.metric, p.against, p.value, p.count) for p in ps] == [
        ("rewrite", "efficacy_top1", "none", 17 / 40, 1), ("neighborhood", "ns", "base", 1 - 0.17, 3),
        ("neighborhood", "ns", "previous", 0.5, 3)]
    assert ps[0].detail == [{"p": 17}] and ps[0].step == 17 and ps[0].run_id == run.id
    assert [p.suite for p in ledger.probes(v17.id, "rewrite")] == ["rewrite"]
    d = ledger.deltas(v17.id)
    assert len(d) == 1 and d[0].kind == "low_rank" and d[0].shape == [8, 6] and d[0].rank == 1
    got = ledger.read_artifact(d[0].artifact_digest)
    want = _low_rank("h.0.w", 17).tensors
    assert torch.equal(got["u"], want["u"]) and torch.equal(got["v"], want["v"])
    # lineage crosses into the base version
    lin = ledger.lineage(made[-1].id)
    assert lin[0].kind == "base" and [v.id for v in lin[1:]] == [v.id for v in made]
    # timeline
    tl = ledger.timeline(run.id)
    assert [t.step for t in tl] == list(range(1, 41))
    assert tl[4].subject == "Subject 5" and tl[4].target_old == " Old5" and tl[4].efficacy == pytest.approx(5 / 40)
    assert ledger.metrics(run.id) == [("neighborhood", "ns"), ("rewrite", "efficacy_top1")]
    summary = ledger.runs()
    assert len(summary) == 1 and summary[0].steps == 40 and summary[0].model_name == "tiny-gptj"


def test_trajectory_in_step_order_even_when_recorded_out_of_order(ledger, base):
    run = _run(ledger, base)
    parent = run.head_version_id
    ids = {}
    for step in range(1, 6):
        v = ledger.record_step(run.id, step=step, parent_version_id=parent, requests=[_req(step)], deltas=[],
                               tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
        ids[step] = v.id
        parent = v.id
    for step in (5, 2, 4, 1, 3):   # an expensive suite scored later, in any order
        ledger.record_probes(ids[step], [ProbeRecord("perplexity", "ppl", 10.0 + step, 100, against="none"),
                                         ProbeRecord("perplexity", "ppl", float(step), 100, against="base")])
        ledger.record_probes(ids[step], [ProbeRecord("rewrite", "efficacy_top1", -1.0, 1, against="previous"),
                                         ProbeRecord("rewrite", "efficacy_top1", step / 10, 1, against="none")])
    # the timeline shows efficacy against "none" over other references, whatever the recording order
    assert [t.efficacy for t in ledger.timeline(run.id)] == [s / 10 for s in range(1, 6)]
    assert ledger.trajectory(run.id, "perplexity", "ppl", "none") == [(s, 10.0 + s) for s in range(1, 6)]
    assert ledger.trajectory(run.id, "perplexity", "ppl", "base") == [(s, float(s)) for s in range(1, 6)]
    assert [s for s, _ in ledger.trajectory(run.id, "perplexity", "ppl")] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert ledger.trajectory(run.id, "perplexity", "nope") == []


def test_batch_step_keyframe_reset_branch_and_revert(ledger, base):
    run = _run(ledger, base)
    v1 = ledger.record_step(run.id, step=1, parent_version_id=run.head_version_id,
                            requests=[_req(1), _req(2), _req(3)],
                            deltas=[_low_rank("h.0.w", 1), _low_rank("h.1.w", 2)],
                            tensor_fingerprints={"h.0.w": "1" * 64, "h.1.w": "2" * 64}, diagnostics={},
                            wall_time_s=1.0, keyframe={"h.0.w": torch.ones(8, 6, dtype=torch.bfloat16)})
    assert [r.position for r in ledger.edit_requests(v1.id)] == [0, 1, 2]
    assert [d.tensor for d in ledger.deltas(v1.id)] == ["h.0.w", "h.1.w"]   # keyframe rows not among deltas
    kf = ledger.keyframe(v1.id)
    assert set(kf) == {"h.0.w"}
    assert torch.equal(ledger.read_artifact(kf["h.0.w"])["h.0.w"], torch.ones(8, 6, dtype=torch.bfloat16))
    assert ledger.keyframe(ledger.base_version(base.id).id) is None
    v2 = ledger.record_step(run.id, step=2, parent_version_id=v1.id, requests=[_req(4)],
                            deltas=[_low_rank("h.0.w", 4)], tensor_fingerprints={}, diagnostics={}, wall_time_s=1.0)
    # reset to v1 (history kept), then revert
    m = ledger.add_marker(run.id, kind="reset", parent_version_id=v1.id, step=3,
                          tensor_fingerprints=v1.tensor_fingerprints, note="reset to step 1")
    assert ledger.run(run.id).head_version_id == m.id
    rv = ledger.record_step(run.id, step=4, parent_version_id=m.id, kind="revert", requests=[], deltas=[],
                            tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0, note="revert step 2")
    assert [v.id for v in ledger.versions(run.id)] == [v1.id, v2.id, m.id, rv.id]
    with pytest.raises(IntegrityError, match="already has a step 2"):   # step numbers are unique in a run
        ledger.add_marker(run.id, kind="reset", parent_version_id=v1.id, step=2, tensor_fingerprints={}, note="x")
    assert [v.id for v in ledger.lineage(rv.id)][1:] == [v1.id, m.id, rv.id]
    # a branch: another run continuing from v1
    br = _run(ledger, base, parent_version_id=v1.id, name="branch")
    assert br.head_version_id == v1.id and br.start_version_id == v1.id and br.name == "branch"
    b1 = ledger.record_step(br.id, step=2, parent_version_id=v1.id, requests=[_req(9)], deltas=[],
                            tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    assert [v.id for v in ledger.lineage(b1.id)][1:] == [v1.id, b1.id]
    chain = ledger.lineage_deltas(rv.id)
    assert [(v.id, [d.tensor for d in ds], kf) for v, ds, kf in chain] == [
        (ledger.base_version(base.id).id, [], None), (v1.id, ["h.0.w", "h.1.w"], kf), (m.id, [], None),
        (rv.id, [], None)]
    ledger.set_head(run.id, v2.id)
    assert ledger.run(run.id).head_version_id == v2.id
    ledger.set_run_status(run.id, "done", note="finished")
    assert (ledger.run(run.id).status, ledger.run(run.id).note) == ("done", "finished")
    with pytest.raises(InputError, match="unknown run status"):
        ledger.set_run_status(run.id, "exploded")
    with pytest.raises(InputError, match="does not exist"):
        ledger.version(10_000)


def test_stats_cache_round_trip(ledger):
    key = dict(model_fingerprint="c" * 64, layer="h.1.mlp.fc_out", corpus_digest="e" * 64, sample_count=1000)
    assert ledger.get_stats(**key) is None
    c = torch.randn(6, 6, dtype=torch.float64)
    digest = ledger.put_stats(**key, tensors={"mom2": c, "count": torch.tensor([1000])})
    got_digest, got = ledger.get_stats(**key)
    assert got_digest == digest and torch.equal(got["mom2"], c) and got["count"].item() == 1000
    assert ledger.put_stats(**key, tensors={"mom2": c, "count": torch.tensor([1000])}) == digest
    assert ledger.get_stats(**{**key, "sample_count": 10}) is None


def test_audit_findings_replace_previous(ledger, base):
    run = _run(ledger, base)
    v = ledger.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[_req(1)], deltas=[],
                           tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    ledger.record_audit(run.id, [{"version_id": v.id, "metric": "ns", "score": 0.2, "evidence": {"drop": 0.2},
                                  "summary": "edit 1 hurt neighbours"}])
    ledger.record_audit(run.id, [
        {"version_id": v.id, "metric": "ns", "score": 0.3, "evidence": {"drop": 0.3}, "summary": "a"},
        {"version_id": None, "metric": "ppl", "score": 0.9, "evidence": [1, 2], "summary": "b"}])
    got = ledger.audit_findings(run.id)
    assert [(f.summary, f.score) for f in got] == [("b", 0.9), ("a", 0.3)]
    assert got[1].evidence == {"drop": 0.3}


def test_a_failed_step_commits_nothing_and_leaves_only_an_orphan(ledger, base, monkeypatch):
    run = _run(ledger, base)
    head = run.head_version_id

    def boom(*a, **k):
        raise RuntimeError("crash inside the step's transaction")

    monkeypatch.setattr(Ledger, "_add_probes", staticmethod(boom))
    with pytest.raises(RuntimeError):
        ledger.record_step(run.id, step=1, parent_version_id=head, requests=[_req(1)],
                           deltas=[_low_rank("h.0.w", 1)], tensor_fingerprints={}, diagnostics={},
                           wall_time_s=0.0, probes=[ProbeRecord("rewrite", "efficacy_top1", 1.0)])
    monkeypatch.undo()
    assert ledger.versions(run.id) == [] and ledger.run(run.id).head_version_id == head
    assert ledger.last_committed_step(run.id) == 0
    assert ledger.counts()["deltas"] == 0 and ledger.counts()["artifacts"] == 0
    rep = ledger.fsck(progress=False)
    assert len(rep.orphans) == 1 and rep.ok     # the artifact was written first: a harmless orphan
    # the retried step reuses the same content-addressed file
    v = ledger.record_step(run.id, step=1, parent_version_id=head, requests=[_req(1)],
                           deltas=[_low_rank("h.0.w", 1)], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    assert ledger.deltas(v.id)[0].artifact_digest == rep.orphans[0]
    assert ledger.fsck(progress=False).orphans == []


def test_a_reader_sees_a_writer_commits_in_another_connection(tmp_path):
    path = str(tmp_path / "shared.db")
    with Ledger.open(path) as writer, Ledger.open(path, create=False) as reader:
        bm = writer.register_base_model("tiny", "t", "a" * 64, {})
        run = writer.begin_run(base_model_id=bm.id, method="FT", hparams={}, stream_name="s",
                               stream_digest="b" * 64, stream_kind="sequential")
        parent = run.head_version_id
        for step in range(1, 4):
            parent = writer.record_step(run.id, step=step, parent_version_id=parent, requests=[_req(step)],
                                        deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0,
                                        probes=[ProbeRecord("rewrite", "efficacy_top1", step / 4)]).id
            assert [t.step for t in reader.timeline(run.id)] == list(range(1, step + 1))
            assert reader.runs()[0].head_version_id == parent


def test_nan_and_inf_measurements_round_trip(ledger, base):
    import math

    run = _run(ledger, base)
    v = ledger.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[_req(1)],
                           deltas=[DeltaInput("w", "dense", {"delta": torch.ones(2)}, (2,), norm=float("nan"))],
                           tensor_fingerprints={}, diagnostics={"loss": float("inf")}, wall_time_s=0.0,
                           probes=[ProbeRecord("perplexity", "ppl", float("nan"), 8, detail=[{"ppl": float("nan")}]),
                                   ProbeRecord("perplexity", "ppl_base", float("inf"), 8)])
    (p_nan, p_inf) = ledger.probes(v.id)
    assert math.isnan(p_nan.value) and p_inf.value == float("inf")
    if ledger._sqlite:      # JSON on PostgreSQL has no NaN/Infinity: they are stored as null there (ledger/engine.py)
        assert math.isnan(p_nan.detail[0]["ppl"]) and ledger.version(v.id).diagnostics == {"loss": float("inf")}
    else:
        assert p_nan.detail[0]["ppl"] is None and ledger.version(v.id).diagnostics == {"loss": None}
    assert math.isnan(ledger.deltas(v.id)[0].norm)
    ((step, value),) = ledger.trajectory(run.id, "perplexity", "ppl")
    assert step == 1 and math.isnan(value)


def test_in_memory_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLEDGER_HOME", str(tmp_path))
    with Ledger.open("sqlite://") as L:
        bm = L.register_base_model("tiny", "t", "a" * 64, {})
        run = L.begin_run(base_model_id=bm.id, method="FT", hparams={}, stream_name="s", stream_digest="b" * 64,
                          stream_kind="sequential")
        assert [r.id for r in L.runs()] == [run.id] and L.home == tmp_path


def test_revert_reuses_stored_artifacts(ledger, base):
    run = _run(ledger, base)
    v1 = ledger.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[_req(1)],
                            deltas=[_low_rank("h.0.w", 1)], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    v2 = ledger.record_step(run.id, step=2, parent_version_id=v1.id, requests=[_req(2)],
                            deltas=[_low_rank("h.1.w", 2)], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    (d2,) = ledger.deltas(v2.id)
    n_artifacts = ledger.counts()["artifacts"]
    carried = DeltaInput(tensor=d2.tensor, kind=d2.kind, tensors={}, shape=tuple(d2.shape), rank=d2.rank,
                         norm=d2.norm, artifact=d2.artifact_digest)
    rv = ledger.record_step(run.id, step=3, parent_version_id=run.head_version_id, kind="revert", requests=[],
                            deltas=[carried], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0,
                            note="revert step 1")
    (rd,) = ledger.deltas(rv.id)
    assert (rd.artifact_digest, rd.tensor, rd.nbytes, rd.shape) == (d2.artifact_digest, "h.1.w", d2.nbytes, d2.shape)
    assert ledger.counts()["artifacts"] == n_artifacts
    assert ledger.versions_using(d2.artifact_digest) == [v2.id, rv.id]
    bogus = DeltaInput(tensor="w", kind="dense", tensors={}, shape=(2,), artifact="0" * 64)
    with pytest.raises(IntegrityError, match="is not in this ledger"):
        ledger.record_step(run.id, step=4, parent_version_id=rv.id, kind="revert", requests=[], deltas=[bogus],
                           tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    assert ledger.run(run.id).head_version_id == rv.id


def test_a_writer_waits_for_another_process_writing(tmp_path):
    import sqlite3
    import threading
    import time

    path = tmp_path / "busy.db"
    with Ledger.open(str(path)) as L:
        bm = L.register_base_model("tiny", "t", "a" * 64, {})
        run = L.begin_run(base_model_id=bm.id, method="FT", hparams={}, stream_name="s", stream_digest="b" * 64,
                          stream_kind="sequential")
        locked = threading.Event()

        def other_process():   # e.g. the TUI recording a revert while the replay records a step
            con = sqlite3.connect(path, isolation_level=None)
            con.execute("BEGIN IMMEDIATE")
            con.execute("UPDATE run SET note = 'busy' WHERE id = ?", (run.id,))
            locked.set()
            time.sleep(0.5)
            con.execute("COMMIT")
            con.close()

        t = threading.Thread(target=other_process)
        t.start()
        locked.wait()
        v = L.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[_req(1)], deltas=[],
                          tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
        t.join()
        assert L.run(run.id).head_version_id == v.id and L.run(run.id).note == "busy"


def test_seal_version_records_fingerprints_once(ledger, base):
    run = _run(ledger, base)
    rv = ledger.record_step(run.id, step=1, parent_version_id=run.head_version_id, kind="revert", requests=[],
                            deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    ledger.seal_version(rv.id, {"h.0.w": "1" * 64})
    assert ledger.version(rv.id).tensor_fingerprints == {"h.0.w": "1" * 64}
    with pytest.raises(IntegrityError, match="already sealed"):
        ledger.seal_version(rv.id, {"h.0.w": "2" * 64})
    assert ledger.version(rv.id).tensor_fingerprints == {"h.0.w": "1" * 64}
