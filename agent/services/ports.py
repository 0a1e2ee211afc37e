"""The ports the daemon gives the services (and the security manager): plain callables, typed here once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]  # (action, payload): sent when online, else dropped


class BundleWriter(Protocol):
    """Writes the diagnostics archive into dest_dir (with these log lines, in the time window) and returns it."""

    def __call__(self, dest_dir: Path, log_lines: list[str], *, start: float | None = None,
                 stop: float | None = None) -> Path: ...
