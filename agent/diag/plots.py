"""Terminal charts of evsectl, drawn with plotext: the energy per day of `evsectl report` and the power curve
of `evsectl sessions --plot N`.

Only evsectl imports this module, and only when it draws (tests/test_layering.py): the daemon never loads
plotext. Output without a terminal (a pipe, a file, a test) has a fixed size and no colour codes, so it can be
compared and pasted; on a terminal the chart takes the terminal's width and plotext's colours (unless
NO_COLOR is set).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import TextIO

import plotext

PIPE_WIDTH = 80  # characters, when the output is not a terminal
CURVE_HEIGHT = 20  # lines of the power curve
MAX_WIDTH = 200  # a very wide terminal gets no wider chart than this


def _terminal(stream: TextIO | None) -> bool:
    out = sys.stdout if stream is None else stream
    return bool(getattr(out, "isatty", lambda: False)())


def _start(width: int, height: int) -> None:
    plotext.clear_figure()
    plotext.limitsize(False, False)  # plotext would otherwise shrink the chart to the terminal it guesses
    plotext.plotsize(width, height)


def _finish(colour: bool) -> str:
    text = str(plotext.build())
    # plotext ends every line with a reset code even in its colourless theme; strip them for a pipe
    return (text if colour else str(plotext.uncolorize(text))).rstrip("\n")


def chart_size(stream: TextIO | None = None) -> tuple[int, bool]:
    """The width to draw at and whether to use colour: the terminal's, or PIPE_WIDTH without colour."""
    if not _terminal(stream):
        return PIPE_WIDTH, False
    width = min(MAX_WIDTH, max(40, shutil.get_terminal_size((PIPE_WIDTH, 24)).columns))
    return width, "NO_COLOR" not in os.environ


def energy_per_day(days: Sequence[str], kwh: Sequence[float], *, width: int = PIPE_WIDTH,
                   colour: bool = False) -> str:
    """Horizontal bars, one line per day (oldest at the top), the energy of every port in kWh; each bar is
    labelled with its day and its exact figure."""
    if not days:
        return "energy per day (kWh, all ports): no days recorded"
    _start(width, len(days) + 5)  # one line per bar; title, frame, ticks and label take five
    if not colour:
        plotext.theme("clear")
    labels = [f"{day} {value:8.2f}" for day, value in zip(days, kwh, strict=True)]
    # plotext draws the first bar at the bottom: reversed, the oldest day is on top as in a calendar
    plotext.bar(list(reversed(labels)), [max(0.0, v) for v in reversed(kwh)], orientation="horizontal",
                width=0.3)
    peak = max(kwh)
    plotext.xlim(0.0, peak if peak > 0 else 1.0)  # a day without energy: an empty axis from 0, not -1..1
    plotext.title("energy per day (kWh, all ports)")
    plotext.xlabel("kWh")
    return _finish(colour)


def power_curve(minutes: Sequence[float], kw: Sequence[float], *, width: int = PIPE_WIDTH, colour: bool = False,
                title: str = "") -> str:
    """A line of kW over the minutes since the session started."""
    if not minutes:
        return f"{title}: no power samples kept" if title else "no power samples kept"
    _start(width, CURVE_HEIGHT)
    if not colour:
        plotext.theme("clear")
    plotext.plot(list(minutes), list(kw), marker="braille")
    # from zero: a curve scaled to its own small ripple would look like a ramp from nothing to full power
    low, high = min(0.0, *kw), max(0.0, *kw)
    plotext.ylim(low, high * 1.05 if high > 0 else 1.0)
    plotext.xlim(0.0, max(max(minutes), 1.0))  # from the session's start (a point alone: its first minute)
    if title:
        plotext.title(title)
    plotext.xlabel("minutes since the start")
    plotext.ylabel("kW")
    return _finish(colour)
