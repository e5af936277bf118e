"""Checkout benchmark (not a test): a 40-edit chain of rank-1 (ROME-shaped) deltas recorded in a
fresh ledger, then checkouts of random versions, forwards and backwards, timed against one plain
copy of the touched tensor (what a store of full copies per step would cost), in the same process.

    python benchmarks/bench_checkout.py                       # Gemma 3 270M's down_proj (640 x 2048)
    python benchmarks/bench_checkout.py --shape 4096 16384    # GPT-J's fc_out

The factors are random (their values do not change the cost of applying them); every checkout is
verified against the recorded fingerprints, and the run reports the time with and without that
verification, for several keyframe intervals K, as medians over the jumps.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ledger import Ledger  # noqa: E402
from simulator.checkout import Workspace  # noqa: E402
from simulator.deltas import TensorDelta  # noqa: E402
from simulator.session import Session, delta_to_input  # noqa: E402

NAME = "model.layers.5.mlp.down_proj.weight"


def build(tmp: Path, shape, steps: int, k: int) -> tuple[Session, list[int]]:
    led = Ledger.open(str(tmp / f"k{k}.db"))
    g = torch.Generator().manual_seed(0)
    module = torch.nn.Module()
    module.register_parameter(NAME.replace(".", "_"), torch.nn.Parameter(torch.randn(*shape, generator=g), requires_grad=False))
    ws = Workspace(params={NAME: getattr(module, NAME.replace(".", "_"))})
    bm = led.register_base_model(name="bench", source="synthetic", fingerprint=f"bench-{shape}", config={})
    base = led.base_version(bm.id)
    s = Session(ledger=led, lm=SimpleNamespace(model=module, fingerprint=bm.fingerprint), base_model_id=bm.id,
                base_version_id=base.id, workspace=ws, current_version_id=base.id)
    run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="bench",
                        stream_digest="0" * 64, stream_kind="sequential")
    head, fps, vids = base.id, {}, []
    for step in range(1, steps + 1):
        d = TensorDelta(NAME, "low_rank", {"u": torch.randn(shape[0], 1, generator=g) * 1e-2,
                                           "v": torch.randn(shape[1], 1, generator=g) * 1e-2})
        ws.apply(d)
        fps.update(ws.fingerprints({NAME}))
        kf = s.keyframe_of(fps) if k and step % k == 0 else None
        v = led.record_step(run.id, step=step, parent_version_id=head, requests=[], wall_time_s=0.0,
                            deltas=[delta_to_input(d, shape)], diagnostics={}, tensor_fingerprints=dict(fps),
                            keyframe=kf)
        head = v.id
        vids.append(v.id)
    s.current_version_id = head
    return s, vids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=2, type=int, default=[640, 2048])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--jumps", type=int, default=30)
    ap.add_argument("--keyframes", nargs="+", type=int, default=[0, 8, 4, 2, 1])
    a = ap.parse_args()
    torch.set_num_threads(2)
    shape = tuple(a.shape)
    # the baseline keeps a full copy of the touched tensor for every step and checks out by copying
    # one of them back (the copies are distinct tensors, so the source is not hot in the cache)
    stored = [torch.randn(*shape) for _ in range(a.steps)]
    dst = torch.empty(*shape)
    copies, rng0 = [], random.Random(1)
    for _ in range(a.jumps):
        src = stored[rng0.randrange(a.steps)]
        t = time.perf_counter()
        dst.copy_(src)
        copies.append(time.perf_counter() - t)
    copy_s = statistics.median(copies)
    del stored
    print(f"tensor {shape[0]}x{shape[1]} fp32 ({src.numel() * 4 / 2**20:.1f} MiB); one plain copy: {copy_s * 1e3:.2f} ms")
    print(f"{'K':>3} {'checkout (verified)':>21} {'ratio':>7} {'unverified':>11} {'ratio':>7} {'apply only':>11} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for k in a.keyframes:
            s, vids = build(Path(tmp), shape, a.steps, k)
            rng = random.Random(0)
            order = [rng.choice(vids) for _ in range(a.jumps)]
            full, unver, apply_only = [], [], []
            for vid in order:
                t = time.perf_counter()
                s.checkout(vid)
                full.append(time.perf_counter() - t)
            for vid in order:
                t = time.perf_counter()
                s.checkout(vid, verify=False)
                unver.append(time.perf_counter() - t)
            for vid in order:                    # chain already read: only restore + apply + fingerprint
                links, _ = s.chain(vid)
                t = time.perf_counter()
                s.workspace.materialise(links, None)
                apply_only.append(time.perf_counter() - t)
            f, u, p = (statistics.median(x) for x in (full, unver, apply_only))
            print(f"{k or '-':>3} {f * 1e3:>18.1f} ms {f / copy_s:>6.1f}x {u * 1e3:>8.1f} ms {u / copy_s:>6.1f}x "
                  f"{p * 1e3:>8.1f} ms {p / copy_s:>6.1f}x")
            s.ledger.close()
    print("K = keyframe interval ('-' = none); verified = rebuilt from the ledger and every touched tensor's sha256 "
          "checked; apply only = restore + deltas + fingerprints with the chain already in memory")


if __name__ == "__main__":
    main()
