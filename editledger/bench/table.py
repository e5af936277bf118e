"""The bench's markdown: the machine, then one table per benchmark (median, min, max, n, goal)."""
from __future__ import annotations


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _goal(f: dict) -> str:
    if not f.get("goal"):
        return ""
    met = f["goal_met"]
    op, x = f["goal"].split()[:2]
    if met:
        return f"{f['goal']} {f['unit']}: met"
    by = f["median"] / float(x) if op == "<=" else float(x) / max(f["median"], 1e-12)
    return f"{f['goal']} {f['unit']}: **missed** ({by:.1f}x over)"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"editledger bench{' --quick' if result['quick'] else ''}, {m['date']}: {m['cores']} cores "
             f"({m['cpu_model']}), {m.get('memory_gib')} GiB, torch {m['torch']} with {m['torch_threads']} threads, "
             f"wait policy {m['wait_policy']}{'' if m['wait_policy_in_force'] else ' (not in force)'}, "
             f"load average {m['load_average_1m']} at the start. Medians over n runs after a warm-up, min and max beside.",
             ""]
    for s in result["sections"]:
        lines.append(f"### {s['title']}")
        lines.append("")
        if s.get("error"):
            lines.append(f"failed: {s['error']}")
            lines.append("")
            continue
        lines.append("| figure | median | min | max | n | goal | peak RSS |")
        lines.append("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
        for i, f in enumerate(s["figures"]):
            unit = f["unit"]
            rss = f"{s['peak_rss_mb']:,.0f} MB" if i == 0 and s.get("peak_rss_mb") else ""
            lines.append(f"| {f['name']}{' (' + f['note'] + ')' if f.get('note') else ''} | {_num(f['median'])} {unit} | "
                         f"{_num(f['min'])} | {_num(f['max'])} | {f['n']} | {_goal(f)} | {rss} |")
        failed = s.get("info", {}).get("failed")
        if failed:
            lines.append("")
            lines.extend(f"- {k} failed: {v}" for k, v in failed.items())
        lines.append("")
    return "\n".join(lines)
