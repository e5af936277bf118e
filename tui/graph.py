"""The version DAG of a run drawn like `git log --graph`, one text cell string per row."""
from __future__ import annotations

from typing import Sequence

from tui.viewmodels import TimelineItem


def mark_head_line(items: Sequence[TimelineItem]) -> None:
    """Set ``on_head`` to whether each version is the head or one of its ancestors."""
    by_id = {it.version_id: it for it in items}
    line: set[int] = set()
    cur = next((it for it in items if it.is_head), None)
    while cur is not None and cur.version_id not in line:
        line.add(cur.version_id)
        cur = by_id.get(cur.parent_id) if cur.parent_id is not None else None
    if not line:        # the head is outside this run's rows (a branch run's start): keep all
        return
    for it in items:
        it.on_head = it.version_id in line


GLYPHS = {"edit": "●", "base": "○"}   # every other kind (revert, reset, branch) is ◆; the head is ◉


def graph_lanes(items: Sequence[TimelineItem], max_lanes: int = 6) -> None:
    """Fill ``item.graph`` with a `git log --graph`-like drawing of the version DAG. Items come
    parent-before-child (by step, so a reset or revert made later sits far below the version it
    goes back to). A version's first child continues its lane; every further child gets a lane of
    its own, opened at the parent's row (``●─╮``, ``●─┬─╮``) and drawn down (``│``) to the child's row, so
    that a reset or revert is linked to the version it goes back to. A lane ends at its last
    version without children."""
    children: dict[int, list[int]] = {}
    for it in items:
        if it.parent_id is not None:
            children.setdefault(it.parent_id, []).append(it.version_id)
    waiting: list[int | None] = []        # per lane: the version it leads down to (None: free)

    def free_lane() -> int:
        if None in waiting:
            return waiting.index(None)
        waiting.append(None)
        return len(waiting) - 1

    for it in items:
        lane = waiting.index(it.version_id) if it.version_id in waiting else free_lane()
        waiting[lane] = None
        kids = children.get(it.version_id, [])
        opened: list[int] = []
        if kids:
            waiting[lane] = kids[0]
            for kid in kids[1:]:
                j = free_lane()
                waiting[j] = kid
                opened.append(j)
        glyph = "◉" if it.is_head else GLYPHS.get(it.kind, "◆")
        if len(waiting) == 1 and not opened:      # fast path: a straight line (most rows of a long run)
            it.graph = glyph
        else:
            right = max(opened, default=lane)
            cells = []
            for j, target in enumerate(waiting):
                if j == lane:
                    cells.append(glyph)
                elif j in opened:
                    cells.append("╮" if j == right else "┬")
                elif lane < j < right:
                    cells.append("┼" if target is not None else "─")
                else:
                    cells.append("│" if target is not None else " ")
            out = []
            for j, c in enumerate(cells):
                out.append(c)
                if j < len(cells) - 1:
                    out.append("─" if lane <= j < right else " ")
            graph = "".join(out).rstrip()
            if len(graph) > 2 * max_lanes - 1:   # very bushy DAGs: keep the rightmost lanes
                graph = "…" + graph[-(2 * max_lanes - 2):]
            it.graph = graph
        while waiting and waiting[-1] is None:
            waiting.pop()
