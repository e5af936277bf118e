"""The sweep's progress display: one bar over the cells, one bar per running cell over its steps,
and one line per cell as it ends.

It reads the steps from the ledger (each committed step raises the run's step count), the same
way for cells in this process, in worker processes and in Ray tasks on other machines: the ledger
is what every worker writes, so nothing else needs to travel back.
"""
from __future__ import annotations

import re
import sys
import time

from tqdm import tqdm

SYMBOL = {"done": "✓", "resumed": "↻", "skipped": "·", "busy": "…", "failed": "✗"}
MIN_POLL_S = 0.25
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")    # never print a terminal control character


def printable(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SweepDisplay:
    def __init__(self, name: str, planned, *, enabled: bool = True, file=None):
        self.file = file or sys.stderr
        self.enabled = enabled
        self.total_steps = {p.cell.key: len(p.cell.stream.steps) for p in planned}
        self.bar = tqdm(total=len(planned), desc=f"sweep {name}", unit="cell", file=self.file,
                        disable=not enabled, dynamic_ncols=True, position=0)
        self.slots: dict[str, tqdm] = {}
        self.free: list[tqdm] = []
        self.labels = {p.cell.key: p.cell.label for p in planned}
        self.counts: dict[str, int] = {}
        self.seen: set[str] = set()
        self._last_poll = 0.0

    def started(self, p) -> None:
        if not self.enabled:
            return
        total = self.total_steps[p.cell.key]
        bar = self.free.pop() if self.free else None
        if bar is None:
            bar = tqdm(total=total, file=self.file, unit="step", dynamic_ncols=True, leave=False,
                       position=len(self.slots) + 1)
        bar.reset(total=total)
        bar.set_description_str(f"  {p.cell.label}")
        bar.n = p.steps_done
        bar.set_postfix_str("resuming" if p.state == "resume" else "loading, statistics, reference probes")
        bar.refresh()
        self.slots[p.cell.key] = bar

    def poll(self, ledger, sweep_id: int) -> None:
        """Steps of the running cells, from the ledger (at most every MIN_POLL_S)."""
        if not self.enabled or not self.slots or time.monotonic() - self._last_poll < MIN_POLL_S:
            return
        self._last_poll = time.monotonic()
        runs = ledger.sweep_cells(sweep_id)
        for key, bar in self.slots.items():
            r = runs.get(key)
            if r is not None and (r.steps != bar.n or key not in self.seen):
                self.seen.add(key)            # its run exists: the model, statistics and reference are ready
                bar.n = r.steps
                bar.set_postfix_str(f"run {r.run_id}")
                bar.refresh()

    def finished(self, o) -> None:
        self.counts[o.outcome] = self.counts.get(o.outcome, 0) + 1
        bar = self.slots.pop(o.key, None)
        if bar is not None:
            bar.set_postfix_str("")
            bar.reset()
            bar.set_description_str("  (free)")
            self.free.append(bar)
        run = f"run {o.run_id}" if o.run_id is not None else "no run"
        line = (f"{SYMBOL.get(o.outcome, '?')} {printable(o.label)}: {o.outcome}, {run}, {o.steps} steps"
                + (f", {o.wall_s:.1f} s" if o.wall_s else "")
                + (f" — {printable(o.error)}" if o.error else ""))
        tqdm.write(line, file=self.file)
        self.bar.update(1)
        self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))

    def close(self) -> None:
        for bar in list(self.slots.values()) + self.free:
            bar.close()
        self.bar.close()
