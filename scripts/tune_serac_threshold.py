"""Tune SERAC's scope threshold on a training split (never on an evaluated stream).

In scope: an edit's prompt against its own paraphrase (CounterFact's rephrase_prompt). Out of scope: the
edit's prompt against its locality prompt (another subject of the same relation: the hard case). The
threshold is the one with the best balanced accuracy (``simulator.editors.serac.tune_threshold``);
the value goes into ``TUNED_THRESHOLD`` in simulator/editors/serac.py.

    python scripts/tune_serac_threshold.py [--data ../shared/data/counterfact/easyedit_format/counterfact-train.json] [--n 500]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulator.editors.serac import tune_threshold  # noqa: E402  (the repository's, not an installed copy)
from simulator.embeddings import load_embedder  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/counterfact/easyedit_format/counterfact-train.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT), help="CounterFact train split in EasyEdit's format")
    ap.add_argument("--n", type=int, default=500, help="records used (from the start of the file)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = json.loads(Path(args.data).read_text())[: args.n]
    emb = load_embedder()
    pos, neg = [], []
    for r in tqdm(records, desc="embedding"):
        q = emb.one(r["prompt"])
        if r.get("rephrase_prompt"):
            pos.append(float(q @ emb.one(r["rephrase_prompt"])))
        if r.get("locality_prompt"):
            neg.append(float(q @ emb.one(r["locality_prompt"])))
    thr, acc = tune_threshold(pos, neg)
    tpr = sum(p >= thr for p in pos) / len(pos)
    tnr = sum(n < thr for n in neg) / len(neg)
    print(f"{Path(args.data).name}: first {len(records)} records, {len(pos)} in-scope and {len(neg)} out-of-scope pairs")
    print(f"threshold {thr:.4f}  balanced accuracy {acc:.4f}  (in scope kept {tpr:.4f}, out of scope rejected {tnr:.4f})")


if __name__ == "__main__":
    main()
