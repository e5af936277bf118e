"""Corpora for second-moment statistics: text sampled from the model itself (needs nothing), a text file
the user names, or the wikitext sample in the shared data directory (experiments only)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ledger.errors import InputError
from simulator.kv_cache import cache_kwarg, returned_cache

CORPUS_KINDS = ("self", "file", "wikitext")


def shared_data_dir() -> Path:
    env = os.environ.get("EDITLEDGER_SHARED")
    return (Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared") / "data"


def ids_digest(chunks: list[torch.Tensor]) -> str:
    """sha256 of token ids (int64 little-endian), chunk boundaries included."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


SAMPLERS = (1, 2)


@dataclass(frozen=True)
class Corpus:
    kind: str = "self"           # "self": sampled from the model; "file": path; "wikitext": shared sample
    path: str | None = None      # the text file for kind="file"
    n_tokens: int = 4096         # tokens to use (the second moment of a 2048-wide key wants more: ask)
    seq_len: int = 64            # tokens per sequence (sampled length / chunk length)
    seed: int = 0                # sampling seed for kind="self"
    temperature: float = 1.0     # sampling temperature for kind="self"
    sampler: int = 2             # kind="self": 2 = up to 64 sequences at once, inverse-CDF draws (float64);
                                 # 1 = the first sampler (16 at once, torch.multinomial), kept so that
                                 # statistics recorded with it can be rebuilt exactly

    def __post_init__(self) -> None:
        if self.kind not in CORPUS_KINDS:
            raise InputError(f"unknown corpus kind {self.kind!r}; use one of {', '.join(CORPUS_KINDS)}")
        if self.kind == "file" and not self.path:
            raise InputError("a file corpus needs a path to a UTF-8 text file")
        if self.n_tokens < 1 or self.seq_len < 2:
            raise InputError("a corpus needs n_tokens >= 1 and seq_len >= 2")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown corpus sampler {self.sampler!r}; use one of {SAMPLERS}")

    @property
    def batch(self) -> int:
        """Sequences sampled together (one forward pass per token for all of them)."""
        return 16 if self.sampler == 1 else 64

    @property
    def recipe_digest(self) -> str:
        """For kind="self" the tokens are a function of the model (its fingerprint is in the stats key) and
        this recipe, so the recipe names them without sampling again (sampling takes up to a minute)."""
        recipe = f"self|{self.n_tokens}|{self.seq_len}|{self.seed}|{self.temperature}"
        if self.sampler != 1:   # sampler 1 keeps the digest it was recorded under
            recipe += f"|sampler={self.sampler}|batch={self.batch}"
        return hashlib.sha256(recipe.encode()).hexdigest()

    def _text(self) -> str:
        if self.kind == "file":
            p = Path(self.path).expanduser()
        else:
            p = shared_data_dir() / "corpus" / "wikitext-2-raw" / "wiki.test.raw"
        try:
            return p.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise InputError(f"corpus file {p} not found; name an existing UTF-8 text file "
                             "(or use the default corpus sampled from the model)") from e
        except UnicodeDecodeError as e:
            raise InputError(f"corpus file {p} is not UTF-8 text") from e

    def tokens(self, model, tokenizer, prefix: str = "", progress: bool = True) -> list[torch.Tensor]:
        """The corpus as 1-D LongTensors of at most seq_len tokens each, n_tokens in total."""
        if self.kind == "self":
            return self._sample(model, tokenizer, prefix, progress)
        text = self._text()
        ids: list[int] = []
        # tokenize by paragraph so a huge file is never tokenized whole
        for para in text.split("\n"):
            if para.strip():
                ids.extend(tokenizer(prefix + para.strip(), add_special_tokens=True)["input_ids"])
                if len(ids) >= self.n_tokens:
                    break
        if not ids:
            raise InputError(f"corpus {self.path or 'wikitext'} holds no text")
        ids = ids[: self.n_tokens]
        return [torch.tensor(ids[i:i + self.seq_len], dtype=torch.long) for i in range(0, len(ids), self.seq_len)]

    @torch.no_grad()
    def _sample(self, model, tokenizer, prefix: str, progress: bool) -> list[torch.Tensor]:
        """``ceil(n_tokens / seq_len)`` sequences after the start tokens, ``batch`` of them at a time, one
        forward pass per position for the whole batch (with the key-value cache). The cost is one pass of
        the lm head over the whole vocabulary per position, so many short sequences at once are cheap and
        few long ones dear. Sampler 2 draws each token by inverting the float64 cumulative distribution
        with one uniform number per sequence: exact, and ~10x cheaper than torch.multinomial on a
        262k-token vocabulary (which draws an exponential variate per vocabulary entry)."""
        from tqdm import tqdm

        dev = next(model.parameters()).device
        start = tokenizer(prefix, add_special_tokens=True)["input_ids"] if prefix or tokenizer.bos_token else []
        if not start:
            start = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        n_seq = -(-self.n_tokens // self.seq_len)
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        batch = min(n_seq, self.batch)
        cache_name = cache_kwarg(model)
        keep = {} if self.sampler == 1 else {"logits_to_keep": 1}   # sampler 1 exactly as it was recorded
        out: list[torch.Tensor] = []
        bar = tqdm(total=n_seq * self.seq_len, desc="sampling corpus from the model", unit="tok",
                   disable=not progress, leave=False)
        while len(out) < n_seq:
            b = min(batch, n_seq - len(out))
            seqs = torch.tensor([start] * b, dtype=torch.long, device=dev)
            past = None
            step_in = seqs
            while seqs.shape[1] < len(start) + self.seq_len:
                o = model(input_ids=step_in, use_cache=True, **keep, **{cache_name: past})
                past = returned_cache(o)
                nxt = self._draw(o.logits[:, -1], g).to(dev)
                seqs = torch.cat([seqs, nxt], dim=1)
                step_in = nxt
                bar.update(b)
            out.extend(s.cpu() for s in seqs)
        bar.close()
        # keep the start tokens: keys are collected in the same kind of context prompts are edited in
        flat = [s[: len(start) + self.seq_len] for s in out]
        total, kept = 0, []
        for s in flat:
            take = min(len(s), self.n_tokens - total + len(start))
            kept.append(s[:take])
            total += take - len(start)
            if total >= self.n_tokens:
                break
        return kept

    def _draw(self, logits: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One token per row of ``logits`` (B, V), drawn from softmax(logits / temperature): (B, 1) long, CPU."""
        if self.sampler == 1:
            probs = torch.softmax(logits.float() / self.temperature, dim=-1).cpu()
            return torch.multinomial(probs, 1, generator=g)
        cdf = torch.softmax(logits.float() / self.temperature, dim=-1).cpu().to(torch.float64).cumsum_(-1)
        u = torch.rand(cdf.shape[0], 1, generator=g, dtype=torch.float64) * cdf[:, -1:]
        # the first index whose cumulative mass exceeds u: token i with probability p_i (p_i = 0 never)
        return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
