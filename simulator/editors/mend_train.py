"""Training MEND's network on edit records (``editledger train mend``), resumable.

One training edit (reference: eric-mitchell/mend ``trainer.py`` ``edit_step``; EasyEdit's ZsRE collate for
decoder-only models): the network turns the gradient of NLL(target | question) into an update of the
edited tensors (``simulator.editors.mend``); with that update in place the loss is
    cedit * NLL(target | rephrased question) + cloc * KL(before || after) on an unrelated question's answer
and its gradient trains the network and the per-tensor steps (Adam each, gradients accumulated over
``accumulate`` edits, norm clipped to ``grad_clip``). The standardisation statistics of the gradient
factors are updated on every training edit before they are used.

Records are ZsRE in MEND's format: ``src`` (question), ``alt`` (new answer), ``rephrase``, ``loc`` and
``loc_ans`` (an unrelated question and its answer). The order of edits is a seeded permutation per pass
over the data, so a resumed training sees the same edits in the same order. A checkpoint (network,
both optimisers' state, progress) is a safetensors file written atomically every ``checkpoint_every``
optimiser steps; resuming from it ends with the same tensors as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm import tqdm

from ledger.artifacts import atomic_write, serialize
from ledger.errors import InputError
from simulator.editors.mend import (MENDHyperParams, MENDNetwork, make_example, nll, score_log_probs,
                                    gradient_factors, transformed_updates, with_updates)

RECORD_FIELDS = ("src", "alt", "rephrase", "loc", "loc_ans")
TRAIN_FIELDS = ("lr", "lr_lr", "cedit", "cloc", "accumulate", "grad_clip", "train_edits", "max_length", "seed",
                "edit_lr", "layers", "modules", "rank", "n_hidden")
# The budget is not part of a checkpoint's key: the first k edits do not depend on it (constant learning
# rates, a fixed order), so a training can be extended with a larger --edits. (Only a budget that is not a
# multiple of `accumulate` ends on a partial step, which a longer run would not have taken.)
KEY_FIELDS = tuple(f for f in TRAIN_FIELDS if f != "train_edits")


def load_records(path: str | Path) -> list[dict]:
    """The usable records of a ZsRE (MEND format) file: a JSON list, or JSON lines."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InputError(f"training data {p} not found") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as e:
        raise InputError(f"cannot read training data {p} ({e.__class__.__name__}); give a ZsRE JSON file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise InputError(f"training data {p} is neither a JSON list nor JSON lines ({e})") from None
    if not isinstance(data, list):
        raise InputError(f"training data {p} must be a list of ZsRE records (src, alt, rephrase, loc, loc_ans)")
    recs = [{k: str(d[k]).strip() for k in RECORD_FIELDS} for d in data
            if isinstance(d, dict) and all(str(d.get(k, "")).strip() for k in RECORD_FIELDS)]
    if not recs:
        raise InputError(f"training data {p} has no record with all of {', '.join(RECORD_FIELDS)} "
                         "(ZsRE in MEND's format, e.g. ../shared/data/zsre/zsre_mend_train-1k.json)")
    return recs


def records_digest(records: list[dict]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def training_key(model_fingerprint: str, data_digest: str, hp: MENDHyperParams) -> str:
    cfg = {f: getattr(hp, f) for f in KEY_FIELDS}
    return hashlib.sha256(json.dumps([model_fingerprint, data_digest, cfg], sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def frozen(model) -> Iterator[None]:
    """The model's parameters need no gradient while the network trains (put back after)."""
    was = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in was:
            p.requires_grad_(False)
        yield
    finally:
        for p, r in was:
            p.requires_grad_(r)


@dataclass
class TrainStats:
    edits: int = 0                       # training edits done
    steps: int = 0                       # optimiser steps done
    history: list[dict] = field(default_factory=list)   # per optimiser step: mean losses and edit success


class MENDTrainer:
    def __init__(self, model, tokenizer, spec, hp: MENDHyperParams, records: list[dict], model_fingerprint: str):
        self.model, self.tok, self.spec, self.hp, self.records = model, tokenizer, spec, hp, records
        self.fingerprint = model_fingerprint
        self.data_digest = records_digest(records)
        self.key = training_key(model_fingerprint, self.data_digest, hp)
        dev = next(model.parameters()).device
        self.net = MENDNetwork(model, spec, hp).to(dev)
        self.opt = torch.optim.Adam([p for n, p in self.net.named_parameters() if n != "edit_lrs"], lr=hp.lr)
        self.lr_opt = torch.optim.Adam([self.net.edit_lrs], lr=hp.lr_lr)
        self.stats = TrainStats()
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    # ---- data order
    def record_at(self, e: int) -> dict:
        n = len(self.records)
        g = torch.Generator().manual_seed(self.hp.seed * 1_000_003 + e // n)
        return self.records[int(torch.randperm(n, generator=g)[e % n])]

    def examples(self, rec: dict):
        sp = lambda s: " " + s  # noqa: E731  (answers are continued after a space)
        L = self.hp.max_length
        return (make_example(self.tok, self.spec, rec["src"], sp(rec["alt"]), L),
                make_example(self.tok, self.spec, rec["rephrase"], sp(rec["alt"]), L),
                make_example(self.tok, self.spec, rec["loc"], sp(rec["loc_ans"]), L))

    # ---- one training edit
    def train_edit(self, rec: dict) -> dict:
        ex_in, ex_out, ex_loc = self.examples(rec)
        with torch.no_grad():
            base = score_log_probs(self.model, [ex_loc], self.pad)[0]
        factors, pre = gradient_factors(self.model, self.net, [ex_in], self.pad)
        for t in self.net.targets:
            self.net.nets[t.net_key].observe(*factors[t.module])
        ups = transformed_updates(self.net, factors)
        with with_updates(self.model, ups):
            lp_out = score_log_probs(self.model, [ex_out], self.pad)
            post = score_log_probs(self.model, [ex_loc], self.pad)[0]
        l_edit = nll(lp_out, [ex_out])
        l_loc = (base.exp() * (base - post)).sum(-1).mean()
        loss = self.hp.cedit * l_edit + self.hp.cloc * l_loc
        (loss / self.hp.accumulate).backward()
        top = lp_out[0].detach().argmax(-1).tolist() == ex_out.targets
        return {"pre_nll": pre, "l_edit": float(l_edit.detach()), "l_loc": float(l_loc.detach()), "success": float(top)}

    def step(self) -> float:
        params = list(self.net.parameters())
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.hp.grad_clip))
        self.opt.step()
        self.lr_opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.lr_opt.zero_grad(set_to_none=True)
        return norm

    def run(self, checkpoint: Path | None = None, progress: bool = True) -> TrainStats:
        hp = self.hp
        total = hp.train_edits
        bar = tqdm(total=total, initial=self.stats.edits, desc="train mend", unit="edit", disable=not progress,
                   dynamic_ncols=True)
        window: list[dict] = []
        try:
            with frozen(self.model):
                self.net.train()
                while self.stats.edits < total:
                    window.append(self.train_edit(self.record_at(self.stats.edits)))
                    self.stats.edits += 1
                    bar.update(1)
                    if self.stats.edits % hp.accumulate == 0 or self.stats.edits == total:
                        norm = self.step()
                        self.stats.steps += 1
                        row = {k: round(sum(w[k] for w in window) / len(window), 5) for k in window[0]}
                        row.update(step=self.stats.steps, edits=self.stats.edits, grad_norm=round(norm, 4))
                        self.stats.history.append(row)
                        window = []
                        bar.set_postfix_str(f"edit {row['l_edit']:.3f} loc {row['l_loc']:.4f} "
                                            f"success {row['success']:.2f}")
                        if checkpoint is not None and (self.stats.steps % hp.checkpoint_every == 0
                                                       or self.stats.edits == total):
                            self.save(checkpoint)
        finally:
            bar.close()
            self.net.eval()
        return self.stats

    # ---- checkpoints (safetensors: network, optimiser state, progress in the header)
    def save(self, path: Path) -> None:
        tensors = {f"net.{k}": v for k, v in self.net.to_tensors().items()}
        for name, opt in (("opt", self.opt), ("lr_opt", self.lr_opt)):
            for i, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    tensors[f"{name}.{i}.{k}"] = v.detach().reshape(-1) if v.dim() == 0 else v.detach()
        meta = {"key": self.key, "stats": json.dumps(asdict(self.stats))}
        atomic_write(Path(path), serialize(tensors, meta))

    def load(self, path: Path) -> bool:
        """Resume from ``path`` if it is a checkpoint of this training (same model, data and settings)."""
        path = Path(path)
        if not path.is_file():
            return False
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("key") != self.key:
            return False
        tensors = load_file(str(path))
        dev = next(self.model.parameters()).device
        self.net.load_state_dict({k[4:]: v.to(dev) for k, v in tensors.items() if k.startswith("net.")})
        for name, opt in (("opt", self.opt), ("lr_opt", self.lr_opt)):
            sd = opt.state_dict()
            state: dict = {}
            for k, v in tensors.items():
                if k.startswith(name + "."):
                    _, i, field_ = k.split(".", 2)
                    state.setdefault(int(i), {})[field_] = v.reshape(()) if field_ == "step" else v.to(dev)
            sd["state"] = state
            opt.load_state_dict(sd)
        s = json.loads(meta["stats"])
        self.stats = TrainStats(edits=s["edits"], steps=s["steps"], history=s["history"])
        return True

    # ---- held-out evaluation (records the training never reached)
    def held_out(self, n: int) -> list[dict]:
        """The last ``n`` records of the first pass's order: unseen when ``train_edits`` < records - n."""
        total = len(self.records)
        return [self.record_at(total - 1 - i) for i in range(min(n, total))]

    @torch.no_grad()
    def evaluate(self, records: list[dict], progress: bool = False) -> dict:
        """Edit success of the trained network, one edit at a time from the unedited model: top-1 of the
        whole new answer on the question (efficacy) and on its rephrase (generalisation), and the KL on
        the unrelated question's answer (locality), as in training."""
        self.net.eval()
        eff, gen, kl = [], [], []
        for rec in tqdm(records, desc="evaluate mend", unit="edit", disable=not progress, leave=False):
            ex_in, ex_out, ex_loc = self.examples(rec)
            base = score_log_probs(self.model, [ex_loc], self.pad)[0]
            with torch.enable_grad():
                factors, _ = gradient_factors(self.model, self.net, [ex_in], self.pad)
            ups = transformed_updates(self.net, factors)
            with with_updates(self.model, ups):
                lp_in, lp_out = score_log_probs(self.model, [ex_in, ex_out], self.pad)
                post = score_log_probs(self.model, [ex_loc], self.pad)[0]
            eff.append(float(lp_in.argmax(-1).tolist() == ex_in.targets))
            gen.append(float(lp_out.argmax(-1).tolist() == ex_out.targets))
            kl.append(float((base.exp() * (base - post)).sum(-1).mean()))
        n = max(1, len(records))
        return {"records": len(records), "efficacy_top1": sum(eff) / n, "generalization_top1": sum(gen) / n,
                "locality_kl": sum(kl) / n}

    def artifact_meta(self, wall_s: float) -> dict:
        return {**self.net.meta(), "model_fingerprint": self.fingerprint, "data_digest": self.data_digest,
                "records": len(self.records), "train": {f: getattr(self.hp, f) for f in TRAIN_FIELDS},
                "edits": self.stats.edits, "steps": self.stats.steps, "wall_s": round(wall_s, 1),
                "last": self.stats.history[-1] if self.stats.history else {}}


def checkpoint_path(home: Path, key: str) -> Path:
    return Path(home) / "training" / f"mend-{key[:24]}.safetensors"
