"""The one line at the top of the detail screen: did this version's edit take and what did it
cost; for a reset, where the head went; for a revert, whether it repaired anything (once it has
been measured). Also the word the Probes tab shows when a version has no probes of its own."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ledger import history
from ledger.errors import InputError
from tui import format as F
from tui import harm
from tui.metrics import Metric, higher_is_better, short_metric
from tui.viewmodels import DetailView

if TYPE_CHECKING:
    from tui.data import LedgerData

REVERT_METRICS: list[Metric] = [("retention", "efficacy_top1"), ("perplexity", "ppl"), ("neighborhood", "ns"),
                                ("rewrite", "efficacy_top1")]


def _p(x) -> str:
    return "–" if x is None or x != x else f"{x:.2f}"


def _rewrite_detail(view: DetailView) -> list[dict]:
    p = next((p for p in view.probes if (p.suite, p.metric) == ("rewrite", "efficacy_top1")), None)
    d = p.details.get("none") if p is not None else None
    return d if isinstance(d, list) else []


def _edit(data: "LedgerData", view: DetailView) -> Text:
    values = {(p.suite, p.metric): p for p in view.probes}
    eff = values.get(("rewrite", "efficacy_top1"))
    line = Text()
    if eff is None or eff.value is None:
        line.append("edit · not measured", style="dim")
    elif eff.value >= harm.FULL:
        line.append("✓ edit took", style="bold green")
    else:
        line.append("✗ edit failed", style="bold red")
        rows = _rewrite_detail(view)
        if rows:
            r = rows[0]
            line.append(f": P(new{r.get('target', '')!s}) {_p(r.get('p'))}"
                        + (f" vs P(old{r.get('alt')}) {_p(r.get('p_alt'))}" if r.get("alt") else ""))
        else:
            line.append(f": efficacy {F.num(eff.value, 2)}")
    para = values.get(("paraphrase", "generalization_top1"))
    if para is not None and para.value is not None:
        line.append(f" · paraphrases {round(para.value * para.count)}/{para.count}")
    ns = values.get(("neighborhood", "ns"))
    if ns is not None:
        change = ns.vs_previous if ns.vs_previous is not None else (
            ns.vs_base if ns.previous_is_base else None)
        if change is not None:
            line.append(" · neighbourhood ")
            line.append_text(F.change_text(change, True))
            line.append(" vs before")
    lost = data.forgotten_at(view.version_id)
    if lost and view.run_id is not None:
        facts = data._facts([view.version_id] + [_vid(data, view.run_id, j) for j in lost])
        here = facts.get(view.version_id, set())
        f = harm.split_superseded(lost, {j: facts.get(_vid(data, view.run_id, j), set()) for j in lost}, here)
        if f.lost:
            line.append(f" · forgot step{'s' if len(f.lost) > 1 else ''} {', '.join(map(str, f.lost))}", style="bold red")
        if f.superseded:
            line.append(f" · supersedes step {', '.join(map(str, f.superseded))}", style="dim")
    if view.findings:
        line.append(f" · ⚑ {len(view.findings)} audit finding{'s' if len(view.findings) > 1 else ''}", style="bold red")
    return line


def _vid(data: "LedgerData", run_id: int, step: int) -> int:
    try:
        return history.version_at(data.ledger, run_id, step).id
    except InputError:
        return -1


def _revert(data: "LedgerData", view: DetailView) -> Text:
    k = view.diagnostics.get("reverted_step")
    later = view.diagnostics.get("reapplied_steps") or []
    line = Text(f"↶ revert of step {k}", style="bold magenta")
    if later:
        line.append(f" (re-applies steps {F.ranges(later)})")
    if not view.probes:
        line.append(" · not measured yet: press p to re-probe it", style="yellow")
        return line
    try:   # the head the revert replaced: the last step it re-applies, or the reverted step itself
        replaced = history.version_at(data.ledger, view.run_id, max(later) if later else k)
    except (InputError, TypeError):
        return line
    before, after = data.values_at(replaced.id), data.values_at(view.version_id)
    better = worse = 0
    for m in REVERT_METRICS:
        if m in before and m in after and before[m] == before[m] and after[m] == after[m]:
            d = after[m] - before[m]
            up = higher_is_better(m[1])
            if abs(d) > 1e-12 and up is not None:
                good = (d > 0) == up
                better, worse = better + good, worse + (not good)
            line.append(f" · {short_metric(m)} {F.num(before[m])} → ")
            line.append_text(Text(F.num(after[m]), style="" if abs(d) <= 1e-12 or up is None
                                  else ("green" if (d > 0) == up else "red")))
    if better or worse:
        verdict = "repaired" if better and not worse else "made worse" if worse and not better else "mixed"
        line.append(f" · vs the head it replaced (v{replaced.id}): {verdict}",
                    style={"repaired": "bold green", "made worse": "bold red"}.get(verdict, "yellow"))
    return line


def outcome_line(data: "LedgerData", view: DetailView) -> Text:
    if view.kind == "edit":
        return _edit(data, view)
    if view.kind == "revert":
        return _revert(data, view)
    if view.kind == "reset":
        target = data.ledger.version(view.parent_id) if view.parent_id is not None else None
        where = f"step {target.step} (v{target.id})" if target is not None else "?"
        return Text(f"↶ reset: the head went back to {where}; the weights are v{view.parent_id}'s",
                    style="bold yellow")
    if view.kind == "base":
        return Text("○ the base model: the unedited weights", style="dim")
    return Text(f"◆ {view.kind}: {view.note}", style="bold cyan")


def probes_note(data: "LedgerData", view: DetailView) -> str:
    if view.probes_from is not None:
        v = data.ledger.version(view.probes_from)
        return (f"A reset has the weights of v{v.id} (step {v.step}): these are v{v.id}'s measurements; "
                f"'vs previous' is against v{v.id}'s parent.")
    if view.probes:
        return ""
    if view.kind == "base":
        return ("The base model has no probe rows of its own: the replay keeps its scores as the run's "
                "reference, and every step's 'vs base' column compares with them.")
    if view.kind == "revert":
        return ("A revert is recorded without measurements (making it needs no model). Press p to "
                "re-probe it, then this tab and the outcome line say whether it repaired anything.")
    if view.kind == "reset":
        return "A reset marker; its target has no probes either."
    return "This version was not probed (the run's probe schedule skipped it)."
