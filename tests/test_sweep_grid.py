"""The sweep's grid file: checked whole before anything runs (one clear error naming the key and the
value), expanded into cells whose keys are content addresses of their configuration, planned
against the ledger (statistics collected by one cell, reused by the others). No model is loaded."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from editledger.cli import main
from ledger import Ledger
from ledger.errors import InputError
from simulator.sweep import load_grid, plan
from simulator.sweep.grid import canonical_json

GOOD = """
name = "g"
models = ["tiny-gptj"]
general = "none"
[replay]
stats_tokens = 128
[[methods]]
name = "rome"
[[methods]]
name = "ft"
[[streams]]
kind = "sequential"
n = 2
from = "builtin"
[[streams]]
kind = "round"
n = 1
from = "builtin"
"""


def _grid(tmp_path, text: str, name: str = "grid.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_grid_expands_into_cells_with_content_addressed_keys(tmp_path):
    g = load_grid(_grid(tmp_path, GOOD))
    assert [c.label for c in g.cells] == ["rome/sequential-2/seed0", "ft/sequential-2/seed0",
                                         "rome/round-1/seed0", "ft/round-1/seed0"]
    c = g.cells[0]
    # the key is the sha256 of the canonical (sorted, compact) JSON of exactly this configuration
    want = {"editledger_cell": 1, "model": "tiny-gptj", "method": "rome", "hparams": {},
            "stream": {"digest": c.stream.digest, "kind": "sequential"}, "protocol": "sequential", "seed": 0,
            "general": {"sets": "none"},
            "replay": {"keyframe_every": 8, "probe_every": {}, "stats_corpus": "self", "stats_tokens": 128,
                       "stop_when": []}}
    assert c.config == want
    text = json.dumps(want, sort_keys=True, separators=(",", ":"))
    assert canonical_json(want) == text and c.key == hashlib.sha256(text.encode()).hexdigest()
    assert len({x.key for x in g.cells}) == 4 and len(c.stream.steps) == 2
    # labels are for people: renaming them keeps every key
    relabelled = GOOD.replace('name = "ft"', 'name = "ft"\nlabel = "FT-L"').replace(
        'kind = "round"', 'kind = "round"\nlabel = "rnd"')
    g2 = load_grid(_grid(tmp_path, relabelled, "g2.toml"))
    assert [x.key for x in g2.cells] == [x.key for x in g.cells]
    assert g2.cells[3].label == "FT-L/rnd/seed0"
    # any value that decides the numbers makes another cell
    g3 = load_grid(_grid(tmp_path, GOOD.replace('name = "ft"', 'name = "ft"\nhparams = { num_steps = 3 }'), "g3.toml"))
    assert g3.cells[0].key == g.cells[0].key and g3.cells[1].key != g.cells[1].key
    g4 = load_grid(_grid(tmp_path, GOOD.replace("stats_tokens = 128", "stats_tokens = 64"), "g4.toml"))
    assert not {x.key for x in g4.cells} & {x.key for x in g.cells}


def test_a_stream_file_enters_by_its_content_not_its_path(tmp_path):
    assert main(["stream", "make", "--kind", "sequential", "--n", "2", "--from", "builtin",
                 "-o", str(tmp_path / "a.jsonl")]) == 0
    shutil.copy(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    base = GOOD.split("[[streams]]")[0]
    ga = load_grid(_grid(tmp_path, base + '[[streams]]\nfile = "a.jsonl"\nlabel = "s"\n', "ga.toml"))
    gb = load_grid(_grid(tmp_path, base + '[[streams]]\nfile = "b.jsonl"\nlabel = "s"\n', "gb.toml"))
    assert [c.key for c in ga.cells] == [c.key for c in gb.cells]
    recipe = load_grid(_grid(tmp_path, GOOD, "gr.toml"))
    assert ga.cells[0].key == recipe.cells[0].key      # the same steps as the recipe's: the same cell


BAD = [
    ("name = 'x'\nmodels = [", "is not valid TOML"),
    (GOOD.replace('[[methods]]\nname = "rome"\n[[methods]]\nname = "ft"\n', ""), "methods: missing"),
    (GOOD.replace('name = "g"', 'name = "g"\nmethdos = []'), "unknown key 'methdos'"),
    (GOOD.replace('name = "rome"', 'name = "rmoe"'), "methods[1].name = 'rmoe': not an editing method; known:"),
    (GOOD.replace('name = "ft"', 'name = "ft"\nhparams = { nmu_steps = 3 }'), "methods[2].hparams: unknown ft hyper"),
    (GOOD.replace('name = "rome"', 'name = "rome"\nhparams = { layer = 9 }'),
     "methods (rome): on tiny-gptj: rome hyper-parameter 'layer': layer(s) [9] outside the model"),
    (GOOD.replace('name = "ft"', 'name = "ft"\nhparams = { num_steps = "many" }'), "methods[2].hparams"),
    (GOOD.replace('kind = "round"', 'kind = "sideways"'), "streams[2].kind = 'sideways': not a stream kind"),
    (GOOD.replace("n = 2", "n = 5000"), "streams[1]: asked for 5000"),
    (GOOD.replace('from = "builtin"', 'from = "nowhere.json"', 1), "benchmark file"),
    (GOOD.replace('models = ["tiny-gptj"]', 'models = ["tiny-gptj"]\nseeds = [0, -1]'),
     "seeds = -1: out of range"),
    (GOOD.replace('models = ["tiny-gptj"]', 'models = ["tiny-gptj"]\nseeds = [1, 1]'), "the seed 1 appears twice"),
    (GOOD.replace('models = ["tiny-gptj"]', 'models = ["no-such-model"]'), "models[1].name = 'no-such-model'"),
    (GOOD.replace('models = ["tiny-gptj"]', 'models = ["tiny-gptj"]\nprotocol = "parallel"'),
     "protocol = 'parallel': not a protocol"),
    (GOOD.replace('general = "none"', 'general = "nosuchset"'), "general.sets = 'nosuchset'"),
    (GOOD.replace('name = "ft"', 'name = "rome"\nlabel = "rome2"'),
     "methods[2]: 'rome2' is the same method with the same hyper-parameters as 'rome'"),
    (GOOD.replace('name = "ft"', 'name = "ft"\nlabel = "rome"'), "the method label 'rome' appears twice"),
    (GOOD.replace("stats_tokens = 128", "stats_tokens = 128\nstop_when = ['ppl>1.5x']").replace(
        'models = ["tiny-gptj"]', 'models = ["tiny-gptj"]\nprotocol = "independent"'),
     "replay.stop_when = ['ppl>1.5x']: works with the sequential protocol"),
    (GOOD.replace("stats_tokens = 128", "stats_tokens = 0"), "replay.stats_tokens = 0: out of range"),
    (GOOD.replace("stats_tokens = 128", "probe_every = { nosuite = 2 }"),
     "replay.probe_every = 'nosuite': no such probe suite"),
    (GOOD.replace("stats_tokens = 128", "stop_when = ['nosuite.x<2']"), "replay.stop_when = 'nosuite.x<2': no probe"),
]


@pytest.mark.parametrize("text,fragment", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_grid_gives_one_clear_error_before_anything_runs(tmp_path, capsys, text, fragment):
    path = _grid(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_grid(path)
    assert fragment in str(e.value) and str(e.value).startswith(str(path))
    db = tmp_path / "l.db"
    assert main(["--db", str(db), "sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("editledger: error:") == 1 and fragment in err and "Traceback" not in err
    assert not db.exists(), "a bad grid leaves no ledger behind"


def test_plan_names_what_a_run_would_do_and_statistics_are_collected_once(tmp_path, capsys):
    path = _grid(tmp_path, GOOD)
    g = load_grid(path)
    with Ledger.open(str(tmp_path / "l.db")) as led:
        planned = plan(led, g, None)
    assert [p.state for p in planned] == ["new"] * 4
    # ROME needs the statistics of its layer: the first ROME cell collects them, the second waits for
    # it; FT needs none and waits for nobody
    rome_seq, ft_seq, rome_round, ft_round = planned
    assert rome_seq.waits_for == set() and ft_seq.waits_for == set() and ft_round.waits_for == set()
    assert rome_round.waits_for == {rome_seq.cell.key}
    assert main(["--db", str(tmp_path / "l.db"), "sweep", str(path), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "sweep g: 4 cells" in out and out.count("start") == 4 and g.cells[0].key[:12] in out


def test_cli_refuses_conflicting_options(tmp_path, capsys):
    path = _grid(tmp_path, GOOD)
    assert main(["sweep", str(path), "--ray", "local", "--workers", "2"]) == 2
    assert main(["sweep", str(path), "--ray", "local", "--device", "cpu"]) == 2
    assert main(["report", "--sweep", "x", "1"]) == 2
    err = capsys.readouterr().err
    assert "--workers is for this machine" in err and "--device is for this machine" in err
    assert "not both" in err and "Traceback" not in err


def test_ray_is_imported_only_when_asked_for_and_its_absence_is_said(tmp_path, monkeypatch, capsys):
    import ast
    from pathlib import Path

    import simulator.sweep
    # no module of the sweep, nor the command, imports ray at its top: only RayBackend / require_ray do
    files = list(Path(simulator.sweep.__file__).parent.glob("*.py")) + \
        [Path(simulator.sweep.__file__).parents[2] / "editledger" / "commands" / "sweep.py"]
    for f in files:
        for node in ast.parse(f.read_text()).body:          # top-level statements only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n == "ray" or n.startswith("ray.") for n in names), f"{f.name} imports ray at the top"
    monkeypatch.setitem(__import__("sys").modules, "ray", None)          # as if the extra were not installed
    db = tmp_path / "l.db"
    assert main(["--db", str(db), "sweep", str(_grid(tmp_path, GOOD)), "--ray", "local"]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[ray]"' in err and "Traceback" not in err and not db.exists()


def test_each_ray_task_asks_for_its_models_resources(tmp_path, monkeypatch):
    """GPT-J's cells ask Ray for a GPU and run on cuda; others ask for a CPU. (A stand-in records what
    the backend asks Ray for; the real Ray runs the tiny grid in tests/test_sweep_run.py.)"""
    import sys
    import types

    from simulator.sweep.backends import RayBackend
    from simulator.sweep.cell import task_for

    asked = []

    class Remote:
        def options(self, **kw):
            asked.append(kw)
            return self

        def remote(self, text):
            asked[-1]["task"] = json.loads(text)
            return object()
    fake = types.SimpleNamespace(init=lambda **kw: asked.append({"init": kw}), shutdown=lambda: None,
                                 remote=lambda **kw: (lambda f: Remote()), cancel=lambda ref, force=False: None)
    monkeypatch.setitem(sys.modules, "ray", fake)
    text = GOOD.replace('models = ["tiny-gptj"]', 'models = ["tiny-gptj", {name = "gpt-j-6b"}, '
                                                  '{name = "gpt2", gpus = 0.5, cpus = 4}]')
    text = text.replace('[[methods]]\nname = "ft"\n', "").replace(
        '[[streams]]\nkind = "round"\nn = 1\nfrom = "builtin"\n', "")
    g = load_grid(_grid(tmp_path, text))
    with Ledger.open(str(tmp_path / "l.db")) as led:
        backend = RayBackend("ray://head:10001", led)
        for c in g.cells:
            backend.submit(c, task_for(c, db=led.url, artifacts=None, sweep_id=1, sweep="g", device=None))
        backend.close()
    assert asked[0] == {"init": {"address": "ray://head:10001", "log_to_driver": False, "ignore_reinit_error": True}}
    got = [(a["task"]["cell"]["model"], a["num_gpus"], a["num_cpus"], a["task"]["device"], a["task"]["threads"])
           for a in asked[1:]]
    assert got == [("tiny-gptj", 0.0, 1.0, "cpu", 1), ("gpt-j-6b", 1.0, 1.0, "cuda", 1), ("gpt2", 0.5, 4.0, "cuda", 4)]


def test_a_store_in_one_process_memory_is_refused_for_workers(tmp_path):
    from simulator.sweep import run_sweep
    g = load_grid(_grid(tmp_path, GOOD))
    with pytest.raises(InputError, match="lives in one process's memory"):
        run_sweep(g, db=str(tmp_path / "l.db"), artifacts="memory://one-process/a", workers=2, progress=False)
