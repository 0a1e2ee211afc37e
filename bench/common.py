"""Shared pieces of the benchmark: the result row, /proc readings, percentiles and the printed table."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Figure:
    """One row of bench/results.json; ratio is value / baseline (None when it means nothing)."""

    figure: str
    value: float | None
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


class CpuWindow:
    """CPU time of several processes over the same wall-clock window."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._start_wall = time.monotonic()
        self._start = {pid: cpu_s(pid) for pid in pids}

    def percent(self) -> dict[int, float]:
        """Percent of one core used by each process since the window opened."""
        wall = time.monotonic() - self._start_wall
        return {pid: 100.0 * (cpu_s(pid) - self._start[pid]) / wall for pid in self.pids}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 30 samples is the largest one, as it should be)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[Figure]) -> str:
    """A plain-text table of the figures."""
    header = ("figure", "value", "unit", "baseline", "ratio", "target", "met")
    cells = [header] + [
        (r.figure, _fmt(r.value), r.unit, _fmt(r.baseline), _fmt(r.ratio), r.target,
         "-" if r.met is None else ("yes" if r.met else "NO"))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i in (0, 2, 5) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_results(path: Path, rows: list[Figure]) -> None:
    """bench/results.json: a list of {figure, value, unit, baseline, ratio, target, met, note}."""
    path.write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
