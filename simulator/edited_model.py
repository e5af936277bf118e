"""A version of the model, ready to use: the Hugging Face model and tokenizer with the version's
weights, answering through the version's method state.

Weight-editing methods (ROME, MEMIT, FT, ...) are the plain model. GRACE answers through hooks around
one layer (its codebook), IKE and SERAC through a text context put before the prompt (retrieved
demonstrations, a retrieved edit). ``generate`` and ``forward`` go through both, exactly as editledger's
probes score the version (``simulator.runtime``: ``view.active()`` around every forward pass, the
prompt read after ``view.context(prompt)``):

    m = EditedModel(session, version_id)
    m.generate("The Eiffel Tower is located in the city of", max_new_tokens=5)
    with m.active():                          # your own calls, through the method's hooks
        out = m.model(**m.tokenizer(m.prompt_text(prompt), return_tensors="pt"))

The session owns the live weights and may move them for something else (another checkout, a replay);
every call here first makes this version live again (verified, or rebuilt the same way for a
counterfactual), so the object stays right for as long as it is used through its methods.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable, Iterator

import torch

from ledger.errors import InputError
from simulator.editors.base import STATE_SLOT_PREFIX, is_state_slot


class EditedModel:
    """One version of a run as a usable model (see the module docstring). Attributes: ``version_id``,
    ``run_id``, ``step``, ``without`` (versions left out: a counterfactual), ``fingerprints``."""

    def __init__(self, session, version_id: int, *, without: Iterable[int] = (), run_id: int | None = None,
                 step: int | None = None):
        self.session = session
        self.version_id = version_id
        self.without = frozenset(without)
        self.run_id, self.step = run_id, step
        self.fingerprints: dict[str, str] = {}
        self._make_live()

    # ---- the live version ------------------------------------------------------------------
    def _make_live(self) -> None:
        s = self.session
        if self.without:
            self.fingerprints = s.materialise(self.version_id, without=self.without)
        else:
            self.fingerprints = s.checkout(self.version_id)

    def _ensure_live(self) -> None:
        s = self.session
        here = None if self.without else self.version_id
        if s.current_version_id != here or s.fingerprints != self.fingerprints:
            self._make_live()

    @property
    def model(self):
        """The Hugging Face model with this version's weights (live now). For a method with state it
        answers without that state unless called inside ``active()`` with ``prompt_text``."""
        self._ensure_live()
        return self.session.lm.model

    @property
    def tokenizer(self):
        return self.session.lm.tokenizer

    @property
    def spec(self):
        """The model spec (edit layers, module names, prompt prefix)."""
        return self.session.lm.spec

    @property
    def methods(self) -> list[str]:
        """The stateful methods this version answers through (empty for weight edits)."""
        self._ensure_live()
        return sorted(n[len(STATE_SLOT_PREFIX):] for n in self.session.fingerprints if is_state_slot(n))

    def method_state(self, method: str):
        """The live state of a stateful method (a GRACE codebook, an IKE or SERAC edit memory)."""
        self._ensure_live()
        if method not in self.methods:
            raise InputError(f"version {self.version_id} holds no state of {method!r}; it has: "
                             f"{', '.join(self.methods) or 'none (a weight edit)'}")
        return self.session.state(method)

    # ---- answering through the method's runtime -------------------------------------------------
    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The method's hooks installed on the model for the block (nothing for weight edits)."""
        self._ensure_live()
        with self.session.view.active():
            yield

    def context(self, prompt: str) -> str:
        """The text a method puts before ``prompt`` (IKE's demonstrations, SERAC's edit; "" otherwise)."""
        self._ensure_live()
        return self.session.view.context(prompt)

    def prompt_text(self, prompt: str) -> str:
        """What the model reads for ``prompt``: the model's prompt prefix, the method's context, the prompt."""
        return self.session.view.prompt_prefix + self.context(prompt) + prompt

    def _encode(self, prompt: str) -> dict[str, torch.Tensor]:
        dev = next(self.session.lm.model.parameters()).device
        enc = self.tokenizer(self.prompt_text(prompt), return_tensors="pt")
        return {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def generate(self, prompt: str | list[str], max_new_tokens: int = 20, **kwargs) -> str | list[str]:
        """The model's continuation of ``prompt`` (greedy unless ``kwargs`` say otherwise), through the
        method's context and hooks; a list of prompts gives a list of continuations. Only the new text
        is returned. ``kwargs`` go to transformers' ``generate``."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        self._ensure_live()
        model, tok = self.session.lm.model, self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        kwargs.setdefault("do_sample", False)
        out = []
        with self.session.view.active():
            for p in prompts:
                enc = self._encode(p)
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=pad, **kwargs)
                out.append(tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        return out[0] if isinstance(prompt, str) else out

    @torch.no_grad()
    def forward(self, prompt: str, **kwargs):
        """The model's output (logits, ...) for ``prompt`` read through the method's context and hooks;
        the logits cover the prefix and context too (the prompt's last token is the last position)."""
        self._ensure_live()
        with self.session.view.active():
            return self.session.lm.model(**self._encode(prompt), **kwargs)

    __call__ = forward

    @torch.no_grad()
    def next_token(self, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` likeliest next tokens after ``prompt`` with their probabilities."""
        logits = self.forward(prompt).logits[0, -1].float()
        p, ids = torch.softmax(logits, -1).topk(k)
        return [(self.tokenizer.decode([int(i)]), float(q)) for q, i in zip(p, ids)]

    # ---- leaving editledger --------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Write this version as a Hugging Face model directory (weights loadable with
        ``from_pretrained``; method state under ``method_state/`` with a README saying how to use it)."""
        if self.without:
            raise InputError("a counterfactual (checkout with without=...) is no ledger version and cannot be "
                             "exported; revert the steps to make it one, then export that version")
        out = self.session.export(self.version_id, out_dir)
        self._ensure_live()
        return out

    def __repr__(self) -> str:
        where = f"run {self.run_id} step {self.step}, " if self.run_id is not None else ""
        cf = f" without versions {sorted(self.without)}" if self.without else ""
        return (f"<EditedModel {where}version {self.version_id}{cf}: {self.spec.name}, "
                f"{len(self.fingerprints)} tensor(s)/state(s) changed from the base>")
