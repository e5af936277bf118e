"""Check the built-in fact set against the base model: does greedy decoding start with the target?

    python scripts/check_facts.py [--model gemma-3-270m]

For every fact it decodes greedily after the edit prompt and reports whether the continuation starts
with the true target (that is the pass/fail the demo uses). It also reports, for information, the
same check on the fact's paraphrases, its subject aliases, its reverse question ("Paris is the capital
of" -> France) and its one-hop question ("The Eiffel Tower is located in the country of" -> France).
Writes simulator/facts/check.json (read by simulator.facts.passing) and simulator/facts/CHECK.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.facts import FactSet, load_facts  # noqa: E402


@torch.no_grad()
def greedy_batch(model, tokenizer, prefix: str, prompts: list[str], n_tokens: int) -> list[str]:
    """Greedy continuations (n_tokens tokens each, decoded) of several prompts in one padded batch."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # so that every prompt ends at the last position
    try:
        enc = tokenizer([prefix + p for p in prompts], return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    out = model.generate(**enc, max_new_tokens=n_tokens, do_sample=False, top_p=None, top_k=None,
                         pad_token_id=tokenizer.pad_token_id)
    return [tokenizer.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True) for row in out]


def starts_with(continuation: str, target: str) -> bool:
    return continuation.lstrip().startswith(target.strip())


def check(model, tokenizer, prefix: str, fs: FactSet) -> dict:
    """Run every check; returns {fact_id: {...}} (json-serialisable)."""
    results = {}
    for f in tqdm(fs.facts, desc="checking facts", file=sys.stderr):
        rel = f.relation

        jobs = [("rewrite", f.text, f.target)]
        jobs += [("paraphrases", t.format(f.subject), f.target) for t in rel.paraphrases]
        jobs += [("aliases", rel.prompt.format(a), f.target) for a in f.aliases]
        if rel.reverse:
            jobs.append(("reverse", rel.reverse.format(f.target), f.subject))
        if rel.one_hop:
            jobs.append(("one_hop", rel.one_hop.format(f.subject), fs.prop(rel.object_type, f.target, rel.via)))
        n = max(len(tokenizer(" " + t, add_special_tokens=False)["input_ids"]) for _, _, t in jobs) + 1
        conts = greedy_batch(model, tokenizer, prefix, [p for _, p, _ in jobs], n)
        r = {"paraphrases": [], "aliases": []}
        for (key, prompt, target), cont in zip(jobs, conts):
            item = {"prompt": prompt, "target": target, "continuation": cont, "ok": starts_with(cont, target)}
            if isinstance(r.get(key), list):
                r[key].append(item)
            else:
                r[key] = item
        r["pass"] = r["rewrite"]["ok"]
        results[f.id] = r
    return results


def frac(items: list[dict]) -> str:
    return f"{sum(i['ok'] for i in items)}/{len(items)}" if items else "-"


def write_report(results: dict, model_name: str, fs: FactSet, out_dir: Path) -> str:
    n_pass = sum(r["pass"] for r in results.values())
    stamp = datetime.date.today().isoformat()
    (out_dir / "check.json").write_text(json.dumps(
        {"model": model_name, "date": stamp, "n_facts": len(results), "n_pass": n_pass,
         "facts": results}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [f"# Built-in facts checked against {model_name}", "",
             f"Written by `python scripts/check_facts.py` on {stamp}. A fact **passes** when the base "
             f"model's greedy continuation of its prompt starts with the target; only passing facts are "
             f"used by the demo stream and by `--from builtin`. The other columns are informational "
             f"(base-model answers to the fact's paraphrases, its subject aliases, its reverse question "
             f"and its one-hop question).", "",
             f"**{n_pass} of {len(results)} facts pass.**", "",
             "| fact | prompt | target | greedy continuation | pass | paraphrases | aliases | reverse | one-hop |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for fid, r in results.items():
        rw = r["rewrite"]
        cont = rw["continuation"].replace("\n", "\\n").replace("|", "\\|")
        rev = ("ok" if r["reverse"]["ok"] else "no") if "reverse" in r else "-"
        oh = ("ok" if r["one_hop"]["ok"] else "no") if "one_hop" in r else "-"
        lines.append(f"| {fid} | {rw['prompt']} | {rw['target']} | `{cont.strip()}` | "
                     f"{'PASS' if r['pass'] else 'fail'} | {frac(r['paraphrases'])} | {frac(r['aliases'])} | "
                     f"{rev} | {oh} |")
    allp = [p for r in results.values() for p in r["paraphrases"]]
    alla = [a for r in results.values() for a in r["aliases"]]
    revs = [r["reverse"] for r in results.values() if "reverse" in r]
    ohs = [r["one_hop"] for r in results.values() if "one_hop" in r]
    lines += ["", f"Totals: rewrite {n_pass}/{len(results)}, paraphrases {frac(allp)}, aliases {frac(alla)}, "
                  f"reverse {frac(revs)}, one-hop {frac(ohs)}.", ""]
    text = "\n".join(lines)
    (out_dir / "CHECK.md").write_text(text, encoding="utf-8")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m", help="model registry name (default gemma-3-270m)")
    ap.add_argument("--out", default=str(ROOT / "simulator" / "facts"), help="folder for check.json and CHECK.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from simulator.models import load_model
    lm = load_model(args.model)
    lm.model.eval()
    results = check(lm.model, lm.tokenizer, getattr(lm.spec, "prompt_prefix", ""), load_facts())
    text = write_report(results, args.model, load_facts(), Path(args.out))
    print(text.split("\n\n")[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
