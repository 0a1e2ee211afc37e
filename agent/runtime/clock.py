"""Wall time: trusted from NTP or the back office, and the records of this boot corrected when it becomes trusted."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from agent.clock import parse_iso, system_clock_synchronized

if TYPE_CHECKING:
    pass

from agent.runtime.base import (
    CLOCK_CHECK_S,
    CLOCK_TOLERANCE_S,
    AgentBase,
)

LOGGER = logging.getLogger(__name__)


class ClockMixin(AgentBase):
    """The corrected wall clock and when to trust it."""

    def now(self) -> float:
        """Wall time corrected by the back office's clock."""
        return time.time() + self.clock_offset_s

    def set_clock(self, current_time: str) -> None:
        """The back office's currentTime: trusted unless NTP already is; corrects this boot's records once."""
        remote = parse_iso(current_time)
        if remote is None or self.clock_source == "ntp":
            return  # a synchronized system clock wins over the back office's
        offset = remote - time.time()
        if not self.clock_trusted:
            self._trust_clock("back office", offset)
        if abs(offset - self.clock_offset_s) > CLOCK_TOLERANCE_S:
            moved = offset - self.clock_offset_s
            self.clock_offset_s = offset if abs(offset) > CLOCK_TOLERANCE_S else 0.0
            self.security_manager().clock_set(moved)

    def _trust_clock(self, source: str, shift_s: float) -> None:
        """From now on wall time is right; shift what this boot recorded while it was not."""
        changed = self.store.correct_untrusted_times(self.store.boot_id,
                                                     shift_s if abs(shift_s) > CLOCK_TOLERANCE_S else 0.0)
        if abs(shift_s) > CLOCK_TOLERANCE_S:
            LOGGER.warning("clock set by %s: it was off by %.1f s; corrected %d queued records", source, shift_s,
                           changed)
        self.clock_trusted = True
        self.clock_source = "ntp" if source == "NTP" else "backoffice"

    def check_system_clock(self) -> None:
        """Once NTP has synchronized the clock, trust it and correct this boot's records by the step it made."""
        if self.clock_source == "ntp" or time.monotonic() < self._next_clock_check:
            return
        self._next_clock_check = time.monotonic() + CLOCK_CHECK_S
        if system_clock_synchronized():
            step = (time.time() - time.monotonic()) - self._wall_minus_mono
            if not self.clock_trusted:
                self._trust_clock("NTP", step)
                if abs(step) > CLOCK_TOLERANCE_S:
                    self.security_manager().clock_set(step)
            self.clock_source = "ntp"
            self.clock_offset_s = 0.0
