"""Transactions reported to the journal: start (after a pending stop), stop with its final reading, confirmation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent.core import events as ev
from agent.errors import DiskFull
from agent.metering import SignedValue
from agent.ports import SampleTrigger, TxStarted, TxStopped
from drivers.errors import DriverError

if TYPE_CHECKING:
    pass

from agent.runtime.authorization import AuthorizationMixin
from agent.runtime.base import (
    OPEN_RAMP_TIMEOUT_S,
    STOP_HOLD_TIMEOUT_S,
    STOP_METER_SETTLE_S,
    _Barrier,
)
from agent.runtime.signing import SigningMixin

LOGGER = logging.getLogger(__name__)


class TransactionsMixin(SigningMixin, AuthorizationMixin):
    """Recording starts and stops through the journal, and their confirmation."""

    def _reserve_tx_id(self) -> int:
        try:
            return self.store.reserve_tx_id(self.now(), time.monotonic())
        except DiskFull as err:
            self._disk_full(err)  # the core refuses this start, and no other until space returns
            raise

    def _on_tx_started(self, out: ev.TransactionStarted) -> None:
        if self.signer(out.connector_id) is not None:
            self._start_signed(out)  # the meter begins its legal transaction first (agent/runtime/signing.py)
            return
        pending = self.connectors[out.connector_id].stop_recorded
        if pending is not None and not pending.done():
            # the previous session's StopTransaction is not queued yet: this start goes behind it, so the
            # back office sees them in order and one meter reading closes one session and opens the next
            self._spawn(self._start_after_stop(out, pending), f"start-{out.local_tx_id}")
            return
        self._record_start(out, out.meter_start_wh)

    async def _meter_start_after(self, out: ev.TransactionStarted, pending: asyncio.Future[None]) -> float:
        """meterStart of a start that waited for the previous session's stop to be recorded (bounded)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pending), STOP_HOLD_TIMEOUT_S)
        reading = self.connectors[out.connector_id].reading
        # the contactor stayed open between the two (the actuator held it): the register did not move
        return reading.energy_import_wh if reading is not None else out.meter_start_wh

    async def _start_after_stop(self, out: ev.TransactionStarted, pending: asyncio.Future[None]) -> None:
        meter_start = await self._meter_start_after(out, pending)
        try:
            self._record_start(out, meter_start)
        except Exception:
            LOGGER.exception("transaction %d could not be recorded", out.local_tx_id)
            self._start_failed(out)

    def _record_start(self, out: ev.TransactionStarted, meter_start_wh: float, *, signed: SignedValue | None = None,
                      at: float | None = None) -> None:
        if not self.flush_deferred():
            # the disk is full: no energy without a durable start (the records waiting in memory go first)
            raise DiskFull(str(self.store.path), f"{len(self._deferred)} records wait in memory")
        at = out.timestamp if at is None else at
        begin = replace(self.sample_of(out.connector_id, meter_start_wh), signed=signed)
        self.journal.started(TxStarted(out.local_tx_id, out.connector_id, out.id_tag, meter_start_wh,
                                       at, out.reservation_id, begin, signed), self.stamp())
        self.queue_sample(out.connector_id, out.local_tx_id, begin, SampleTrigger.BEGIN, at)
        interval = self.settings.sample_interval_s
        state = self.connectors[out.connector_id]
        state.next_sample_mono = time.monotonic() + interval if interval > 0 else None
        ended = self.settings.ended_sample_interval_s
        state.next_end_sample_mono = time.monotonic() + ended if ended else None
        self._outbox_changed()

    def _start_failed(self, out: ev.TransactionStarted) -> None:
        """A start that cannot be recorded must not deliver energy: a stopping fault opens the contactor."""
        self._unrecorded_starts.add(out.connector_id)
        self._unrecorded_tx.add(out.local_tx_id)  # its stop must not reach the back office either
        self.feed(ev.FaultRaised(out.connector_id, "state_database", "storage_failure", True, ev.DeviceRole.OTHER,
                                 "transaction could not be recorded"))

    def _never_recorded(self, out: ev.TransactionStopped) -> bool:
        """True (and forgotten) for a transaction whose start was never recorded (nor sent): a stop would name a
        transaction that does not exist for the back office; the contactor was opened by the core's own outputs."""
        if out.local_tx_id not in self._unrecorded_tx:
            return False
        self._unrecorded_tx.discard(out.local_tx_id)
        LOGGER.warning("transaction %d was never recorded: no stop is sent for it", out.local_tx_id)
        return True

    def _decide_stop(self, out: ev.TransactionStopped) -> None:
        """The decision (reason, time) on disk before anything else: a power cut in the seconds until meterStop is
        read must not turn this stop into a PowerLoss at boot. A failure is logged; the stop still goes on."""
        try:
            self._durable(f"stop decision of transaction {out.local_tx_id}",
                          functools.partial(self.store.decide_stop, out.local_tx_id, out.reason.value,
                                            out.timestamp))
        except Exception as err:
            LOGGER.error("transaction %d: stop decision not persisted: %s", out.local_tx_id, err)

    def _on_tx_stopped(self, out: ev.TransactionStopped) -> None:
        if self._never_recorded(out):
            return
        self._decide_stop(out)
        # meterStop must be the register once the power path is open (a DC controller ramps down first):
        # wait for the connector's actuator to finish opening, then read the meter once more.
        loop = asyncio.get_running_loop()
        barrier: asyncio.Future[None] = loop.create_future()
        recorded: asyncio.Future[None] = loop.create_future()
        state = self.connectors[out.connector_id]
        state.actuator.put_nowait(_Barrier(barrier, recorded))
        state.next_sample_mono = None
        state.next_end_sample_mono = None
        state.stop_recorded = recorded
        task = self._spawn(self._finish_stop(out, barrier), f"stop-{out.local_tx_id}")
        # whatever happens in the task (even an error), the connector is released and a waiting start goes on
        def release(_: asyncio.Task[Any]) -> None:
            if not recorded.done():
                recorded.set_result(None)

        task.add_done_callback(release)

    async def _finish_stop(self, out: ev.TransactionStopped, opened: asyncio.Future[None]) -> None:
        if out.local_tx_id in self._signed_starts:
            await self._wait_signed_start(out.local_tx_id)
            if self._never_recorded(out):
                return
            self._decide_stop(out)  # its start was recorded only now: the stop decision could not be before
        meter_stop = out.meter_stop_wh
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(opened, OPEN_RAMP_TIMEOUT_S + 3.0)
            await asyncio.sleep(STOP_METER_SETTLE_S)
            try:
                reading = await self.hw.read_meter_now(out.connector_id)
                if reading.energy_import_wh < out.meter_stop_wh:
                    # a re-baselined (replaced) meter: its register says nothing about this transaction
                    LOGGER.warning("transaction %d: final reading %.1f Wh is below the last accepted %.1f Wh; "
                                   "meterStop from the last accepted", out.local_tx_id, reading.energy_import_wh,
                                   out.meter_stop_wh)
                else:
                    meter_stop = reading.energy_import_wh
                    self.connectors[out.connector_id].reading = reading
            except DriverError as err:
                LOGGER.warning("final meter read for transaction %d failed (%s); meterStop from the last "
                               "sample", out.local_tx_id, err)
        # the power path is open: the meter's legal transaction ends now, its data set stored before the stop
        signed = await self._end_legal(out.local_tx_id)
        if signed is not None and signed.end_wh is not None:
            meter_stop = signed.end_wh  # the reading the meter signed is the one the bill ends at
        end = self.sample_of(out.connector_id, meter_stop)
        # the id reported with the stop is the one that asked for it (a token of the same group, a master pass)
        stopped = TxStopped(out.local_tx_id, out.connector_id, meter_stop, out.timestamp, out.reason,
                            out.stopped_by or out.id_tag, end, signed)
        self._durable(f"stop of transaction {out.local_tx_id}",
                      functools.partial(self.journal.stopped, stopped, self.stamp()))
        self._outbox_changed()

    def transaction_confirmed(self, tx_local_id: int, transaction_id: int, auth: ev.AuthResult) -> None:
        """The back office accepted a transaction's start: its id for the transaction, and what it says of the
        id that started it (called by the connection after the journal committed the answer)."""
        row = self.store.transaction(tx_local_id)
        if row is not None:
            self._check_list_conflict(row.connector_id, row.id_tag, auth.status)
            self.remember_authorization(replace(auth, id_tag=row.id_tag))
        self.feed(ev.TransactionConfirmed(tx_local_id, transaction_id, auth.status, auth.parent_id_tag))

    def transactions_open(self) -> bool:
        """True while a transaction runs or its stop is not yet recorded (its meter read still pending)."""
        return any(row.connector_id for row in self.store.unfinished_transactions())

    async def settle(self, timeout_s: float, *, drain: bool = True) -> None:
        """Before a restart: wait until every stop is recorded and, if drain, the outbox reached the back office.

        Bounded: a restart must happen even offline (the queue survives it).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (
                self.transactions_open() or (drain and self.link_session is not None and self.store.pending_count())):
            await asyncio.sleep(0.1)
