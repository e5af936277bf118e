"""Records from an existing stream file, so that a stream can be rebuilt as another kind.

Steps of a conflict pair or an MQuAKE case (same group) become one record; a round pair becomes
its forward edit with the object set and prompts of its round probes; every other step is one record.
"""
from __future__ import annotations

from simulator.requests import Step
from simulator.streams.format import Stream
from simulator.streams.records import Record

_CASE_KINDS = ("reverse_conflict", "composite_conflict", "multihop")


def _round_of(stream: Stream, i: int, st: Step) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Obj, further prompts) of the round pair whose forward step is ``st``: from the back step's
    round items (files written before the items moved there carry them on the forward step)."""
    back = next((b for b in stream.steps[i + 1:] if b.group == st.group and b.role == "back"), None)
    items = (back.probes.get("round") if back else None) or st.probes.get("round", [])
    if not items:
        return (), ()
    prompts = tuple(p.prompt for p in items if p.prompt != st.requests[0].text)
    return tuple(items[0].choices), (prompts if back and back.probes.get("round") else ())


def records_from_stream(stream: Stream) -> list[Record]:
    out: list[Record] = []
    cases: dict[tuple[str, str], Record] = {}
    for i, st in enumerate(stream.steps):
        cid = st.group or f"{stream.name}-step{i + 1}"
        if st.kind in _CASE_KINDS and st.group:
            key = (st.kind, st.group)
            if key in cases:
                cases[key].requests.extend(st.requests)
                cases[key].probes.extend([{}] * (len(st.requests) - 1) + [st.probes])
                continue
            r = Record("stream", cid, list(st.requests), [{}] * (len(st.requests) - 1) + [st.probes], native=st.kind)
            cases[key] = r
            out.append(r)
        elif st.kind == "round" and st.role == "back":
            continue  # rebuilt from its forward step
        elif st.kind == "round":
            objects, prompts = _round_of(stream, i, st)
            probes = {k: v for k, v in st.probes.items() if k != "round"}
            out.append(Record("stream", cid, list(st.requests), [probes], native="round", objects=objects,
                              round_prompts=prompts))
        else:
            out.append(Record("stream", cid, list(st.requests), [{}] * (len(st.requests) - 1) + [st.probes]))
    return out
