"""Shared fixtures. tiny-gptj: a seeded GPT-J (4 layers, width 64, trained for seconds on 28 toy facts in
simulator/models/tiny.py, cached under $EDITLEDGER_CACHE) with a tokenizer built in code, the same code path
as GPT-J at milliseconds per edit. Its plausible answers are the objects of those facts (" Rome", " Paris",
" Germany", ...): edit towards them. Session-scoped: do not modify its weights in a test
(editors are pure; if a test must apply a delta, apply it to a copy: ``copy.deepcopy(tiny.model)``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread: on a shared, loaded 2-core machine two OpenMP threads spin against each other and a
# tiny-gptj forward pass takes 1 s instead of 15 ms.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    """LoadedModel for "tiny-gptj" on CPU in float32 (model, tokenizer, spec, fingerprint, ...)."""
    from simulator.models import load_model
    return load_model("tiny-gptj", device="cpu", dtype=torch.float32, progress=False)


@pytest.fixture(scope="session")
def tiny_model(tiny):
    return tiny.model


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny):
    return tiny.tokenizer


@pytest.fixture(scope="session")
def tiny_spec(tiny):
    return tiny.spec


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """/work/shared (``../shared`` next to the repo, or $EDITLEDGER_SHARED); skips the test when absent."""
    env = os.environ.get("EDITLEDGER_SHARED")
    p = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    if not p.is_dir():
        pytest.skip(f"shared data directory {p} not present")
    return p
