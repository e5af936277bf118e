"""`editledger identify DIR`: an export names its version; a changed tensor gives the nearest version
and the tensor, with the size of the change; the base model names the base version."""
from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file, save_file

from editledger.cli import main
from ledger import Ledger
from ledger.errors import InputError
from simulator.identify import identify


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records
    root = tmp_path_factory.mktemp("ident")
    stream = make_stream("sequential", builtin_records(seed=0), n=2, seed=0)
    led = Ledger.open(str(root / "i.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(stats_tokens=256, progress=False, general="none")).start(
        stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    v = {x.step: x for x in led.versions(run_id)}
    s.export(v[2].id, root / "step2")
    s.export(s.base_version_id, root / "base")
    yield led, s, run_id, v, root
    led.close()


def test_an_export_is_identified_bit_for_bit(replayed):
    led, s, run_id, v, root = replayed
    got = identify(led, root / "step2")
    assert [c.version_id for c in got.exact][:1] == [v[2].id] and not got.nearest
    base = identify(led, root / "base")
    assert base.exact[0].version_id == s.base_version_id and base.exact[0].kind == "base"


def test_a_changed_tensor_gives_the_nearest_version_and_how_much_it_differs(replayed):
    led, s, run_id, v, root = replayed
    d = root / "tampered"
    shutil.copytree(root / "step2", d)
    (name,) = [k for k in v[2].tensor_fingerprints if not k.startswith("@")]
    tensors = load_file(str(d / "model.safetensors"))
    t = tensors[name].clone()
    t[0, 0] += 0.5
    tensors[name] = t
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    got = identify(led, d)
    assert not got.exact
    near = got.nearest[0]
    assert near.version_id == v[2].id and [x.name for x in near.differing] == [name]
    s.checkout(v[2].id)
    ref = s.param(name).detach().double()
    assert near.differing[0].rel_diff == pytest.approx(0.5 / float(ref.norm()), rel=1e-5)
    assert near.differing[0].max_abs == pytest.approx(0.5, rel=1e-5)
    assert any("no longer match" in n for n in got.notes)       # its editledger.json claims version 2


def test_cli_exit_codes_and_errors(replayed, tmp_path, capsys):
    led, s, run_id, v, root = replayed
    assert main(["--db", led.url, "identify", str(root / "step2")]) == 0
    assert f"matches version {v[2].id} exactly" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pytorch_model.bin").write_bytes(b"not read")
    assert main(["--db", led.url, "identify", str(empty)]) != 0
    err = capsys.readouterr().err
    assert "never loads pickled weights" in err and "Traceback" not in err
    with pytest.raises(InputError, match="not a directory"):
        identify(led, tmp_path / "missing")


def test_a_stateful_export_is_identified_with_its_method_state(toy_method, tmp_path):
    from simulator.replay import ReplayOptions, Replayer
    from simulator.session import Session
    from simulator.streams import make_stream
    from simulator.streams.builtin import builtin_records
    stream = make_stream("sequential", builtin_records(seed=0), n=2, seed=0)
    led = Ledger.open(str(tmp_path / "t.db"))
    s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
    run_id = Replayer(s, ReplayOptions(method="toy-lookup", stats_tokens=256, progress=False, general="none")).start(
        stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind)
    v = {x.step: x for x in led.versions(run_id)}
    s.export(v[1].id, tmp_path / "one")
    got = identify(led, tmp_path / "one")
    assert got.exact[0].version_id == v[1].id            # same weights as the base and step 2: the state decides
    shutil.rmtree(tmp_path / "one" / "method_state")
    bare = identify(led, tmp_path / "one")
    assert bare.exact[0].version_id == s.base_version_id  # the weights alone are the base model's
    led.close()


@pytest.fixture
def toy_method():
    """The toy stateful method (tests/toy_lookup.py), registered for this test only: the registry
    that tests/test_cli_startup.py compares with the CLI's method list stays as the project ships it."""
    import sys

    from simulator.editors.base import _REGISTRY
    before = "toy-lookup" in _REGISTRY
    import toy_lookup  # noqa: F401  (registers the "toy-lookup" method)
    yield
    if not before:
        _REGISTRY.pop("toy-lookup", None)
        sys.modules.pop("toy_lookup", None)
