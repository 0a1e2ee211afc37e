"""Every meter sample of a transaction, and every meter read outside the poll, goes through here."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from agent.metering import MeasurandSource, Sample, can_provide, next_aligned
from agent.ports import SampleTrigger, Stamp
from agent.security.events import SecurityEventType
from drivers.base import MeterReading
from drivers.errors import DriverError

if TYPE_CHECKING:
    pass

from agent.runtime.base import (
    SAMPLE_SLACK_S,
)
from agent.runtime.durability import DurableWritesMixin

LOGGER = logging.getLogger(__name__)


class MeteringMixin(DurableWritesMixin):
    """Samples and meter reads."""

    def _measurand_sources(self) -> list[MeasurandSource]:
        sources = []
        for connector_id, devices in self.hw.connectors.items():
            caps = getattr(devices.meter, "capabilities", None)
            is_dc = self.config.connector(connector_id).kind == "dc"
            sources.append(MeasurandSource(
                phases=getattr(caps, "phases", 3), export_energy=bool(getattr(caps, "export_energy", False)),
                per_phase_power=bool(getattr(caps, "per_phase_power", False)), soc=is_dc and devices.dc is not None))
        return sources

    def unprovidable(self, measurands: Sequence[str]) -> list[str]:
        """The measurands no connector's devices can provide (a list naming one would never be sent)."""
        sources = self._measurand_sources()
        return [item for item in measurands if not any(can_provide(item, src) for src in sources)]

    def stamp(self) -> Stamp:
        """The time of a record made now (offline: no accepted connection to the back office)."""
        return Stamp(self.now(), time.monotonic(), self.clock_trusted, self.link_session is None)

    def sample_of(self, connector_id: int, energy_wh: float | None = None) -> Sample:
        """The connector's last reading as a sample; energy_wh pins the register (the Begin and End samples
        carry exactly the value of meterStart and meterStop). Never invents a reading: no zero fallback."""
        state = self.connectors[connector_id]
        reading = state.reading
        if reading is None:
            known = energy_wh if energy_wh is not None else self.core.connectors[connector_id].energy_wh
            if known is None:
                raise LookupError(f"connector {connector_id} has no meter reading yet")
            reading = MeterReading(energy_import_wh=known)
        elif energy_wh is not None and reading.energy_import_wh != energy_wh:
            reading = replace(reading, energy_import_wh=energy_wh)
        offered = self.core.connectors[connector_id].limit_a if connector_id in self.core.connectors else None
        return Sample(reading, offered_a=offered, soc_pct=state.soc_pct)

    async def read_meter_now(self, connector_id: int) -> Sample | None:
        """A fresh sample of a connector (a triggered value): the meter read now; when it does not answer, the
        last reading if it is not stale, else None (never an invented value)."""
        state = self.connectors[connector_id]
        try:
            state.reading = await self.hw.read_meter_now(connector_id)
        except DriverError as err:
            LOGGER.warning("meter of connector %d not read now: %s", connector_id, err)
            if state.reading is None or state.reading.stale:
                return None
        return self.sample_of(connector_id)

    def _keep_for_end(self, tx_local_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> None:
        self._durable(f"end values of transaction {tx_local_id}", functools.partial(
            self.journal.keep_for_end, tx_local_id, sample, trigger, at, self.stamp()), thinnable=True)

    def queue_triggered(self, connector_id: int, tx_local_id: int, sample: Sample) -> None:
        """A triggered sample of a transaction: a clock-aligned instant that has passed (a slow poll has not
        taken it yet) is queued first, so the transaction's samples stay in time order."""
        now = self.now()
        self._aligned(now)
        self.queue_sample(connector_id, tx_local_id, sample, SampleTrigger.TRIGGER, now)

    def queue_sample(self, connector_id: int, tx_local_id: int, sample: Sample, trigger: SampleTrigger,
                     at: float) -> None:
        """Commit a transaction's sample to the outbox through the journal (in order with its other messages)."""
        if not self._durable(f"sample of transaction {tx_local_id}", functools.partial(
                self.journal.sample, tx_local_id, connector_id, sample, trigger, at, self.stamp()),
                thinnable=trigger is not SampleTrigger.BEGIN):
            return
        thinned = self.store.take_thinned()
        if thinned:
            stats = self.store.outbox_stats()
            self.security_manager().event(
                SecurityEventType.MEMORY_EXHAUSTION,
                f"queue at its disk cap ({stats['bytes']} of {stats['max_bytes']} bytes): {thinned} "
                "intermediate meter samples thinned")
        self._outbox_changed()

    def _sample_meters(self) -> None:
        # The pass's records (each sample, its end values, the transaction row's reading) commit one by one but
        # share one fsync, taken before this returns: before anything can be sent (docs/bench.md).
        with self.store.one_sync():
            self._sample_meters_once()
            # the operations ledger's minute commit rides on the same fsync (the Tick after the poll finds it done)
            self.operations.maybe_commit()

    def _sample_meters_once(self) -> None:
        # One instant for the whole pass, aligned first: a periodic sample stamped after an aligned instant is
        # queued after that instant's sample, so each transaction's MeterValues stay in time order.
        now = self.now()
        self._aligned(now)
        self._aligned_for_end(now)
        mono = time.monotonic()
        settings = self.settings
        stop_sampled = settings.ended_sampled_measurands
        if stop_sampled and settings.ended_sample_interval_s:
            self._sampled_for_end(now, mono)
        for connector_id, state in self.connectors.items():
            session = self.core.session(connector_id)
            if session is None or state.next_sample_mono is None or mono + SAMPLE_SLACK_S < state.next_sample_mono:
                continue
            interval = settings.sample_interval_s
            # From the due time, not from now: counting from now adds a poll period to every interval.
            due = state.next_sample_mono + interval
            state.next_sample_mono = (due if due > mono else mono + interval) if interval > 0 else None
            if state.reading is None or state.reading.stale:
                continue  # never republish an old value with a new time
            sample = self.sample_of(connector_id)
            self.queue_sample(connector_id, session.local_tx_id, sample, SampleTrigger.PERIODIC, now)
            if stop_sampled and settings.ended_sample_interval_s is None:
                self._keep_for_end(session.local_tx_id, sample, SampleTrigger.PERIODIC, now)
            self._durable(f"meter of transaction {session.local_tx_id}", functools.partial(
                self.store.update_transaction_meter, session.local_tx_id, state.reading.energy_import_wh, now),
                thinnable=True)
            # the session's power curve (evsectl sessions --plot): in this pass's fsync, none of its own
            self.operations.power_point(connector_id, session.local_tx_id, state.reading.power_w,
                                        state.reading.energy_import_wh, now)

    def _sampled_for_end(self, now: float, mono: float) -> None:
        """Values for the end message at their own interval (2.0.1 SampledDataCtrlr.TxEndedInterval)."""
        interval = self.settings.ended_sample_interval_s or 0
        for connector_id, state in self.connectors.items():
            session = self.core.session(connector_id)
            due = state.next_end_sample_mono
            if session is None or due is None or mono + SAMPLE_SLACK_S < due:
                continue
            state.next_end_sample_mono = due + interval if due + interval > mono else mono + interval
            if state.reading is None or state.reading.stale:
                continue
            self._keep_for_end(session.local_tx_id, self.sample_of(connector_id), SampleTrigger.PERIODIC, now)

    def _aligned_for_end(self, now: float) -> None:
        """Clock-aligned values for the end message at their own interval (AlignedDataCtrlr.TxEndedInterval)."""
        interval = self.settings.ended_aligned_interval_s
        if not interval or not self.settings.ended_aligned_measurands:
            self._next_end_aligned = None
            return
        if self._next_end_aligned is None:
            self._next_end_aligned = next_aligned(now, interval)
            return
        if now < self._next_end_aligned:
            return
        self._next_end_aligned = next_aligned(now, interval)
        instant = self._next_end_aligned - interval
        for connector_id, state in self.connectors.items():
            session = self.core.session(connector_id)
            if session is None or session.start_wall > instant or state.reading is None or state.reading.stale:
                continue
            self._keep_for_end(session.local_tx_id, self.sample_of(connector_id), SampleTrigger.CLOCK, instant)

    def _aligned(self, now: float) -> None:
        interval = self.settings.aligned_interval_s
        if interval <= 0:
            self._next_aligned = None
            return
        if self._next_aligned is None:
            self._next_aligned = next_aligned(now, interval)
            return
        if now < self._next_aligned:
            return
        self._next_aligned = next_aligned(now, interval)
        # Stamped with the aligned instant itself (the reading is at most one poll younger): the back
        # office lines up the values of many chargers by that instant.
        instant = self._next_aligned - interval
        stop_aligned = self.settings.ended_aligned_measurands
        for connector_id, state in self.connectors.items():
            if state.reading is None or state.reading.stale:
                continue
            if state.stop_recorded is not None and not state.stop_recorded.done():
                continue  # between a stop and its record: a new session's start is not queued yet
            session = self.core.session(connector_id)
            if session is not None and session.start_wall > instant:
                continue  # started after the instant: its first value is its Transaction.Begin
            sample = self.sample_of(connector_id)
            if session is not None:
                self.queue_sample(connector_id, session.local_tx_id, sample, SampleTrigger.CLOCK, instant)
                if stop_aligned and self.settings.ended_aligned_interval_s is None:
                    self._keep_for_end(session.local_tx_id, sample, SampleTrigger.CLOCK, instant)
            elif self.link_session is not None:
                # Not transaction-related: sent when online, never queued.
                self.link_session.send_sample(connector_id, sample, SampleTrigger.CLOCK, instant)
