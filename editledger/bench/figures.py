"""Timing helpers shared by the benchmarks: repeated measurements (median, min, max after a warm-up),
peak resident memory per benchmark, and a description of the machine the numbers were taken on."""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Figure:
    """One measured quantity: ``value`` is the median of ``samples``; ``unit`` says what it counts."""
    name: str
    unit: str                          # "s", "ms", "x" (a ratio), "MB", "MB/s", "bytes", ...
    samples: list[float]
    goal: str | None = None            # e.g. "<= 2 s", "<= 3x": the target, when there is one
    note: str = ""                     # how it was measured, in a few words

    @property
    def value(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    def met(self) -> bool | None:
        """Whether the goal is met (None without a goal). Goals read "<= X" or ">= X"."""
        if not self.goal:
            return None
        op, x = self.goal.split()[:2]
        return self.value <= float(x) if op == "<=" else self.value >= float(x)

    def to_dict(self) -> dict:
        return {**asdict(self), "median": self.value, "min": self.lo, "max": self.hi, "n": len(self.samples),
                "goal_met": self.met()}


@dataclass
class Section:
    """The figures of one benchmark, with its peak memory and wall time, and anything worth printing."""
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    info: dict = field(default_factory=dict)      # context: sizes, counts, breakdowns (JSON-serialisable)
    peak_rss_mb: float | None = None
    wall_s: float | None = None
    error: str | None = None                      # a benchmark that failed says why; the others still run

    def add(self, *figs: Figure) -> None:
        self.figures.extend(figs)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "figures": [f.to_dict() for f in self.figures],
                "info": self.info, "peak_rss_mb": self.peak_rss_mb, "wall_s": self.wall_s, "error": self.error}


def repeat(fn: Callable[[], object], n: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``n`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# ---------------------------------------------------------------------------------------------- memory
def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (Linux: "5" to /proc/self/clear_refs); False where the
    kernel does not allow it (the peak is then the process's peak so far)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set since the last reset (VmHWM), else since the process started (ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """Cores, CPU model, memory, torch and its threads, the load when the bench started."""
    import torch  # deferred: the caller sets the thread policy before torch loads

    from simulator import threads
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), **threads.describe(),
            "memory_gib": mem, "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "load_average_1m": round(os.getloadavg()[0], 2),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}
