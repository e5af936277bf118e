"""The grid file of a sweep (TOML; docs/sweeps.md): read, checked whole, expanded into cells.

Everything is checked before anything runs: unknown keys, types, ranges, method names and their
hyper-parameters (against each model's spec), stream recipes (built here, from their source files)
and stream files (read and validated here), general-ability sets, replay options. A bad grid gives
one InputError that names the file, the key and the value.

A cell is one (model, method, stream, protocol, seed). Its **key** is the sha256 of its canonical
configuration (sorted-key JSON without spaces): everything that decides its numbers and nothing
that does not. The stream enters by its digest (the sha256 of its steps), a hyper-parameter file
by its content, so moving a file or renaming a label keeps the key, and changing any value makes
a new cell. Labels are for people only.

The streams are built on the machine that reads the grid and travel with the cells, so a worker
(a process here, a Ray task on another node) needs neither the grid nor its source files.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import InputError
from simulator.editors import editor_class, load_hparams
from simulator.editors.hparams import read_file as read_hparams_file
from simulator.models.specs import SPECS
from simulator.probes import general_sets
from simulator.replay import PROTOCOLS, ReplayOptions, known_suites
from simulator.requests import STREAM_KINDS
from simulator.stopping import StopCondition
from simulator.streams import load_stream, make_stream, read_benchmark

if sys.version_info >= (3, 11):
    import tomllib
else:                                    # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

CELL_FORMAT = 1                 # part of every cell's configuration: a new meaning gets a new number
MAX_CELLS = 10_000
MAX_SEED = 2**32 - 1
# Ray resources a model's cell asks for by default (a grid's model table overrides them)
DEFAULT_RESOURCES = {"gpt-j-6b": {"gpus": 1.0, "cpus": 1.0}}

TOP_KEYS = ("name", "models", "methods", "streams", "protocol", "seeds", "general", "replay")
METHOD_KEYS = ("name", "label", "hparams", "hparams_file")
MODEL_KEYS = ("name", "gpus", "cpus")
RECIPE_KEYS = ("kind", "n", "from", "seed", "batch_size", "mquake_prompts", "label")
FILE_KEYS = ("file", "label")
GENERAL_KEYS = ("sets", "n", "seed")
REPLAY_KEYS = ("stats_tokens", "stats_corpus", "keyframe_every", "probe_every", "stop_when")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cell_key(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    name: str                   # registry name or an absolute path
    gpus: float = 0.0           # Ray resources of each cell on this model
    cpus: float = 1.0


@dataclass(frozen=True)
class MethodEntry:
    name: str                   # editor registry name
    label: str                  # the report's row name
    hparams: dict               # hyper-parameter file (if any) merged with the inline overrides


@dataclass
class StreamEntry:
    label: str
    name: str
    kind: str
    digest: str
    steps: list[dict]           # Step.to_dict() of every step
    recipe: dict                # how it was made: {"kind", "n", "from", "seed", ...} or {"file": ...}


@dataclass
class Cell:
    key: str
    label: str
    model: ModelEntry
    method: MethodEntry
    stream: StreamEntry
    protocol: str
    seed: int
    config: dict                # the canonical configuration the key hashes
    options: dict               # ReplayOptions fields

    def replay_options(self) -> ReplayOptions:
        return ReplayOptions.from_config(self.options)

    def describe(self) -> dict:
        """What the ledger keeps beside the run (``run.config["sweep"]``) and the report reads."""
        return {"key": self.key, "label": self.label, "model": self.model.name, "method": self.method.name,
                "method_label": self.method.label, "stream": self.stream.label, "stream_kind": self.stream.kind,
                "protocol": self.protocol, "seed": self.seed, "config": self.config}


@dataclass
class Grid:
    name: str
    path: str
    cells: list[Cell] = field(default_factory=list)

    def to_json(self) -> dict:
        """The grid as the ledger's sweep row keeps it (its latest run)."""
        return {"file": self.path, "cells": [{k: v for k, v in c.describe().items() if k != "config"}
                                             for c in self.cells]}


# ---------------------------------------------------------------------------------------------- reading
def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file completely (InputError naming the file, key and value otherwise)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"grid file {p} not found; write one as docs/sweeps.md shows") from None
    except (IsADirectoryError, PermissionError) as e:
        raise InputError(f"cannot read grid file {p} ({type(e).__name__}); give a TOML file") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{p} is not a text file (not UTF-8); a grid is a TOML file (docs/sweeps.md)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{p} is not valid TOML: {e}") from None
    grid = build_grid(data, base_dir=p.resolve().parent, where=str(p))   # messages name the file as given
    grid.path = str(p.resolve())
    return grid


def build_grid(data: dict, *, base_dir: Path, where: str = "grid") -> Grid:
    c = _Checker(where)
    c.keys(data, TOP_KEYS, "the grid")
    name = c.text(data.get("name"), "name", required=True)
    if len(name) > 200:
        c.fail("name", name, "longer than 200 characters; shorten it")
    models = [_model(c, m, i) for i, m in enumerate(c.nonempty_list(data.get("models"), "models"), 1)]
    methods = [_method(c, m, i, base_dir) for i, m in enumerate(c.nonempty_list(data.get("methods"), "methods"), 1)]
    streams = [_stream(c, s, i, base_dir) for i, s in enumerate(c.nonempty_list(data.get("streams"), "streams"), 1)]
    protocols = _protocols(c, data.get("protocol", "sequential"))
    seeds = _seeds(c, data.get("seeds", [0]))
    general = _general(c, data.get("general", {}))
    replay = _replay(c, data.get("replay", {}), base_dir)
    c.unique([m.name for m in models], "models", "model")
    c.unique([m.label for m in methods], "methods", "method label")
    c.unique([s.label for s in streams], "streams", "stream label")
    same = {}
    for s in streams:
        if s.digest in same:
            c.fail("streams", s.label, f"the same stream as {same[s.digest]!r} (same steps); drop one")
        same[s.digest] = s.label
    seen = {}
    for i, m in enumerate(methods, 1):
        sig = canonical_json([m.name, m.hparams])
        if sig in seen:
            c.fail(f"methods[{i}]", None, f"{m.label!r} is the same method with the same hyper-parameters as "
                                          f"{seen[sig]!r}; drop one")
        seen[sig] = m.label
    if "independent" in protocols and replay["stop_when"]:
        c.fail("replay.stop_when", replay["stop_when"], "works with the sequential protocol only: in the independent "
               "protocol every case starts from the base model, so no step degrades the next")
    # every method's hyper-parameters against every model's spec (layers inside the model, ...)
    for model in models:
        for m in methods:
            try:
                load_hparams(m.name, SPECS.get(model.name), None, m.hparams)
            except InputError as e:
                c.fail(f"methods ({m.label})", None, f"on {model.name}: {e}")
    n_cells = len(models) * len(methods) * len(streams) * len(protocols) * len(seeds)
    if n_cells > MAX_CELLS:
        c.fail("the grid", None, f"{n_cells:,} cells; a sweep holds at most {MAX_CELLS:,}: split it")
    grid = Grid(name=name, path=where)
    for model in models:
        for stream in streams:
            for m in methods:
                for protocol in protocols:
                    for seed in seeds:
                        grid.cells.append(_cell(c, model, m, stream, protocol, seed, general, replay,
                                                several_models=len(models) > 1))
    return grid


def _cell(c, model, method, stream, protocol, seed, general, replay, *, several_models) -> Cell:
    options = dict(method=method.name, hparams=dict(method.hparams), hparams_file=None, seed=seed,
                   protocol=protocol, general=general["sets"], general_n=general.get("n", 10),
                   general_seed=general.get("seed", 0), progress=False, **replay)
    try:
        ReplayOptions.from_config(options).validate()
    except InputError as e:
        c.fail("the grid", None, f"cell {method.label} x {stream.label} x {protocol}: {e}")
    config = {"editledger_cell": CELL_FORMAT, "model": model.name, "method": method.name,
              "hparams": method.hparams, "stream": {"digest": stream.digest, "kind": stream.kind},
              "protocol": protocol, "seed": seed, "general": general, "replay": replay}
    parts = ([model.name] if several_models else []) + [method.label, stream.label] + \
        ([protocol] if protocol != "sequential" else []) + [f"seed{seed}"]
    return Cell(key=cell_key(config), label="/".join(parts), model=model, method=method, stream=stream,
                protocol=protocol, seed=seed, config=config, options=options)


# ---------------------------------------------------------------------------------------------- sections
def _model(c: "_Checker", m, i: int) -> ModelEntry:
    at = f"models[{i}]"
    if isinstance(m, str):
        m = {"name": m}
    if not isinstance(m, dict):
        c.fail(at, m, "give a model name or a table {name = ..., gpus = ..., cpus = ...}")
    c.keys(m, MODEL_KEYS, at)
    name = c.text(m.get("name"), f"{at}.name", required=True)
    key = name.strip().lower()
    if key in SPECS:
        name = key
    else:
        path = Path(name).expanduser()
        if not path.exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
            c.fail(f"{at}.name", name, "neither a registry model (" + ", ".join(sorted(SPECS)) +
                   "), a path that exists, nor a Hugging Face id (owner/name) in the local cache")
        if path.exists():
            name = str(path.resolve())
    res = dict(DEFAULT_RESOURCES.get(name, {"gpus": 0.0, "cpus": 1.0}))
    for k in ("gpus", "cpus"):
        if k in m:
            res[k] = c.number(m[k], f"{at}.{k}", lo=0.0 if k == "gpus" else 0.01)
    return ModelEntry(name=name, gpus=float(res["gpus"]), cpus=float(res["cpus"]))


def _method(c: "_Checker", m, i: int, base_dir: Path) -> MethodEntry:
    at = f"methods[{i}]"
    if isinstance(m, str):
        m = {"name": m}
    if not isinstance(m, dict):
        c.fail(at, m, "give a method name or a table {name = ..., label = ..., hparams = {...}}")
    c.keys(m, METHOD_KEYS, at)
    name = c.text(m.get("name"), f"{at}.name", required=True).strip().lower()
    try:
        editor_class(name)
    except InputError as e:
        c.fail(f"{at}.name", name, "not an editing method; " + str(e).split("; ", 1)[-1])
    label = c.label(m.get("label", name), f"{at}.label")
    values: dict = {}
    if "hparams_file" in m:
        f = c.text(m["hparams_file"], f"{at}.hparams_file", required=True)
        fp = (base_dir / Path(f).expanduser())
        try:
            values.update(read_hparams_file(fp, name))
        except InputError as e:
            c.fail(f"{at}.hparams_file", f, str(e))
    inline = m.get("hparams", {})
    if not isinstance(inline, dict):
        c.fail(f"{at}.hparams", inline, "give a table of name = value")
    values.update(inline)
    try:
        load_hparams(name, None, None, values)     # names and types (each model's spec is checked later)
    except InputError as e:
        c.fail(f"{at}.hparams", None, str(e))
    return MethodEntry(name=name, label=label, hparams=values)


def _stream(c: "_Checker", s, i: int, base_dir: Path) -> StreamEntry:
    at = f"streams[{i}]"
    if not isinstance(s, dict):
        c.fail(at, s, "give a table: {file = ...} or {kind = ..., n = ..., from = ..., seed = ...}")
    if "file" in s:
        c.keys(s, FILE_KEYS, at + " (a stream file)")
        f = c.text(s["file"], f"{at}.file", required=True)
        try:
            stream = load_stream(base_dir / Path(f).expanduser())
        except InputError as e:
            c.fail(f"{at}.file", f, str(e))
        label = c.label(s.get("label", Path(f).stem), f"{at}.label")
        recipe = {"file": f}
    else:
        c.keys(s, RECIPE_KEYS, at + " (a stream recipe)")
        kind = c.text(s.get("kind"), f"{at}.kind", required=True)
        if kind not in STREAM_KINDS:
            c.fail(f"{at}.kind", kind, f"not a stream kind; use one of {', '.join(STREAM_KINDS)}")
        n = c.integer(s.get("n", 20), f"{at}.n", lo=1, hi=100_000)
        seed = c.integer(s.get("seed", 0), f"{at}.seed", lo=0, hi=MAX_SEED)
        batch = c.integer(s.get("batch_size", 1), f"{at}.batch_size", lo=1, hi=10_000)
        src = c.text(s.get("from", "builtin"), f"{at}.from", required=True)
        source = src if src == "builtin" else str(base_dir / Path(src).expanduser())
        prompts = s.get("mquake_prompts")
        if prompts is not None:
            prompts = c.text(prompts, f"{at}.mquake_prompts", required=True)
            if prompts != "zero-shot":
                prompts = str(base_dir / Path(prompts).expanduser())
        try:
            stream = make_stream(kind, read_benchmark(source, mquake_prompts=prompts), n=n, seed=seed,
                                 batch_size=batch)
        except InputError as e:
            c.fail(at, None, str(e))
        default = f"{kind}-{n}" + (f"-s{seed}" if seed else "")
        label = c.label(s.get("label", default), f"{at}.label")
        stream.name = label
        recipe = {"kind": kind, "n": n, "from": src, "seed": seed, "batch_size": batch}
        if prompts is not None:
            recipe["mquake_prompts"] = s["mquake_prompts"]
    return StreamEntry(label=label, name=stream.name, kind=stream.kind, digest=stream.digest,
                       steps=[st.to_dict() for st in stream.steps], recipe=recipe)


def _protocols(c: "_Checker", v) -> list[str]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items:
        c.fail("protocol", v, f"give one of {', '.join(PROTOCOLS)} or a list of them")
    for p in items:
        if p not in PROTOCOLS:
            c.fail("protocol", p, f"not a protocol; use {' or '.join(PROTOCOLS)}")
    c.unique(items, "protocol", "protocol")
    return list(items)


def _seeds(c: "_Checker", v) -> list[int]:
    items = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(items, list) or not items:
        c.fail("seeds", v, "give a list of whole numbers, e.g. [0, 1, 2]")
    out = [c.integer(x, "seeds", lo=0, hi=MAX_SEED) for x in items]
    c.unique(out, "seeds", "seed")
    return out


def _general(c: "_Checker", v) -> dict:
    if isinstance(v, str):
        v = {"sets": v}
    if not isinstance(v, dict):
        c.fail("general", v, "give a table {sets = ..., n = ..., seed = ...} or a string such as \"builtin\"")
    c.keys(v, GENERAL_KEYS, "general")
    sets = c.text(v.get("sets", "builtin"), "general.sets", required=True)
    n = c.integer(v.get("n", 10), "general.n", lo=1, hi=1_000_000)
    seed = c.integer(v.get("seed", 0), "general.seed", lo=0, hi=MAX_SEED)
    try:
        general_sets(sets, n, seed)                # names known, files there
    except InputError as e:
        c.fail("general.sets", sets, str(e))
    out = {"sets": sets.strip()}
    if out["sets"] not in ("none", "builtin", "loglik"):     # n and seed only matter for real sets
        out.update(n=n, seed=seed)
    return out


def _replay(c: "_Checker", v, base_dir: Path) -> dict:
    if not isinstance(v, dict):
        c.fail("replay", v, "give a table of replay options")
    c.keys(v, REPLAY_KEYS, "replay")
    out: dict[str, Any] = {"keyframe_every": c.integer(v.get("keyframe_every", 8), "replay.keyframe_every", lo=0,
                                                       hi=1_000_000)}
    out["stats_tokens"] = (None if v.get("stats_tokens") is None
                           else c.integer(v["stats_tokens"], "replay.stats_tokens", lo=1, hi=10**9))
    corpus = c.text(v.get("stats_corpus", "self"), "replay.stats_corpus", required=True)
    if corpus not in ("self", "wikitext"):
        fp = base_dir / Path(corpus).expanduser()
        if not fp.is_file():
            c.fail("replay.stats_corpus", corpus, "neither self, wikitext nor a text file that exists")
        corpus = str(fp.resolve())
    out["stats_corpus"] = corpus
    pe = v.get("probe_every", {})
    if not isinstance(pe, dict):
        c.fail("replay.probe_every", pe, "give a table of suite = every-k-steps")
    suites = known_suites()
    for k in pe:
        if k not in suites:
            c.fail("replay.probe_every", k, f"no such probe suite; suites: {', '.join(sorted(suites))}")
    out["probe_every"] = {str(k): c.integer(x, f"replay.probe_every.{k}", lo=0, hi=10**9) for k, x in pe.items()}
    sw = v.get("stop_when", [])
    if isinstance(sw, str):
        sw = [sw]
    if not isinstance(sw, list) or not all(isinstance(x, str) for x in sw):
        c.fail("replay.stop_when", sw, "give a list of conditions such as \"ppl>1.5x\"")
    for text in sw:
        try:
            cond = StopCondition.parse(text)
        except InputError as e:
            c.fail("replay.stop_when", text, str(e))
        if cond.suite not in suites:
            c.fail("replay.stop_when", text, f"no probe suite {cond.suite!r} measures {cond.metric!r}; "
                                             f"suites: {', '.join(sorted(suites))}")
    out["stop_when"] = list(sw)
    return out


# ---------------------------------------------------------------------------------------------- checks
class _Checker:
    """Checks with messages that name the grid file, the key and the value."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, value, why: str):
        shown = "" if value is None else f" = {_short(value)}"
        raise InputError(f"{self.where}: {key}{shown}: {why}")

    def keys(self, table: dict, known: tuple[str, ...], at: str) -> None:
        for k in table:
            if k not in known:
                self.fail(at, None, f"unknown key {k!r}; known keys: {', '.join(known)}")

    def text(self, v, key: str, *, required: bool = False) -> str:
        if v is None:
            if required:
                self.fail(key, None, "missing")
            return ""
        if not isinstance(v, str) or not v.strip() or "\x00" in v:
            self.fail(key, v, "give a non-empty string")
        return v

    def label(self, v, key: str) -> str:
        v = self.text(v, key, required=True)
        if not LABEL_RE.match(v):
            self.fail(key, v, "give 1-64 letters, digits, '.', '_', '+' or '-' (it names rows and runs)")
        return v

    def integer(self, v, key: str, *, lo: int, hi: int) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(key, v, "give a whole number")
        if not lo <= v <= hi:
            self.fail(key, v, f"out of range; use {lo} .. {hi}")
        return v

    def number(self, v, key: str, *, lo: float) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or v < lo or v > 1024:
            self.fail(key, v, f"give a number from {lo:g} to 1024")
        return float(v)

    def nonempty_list(self, v, key: str) -> list:
        if v is None:
            self.fail(key, None, "missing (docs/sweeps.md shows a grid)")
        if not isinstance(v, list) or not v:
            self.fail(key, v, "give a non-empty list")
        return v

    def unique(self, items: list, key: str, what: str) -> None:
        seen = set()
        for x in items:
            if x in seen:
                self.fail(key, None, f"the {what} {x!r} appears twice; each may appear once")
            seen.add(x)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."
