"""Security promises: only safetensors is read (no pickle anywhere), remote code is never trusted,
SQL goes through bound parameters, and artifact names and export paths cannot escape their
directories even when the database is crafted."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from editledger.cli import main
from ledger import DeltaInput, Ledger
from ledger.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["editledger", "ledger", "simulator", "tui", "migrations"]


def _sources():
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            yield p, p.read_text()


def test_no_pickle_eval_shell_or_remote_code_in_the_source():
    bad = []
    rules = {
        "pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib|shelve)\b|\bpickle\.", re.M),
        "torch.load": re.compile(r"\btorch\.load\s*\("),
        "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
        "shell": re.compile(r"shell\s*=\s*True|\bos\.system\s*\(|\bos\.popen\s*\("),
        "trust_remote_code": re.compile(r"trust_remote_code\s*=\s*True"),
    }
    for p, text in _sources():
        for name, rx in rules.items():
            for m in rx.finditer(text):
                bad.append(f"{p.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}: {name}")
    assert bad == []


def test_sql_is_built_with_bound_parameters_only():
    """No SQL text is formatted from values: an f-string handed to the database may hold only module
    constants (a PRAGMA cannot take parameters)."""
    call = re.compile(r"\b(text|exec_driver_sql|execute)\(\s*f([\"'])(.*?)\2", re.S)
    bad = []
    for p, text in _sources():
        for m in call.finditer(text):
            for expr in re.findall(r"\{([^{}]*)\}", m.group(3)):
                # a migration names tables and columns from its own constant list: identifiers, never values
                ident = p.parts[-3] == "migrations" and expr.strip() in ("table", "column")
                if not ident and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", expr.strip()):
                    bad.append(f"{p.relative_to(ROOT)}: {m.group(0)[:80]}")
        for m in re.finditer(r"\b(text|exec_driver_sql|execute)\([^)]*?[\"']\s*%\s*\(", text):
            bad.append(f"{p.relative_to(ROOT)}: %-formatted SQL {m.group(0)[:80]}")
    assert bad == []


def test_model_weights_load_only_from_safetensors():
    """Every transformers model load insists on safetensors (or reads a GGUF), never a pickled .bin."""
    bad = []
    for p, text in _sources():
        for m in re.finditer(r"AutoModel\w*\.from_pretrained\((.*?)\)\n", text, re.S):
            args = m.group(1)
            if "use_safetensors=True" not in args and "gguf_file=" not in args:
                bad.append(f"{p.relative_to(ROOT)}: {m.group(0)[:100]}")
    assert bad == []


def test_a_replay_checkout_and_export_never_unpickle(tmp_path, monkeypatch):
    """With every unpickling entry point booby-trapped, a real replay, checkout and export still work."""
    def trap(*a, **k):
        raise AssertionError("something tried to unpickle")

    class TrappedUnpickler(pickle.Unpickler):      # libraries subclass it at import time: keep it a class
        def __init__(self, *a, **k):
            trap()

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, trap)
    monkeypatch.setattr(pickle, "Unpickler", TrappedUnpickler)
    monkeypatch.setattr(torch, "load", trap)
    db = str(tmp_path / "l.db")
    stream = tmp_path / "s.jsonl"
    assert main(["stream", "make", "--kind", "sequential", "--n", "2", "--from", "builtin", "-o", str(stream)]) == 0
    assert main(["--db", db, "replay", str(stream), "--model", "tiny-gptj", "--device", "cpu", "--general", "none",
                 "--stats-tokens", "128"]) == 0
    assert main(["--db", db, "checkout", "1@1", "--export", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not list((tmp_path / "out").glob("*.bin"))


@pytest.fixture
def crafted(tmp_path, tiny):
    """A ledger of tiny-gptj (its real fingerprint) with a one-step run whose delta is all zeros."""
    db = tmp_path / "l.db"
    name = "transformer.h.0.mlp.fc_out.weight"
    shape = tuple(dict(tiny.model.named_parameters())[name].shape)
    with Ledger.open(str(db)) as led:
        bm = led.register_base_model("tiny-gptj", "t", tiny.fingerprint, {})
        run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s", stream_digest="b" * 64,
                            stream_kind="sequential", config={"model": "tiny-gptj"})
        v = led.record_step(run.id, step=1, parent_version_id=run.head_version_id,
                            requests=[{"subject": "S", "prompt": "{} is in", "target_new": " X"}],
                            deltas=[DeltaInput(name, "dense", {"delta": torch.zeros(shape)}, shape)],
                            tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
        led.set_run_status(run.id, "done")
    return db, run.id, v.id


def test_a_crafted_digest_cannot_name_a_path_outside_the_store(crafted, tmp_path):
    db, run_id, vid = crafted
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"do not read")
    evil = "../../secret"
    with Ledger.open(str(db)) as led:
        with led.engine.begin() as c:     # what an attacker with write access to the database could do
            c.execute(sa.text("PRAGMA foreign_keys=OFF"))
            c.execute(sa.text("INSERT INTO artifact (digest, kind, size_bytes, created_at) "
                              "VALUES (:d, 'delta', 1, '2020-01-01')"), {"d": evil})
            c.execute(sa.text("UPDATE delta SET artifact_digest = :d WHERE version_id = :v"), {"d": evil, "v": vid})
        with pytest.raises(InputError, match="not an artifact digest"):
            led.read_artifact(evil)
        rep = led.fsck(progress=False)
        assert not rep.ok and any("not a sha256 digest" in b for b in rep.bad_rows)
    code = main(["--db", str(db), "checkout", f"{run_id}@1", "--device", "cpu"])
    assert code == 2
    assert secret.read_bytes() == b"do not read"


def test_a_crafted_method_state_cannot_write_outside_the_export(crafted, tmp_path, capsys):
    """A state delta whose method name is a path: the export never writes a file named by it."""
    db, run_id, vid = crafted
    with Ledger.open(str(db)) as led:
        v2 = led.record_step(run_id, step=2, parent_version_id=vid, requests=[], tensor_fingerprints={},
                             deltas=[DeltaInput("@../../../escaped", "state", {}, (), payload="{}")],
                             diagnostics={}, wall_time_s=0.0)
    out = tmp_path / "exp" / "model"
    (tmp_path / "exp").mkdir()
    code = main(["--db", str(db), "checkout", f"{run_id}@{v2.step}", "--export", str(out), "--device", "cpu"])
    assert code == 2 and "unknown" in capsys.readouterr().err
    assert not list(tmp_path.rglob("escaped*"))


def test_sql_metacharacters_are_stored_verbatim(tmp_path):
    nasty = "x'); DROP TABLE run; --"
    with Ledger.open(str(tmp_path / "l.db")) as led:
        bm = led.register_base_model(nasty, nasty, "c" * 64, {"k": nasty})
        run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name=nasty,
                            stream_digest="b" * 64, stream_kind="sequential", name=nasty)
        v = led.record_step(run.id, step=1, parent_version_id=run.head_version_id,
                            requests=[{"subject": nasty, "prompt": "{} " + nasty, "target_new": " " + nasty}],
                            deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
        assert led.edit_requests(v.id)[0].subject == nasty and led.run(run.id).name == nasty
        assert led.counts()["runs"] == 1
