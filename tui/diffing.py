"""Diff of two versions: which tensors' delta chains differ (with the steps behind each delta and
‖W_B − W_A‖ from the stored factors), and every metric at both versions, marked comparable only
where both measured the same items."""
from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from safetensors.numpy import load as load_numpy

from ledger.delta_norms import sum_norm
from tui.metrics import FIXED_SUITES, metric_order
from tui.viewmodels import DiffView, MetricDiff, TensorDiff
from tui.weights import UNREADABLE


class VersionRef(NamedTuple):
    id: int
    parent_id: int | None
    run_id: int | None
    step: int
    kind: str


class DeltaRef(NamedTuple):
    tensor: str
    kind: str
    artifact_digest: str
    shape: list
    rank: int | None
    norm: float


def _label(v) -> str:
    run = f"run {v.run_id} " if v.run_id is not None else ""
    return f"v{v.id} ({run}step {v.step}, {v.kind})"


def _take(rows, wanted: Counter) -> list:
    """The rows whose artifact is in ``wanted`` (as many times as counted), in order."""
    left = Counter(wanted)
    out = []
    for r in rows:
        if left[r[0]] > 0:
            left[r[0]] -= 1
            out.append(r)
    return out


def _contributions(ledger, path) -> dict[str, list[tuple[str, int, Any]]]:
    """tensor -> [(artifact digest, step of the edit that recorded it, delta row)] along ``path``
    ([(version, its deltas)]). A revert re-applies later steps' artifacts under its own version:
    they keep their own step."""
    rows = [(v, d) for v, deltas in path for d in deltas]
    carried = [d.artifact_digest for v, d in rows if v.kind == "revert"]
    origin = ledger.delta_origins(carried) if carried else {}
    out: dict[str, list[tuple[str, int, Any]]] = {}
    for v, d in rows:
        step = origin.get(d.artifact_digest, (None, v.step))[1] if v.kind == "revert" else v.step
        out.setdefault(d.tensor, []).append((d.artifact_digest, step, d))
    return out


def diff_norm(ledger, rows_a, rows_b) -> float | None:
    """||Σ B-only deltas − Σ A-only deltas||_F in float64 from the stored factors (numpy); it
    reads every differing delta's artifact, so the diff screen calls it off the UI thread."""
    shape = (rows_a or rows_b)[0][2].shape
    try:
        parts = [(sign, d.kind, load_numpy(ledger.store.read_bytes(digest)))
                 for sign, rows in ((-1.0, rows_a), (1.0, rows_b)) for digest, _, d in rows]
    except UNREADABLE:
        return None               # e.g. bfloat16 factors, which numpy cannot hold
    return sum_norm(parts, shape)


def _edit_of(ledger, vid: int) -> frozenset:
    return frozenset((r.subject, r.prompt, r.target_new) for r in ledger.edit_requests(vid))


def _measured(ledger, v) -> list:
    """A version's probes; a reset marker has its target's weights, so its target's probes."""
    rows = ledger.probes(v.id)
    if not rows and v.kind == "reset" and v.parent_id is not None:
        rows = ledger.probes(v.parent_id)
    return rows


def diff_versions(ledger, a: int, b: int) -> DiffView:
    """The diff without the norms ‖B−A‖ (``None``; ``TensorDiff.rows`` keeps what ``diff_norm`` needs)."""
    la = [VersionRef(*r) for r in ledger.lineage_ids(a)]      # light rows: a diff may span 10,000 versions
    lb = [VersionRef(*r) for r in ledger.lineage_ids(b)]
    common = None
    for x, y in zip(la, lb):
        if x.id != y.id:
            break
        common = x.id
    k_a = 0 if common is None else [v.id for v in la].index(common) + 1
    k_b = 0 if common is None else [v.id for v in lb].index(common) + 1
    deltas = ledger.deltas_light([v.id for v in la[k_a:] + lb[k_b:]])
    ca = _contributions(ledger, [(v, [DeltaRef(*d) for d in deltas[v.id]]) for v in la[k_a:]])
    cb = _contributions(ledger, [(v, [DeltaRef(*d) for d in deltas[v.id]]) for v in lb[k_b:]])
    tensors = []
    for name in sorted(set(ca) | set(cb)):
        # the same artifact on both sides (a revert re-applies later deltas) cancels out
        da, db = Counter(x[0] for x in ca.get(name, [])), Counter(x[0] for x in cb.get(name, []))
        only_a, only_b = da - db, db - da
        if not only_a and not only_b:
            continue
        ra, rb = _take(ca.get(name, []), only_a), _take(cb.get(name, []), only_b)
        bound = sum(d.norm for _, _, d in ra + rb)
        tensors.append(TensorDiff(tensor=name, only_a=sorted(s for _, s, _ in ra), only_b=sorted(s for _, s, _ in rb),
                                  norm=None, bound=bound, rows=(ra, rb)))
    va, vb = la[-1], lb[-1]
    edit_a, edit_b = _edit_of(ledger, a), _edit_of(ledger, b)
    same_edit = bool(edit_a) and edit_a == edit_b
    pa = {(p.suite, p.metric, p.against): p.value for p in _measured(ledger, va)}
    pb = {(p.suite, p.metric, p.against): p.value for p in _measured(ledger, vb)}
    keys = sorted(set(pa) | set(pb), key=lambda k: (metric_order(k[:2]), k[2]))
    metrics = [MetricDiff(suite=s, metric=m, against=ag, a=pa.get((s, m, ag)), b=pb.get((s, m, ag)),
                          comparable=s in FIXED_SUITES or same_edit)
               for s, m, ag in keys]
    return DiffView(a_id=a, b_id=b, a_label=_label(va), b_label=_label(vb), common_id=common,
                    tensors=tensors, metrics=metrics, same_edit=same_edit)


def fill_norms(ledger, view: DiffView) -> None:
    for t in view.tensors:
        t.norm = diff_norm(ledger, *t.rows)
