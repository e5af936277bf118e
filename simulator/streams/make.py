"""make_stream: build a stream of one kind from any adapter's records.

``n`` counts cases drawn from the records (seeded): single edits for sequential and batch (batch
groups them ``batch_size`` to a step), round pairs for round (2n steps), edit pairs for the conflict
kinds (2n steps), MQuAKE cases for multihop (one step per edit of the case).
"""
from __future__ import annotations

import random
from dataclasses import replace

from ledger.errors import InputError
from simulator.requests import STREAM_KINDS, EditRequest, Step
from simulator.streams.builtin import builtin_records, synthesize
from simulator.streams.format import Stream
from simulator.streams.probesets import drop_edited, round_items, swap
from simulator.streams.records import Probes, Record, merge, plain

_ROUND_OBJECTS = 4  # size of the object set built for records that carry none (o1 + 3 others)


def _units(records: list[Record]) -> list[tuple[EditRequest, Probes, Record]]:
    """Every request usable as a single edit, once per (subject, prompt)."""
    seen, out = set(), []
    for r in records:
        for req, probes in zip(r.requests, r.probes):
            key = (req.subject, req.prompt)
            if key in seen:
                continue
            seen.add(key)
            out.append((req, plain(probes) if len(r.requests) > 1 else probes, r))
    return out


def _draw(items: list, n: int, rng: random.Random, what: str) -> list:
    if n > len(items):
        raise InputError(f"asked for {n} {what} but the input has only {len(items)}; "
                         f"use --n {len(items)} or less, or a larger input file")
    return rng.sample(items, n)


def _object_set(req: EditRequest, rec: Record, units, rng: random.Random) -> tuple[str, ...]:
    """Obj of a round edit: the record's own, else o1 plus true objects of other cases of the relation."""
    if rec.objects:
        return rec.objects
    same = sorted({u[0].target_old for u in units
                   if u[0].target_old and u[0].target_old not in (req.target_old, req.target_new)
                   and (u[0].relation or u[0].prompt) == (req.relation or req.prompt)})
    return (req.target_old,) + tuple(rng.sample(same, min(len(same), _ROUND_OBJECTS - 1)))


def _round_prompts(rec: Record, probes: Probes) -> tuple[str, ...]:
    """The prompts a round edit is averaged over besides its own: the dataset's round templates
    (RoundEdit), else the edit's paraphrases (same subject and relation)."""
    if rec.round_prompts:
        return rec.round_prompts
    return tuple(p.prompt for p in probes.get("paraphrase", []))


def _builtin_facts(records: list[Record]) -> bool:
    """Plain built-in fact records (not cases synthesized from them)?"""
    return bool(records) and all(r.source == "builtin" and r.native is None for r in records)


def _case_records(kind: str, records: list[Record], seed: int) -> list[Record]:
    cases = [r for r in records if r.native == kind]
    if not cases and _builtin_facts(records):
        cases = synthesize(kind, [r.case_id for r in records], seed)
    if not cases:
        sources = sorted({r.source for r in records})
        need = {"reverse_conflict": "a ConflictEdit reverse_edit.json file",
                "composite_conflict": "a ConflictEdit composite_edit.json file",
                "multihop": "an MQuAKE file"}[kind]
        raise InputError(f"a {kind} stream needs cases made for it; the input ({', '.join(sources)}) has none. "
                         f"Use {need}, a {kind} stream file, or `builtin`")
    return cases


def make_stream(kind: str, records: list[Record], n: int, seed: int, batch_size: int = 1) -> Stream:
    """A stream of `kind` drawn (seeded) from `records`; see the module docstring for what n counts."""
    if kind not in STREAM_KINDS:
        raise InputError(f"unknown stream kind {kind!r}; one of: {', '.join(STREAM_KINDS)}")
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    if batch_size < 1 or (batch_size > 1 and kind != "batch"):
        raise InputError(f"batch_size {batch_size} is only for --kind batch (and must be at least 1)")
    if not records:
        raise InputError("no records to build a stream from")
    if _builtin_facts(records):
        # the built-in facts draw their new targets with the stream's seed
        records = builtin_records(seed=seed, ids=[r.case_id for r in records])
    rng = random.Random(seed)
    steps: list[Step] = []
    if kind in ("sequential", "batch"):
        picked = _draw(_units(records), n, rng, "single edits")
        if kind == "sequential":
            steps = [Step(requests=[req], kind=kind, probes=dict(p)) for req, p, _ in picked]
        else:
            for i in range(0, len(picked), batch_size):
                chunk = picked[i:i + batch_size]
                steps.append(Step(requests=[u[0] for u in chunk], kind=kind, group=f"batch-{i // batch_size + 1}",
                                  probes=merge(*(u[1] for u in chunk))))
    elif kind == "round":
        units = [u for u in _units(records) if u[0].target_old and u[0].target_old != u[0].target_new]
        for req, probes, rec in _draw(units, n, rng, "edits with a known old object"):
            objects = _object_set(req, rec, units, rng)
            back = replace(req, target_new=req.target_old, target_old=req.target_new)
            group = f"round-{req.case_id or rec.case_id}"
            steps.append(Step(requests=[req], kind=kind, group=group, role="forward", probes=dict(probes)))
            steps.append(Step(requests=[back], kind=kind, group=group, role="back",
                              probes={**swap(probes), "round": round_items(req, objects, _round_prompts(rec, probes))}))
    else:
        for rec in _draw(_case_records(kind, records, seed), n, rng, f"{kind} cases"):
            k = len(rec.requests)
            for i, (req, probes) in enumerate(zip(rec.requests, rec.probes)):
                role = ("first", "second")[i] if kind != "multihop" and k == 2 else f"edit{i + 1}of{k}"
                steps.append(Step(requests=[req], kind=kind, group=rec.case_id, role=role, probes=dict(probes)))
    drop_edited(steps)
    sources = sorted({r.source for r in records})
    return Stream(name=f"{kind}-{'+'.join(sources)}-n{n}-s{seed}", kind=kind, steps=steps,
                  meta={"n": n, "seed": seed, "batch_size": batch_size, "sources": sources})
