"""The charge point at run time: feeds hardware observations to the core and executes its decisions.

One `Agent` per process. It owns the core (pure rules), the store (SQLite), the hardware (drivers), and
talks to the back office through whichever protocol connection is up (`self.link_session`). Transaction
messages never go to the wire from here: they are committed to the outbox, and the connection's sender
drains the outbox in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agent.cardid import CardLog, id_max_len
from agent.clock import iso, system_clock_synchronized
from agent.config import AgentConfig
from agent.core import events as ev
from agent.core.chargepoint import ChargePointCore, CoreSettings
from agent.core.connector import ConnectorConfig as CoreConnectorConfig
from agent.core.limits import ChargingProfile
from agent.core.session import Reservation
from agent.hardware import ConnectorObservation, Hardware
from agent.ports import ConfigVocabulary, Stamp, TransactionJournal
from agent.settings import SettingsSource
from agent.store import Store
from drivers.base import mask_id
from drivers.errors import DriverError

if TYPE_CHECKING:
    from agent.security.manager import SecurityManager
    from agent.services.firmware import FirmwareManager

from agent.runtime.actuators import ActuatorsMixin
from agent.runtime.base import (
    ROLES,
    SLOW_POLL_S,
    TICK_S,
    AgentBase,
    ConnectorState,
    LinkSession,
    _Deferred,
    _domain_fault_names,
    _Queued,
)
from agent.runtime.operations import Operations
from agent.runtime.recovery import RecoveryMixin
from agent.runtime.transactions import TransactionsMixin

LOGGER = logging.getLogger(__name__)


class Agent(TransactionsMixin, RecoveryMixin, ActuatorsMixin, AgentBase):
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
        self.core.restore(availability=self._persisted_availability(), profiles=profiles,
                          reservations=self._persisted_reservations())
        self._kept_reservations = tuple(dataclasses.replace(r) for r in self.core.reservations())
        for connector_id in hardware.welded_at_start:
            if connector_id in self.core.connectors:
                self.core.connectors[connector_id].locked = True  # locked by the daemon before anything ran
        self.healthy_at = 0.0  # monotonic time of the last complete main-loop pass
        self.exit_requested: asyncio.Future[int] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._next_aligned: float | None = None
        self._next_end_aligned: float | None = None
        self.settings_source.subscribe(self._on_settings_changed)
        self.settings_source.add_measurand_check(self.unprovidable)
        self.recovery_note: str | None = None  # set when a damaged state database was replaced at start
        # the card id format and the last cards read (evsectl card --watch, status, the bundle)
        self.cards = CardLog(config.card_id, id_max_len(str(config.backoffice.ocpp_version)))
        self._deferred: collections.deque[_Deferred] = collections.deque()  # records waiting for disk space
        self.disk_full_since: float | None = None
        self.deferred_dropped = 0
        self.storage_note: str | None = None  # the last disk-full episode, for evsectl status
        self._unrecorded_starts: set[int] = set()  # connectors faulted because a start found the disk full
        self._unrecorded_tx: set[int] = set()  # local ids of those starts
        self._signed_starts: dict[int, asyncio.Future[None]] = {}  # starts waiting for a signing meter's begin
        self.meter_public_keys: dict[int, str] = {}  # connector id -> its signing meter's key (hex DER)
        self.log_lines: Callable[[], list[str]] = list  # recent log lines for diagnostics (set by the daemon)
        # The services, built and given their ports by agent/daemon.py (wire_services); the 1.6 handlers reach
        # them through the agent.
        self.security: SecurityManager | None = None
        self.firmware: FirmwareManager
        # how the active protocol names a fault in `evsectl status` (set by the daemon: the back office's words)
        self.fault_names: Callable[[ev.Fault | None], dict[str, Any]] = _domain_fault_names
        # the active protocol's record of a reservation that ended (2.0.1 reports an expiry; set by the daemon)
        self.reservation_ended: Callable[[ev.ReservationEnded, Stamp], None] | None = None
        self.operations = Operations(self)  # the operations ledger: uptime, utilization, wear (issue 15)

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
            master_pass_group=s.master_pass_group_id,
            minimum_status_duration_s=s.minimum_status_duration_s,
            tx_start_point=s.tx_start_point,
            tx_stop_point=s.tx_stop_point,
            max_stack_level=s.max_stack_level,
            max_profiles_installed=s.max_profiles_installed,
            max_schedule_periods=s.max_schedule_periods,
        )

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
        if "ended_aligned_interval_s" in changed:
            self._next_end_aligned = None
        if "ended_sample_interval_s" in changed:
            ended = self.settings.ended_sample_interval_s
            for connector_id, state in self.connectors.items():
                running = self.core.session(connector_id) is not None
                state.next_end_sample_mono = time.monotonic() + ended if ended and running else None

    def _persisted_availability(self) -> dict[int, bool]:
        ids = [0, *self.connectors]
        return {i: self.store.availability_get(i) for i in ids}

    def feed(self, event: ev.Input) -> None:
        """Apply an observation to the core and execute what it decides."""
        self._ledger_sees(self.operations.observe_input, event)
        self.execute(self.core.handle(event, self.now(), time.monotonic()))

    def execute(self, outputs: list[ev.Output]) -> None:
        """Carry out the core's decisions, in order."""
        limits: dict[int, asyncio.Future[None]] = {}  # the limits commanded in this decision, per connector
        for out in outputs:
            try:
                self._execute_one(out, limits)
            except Exception:  # one failing output must not stop the others (e.g. the contactor opening)
                LOGGER.exception("executing %r failed", out)
        self._keep_reservations()
        self._ledger_sees(self.operations.observe_outputs, outputs)

    def _keep_reservations(self) -> None:
        """Persist the reservations when they changed (every command and tick passes here): a reboot keeps them."""
        held = tuple(self.core.reservations())
        if held == self._kept_reservations:
            return
        try:
            self.store.reservations_set([dataclasses.asdict(r) for r in held])
            self._kept_reservations = tuple(dataclasses.replace(r) for r in held)  # copies: compared by value
        except Exception as err:  # the reservation holds in memory; the next change tries again
            LOGGER.error("reservations not persisted: %s", err)

    def _persisted_reservations(self) -> list[Reservation]:
        """The reservations of the previous run (unreadable entries are dropped with a warning)."""
        kept = []
        for item in self.store.reservations_get():
            try:
                kept.append(Reservation(int(item["reservation_id"]), int(item["connector_id"]), str(item["id_tag"]),
                                        float(item["expiry"]), None if item.get("parent_id_tag") is None
                                        else str(item["parent_id_tag"])))
            except (KeyError, TypeError, ValueError) as err:
                LOGGER.warning("a persisted reservation is unreadable (%s): dropped", err)
        return kept

    @staticmethod
    def _ledger_sees(observe: Callable[[Any], None], what: Any) -> None:
        """The operations ledger watches; its failure never stops the charge point."""
        try:
            observe(what)
        except Exception:
            LOGGER.exception("operations ledger failed on %r", what)

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
                if self.reservation_ended is not None:
                    self.reservation_ended(out, self.stamp())
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

    def _outbox_changed(self) -> None:
        if self.link_session is not None:
            self.link_session.outbox_changed()

    def security_manager(self) -> SecurityManager:
        """The security event recorder (set by agent/daemon.py wire_services)."""
        if self.security is None:
            raise RuntimeError("no security manager: agent/daemon.py wire_services() was not called")
        return self.security

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
            state.isolation_valid = None  # a plug change asks for a new cable check: the next result is news
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

    async def reader_loop(self) -> None:
        """Cards from the RFID reader to the core."""
        reader = self.hw.reader
        if reader is None:
            return
        start = getattr(reader, "start", None)
        if start is not None:
            start()
        while True:
            card = await reader.read_card()
            # the one place a UID becomes an id: the [card_id] format, for every reader
            seen = self.cards.record(card, self.now())
            if seen.id_tag is None:
                LOGGER.warning("card %s on %s refused: %s", mask_id(seen.uid), card.reader, seen.refused)
                continue
            LOGGER.info("card %s presented (%s)", mask_id(seen.id_tag), seen.token_type)
            self.feed(ev.IdPresented(None, seen.id_tag, token_type=seen.token_type))

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
        self._spawn(self.learn_public_keys(), "meter-public-keys")
        for connector_id in self.connectors:
            self._spawn(self.actuator_loop(connector_id), f"actuator-{connector_id}")
        self._spawn(self.reader_loop(), "rfid")
        if any(d.imd is not None for d in self.hw.connectors.values()):
            self._spawn(self.hw.imd_self_tests_at_start(), "imd-selftest")  # beside the polls: it takes seconds
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
        snap["cards"] = self.cards.status()
        snap["storage"] = {"disk_full": self.disk_full_since is not None,
                           "disk_full_since": iso(self.disk_full_since) if self.disk_full_since else None,
                           "waiting_in_memory": len(self._deferred), "dropped": self.deferred_dropped,
                           "last_episode": self.storage_note}
        return snap
