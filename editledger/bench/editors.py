"""Edit latency of every method the registry holds (``simulator.editors.method_names()``), on the
embedded model with its second-moment statistics cached, one request per edit, the demo stream's requests
in turn; and ROME's time split (value optimisation, closed form) for the time model in docs/performance.md.
Statistics are prepared first (from the per-machine cache, else sampled) and reported on their own."""
from __future__ import annotations

import dataclasses
import statistics
import time

from editledger.bench.figures import Figure, Section

MODEL = "gemma-3-270m"


def requests(n: int):
    """n single-request edits: the demo stream's, then the built-in facts' (seeded), all distinct."""
    from simulator.streams.builtin import builtin_records, demo
    reqs = [st.requests[0] for st in demo().steps]
    seen = {(r.subject, r.prompt) for r in reqs}
    for rec in builtin_records():
        for r in rec.requests:
            if (r.subject, r.prompt) not in seen:
                reqs.append(r)
                seen.add((r.subject, r.prompt))
    return reqs[:n]


def bench_editors(session, quick: bool) -> Section:
    """``session``: a Session on the embedded model (its ledger holds the statistics)."""
    from simulator.editors import get_editor, load_hparams, method_names
    from simulator.stats_ledger import ledger_stats_provider

    sec = Section("editors", f"Edit latency per method ({MODEL}, statistics cached, 1 request per edit)")
    lm = session.lm
    n = 1 if quick else 6                      # quick: one edit per method, no warm-up (a smoke test)
    reqs = requests(n + 1)
    sec.info["methods"] = method_names()
    for method in method_names():
        try:
            hp = load_hparams(method, lm.spec)
            quick_note = ""
            if quick and method == "kn" and not hp.attribution_layers:
                # quick (a smoke test under 5 minutes): KN scores one layer, not all 18 (~40 s saved)
                hp = dataclasses.replace(hp, attribution_layers=[lm.spec.rome_layer])
                quick_note = f"; quick: attribution over layer {lm.spec.rome_layer} only"
            ed = get_editor(method)
            layers = ed.stats_layers(hp)               # the statistics the method reads (the editor contract)
            stats = None
            if layers:
                # quick: statistics over 1,024 tokens (a smoke test from an empty cache in minutes); the
                # edit's cost does not depend on how many tokens C was taken over
                stats = ledger_stats_provider(session, "self", 1024 if quick else None, progress=True,
                                              default_tokens=int(getattr(hp, "mom2_n_samples", 4096)))
                t = time.perf_counter()
                session.prepare_statistics(stats, layers)
                sec.info.setdefault("stats_s", {})[method] = round(time.perf_counter() - t, 2)
            ed.ledger = session.ledger                   # where MEND reads its trained network from
            # a stateful method edits from the base model's (empty) state each time: one step's cost
            state = (lambda: ed.empty_state()) if ed.state else (lambda: None)
            if not quick:
                ed.edit(lm.model, lm.tokenizer, lm.spec, [reqs[0]], hp, stats=stats, state=state())   # warm-up
            times, cpu, detail = [], [], []
            for req in reqs[1:]:                        # (quick: reqs[1] only)
                st = state()
                t, c = time.perf_counter(), time.process_time()
                res = ed.edit(lm.model, lm.tokenizer, lm.spec, [req], hp, stats=stats, state=st)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                detail.append(_split(res.diagnostics))
            if method == "rome":
                sec.info["rome_batch"] = _batch_shape(lm, hp, reqs[1:], detail)
                sec.info["rome_layer"] = hp.layer
                sec.info["rome_value_loops"] = _value_loops(lm, hp, reqs[1:], detail)
            goal = "<= 2" if method == "rome" else None
            note = ("1 edit, no warm-up" + quick_note) if quick else f"{len(times)} edits after a warm-up"
            if not ed.changes_weights:   # GRACE, IKE, SERAC: the edit lives in method state, used when the model answers
                note += "; method state, no weight delta: the rest of its cost is paid when the model answers"
            sec.add(Figure(f"{method} edit", "s", times, goal=goal, note=note),
                    Figure(f"{method} edit, CPU time of all threads", "s", cpu,
                           note="on a shared machine: what the edit costs, not what it waits"))
            sec.info.setdefault("split", {})[method] = detail
        except Exception as e:  # noqa: BLE001 - a method that fails is reported, the others still run
            sec.info.setdefault("failed", {})[method] = f"{type(e).__name__}: {e}"[:300]
    rome = sec.info.get("split", {}).get("rome")
    if rome:
        sec.info["rome_mean_split"] = {k: round(statistics.mean(d[k] for d in rome), 4) for k in rome[0]}
    return sec


def _split(diag: dict) -> dict:
    """Where one edit's time went, from the editor's own diagnostics (value optimisation, update, steps)."""
    reqs = diag.get("requests") or [{}]
    r = reqs[0] if isinstance(reqs[0], dict) else {}
    out = {"total_s": float(diag.get("time_s", 0.0))}
    if "time_s" in r:
        out["value_s"] = float(r["time_s"])
    if "steps" in r:
        out["opt_steps"] = int(r["steps"])
    if "update_s" in r:
        out["update_s"] = float(r["update_s"])
    return out


def _batch_shape(lm, hp, reqs, detail) -> dict:
    """The mean shape of ROME's optimisation batch over ``reqs`` (for the cost model)."""
    shapes = [batch_of(lm, hp, r, d.get("opt_steps", 0)) for r, d in zip(reqs, detail)]
    return {k: round(statistics.mean(getattr(b, k) for b in shapes))
            for k in ("rows", "width", "prefix", "positions", "steps", "plain_width")}


def batch_of(lm, hp, req, steps: int):
    """The cost model's ``Batch`` of one request's value optimisation (the rows the editor builds)."""
    from editledger.bench.costmodel import Batch
    from simulator.editors.common import SuffixBatch, build_rows, pad_id_of
    rows = build_rows(lm.tokenizer, lm.spec, req, hp.context_prefixes, hp.kl_prompt, pad_id_of(lm.tokenizer))
    b = SuffixBatch.of(rows)
    return Batch(rows=rows.input_ids.shape[0], width=b.input_ids.shape[1], prefix=b.start,
                 positions=max(len(t) for t in rows.targets), steps=steps, plain_width=rows.input_ids.shape[1])


def _value_loops(lm, hp, reqs, detail) -> list[dict]:
    """Per ROME edit: the cost model's FLOPs of its value optimisation (keys + loop, its own batch and step
    count) beside the measured seconds of it, for the time model's check (gptj.predict)."""
    from editledger.bench.costmodel import Shapes, value
    s = Shapes.of(lm.spec.name, lm.config["hf_config"])
    out = []
    for req, d in zip(reqs, detail):
        if "value_s" not in d:
            continue
        steps = d.get("opt_steps", 0)
        v = value(s, hp.layer, batch_of(lm, hp, req, steps))
        out.append({"flop": v["keys_flop"] + v["value_flop"], "weight_bytes": v["value_weight_bytes"],
                    "value_s": d["value_s"], "steps": steps, "model": v})
    return out
