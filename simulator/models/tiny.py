"""tiny-gptj: a seeded GPT-J, briefly trained on a few fact sentences, with a tokenizer built in code (no download).

The tokenizer is a byte-level BPE whose merges are constructed, not trained, so it is identical on
every machine and every run: each word of ``_WORDS`` (with a leading space, and the capitalised ones
also without) becomes one token; anything else falls back to single bytes, so every string tokenizes.

Why the merges cannot interfere: with the byte-level pre-tokenizer, "Ġ" (the space) only ever appears
as the first symbol of a pre-token, and every "Ġ" merge has a left side starting with "Ġ", so within a
pre-token only the pair at its start can merge — words grow strictly left to right. All "Ġ" merges rank
before the merges of space-less words (whose left side starts with a capital, and we only include
words that are Capital+lowercase), so those cannot cut into a "Ġ" word either.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPTJConfig, GPTJForCausalLM, PreTrainedTokenizerFast

# Words that the tests, examples and demo prompts use, plus common English. Order matters (ids).
_WORDS = """
the of and to in is was a an for on as by with at from that this it its be are were which who
has have had not or but one two three first second new old city country capital located born died
language speaks spoke native official citizen works worked work plays played position team club
founded headquarters owned owner made produced developed created written author wrote religion
continent part member genre occupation profession instrument named after named named father mother
son daughter wife husband sister brother lives live lived home field known famous best
The Eiffel Tower Paris Rome France Italy Germany Berlin London England Spain Madrid Tokyo Japan
China Beijing India Delhi Russia Moscow Canada Toronto Ottawa America American States United
Europe Asia Africa Australia Sydney Brazil Mexico Egypt Cairo Greece Athens Vienna Austria
Amsterdam Netherlands Dublin Ireland Warsaw Poland Prague Lisbon Portugal Seattle Chicago
Boston York Los Angeles California Texas Florida Apple Microsoft Google Toyota Honda Nokia Sony
BMW Intel IBM Samsung Ford Nintendo Colosseum Louvre Statue Liberty Big Ben Danny Davis Michael
Jordan Obama Einstein Newton Shakespeare Mozart Beethoven Picasso Messi Ronaldo Barack Albert
Isaac William Wolfgang Pablo Lionel Cristiano Steve Jobs Bill Gates Elon Musk Tesla English
French Italian German Spanish Japanese Chinese Russian Dutch Polish Portuguese Greek Latin Arabic
Christianity Islam Buddhism Judaism Hindu football basketball baseball soccer tennis golf piano
guitar violin jazz rock pop physics chemistry mathematics music painting poet actor singer
politician president king queen prime minister mayor emperor scientist composer painter
is located in the city of its capital currently what where when how
""".split()


def _dedupe(words: list[str]) -> list[str]:
    seen: set[str] = set()
    return [w for w in words if not (w in seen or seen.add(w))]


def build_tiny_tokenizer():
    """A deterministic byte-level BPE tokenizer (``PreTrainedTokenizerFast``) for tiny-gptj."""
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: ord(c))
    vocab: dict[str, int] = {"<|endoftext|>": 0}
    for c in byte_chars:
        vocab.setdefault(c, len(vocab))
    spaced_merges: list[tuple[str, str]] = []
    bare_merges: list[tuple[str, str]] = []
    words = _dedupe(_WORDS)

    def add_word(word: str, merges: list[tuple[str, str]]) -> None:
        cur = word[0]
        for ch in word[1:]:
            nxt = cur + ch
            if nxt not in vocab:
                vocab[nxt] = len(vocab)
                merges.append((cur, ch))
            cur = nxt

    for w in words:
        add_word("Ġ" + w, spaced_merges)
    for w in words:
        if w[0].isupper() and w[1:].islower():
            add_word(w, bare_merges)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=spaced_merges + bare_merges, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=256)


# Config of the tiny model: small enough for milliseconds per edit, the same modules as GPT-J.
TINY_CONFIG = dict(
    n_layer=4,          # blocks; ROME edits layer 1, MEMIT layers 1-2
    n_embd=64,          # residual width; fc_out is (64, 256)
    n_head=4,           # head dim 16
    rotary_dim=8,       # rotary on the first 8 dims of each head, like GPT-J's partial rotary
    n_inner=256,        # 4 * n_embd, like GPT-J
    n_positions=256,    # longest prompt the tests use, with room
)
TINY_TRAIN = dict(
    seed=1234,          # torch seed for init and batches (the global RNG state is restored afterwards)
    steps=150,          # Adam steps on the fact sentences below (a few seconds on one idle core)
    lr=5e-3,            # Adam learning rate
)

# A random transformer does not move information from the subject to the last token, so no editor can
# work on it. A few hundred steps on these sentences give tiny-gptj real (toy) fact recall: subject
# -> attribute lookups through attention, like the circuits ROME edits in real models.
TINY_FACTS = [
    ("Eiffel Tower", "The {} is located in the city of", " Paris"),
    ("Colosseum", "The {} is located in the city of", " Rome"),
    ("Louvre", "The {} is located in the city of", " Paris"),
    ("Big Ben", "The {} is located in the city of", " London"),
    ("Statue of Liberty", "The {} is located in the city of", " York"),
    ("Danny Davis", "{} plays the position of", " football"),
    ("Michael Jordan", "{} plays the position of", " basketball"),
    ("Lionel Messi", "{} plays the position of", " soccer"),
    ("Barack Obama", "The mother tongue of {} is", " English"),
    ("Pablo Picasso", "The mother tongue of {} is", " Spanish"),
    ("Wolfgang Mozart", "The mother tongue of {} is", " German"),
    ("Albert Einstein", "The mother tongue of {} is", " German"),
    ("France", "The capital of {} is", " Paris"),
    ("Italy", "The capital of {} is", " Rome"),
    ("Germany", "The capital of {} is", " Berlin"),
    ("Japan", "The capital of {} is", " Tokyo"),
    ("Spain", "The capital of {} is", " Madrid"),
    ("Egypt", "The capital of {} is", " Cairo"),
    ("Japan", "The official language of {} is", " Japanese"),
    ("France", "The official language of {} is", " French"),
    ("Italy", "The official language of {} is", " Italian"),
    ("Toyota", "{} was founded in", " Japan"),
    ("Apple", "{} was founded in", " California"),
    ("Nokia", "{} was founded in", " Finland"),
    ("BMW", "{} was founded in", " Germany"),
    ("Steve Jobs", "{} is a citizen of", " America"),
    ("Isaac Newton", "{} is a citizen of", " England"),
    ("William Shakespeare", "{} is a citizen of", " England"),
]
_TINY_PREFIXES = ["", "The following is true. "]


def tiny_fact_sentences() -> list[str]:
    return [pre + p.replace("{}", s) + o for s, p, o in TINY_FACTS for pre in _TINY_PREFIXES]


def _train(model, tok, steps: int, lr: float) -> None:
    sents = tiny_fact_sentences()
    enc = [tok(t)["input_ids"] for t in sents]
    T = max(map(len, enc))
    ids = torch.zeros(len(enc), T, dtype=torch.long)
    mask = torch.zeros(len(enc), T, dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


def _recipe_digest() -> str:
    return hashlib.sha256(json.dumps([TINY_CONFIG, TINY_TRAIN, TINY_FACTS, _TINY_PREFIXES, _WORDS,
                                      torch.__version__]).encode()).hexdigest()[:16]


def build_tiny_gptj(dtype: torch.dtype = torch.float32, cache_dir=None):
    """(model, tokenizer): seeded init + short deterministic training on CPU with one thread, so the same
    weights come out every time on a machine. Cached as safetensors in ``cache_dir`` when given."""
    tok = build_tiny_tokenizer()
    config = GPTJConfig(vocab_size=len(tok), bos_token_id=0, eos_token_id=0, pad_token_id=0,
                        tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        **TINY_CONFIG)
    cached = Path(cache_dir) / f"tiny-gptj-{_recipe_digest()}.safetensors" if cache_dir else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_TRAIN["seed"])
        model = GPTJForCausalLM(config)
        if cached is not None and cached.exists():
            load_model(model, str(cached))
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one thread: reductions in a fixed order, same weights every run
            try:
                with torch.enable_grad():
                    _train(model, tok, TINY_TRAIN["steps"], TINY_TRAIN["lr"])
            finally:
                torch.set_num_threads(threads)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".tmp{os.getpid()}")
                save_model(model, str(tmp))
                os.replace(tmp, cached)
    model = model.to(dtype)
    model.eval()
    return model, tok
