"""EasyEdit's edit requests as a stream.

EasyEdit (zjunlp/EasyEdit) takes edits as the arguments of ``BaseEditor.edit`` (columns, one entry per
edit): ``prompts`` (filled), ``target_new``, ``ground_truth``, ``subject``, ``rephrase_prompts``,
``locality_inputs`` and ``portability_inputs`` ({key: {"prompt": [...], "ground_truth": [...]}}, one
entry per edit, each a string, a list, or None). ``easyeditor/editors/utils.py:_prepare_requests``
turns them into one dictionary per edit (rows): prompt, target_new, ground_truth, subject,
rephrase_prompt, locality {key: {prompt, ground_truth}}, portability {key: {prompt, ground_truth}}.
Both shapes are read here, and every edit becomes a step:

    prompt (with subject)   the edit request; the prompt becomes its template, the subject replaced by {}
    prompt                  rewrite probe: target_new, alt ground_truth (EasyEdit's rewrite_acc)
    rephrase_prompt(s)      paraphrase probes (rephrase_acc)
    locality_inputs         Relation_Specificity -> attribute (OA), distracting -> distract (DN, alt
                            target_new), any other key (neighborhood, Forgetfulness, ...) -> neighborhood
                            (alt target_new: NS asks P(true) > P(new))
    portability_inputs      Subject_Aliasing / synonym -> portability_sr, reasoning / one_hop ->
                            portability_oh, Logical_Generalization / reversed_relation -> portability_rr;
                            other keys are refused by name unless ``portability_suites`` names their suite

Targets get the leading space editledger's stream format asks for (EasyEdit's ROME adds it too); a
ground truth given as a list (KnowEdit's alias lists) is its first alias, as EasyEdit's examples take it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ledger.errors import InputError
from simulator.requests import PROBE_SUITES, EditRequest, ProbeItem, Step
from simulator.streams.format import Stream, canonical_line, parse_stream_bytes
from simulator.streams.records import merge, sp, template

COLUMNS = ("prompts", "target_new", "ground_truth", "subject", "rephrase_prompts", "locality_inputs",
           "portability_inputs")
ROW_KEYS = ("prompt", "target_new", "ground_truth", "subject", "rephrase_prompt", "locality", "portability")
LOCALITY_SUITES = {"relation_specificity": "attribute", "distracting": "distract"}   # others: neighborhood
PORTABILITY_SUITES = {"subject_aliasing": "portability_sr", "synonym": "portability_sr",
                      "reasoning": "portability_oh", "one_hop": "portability_oh",
                      "logical_generalization": "portability_rr", "reversed_relation": "portability_rr",
                      "inverse_relation": "portability_rr"}


def _list(v: Any, n: int, what: str) -> list:
    """One entry per edit, as EasyEdit accepts it: a list of n, or one value for one edit."""
    if isinstance(v, (str, dict)) or v is None:
        v = [v]
    if not isinstance(v, list) or len(v) != n:
        got = len(v) if isinstance(v, list) else type(v).__name__
        raise InputError(f"EasyEdit requests: {what} must have one entry per edit ({n}), got {got}")
    return v


def rows_from_columns(data: Mapping[str, Any]) -> list[dict]:
    """``BaseEditor.edit``'s arguments as ``_prepare_requests`` turns them into one dict per edit."""
    unknown = sorted(set(data) - set(COLUMNS))
    if unknown:
        raise InputError(f"EasyEdit requests: unknown argument(s) {unknown}; editledger reads {', '.join(COLUMNS)}")
    if "prompts" not in data or "target_new" not in data:
        raise InputError("EasyEdit requests need prompts and target_new (and subject for ROME, MEMIT and FT)")
    prompts = data["prompts"] if isinstance(data["prompts"], list) else [data["prompts"]]
    n = len(prompts)
    if n == 0:
        raise InputError("EasyEdit requests: prompts is empty; give at least one edit")
    cols = {k: _list(data.get(k), n, k) if data.get(k) is not None or k == "target_new" else [None] * n
            for k in ("target_new", "ground_truth", "subject", "rephrase_prompts")}
    rows = [{"prompt": prompts[i], "target_new": cols["target_new"][i], "ground_truth": cols["ground_truth"][i],
             "subject": cols["subject"][i], "rephrase_prompt": cols["rephrase_prompts"][i],
             "locality": {}, "portability": {}} for i in range(n)]
    for arg, field in (("locality_inputs", "locality"), ("portability_inputs", "portability")):
        inputs = data.get(arg) or {}
        if not isinstance(inputs, dict):
            raise InputError(f"EasyEdit requests: {arg} must be a dict of name -> {{prompt: [...], ground_truth: [...]}}")
        for key, d in inputs.items():
            if not isinstance(d, dict) or "prompt" not in d or "ground_truth" not in d:
                raise InputError(f"EasyEdit requests: {arg}[{key!r}] must hold prompt and ground_truth lists")
            ps = _list(d["prompt"], n, f"{arg}[{key!r}]['prompt']")
            gs = _list(d["ground_truth"], n, f"{arg}[{key!r}]['ground_truth']")
            for i in range(n):
                if ps[i] is not None:
                    rows[i][field][key] = {"prompt": ps[i], "ground_truth": gs[i]}
    return rows


def _answers(gt: Any) -> list[str]:
    """A ground truth as answers: a string, or (nested) lists of aliases, flattened in order."""
    if gt is None:
        return []
    if isinstance(gt, str):
        return [gt] if gt.strip() else []
    if isinstance(gt, list):
        return [a for g in gt for a in _answers(g)]
    raise InputError(f"EasyEdit requests: a ground_truth must be a string or a list of strings, got {type(gt).__name__}")


def _pairs(entry: Mapping[str, Any], where: str) -> list[tuple[str, list[str]]]:
    """(prompt, answers) of one locality/portability entry: one prompt, or a list with one answer each."""
    ps, gs = entry.get("prompt"), entry.get("ground_truth")
    if isinstance(ps, str):
        ps, gs = [ps], [gs]
    if not isinstance(ps, list) or not isinstance(gs, list) or len(ps) != len(gs):
        raise InputError(f"EasyEdit requests: {where} needs as many ground truths as prompts")
    out = []
    for p, g in zip(ps, gs):
        ans = _answers(g)
        if isinstance(p, str) and p.strip() and ans:      # EasyEdit's examples skip empty answers too
            out.append((p, ans))
    return out


def _suite(key: str, table: dict[str, str], custom: Mapping[str, str], default: str | None, what: str) -> str:
    suite = custom.get(key) or table.get(key.lower()) or default
    if suite is None:
        raise InputError(f"EasyEdit requests: {what} key {key!r} names no editledger probe suite; known: "
                         f"{', '.join(sorted(table))}. Say which it is, e.g. {what}_suites={{{key!r}: "
                         f"'portability_oh'}} (suites: {', '.join(PROBE_SUITES)})")
    if suite not in PROBE_SUITES:
        raise InputError(f"EasyEdit requests: {what} key {key!r} -> {suite!r} is not a probe suite; "
                         f"one of {', '.join(PROBE_SUITES)}")
    return suite


def step_from_row(row: Mapping[str, Any], i: int, *, locality_suites: Mapping[str, str] | None = None,
                  portability_suites: Mapping[str, str] | None = None) -> Step:
    """One EasyEdit request dict (``_prepare_requests``'s shape) as a sequential step."""
    where = f"EasyEdit request {i}"
    unknown = sorted(set(row) - set(ROW_KEYS) - {"case_id"})
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; editledger reads {', '.join(ROW_KEYS)}")
    prompt, subject, new = row.get("prompt"), row.get("subject"), row.get("target_new")
    if not isinstance(prompt, str) or not isinstance(new, str) or not new.strip():
        raise InputError(f"{where}: prompt and target_new must be non-empty strings")
    if not isinstance(subject, str) or not subject.strip():
        raise InputError(f"{where}: no subject. editledger's editors locate the fact at the subject's last token: "
                         "give subject=[...] (one per prompt), as EasyEdit's ROME and MEMIT require")
    tmpl = template(prompt, subject)
    if tmpl is None:
        raise InputError(f"{where}: the subject {subject!r} does not occur in the prompt {prompt!r} (or the prompt "
                         "holds a brace); EasyEdit asserts the same")
    old_answers = _answers(row.get("ground_truth"))
    new_t, old_t = sp(new), (sp(old_answers[0]) if old_answers else None)
    cid = None if row.get("case_id") is None else str(row["case_id"])      # EasyEdit's data files may carry one
    req = EditRequest(subject=subject, prompt=tmpl, target_new=new_t, target_old=old_t, case_id=cid)
    meta = {"source": "easyedit", **({"case_id": cid} if cid is not None else {})}
    probes: dict[str, list[ProbeItem]] = {"rewrite": [ProbeItem(req.text, new_t, alt=old_t, meta=meta)]}
    reph = row.get("rephrase_prompt")
    rephs = [reph] if isinstance(reph, str) else list(reph or [])
    if rephs:
        probes["paraphrase"] = [ProbeItem(p, new_t, alt=old_t, meta=meta) for p in rephs if isinstance(p, str) and p.strip()]
    for field, table, custom, default, what in (
            ("locality", LOCALITY_SUITES, locality_suites or {}, "neighborhood", "locality"),
            ("portability", PORTABILITY_SUITES, portability_suites or {}, None, "portability")):
        entries = row.get(field) or {}
        if not isinstance(entries, dict):
            raise InputError(f"{where}: {field} must be a dict of name -> {{prompt, ground_truth}}")
        for key, entry in entries.items():
            suite = _suite(key, table, custom, default, what)
            # neighbours must keep their object against the edit's new one (CounterFact's NS, DN's alt);
            # other attributes of the subject (OA) and portability questions have no competitor
            alt = new_t if suite in ("neighborhood", "distract") else None
            items = [ProbeItem(p, sp(ans[0]), alt=alt, answers=tuple(sp(a) for a in ans[1:]),
                               meta={**meta, "easyedit": key})
                     for p, ans in _pairs(entry, f"{where}, {field}[{key!r}]")]
            if items:
                probes = merge(probes, {suite: items})
    return Step(requests=[req], kind="sequential", probes={k: v for k, v in probes.items() if v})


def stream_from_easyedit(data: Any, *, name: str = "easyedit", batch_size: int = 1,
                         locality_suites: Mapping[str, str] | None = None,
                         portability_suites: Mapping[str, str] | None = None, source: str = "") -> Stream:
    """A stream from EasyEdit's edit arguments (a dict with ``prompts``, ``target_new``, ...) or its
    request dicts (a list, one per edit), in their order: one step per edit, or ``batch_size`` edits
    per batch step. Validated like a stream file (InputError names what is wrong)."""
    if isinstance(data, Mapping):
        rows = rows_from_columns(data)
    elif isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        rows = list(data)
    else:
        raise InputError("EasyEdit requests: give BaseEditor.edit's arguments as a dict (prompts, target_new, "
                         "ground_truth, subject, ...) or a non-empty list of request dicts")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    steps = [step_from_row(r, i, locality_suites=locality_suites, portability_suites=portability_suites)
             for i, r in enumerate(rows)]
    if batch_size > 1:
        steps = [Step(requests=[r for s in chunk for r in s.requests], kind="batch", group=f"batch-{k + 1}",
                      probes=merge(*(s.probes for s in chunk)))
                 for k, chunk in enumerate(steps[j:j + batch_size] for j in range(0, len(steps), batch_size))]
    # the stream file's own checks (lengths, control characters, targets) on exactly these steps
    text = "".join(canonical_line(s) + "\n" for s in steps).encode("utf-8")
    stream = parse_stream_bytes(text, source=source or "EasyEdit requests (line = edit)", default_name=name)
    stream.meta = {"source": source or "easyedit", "format": "easyedit", "batch_size": batch_size}
    return stream


def read_easyedit(path: str | Path, **kw) -> Stream:
    """``stream_from_easyedit`` of a JSON file holding either shape."""
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"EasyEdit request file {p} not found") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{p} is not a JSON file of EasyEdit requests ({str(e)[:120]})") from None
    kw.setdefault("name", p.stem)
    return stream_from_easyedit(data, source=str(p), **kw)
