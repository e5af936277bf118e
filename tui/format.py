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


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """A unicode sparkline of ``values`` in ``width`` cells (the last values when there are more
    points than cells, averaged per cell), scaled to the series' own min..max."""
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
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round((v - lo) / (hi - lo) * top)] for v in vals)


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


def metric_name(m: tuple[str, str]) -> str:
    return f"{m[0]}/{m[1]}"


# Direction of the headline metrics, for colouring changes. Unknown metrics stay uncoloured.
HIGHER_IS_BETTER = {
    "efficacy_top1": True, "efficacy": True, "es": True, "ps": True, "ns": True, "accuracy": True,
    "acc": True, "em": True, "exact_match": True, "f1": True, "rouge": True, "rouge_l": True,
    "ppl": False, "perplexity": False, "nkl": False, "kl": False, "loss": False,
}


def higher_is_better(metric: str) -> bool | None:
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    for key, v in HIGHER_IS_BETTER.items():
        if metric.startswith(key):
            return v
    return None
