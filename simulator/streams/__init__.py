"""Edit streams: the stream file format, benchmark adapters, stream builders, the built-in demo.

Public API:

    load_stream(path) -> Stream            validates completely; StreamFormatError names line and field
    save_stream(stream, path) -> None      canonical JSONL, written atomically
    Stream(name, kind, steps, digest)      digest = sha256 of the canonical step lines
    read_benchmark(path) -> list[Record]   auto-detects CounterFact, ZsRE, MQuAKE, ConflictEdit,
                                           RoundEdit, portability files and stream files
    make_stream(kind, records, n, seed, batch_size=1) -> Stream

Modules import one way: format, records -> probesets -> builtin -> make / adapters.
"""
from simulator.streams.adapters import read_benchmark
from simulator.streams.format import (FORMAT_VERSION, MIXED, Stream, StreamFormatError, load_stream,
                                      parse_stream_bytes, save_stream, steps_digest)
from simulator.streams.make import make_stream
from simulator.streams.records import Record

__all__ = ["FORMAT_VERSION", "MIXED", "Stream", "StreamFormatError", "load_stream", "parse_stream_bytes",
           "save_stream", "steps_digest", "Record", "make_stream", "read_benchmark"]
