"""Group suites: a case of several steps (a conflict pair, a round trip, an MQuAKE chain), measured
when its last step is applied and again at the head (``build(ctx, suite_label, groups)``).

Every value is computed per case and the record holds the mean over the cases given (normally
one); its detail keeps, per case, the probabilities per prompt and per target on every model the
formula reads (theta the base, theta_m after the case's first step, theta' now).

Sources: Li et al. 2024 (zjunlp/PitfallsKnowledgeEditing) experiments/evaluate_conflictedit.py,
evaluate_roundedit.py, py/eval_utils_roundedit.py and summarize.py for CS, CM, TFD, Succ, D, IR,
FR; MQuAKE (princeton-nlp/MQuAKE, README "Evaluation") for EW, IW, MH.
"""
from __future__ import annotations

from ledger.records import ProbeRecord

from .. import items as I
from .. import metrics as M
from .context import Ctx, rec

ZERO_SHOT = "zero-shot"


def _kind(ctx: Ctx, group: str) -> str:
    kind = ctx.steps[ctx.members[group][0] - 1].kind
    return kind[:-len("_conflict")] if kind.endswith("_conflict") else kind   # reverse / composite / coverage


def _probs(src: dict, keys: list[str]) -> list[float] | None:
    return [I.prob(src[k]) for k in keys] if keys and all(k in src for k in keys) else None


def _fact_keys(ctx: Ctx, group: str) -> dict[str, list[str]]:
    """Keys of k_o, k_n (``conflict`` items by meta["fact"]) and k_f (``tied_fact`` items). Items
    without a role (stream files written before the roles) hold k_n as target and k_o as alt."""
    keys: dict[str, list[str]] = {"k_o": [], "k_n": [], "k_f": []}
    prompts: dict[str, list[str]] = {"k_o": [], "k_n": [], "k_f": []}
    for j, i, it in ctx.group_items(group, "conflict"):
        role = it.meta.get("fact")
        if role in ("k_o", "k_n"):
            keys[role].append(I.key(j, "conflict", i, "t"))
            prompts[role].append(it.prompt)
        elif role is None and it.alt is not None:
            keys["k_n"].append(I.key(j, "conflict", i, "t"))
            keys["k_o"].append(I.key(j, "conflict", i, "a"))
            prompts["k_n"].append(it.prompt)
            prompts["k_o"].append(it.prompt)
    for j, i, it in ctx.group_items(group, "tied_fact"):
        keys["k_f"].append(I.key(j, "tied_fact", i, "t"))
        prompts["k_f"].append(it.prompt)
    return {"keys": keys, "prompts": prompts}


def conflict(ctx: Ctx, label: str, groups: list[str]) -> list[ProbeRecord]:
    """ConflictEdit per case: CS = 1{P'(k_n) > P'(k_o)}, CM = max((P_m(k_o) - P'(k_o)) / P_m(k_o), -1),
    TFD = (P_0(k_f) - P'(k_f)) / P_0(k_f) (P = P-bar over the fact's prompts; ' after the second
    edit, m after the first, 0 the base), success = top-1 of the case's edit prompts now. One set of
    metrics per kind: cs_reverse, cm_reverse, ..., tfd_composite."""
    by_kind: dict[str, dict[str, list]] = {}
    for g in groups:
        fk = _fact_keys(ctx, g)
        keys, prompts = fk["keys"], fk["prompts"]
        po, pn = _probs(ctx.cur, keys["k_o"]), _probs(ctx.cur, keys["k_n"])
        if po is None or pn is None:
            continue
        b = by_kind.setdefault(_kind(ctx, g), {"cs": [], "cm": [], "tfd": [], "succ": [], "rows": []})
        row = {"group": g, "k_o": {"prompts": prompts["k_o"], "p": po}, "k_n": {"prompts": prompts["k_n"], "p": pn}}
        row["cs"] = M.conflict_score(pn, po)
        b["cs"].append(row["cs"])
        pm = _probs(ctx.mid.get(g, {}), keys["k_o"])
        if pm is not None:
            row["k_o"]["p_intermediate"] = pm
            row["cm"] = M.conflict_magnitude(pm, po)
            b["cm"].append(row["cm"])
        pf, pf0 = _probs(ctx.cur, keys["k_f"]), _probs(ctx.ref, keys["k_f"])
        if pf is not None and pf0 is not None:
            row["k_f"] = {"prompts": prompts["k_f"], "p": pf, "p_base": pf0}
            row["tfd"] = M.tied_fact_damage(pf0, pf)
            b["tfd"].append(row["tfd"])
        succ = [I.top1(ctx.cur[k]) for j, i, _ in ctx.group_items(g, "rewrite")
                for k in [I.key(j, "rewrite", i, "t")] if k in ctx.cur]
        b["succ"] += succ
        b["rows"].append(row)
    recs = []
    for kind, b in by_kind.items():
        recs.append(rec(label, f"cs_{kind}", M.mean(b["cs"]), len(b["cs"]), b["rows"]))
        if b["cm"]:
            recs.append(rec(label, f"cm_{kind}", M.mean(b["cm"]), len(b["cm"]), None, "previous"))
        if b["tfd"]:
            recs.append(rec(label, f"tfd_{kind}", M.mean(b["tfd"]), len(b["tfd"]), None, "base"))
        if b["succ"]:
            recs.append(rec(label, f"success_{kind}", M.accuracy(b["succ"]), len(b["succ"]), None))
    return recs


def _round_objects(ctx: Ctx, group: str):
    """The case's round items (the back edit's; older files also put some on the forward step) and
    the index of o1 in Obj."""
    out = []
    for j, i, it in ctx.group_items(group, "round"):
        if not it.choices or it.meta.get("phase") == "forward":
            continue
        o1 = it.label if it.label is not None else (list(it.choices).index(it.target) if it.target in it.choices else None)
        if o1 is not None and len(it.choices) >= 2 and (it.alt or it.meta.get("o_star")):
            out.append((j, i, it, o1))
    return out


def round_trip(ctx: Ctx, label: str, groups: list[str]) -> list[ProbeRecord]:
    """RoundEdit per case: Succ = 0.5*1{P_m(o*) > P_m(o1)} + 0.5*1{P'(o1) > P'(o*)};
    IR = share of Obj \\\\ {o1} with P_0(o) > P'(o); FR = 1{IR > 0.5}; D = JS(P' over Obj, P_0 over Obj)
    / |Obj| in nats (summarize.py's js_div), P = P-bar over the edit prompt and the round templates."""
    succ, ds, irs, rows = [], [], [], []
    for g in groups:
        its = _round_objects(ctx, g)
        if not its:
            continue
        n = len(its[0][2].choices)
        its = [x for x in its if len(x[2].choices) == n and x[3] == its[0][3]]   # one object set per case
        o1 = its[0][3]
        ck = [[I.key(j, "round", i, f"c{c}") for (j, i, _, _) in its] for c in range(n)]   # per object, per prompt
        ak = [I.key(j, "round", i, "a") for (j, i, _, _) in its]
        fin = [_probs(ctx.cur, ks) for ks in ck]
        if any(f is None for f in fin):
            continue
        row = {"group": g, "prompts": [it.prompt for _, _, it, _ in its], "objects": list(its[0][2].choices),
               "o1": o1, "o_star": its[0][2].alt or its[0][2].meta.get("o_star"), "p": fin}
        p_star, mid = _probs(ctx.cur, ak), ctx.mid.get(g, {})
        m_star, m_o1 = _probs(mid, ak), _probs(mid, ck[o1])
        if p_star is not None and m_star is not None and m_o1 is not None:
            row.update(p_o_star=p_star, p_intermediate_o1=m_o1, p_intermediate_o_star=m_star)
            row["succ"] = M.round_success(m_star, m_o1, fin[o1], p_star)
            succ.append(row["succ"])
        base = [_probs(ctx.ref, ks) for ks in ck]
        if all(b is not None for b in base):
            others = [c for c in range(n) if c != o1]
            pbar = [M.mean(x) for x in fin]
            bbar = [M.mean(x) for x in base]
            row["p_base"] = base
            row["d"] = M.distortion([pbar[o1]] + [pbar[c] for c in others], [bbar[o1]] + [bbar[c] for c in others])
            row["ir"] = M.ignore_rate([bbar[c] for c in others], [pbar[c] for c in others])
            ds.append(row["d"])
            irs.append(row["ir"])
        rows.append(row)
    recs = []
    if succ:
        recs.append(rec(label, "success", M.mean(succ), len(succ), rows))
    if ds:
        recs += [rec(label, "distortion", M.mean(ds), len(ds), None if succ else rows, "base"),
                 rec(label, "ignore_rate", M.mean(irs), len(irs), None, "base"),
                 rec(label, "failure_rate", M.accuracy(M.failure(x) for x in irs), len(irs), None, "base")]
    return recs


def multihop(ctx: Ctx, label: str, groups: list[str]) -> list[ProbeRecord]:
    """MQuAKE per case: EW over the case's edits (their cloze statements), IW = all of the chain's
    single hops recalled (the edits when the case lists no hops), MH = any of the case's questions
    answered. An answer counts when the greedy continuation starts with the target or an alias.
    Questions asked without MQuAKE's demonstrations are reported as mh_zeroshot (hops: iw_zeroshot)."""
    ew, iw, mh, rows = [], {False: [], True: []}, {False: [], True: []}, []
    for g in groups:
        edits = [I.top1(ctx.cur[k]) for j, i, _ in ctx.group_items(g, "rewrite")
                 for k in [I.key(j, "rewrite", i, "t")] if k in ctx.cur]
        hops, qs = [], []
        for j, i, it in ctx.group_items(g, "multihop"):
            ks = [I.key(j, "multihop", i, "t")] + [I.key(j, "multihop", i, f"x{x}") for x in range(len(it.answers))]
            if not all(k in ctx.cur for k in ks):
                continue
            how = it.meta.get("prompting", ZERO_SHOT)
            entry = {"ask": it.prompt.rsplit("\n", 1)[-1], "ok": any(I.top1(ctx.cur[k]) for k in ks),
                     "targets": [it.target, *it.answers], "p": [I.prob(ctx.cur[k]) for k in ks], "prompting": how}
            (hops if it.meta.get("kind") == "hop" else qs).append(entry)
        ew += edits
        if hops or edits:       # a chain with one hop asked without demonstrations is labelled zero-shot
            iw[any(h["prompting"] == ZERO_SHOT for h in hops)].append([h["ok"] for h in hops] or edits)
        for zero in (False, True):
            asked = [q["ok"] for q in qs if (q["prompting"] == ZERO_SHOT) == zero]
            if asked:
                mh[zero].append(asked)
        rows.append({"group": g, "edits": edits, "hops": hops, "questions": qs})
    if not rows:
        return []
    recs = [rec(label, "ew", M.edit_wise(ew), len(ew), rows)] if ew else []
    for zero, suffix in ((False, ""), (True, "_zeroshot")):
        if iw[zero]:
            recs.append(rec(label, f"iw{suffix}", M.instance_wise(iw[zero]), len(iw[zero]), None if recs else rows))
        if mh[zero]:
            recs.append(rec(label, f"mh{suffix}", M.multihop_accuracy(mh[zero]), len(mh[zero]), None if recs else rows))
    return recs
