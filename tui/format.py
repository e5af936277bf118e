"""Small, pure formatting helpers shared by the screens (tested directly)."""
from __future__ import annotations

import math
from typing import Sequence

from rich.text import Text

SPARK_CHARS = "▁▂▃▄▅▆▇█"

STATUS_STYLES = {"running": "bold cyan", "done": "green", "failed": "bold red",
                 "interrupted": "yellow", "stopped": "magenta"}
KIND_STYLES = {"base": "dim", "edit": "", "revert": "bold magenta", "reset": "bold yellow",
               "branch": "bold cyan"}


def num(value: float | None, digits: int = 3) -> str:
    """A metric value in at most ~7 cells: 0.912, 12.4, 1.2e+04; "–" for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    a = abs(value)
    if a != 0 and (a >= 1e5 or a < 10 ** -digits):
        return f"{value:.1e}"
    if a >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 3) -> str:
    """A change with its sign: +0.012, −1.5; "" for missing, "0" for exactly zero."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if value == 0:
        return "0"
    return ("+" if value > 0 else "−") + num(abs(value), digits)


def change_text(value: float | None, higher_is_better: bool | None, digits: int = 3) -> Text:
    """A signed change coloured green when it is an improvement and red when a degradation."""
    s = signed(value, digits)
    if not s or value == 0 or higher_is_better is None:
        return Text(s)
    good = (value > 0) == higher_is_better
    return Text(s, style="green" if good else "red")


def nbytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def sparkline(values: Sequence[float], width: int = 12, min_span: float = 0.1) -> str:
    """A unicode sparkline of ``values`` in ``width`` cells (the last values when there are more
    points than cells, averaged per cell). The scale spans the series' min..max but at least
    ``min_span`` × its largest magnitude, centred on the data: a 1% wobble of perplexity stays a
    nearly flat line instead of filling the height."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return ""
    if len(vals) > width:   # bucket means: every cell covers the same number of points (±1)
        n = len(vals)
        vals = [sum(vals[i * n // width:(i + 1) * n // width]) / len(vals[i * n // width:(i + 1) * n // width])
                for i in range(width)]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return SPARK_CHARS[len(SPARK_CHARS) // 2] * len(vals)
    span = max(hi - lo, min_span * max(abs(lo), abs(hi)))
    mid = (lo + hi) / 2
    lo = mid - span / 2
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[min(top, max(0, round((v - lo) / span * top)))] for v in vals)


def edit_label(subject: str, old: str, new: str, n_requests: int = 1) -> str:
    """'Eiffel Tower: Paris → Rome' (+k more for a batch)."""
    if not subject:
        return ""
    s = f"{subject}: {old.strip() or '?'} → {new.strip()}"
    if n_requests > 1:
        s += f"  (+{n_requests - 1} more)"
    return s


def styled(value: str, styles: dict[str, str]) -> Text:
    return Text(value, style=styles.get(value, ""))


def ranges(nums: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'"""
    nums = sorted(nums)
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)
