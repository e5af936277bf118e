"""IKE (Zheng et al. 2023): editing by in-context demonstrations; the weights never change.

The edit memory (``simulator.editors.memory``) holds the stream's facts so far. For a prompt, the view's
context is built as in the paper's code (and EasyEdit's ``apply_ike_to_model`` / ``icl_lm_eval``):

    <k demonstrations, least similar first>  New Fact: <the retrieved fact>\\nPrompt: <prompt>

* the retrieved fact: the stored fact whose prompt is most similar to the prompt (all-MiniLM-L6-v2
  cosine; the latest edit wins a tie), so every prompt is answered under exactly one new fact, as in
  the paper, also when the memory holds many;
* demonstrations, each ``New Fact: f\\nPrompt: p a\\n\\n``, built from the *other* stored facts f:
  copy (p a = f itself), update (p = a paraphrase of f, a = f's new object) and retain (p = another
  stored fact's prompt, a = its current answer, which f must not change);
* chosen by similarity to ``New Fact: <fact>\\nPrompt: <fact's prompt>`` (EasyEdit's query), the top k,
  ordered so that the most similar stands next to the query (the paper's code reverses its list);
* a demonstration never contains the prompt being answered.

Differences from the paper (docs/methods.md): the paper draws demonstrations from a training split of
CounterFact; here they come from the stream's own facts, and update demonstrations need paraphrase
templates, which only the built-in fact set has (``simulator/facts``): facts from other benchmarks
give copy and retain demonstrations only.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from simulator.editors.base import register_editor
from simulator.editors.hparams import at_least
from simulator.editors.memory import Memory, MemoryEditor, best_match, fact_sentence
from simulator.embeddings import load_embedder
from simulator.facts import load_facts
from simulator.requests import EditRequest

Embed = Callable[[str], torch.Tensor]       # text -> unit vector
CONTEXT_RESERVE = 64                        # positions of the model's window kept for the prompt and target


@dataclass
class IKEHyperParams:
    k: int = at_least(0, 32)        # demonstrations per prompt (at most what the memory can give)


def registry_paraphrases(req: EditRequest) -> list[str]:
    """Paraphrases of a request's prompt from the built-in relations whose templates include it."""
    for rel in load_facts().relations.values():
        templates = [rel.prompt, *rel.paraphrases]
        if req.prompt in templates and req.relation in (None, rel.id):
            return [t.format(req.subject) for t in templates if t != req.prompt]
    return []


def demo(fact: EditRequest, prompt: str, answer: str) -> str:
    return f"New Fact: {fact_sentence(fact)}\nPrompt: {prompt}{answer}\n\n"


def query_line(fact: EditRequest) -> str:
    return f"New Fact: {fact_sentence(fact)}\nPrompt: "


def candidates(facts: list[EditRequest], active: int, embed: Embed,
               paraphrases: Callable[[EditRequest], list[str]]) -> list[tuple[str, str]]:
    """(kind, text) of every demonstration the memory offers for answering under fact ``active``."""
    a = facts[active]
    current = {f.text: f.target_new for f in facts}            # later facts overwrite earlier ones
    out: list[tuple[str, str]] = []
    for j, g in enumerate(facts):
        if j == active or g.text == a.text:                    # the fact itself, or an older edit of its prompt
            continue
        out.append(("copy", demo(g, g.text, g.target_new)))
        out += [("update", demo(g, p, g.target_new)) for p in paraphrases(g)]
        others = [h for h in facts if h.subject != g.subject and h.text != g.text]
        same = [h for h in others if (h.relation or h.prompt) == (g.relation or g.prompt)]
        pool = same or others
        if pool:
            sims = torch.stack([embed(h.text) for h in pool]) @ embed(g.text)
            h = pool[best_match(sims)]
            out.append(("retain", demo(g, h.text, current[h.text])))
    return out


def ranked(facts: list[EditRequest], active: int, embed: Embed,
           paraphrases: Callable[[EditRequest], list[str]] = registry_paraphrases) -> list[str]:
    """Every demonstration for fact ``active``, most similar to EasyEdit's query sentence first."""
    cands = candidates(facts, active, embed, paraphrases)
    if not cands:
        return []
    q = embed(f"New Fact: {fact_sentence(facts[active])}\nPrompt: {facts[active].text}")
    score = torch.stack([embed(d) for _, d in cands]) @ q
    return [cands[i][1] for i in sorted(range(len(cands)), key=lambda i: (-float(score[i]), i))]


def ike_context(facts: list[EditRequest], prompt: str, k: int, embed: Embed,
                paraphrases: Callable[[EditRequest], list[str]] = registry_paraphrases,
                cache: dict[int, list[str]] | None = None, fits: Callable[[str], bool] | None = None) -> str:
    """The text IKE puts before ``prompt`` (empty memory: nothing). ``cache``: ranked demonstrations
    by fact index, reused across prompts of one version. ``fits``: whether a context leaves the model
    room for the prompt; the least similar demonstrations are dropped until it does."""
    if not facts:
        return ""
    sims = torch.stack([embed(f.text) for f in facts]) @ embed(prompt)
    active = best_match(sims)
    if cache is None or active not in cache:
        got = ranked(facts, active, embed, paraphrases)
        if cache is None:
            cache = {}
        cache[active] = got
    # a demonstration never holds the prompt it is asked to answer
    usable = [d for d in cache[active] if not d.split("\nPrompt: ", 1)[1].startswith(prompt)][:k]
    while usable and fits is not None and not fits("".join(usable) + query_line(facts[active])):
        usable.pop()
    return "".join(reversed(usable)) + query_line(facts[active])   # most similar last, next to the query


def context_budget(model, tokenizer) -> Callable[[str], bool]:
    """Whether a context leaves ``CONTEXT_RESERVE`` positions of the model's window for prompt and target."""
    cfg = getattr(model, "config", None)
    window = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if not window or tokenizer is None:
        return lambda text: True
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= int(window) - CONTEXT_RESERVE


class IKERuntime:
    def __init__(self, memory: Memory, embed: Embed | None = None, fits: Callable[[str], bool] | None = None):
        self.memory = memory
        self._embed = embed
        self._fits = fits
        self._ctx: dict[str, str] = {}
        self._ranked: dict[int, list[str]] = {}

    def embed(self, text: str) -> torch.Tensor:
        if self._embed is None:
            self._embed = load_embedder().one
        return self._embed(text)

    def context(self, prompt: str) -> str:
        if prompt not in self._ctx:
            self._ctx[prompt] = ike_context(self.memory.facts, prompt, int(self.memory.settings.get("k", 0)),
                                            self.embed, cache=self._ranked, fits=self._fits)
        return self._ctx[prompt]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield                                                   # no hooks: the weights answer as they are


@register_editor
class IKEEditor(MemoryEditor):
    name = "ike"
    hparams_class = IKEHyperParams
    state = "an edit memory of facts, answered through retrieved in-context demonstrations"

    def settings(self, hparams: IKEHyperParams) -> dict:
        return {"k": int(hparams.k)}

    def runtime(self, model, tokenizer, spec, state: Memory) -> IKERuntime:
        return IKERuntime(state, fits=context_budget(model, tokenizer))
