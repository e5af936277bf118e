"""One fast parse of a GGUF file for the one-time dequantisation of an embedded model.

transformers reads a Gemma 3 GGUF with ``gguf.GGUFReader`` three times (tokenizer, config, weights), and
``GGUFReader`` parses the 262,144-entry vocabulary arrays one element at a time, each a slice of a
``numpy.memmap`` — a memmap slice costs microseconds (its ``__array_finalize__`` runs each time), a plain
array's a fraction of one. That was ~60 of the ~85 s the first load took on 2 cores.

``shared_reader()`` makes every ``GGUFReader(path)`` built inside the block one instance per file, parsed
once over a plain ``ndarray`` view of the same mapping: the bytes read are the same, so is every value
(tests/test_models_gguf_reader.py compares both readers field by field). The patch is undone on exit.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np


def fast_reader_class():
    """A GGUFReader whose ``data`` is a plain ndarray view of the memory map (same bytes, cheap slices)."""
    from gguf import GGUFReader  # deferred: only the one-time dequantisation needs gguf

    class FastGGUFReader(GGUFReader):
        @property
        def data(self) -> np.ndarray:
            return self._plain

        @data.setter
        def data(self, value: np.ndarray) -> None:
            # GGUFReader.__init__ assigns its np.memmap here; the view keeps the mapping alive (.base)
            self._plain = value.view(np.ndarray)

    return FastGGUFReader


@contextlib.contextmanager
def shared_reader() -> Iterator[dict]:
    """Within the block, ``gguf.GGUFReader(path)`` returns one fast reader per (file, mode). Yields the
    cache (path -> reader), for tests."""
    import gguf

    original = gguf.GGUFReader
    cls = fast_reader_class()
    cache: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in cache:
            cache[key] = cls(path, mode)
        return cache[key]

    gguf.GGUFReader = reader
    try:
        yield cache
    finally:
        gguf.GGUFReader = original
