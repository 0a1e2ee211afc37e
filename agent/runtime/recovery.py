"""Boot recovery of the transactions the previous run left open, and a clean shutdown record."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from agent.clock import kernel_boot_id
from agent.core import events as ev
from agent.ports import TxStopped
from agent.store import PreviousRun, TransactionRow
from drivers.errors import DriverError

if TYPE_CHECKING:
    pass

from agent.runtime.base import (
    BOOT_METER_ATTEMPTS,
)
from agent.runtime.signing import SigningMixin

LOGGER = logging.getLogger(__name__)


class RecoveryMixin(SigningMixin):
    """Stopping at boot what the previous run left open; recording a clean shutdown."""

    async def recover_power_loss(self) -> None:
        """At boot: stop every transaction the previous run left open, with the reason it deserves.

        A stop decided before the process went keeps its reason and time (only meterStop is read now).
        Otherwise: the previous run stopped cleanly (SIGTERM, reset) -> Reboot; it crashed while the system
        stayed up (same kernel boot id: SIGKILL, OOM, watchdog) -> Other; the system itself booted without
        a clean shutdown (new kernel boot id) -> PowerLoss.
        """
        current_boot = kernel_boot_id()
        previous = self.store.begin_run(current_boot)
        discarded = self.store.discard_reserved()
        if discarded:
            LOGGER.info("dropped %d transaction ids reserved but never started", discarded)
        unfinished = self.store.unfinished_transactions()
        await self.recover_legal_orphans({row.tx_local_id for row in unfinished})
        for row in unfinished:
            meter_stop = row.last_energy_wh
            source = "the last persisted sample"
            if row.connector_id in self.hw.connectors:
                for attempt in range(BOOT_METER_ATTEMPTS):
                    try:
                        reading = await self.hw.read_meter_now(row.connector_id)
                        # The contactor cannot have closed since the process went: this register is exact.
                        meter_stop, source = reading.energy_import_wh, "the meter at boot"
                        break
                    except DriverError as err:
                        LOGGER.warning("boot meter read %d for transaction %d failed: %s", attempt + 1,
                                       row.tx_local_id, err)
                        await asyncio.sleep(0.5)
            if source == "the last persisted sample":
                LOGGER.warning("transaction %d: meter did not answer at boot; meterStop from %s (%.1f Wh)",
                               row.tx_local_id, source, meter_stop)
            # a signing meter's own record of the interrupted transaction, with its signed end (stored first)
            legal = self.store.signed_legal(row.tx_local_id)
            signed = None
            if legal is not None:
                try:
                    signed = self.store.signed_get(row.tx_local_id, "end") or await self._recover_legal(legal)
                except DriverError as err:
                    LOGGER.warning("transaction %d: the meter's signed record not fetched at boot: %s",
                                   row.tx_local_id, err)
                if signed is None:
                    self._report_unsigned(row.tx_local_id, row.connector_id, "no signed end from the meter at boot")
                elif signed.end_wh is not None:
                    meter_stop, source = signed.end_wh, "the meter's signed record"
            reason, stop_wall, why = self._boot_stop(row, previous, current_boot,
                                                     row.last_wall if source == "the last persisted sample"
                                                     else self.now())
            stopped = TxStopped(row.tx_local_id, row.connector_id, meter_stop, stop_wall, reason, row.id_tag,
                                signed=signed)
            self._durable(f"stop of transaction {row.tx_local_id}",
                          # the stop happened while the station was down: no back office could have seen it
                          functools.partial(self.journal.stopped, stopped, replace(self.stamp(), offline=True)))
            LOGGER.warning("transaction %d on connector %d stopped with reason %s (%s), meterStop %.1f Wh (%s)",
                           row.tx_local_id, row.connector_id, reason.value, why, meter_stop, source)
            self._outbox_changed()  # the connection may be up already (a slow meter at boot): send it now

    @staticmethod
    def _boot_stop(row: TransactionRow, previous: PreviousRun, current_boot: str,
                   fallback_wall: float) -> tuple[ev.StopReason, float, str]:
        """(reason, stop time, why) for a transaction found open at boot."""
        if row.decided_reason is not None:
            try:
                return ev.StopReason(row.decided_reason), row.decided_wall or fallback_wall, "decided before"
            except ValueError:
                LOGGER.warning("transaction %d: unknown stored stop reason %r", row.tx_local_id, row.decided_reason)
        if previous.clean_shutdown:
            return ev.StopReason.REBOOT, previous.shutdown_wall or fallback_wall, "the agent was stopped cleanly"
        if previous.kernel_boot_id and current_boot and previous.kernel_boot_id == current_boot:
            return ev.StopReason.OTHER, fallback_wall, "the agent process died while the system stayed up"
        return ev.StopReason.POWER_LOSS, fallback_wall, "the system booted without a clean shutdown"

    def shutdown_cleanly(self) -> None:
        """On a requested exit (SIGTERM, reset): running transactions stop with reason Reboot at this time."""
        now = self.now()
        if self._deferred and not self.flush_deferred():
            LOGGER.error("%d records still wait for disk space at shutdown: they are lost", len(self._deferred))
        for connector_id in self.connectors:
            session = self.core.session(connector_id)
            if session is not None:
                try:
                    self.store.decide_stop(session.local_tx_id, ev.StopReason.REBOOT.value, now)
                except Exception as err:
                    LOGGER.error("transaction %d: Reboot decision not recorded: %s", session.local_tx_id, err)
        try:
            self.store.mark_clean_shutdown(now)
        except Exception as err:
            LOGGER.error("clean shutdown not recorded: %s", err)
