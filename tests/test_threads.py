"""The thread policy: OMP_WAIT_POLICY set before torch loads (and only then in force), thread counts that
never exceed what the caller chose, an explicit count from the environment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ledger.errors import InputError
from simulator import threads

ROOT = Path(__file__).resolve().parents[1]


def _child(code: str, env_extra: dict | None = None, drop=("OMP_WAIT_POLICY", "EDITLEDGER_THREADS")) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_early_before_torch_is_in_force():
    d = _child("import json; from simulator import threads; ok = threads.early(); import torch; "
               "print(json.dumps({'ok': ok, **threads.describe()}))")
    assert d["ok"] and d["wait_policy"] == "PASSIVE" and d["wait_policy_in_force"] and d["wait_policy_source"] == "early"


def test_early_after_torch_says_it_is_too_late():
    d = _child("import json, torch; from simulator import threads; ok = threads.early(); "
               "print(json.dumps({'ok': ok, **threads.describe()}))")
    assert not d["ok"] and not d["wait_policy_in_force"] and d["wait_policy_source"] == "late"


def test_a_users_policy_is_kept():
    d = _child("import json; from simulator import threads; threads.early(); print(json.dumps(threads.describe()))",
               {"OMP_WAIT_POLICY": "ACTIVE"})
    assert d["wait_policy"] == "ACTIVE" and d["wait_policy_source"] == "user" and d["wait_policy_in_force"]


def test_loading_a_model_applies_the_thread_count():
    d = _child("import json, torch; from simulator.models import load_model; "
               "load_model('tiny-gptj', progress=False); print(json.dumps({'n': torch.get_num_threads()}))",
               {"EDITLEDGER_THREADS": "1"})
    assert d["n"] == 1


def test_apply_never_raises_the_count_the_caller_chose(monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert threads.apply()["torch_threads"] == 1          # the tests' single thread is kept
        torch.set_num_threads(64)
        assert threads.apply()["torch_threads"] == min(64, threads.usable_cpus())
    finally:
        torch.set_num_threads(before)


def test_explicit_count_from_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(threads.THREADS_ENV, "3")
        assert threads.apply()["torch_threads"] == 3
        monkeypatch.setenv(threads.THREADS_ENV, "two")
        with pytest.raises(InputError, match="EDITLEDGER_THREADS"):
            threads.apply()
    finally:
        torch.set_num_threads(before)


def test_usable_cpus_respects_the_affinity_mask():
    assert 1 <= threads.usable_cpus() <= len(os.sched_getaffinity(0))


def test_cgroup_quota_is_rounded_up(tmp_path, monkeypatch):
    class FakePath:
        def __init__(self, text):
            self.text = text

        def read_text(self):
            return self.text
    monkeypatch.setattr(threads, "Path", lambda _p: FakePath("150000 100000\n"))
    assert threads._cgroup_quota() == 2                       # 1.5 CPUs of quota: 2 threads
    monkeypatch.setattr(threads, "Path", lambda _p: FakePath("max 100000\n"))
    assert threads._cgroup_quota() is None
