"""A signing meter's legal transaction alongside each local one: begun before energy flows, ended once the
power path is open, its data sets stored before any message carries them, recovered at boot.

The rules (docs/signed-values.md):
- A legal transaction is begun only with a trusted clock: the meter's clock is set from ours and dates every
  signed reading. With an untrusted clock (no NTP, no back office since boot) the session charges unsigned:
  the transaction messages carry no signed data, and an `UnsignedTransaction` entry in the local security
  log says why. The same holds when the meter does not begin it in time.
- The contactor of the connector closes only after the meter answered the begin (an actuator barrier holds
  the close); e-stop and fault openings never wait for it (they open directly or the close is superseded).
- Each data set is committed to the store before the journal queues the message that carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

from agent.core import events as ev
from agent.metering import SignedValue
from agent.runtime.base import STOP_HOLD_TIMEOUT_S, _Barrier
from agent.runtime.metering import MeteringMixin
from agent.store import LegalRecord
from drivers.base import LegalTransaction, SignedMeter, SignedMeterValue
from drivers.errors import DriverError

LOGGER = logging.getLogger(__name__)

SIGNED_BEGIN_TIMEOUT_S = 8.0  # below STOP_HOLD_TIMEOUT_S: the held close is never released before the answer
SIGNED_END_DEADLINE_S = 8.0  # attempts to end a legal transaction at a stop, all within this time
BOOT_SIGNED_ATTEMPTS = 3
PUBLIC_KEY_RETRY_S = 30.0
UNSIGNED_EVENT = "UnsignedTransaction"


def neutral(value: SignedMeterValue) -> SignedValue:
    """The driver's data set in the agent's neutral form (the text untouched)."""
    return SignedValue(value.data, value.encoding, value.signing_method, value.public_key, value.begin_wh,
                       value.end_wh)


class SigningMixin(MeteringMixin):
    """Legal transactions of signing meters."""

    _signed_starts: dict[int, asyncio.Future[None]]  # local tx id -> resolved once its start is recorded
    meter_public_keys: dict[int, str]  # connector id -> the signing meter's key (hex DER), once read

    def _record_start(self, out: ev.TransactionStarted, meter_start_wh: float, *, signed: SignedValue | None = None,
                      at: float | None = None) -> None:
        raise NotImplementedError  # TransactionsMixin

    def _start_failed(self, out: ev.TransactionStarted) -> None:
        raise NotImplementedError  # TransactionsMixin

    async def _meter_start_after(self, out: ev.TransactionStarted, pending: asyncio.Future[None]) -> float:
        raise NotImplementedError  # TransactionsMixin

    def signer(self, connector_id: int) -> SignedMeter | None:
        """The connector's meter if it signs legal transactions."""
        devices = self.hw.connectors.get(connector_id)
        meter = devices.meter if devices is not None else None
        caps = getattr(meter, "capabilities", None)
        if meter is None or not getattr(caps, "signed", False) or not hasattr(meter, "begin_transaction"):
            return None
        return cast(SignedMeter, meter)

    def evse_id(self, connector_id: int) -> str:
        """The id the meter files with a legal transaction: the charge point's id and the connector's."""
        return f"{self.config.charge_point.id}*{connector_id}"

    def _report_unsigned(self, tx_local_id: int, connector_id: int, why: str) -> None:
        LOGGER.warning("transaction %d on connector %d is not signed by its meter: %s", tx_local_id, connector_id,
                       why)
        try:
            self.store.security_log_append(UNSIGNED_EVENT, f"transaction {tx_local_id} connector {connector_id}: "
                                                           f"{why}"[:200], wall_time=self.now(),
                                           clock_trusted=self.clock_trusted)
        except Exception as err:
            LOGGER.error("unsigned transaction %d not recorded: %s", tx_local_id, err)

    # ---- start ----------------------------------------------------------------------------------------

    def _start_signed(self, out: ev.TransactionStarted) -> None:
        """Begin the meter's legal transaction, then record the start; the contactor waits for the begin."""
        loop = asyncio.get_running_loop()
        state = self.connectors[out.connector_id]
        held: asyncio.Future[None] = loop.create_future()
        # queued before the close the core decided with this start: the close waits until the meter began
        state.actuator.put_nowait(_Barrier(loop.create_future(), held))
        self._signed_starts[out.local_tx_id] = held
        pending = state.stop_recorded if state.stop_recorded is not None and not state.stop_recorded.done() else None
        task = self._spawn(self._signed_start(out, pending), f"signed-start-{out.local_tx_id}")

        def release(_: asyncio.Task[Any]) -> None:
            if not held.done():
                held.set_result(None)
            self._signed_starts.pop(out.local_tx_id, None)

        task.add_done_callback(release)

    async def _signed_start(self, out: ev.TransactionStarted, pending: asyncio.Future[None] | None) -> None:
        meter_start, at = out.meter_start_wh, out.timestamp
        if pending is not None:
            meter_start = await self._meter_start_after(out, pending)
        try:
            signed = await self._begin_legal(out)
            if signed is not None and signed.begin_wh is not None:
                meter_start = signed.begin_wh  # the reading the meter signed is the one the bill starts from
                if "DataSigned" in self.settings.tx_start_point:
                    at = self.now()  # 2.0.1 TxStartPoint DataSigned: the transaction starts when it is signed
            self._record_start(out, meter_start, signed=signed, at=at)
        except Exception:
            LOGGER.exception("transaction %d could not be recorded", out.local_tx_id)
            self._start_failed(out)

    async def _begin_legal(self, out: ev.TransactionStarted) -> SignedValue | None:
        """The meter's signed begin data set (stored), or None: unsigned (reported) or signed only at the end."""
        meter = self.signer(out.connector_id)
        row = self.store.transaction(out.local_tx_id)
        if meter is None or row is None:
            return None
        if not self.clock_trusted:
            self._report_unsigned(out.local_tx_id, out.connector_id, "the clock is not trusted (no NTP, no back "
                                                                     "office time since boot)")
            return None
        if self.clock_offset_s:
            # the driver sets the meter's clock from the system clock, which the back office says is wrong
            self._report_unsigned(out.local_tx_id, out.connector_id, f"the system clock is {self.clock_offset_s:.0f} "
                                                                     "s off the back office's time")
            return None
        # on disk before the meter is asked: a crash before its answer still leaves a record to end at boot
        self.store.signed_legal_begin(out.local_tx_id, out.connector_id, row.station_tx_id, self.now())
        legal = LegalTransaction(transaction_id=row.station_tx_id, evse_id=self.evse_id(out.connector_id),
                                 client_id=out.id_tag)
        try:
            value = await asyncio.wait_for(meter.begin_transaction(legal), SIGNED_BEGIN_TIMEOUT_S)
        except (DriverError, TimeoutError) as err:
            self._report_unsigned(out.local_tx_id, out.connector_id, f"the meter did not begin it: {err!r}")
            return None
        if value is None:
            LOGGER.info("transaction %d: the meter signs it only at its end", out.local_tx_id)
            return None
        signed = neutral(value)
        self.meter_public_keys[out.connector_id] = signed.public_key
        self.store.signed_put(out.local_tx_id, "begin", signed, self.now())
        return signed

    async def _wait_signed_start(self, tx_local_id: int) -> None:
        """A stop decided while its start waits for the meter: let the start be recorded first (bounded)."""
        held = self._signed_starts.get(tx_local_id)
        if held is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(held), SIGNED_BEGIN_TIMEOUT_S + STOP_HOLD_TIMEOUT_S)

    # ---- stop -----------------------------------------------------------------------------------------

    async def _end_legal(self, tx_local_id: int) -> SignedValue | None:
        """End the transaction's legal transaction (the power path is open) and store its end data set."""
        legal = self.store.signed_legal(tx_local_id)
        if legal is None:
            return None
        stored = self.store.signed_get(tx_local_id, "end")
        if stored is not None:
            return stored
        meter = self.signer(legal.connector_id)
        if meter is None:
            return None
        deadline = time.monotonic() + SIGNED_END_DEADLINE_S
        error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = await asyncio.wait_for(meter.end_transaction(legal.meter_tx_id),
                                               max(0.5, deadline - time.monotonic()))
            except (DriverError, TimeoutError) as err:
                error = err
                LOGGER.warning("transaction %d: the meter did not end its legal transaction: %r", tx_local_id, err)
                await asyncio.sleep(0.5)
                continue
            signed = neutral(value)
            self.store.signed_put(tx_local_id, "end", signed, self.now())
            return signed
        self._report_unsigned(tx_local_id, legal.connector_id, f"the meter did not end it: {error!r}")
        return None

    # ---- boot -----------------------------------------------------------------------------------------

    async def _recover_legal(self, legal: LegalRecord) -> SignedValue | None:
        """At boot: the meter's record of a legal transaction the previous run left open, ended if need be.

        The meter may have closed it by itself (a power cut: end reason "P") or still hold it open (the
        agent alone died); the contactor cannot have closed since, so ending it now ends it at the right
        reading. None when the meter has no such transaction (it never began it); the last DriverError when it
        does not answer in BOOT_SIGNED_ATTEMPTS (the record is kept: the next boot asks again).
        """
        meter = self.signer(legal.connector_id)
        if meter is None:
            LOGGER.error("transaction %d: connector %d has no signing meter any more; its signed end is lost",
                         legal.tx_local_id, legal.connector_id)
            return None
        error: DriverError | None = None
        for attempt in range(BOOT_SIGNED_ATTEMPTS):
            try:
                record = await meter.transaction_record(legal.meter_tx_id)
                if record is None and not await meter.open_transaction():
                    return None  # the meter never began it
                if record is None or record.end_wh is None:
                    record = await meter.end_transaction(legal.meter_tx_id)
                signed = neutral(record)
                self.store.signed_put(legal.tx_local_id, "end", signed, self.now())
                return signed
            except DriverError as err:
                error = err
                LOGGER.warning("boot: signed record %d of transaction %d not fetched: %s", attempt + 1,
                               legal.tx_local_id, err)
                await asyncio.sleep(0.5)
        assert error is not None
        raise error

    async def recover_legal_orphans(self, unfinished: set[int]) -> None:
        """At boot: end legal transactions whose local transaction never started (the process died between the
        meter's begin and the start record; no energy flowed) or already stopped without a signed end."""
        for legal in self.store.signed_legal_open():
            if legal.tx_local_id in unfinished:
                continue
            try:
                signed = await self._recover_legal(legal)
            except DriverError as err:
                # kept: forgetting it would leave the meter's legal transaction open with nothing to end it
                LOGGER.error("boot: the meter did not answer for legal transaction %s (%s); asked again at the "
                             "next boot", legal.meter_tx_id, err)
                continue
            if not legal.begun:
                self.store.signed_forget(legal.tx_local_id)
                LOGGER.warning("boot: legal transaction %s of a start never recorded was ended on the meter",
                               legal.meter_tx_id)
            elif signed is not None:
                LOGGER.warning("boot: transaction %d had stopped without its signed end; the meter's record is "
                               "kept locally (its stop message has gone)", legal.tx_local_id)

    async def learn_public_keys(self) -> None:
        """Read each signing meter's public key (the 1.6 MeterPublicKey[n] key shows it) until every one answered."""
        while True:
            missing = [cid for cid in self.connectors if self.signer(cid) is not None
                       and cid not in self.meter_public_keys]
            for connector_id in missing:
                meter = self.signer(connector_id)
                assert meter is not None
                try:
                    self.meter_public_keys[connector_id] = await meter.public_key()
                except DriverError as err:
                    LOGGER.warning("connector %d: the meter's public key is not read yet: %s", connector_id, err)
            if all(cid in self.meter_public_keys for cid in missing):
                return
            await asyncio.sleep(PUBLIC_KEY_RETRY_S)
