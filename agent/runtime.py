"""The running charge point: feeds hardware observations to the core and executes its decisions.

One `Agent` per process. It owns the core (pure rules), the store (SQLite), the hardware (drivers), and
talks to the back office through whichever protocol connection is up (`self.link_session`). Transaction
messages never go to the wire from here: they are committed to the outbox, and the connection's sender
drains the outbox in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from agent.clock import iso, kernel_boot_id, parse_iso, system_clock_synchronized
from agent.config import AgentConfig, ConnectorConfig
from agent.core import events as ev
from agent.core.auth import AuthEntry as CoreAuthEntry
from agent.core.auth import DecisionAction, cache_update, decide_local, decide_without_answer, list_conflict
from agent.core.chargepoint import ChargePointCore, CoreSettings
from agent.core.connector import ConnectorConfig as CoreConnectorConfig
from agent.core.limits import ChargingProfile
from agent.errors import CallRefused, DiskFull
from agent.hardware import ConnectorObservation, Hardware
from agent.metering import MeasurandSource, Sample, can_provide, next_aligned
from agent.ports import ConfigVocabulary, SampleTrigger, Stamp, TransactionJournal, TxStarted, TxStopped
from agent.security.events import SecurityEventType
from agent.settings import Settings, SettingsSource
from agent.store import AuthEntry as StoreAuthEntry
from agent.store import PreviousRun, Store, TransactionRow
from drivers.base import MeterReading
from drivers.errors import DriverError

if TYPE_CHECKING:
    from agent.security.manager import SecurityManager
    from agent.services.firmware import FirmwareManager

LOGGER = logging.getLogger(__name__)

CLOCK_TOLERANCE_S = 2.0  # smaller differences are jitter, not a wrong clock
CLOCK_CHECK_S = 10.0  # how often an untrusted clock asks the kernel whether NTP has synchronized it
SLOW_POLL_S = 1.0  # a poll slower than this (and than two poll intervals) is logged
TICK_S = 0.25  # timeouts, reservations and schedule boundaries are checked this often
OPEN_RAMP_TIMEOUT_S = 2.0  # DC: wait this long for the current to fall before the contactor opens anyway
OPEN_SAFE_CURRENT_A = 2.0
BOOT_METER_ATTEMPTS = 3
SAMPLE_SLACK_S = 0.1  # a sample due this much after a poll is taken at that poll (polls are not exact)
STOP_HOLD_TIMEOUT_S = 10.0  # the longest a connector is held for its stop record (bounded: never stuck)
STOP_METER_SETTLE_S = 1.0  # meters refresh their registers about once a second after the load drops
# a closing waits this long for the other connectors' lower limits (by then the device-silent rule has
# suspended a connector whose controller does not answer)
ORDER_WAIT_S = 5.0
DEFERRED_MAX = 2000  # records kept in memory while the disk is full (intermediate samples go first)
DEFERRED_RETRIES = 20  # a stop record failing for another reason than a full disk is retried this many polls

ROLES = {"meter": ev.DeviceRole.METER, "dc": ev.DeviceRole.DC_CONTROLLER,
         "contactor": ev.DeviceRole.CONTACTOR, "lock": ev.DeviceRole.LOCK}  # agent/hardware's Fault.role


class LinkSession(Protocol):
    """What the runtime needs from an open back-office connection (one per OCPP version)."""

    def status_changed(self, status: ev.StatusChanged) -> None: ...

    def outbox_changed(self) -> None: ...

    async def authorize(self, id_tag: str) -> ev.AuthResult: ...

    def send_sample(self, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> None: ...

    async def notify(self, action: str, payload: dict[str, Any]) -> None: ...




def _domain_fault_names(fault: ev.Fault | None) -> dict[str, Any]:
    """The fault's own code, when no protocol names it."""
    return {"error_code": fault.code if fault else None, "vendor_error_code": None}


@dataclass
class ConnectorState:
    """What the runtime last told the core about a connector's hardware."""

    plugged: bool | None = None
    ev_ready: bool | None = None
    isolation_valid: bool | None = None
    fault_codes: dict[str, str] = field(default_factory=dict)  # source -> "code/severity" last fed to the core
    reading: MeterReading | None = None
    soc_pct: float | None = None
    next_sample_mono: float | None = None
    stop_recorded: asyncio.Future[None] | None = None  # set while a stop waits for its final meter read
    actuator: asyncio.Queue[_Queued | _Barrier] = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class _Queued:
    """A contactor or limit command for a connector's actuator loop.

    `done` is resolved once it was carried out (or failed); a closing waits for `after`, the limits of the
    other connectors commanded in the same decision, so a shared cap's decreases reach the controllers first.
    """

    op: ev.SetContactor | ev.SetLimit
    done: asyncio.Future[None] | None = None
    after: tuple[asyncio.Future[None], ...] = ()


@dataclass
class _Deferred:
    """A store write that found the disk full: kept in memory, in order, until it can be committed."""

    what: str
    write: Callable[[], Any]
    thinnable: bool  # an intermediate sample may be dropped when memory is at its bound; starts/stops never
    failures: int = 0  # attempts that failed with something other than a full disk


@dataclass(frozen=True)
class _Barrier:
    """Resolved by the actuator loop once every command queued before it has been carried out.

    The loop then holds the connector until `release` is resolved (the stop is recorded), so nothing queued
    behind it (the next session's close) runs before the previous meterStop has been read.
    """

    done: asyncio.Future[None]
    release: asyncio.Future[None]


class Agent:
    """The charge point at run time."""

    def __init__(self, config: AgentConfig, store: Store, hardware: Hardware, keys: ConfigVocabulary,
                 journal: TransactionJournal, settings: SettingsSource,
                 profiles: Sequence[ChargingProfile] = ()) -> None:
        self.config = config
        self.store = store
        self.hw = hardware
        self.keys = keys
        self.journal = journal
        self.settings_source = settings
        self.clock_offset_s = 0.0
        # wall minus monotonic at start: a later NTP step shows as a change of this difference
        self._wall_minus_mono = time.time() - time.monotonic()
        self.clock_trusted = system_clock_synchronized()
        self.clock_source = "ntp" if self.clock_trusted else "none"
        self._next_clock_check = 0.0
        self.link_session: LinkSession | None = None
        self.connectors = {c.id: ConnectorState() for c in config.connectors}
        self.core = ChargePointCore(self.core_settings(), tx_id_allocator=self._reserve_tx_id)
        self.core.restore(availability=self._persisted_availability(), profiles=profiles)
        for connector_id in hardware.welded_at_start:
            if connector_id in self.core.connectors:
                self.core.connectors[connector_id].locked = True  # locked by the daemon before anything ran
        self.healthy_at = 0.0  # monotonic time of the last complete main-loop pass
        self.exit_requested: asyncio.Future[int] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._next_aligned: float | None = None
        self.settings_source.subscribe(self._on_settings_changed)
        self.settings_source.add_measurand_check(self.unprovidable)
        self.recovery_note: str | None = None  # set when a damaged state database was replaced at start
        self._deferred: collections.deque[_Deferred] = collections.deque()  # records waiting for disk space
        self.disk_full_since: float | None = None
        self.deferred_dropped = 0
        self.storage_note: str | None = None  # the last disk-full episode, for evsectl status
        self._unrecorded_starts: set[int] = set()  # connectors faulted because a start found the disk full
        self._unrecorded_tx: set[int] = set()  # local ids of those starts
        self.log_lines: Callable[[], list[str]] = list  # recent log lines for diagnostics (set by the daemon)
        # The services, built and given their ports by agent/daemon.py (wire_services); the 1.6 handlers reach
        # them through the agent.
        self.security: SecurityManager | None = None
        self.firmware: FirmwareManager
        # how the active protocol names a fault in `evsectl status` (set by the daemon: the back office's words)
        self.fault_names: Callable[[ev.Fault | None], dict[str, Any]] = _domain_fault_names

    # ------------------------------------------------------------------------------------ settings

    @property
    def settings(self) -> Settings:
        """The settings in force now."""
        return self.settings_source.current()

    def core_settings(self) -> CoreSettings:
        """CoreSettings from the config file and the current settings."""
        s = self.settings
        connectors = tuple(
            CoreConnectorConfig(is_dc=c.kind == "dc", max_current_a=c.max_current_a, has_lock=c.lock is not None,
                                voltage_v=c.voltage_v, phases=c.phases, free_vend_id=c.free_vend_id_tag)
            for c in self.config.connectors
        )
        return CoreSettings(
            connectors=connectors,
            connection_timeout_s=s.connection_timeout_s,
            stop_transaction_on_invalid_id=s.stop_transaction_on_invalid_id,
            max_energy_on_invalid_id_wh=s.max_energy_on_invalid_id_wh,
            stop_transaction_on_ev_side_disconnect=s.stop_transaction_on_ev_side_disconnect,
            unlock_connector_on_ev_side_disconnect=s.unlock_connector_on_ev_side_disconnect,
            local_pre_authorize=s.local_pre_authorize,
            local_authorize_offline=s.local_authorize_offline,
            allow_offline_tx_for_unknown_id=s.allow_offline_tx_for_unknown_id,
            authorize_remote_tx_requests=s.authorize_remote_tx_requests,
            minimum_status_duration_s=s.minimum_status_duration_s,
            tx_start_point=s.tx_start_point,
            tx_stop_point=s.tx_stop_point,
            max_stack_level=s.max_stack_level,
            max_profiles_installed=s.max_profiles_installed,
            max_schedule_periods=s.max_schedule_periods,
        )

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

    def _on_settings_changed(self, changed: frozenset[str]) -> None:
        self.core.settings = self.core_settings()
        if "sample_interval_s" in changed:
            # The new interval applies from the next sample: a running transaction keeps sampling (never
            # sooner than the new interval asks, never later than the sample already due).
            interval = self.settings.sample_interval_s
            mono = time.monotonic()
            for connector_id, state in self.connectors.items():
                if interval <= 0 or self.core.session(connector_id) is None:
                    state.next_sample_mono = None
                    continue
                soonest = mono + interval
                due = state.next_sample_mono
                state.next_sample_mono = soonest if due is None else min(due, soonest)
        if "aligned_interval_s" in changed:
            self._next_aligned = None

    def _persisted_availability(self) -> dict[int, bool]:
        ids = [0, *self.connectors]
        return {i: self.store.availability_get(i) for i in ids}

    # --------------------------------------------------------------------------------------- clock

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

    # ------------------------------------------------------------------------------- core plumbing

    def _reserve_tx_id(self) -> int:
        try:
            return self.store.reserve_tx_id(self.now(), time.monotonic())
        except DiskFull as err:
            self._disk_full(err)  # the core refuses this start, and no other until space returns
            raise

    def feed(self, event: ev.Input) -> None:
        """Apply an observation to the core and execute what it decides."""
        self.execute(self.core.handle(event, self.now(), time.monotonic()))

    def execute(self, outputs: list[ev.Output]) -> None:
        """Carry out the core's decisions, in order."""
        limits: dict[int, asyncio.Future[None]] = {}  # the limits commanded in this decision, per connector
        for out in outputs:
            try:
                self._execute_one(out, limits)
            except Exception:  # one failing output must not stop the others (e.g. the contactor opening)
                LOGGER.exception("executing %r failed", out)

    def _execute_one(self, out: ev.Output, limits: dict[int, asyncio.Future[None]]) -> None:
        match out:
            case ev.SetContactor() | ev.SetLimit():
                state = self.connectors[out.connector_id]
                if isinstance(out, ev.SetContactor) and not out.closed:
                    # Open at once from here (safety first); the queued op then ramps the DC side down.
                    devices = self.hw.connectors[out.connector_id]
                    if devices.dc is None:
                        devices.contactor.open()
                    state.actuator.put_nowait(_Queued(out))
                elif isinstance(out, ev.SetLimit):
                    done = asyncio.get_running_loop().create_future()
                    limits[out.connector_id] = done
                    state.actuator.put_nowait(_Queued(out, done=done))
                else:
                    after = tuple(f for cid, f in limits.items() if cid != out.connector_id)
                    state.actuator.put_nowait(_Queued(out, after=after))
            case ev.SetLock():
                lock = self.hw.connectors[out.connector_id].lock
                if lock is not None:
                    try:
                        lock.lock() if out.locked else lock.unlock()
                    except DriverError as err:
                        LOGGER.warning("connector %d lock: %s", out.connector_id, err)
            case ev.ShowIndicator():
                self.hw.show(out.connector_id, out.state)
            case ev.StatusChanged():
                LOGGER.info("connector %d: %s %s", out.connector_id, out.status.value,
                            out.fault.code if out.fault else "no fault")
                if self.link_session is not None:
                    self.link_session.status_changed(out)
            case ev.NeedAuthorize():
                self._spawn(self._authorize(out.id_tag), f"authorize-{out.id_tag}")
            case ev.AuthorizationRejected():
                LOGGER.info("id refused (%s) on connector %s", out.status.value, out.connector_id)
            case ev.TransactionStarted():
                try:
                    self._on_tx_started(out)
                except Exception:
                    LOGGER.exception("transaction %d could not be recorded", out.local_tx_id)
                    self._start_failed(out)
            case ev.TransactionStopped():
                self._on_tx_stopped(out)
            case ev.ReservationEnded():
                LOGGER.info("reservation %d ended: %s", out.reservation_id, out.reason.value)
            case (ev.Authorized() | ev.EvConnected() | ev.EvDisconnected() | ev.EnergyTransferStarted()
                  | ev.EnergyTransferSuspended() | ev.EnergyTransferResumed() | ev.Deauthorized()):
                LOGGER.debug("connector %s: %r", out.connector_id, out)
                self.journal.session_event(out, self.stamp())
            case _:
                LOGGER.error("unknown core output %r", out)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            LOGGER.error("task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------------------- transactions

    def stamp(self) -> Stamp:
        """The time of a record made now."""
        return Stamp(self.now(), time.monotonic(), self.clock_trusted)

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

    def _on_tx_started(self, out: ev.TransactionStarted) -> None:
        pending = self.connectors[out.connector_id].stop_recorded
        if pending is not None and not pending.done():
            # the previous session's StopTransaction is not queued yet: this start goes behind it, so the
            # back office sees them in order and one meter reading closes one session and opens the next
            self._spawn(self._start_after_stop(out, pending), f"start-{out.local_tx_id}")
            return
        self._record_start(out, out.meter_start_wh)

    async def _start_after_stop(self, out: ev.TransactionStarted, pending: asyncio.Future[None]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pending), STOP_HOLD_TIMEOUT_S)
        reading = self.connectors[out.connector_id].reading
        # the contactor stayed open between the two (the actuator held it): the register did not move
        meter_start = reading.energy_import_wh if reading is not None else out.meter_start_wh
        try:
            self._record_start(out, meter_start)
        except Exception:
            LOGGER.exception("transaction %d could not be recorded", out.local_tx_id)
            self._start_failed(out)

    def _record_start(self, out: ev.TransactionStarted, meter_start_wh: float) -> None:
        if not self.flush_deferred():
            # the disk is full: no energy without a durable start (the records waiting in memory go first)
            raise DiskFull(str(self.store.path), f"{len(self._deferred)} records wait in memory")
        self.journal.started(TxStarted(out.local_tx_id, out.connector_id, out.id_tag, meter_start_wh,
                                       out.timestamp, out.reservation_id), self.stamp())
        self.queue_sample(out.connector_id, out.local_tx_id, self.sample_of(out.connector_id, meter_start_wh),
                          SampleTrigger.BEGIN, out.timestamp)
        interval = self.settings.sample_interval_s
        state = self.connectors[out.connector_id]
        state.next_sample_mono = time.monotonic() + interval if interval > 0 else None
        self._outbox_changed()

    def _start_failed(self, out: ev.TransactionStarted) -> None:
        """A start that cannot be recorded must not deliver energy: a stopping fault opens the contactor."""
        self._unrecorded_starts.add(out.connector_id)
        self._unrecorded_tx.add(out.local_tx_id)  # its stop must not reach the back office either
        self.feed(ev.FaultRaised(out.connector_id, "state_database", "storage_failure", True, ev.DeviceRole.OTHER,
                                 "transaction could not be recorded"))

    def _on_tx_stopped(self, out: ev.TransactionStopped) -> None:
        if out.local_tx_id in self._unrecorded_tx:
            # its start was never recorded (nor sent): a StopTransaction would name a transaction that does not
            # exist for the back office; the contactor was opened by the core's own outputs
            self._unrecorded_tx.discard(out.local_tx_id)
            LOGGER.warning("transaction %d was never recorded: no stop is sent for it", out.local_tx_id)
            return
        # The decision (reason, time) is on disk before anything else: a power cut in the seconds until
        # meterStop is read must not turn this stop into a PowerLoss at boot.
        try:
            self._durable(f"stop decision of transaction {out.local_tx_id}",
                          functools.partial(self.store.decide_stop, out.local_tx_id, out.reason.value,
                                            out.timestamp))
        except Exception as err:
            LOGGER.error("transaction %d: stop decision not persisted: %s", out.local_tx_id, err)
        # meterStop must be the register once the power path is open (a DC controller ramps down first):
        # wait for the connector's actuator to finish opening, then read the meter once more.
        loop = asyncio.get_running_loop()
        barrier: asyncio.Future[None] = loop.create_future()
        recorded: asyncio.Future[None] = loop.create_future()
        state = self.connectors[out.connector_id]
        state.actuator.put_nowait(_Barrier(barrier, recorded))
        state.next_sample_mono = None
        state.stop_recorded = recorded
        task = self._spawn(self._finish_stop(out, barrier), f"stop-{out.local_tx_id}")
        # whatever happens in the task (even an error), the connector is released and a waiting start goes on
        def release(_: asyncio.Task[Any]) -> None:
            if not recorded.done():
                recorded.set_result(None)

        task.add_done_callback(release)

    async def _finish_stop(self, out: ev.TransactionStopped, opened: asyncio.Future[None]) -> None:
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
        end = self.sample_of(out.connector_id, meter_stop)
        stopped = TxStopped(out.local_tx_id, out.connector_id, meter_stop, out.timestamp, out.reason, out.id_tag, end)
        self._durable(f"stop of transaction {out.local_tx_id}",
                      functools.partial(self.journal.stopped, stopped, self.stamp()))
        self._outbox_changed()

    # ---------------------------------------------------------------------- writes when the disk is full

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

    def _keep_for_end(self, tx_local_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> None:
        self._durable(f"end values of transaction {tx_local_id}", functools.partial(
            self.journal.keep_for_end, tx_local_id, sample, trigger, at, self.stamp()), thinnable=True)

    async def unlock(self, connector_id: int) -> ev.UnlockResult:
        """UnlockConnector: the core decides (a running transaction stops first), the lock's feedback confirms."""
        result, outs = self.core.unlock(ev.UnlockRequested(connector_id), self.now(), time.monotonic())
        self.execute(outs)
        if result is ev.UnlockResult.UNLOCKED and not await self.hw.lock_released(connector_id):
            return ev.UnlockResult.UNLOCK_FAILED
        return result

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

    def _outbox_changed(self) -> None:
        if self.link_session is not None:
            self.link_session.outbox_changed()

    def transaction_confirmed(self, tx_local_id: int, transaction_id: int, auth: ev.AuthResult) -> None:
        """The back office accepted a transaction's start: its id for the transaction, and what it says of the
        id that started it (called by the connection after the journal committed the answer)."""
        row = self.store.transaction(tx_local_id)
        if row is not None:
            self._check_list_conflict(row.connector_id, row.id_tag, auth.status)
            self.remember_authorization(replace(auth, id_tag=row.id_tag))
        self.feed(ev.TransactionConfirmed(tx_local_id, transaction_id, auth.status, auth.parent_id_tag))

    def _check_list_conflict(self, connector_id: int, id_tag: str, status: ev.AuthStatus) -> None:
        """OCPP 1.6 3.5: a back-office answer that contradicts the local list is reported with the status."""
        if not self.settings.local_auth_list_enabled:
            return
        entry = self._core_entry(self.store.local_list_get(id_tag))
        if not list_conflict(entry, status, self.now()):
            return
        assert entry is not None
        info = f"list {entry.status_at(self.now()).value}, office {status.value}"
        LOGGER.warning("connector %d: id %s: the back office contradicts the local list (%s)", connector_id,
                       id_tag, info)
        snapshot = self.core.snapshot()
        current = snapshot["status"] if connector_id == 0 else snapshot["connectors"][str(connector_id)]["status"]
        if self.link_session is not None:
            self.link_session.status_changed(ev.StatusChanged(
                connector_id, ev.ConnectorStatus(current), ev.Fault(ev.FAULT_LOCAL_LIST_CONFLICT, info=info),
                self.now()))

    # ------------------------------------------------------------------------------ authorization

    @staticmethod
    def _core_entry(entry: StoreAuthEntry | None) -> CoreAuthEntry | None:
        if entry is None or entry.status is None:
            return None
        try:
            status = ev.AuthStatus(entry.status)
        except ValueError:
            status = ev.AuthStatus.INVALID
        return CoreAuthEntry(status, parse_iso(entry.expiry_date), entry.parent_id_tag)

    def remember_authorization(self, auth: ev.AuthResult) -> None:
        """What the back office said of an id goes to the authorization cache (where the rules allow)."""
        in_list = self.settings.local_auth_list_enabled and self.store.local_list_get(auth.id_tag) is not None
        entry = cache_update(auth.status, auth.expiry, auth.parent_id_tag, in_local_list=in_list,
                             cache_enabled=self.settings.auth_cache_enabled)
        if entry is not None:
            expiry = iso(auth.expiry) if auth.expiry is not None else None
            self.store.cache_put(StoreAuthEntry(auth.id_tag, entry.status.value, expiry, entry.parent_id_tag))

    def _auth_entries(self, id_tag: str) -> tuple[CoreAuthEntry | None, CoreAuthEntry | None]:
        """(local list entry, cache entry) of an id, each None when disabled or absent."""
        settings = self.settings
        list_entry = self.store.local_list_get(id_tag) if settings.local_auth_list_enabled else None
        cache_entry = self.store.cache_get(id_tag) if settings.auth_cache_enabled else None
        return self._core_entry(list_entry), self._core_entry(cache_entry)

    def local_decision(self, id_tag: str, online: bool) -> Any:
        """decide_local with the store's list and cache entries."""
        list_entry, cache_entry = self._auth_entries(id_tag)
        return decide_local(id_tag, list_entry, cache_entry, online, self.core.settings, self.now())

    async def _authorize(self, id_tag: str) -> None:
        session = self.link_session
        decision = self.local_decision(id_tag, session is not None)
        if decision.action is not DecisionAction.ASK_BACK_OFFICE:
            LOGGER.info("id %s decided locally: %s (%s)", id_tag, decision.status.value, decision.source.value)
            self.feed(decision.as_result(id_tag))
            return
        assert session is not None
        try:
            result = await session.authorize(id_tag)
        except CallRefused as err:
            # online, but no usable answer: not an offline situation, so only the list and the cache decide
            entries = self._auth_entries(id_tag)
            decision = decide_without_answer(*entries, self.now())
            LOGGER.warning("authorization of %s refused by the back office (%s); decided by the local list and "
                           "cache: %s (%s)", id_tag,
                           err, decision.status.value, decision.source.value)
            self.feed(decision.as_result(id_tag))
            return
        except (TimeoutError, ConnectionError, OSError) as err:
            # no answer (timeout, or the socket closed under the call): the offline rules decide
            LOGGER.warning("authorization of %s got no answer (%s); deciding offline", id_tag, type(err).__name__)
            offline = self.local_decision(id_tag, False)
            LOGGER.info("id %s decided locally: %s (%s)", id_tag, offline.status.value, offline.source.value)
            self.feed(offline.as_result(id_tag))
            return
        self.feed(result)

    def authorization_answered(self, auth: ev.AuthResult) -> ev.AuthResult:
        """The back office answered an authorization: check it against the local list, cache it, pass it on."""
        self._check_list_conflict(0, auth.id_tag, auth.status)
        self.remember_authorization(auth)
        return auth

    def security_manager(self) -> SecurityManager:
        """The security event recorder (set by agent/daemon.py wire_services)."""
        if self.security is None:
            raise RuntimeError("no security manager: agent/daemon.py wire_services() was not called")
        return self.security

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

    # --------------------------------------------------------------------------------- the link

    def online(self, session: LinkSession) -> None:
        """A connection was accepted by the back office (BootNotification Accepted)."""
        # The core learns first, with no session yet: a status it reports now is in the snapshot below
        # anyway, and sending both would tell the back office the same status twice.
        self.feed(ev.LinkChanged(True))
        self.link_session = session
        for status in self.core.current_statuses(self.now(), time.monotonic()):
            session.status_changed(status)
        session.outbox_changed()

    def offline(self) -> None:
        """The connection is gone."""
        self.link_session = None
        self.feed(ev.LinkChanged(False))

    # ---------------------------------------------------------------------------------- the loops

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
        for row in self.store.unfinished_transactions():
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
            if source != "the meter at boot":
                LOGGER.warning("transaction %d: meter did not answer at boot; meterStop from %s (%.1f Wh)",
                               row.tx_local_id, source, meter_stop)
            reason, stop_wall, why = self._boot_stop(row, previous, current_boot,
                                                     row.last_wall if source != "the meter at boot" else self.now())
            stopped = TxStopped(row.tx_local_id, row.connector_id, meter_stop, stop_wall, reason, row.id_tag)
            self._durable(f"stop of transaction {row.tx_local_id}",
                          functools.partial(self.journal.stopped, stopped, self.stamp()))
            LOGGER.warning("transaction %d on connector %d stopped with reason %s (%s), meterStop %.1f Wh (%s)",
                           row.tx_local_id, row.connector_id, reason.value, why, meter_stop, source)

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

    async def poll_once(self) -> None:
        """One hardware poll: observations to the core, meter samples to the outbox."""
        observations = await self.hw.poll()
        for connector_id, obs in observations.items():
            self._observe(connector_id, obs)
        if self._deferred:
            self.flush_deferred()
        self.check_system_clock()
        self._sample_meters()
        self.feed(ev.Tick())

    def _observe(self, connector_id: int, obs: ConnectorObservation) -> None:
        state = self.connectors[connector_id]
        if obs.plugged is not None and obs.plugged != state.plugged:
            state.plugged = obs.plugged
            self.feed(ev.PlugChanged(connector_id, obs.plugged))
        if obs.ev_ready is not None and obs.ev_ready != state.ev_ready:
            state.ev_ready = obs.ev_ready
            self.feed(ev.EvReadyChanged(connector_id, obs.ev_ready))
        if obs.isolation_valid is not None and obs.isolation_valid != state.isolation_valid:
            state.isolation_valid = obs.isolation_valid
            self.feed(ev.IsolationChanged(connector_id, obs.isolation_valid))
        if obs.soc_pct is not None or obs.dc is not None:
            state.soc_pct = obs.soc_pct
        # faults: one code per source; a source that reports nothing any more has recovered
        current: dict[str, tuple[str, str, bool, bool, str]] = {}
        for (source, code), fault in sorted(obs.faults.items()):
            current.setdefault(source, (code, fault.message, fault.stops_charging, fault.suspends_charging,
                                        fault.role))
        for source in list(state.fault_codes):
            if source not in current:
                del state.fault_codes[source]
                self.feed(ev.FaultCleared(connector_id, source))
        for source, (code, message, stops, suspends, role_name) in current.items():
            # the same code raised again as stopping (a silence that went on too long) is news for the core
            key = f"{code}/{'stop' if stops else 'suspend' if suspends else 'warn'}"
            if state.fault_codes.get(source) != key:
                state.fault_codes[source] = key
                role = ROLES.get(role_name, ev.DeviceRole.OTHER)
                if suspends and not stops:
                    LOGGER.warning("connector %d: %s %s; charging suspended, the transaction goes on",
                                   connector_id, source, message)
                if code == "meter_replaced":
                    self._record_meter_replacement(connector_id, message)
                self.feed(ev.FaultRaised(connector_id, source, code, stops, role, message[:50],
                                         suspends_charging=suspends))
        if obs.meter is not None:
            state.reading = obs.meter
            self.feed(ev.MeterSample(connector_id, obs.meter.energy_import_wh, obs.meter.power_w))

    def _record_meter_replacement(self, connector_id: int, message: str) -> None:
        """A replaced or reset meter goes to the security log, where a technician and the bundle find it."""
        try:
            self.store.security_log_append("MeterReplaced", f"connector {connector_id}: {message}",
                                           wall_time=self.now(), clock_trusted=self.clock_trusted)
        except Exception as err:
            LOGGER.error("meter replacement not recorded: %s", err)

    def _sample_meters(self) -> None:
        # One instant for the whole pass, aligned first: a periodic sample stamped after an aligned instant is
        # queued after that instant's sample, so each transaction's MeterValues stay in time order.
        now = self.now()
        self._aligned(now)
        mono = time.monotonic()
        settings = self.settings
        stop_sampled = settings.ended_sampled_measurands
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
            if stop_sampled:
                self._keep_for_end(session.local_tx_id, sample, SampleTrigger.PERIODIC, now)
            self._durable(f"meter of transaction {session.local_tx_id}", functools.partial(
                self.store.update_transaction_meter, session.local_tx_id, state.reading.energy_import_wh, now),
                thinnable=True)

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
                if stop_aligned:
                    self._keep_for_end(session.local_tx_id, sample, SampleTrigger.CLOCK, instant)
            elif self.link_session is not None:
                # Not transaction-related: sent when online, never queued.
                self.link_session.send_sample(connector_id, sample, SampleTrigger.CLOCK, instant)

    async def actuator_loop(self, connector_id: int) -> None:
        """Executes contactor and limit commands of one connector in order; never dies."""
        state = self.connectors[connector_id]
        while True:
            item = await state.actuator.get()
            if isinstance(item, _Barrier):
                if not item.done.done():
                    item.done.set_result(None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(item.release), STOP_HOLD_TIMEOUT_S)
                continue
            try:
                await self._actuate(connector_id, item)
            except Exception:  # never dies: it is the only way to open on DC
                LOGGER.exception("connector %d: actuator step failed", connector_id)
            finally:
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)

    async def _actuate(self, connector_id: int, item: _Queued) -> None:
        """Carry out one contactor or limit command; a failure is logged, never raised."""
        state = self.connectors[connector_id]
        devices = self.hw.connectors[connector_id]
        cfg = self.config.connector(connector_id)
        op = item.op
        if item.after:
            _, late = await asyncio.wait(item.after, timeout=ORDER_WAIT_S)
            if late:
                LOGGER.warning("connector %d closes although %d other limit(s) of the same decision are not "
                               "applied after %.0f s", connector_id, len(late), ORDER_WAIT_S)
        wanted = self.core.connectors[connector_id].contactor_closed
        if isinstance(op, ev.SetContactor) and op.closed and not wanted:
            return  # superseded: the core decided to open since (a fault, an unplug in the same poll)
        try:
            if isinstance(op, ev.SetLimit):
                if devices.dc is not None:
                    await devices.dc.set_limits(op.current_a, self._power_limit_w(op, cfg))
            elif op.closed:
                devices.contactor.close()
                if devices.dc is not None:
                    await devices.dc.allow_charging(True)
            else:
                if devices.dc is not None:
                    await devices.dc.allow_charging(False)
                    await self._wait_current_down(devices)
                devices.contactor.open()
        except Exception as err:  # the loop must outlive any error: it is the only way to open on DC
            LOGGER.error("connector %d: %r failed: %s", connector_id, op, err)
            if not getattr(op, "closed", True):
                with contextlib.suppress(Exception):
                    devices.contactor.open()  # whatever the controller said, the power path opens
            return
        if isinstance(op, ev.SetContactor) and not op.closed:
            session = self.core.session(connector_id)
            if session is not None and state.reading is not None:
                try:  # the transaction row follows every contactor opening (power-loss fallback)
                    self.store.update_transaction_meter(session.local_tx_id, state.reading.energy_import_wh,
                                                        self.now())
                except Exception as err:
                    LOGGER.error("transaction %d meter not persisted: %s", session.local_tx_id, err)

    @staticmethod
    def _power_limit_w(op: ev.SetLimit, cfg: ConnectorConfig) -> float:
        """The controller's power register: the core's W on DC (no limit: the controller's own rating);
        on AC the pilot board's, the offered current on every real phase at nominal voltage."""
        if cfg.kind == "dc":
            return op.power_w if op.power_w is not None else math.inf
        return op.current_a * cfg.voltage_v * cfg.phases

    async def power_down(self, timeout_s: float = OPEN_RAMP_TIMEOUT_S) -> None:
        """Before the process exits: ramp every DC controller down, then open every contactor."""
        for devices in self.hw.connectors.values():
            if devices.dc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(devices.dc.allow_charging(False), timeout_s)
                    await asyncio.wait_for(self._wait_current_down(devices), timeout_s + 0.5)
            with contextlib.suppress(Exception):
                devices.contactor.open()

    @staticmethod
    async def _wait_current_down(devices: Any) -> None:
        deadline = time.monotonic() + OPEN_RAMP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                status = await devices.dc.read()
            except DriverError:
                return
            if status.present_a <= OPEN_SAFE_CURRENT_A:
                return
            await asyncio.sleep(0.05)
        LOGGER.warning("current still flowing after %.1f s; opening the contactor anyway", OPEN_RAMP_TIMEOUT_S)

    async def reader_loop(self) -> None:
        """Cards from the RFID reader to the core."""
        reader = self.hw.reader
        if reader is None:
            return
        start = getattr(reader, "start", None)
        if start is not None:
            start()
        while True:
            id_tag = await reader.read_id()
            LOGGER.info("card presented")
            self.feed(ev.IdPresented(None, id_tag))

    def estop_changed(self, pressed: bool) -> None:
        """E-stop callback, in the event loop (the contactors were already opened in the GPIO thread)."""
        LOGGER.warning("emergency stop %s", "pressed" if pressed else "released")
        self.feed(ev.EstopChanged(pressed))
        if not pressed:
            estop = self.hw.estop
            self._spawn(self.hw.reset_controllers(lambda: estop is not None and estop.pressed), "reset-controllers")

    async def run(self, poll_interval_s: float, on_first_poll: Callable[[], None] | None = None) -> None:
        """Recover, then poll and tick until cancelled."""
        loop = asyncio.get_running_loop()
        if self.hw.estop is not None:
            def from_gpio_thread(pressed: bool) -> None:
                loop.call_soon_threadsafe(self.estop_changed, pressed)

            self.hw.estop.on_change(from_gpio_thread)
            self.hw.bind_dc_shutdown(loop)
            if self.hw.estop.pressed:
                self.feed(ev.EstopChanged(True))
        await self.recover_power_loss()
        for connector_id in self.connectors:
            self._spawn(self.actuator_loop(connector_id), f"actuator-{connector_id}")
        self._spawn(self.reader_loop(), "rfid")
        first = True
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.poll_once()
                except Exception:
                    # observations were applied first (safety); a failing write must not stop the loop. The
                    # watchdog is not fed for this pass: a poll that keeps failing gets the daemon restarted.
                    LOGGER.exception("poll failed")
                    await asyncio.sleep(min(poll_interval_s, 1.0))
                    continue
                if first and self.hw.first_poll_ok:
                    first = False
                    if on_first_poll is not None:
                        on_first_poll()
                self.healthy_at = time.monotonic()
                elapsed = time.monotonic() - started
                if elapsed > max(2 * poll_interval_s, SLOW_POLL_S):
                    LOGGER.warning("hardware poll took %.1f s (devices slow or a bus shared with other requests)",
                                   elapsed)
                await asyncio.sleep(max(0.05, min(poll_interval_s, TICK_S * 4) - elapsed))
        finally:
            for task in list(self._tasks):
                task.cancel()

    # ------------------------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        """A status picture for evsectl and logs."""
        snap = self.core.snapshot()
        for cid, view in snap["connectors"].items():
            view.update(self.fault_names(self.core.fault(int(cid))))
        snap["link"] = {"online": self.link_session is not None, "clock_trusted": self.clock_trusted,
                        "clock_source": self.clock_source}
        snap["queue"] = self.store.outbox_stats()
        snap["devices"] = self.hw.status()
        if self.recovery_note:
            snap["recovery"] = self.recovery_note
        snap["storage"] = {"disk_full": self.disk_full_since is not None,
                           "disk_full_since": iso(self.disk_full_since) if self.disk_full_since else None,
                           "waiting_in_memory": len(self._deferred), "dropped": self.deferred_dropped,
                           "last_episode": self.storage_note}
        return snap

