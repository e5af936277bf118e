"""General-ability sets: a held text for perplexity and the survey's downstream tasks (open-domain QA,
sentiment, reasoning, summarisation) plus a PIQA-style multiple-choice task, scored the way that
suits a small model (exact match of a short greedy answer, log-likelihood choice, ROUGE of greedy
output). ``GeneralSets.builtin()`` is a small set written for this project; ``from_files`` reads
user files in the formats of the public samples (NQ-open jsonl, SST-2 tsv, GSM8K jsonl, SAMSum json,
PIQA jsonl + labels, raw text)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import InputError

# A held text written for this project (plain encyclopaedic prose, no edited facts in it).
BUILTIN_TEXT = (
    "The river rises in the hills to the north of the town and flows south through a wide valley. "
    "For centuries it carried timber and grain to the coast, and the mills along its banks gave the "
    "town its first industry. In the nineteenth century a railway was built beside the river, and "
    "the mills were replaced by workshops that made tools and machinery. Today most of the old "
    "buildings are offices or flats, and a path along the water is popular with walkers and cyclists. "
    "The town library keeps maps and letters from the period, and a small museum describes how the "
    "people who lived here worked, what they ate and how they spent their holidays. Every summer a "
    "market fills the main square, where farmers sell fruit, cheese and bread from the valley."
)

BUILTIN_QA = [
    {"question": "What is the capital of France?", "answers": ["Paris"]},
    {"question": "How many days are there in a week?", "answers": ["seven", "7"]},
    {"question": "What colour is the sky on a clear day?", "answers": ["blue"]},
    {"question": "What is the largest ocean on Earth?", "answers": ["Pacific", "Pacific Ocean", "the Pacific Ocean"]},
    {"question": "Which planet is closest to the Sun?", "answers": ["Mercury"]},
    {"question": "What is the opposite of hot?", "answers": ["cold"]},
    {"question": "How many legs does a spider have?", "answers": ["eight", "8"]},
    {"question": "What is the capital of Japan?", "answers": ["Tokyo"]},
]

BUILTIN_SENTIMENT = [
    {"text": "A wonderful film, full of warmth and humour.", "label": 1},
    {"text": "I loved every minute of it.", "label": 1},
    {"text": "The best meal I have had in years.", "label": 1},
    {"text": "Beautifully acted and deeply moving.", "label": 1},
    {"text": "A dull, tedious mess from start to finish.", "label": 0},
    {"text": "I want those two hours of my life back.", "label": 0},
    {"text": "The food was cold and the service was rude.", "label": 0},
    {"text": "Badly written and badly acted.", "label": 0},
]

BUILTIN_REASONING = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"},
    {"question": "A box holds 6 eggs. How many eggs are in 5 boxes?", "answer": "30"},
    {"question": "Anna had 20 dollars and spent 8. How many dollars does she have left?", "answer": "12"},
    {"question": "There are 12 cookies shared equally by 4 children. How many does each child get?", "answer": "3"},
]

BUILTIN_SUMMARIZATION = [
    {"dialogue": "A: Are we still meeting at six?\nB: Yes, at the cafe near the station.\nA: Great, see you there.",
     "summary": "A and B will meet at six at the cafe near the station."},
    {"dialogue": "A: I lost my keys again.\nB: Did you check your coat pocket?\nA: Found them, thanks!",
     "summary": "A lost the keys and found them in the coat pocket."},
    {"dialogue": "A: Can you buy milk on your way home?\nB: Sure, anything else?\nA: Some bread too.",
     "summary": "B will buy milk and bread on the way home."},
]

BUILTIN_PIQA = [
    {"goal": "To dry wet hands,", "sol1": "rub them with a clean towel.", "sol2": "dip them in a bucket of water.", "label": 0},
    {"goal": "To keep ice cream from melting,", "sol1": "leave it in the sun.", "sol2": "put it in the freezer.", "label": 1},
    {"goal": "To light a dark room,", "sol1": "switch on a lamp.", "sol2": "close the curtains.", "label": 0},
    {"goal": "To cut a sheet of paper in half,", "sol1": "fold it and tear it with a spoon of soup.", "sol2": "use a pair of scissors.", "label": 1},
]

BUILTIN_FLUENCY_PROMPTS = [
    "The history of the city begins",
    "My favourite season of the year is",
    "Scientists recently discovered that",
]


@dataclass
class GeneralSets:
    text: str | None = None                                   # held text for perplexity (None: skip)
    qa: list[dict] = field(default_factory=list)              # {"question", "answers": [...]}  -> exact match
    sentiment: list[dict] = field(default_factory=list)       # {"text", "label": 1 pos / 0 neg} -> accuracy
    reasoning: list[dict] = field(default_factory=list)       # {"question", "answer": "18"}    -> solve rate
    summarization: list[dict] = field(default_factory=list)   # {"dialogue", "summary"}          -> ROUGE
    piqa: list[dict] = field(default_factory=list)            # {"goal", "sol1", "sol2", "label"} -> accuracy
    fluency_prompts: list[str] = field(default_factory=list)  # prompts for n-gram entropy of greedy output
    ppl_window: int = 128          # tokens per perplexity window
    qa_tokens: int = 12            # greedy tokens for a QA answer (cut at the first newline)
    reasoning_tokens: int = 48     # greedy tokens for a reasoning answer (the last number is the answer)
    summary_tokens: int = 40       # greedy tokens for a summary (cut at the first newline)
    fluency_tokens: int = 48       # greedy tokens per fluency prompt

    @classmethod
    def builtin(cls) -> "GeneralSets":
        return cls(text=BUILTIN_TEXT, qa=list(BUILTIN_QA), sentiment=list(BUILTIN_SENTIMENT),
                   reasoning=list(BUILTIN_REASONING), summarization=list(BUILTIN_SUMMARIZATION),
                   piqa=list(BUILTIN_PIQA), fluency_prompts=list(BUILTIN_FLUENCY_PROMPTS))

    @classmethod
    def from_files(cls, *, text: str | Path | None = None, qa: str | Path | None = None,
                   sentiment: str | Path | None = None, reasoning: str | Path | None = None,
                   summarization: str | Path | None = None, piqa: str | Path | None = None,
                   piqa_labels: str | Path | None = None, limit: int | None = None,
                   text_chars: int = 4000) -> "GeneralSets":
        """Read user files (formats of the public samples); ``limit`` keeps the first n items of
        each set and ``text_chars`` the first characters of the held text."""
        g = cls(fluency_prompts=list(BUILTIN_FLUENCY_PROMPTS))
        cut = (lambda xs: xs[:limit] if limit else xs)
        if text:
            g.text = _read(text)[:text_chars]
        if qa:
            g.qa = cut([{"question": r["question"], "answers": list(r["answer"] if isinstance(r["answer"], list) else [r["answer"]])}
                        for r in _jsonl(qa)])
        if sentiment:
            rows = list(csv.DictReader(_read(sentiment).splitlines(), delimiter="\t"))
            try:
                g.sentiment = cut([{"text": r["sentence"].strip(), "label": int(r["label"])} for r in rows])
            except (KeyError, ValueError) as e:
                raise InputError(f"{sentiment}: expected a TSV with columns 'sentence' and 'label' (0/1): {e}")
        if reasoning:
            g.reasoning = cut([{"question": r["question"], "answer": str(r["answer"]).split("####")[-1].strip().replace(",", "")}
                               for r in _jsonl(reasoning)])
        if summarization:
            try:
                data = json.loads(_read(summarization))
                g.summarization = cut([{"dialogue": r["dialogue"].replace("\r\n", "\n"), "summary": r["summary"].strip()} for r in data])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(f"{summarization}: expected a JSON list of {{dialogue, summary}} records: {e}")
        if piqa:
            rows = _jsonl(piqa)
            if piqa_labels:
                labels = [int(x) for x in _read(piqa_labels).split()]
                if len(labels) != len(rows):
                    raise InputError(f"{piqa_labels}: {len(labels)} labels for {len(rows)} PIQA questions; give the matching labels file")
                rows = [dict(r, label=l) for r, l in zip(rows, labels)]
            g.piqa = cut([{"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(r["label"])} for r in rows])
        return g

    def has_downstream(self) -> bool:
        return bool(self.qa or self.sentiment or self.reasoning or self.summarization or self.piqa)


def _read(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file; give the path of an existing general-ability set file")
    return p.read_text(encoding="utf-8")


def _jsonl(path: str | Path) -> list[dict]:
    out = []
    for n, line in enumerate(_read(path).splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not a JSON line ({e.msg}); give a JSON-lines file")
    return out


# ----------------------------------------------------------------------------- prompt formats
def qa_prompt(q: str) -> str:
    return f"Question: {q}\nAnswer:"


def sentiment_prompt(text: str) -> str:
    return f"Review: {text}\nSentiment:"


SENTIMENT_CHOICES = (" negative", " positive")   # index = label


def reasoning_prompt(q: str) -> str:
    return f"Question: {q}\nAnswer:"


def summary_prompt(dialogue: str) -> str:
    return f"Dialogue:\n{dialogue}\nSummary:"


def piqa_prompt(goal: str) -> str:
    return f"Goal: {goal}\nSolution:"
