"""Records committed now, or kept in memory in order while the disk is full."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.clock import iso
from agent.core import events as ev
from agent.errors import DiskFull
from agent.security.events import SecurityEventType

if TYPE_CHECKING:
    pass

from agent.runtime.base import (
    DEFERRED_MAX,
    DEFERRED_RETRIES,
    _Deferred,
)
from agent.runtime.clock import ClockMixin

LOGGER = logging.getLogger(__name__)


class DurableWritesMixin(ClockMixin):
    """Store writes that survive a full disk (kept in memory, in order, until space returns)."""

    def _durable(self, what: str, write: Callable[[], Any], *, thinnable: bool = False) -> bool:
        """Commit a record now, or, while the disk is full, keep it in memory (in order) until space returns.

        True when it is on disk. Safety decisions never wait for this: they were executed before.
        """
        if not self._deferred:
            try:
                write()
                return True
            except DiskFull as err:
                self._disk_full(err)
        if len(self._deferred) >= DEFERRED_MAX:
            victim = next((d for d in self._deferred if d.thinnable), None)
            if victim is None and thinnable:
                self.deferred_dropped += 1
                return False
            if victim is not None:
                self._deferred.remove(victim)
                self.deferred_dropped += 1
        self._deferred.append(_Deferred(what, write, thinnable))
        return False

    def _disk_full(self, err: DiskFull) -> None:
        self.core.storage_ok = False  # no new session without a durable start record
        if self.disk_full_since is None:
            self.disk_full_since = self.now()
            LOGGER.error("disk full: records are kept in memory (at most %d) until space returns: %s",
                         DEFERRED_MAX, err)

    def flush_deferred(self) -> bool:
        """Write what waits in memory, oldest first; True when nothing waits any more."""
        while self._deferred:
            item = self._deferred[0]
            try:
                item.write()
            except DiskFull:
                return False
            except Exception:
                item.failures += 1
                if not item.thinnable and item.failures < DEFERRED_RETRIES:
                    LOGGER.exception("deferred %s not written yet (attempt %d); retried at the next poll",
                                     item.what, item.failures)
                    return False
                # a sample, or a record that keeps failing, must not block the others for ever
                LOGGER.exception("deferred %s could not be written; dropped", item.what)
            self._deferred.popleft()
        if self.disk_full_since is not None:
            since, self.disk_full_since = self.disk_full_since, None
            dropped, self.deferred_dropped = self.deferred_dropped, 0
            note = (f"state disk was full from {iso(since)} to {iso(self.now())}; records kept in memory "
                    f"were written, {dropped} intermediate samples dropped")
            LOGGER.warning("%s", note)
            self.storage_note = note
            self.core.storage_ok = True
            for connector_id in sorted(self._unrecorded_starts):
                self.feed(ev.FaultCleared(connector_id, "state_database"))  # starts may be recorded again
            self._unrecorded_starts.clear()
            self.feed(ev.Tick())
            try:
                self.security_manager().event(SecurityEventType.MEMORY_EXHAUSTION, note)
            except Exception as err:
                LOGGER.error("MemoryExhaustion event not recorded: %s", err)
            self._outbox_changed()
        return True
