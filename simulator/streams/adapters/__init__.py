"""read_benchmark: read any supported benchmark file (format auto-detected), a stream file, or the
built-in facts, into Records.

Supported: CounterFact / MultiCounterFact (ROME format and EasyEdit format), ZsRE (MEND format, with
or without EasyEdit's portability field), MQuAKE, ConflictEdit (reverse, composite, coverage),
RoundEdit (easy, hard), KnowEdit WikiData-Counterfact (portability), editledger stream files (.jsonl).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ledger.errors import InputError
from simulator.streams.adapters import conflictedit, counterfact, knowedit, mquake, roundedit, zsre
from simulator.streams.adapters.streamfile import records_from_stream
from simulator.streams.builtin import builtin_records
from simulator.streams.format import parse_stream_bytes
from simulator.streams.records import Record

FORMATS = ("counterfact-rome", "counterfact-easyedit", "zsre-mend", "mquake", "conflictedit",
           "roundedit", "knowedit-counterfact", "stream", "builtin")


def detect(first: dict) -> str | None:
    """The format of a benchmark file from the keys of its first record."""
    k = set(first)
    rw = first.get("requested_rewrite")
    if isinstance(rw, list) and "questions" in k:
        return "mquake"
    if isinstance(rw, dict):
        return "counterfact-rome"
    if {"edits", "type", "triples"} <= k:
        return "conflictedit"
    if {"edit", "true_objects"} <= k:
        return "roundedit"
    if {"src", "alt", "subject"} <= k:
        return "zsre-mend"
    if {"prompt", "target_new", "ground_truth", "subject"} <= k and ("portability" in k or "locality" in k):
        return "knowedit-counterfact"
    if {"prompt", "target_new", "ground_truth", "subject"} <= k:
        return "counterfact-easyedit"
    return None


def _sidecar(path: Path, name: str) -> dict[str, list[str]]:
    """Relation prompt templates shipped next to ConflictEdit / RoundEdit files, if present."""
    p = path.parent / name
    if not name:
        return {}
    try:
        return json.loads(p.read_text("utf-8")) if p.is_file() else {}
    except (OSError, ValueError):
        return {}


def _convert_one(fmt: str, d: dict, i: int, extra: dict[str, list[str]], mq: mquake.Prompts | None) -> Record | None:
    if fmt == "counterfact-rome":
        return counterfact.from_rome(d)
    if fmt == "counterfact-easyedit":
        return counterfact.from_easyedit(d)
    if fmt == "zsre-mend":
        return zsre.from_mend(d, i)
    if fmt == "knowedit-counterfact":
        return knowedit.from_wiki_counterfact(d, i)
    if fmt == "mquake":
        return mquake.from_case(d, mq)
    if fmt == "conflictedit":
        return conflictedit.from_case(d, i, extra)
    if fmt == "roundedit":
        return roundedit.from_case(d, i, extra)
    raise AssertionError(fmt)


def read_benchmark(path, *, mquake_prompts: str | Path | None = None) -> list[Record]:
    """Records of a benchmark file (format auto-detected), a stream file, or "builtin".
    ``mquake_prompts``: MQuAKE's prompts folder, or "zero-shot" (see adapters/mquake.py); by
    default it is looked for next to an MQuAKE file."""
    if str(path) == "builtin":
        return builtin_records()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"benchmark file {p} not found; give a CounterFact, ZsRE, MQuAKE, ConflictEdit, "
                         f"RoundEdit or portability JSON file, a stream .jsonl file, or the word `builtin`")
    raw = p.read_bytes()
    head = raw.lstrip()[:1]
    if head == b"{":  # JSON Lines: a stream file
        return records_from_stream(parse_stream_bytes(raw, source=str(p), default_name=p.stem))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{p} is not a JSON benchmark file ({e}); give a benchmark JSON list or a stream .jsonl file")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise InputError(f"{p}: expected a JSON list of benchmark records; this file holds "
                         f"{type(data).__name__}{' (empty)' if not data else ''}")
    fmt = detect(data[0])
    if fmt is None:
        raise InputError(f"{p}: unrecognised benchmark format (first record's keys: {', '.join(sorted(data[0]))}); "
                         f"supported: {', '.join(FORMATS)}")
    extra = _sidecar(p, {"conflictedit": "conflict_prompts.json", "roundedit": "round_prompts.json"}.get(fmt, ""))
    mq = mquake.find_prompts(p, mquake_prompts) if fmt == "mquake" else None
    out, bad = [], 0
    for i, d in enumerate(data):
        try:
            r = _convert_one(fmt, d, i, extra, mq)
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise InputError(f"{p}: record {i} does not follow the {fmt} format (missing or malformed {e}); "
                             f"fix or remove that record") from None
        if r is None:
            bad += 1
        else:
            out.append(r)
    if bad:
        print(f"{p.name}: skipped {bad} of {len(data)} records that cannot be edited as given "
              f"(subject not in the prompt, or an empty target)", file=sys.stderr)
    if not out:
        raise InputError(f"{p}: none of its {len(data)} records could be read as {fmt}")
    return out
