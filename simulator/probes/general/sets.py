"""General-ability sets: which items each task is measured on.

``general_sets(spec, n=..., seed=...)`` turns a user's spec into ``GeneralSets``:

    "builtin"                      the built-in items (all tasks, no file needed)
    "loglik"                       the built-in items that need no generation (text, sentiment, PIQA)
    "none"                         no general abilities
    "nq,gsm8k,sst2,samsum,boolq:50"  real test sets by name, each NAME[=FILE][:N]; N items drawn with
                                   the seed (default ``n``, 10), FILE overrides where the set is read from

Known real sets and the files they are read from (under the data folder: ``data_dir``, else
$EDITLEDGER_DATA, else $EDITLEDGER_SHARED/data, else ../shared/data beside the project):
see ``REAL_SETS``. "wikitext" is the held text for perplexity.
"""
from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import InputError

from . import builtin as B

LEGACY = ("builtin", "loglik", "none")
DEFAULT_SPEC = "builtin"      # needs no file and fits the demo's budget; real sets are named explicitly
DEFAULT_N = 10                # items per real set when the spec gives no :N (Gemma 270M, 2 CPU cores:
                              # about a minute per pass of nq,gsm8k,sst2,samsum,boolq; use :50 for Figure 4)
TEXT_CHARS = 20000            # characters of WikiText-2 test for perplexity

# name -> (path under the data folder, what it is)
REAL_SETS = {
    "nq": ("downstream/model_editing_hurt/test-OpenDomainQA.jsonl", "Natural Questions (Gu et al.)"),
    "gsm8k": ("downstream/model_editing_hurt/test-reasoning.jsonl", "GSM8K (Gu et al.)"),
    "sst2": ("downstream/model_editing_hurt/test-SentimentAnalysis.tsv", "SST-2 dev (Gu et al.)"),
    "samsum": ("downstream/model_editing_hurt/test-summarization.json", "SAMSum test (Gu et al.)"),
    "boolq": ("downstream/model_editing_hurt/test-ClosedDomainQA.jsonl", "BoolQ dev (Gu et al.)"),
    "dialogue": ("downstream/model_editing_hurt/test-dialogue.jsonl", "MuTual dev (Gu et al.)"),
    "rte": ("downstream/model_editing_hurt/test-NLI.tsv", "RTE (Gu et al.)"),
    "mmlu": ("downstream/glue_eval_emmet/mmlu.json", "MMLU subset (EMMET's GLUE eval)"),
    "piqa": ("downstream/piqa/dev.jsonl", "PIQA dev, labels in dev-labels.lst beside it"),
    "wikitext": ("corpus/wikitext-2-raw/wiki.test.raw", "WikiText-2 raw test (perplexity)"),
}
EMMET_FEW_SHOT = 10           # EMMET keeps the first 10 items of each set for few-shot demonstrations


@dataclass
class GeneralSets:
    text: str | None = None                                   # held text for perplexity (None: skip)
    qa: list[dict] = field(default_factory=list)              # built-in {"question", "answers"}
    sentiment: list[dict] = field(default_factory=list)       # built-in {"text", "label"}
    reasoning: list[dict] = field(default_factory=list)       # built-in {"question", "answer"}
    summarization: list[dict] = field(default_factory=list)   # built-in {"dialogue", "summary"}
    piqa: list[dict] = field(default_factory=list)            # {"goal", "sol1", "sol2", "label"}: Other Task
    fluency_prompts: list[str] = field(default_factory=list)  # prompts for n-gram entropy of greedy output
    real: dict[str, list[dict]] = field(default_factory=dict)  # real sets by task name (tasks.py)
    ppl_window: int = 128          # tokens per perplexity window
    fluency_tokens: int = 48       # greedy tokens per fluency prompt
    spec: str = ""                 # what the user asked for, for the run's record

    @classmethod
    def builtin(cls) -> "GeneralSets":
        return cls(text=B.BUILTIN_TEXT, qa=list(B.BUILTIN_QA), sentiment=list(B.BUILTIN_SENTIMENT),
                   reasoning=list(B.BUILTIN_REASONING), summarization=list(B.BUILTIN_SUMMARIZATION),
                   piqa=list(B.BUILTIN_PIQA), fluency_prompts=list(B.BUILTIN_FLUENCY_PROMPTS), spec="builtin")

    def task_items(self) -> dict[str, list[dict]]:
        """Items per task name (tasks.TASKS), real sets first."""
        out = {k: v for k, v in self.real.items() if v}
        for name in ("qa", "sentiment", "reasoning", "summarization"):
            if getattr(self, name):
                out.setdefault(name, getattr(self, name))
        if self.piqa:
            out.setdefault("piqa", self.piqa)
        return out

    def only(self, task: str) -> "GeneralSets":
        """These sets restricted to one task (a task name, or "perplexity" for the held text)."""
        if task == "perplexity":
            return GeneralSets(text=self.text, ppl_window=self.ppl_window, spec=self.spec)
        items = self.task_items()[task]
        if task in self.real:
            return GeneralSets(real={task: items}, spec=self.spec)
        return GeneralSets(**{task: items}, spec=self.spec)

    def has_downstream(self) -> bool:
        return bool(self.task_items())


def default_data_dir() -> Path:
    for var, sub in (("EDITLEDGER_DATA", ""), ("EDITLEDGER_SHARED", "data")):
        if os.environ.get(var):
            return Path(os.environ[var]) / sub
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def general_sets(spec: str | None, n: int = DEFAULT_N, seed: int = 0,
                 data_dir: str | Path | None = None) -> GeneralSets | None:
    """The sets a spec names (module docstring), or None for "none". Bad names and missing files
    raise InputError saying what is known and where the files are looked for."""
    spec = (spec or DEFAULT_SPEC).strip()
    if spec == "none":
        return None
    if spec == "builtin":
        return GeneralSets.builtin()
    if spec == "loglik":          # the built-in sets that need no generation: perplexity, sentiment, PIQA
        b = GeneralSets.builtin()
        return GeneralSets(text=b.text, sentiment=b.sentiment, piqa=b.piqa, spec="loglik")
    if n < 1:
        raise InputError(f"general-ability sample size must be at least 1, got {n}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    g = GeneralSets(spec=spec)
    for entry in [e.strip() for e in spec.split(",") if e.strip()]:
        name, path, count = _parse_entry(entry, n)
        if name == "builtin":
            b = GeneralSets.builtin()
            g.text = g.text or b.text
            g.qa, g.sentiment, g.reasoning, g.summarization = b.qa, b.sentiment, b.reasoning, b.summarization
            g.piqa = g.piqa or b.piqa
            g.fluency_prompts = b.fluency_prompts
            continue
        file = Path(path) if path else _find(root, name)
        if name == "wikitext":
            g.text = read_text(file)[:TEXT_CHARS]
            continue
        items = READERS[name](file)
        if name == "mmlu":
            items = items[EMMET_FEW_SHOT:]
        picked = sample(items, count, seed, name)
        if name == "piqa":
            g.piqa = picked
        else:
            g.real[name] = picked
    return g


def _parse_entry(entry: str, n: int) -> tuple[str, str | None, int]:
    name, count = entry, n
    if ":" in entry and entry.rsplit(":", 1)[1].strip().isdigit():
        name, c = entry.rsplit(":", 1)
        count = int(c)
        if count < 1:
            raise InputError(f"general-ability set {entry!r}: the sample size after ':' must be at least 1")
    path = None
    if "=" in name:
        name, path = name.split("=", 1)
    name = name.strip().lower()
    if name not in REAL_SETS and name != "builtin":
        known = ", ".join(list(REAL_SETS) + list(LEGACY))
        raise InputError(f"unknown general-ability set {name!r}; known sets: {known} "
                         f"(a spec is NAME[=FILE][:N],... e.g. 'nq,gsm8k,sst2,samsum,boolq:50')")
    return name, path, count


def _find(root: Path, name: str) -> Path:
    rel, what = REAL_SETS[name]
    for p in (root / rel, root / Path(rel).name):
        if p.is_file():
            return p
    raise InputError(f"general-ability set {name!r} ({what}) needs {Path(rel).name}; looked in {root / rel}. "
                     f"Put the file there, point $EDITLEDGER_DATA at the folder holding {rel.split('/')[0]}/, "
                     f"or give it as {name}=FILE")


def sample(items: list[dict], n: int, seed: int, name: str) -> list[dict]:
    """``n`` items drawn without replacement, the same for the same (seed, set name); file order kept."""
    if n >= len(items):
        return list(items)
    rng = random.Random(f"{name}:{seed}")
    return [items[i] for i in sorted(rng.sample(range(len(items)), n))]


# ----------------------------------------------------------------------------- file readers
def read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file; give the path of an existing general-ability set file")
    return p.read_text(encoding="utf-8")


def _jsonl(path) -> list[dict]:
    out = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not a JSON line ({e.msg}); give a JSON-lines file")
    return out


def _json(path) -> list[dict]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not a JSON file ({e.msg})")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records")
    return data


def _tsv(path) -> list[list[str]]:
    rows = list(csv.reader(read_text(path).splitlines(), delimiter="\t"))
    return rows[1:]               # the header line (the reference skips it too)


def _fields(path, rows, build):
    try:
        return [build(r) for r in rows]
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise InputError(f"{path}: a record lacks a field this set needs ({type(e).__name__}: {e}); "
                         f"give the file in the format of the public sample (docs/metrics.md)") from None


def _read_nq(p):
    return _fields(p, _jsonl(p), lambda r: {"question": r["question"], "answers": list(r["answer"]),
                                            "passage": r["output"][0]})


def _read_gsm8k(p):
    return _fields(p, _jsonl(p), lambda r: {"question": r["question"], "rationale": r["answer"].split("#### ")[0],
                                            "answer": r["answer"].split("#### ")[1]})


def _read_sst2(p):
    return _fields(p, _tsv(p), lambda r: {"text": r[0], "label": int(r[1])})


def _read_samsum(p):
    return _fields(p, _json(p), lambda r: {"dialogue": r["dialogue"], "summary": r["summary"]})


def _read_boolq(p):
    return _fields(p, _jsonl(p), lambda r: {"question": r["question"], "passage": r["passage"],
                                            "label": 1 if r["answer"] else 0})


def _read_dialogue(p):
    return _fields(p, _jsonl(p), lambda r: {"article": r["article"], "options": list(r["options"][:4]),
                                            "answer": r["answers"]})


def _read_rte(p):
    return _fields(p, _tsv(p), lambda r: {"sentence1": r[1], "sentence2": r[2],
                                          "label": 0 if "not_entailment" in r[3].lower() else 1})


def _read_mmlu(p):
    return _fields(p, _json(p), lambda r: {"question": r["question"], "choices": list(r["choices"][:4]),
                                           "label": int(r["answer"])})


def _read_piqa(p):
    rows = _jsonl(p)
    lab = Path(p).with_name(Path(p).stem + "-labels.lst")
    if "label" not in (rows[0] if rows else {}):
        if not lab.is_file():
            raise InputError(f"{p}: PIQA questions without labels and no {lab.name} beside them; put the labels file there")
        labels = [int(x) for x in read_text(lab).split()]
        if len(labels) != len(rows):
            raise InputError(f"{lab}: {len(labels)} labels for {len(rows)} PIQA questions; give the matching labels file")
        rows = [dict(r, label=l) for r, l in zip(rows, labels)]
    return _fields(p, rows, lambda r: {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(r["label"])})


READERS = {"nq": _read_nq, "gsm8k": _read_gsm8k, "sst2": _read_sst2, "samsum": _read_samsum, "boolq": _read_boolq,
           "dialogue": _read_dialogue, "rte": _read_rte, "mmlu": _read_mmlu, "piqa": _read_piqa}
