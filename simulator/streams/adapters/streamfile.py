"""Records from an existing stream file, so that a stream can be rebuilt as another kind.

Steps of a conflict pair or an MQuAKE case (same group) become one record; a round pair becomes
its forward edit with the object set of its round probes; every other step is one record.
"""
from __future__ import annotations

from simulator.streams.format import Stream
from simulator.streams.records import Record

_CASE_KINDS = ("reverse_conflict", "composite_conflict", "multihop")


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
            rnd = st.probes.get("round", [])
            objects = rnd[0].choices if rnd else ()
            probes = {k: v for k, v in st.probes.items() if k != "round"}
            out.append(Record("stream", cid, list(st.requests), [probes], native="round", objects=tuple(objects)))
        else:
            out.append(Record("stream", cid, list(st.requests), [{}] * (len(st.requests) - 1) + [st.probes]))
    return out
