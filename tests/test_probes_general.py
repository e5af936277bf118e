"""General-ability sets: the built-in set and the readers of the public sample formats."""
from __future__ import annotations

import pytest

from ledger.errors import InputError
from simulator.probes import GeneralSets


def test_builtin_is_complete():
    g = GeneralSets.builtin()
    assert g.text and len(g.text.split()) > 100
    assert g.qa and g.sentiment and g.reasoning and g.summarization and g.piqa and g.fluency_prompts
    assert {r["label"] for r in g.sentiment} == {0, 1}
    assert all(r["label"] in (0, 1) for r in g.piqa)


def test_shared_samples_read(shared_dir):
    d = shared_dir / "data" / "downstream"
    g = GeneralSets.from_files(
        text=shared_dir / "data" / "corpus" / "wikitext-2-raw" / "wiki.test.raw",
        qa=d / "model_editing_hurt" / "test-OpenDomainQA.jsonl",
        sentiment=d / "model_editing_hurt" / "test-SentimentAnalysis.tsv",
        reasoning=d / "model_editing_hurt" / "test-reasoning.jsonl",
        summarization=d / "model_editing_hurt" / "test-summarization.json",
        piqa=d / "piqa" / "dev.jsonl", piqa_labels=d / "piqa" / "dev-labels.lst", limit=5, text_chars=2000)
    assert len(g.text) == 2000 and "Robert Boulter" in g.text
    assert len(g.qa) == 5 and g.qa[0]["answers"] == ["Wilhelm Conrad Röntgen"]
    assert g.sentiment[0] == {"text": "it 's a charming and often affecting journey .", "label": 1}
    assert g.reasoning[0]["answer"] == "18"                       # GSM8K "#### 18"
    assert "\r" not in g.summarization[0]["dialogue"] and g.summarization[0]["summary"].startswith("A will go")
    assert g.piqa[0]["label"] == 0 and g.piqa[1]["label"] == 1    # dev-labels.lst: 0, 1, 1


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        GeneralSets.from_files(qa=tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "answer": ["y"]}\nnot json\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2"):
        GeneralSets.from_files(qa=bad)
    tsv = tmp_path / "s.tsv"
    tsv.write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(InputError, match="sentence"):
        GeneralSets.from_files(sentiment=tsv)
