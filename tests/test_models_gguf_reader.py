"""The fast GGUF parse reads exactly what gguf.GGUFReader reads, once per file, and leaves gguf as it was."""
from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from simulator.models.gguf_reader import fast_reader_class, shared_reader  # noqa: E402


@pytest.fixture
def small_gguf(tmp_path):
    path = tmp_path / "small.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_string("general.name", "tiny test model")
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(300)] + ["é", "日本", ""])
    w.add_array("tokenizer.ggml.scores", [float(i) / 7 for i in range(303)])
    w.add_array("tokenizer.ggml.token_type", [i % 3 for i in range(303)])
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((303, 8)).astype(np.float32))
    w.add_tensor("blk.0.ffn_down.weight", rng.standard_normal((8, 16)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_fast_reader_reads_the_same_fields_and_tensors(small_gguf):
    slow, fast = gguf.GGUFReader(str(small_gguf)), fast_reader_class()(str(small_gguf))
    assert type(fast.data) is np.ndarray and type(slow.data) is np.memmap
    assert list(slow.fields) == list(fast.fields)
    for name, f in slow.fields.items():
        g = fast.fields[name]
        assert f.types == g.types and f.data == g.data and f.offset == g.offset
        assert len(f.parts) == len(g.parts)
        for a, b in zip(f.parts, g.parts):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert [t.name for t in slow.tensors] == [t.name for t in fast.tensors]
    for a, b in zip(slow.tensors, fast.tensors):
        assert a.tensor_type == b.tensor_type and np.array_equal(a.data, b.data) and a.data_offset == b.data_offset
    tokens = fast.fields["tokenizer.ggml.tokens"]
    assert bytes(tokens.parts[tokens.data[-2]]).decode() == "日本"


def test_shared_reader_parses_each_file_once_and_restores_gguf(small_gguf):
    original = gguf.GGUFReader
    with shared_reader() as cache:
        a = gguf.GGUFReader(str(small_gguf))
        b = gguf.GGUFReader(small_gguf)            # a Path to the same file: the same parse
        assert a is b and len(cache) == 1
    assert gguf.GGUFReader is original
    with pytest.raises(RuntimeError):
        with shared_reader():
            raise RuntimeError("boom")
    assert gguf.GGUFReader is original
