"""The OCPP frame log: every frame in and out, redacted, in a size-bounded file set (`ocpp-frames.log`, .1 ... .N).

One handler on the `agent.ocpp.frames` logger, built for the replay after an outage, where a frame goes out and
its answer comes in hundreds of times a second (docs/bench.md):

- the record is redacted once (`agent.redact.redact`: one linear scan finds the frames that can carry a secret,
  only those run the masking patterns) and clipped to a bounded size (`agent.redact.clip`);
- the line is formatted once, the time stamp's seconds part once per second;
- lines are written into a buffer and reach the file at most `FLUSH_S` later (the event loop flushes it; a
  full buffer, a close or a rotation flush at once), without the stat and seek per record of the standard
  library's RotatingFileHandler: the size is counted here;
- the size stays bounded as before: the file is rotated before a line would take it past `max_bytes`, and
  `backups` older files are kept.

What a SIGKILL costs: at most the last `FLUSH_S` of frames in the log (the frames themselves are in the outbox
until answered; this is a diagnostic log, not a record).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from agent.redact import REDACTED, clean

FRAMES = logging.getLogger("agent.ocpp.frames")  # every frame, for this log, `evsectl log` and the bundle
FLUSH_S = 1.0  # the longest a written line waits in memory before it reaches the file
BUFFER_BYTES = 64 * 1024  # a fuller buffer is written at once (the io layer's own threshold)


# A frame is noted when it passes (its time taken then) and handed to the handlers a moment later: right after
# the next frame is sent (flush_frames(), while the back office works on it) or by the event loop within
# HANDOFF_S. A replay's exchange then waits for no log handler; the order of the lines stays that of the frames.
HANDOFF_S = 0.001
MAX_PENDING = 256  # more noted frames than this are handed over at once (bounded memory)
_pending: list[tuple[str, str | bytes, float]] = []


def _at_exit() -> None:
    flush_frames()  # a timer of an event loop that ended never runs: the last frames still reach the log


atexit.register(_at_exit)  # before logging's own shutdown, which closes the handlers (atexit runs in reverse)


def log_frame(direction: str, frame: str | bytes) -> None:
    """Note one frame ("in" or "out") for the frame logger's handlers (see flush_frames)."""
    if not FRAMES.isEnabledFor(logging.DEBUG):
        return
    _pending.append((direction, frame, time.time()))
    if len(_pending) == 1:
        try:
            asyncio.get_running_loop().call_later(HANDOFF_S, flush_frames)
        except RuntimeError:  # no event loop (a tool, a test): at once
            flush_frames()
    elif len(_pending) >= MAX_PENDING:
        flush_frames()


def flush_frames() -> None:
    """Hand the noted frames to the frame logger's handlers, in order, each redacted and clipped once for all of
    them (the record says so: their RedactingFilter leaves it), without logging's search of the calling stack
    frame; each record keeps the time its frame passed."""
    while _pending:
        batch = _pending[:]
        del _pending[:]
        for direction, frame, at in batch:
            record = FRAMES.makeRecord(FRAMES.name, logging.DEBUG, __file__, 0, clean(f"{direction} {frame!s}"), (),
                                       None, extra={REDACTED: True})
            record.created, record.msecs = at, int((at - int(at)) * 1000) + 0.0
            FRAMES.handle(record)


class StampFormatter(logging.Formatter):
    """A logging.Formatter whose default time stamp (`2024-01-01 12:00:00,123`) is built once per second."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"


class FrameLogHandler(logging.Handler):
    """A size-rotated, buffered, redacting file handler: one per frame log (see the module docstring)."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int) -> None:
        super().__init__(logging.DEBUG)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: TextIO | None = None
        self._size = 0  # bytes in the current file, counted as written (no stat per record)
        self._stamps = StampFormatter()
        self._flush_due: float | None = None  # monotonic time by which a scheduled flush writes the buffer
        self._open()

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8", buffering=BUFFER_BYTES)  # noqa: SIM115 - kept open
        self._size = self._file.tell()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if not getattr(record, REDACTED, False):
                message = clean(message)
            self._write(f"{self._stamps.formatTime(record)} {message}\n")  # handle() holds the lock
        except Exception:
            self.handleError(record)

    def _write(self, line: str) -> None:
        size = len(line.encode()) if not line.isascii() else len(line)
        if self._size and self._size + size > self.max_bytes:
            self._rotate()
        if self._file is None:
            self._open()
        assert self._file is not None
        self._file.write(line)
        self._size += size
        now = time.monotonic()
        if self._flush_due is None:
            self._schedule_flush(now)
        elif now > self._flush_due + FLUSH_S:  # the loop that was to flush it has ended
            self.flush()

    def _schedule_flush(self, now: float) -> None:
        """Flush within FLUSH_S: on the running event loop, or at once without one (a tool, a test)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_due = now + FLUSH_S
        loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write the buffered lines to the file."""
        self.acquire()
        try:
            self._flush_due = None
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.flush()
        finally:
            self.release()

    def _rotate(self) -> None:
        """ocpp-frames.log -> .1 -> .2 ... (the oldest dropped), then a new empty file."""
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.close()
            self._file = None
        try:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            if self.backups > 0:
                # a technician may have deleted the log: nothing to keep then
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink(missing_ok=True)
        except OSError as err:
            # the file is reopened (and appended to) anyway: one failed rotation must not stop the frame log
            # or print a traceback for every frame after it
            sys.stderr.write(f"frame log {self.path}: rotation failed ({err}); appending\n")
        self._open()

    def close(self) -> None:
        self.acquire()
        try:
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.close()
                self._file = None
        finally:
            self.release()
        super().close()
