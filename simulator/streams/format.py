"""The stream file: JSON Lines, one step per line, validated completely on load.

Layout (docs/stream-format.md is the reference):

    {"v": 1, "stream": "demo", "kind": "mixed", "meta": {...}}          optional header, first line only
    {"v": 1, "kind": "round", "requests": [...], "group": ..., "role": ..., "probes": {...}}
    ...

Validation reads and checks every line before a ``Stream`` is returned, so that a replay that
calls ``load_stream`` first never starts on a half-good file. Every error names the file, the line
and the field, and says what to do.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.artifacts import atomic_write
from ledger.errors import InputError
from simulator.requests import PROBE_SUITES, STREAM_KINDS, EditRequest, ProbeItem, Step

FORMAT_VERSION = 1
MIXED = "mixed"  # the stream kind of a file whose steps are of several kinds (the demo stream)

_STEP_FIELDS = {"v", "kind", "requests", "group", "role", "probes"}
_HEADER_FIELDS = {"v", "stream", "kind", "meta"}
_REQUEST_FIELDS = {"subject", "prompt", "target_new", "target_old", "relation", "case_id"}
_PROBE_FIELDS = {"prompt", "target", "alt", "answers", "choices", "label", "meta"}

# Limits a real benchmark never reaches and a hostile file easily does (a 2 MB prompt asked a model
# for ~4 TB of attention; a 10 MB subject ran for minutes). The model's own context is checked by
# the replay, which knows the tokenizer.
MAX_SUBJECT_CHARS = 1_000
MAX_TEXT_CHARS = 20_000        # prompts, targets, few-shot contexts
MAX_META_DEPTH = 16
# Control characters a terminal acts on (ESC starts escape sequences that can rewrite the window
# title; NUL truncates C strings), and lone surrogates that no UTF-8 encoder can write. Tab and
# newline are text (few-shot prompts hold newlines).
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class StreamFormatError(InputError):
    """A stream file that does not follow docs/stream-format.md (exit code 2)."""


def canonical_line(step: Step) -> str:
    """The one canonical JSON text of a step (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(step.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def steps_digest(steps: list[Step]) -> str:
    """sha256 of the canonical JSONL bytes of the steps (header excluded: renaming keeps identity)."""
    h = hashlib.sha256()
    for s in steps:
        h.update(canonical_line(s).encode("utf-8") + b"\n")
    return h.hexdigest()


@dataclass
class Stream:
    name: str                        # a short name (file stem when the file has no header)
    kind: str                        # one of STREAM_KINDS, or "mixed" when steps differ in kind
    steps: list[Step]                # the steps, in replay order
    digest: str = ""                 # sha256 of the canonical step lines; computed when left empty
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: source file, seed, n, ...

    def __post_init__(self):
        assert self.kind in STREAM_KINDS or self.kind == MIXED, f"unknown stream kind {self.kind!r}"
        if not self.digest:
            self.digest = steps_digest(self.steps)

    @property
    def n_requests(self) -> int:
        return sum(len(s.requests) for s in self.steps)


def stream_kind_of(steps: list[Step]) -> str:
    kinds = {s.kind for s in steps}
    return kinds.pop() if len(kinds) == 1 else MIXED


def save_stream(stream: Stream, path: str | os.PathLike) -> None:
    """Write the header and the canonical step lines atomically (temp file, fsync, rename)."""
    path = Path(path)
    header = {"v": FORMAT_VERSION, "stream": stream.name, "kind": stream.kind}
    if stream.meta:
        header["meta"] = stream.meta
    lines = [json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)]
    lines += [canonical_line(s) for s in stream.steps]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    parse_stream_bytes(data, source=str(path))      # write only what `stream check` and a replay accept
    atomic_write(path, data, prefix=f".{path.name}.")


# ----------------------------------------------------------------------------- validation

class _Err(Exception):
    """Internal: a problem at one field of one line (turned into a StreamFormatError)."""

    def __init__(self, field: str, msg: str):
        super().__init__(msg)
        self.field, self.msg = field, msg


def _str(d: dict, key: str, where: str, *, required: bool, nonempty: bool = True) -> str | None:
    f = f"{where}{key}"
    if key not in d or d[key] is None:
        if required:
            raise _Err(f, "missing (it is required)")
        return None
    v = d[key]
    if not isinstance(v, str):
        raise _Err(f, f"must be a string, got {type(v).__name__} {_short(v)}")
    _text_ok(v, f, MAX_SUBJECT_CHARS if key == "subject" else MAX_TEXT_CHARS)
    if nonempty and not v.strip():
        raise _Err(f, "is empty")
    return v


def _short(v: Any) -> str:
    try:
        return json.dumps(v)[:40]
    except (ValueError, RecursionError):
        return type(v).__name__


def _text_ok(v: str, f: str, limit: int) -> None:
    if len(v) > limit:
        raise _Err(f, f"is {len(v):,} characters long; the limit is {limit:,} (is the file what you meant?)")
    bad = _FORBIDDEN.search(v)
    if bad:
        raise _Err(f, f"holds the control character or unpaired surrogate U+{ord(bad.group()):04X} at "
                      f"position {bad.start()}; remove it (terminal escapes and NUL are not text)")


def _depth(x: Any, limit: int) -> bool:
    """True when ``x`` nests no deeper than ``limit`` (checked iteratively: no recursion to exhaust)."""
    todo = [(x, 0)]
    while todo:
        y, d = todo.pop()
        if d > limit:
            return False
        if isinstance(y, dict):
            todo += [(z, d + 1) for z in y.values()]
        elif isinstance(y, list):
            todo += [(z, d + 1) for z in y]
    return True


def _meta(d: dict, where: str) -> dict:
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise _Err(f"{where}meta", "must be an object")
    if not _depth(meta, MAX_META_DEPTH):
        raise _Err(f"{where}meta", f"nests deeper than {MAX_META_DEPTH} levels")
    try:
        text = json.dumps(meta, ensure_ascii=False)
    except (ValueError, RecursionError) as e:
        raise _Err(f"{where}meta", f"cannot be stored ({e})") from None
    _text_ok(text, f"{where}meta", MAX_TEXT_CHARS)
    return meta


def _unknown(d: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise _Err(f"{where}{extra[0]}",
                   f"unknown field (allowed: {', '.join(sorted(allowed))}); check its spelling")


def _target(d: dict, key: str, where: str, *, required: bool) -> str | None:
    v = _str(d, key, where, required=required, nonempty=False)
    if v is None:
        return None
    if not v.strip():
        raise _Err(f"{where}{key}", "empty target: give the object the model should produce, "
                                    "with its leading space, e.g. \" Rome\"")
    if not v[0].isspace():
        raise _Err(f"{where}{key}", f"{v!r} must start with a space: targets are appended to the "
                                    f"prompt (\"The capital of Italy is\" + \" Rome\")")
    return v


def _request(d: Any, where: str) -> EditRequest:
    if not isinstance(d, dict):
        raise _Err(where.rstrip("."), "must be an object with subject, prompt, target_new")
    _unknown(d, _REQUEST_FIELDS, where)
    subject = _str(d, "subject", where, required=True)
    prompt = _str(d, "prompt", where, required=True)
    if prompt.count("{}") != 1:
        raise _Err(f"{where}prompt", f"{prompt!r} must contain the subject placeholder {{}} exactly once")
    if prompt != prompt.rstrip():
        raise _Err(f"{where}prompt", "ends with whitespace: put the space at the start of the target")
    target_new = _target(d, "target_new", where, required=True)
    target_old = _target(d, "target_old", where, required=False)
    relation = _str(d, "relation", where, required=False)
    case_id = _str(d, "case_id", where, required=False)
    return EditRequest(subject=subject, prompt=prompt, target_new=target_new, target_old=target_old,
                       relation=relation, case_id=case_id)


def _str_list(d: dict, key: str, where: str) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Err(f"{where}{key}", "must be a list of strings")
    if len(v) > 1_000:
        raise _Err(f"{where}{key}", f"has {len(v):,} items; the limit is 1,000")
    for i, x in enumerate(v):
        _text_ok(x, f"{where}{key}[{i}]", MAX_TEXT_CHARS)
    return tuple(v)


def _probe(d: Any, where: str) -> ProbeItem:
    if not isinstance(d, dict):
        raise _Err(where.rstrip("."), "must be an object with prompt and target")
    _unknown(d, _PROBE_FIELDS, where)
    prompt = _str(d, "prompt", where, required=True)
    target = _str(d, "target", where, required=True, nonempty=False)
    if not target.strip():
        raise _Err(f"{where}target", "empty target: give the answer the probe expects")
    alt = _str(d, "alt", where, required=False, nonempty=False)
    answers = _str_list(d, "answers", where)
    choices = _str_list(d, "choices", where)
    label = d.get("label")
    if label is not None:
        if not isinstance(label, int) or isinstance(label, bool):
            raise _Err(f"{where}label", "must be an integer index into choices")
        if not 0 <= label < len(choices):
            raise _Err(f"{where}label", f"{label} is outside choices (it has {len(choices)} items)")
    meta = _meta(d, where)
    return ProbeItem(prompt=prompt, target=target, alt=alt, answers=answers, choices=choices,
                     label=label, meta=dict(meta))


def _version(d: dict) -> None:
    if "v" not in d:
        raise _Err("v", f"missing: every line carries the format version, \"v\": {FORMAT_VERSION}")
    v = d["v"]
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Err("v", f"must be an integer, got {json.dumps(v)[:20]}")
    if v != FORMAT_VERSION:
        raise _Err("v", f"unsupported format version {v} (this editledger reads version "
                        f"{FORMAT_VERSION}); upgrade editledger or rewrite the file")


def _kind(d: dict, *, allow_mixed: bool) -> str:
    kind = d.get("kind", "sequential")
    allowed = STREAM_KINDS + ((MIXED,) if allow_mixed else ())
    if not isinstance(kind, str) or kind not in allowed:
        raise _Err("kind", f"unknown kind {json.dumps(kind)[:40]} (one of: {', '.join(allowed)})")
    return kind


def parse_step(d: Any) -> Step:
    """Validate one decoded line as a step; raises _Err naming the field."""
    if not isinstance(d, dict):
        raise _Err("(line)", f"must be a JSON object, got {type(d).__name__}")
    _version(d)
    _unknown(d, _STEP_FIELDS, "")
    kind = _kind(d, allow_mixed=False)
    reqs = d.get("requests")
    if reqs is None:
        raise _Err("requests", "missing: a step needs a list of at least one edit request")
    if not isinstance(reqs, list) or not reqs:
        raise _Err("requests", "must be a non-empty list of edit requests")
    if len(reqs) > 1 and kind != "batch":
        raise _Err("requests", f"a {kind} step takes one request, got {len(reqs)}; "
                               f"use kind \"batch\" to apply several in one step")
    requests = [_request(r, f"requests[{i}].") for i, r in enumerate(reqs)]
    group = _str(d, "group", "", required=False)
    role = _str(d, "role", "", required=False)
    probes_in = d.get("probes", {})
    if not isinstance(probes_in, dict):
        raise _Err("probes", "must be an object mapping suite names to lists of probes")
    probes: dict[str, list[ProbeItem]] = {}
    for suite, items in probes_in.items():
        if suite not in PROBE_SUITES:
            raise _Err(f"probes.{suite}", f"unknown probe suite (one of: {', '.join(PROBE_SUITES)})")
        if not isinstance(items, list):
            raise _Err(f"probes.{suite}", "must be a list of probes")
        probes[suite] = [_probe(p, f"probes.{suite}[{i}].") for i, p in enumerate(items)]
    return Step(requests=requests, kind=kind, group=group, role=role, probes=probes)


def _header(d: dict) -> tuple[str, str, dict]:
    _version(d)
    _unknown(d, _HEADER_FIELDS, "")
    name = _str(d, "stream", "", required=True)
    kind = _kind(d, allow_mixed=True)
    return name, kind, _meta(d, "")


def parse_stream_bytes(data: bytes, source: str = "<stream>", default_name: str = "stream") -> Stream:
    """Validate a whole stream file's bytes; raise StreamFormatError at the first bad line/field."""
    def fail(lineno: int, fld: str | None, msg: str):
        where = f"{source}, line {lineno}" + (f", field {fld}" if fld else "")
        raise StreamFormatError(f"invalid stream file {where}: {msg}. "
                                f"See docs/stream-format.md; `editledger stream check FILE` "
                                f"checks a file without running anything.")

    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark some editors write
        data = data[3:]
    raw_lines = data.split(b"\n")
    truncated_tail = not data.endswith(b"\n")
    last_nonblank = max((i for i, b in enumerate(raw_lines) if b.strip()), default=-1)
    name, kind, meta, steps = default_name, None, {}, []
    for i, raw in enumerate(raw_lines):
        lineno = i + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            fail(lineno, None, f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                               f"save the file as UTF-8")
        if not text.strip():
            continue
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:
            if not isinstance(e, json.JSONDecodeError):   # a 5000-digit number, nesting past the parser's stack
                fail(lineno, None, f"cannot be read as JSON ({str(e)[:120] or type(e).__name__}); numbers must "
                                   "have fewer than 4,300 digits and objects nest a few levels at most")
            if i == last_nonblank and truncated_tail:
                fail(lineno, None, f"truncated line (the JSON stops at column {e.pos + 1} and the file "
                                   f"has no final newline): the file was cut off; write it again")
            fail(lineno, None, f"not valid JSON ({e.msg} at column {e.colno}); each line must be "
                               f"one complete JSON object")
        try:
            if isinstance(d, dict) and "stream" in d and "requests" not in d:
                if steps or kind is not None:
                    raise _Err("stream", "a header line is only allowed as the first line")
                name, kind, meta = _header(d)
                continue
            steps.append(parse_step(d))
        except _Err as e:
            fail(lineno, e.field, e.msg)
    if not steps:
        raise StreamFormatError(f"invalid stream file {source}: it has no steps; a stream file "
                                f"holds one JSON step per line (see docs/stream-format.md)")
    actual = stream_kind_of(steps)
    if kind is None:
        kind = actual
    elif kind != MIXED and actual != kind:
        bad = next(j for j, s in enumerate(steps) if s.kind != kind)
        raise StreamFormatError(f"invalid stream file {source}: the header says kind {kind!r} but "
                                f"step {bad + 1} is {steps[bad].kind!r}; set the header's kind to "
                                f"\"mixed\" or fix the step")
    return Stream(name=name, kind=kind, steps=steps, meta=meta)


def load_stream(path: str | os.PathLike) -> Stream:
    """Read and validate a stream file completely; raises StreamFormatError (exit 2) naming line and field."""
    p = Path(path)
    if not p.exists():
        raise StreamFormatError(f"stream file {p} not found; give the path of a .jsonl stream file "
                                f"(make one with `editledger stream make`)")
    if not p.is_file():
        raise StreamFormatError(f"{p} is not a file; give the path of a .jsonl stream file")
    return parse_stream_bytes(p.read_bytes(), source=str(p), default_name=p.stem)
