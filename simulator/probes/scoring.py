"""Model scoring: batched, teacher-forced log-probabilities of targets after prompts.

One padded forward pass per batch; the backbone runs once over ``prompt + target[:-1]`` (rows shared
between pairs whose sequences are prefixes of one another) and the LM head is applied only at the
positions that predict a target token (and, when asked, at the last prompt
position for a next-token distribution). Multi-token targets are teacher-forced in the same pass.
``score_one_by_one`` is the plain reference (one full ``model(...)`` call per pair, full logits) that
the tests and ``benchmarks/bench_scoring.py`` compare against.

The scorer sees the model through a ``simulator.runtime.ModelView``: every forward pass runs inside
``view.active()`` (a method's hooks) and every prompt is read after ``view.context(prompt)`` (a
method's text context), so a parameter-preserving method is scored exactly like a weight edit.
Perplexity windows are raw text: they get the hooks, not a context.

The metric arithmetic lives in ``metrics.py`` and never sees the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from simulator.runtime import ModelView, as_view


@dataclass
class TargetScore:
    """What the model thinks of one target after one prompt (teacher-forced)."""
    token_ids: list[int]                 # the target's token ids (tokens(prompt+target) - tokens(prompt))
    token_logprobs: list[float]          # log P(token_i | prompt, token_<i), natural log
    argmax: list[int]                    # the model's top-1 token at each target position
    dist: dict | None = None             # next-token distribution after the prompt, when asked for

    @property
    def n(self) -> int:
        return len(self.token_ids)

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.n

    @property
    def prob(self) -> float:
        """Per-token geometric-mean probability exp(mean log-prob): ROME's length-normalised score."""
        return math.exp(self.mean_logprob)

    @property
    def top1(self) -> bool:
        """The greedy continuation starts with the target (every target token is the argmax)."""
        return all(a == t for a, t in zip(self.argmax, self.token_ids))

    @property
    def token_acc(self) -> float:
        """EasyEdit-style token accuracy: the fraction of target tokens that are the argmax."""
        return sum(a == t for a, t in zip(self.argmax, self.token_ids)) / self.n

    def to_json(self) -> dict:
        d = {"lp": self.token_logprobs, "ids": self.token_ids, "am": self.argmax}
        if self.dist is not None:
            d["dist"] = self.dist
        return d


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


class Scorer:
    """Scores (prompt, target) pairs with one model view (or a plain model and its tokenizer).

    ``prefix`` is prepended to every prompt (the model spec's ``prompt_prefix``, e.g. a BOS string
    for models whose tokenizer does not add one); by default the view's."""

    def __init__(self, model: "ModelView | torch.nn.Module", tokenizer=None, *, prefix: str | None = None,
                 batch_size: int = 16, progress: bool = False):
        assert batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"
        self.view = as_view(model, tokenizer)
        self.model = self.view.model
        self.tokenizer = self.view.tokenizer
        self.prefix = (self.view.prompt_prefix if prefix is None else prefix) or ""
        self.batch_size = batch_size
        self.progress = progress
        self._cache: dict[str, list[int]] = {}
        cfg = getattr(model, "config", None)
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0

    # ---------------------------------------------------------------- tokenisation
    def tokens(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(self.prefix + text)["input_ids"])
            self._cache[text] = ids
        return ids

    def encode(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        """Context ids and target ids: target = tokens(prompt + target) - tokens(prompt).

        When the tokenizer merges across the boundary, the context is the longest common prefix of
        the two tokenisations and the target is the rest."""
        ctx = self.view.context(prompt)
        p = self.tokens(ctx + prompt)
        full = self.tokens(ctx + prompt + target)
        k = 0
        for a, b in zip(p, full):
            if a != b:
                break
            k += 1
        assert k < len(full), f"target {target!r} adds no tokens after prompt {prompt!r}"
        assert k >= 1, f"prompt {prompt!r} encodes to no tokens; give the model spec a prompt prefix (BOS)"
        return full[:k], full[k:]

    # ---------------------------------------------------------------- the forward pass
    def _head(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(h).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @torch.no_grad()
    def score(self, pairs: Sequence[tuple[str, str]],
              dists: Sequence[None | int | list[int]] | None = None,
              desc: str = "scoring") -> list[TargetScore]:
        """Batched scores for ``pairs``; ``dists[i]`` asks for the next-token distribution after
        prompt i: an int k (its top-k tokens plus the rest mass) or a list of token ids (their
        probabilities plus the rest mass)."""
        if dists is None:
            dists = [None] * len(pairs)
        assert len(dists) == len(pairs), "dists must be parallel to pairs"
        enc = [self.encode(p, t) for p, t in pairs]
        with self.view.active():
            return self._score(enc, dists, desc)

    def _score(self, enc, dists, desc) -> list[TargetScore]:
        # Each pair needs the sequence prompt + target[:-1] (the last target token is predicted, never
        # read). Rows are shared: a pair whose sequence is a prefix of another row's reads from that
        # row (causal attention), so P(new) and P(old) after one prompt cost one row, not two.
        need = [tuple(c + t[:-1]) for c, t in enc]
        rows: list[tuple[int, ...]] = []
        where: dict[tuple[int, ...], int] = {}
        for i in sorted(range(len(enc)), key=lambda i: -len(need[i])):
            if need[i] not in where:
                rows.append(need[i])
                r = len(rows) - 1
                for k in range(1, len(need[i]) + 1):
                    where.setdefault(need[i][:k], r)
        users: list[list[int]] = [[] for _ in rows]
        for i in range(len(enc)):
            users[where[need[i]]].append(i)
        out: list[TargetScore | None] = [None] * len(enc)
        dev = _model_device(self.model)
        order = list(range(len(rows)))          # already longest first: batches hold similar lengths
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        it = tqdm(batches, desc=desc, leave=False, disable=not self.progress or len(batches) < 3)
        base = self.model.base_model
        for batch in it:
            seqs = [rows[r] for r in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, sq in enumerate(seqs):         # right padding: positions stay 0..len-1
                ids[b, :len(sq)] = torch.tensor(sq)
                mask[b, :len(sq)] = 1
            hidden = base(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
            bi, cols, spans = [], [], []
            for b, r in enumerate(batch):
                for i in users[r]:
                    c, t = enc[i]
                    spans.append((i, len(bi)))
                    for j in range(len(t)):       # position predicting target token j
                        bi.append(b)
                        cols.append(len(c) - 1 + j)
            logits = self._head(hidden[bi, cols])
            logp = torch.log_softmax(logits, dim=-1)
            for i, k in spans:
                c, t = enc[i]
                lp = logp[k:k + len(t)]
                tt = torch.tensor(t, device=lp.device)
                out[i] = TargetScore(
                    token_ids=list(t),
                    token_logprobs=lp.gather(1, tt[:, None])[:, 0].double().tolist(),
                    argmax=lp.argmax(-1).tolist(),
                    dist=_dist(logits[k], dists[i]) if dists[i] is not None else None)
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def score_one_by_one(self, pairs: Sequence[tuple[str, str]]) -> list[TargetScore]:
        """Reference path: one unpadded full forward per pair, full logits (for tests/benchmarks)."""
        dev = _model_device(self.model)
        res = []
        for p, t in pairs:
            c, tt = self.encode(p, t)
            ids = torch.tensor([c + tt], device=dev)
            with self.view.active():
                logits = self.model(input_ids=ids).logits[0].float()
            logp = torch.log_softmax(logits[len(c) - 1:len(c) - 1 + len(tt)], dim=-1)
            res.append(TargetScore(
                token_ids=list(tt),
                token_logprobs=logp.gather(1, torch.tensor(tt, device=dev)[:, None])[:, 0].double().tolist(),
                argmax=logp.argmax(-1).tolist()))
        return res

    # ---------------------------------------------------------------- perplexity
    @torch.no_grad()
    def text_nll(self, text: str, *, window: int = 128, desc: str = "perplexity") -> tuple[float, int]:
        """Total negative log-likelihood (nats) and the number of predicted tokens of ``text``, cut
        into non-overlapping windows of ``window`` tokens. Every window starts with the model's own
        opening (its BOS and prompt prefix, as a prompt does) and predicts all of its text tokens;
        a model with no opening predicts all but a window's first token. Without the opening, the
        later windows of Gemma read as if cut mid-document (perplexity 376 instead of ~30 on wikitext)."""
        head = self.tokens("")
        ids = self.tokens(text)
        if ids[:len(head)] != head:             # the opening merged with the text: none is repeated
            head = []
        body = ids[len(head):]
        start = max(1, len(head))               # the first predicted position of every window
        chunks = [head + body[i:i + window] for i in range(0, len(body), window)]
        chunks = [c for c in chunks if len(c) > start]
        dev = _model_device(self.model)
        base = self.model.base_model
        nll, n = 0.0, 0
        batches = [chunks[i:i + self.batch_size] for i in range(0, len(chunks), self.batch_size)]
        for batch in tqdm(batches, desc=desc, leave=False, disable=not self.progress or len(batches) < 3):
            with self.view.active():
                nll_b, n_b = self._window_nll(batch, dev, base, start)
            nll += nll_b
            n += n_b
        return nll, n

    def _window_nll(self, batch, dev, base, start: int = 1) -> tuple[float, int]:
        """NLL (nats) and predicted-token count of one batch of windows (tokens from ``start`` on)."""
        width = max(len(c) for c in batch)
        x = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, c in enumerate(batch):
            x[r, :len(c)] = torch.tensor(c)
            mask[r, :len(c)] = 1
        hidden = base(input_ids=x.to(dev), attention_mask=mask.to(dev)).last_hidden_state
        sel = mask[:, 1:].bool()
        sel[:, :start - 1] = False              # the opening is given, not predicted
        h = hidden[:, :-1][sel.to(dev)]
        tgt = x[:, 1:][sel].to(dev)
        logp = torch.log_softmax(self._head(h), dim=-1)
        return -float(logp.gather(1, tgt[:, None]).double().sum()), int(tgt.numel())

    # ---------------------------------------------------------------- greedy generation
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 32, stop: str | None = None,
                 desc: str = "generating") -> list[str]:
        """Greedy continuations (left-padded batches through ``model.generate``); cut at ``stop``.

        A batch stops as soon as every row has ``stop`` in its text (or has ended): the text before the
        stop is the same, the decoding steps after it are not taken (on a CPU each costs about one pass
        of the lm head over the whole vocabulary; the built-in QA and summary sets need a third of them)."""
        dev = _model_device(self.model)
        outs: list[str] = [""] * len(prompts)
        ids_of = [self.tokens(self.view.context(p) + p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(ids_of[i]))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=desc, leave=False, disable=not self.progress or len(batches) < 2):
            seqs = [ids_of[i] for i in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, s in enumerate(seqs):          # left padding for generation
                ids[r, width - len(s):] = torch.tensor(s)
                mask[r, width - len(s):] = 1
            until = StoppingCriteriaList([_RowsDone(self.tokenizer, width, stop)] if stop else [])
            with self.view.active():
                gen = self.model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                          max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.pad_id, stopping_criteria=until)
            for r, i in enumerate(batch):
                text = self.tokenizer.decode(gen[r, width:].tolist(), skip_special_tokens=True)
                if stop and stop in text:
                    text = text[:text.index(stop)]
                outs[i] = text
        return outs


class _RowsDone(StoppingCriteria):
    """Per row: done once the text generated after column ``start`` holds ``stop``."""

    def __init__(self, tokenizer, start: int, stop: str):
        self.tokenizer, self.start, self.stop = tokenizer, start, stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.tensor([self.stop in self.tokenizer.decode(row[self.start:].tolist(), skip_special_tokens=True)
                             for row in input_ids], dtype=torch.bool, device=input_ids.device)


def _dist(logits: torch.Tensor, want: int | list[int]) -> dict:
    """A next-token distribution coarse-grained to a set of tokens plus one bucket for the rest
    (softmax in float64 so that the rest mass is not float32 rounding noise)."""
    p = torch.softmax(logits.double(), dim=-1)
    if isinstance(want, int):
        k = min(want, p.numel())
        vals, idx = torch.topk(p, k)
    else:
        idx = torch.tensor(want, dtype=torch.long, device=p.device)
        vals = p[idx]
    rest = max(0.0, 1.0 - float(vals.sum()))
    return {"ids": idx.tolist(), "p": vals.tolist(), "rest": rest}
