"""The composite schedule's periods in the words both OCPP versions use (whole seconds from its start)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.core.limits import CompositePeriod


def schedule_periods(periods: Iterable[CompositePeriod], start: int) -> list[dict[str, Any]]:
    """chargingSchedulePeriod items (the library's snake_case) of a composite schedule that starts at `start`;
    never empty: no limit at all is one period of 0."""
    out: list[dict[str, Any]] = []
    for p in periods:
        # whole seconds from the schedule's start (now, truncated); the first period always starts at 0
        offset = 0 if not out else max(0, int(p.start - start))
        if out and offset <= out[-1]["start_period"]:
            out.pop()  # two boundaries within one second: the later one wins
            offset = 0 if not out else offset
        out.append({"start_period": offset, "limit": round(p.limit, 1),
                    **({"number_phases": p.number_phases} if p.number_phases else {})})
    return out or [{"start_period": 0, "limit": 0.0}]
