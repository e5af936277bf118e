"""The ledger at 10,000 steps (record, then read the timeline, a trajectory and a lineage) and the artifact
store's throughput (write with fsync, read with the digest verified), on a fresh SQLite ledger in a temp dir.
The same record loop serves GPT-J's shapes (``gptj``): only the delta's shape changes."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from editledger.bench.figures import Figure, Section, repeat

PROBES = (("rewrite", "efficacy_top1", "none"), ("paraphrase", "efficacy_top1", "none"),
          ("neighborhood", "ns", "base"), ("neighborhood", "nkl", "base"), ("perplexity", "ppl", "none"))


def record_chain(ledger, steps: int, delta_shape: tuple[int, int] | None, rank: int = 1,
                 tensors: list[str] | None = None, desc: str = "record") -> tuple[int, int, list[float]]:
    """A run of ``steps`` steps, 5 probe records each and (if ``delta_shape``) a rank-``rank`` delta of
    that shape on each tensor in ``tensors``. Returns (run id, head version id, seconds per step)."""
    import torch

    from ledger import DeltaInput, ProbeRecord
    tensors = tensors or ["model.layers.5.mlp.down_proj.weight"]
    bm = ledger.register_base_model("bench", "synthetic", f"bench-{delta_shape}-{rank}", {})
    run = ledger.begin_run(base_model_id=bm.id, method="rome", hparams={"layer": 5}, stream_name="bench",
                           stream_digest="1" * 64, stream_kind="sequential")
    g = torch.Generator().manual_seed(0)
    parent, per_step = run.head_version_id, []
    for step in tqdm(range(1, steps + 1), desc=desc, unit="step", leave=False):
        deltas = []
        if delta_shape is not None:
            deltas = [DeltaInput(t, "low_rank", {"u": torch.randn(delta_shape[0], rank, generator=g),
                                                 "v": torch.randn(delta_shape[1], rank, generator=g)},
                                 delta_shape, rank, 1.0) for t in tensors]
        req = {"subject": f"Subject {step}", "prompt": "{} is located in", "target_new": " Rome",
               "target_old": " Paris", "relation": "P131"}
        probes = [ProbeRecord(s, m, 0.5 + (step % 10) / 20, 1, against=a) for s, m, a in PROBES]
        t = time.perf_counter()
        v = ledger.record_step(run.id, step=step, parent_version_id=parent, requests=[req], deltas=deltas,
                               tensor_fingerprints={t_: f"{step:064x}" for t_ in tensors},
                               diagnostics={"loss": 0.01}, wall_time_s=0.1, probes=probes)
        per_step.append(time.perf_counter() - t)
        parent = v.id
    return run.id, parent, per_step


def bench_ledger(quick: bool) -> Section:
    from ledger import Ledger
    from ledger.artifacts import ArtifactStore
    steps = 1_000 if quick else 10_000          # quick: a smoke test; the README's figures are the full run's
    sec = Section("ledger", f"Ledger at {steps:,} steps and the artifact store")
    with tempfile.TemporaryDirectory(prefix="bench_ledger_") as tmp:
        # quick: rows and probes only; full: a rank-1 delta artifact (Gemma's down_proj shape) per step too
        shape = None if quick else (640, 2048)
        with Ledger.open(str(Path(tmp) / "bench.db")) as led:
            run_id, head, per_step = record_chain(led, steps, shape)
        sec.add(Figure("record a step", "ms", [x * 1e3 for x in per_step],
                       note=f"{steps:,} steps, 5 probes each" + ("" if shape is None else ", a rank-1 delta artifact")))
        with Ledger.open(str(Path(tmp) / "bench.db")) as led:
            n = 3 if quick else 7
            reads = {"timeline": lambda: led.timeline(run_id),
                     "trajectory": lambda: led.trajectory(run_id, "perplexity", "ppl", "none"),
                     "lineage": lambda: led.lineage(head)}
            for name, fn in reads.items():
                assert len(fn()) >= steps, f"{name} of a {steps}-step run returned too few rows"
                sec.add(Figure(f"read the {name} ({steps:,} versions)", "ms",
                               [x * 1e3 for x in repeat(fn, n)], goal=None if name == "lineage" else "<= 100"))
        # artifact store throughput: one Gemma down_proj-sized fp32 tensor (5.2 MB) per file
        import torch
        store = ArtifactStore(Path(tmp) / "store")
        g = torch.Generator().manual_seed(1)
        blobs = [{"t": torch.randn(640, 2048, generator=g)} for _ in range(4 if quick else 10)]
        mb = blobs[0]["t"].numel() * 4 / 1e6
        digests, w = [], []
        for b in blobs:
            t = time.perf_counter()
            digests.append(store.write(b)[0])
            w.append(mb / (time.perf_counter() - t))
        r = []
        for d in digests:
            t = time.perf_counter()
            store.read(d)
            r.append(mb / (time.perf_counter() - t))
        sec.add(Figure("artifact write (fsync)", "MB/s", w, note=f"{len(blobs)} files of {mb:.1f} MB"),
                Figure("artifact read (sha256 verified)", "MB/s", r, note=f"{len(blobs)} files of {mb:.1f} MB"))
        sec.info = {"steps": steps, "delta_artifacts": shape is not None}
    return sec
