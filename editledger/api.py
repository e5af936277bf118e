"""editledger's Python API: the same operations as the command line, for notebooks and scripts.

    import editledger

    led = editledger.open("editledger.db")                    # a path or any SQLAlchemy URL
    stream = editledger.make_stream("sequential", n=10)        # built-in facts; or a file, or requests
    run = led.replay(stream, model="tiny-gptj", method="rome")  # -> run id, one ledger step per edit
    led.trajectory(run, "retention.efficacy_top1")             # a DataFrame
    m = led.checkout(f"{run}@3")                               # the model of step 3, ready to use
    m.generate("The Eiffel Tower is located in the city of")
    led.revert(run, 3)
    led.report(run).reliability                                # the survey's tables as DataFrames

Errors are the command line's: ``editledger.InputError`` (bad input; exit code 2 on the CLI),
``IntegrityError``, ``RunBusy``, ``SchemaError``, ``ResourceError``, all ``editledger.UserError``,
each with a message that says what to do. docs/python.md walks through all of it.

Every method of ``EditLedger`` calls the code the CLI calls (``simulator.replay``, ``simulator.session``,
``ledger.history``, ``simulator.audit``, ``simulator.report``); the CLI's commands call this module
where they do the same thing.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from editledger import frames
from editledger.refs import find_run, parse_run_at
from ledger import Ledger
from ledger.errors import InputError, IntegrityError, ResourceError, RunBusy, SchemaError, UserError
from ledger.failures import explain
from ledger import history
from simulator import audit as audit_mod
from simulator import export_rome as rome_export
from simulator import report as report_mod
from simulator.requests import EditRequest, ProbeItem, Step
from simulator.streams import Stream, load_stream, read_benchmark, save_stream
from simulator.streams import make_stream as _make_stream
from simulator.streams.adapters.easyedit import read_easyedit
from simulator.streams.adapters.easyedit import stream_from_easyedit as _from_easyedit
from simulator.streams.format import canonical_line, parse_stream_bytes

__all__ = ["open", "EditLedger", "EditedModel", "Report", "Stream", "make_stream", "load_stream", "save_stream",
           "stream_from_requests", "stream_from_easyedit", "hparams_from_easyedit", "UserError", "InputError",
           "IntegrityError", "RunBusy", "SchemaError", "ResourceError"]


def __getattr__(name: str):
    # EditedModel's module imports torch (~2 s): only code that names it pays for it
    if name == "EditedModel":
        from simulator.edited_model import EditedModel
        return EditedModel
    if name == "Report":
        return frames.Report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _user_errors(fn):
    """Errors of the environment (a full disk, a damaged or read-only ledger, a server that cannot be
    reached) become the CLI's UserErrors, in words; anything else keeps its traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as e:
            url = getattr(args[0], "url", None) if args and isinstance(args[0], EditLedger) else None
            err = explain(e, url)
            if err is None:
                raise
            raise err from e
    return wrapper


# ----------------------------------------------------------------------------------------- streams
def make_stream(kind: str = "sequential", n: int = 10, *, source: str = "builtin", seed: int = 0,
                batch_size: int = 1, name: str | None = None) -> Stream:
    """A stream of ``kind`` (sequential, batch, round, reverse_conflict, composite_conflict, multihop)
    with ``n`` cases drawn (seeded) from ``source``: "builtin" (editledger's checked facts), a benchmark
    file (CounterFact, ZsRE, MQuAKE, ConflictEdit, RoundEdit, KnowEdit; format detected) or a stream
    file. Same as ``editledger stream make``."""
    records = read_benchmark(source)
    stream = _make_stream(kind, records, n=n, seed=seed, batch_size=batch_size)
    if name:
        stream.name = name
    stream.meta.update({"source": str(source), "seed": seed, "n": n})
    return stream


def stream_from_requests(requests: Sequence[Any], *, name: str = "python") -> Stream:
    """A stream from a list, one step per item, checked like a stream file (InputError naming the item):

    * editledger edit requests, ``{"subject": "Eiffel Tower", "prompt": "The {} is located in",
      "target_new": " Rome", "target_old": " Paris"}`` (``EditRequest``s too): a sequential step each,
      probed on its own prompt (target_new against target_old);
    * steps as a stream file writes them (``{"requests": [...], "probes": {...}, ...}``, ``Step``s too);
    * EasyEdit's request dicts (a filled ``prompt`` without ``{}``): see ``stream_from_easyedit``."""
    items = list(requests)
    if not items:
        raise InputError("no requests given: pass at least one edit request")
    first = items[0]
    if isinstance(first, Mapping) and "requests" not in first and "{}" not in str(first.get("prompt", "{}")):
        return stream_from_easyedit(items, name=name)
    lines = []
    for i, it in enumerate(items):
        if isinstance(it, Step):
            d = it.to_dict()
        elif isinstance(it, EditRequest):
            d = _request_step(it)
        elif isinstance(it, Mapping) and "requests" in it:
            d = {"v": 1, **it}
        elif isinstance(it, Mapping):
            try:
                d = _request_step(EditRequest.from_dict(it)) if set(it) <= set(EditRequest.__dataclass_fields__) \
                    else {"v": 1, "requests": [dict(it)]}         # the stream check names the unknown field
            except KeyError as e:
                raise InputError(f"request {i}: missing {e}; an edit request needs subject, prompt (with {{}}) "
                                 "and target_new") from None
        else:
            raise InputError(f"request {i} is a {type(it).__name__}; give dicts, EditRequests or Steps")
        lines.append(d)
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines).encode("utf-8")
    return parse_stream_bytes(text, source="the requests given (line = request)", default_name=name)


def _request_step(r: EditRequest) -> dict:
    """A request as a sequential step probed on its own prompt (editledger's rewrite suite)."""
    probe = ProbeItem(prompt=r.text, target=r.target_new, alt=r.target_old)
    return Step(requests=[r], probes={"rewrite": [probe]}).to_dict()


def stream_from_easyedit(data: Any, *, name: str = "easyedit", batch_size: int = 1,
                         locality_suites: Mapping[str, str] | None = None,
                         portability_suites: Mapping[str, str] | None = None) -> Stream:
    """A stream from EasyEdit's edit requests: ``BaseEditor.edit``'s arguments as a dict (``prompts``,
    ``target_new``, ``ground_truth``, ``subject``, ``rephrase_prompts``, ``locality_inputs``,
    ``portability_inputs``), its per-edit request dicts (a list), or a JSON file holding either. One
    sequential step per edit (``batch_size`` > 1: batch steps). Locality keys become the neighborhood
    suite (Relation_Specificity: attribute, distracting: distract), portability keys SR / OH / RR
    (Subject_Aliasing, reasoning / one_hop, Logical_Generalization / reversed_relation); name the
    suite of any other key in ``locality_suites`` / ``portability_suites``."""
    kw = dict(batch_size=batch_size, locality_suites=locality_suites, portability_suites=portability_suites)
    if isinstance(data, (str, os.PathLike)):
        return read_easyedit(data, **kw)
    return _from_easyedit(data, name=name, **kw)


def hparams_from_easyedit(source: str | os.PathLike | Mapping[str, Any], *, method: str | None = None,
                          model: str | None = None):
    """EasyEdit's ROME, MEMIT or FT hyper-parameters (a YAML file, or its dict) in editledger's terms:
    a ``Translation`` with ``method``, ``values`` (pass them as ``hparams=`` to ``replay``) and
    ``notes`` (keys taken from elsewhere, differences in code). ``model`` (a registry name) checks the
    file's module names and layers against that model. Keys editledger cannot honour are refused by
    name (InputError). ``replay(hparams="file.yaml")`` does the same translation itself."""
    # simulator.editors imports every editor, and with them torch: only this call needs it
    from simulator.editors import easyedit_hparams
    from simulator.models.specs import SPECS
    spec = SPECS.get(model.strip().lower()) if model else None
    if isinstance(source, Mapping):
        return easyedit_hparams.translate(dict(source), method=method, spec=spec)
    return easyedit_hparams.load(source, method=method, spec=spec)


def as_stream(stream: Any, name: str | None = None) -> tuple[Stream, dict]:
    """(the stream, what the run's config says about its origin) from what ``replay`` accepts."""
    if isinstance(stream, Stream):
        return stream, {"stream_source": "python"}
    if isinstance(stream, (str, os.PathLike)):
        return load_stream(stream), {"stream_path": str(stream)}
    if isinstance(stream, Mapping):
        return stream_from_easyedit(stream, name=name or "easyedit"), {"stream_source": "easyedit"}
    if isinstance(stream, (list, tuple)):
        return stream_from_requests(stream, name=name or "python"), {"stream_source": "python"}
    raise InputError(f"cannot replay a {type(stream).__name__}: give a stream file's path, a Stream "
                     "(make_stream, load_stream), a list of edit requests, or EasyEdit's requests")


# ----------------------------------------------------------------------------------------- the ledger
@_user_errors
def open(db: str | os.PathLike | None = None, *, create: bool = True) -> "EditLedger":  # noqa: A001
    """Open a ledger: a path to a SQLite file or any SQLAlchemy URL (``postgresql+psycopg://...``);
    None: ``$EDITLEDGER_DB``, else ``./editledger.db`` (``$EDITLEDGER_HOME``). ``create=False`` refuses
    a ledger that does not exist yet. Use it as a context manager, or call ``close()``."""
    return EditLedger(Ledger.open(None if db is None else str(db), create=create))


class EditLedger:
    """A ledger and the models it loads for you. Runs are named by id (3) or name ("demo"),
    versions as "RUN@STEP" ("3@12"; "3" is the head). Every method raises the CLI's errors."""

    def __init__(self, ledger: Ledger, *, owned: bool = True):
        self.ledger = ledger                         # ledger.Ledger: the lower-level API
        self._owned = owned
        self._by_ref: dict[tuple[str, str | None], Any] = {}     # (model, device) -> Session
        self._by_base: dict[tuple[int, str | None], Any] = {}    # (base model id, device) -> Session

    @property
    def url(self) -> str:
        return self.ledger.url

    def close(self) -> None:
        """Close the ledger and let go of the models loaded through it."""
        self._by_ref.clear()
        self._by_base.clear()
        if self._owned:
            self.ledger.close()

    def __enter__(self) -> "EditLedger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EditLedger {self.url}>"

    # ---- models ---------------------------------------------------------------------------------
    def _session(self, model: str, device: str | None, progress: bool = True):
        # the session loads torch and a model: only the calls that need a model pay for it
        from simulator.session import Session
        key = (model, device)
        if key not in self._by_ref:
            s = Session.open(self.ledger, model, device=device, progress=progress)
            self._by_ref[key] = s
            self._by_base.setdefault((s.base_model_id, device), s)
        return self._by_ref[key]

    def _session_for_run(self, run_id: int, device: str | None, model: str | None, progress: bool = True):
        run = self.ledger.run(run_id)
        if model is None and (run.base_model_id, device) in self._by_base:
            return self._by_base[(run.base_model_id, device)]
        bm = self.ledger.base_model(run.base_model_id)
        src = model or (run.config or {}).get("model") or bm.name
        s = self._session(src, device, progress)
        if s.base_model_id != run.base_model_id:
            raise InputError(f"run {run_id} was recorded on base model {bm.name} (fingerprint "
                             f"{bm.fingerprint[:12]}…), but {src!r} loads a model with fingerprint "
                             f"{s.lm.fingerprint[:12]}…: pass the original model with model=")
        return s

    # ---- runs -----------------------------------------------------------------------------------
    @_user_errors
    def runs(self) -> pd.DataFrame:
        """Every run, one row each (index run_id): name, method, model, stream, status, steps, protocol,
        head version, times."""
        return frames.runs_frame(self.ledger)

    @_user_errors
    def run_id(self, run: int | str) -> int:
        """The id of a run given by id or name (InputError naming the known runs otherwise)."""
        return find_run(self.ledger, run)

    @_user_errors
    def version_id(self, ref: int | str) -> int:
        """The version id of "RUN@STEP" ("RUN": its head)."""
        run_id, step = parse_run_at(self.ledger, ref)
        return self._version(run_id, step).id

    def _version(self, run_id: int, step: int | None):
        if step is None:
            return self.ledger.version(self.ledger.run(run_id).head_version_id)
        return history.version_at(self.ledger, run_id, step)

    @_user_errors
    def log(self, run: int | str) -> pd.DataFrame:
        """A run's versions in step order (edits, resets, reverts, branches): kind, parent, whether the
        head's lineage holds it, its first request, its efficacy, its note."""
        return frames.log_frame(self.ledger, find_run(self.ledger, run))

    # ---- replay ---------------------------------------------------------------------------------
    @_user_errors
    def replay(self, stream: Any, *, model: str = "gemma-3-270m", method: str = "rome",
               hparams: str | os.PathLike | Mapping[str, Any] | None = None, name: str | None = None,
               seed: int = 0, device: str | None = None, progress: bool = True, general: str = "builtin",
               general_n: int = 10, general_seed: int = 0, protocol: str = "sequential",
               stop_when: Iterable[str] = (), probe_every: Mapping[str, int] | None = None,
               keyframe_every: int = 8, stats_corpus: str = "self", stats_tokens: int | None = None) -> int:
        """Replay ``stream`` on ``model`` with ``method``, one ledger transaction per step; return the
        new run's id. Same as ``editledger replay``.

        stream    a stream file's path, a Stream (make_stream, load_stream, stream_from_easyedit), a
                  list of edit requests or steps (stream_from_requests), or EasyEdit's requests (a dict)
        model     a registry name (gemma-3-270m, smollm2-135m, tiny-gptj, gpt-j-6b, ...) or a path to a
                  local Hugging Face directory or .gguf file
        method    rome, r-rome, memit, alphaedit, ft, kn, mend, grace, ike, serac (docs/methods.md)
        hparams   a file (editledger's JSON, or EasyEdit's ROME/MEMIT/FT YAML), or a dict of values
                  over the model's defaults (EasyEdit's dict too, when it holds alg_name)
        general   general-ability sets measured along the run: builtin, loglik, none, or real sets
                  NAME[=FILE][:N],... (general_n items each, drawn with general_seed)
        protocol  sequential (each step on the model as edited so far) or independent (each case
                  from the base model)
        stop_when conditions such as "ppl>1.5x": stop and roll back to the last good version
        probe_every  {suite: k}: run a probe suite every k steps (0: only at the end)
        keyframe_every, stats_corpus ("self", "wikitext", a text file), stats_tokens, seed, device,
        progress (a tqdm bar per run): as the CLI's options of the same names."""
        from simulator.replay import ReplayOptions, Replayer   # torch: only a replay needs it
        from simulator.editors import get_editor, load_hparams
        from simulator.models.specs import SPECS
        st, origin = as_stream(stream, name)
        hp_file, overrides = _hparams_arg(hparams, method)
        opts = ReplayOptions(method=str(method).lower(), hparams_file=hp_file, hparams=overrides, seed=seed,
                             stop_when=list(stop_when), keyframe_every=keyframe_every,
                             probe_every=dict(probe_every or {}), stats_corpus=stats_corpus,
                             stats_tokens=stats_tokens, general=general, protocol=protocol,
                             general_n=general_n, general_seed=general_seed, progress=progress)
        opts.validate()                                  # before the model loads and the ledger is touched
        get_editor(opts.method)
        load_hparams(opts.method, SPECS.get(str(model).strip().lower()), opts.hparams_file, opts.hparams)
        session = self._session(str(model), device, progress)
        return Replayer(session, opts).start(st.steps, stream_name=st.name, stream_digest=st.digest,
                                             stream_kind=st.kind, name=name, extra_config=origin)

    @_user_errors
    def resume(self, run: int | str, *, device: str | None = None, model: str | None = None,
               progress: bool = True) -> int:
        """Continue a killed or failed replay from its last committed step (``editledger replay --resume``)."""
        from simulator.replay import ReplayOptions, Replayer   # torch: only a replay needs it
        run_id = find_run(self.ledger, run)
        self.ledger.acquire_run(run_id)        # refused at once while another replay writes it
        try:
            opts = ReplayOptions.from_config((self.ledger.run(run_id).config or {}).get("options", {}))
            opts.progress = progress
            Replayer(self._session_for_run(run_id, device, model, progress), opts).resume(run_id)
        except BaseException:
            self.ledger.release_run(run_id)
            raise
        return run_id

    @_user_errors
    def branch(self, ref: str, stream: Any, *, name: str | None = None, device: str | None = None,
               model: str | None = None, progress: bool = True) -> int:
        """Continue from the version "RUN@STEP" with the steps of ``stream`` as a new run, with the
        parent run's method and options; return the new run's id (``editledger branch``)."""
        from simulator.replay import ReplayOptions, Replayer   # torch: only a replay needs it
        st, origin = as_stream(stream, name)
        run_id, step = parse_run_at(self.ledger, ref)
        if step is None:
            raise InputError(f"branch needs RUN@STEP, e.g. {run_id}@5")
        start = history.version_at(self.ledger, run_id, step)
        opts = ReplayOptions.from_config((self.ledger.run(run_id).config or {}).get("options", {}))
        opts.progress = progress
        s = self._session_for_run(run_id, device, model, progress)
        s.checkout(start.id)
        return Replayer(s, opts).start(
            st.steps, stream_name=st.name, stream_digest=st.digest, stream_kind=st.kind, name=name,
            start_version_id=start.id, first_step=step + 1,
            extra_config={"branched_from": {"run": run_id, "step": step, "version": start.id}, **origin})

    # ---- history --------------------------------------------------------------------------------
    @_user_errors
    def reset(self, run: int | str, to_step: int) -> int:
        """Move the run's head back to ``to_step`` (0: where it started); later versions are kept.
        Returns the reset marker's version id (``editledger reset RUN --to STEP``)."""
        return history.reset(self.ledger, find_run(self.ledger, run), _step(to_step, 0)).id

    @_user_errors
    def revert(self, run: int | str, step: int) -> int:
        """A new head version without ``step``'s delta (weights and method state), the later steps
        kept; returns its version id (``editledger revert RUN STEP``). Check it out to use it."""
        return history.revert(self.ledger, find_run(self.ledger, run), _step(step, 1)).id

    # ---- models of versions -----------------------------------------------------------------------
    @_user_errors
    def checkout(self, ref: int | str, *, without: Iterable[int] = (), device: str | None = None,
                 model: str | None = None, progress: bool = True):
        """The model of "RUN@STEP" ("RUN": the head) as an ``EditedModel``: its ``model`` and
        ``tokenizer`` are the Hugging Face objects with the version's weights, verified bit for bit
        against the ledger; ``generate``, ``forward`` and ``next_token`` answer through the method's
        state where it has one (GRACE's codebook hooks, IKE's and SERAC's retrieved context).

        ``without``: steps of the run to leave out (their weight and state deltas), later steps kept:
        the audit's counterfactual "the head without step k", a model no ledger version holds (so it
        is not verified). ``model``: the base model, if it is not where the run found it."""
        from simulator.edited_model import EditedModel   # torch: only a model needs it
        run_id, step = parse_run_at(self.ledger, ref)
        v = self._version(run_id, step)
        skip = [history.version_at(self.ledger, run_id, _step(k, 1)).id for k in without]
        s = self._session_for_run(run_id, device, model, progress)
        return EditedModel(s, v.id, without=skip, run_id=run_id, step=v.step)

    @_user_errors
    def export(self, ref: int | str, out_dir: str | os.PathLike, *, device: str | None = None,
               model: str | None = None) -> Path:
        """Write "RUN@STEP" as a Hugging Face model directory (``editledger checkout --export``)."""
        return self.checkout(ref, device=device, model=model).save(out_dir)

    # ---- measurements -----------------------------------------------------------------------------
    @_user_errors
    def metrics(self, run: int | str) -> list[str]:
        """The metrics the run recorded, as "suite.metric" (what ``trajectory`` takes)."""
        return [f"{s}.{m}" for s, m in self.ledger.metrics(find_run(self.ledger, run))]

    @_user_errors
    def trajectory(self, run: int | str, *metrics: str, against: str | None = None) -> pd.DataFrame:
        """Metrics as a function of the step, long format: run_id, step, version_id, suite, metric,
        against, value, on_head (whether the head's lineage holds the version). ``metrics`` as
        "suite.metric" (``metrics(run)`` lists them; none: all). ``against``: None takes each version's
        value by the ledger's rule (plain, else against the base, else against the previous version),
        or "none", "base", "previous". The base model's value, where known, is the row at step 0."""
        run_id = find_run(self.ledger, run)
        known = self.ledger.metrics(run_id)
        wanted = known if not metrics else [_metric(m) for m in metrics]
        missing = [f"{s}.{m}" for s, m in wanted if (s, m) not in known]
        if missing:
            raise InputError(f"run {run_id} recorded no {', '.join(missing)}; it has: "
                             f"{', '.join(f'{s}.{m}' for s, m in known) or 'nothing'}")
        if against not in (None, "none", "base", "previous"):
            raise InputError(f"against={against!r}: use None, 'none', 'base' or 'previous'")
        return frames.trajectory_frame(self.ledger, run_id, wanted, against)

    @_user_errors
    def audit(self, run: int | str, *, verify: bool = False, device: str | None = None,
              model: str | None = None, progress: bool = True) -> pd.DataFrame:
        """The steps that caused forgetting, declines and leaks, with evidence, one row per finding
        (``editledger audit``); recorded in the ledger as the CLI records them. ``verify`` loads the
        model and re-measures the head without each suspect step (evidence["counterfactual"])."""
        run_id = find_run(self.ledger, run)
        findings = audit_mod.audit_run(self.ledger, run_id)
        if verify and findings:
            findings = audit_mod.verify(self._session_for_run(run_id, device, model, progress), run_id, findings,
                                        progress=progress)
        self.ledger.record_audit(run_id, [f.to_dict() for f in findings])
        return frames.findings_frame(findings)

    @_user_errors
    def report(self, *runs: int | str, recompute: bool = False):
        """The survey's report of one or more runs as DataFrames (``Report``: table3, table4,
        reliability, head, and figure4 in long format), from the ledger alone (``editledger report``).
        ``recompute`` recomputes every metric from the raw scores the ledger kept."""
        if not runs:
            raise InputError("name one or more runs to report on, e.g. led.report(1, 2)")
        ids = [find_run(self.ledger, r) for r in runs]
        return frames.report_frames(report_mod.collect(self.ledger, ids, recompute=recompute))

    @_user_errors
    def export_rome(self, run: int | str, out_dir: str | os.PathLike) -> Path:
        """Write the run as kmeng01/rome's per-case result files, ``out_dir/run_<id>/case_<step>.json``
        with ``pre`` and ``post`` blocks of rewrite, paraphrase and neighbourhood NLLs, so that rome's
        (or MEMIT's) ``experiments/summarize.py`` reads it: ``summarize.main(out_dir, None,
        abs_path=True)``. Returns the run directory (``editledger export RUN --format rome DIR``)."""
        return rome_export.export_run(self.ledger, find_run(self.ledger, run), out_dir)


def _step(value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < 10**9:
        raise InputError(f"a step is a whole number >= {low}, got {value!r}")
    return value


def _metric(text: str) -> tuple[str, str]:
    suite, dot, metric = str(text).partition(".")
    if not dot or not suite or not metric:
        raise InputError(f"metric {text!r}: write suite.metric, e.g. retention.efficacy_top1")
    return suite, metric


def _hparams_arg(hparams: Any, method: str) -> tuple[str | None, dict]:
    """(file, overrides) of replay's ``hparams``: a path, a dict of editledger values, or EasyEdit's dict."""
    if hparams is None:
        return None, {}
    if isinstance(hparams, (str, os.PathLike)):
        return str(hparams), {}
    if isinstance(hparams, Mapping):
        if "alg_name" in hparams:
            return None, dict(hparams_from_easyedit(hparams, method=method).values)
        return None, dict(hparams)
    if hasattr(hparams, "values") and hasattr(hparams, "notes"):      # hparams_from_easyedit's Translation
        return None, dict(hparams.values)
    raise InputError(f"hparams must be a file path or a dict of name: value, got {type(hparams).__name__}")
