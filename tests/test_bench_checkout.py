"""benchmarks/bench_checkout.measure runs on the public Session API (the benchmark it replaced had
rotted when that API changed) and returns the figures `editledger bench` reports. Its numbers are
not asserted: speed goals live in benchmarks, not tests."""
import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_checkout.py"


def test_measure_returns_ratios_for_each_keyframe_interval(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_checkout", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    res = bench.measure(shape=(16, 24), steps=6, keyframes=(0, 3), rounds=1, threads=1, home=tmp_path)
    assert torch.get_num_threads() == threads                  # the caller's setting is restored
    assert [r["K"] for r in res["results"]] == [None, 3]
    for r in res["results"]:
        assert r["ratio"] > 0 and (r["cpu_ratio"] is None or r["cpu_ratio"] >= 0)
        assert 1 <= r["worst_version"]["wall"]["step"] <= 6
        assert set(r["breakdown_cpu_ms"]) == {"lineage", "rebuild", "fingerprints", "verify+state"}
    assert res["machine"]["cores"] and "label" not in res
    assert "| none |" in bench.table(res) and "| 3 |" in bench.table(res)
