"""ChargePointCore: the connectors' state machines and session rules, driven by inputs and commands.

Every entry point takes the wall time `now` and, optionally, the monotonic time (defaults to `now`).
Wall time stamps transactions and decides reservation expiry and charging schedules (the back office
speaks wall time); monotonic time runs ConnectionTimeOut and MinimumStatusDuration, so an NTP jump at
boot cannot expire them.

Each entry point first applies the event, then reconciles every connector in a fixed order: start a
transaction that became possible, apply an invalid id, expire authorizations and reservations,
re-evaluate the charging schedule, then command limit, contactor, lock and indicator, and report statuses.
Outputs that open a contactor come before the transaction record of the same stop.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.core.connector import (
    ESTOP_FAULT,
    Blocker,
    Connector,
    ConnectorConfig,
    Evse,
    Instant,
    StatusView,
    connector_status,
    contactor_blockers,
    effective_limit_a,
    effective_limit_w,
    evse_status,
    fault_view,
    indicator_for,
    stopping_fault,
    suspending_fault,
)
from agent.core.events import (
    AuthorizationRejected,
    Authorized,
    AuthResult,
    AuthStatus,
    AvailabilityResult,
    CancelReservation,
    CancelReservationResult,
    ChangeAvailability,
    ClearChargingProfile,
    ClearProfileResult,
    ConnectorStatus,
    Deauthorized,
    EnergyTransferResumed,
    EnergyTransferStarted,
    EnergyTransferSuspended,
    EstopChanged,
    EvConnected,
    EvDisconnected,
    EvReadyChanged,
    Fault,
    FaultCleared,
    FaultRaised,
    IdPresented,
    Input,
    IsolationChanged,
    LimitChanged,
    LinkChanged,
    MeterSample,
    NeedAuthorize,
    Output,
    PlugChanged,
    ProfileResult,
    RemoteStart,
    RemoteStartResult,
    RemoteStop,
    RemoteStopResult,
    ReservationEnded,
    ReservationEndReason,
    ReservationResult,
    ReserveNow,
    ResetKind,
    ResetRequested,
    ResetResult,
    SetChargingProfile,
    SetContactor,
    SetLimit,
    SetLock,
    ShowIndicator,
    StatusChanged,
    StopReason,
    SuspendedBy,
    Tick,
    TransactionConfirmed,
    TransactionStarted,
    TransactionStopped,
    UnlockRequested,
    UnlockResult,
)
from agent.core.faults import stop_reason_for
from agent.core.limits import (
    ChargingProfile,
    CompositePeriod,
    ElectricalSetup,
    Limit,
    ProfilePurpose,
    RateUnit,
    clear_profiles,
    composite_schedule,
    connector_limit,
    drop_tx_profiles,
    floor_tenth,
    install_profile,
    limit_at,
    schedule_limits,
    with_connector,
)
from agent.core.session import (
    Authorization,
    AuthSource,
    Intent,
    IntentKind,
    InvalidIdAction,
    Reservation,
    Session,
    invalid_id_action,
    reservation_accepts,
    same_group,
)
from drivers.base import mask_id  # a card id in a log: its last four characters only

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The configuration the core needs; replace `core.settings` with a new instance to change it live."""

    connectors: tuple[ConnectorConfig, ...] = (ConnectorConfig(),)
    connection_timeout_s: float = 60.0
    stop_transaction_on_invalid_id: bool = True
    max_energy_on_invalid_id_wh: float | None = None
    stop_transaction_on_ev_side_disconnect: bool = True
    unlock_connector_on_ev_side_disconnect: bool = True
    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False
    authorize_remote_tx_requests: bool = False
    # ids of this group (parent id) stop every transaction and start none (2.0.1 C16 master pass; None: no such)
    master_pass_group: str | None = None
    free_vend_id: str | None = None  # set: a plug-in on any connector starts a transaction for this id
    minimum_status_duration_s: float = 0.0
    # when a transaction starts and stops (2.0.1's TxStartPoint/TxStopPoint names; 1.6: PowerPathClosed, i.e.
    # authorized and plugged). A transaction always needs an authorized id and a plugged EV: a start point
    # reached before both (Authorized, EVConnected) dates the start and meterStart back to it; EnergyTransfer
    # waits for the power path to close. Unplugging ends it only with EVConnected or PowerPathClosed among
    # the stop points (and stop_transaction_on_ev_side_disconnect); a deauthorization always ends it.
    tx_start_point: tuple[str, ...] = ("PowerPathClosed",)
    tx_stop_point: tuple[str, ...] = ("PowerPathClosed",)
    max_stack_level: int = 100  # ChargeProfileMaxStackLevel
    max_profiles_installed: int = 20  # MaxChargingProfilesInstalled
    max_schedule_periods: int = 24  # ChargingScheduleMaxPeriods


@dataclass(slots=True)
class _Clock:
    wall: float
    mono: float


@dataclass(slots=True)
class _Run:
    """The outputs and the clock of one entry-point call."""

    clock: _Clock
    out: list[Output] = field(default_factory=list)


class ChargePointCore:
    """Connectors 1..N of one charge point, their sessions, reservations, availability and limits.

    Transaction ids: `tx_id_allocator()` is called once per TransactionStarted and must return a new
    int never used before (the store owns persistence: pass `store.next_local_tx_id`). Without one, a
    counter starting at `first_tx_id` is used. The back office's transactionId arrives later with
    TransactionConfirmed and is carried in TransactionStopped.transaction_id.
    """

    def __init__(
        self,
        settings: CoreSettings,
        *,
        tx_id_allocator: Callable[[], int] | None = None,
        first_tx_id: int = 1,
    ) -> None:
        if not settings.connectors:
            raise ValueError("a charge point needs at least one connector")
        self.settings = settings
        self._allocate = tx_id_allocator or itertools.count(first_tx_id).__next__
        self.connectors: dict[int, Connector] = {
            i: Connector(i, cfg) for i, cfg in enumerate(settings.connectors, start=1)
        }
        groups: dict[int, list[int]] = {}
        for i, cfg in enumerate(settings.connectors, start=1):
            groups.setdefault(i if cfg.evse_id is None else cfg.evse_id, []).append(i)
        self.evses: dict[int, Evse] = {e: Evse(e, tuple(ids)) for e, ids in sorted(groups.items())}
        self._evse_of = {i: e.evse_id for e in self.evses.values() for i in e.connector_ids}
        self.online = False
        self.cp_operative = True
        self.cp_pending_operative: bool | None = None  # ChangeAvailability(0) Scheduled until transactions end
        self.storage_ok = True  # False while the state disk is full: running sessions go on, none starts
        self.cp_estop = False
        self.cp_faults: dict[str, FaultRaised] = {}
        self.profiles: list[ChargingProfile] = []
        self._intents: dict[str, Intent] = {}
        self._cp_auth: Authorization | None = None  # shared reader / RemoteStart without connector
        self._cp_candidate: StatusView | None = None
        self._cp_candidate_since = 0.0
        self._cp_reported: StatusView | None = None

    # ------------------------------------------------------------------------------ boot and views

    def restore(
        self,
        *,
        availability: Mapping[int, bool] | None = None,
        profiles: Iterable[ChargingProfile] = (),
        energy_wh: Mapping[int, float] | None = None,
        reservations: Iterable[Reservation] = (),
    ) -> None:
        """Load persisted state at boot: availability per connector (0 = charge point), profiles, meters,
        reservations (one that expired while the agent was down ends as Expired at the first tick)."""
        for connector_id, operative in (availability or {}).items():
            if connector_id == 0:
                self.cp_operative = operative
                if not operative:  # the charge point inoperative makes every connector so
                    for c in self.connectors.values():
                        c.operative = False
            elif connector_id in self.connectors:
                self.connectors[connector_id].operative = operative
        self.profiles = [p for p in profiles if p.purpose is not ProfilePurpose.TX]
        for connector_id, energy in (energy_wh or {}).items():
            if connector_id in self.connectors:
                self.connectors[connector_id].energy_wh = energy
        for r in reservations:
            if r.connector_id in self.connectors and self._reservation(r.reservation_id) is None:
                self.connectors[r.connector_id].reservation = r
        for c in self.connectors.values():
            c.schedule_evaluated_at = None

    def reservations(self) -> list[Reservation]:
        """The reservations held now, to persist (a reboot keeps them)."""
        return [c.reservation for c in self.connectors.values() if c.reservation is not None]

    def availability(self) -> dict[int, bool]:
        """Operative flags to persist (0 = charge point). A Scheduled change is persisted as its target: after
        a reboot no transaction runs, so it applies at once (an Unavailable charge point stays so)."""
        cp_target = self.cp_operative if self.cp_pending_operative is None else self.cp_pending_operative
        result = {0: cp_target}
        for i, c in self.connectors.items():
            target = c.operative if self.cp_pending_operative is None else self.cp_pending_operative
            result[i] = target if c.pending_operative is None else c.pending_operative
        return result

    def current_statuses(self, now: float, monotonic: float | None = None) -> list[StatusChanged]:
        """The status of the charge point (0) and every connector, to send after boot or reconnect.

        Only a report: actuator outputs come from handle() (feed a Tick at boot to get the first ones).
        """
        run = self._run(now, monotonic)
        result: list[StatusChanged] = []
        cp_view = self._cp_view()
        self._cp_candidate = self._cp_reported = cp_view
        result.append(self._status_out(0, cp_view, run))
        for c in self.connectors.values():
            view = connector_status(c, self.cp_estop, self.cp_faults)
            c.candidate = c.reported = view
            result.append(self._status_out(c.connector_id, view, run))
        return result

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly view for evsectl status and diagnostics."""
        connectors = {}
        for i, c in self.connectors.items():
            view = connector_status(c, self.cp_estop, self.cp_faults)
            s = c.session
            connectors[str(i)] = {
                "status": view.status.value,
                "fault": fault_dict(view.fault),
                "reported_status": c.reported.status.value if c.reported else None,
                "operative": c.operative,
                "pending_operative": c.pending_operative,
                "plugged": c.plugged,
                "ev_ready": c.ev_ready,
                "isolation_valid": c.isolation_valid if c.config.is_dc else None,
                "contactor_closed": c.contactor_closed,
                "blockers": sorted(b.value for b in contactor_blockers(c, self.cp_estop, self.cp_faults)),
                "locked": c.locked,
                "limit_a": c.limit_a,
                "schedule_limit_a": c.schedule_limit_a,
                "energy_wh": c.energy_wh,
                "power_w": c.power_w,
                "faults": {src: f.code for src, f in c.faults.items()},
                "authorized_id": c.auth.id_tag if c.auth else None,
                "reservation": None if c.reservation is None else {
                    "reservation_id": c.reservation.reservation_id,
                    "id_tag": c.reservation.id_tag,
                    "expiry": c.reservation.expiry,
                },
                "transaction": None if s is None else {
                    "local_tx_id": s.local_tx_id,
                    "transaction_id": s.transaction_id,
                    "id_tag": s.id_tag,
                    "start": s.start_wall,
                    "meter_start_wh": s.meter_start_wh,
                    "invalid": s.invalid,
                    "energy_suspended": s.energy_suspended,
                },
            }
        return {
            "online": self.online,
            "operative": self.cp_operative,
            "pending_operative": self.cp_pending_operative,
            "estop": self.cp_estop,
            "faults": {src: f.code for src, f in self.cp_faults.items()},
            "status": self._cp_view().status.value,
            "pending_authorizations": sorted(self._intents),
            "profiles": [
                {"id": p.profile_id, "connector_id": p.connector_id, "purpose": p.purpose.value,
                 "stack_level": p.stack_level}
                for p in self.profiles
            ],
            "connectors": connectors,
        }

    def fault(self, connector_id: int) -> Fault | None:
        """The fault a connector's status reports now (0: the charge point's), or None."""
        if connector_id == 0:
            return self._cp_view().fault
        c = self.connectors.get(connector_id)
        return None if c is None else connector_status(c, self.cp_estop, self.cp_faults).fault

    def evse_status(self, evse_id: int) -> ConnectorStatus | None:
        """The status of an EVSE (None: unknown EVSE)."""
        evse = self.evses.get(evse_id)
        if evse is None:
            return None
        return evse_status([connector_status(self.connectors[i], self.cp_estop, self.cp_faults).status
                            for i in evse.connector_ids])

    def session(self, connector_id: int) -> Session | None:
        """The running transaction of a connector, if any."""
        c = self.connectors.get(connector_id)
        return None if c is None else c.session

    # -------------------------------------------------------------------------------------- inputs

    def handle(self, event: Input, now: float, monotonic: float | None = None) -> list[Output]:
        """Apply one observation (hardware, auth answer, link, tick) and return the decisions."""
        run = self._run(now, monotonic)
        match event:
            case PlugChanged():
                self._on_plug(event, run)
            case EvReadyChanged():
                if (c := self._connector(event.connector_id)) is not None:
                    c.ev_ready = event.ready
            case IsolationChanged():
                if (c := self._connector(event.connector_id)) is not None:
                    c.isolation_valid = event.valid
            case IdPresented():
                self._on_id(event, run)
            case AuthResult():
                self._on_auth_result(event, run)
            case TransactionConfirmed():
                self._on_tx_confirmed(event, run)
            case FaultRaised():
                self._on_fault(event, run)
            case FaultCleared():
                self._on_fault_cleared(event, run)
            case EstopChanged():
                self._on_estop(event, run)
            case MeterSample():
                if (c := self._connector(event.connector_id)) is not None:
                    c.energy_wh = event.energy_wh
                    c.power_w = event.power_w
            case LinkChanged():
                self.online = event.online
            case LimitChanged():
                if (c := self._connector(event.connector_id)) is not None:
                    c.hardware_max_a = event.hardware_max_a
            case Tick():
                pass
            case _:
                raise TypeError(f"not a core input: {event!r}")
        self._reconcile(run)
        return run.out

    # ------------------------------------------------------------------------------------ commands

    def remote_start(
        self, cmd: RemoteStart, now: float, monotonic: float | None = None
    ) -> tuple[RemoteStartResult, list[Output]]:
        """RemoteStartTransaction: Accepted when the id can be started (on the chosen connector)."""
        run = self._run(now, monotonic)
        result = self._remote_start(cmd, run)
        self._reconcile(run)
        return result, run.out

    def remote_stop(
        self, cmd: RemoteStop, now: float, monotonic: float | None = None
    ) -> tuple[RemoteStopResult, list[Output]]:
        """RemoteStopTransaction by the back office's transactionId."""
        run = self._run(now, monotonic)
        result = RemoteStopResult.REJECTED
        for c in self.connectors.values():
            if c.session is not None and (c.session.local_tx_id == cmd.local_tx_id if cmd.local_tx_id is not None
                                          else c.session.transaction_id == cmd.transaction_id):
                self._stop(c, StopReason.REMOTE, run)
                result = RemoteStopResult.ACCEPTED
                break
        self._reconcile(run)
        return result, run.out

    def change_availability(
        self, cmd: ChangeAvailability, now: float, monotonic: float | None = None
    ) -> tuple[AvailabilityResult, list[Output]]:
        """ChangeAvailability: Accepted, Scheduled (a transaction runs; applied when it ends) or Rejected."""
        run = self._run(now, monotonic)
        if cmd.connector_id == 0:
            busy = any(c.session is not None for c in self.connectors.values())
            changes = self.cp_operative != cmd.operative or any(
                c.operative != cmd.operative for c in self.connectors.values())
            if busy and changes:
                # OCPP 1.6 5.2: Scheduled, and nothing changes (connector 0 included) until the transactions end
                self.cp_pending_operative = cmd.operative
                return AvailabilityResult.SCHEDULED, []
            self.cp_pending_operative = None
            self.cp_operative = cmd.operative
            targets = list(self.connectors.values())
        elif (c := self.connectors.get(cmd.connector_id)) is not None:
            targets = [c]
        else:
            return AvailabilityResult.REJECTED, []
        result = AvailabilityResult.ACCEPTED
        for c in targets:
            if c.session is not None and c.operative != cmd.operative:
                c.pending_operative = cmd.operative
                result = AvailabilityResult.SCHEDULED
            else:
                c.pending_operative = None
                self._set_operative(c, cmd.operative)
        self._reconcile(run)
        return result, run.out

    def reserve_now(
        self, cmd: ReserveNow, now: float, monotonic: float | None = None
    ) -> tuple[ReservationResult, list[Output]]:
        """ReserveNow on a connector. Connector 0 is not supported (ReserveConnectorZeroSupported=false)."""
        run = self._run(now, monotonic)
        c = self.connectors.get(cmd.connector_id)
        if c is None or cmd.expiry <= now:
            return ReservationResult.REJECTED, []
        existing = self._reservation(cmd.reservation_id)
        result = self._reservation_answer(c, cmd)
        if result is ReservationResult.ACCEPTED:
            if existing is not None and existing is not c:
                # the same reservation id moves (OCPP 1.6 5.13: replace), only once the new place accepts it:
                # a refused ReserveNow leaves the reservation where it was
                existing.reservation = None
            c.reservation = Reservation(cmd.reservation_id, c.connector_id, cmd.id_tag, cmd.expiry,
                                        cmd.parent_id_tag)
        self._reconcile(run)
        return result, run.out

    def cancel_reservation(
        self, cmd: CancelReservation, now: float, monotonic: float | None = None
    ) -> tuple[CancelReservationResult, list[Output]]:
        """CancelReservation: Accepted when the reservation exists."""
        run = self._run(now, monotonic)
        c = self._reservation(cmd.reservation_id)
        if c is None:
            return CancelReservationResult.REJECTED, []
        c.reservation = None
        run.out.append(ReservationEnded(cmd.reservation_id, ReservationEndReason.CANCELLED, c.connector_id))
        self._reconcile(run)
        return CancelReservationResult.ACCEPTED, run.out

    def unlock(
        self, cmd: UnlockRequested, now: float, monotonic: float | None = None
    ) -> tuple[UnlockResult, list[Output]]:
        """UnlockConnector: stop its transaction (UnlockCommand) and release the cable.

        Unlocked is the core's expectation; the hardware layer reports a lock that did not open as a
        lock_failure fault, which makes the next unlock answer UnlockFailed.
        """
        run = self._run(now, monotonic)
        c = self.connectors.get(cmd.connector_id)
        if c is None or not c.config.has_lock:
            return UnlockResult.NOT_SUPPORTED, []
        refusal = self.unlock_refusal(cmd.connector_id)
        if refusal is not None:
            LOGGER.warning("connector %d: unlock refused: %s", cmd.connector_id, refusal)
            return UnlockResult.UNLOCK_FAILED, []
        if c.session is not None:
            self._stop(c, StopReason.UNLOCK_COMMAND, run)
        c.keep_locked_for = None
        self._set_lock(c, False, run)
        self._reconcile(run)
        failed = any(f.code == "lock_failure" for f in c.faults.values())
        return (UnlockResult.UNLOCK_FAILED if failed else UnlockResult.UNLOCKED), run.out

    def unlock_refusal(self, connector_id: int) -> str | None:
        """Why the cable may not be released now (None: it may)."""
        c = self.connectors.get(connector_id)
        if c is not None and _welded(c):
            return "the contactor is welded: the power path may be live, the cable stays locked"
        return None

    def any_held(self) -> bool:
        """True while the charge point is held out of service (a self-test runs)."""
        return any(c.held for c in self.connectors.values())

    def hold(self, held: bool, now: float, monotonic: float | None = None) -> list[Output]:
        """Take every connector out of service (Unavailable, nothing starts) for a self-test, or give it back."""
        run = self._run(now, monotonic)
        for c in self.connectors.values():
            c.held = held
            if held:
                c.auth = None
        if held:
            self._cp_auth = None
            self._intents.clear()
        self._reconcile(run)
        return run.out

    def reset(
        self, cmd: ResetRequested, now: float, monotonic: float | None = None
    ) -> tuple[ResetResult, list[Output]]:
        """Reset: stop every transaction (HardReset/SoftReset) before the adapter restarts."""
        run = self._run(now, monotonic)
        reason = StopReason.HARD_RESET if cmd.kind is ResetKind.HARD else StopReason.SOFT_RESET
        for c in self.connectors.values():
            if c.session is not None:
                self._stop(c, reason, run)
            c.auth = None
        self._cp_auth = None
        self._intents.clear()
        self._reconcile(run)
        return ResetResult.ACCEPTED, run.out

    def set_charging_profile(
        self, cmd: SetChargingProfile, now: float, monotonic: float | None = None
    ) -> tuple[ProfileResult, list[Output]]:
        """SetChargingProfile: apply the install rules, re-evaluate limits."""
        run = self._run(now, monotonic)
        profile = with_connector(cmd.profile, cmd.connector_id)
        if len(profile.schedule.periods) > self.settings.max_schedule_periods:
            LOGGER.warning("charging profile %d rejected: %d periods, ChargingScheduleMaxPeriods is %d",
                           profile.profile_id, len(profile.schedule.periods), self.settings.max_schedule_periods)
            return ProfileResult.REJECTED, []
        c = self.connectors.get(cmd.connector_id)
        session = c.session if c is not None else None
        if (profile.purpose is ProfilePurpose.TX and session is not None
                and profile.transaction_id is not None and session.transaction_id is None):
            return ProfileResult.REJECTED, []
        result, installed = install_profile(
            self.profiles,
            profile,
            connector_ids=self.connectors,
            active_tx_id=session.transaction_id if session else None,
            has_tx=session is not None,
            max_stack_level=self.settings.max_stack_level,
        )
        if result is ProfileResult.ACCEPTED and len(installed) > self.settings.max_profiles_installed:
            LOGGER.warning("charging profile %d rejected: MaxChargingProfilesInstalled (%d) reached",
                           profile.profile_id, self.settings.max_profiles_installed)
            return ProfileResult.REJECTED, []
        self.profiles = installed
        self._limits_dirty()
        self._reconcile(run)
        return result, run.out

    def clear_charging_profile(
        self, cmd: ClearChargingProfile, now: float, monotonic: float | None = None
    ) -> tuple[ClearProfileResult, list[Output]]:
        """ClearChargingProfile by id, or by connector/purpose/stack level."""
        run = self._run(now, monotonic)
        try:
            result, self.profiles = clear_profiles(
                self.profiles, profile_id=cmd.profile_id, connector_id=cmd.connector_id,
                purpose=cmd.purpose, stack_level=cmd.stack_level,
            )
        except ValueError:
            return ClearProfileResult.UNKNOWN, []
        self._limits_dirty()
        self._reconcile(run)
        return result, run.out

    def composite_schedule(
        self, connector_id: int, duration_s: float, unit: RateUnit | str, now: float
    ) -> list[CompositePeriod] | None:
        """GetCompositeSchedule: periods from now (None for an unknown connector); 0 is the charge point's total."""
        if connector_id == 0:
            return composite_schedule(self.profiles, 0, now, duration_s, unit, setup=self._station_setup())
        c = self.connectors.get(connector_id)
        if c is None:
            return None
        s = c.session
        ceiling = c.config.max_current_a
        if c.hardware_max_a is not None:
            ceiling = min(ceiling, c.hardware_max_a)
        return composite_schedule(
            self.profiles, connector_id, now, duration_s, unit,
            tx_start=s.start_wall if s else None, tx_id=s.transaction_id if s else None,
            setup=_setup(c), ceiling_a=ceiling, share=self._shares(now)[connector_id],
        )

    # ------------------------------------------------------------------------------ input handlers

    def _on_plug(self, event: PlugChanged, run: _Run) -> None:
        c = self._connector(event.connector_id)
        if c is None:
            return
        c.plugged = event.plugged
        tx_id = c.session.local_tx_id if c.session is not None else None
        if event.plugged:
            c.plugged_at = Instant(run.clock.wall, run.clock.mono, c.energy_wh)
            run.out.append(EvConnected(c.connector_id, run.clock.wall, tx_id))
            if (c.session is None and c.auth is None and self._cp_auth is not None
                    and self._startable(c) and self._reservation_ok(c, self._cp_auth.id_tag,
                                                                    self._cp_auth.parent_id_tag)):
                c.auth, self._cp_auth = self._cp_auth, None
            free_vend = c.config.free_vend_id or self.settings.free_vend_id
            if (free_vend and c.session is None and c.auth is None and self._startable(c)
                    and self._reservation_ok(c, free_vend, None)):
                self._grant(c, free_vend, None, AuthSource.FREE_VEND, run)
            return
        c.ev_ready = False
        if c.config.is_dc:
            c.isolation_valid = False  # a new plug-in needs a new cable check
        c.finishing = False
        c.plugged_at = None
        if c.session is not None:
            if self.settings.stop_transaction_on_ev_side_disconnect and self._unplug_stops():
                tag = c.session.id_tag
                self._stop(c, StopReason.EV_DISCONNECTED, run, keep_lock=True)
                if self.settings.unlock_connector_on_ev_side_disconnect:
                    self._set_lock(c, False, run)
                else:
                    c.keep_locked_for = tag
            else:
                self._open(c, run)  # the transaction goes on (SuspendedEV) until stopped or re-plugged
        elif c.keep_locked_for is not None and self.settings.unlock_connector_on_ev_side_disconnect:
            c.keep_locked_for = None
            self._set_lock(c, False, run)
        run.out.append(EvDisconnected(c.connector_id, run.clock.wall, tx_id))  # after the contactor opened

    def _unplug_stops(self) -> bool:
        """Whether unplugging at the EV side ends a transaction (a stop point that needs the EV connected)."""
        return bool(set(self.settings.tx_stop_point) & {"EVConnected", "PowerPathClosed"})

    def _on_id(self, event: IdPresented, run: _Run) -> None:
        tag = event.id_tag
        candidates = (
            list(self.connectors.values()) if event.connector_id is None
            else [c for c in [self._connector(event.connector_id)] if c is not None]
        )
        if not candidates:
            return
        for c in candidates:
            if c.session is not None and c.session.id_tag == tag:
                self._stop(c, StopReason.LOCAL, run, by=tag)  # the same card again: no Authorize needed
                return
        for c in candidates:
            if c.keep_locked_for == tag:
                c.keep_locked_for = None
                self._set_lock(c, False, run)
                return
        if event.connector_id is None:
            intent = Intent(IntentKind.ANY, None, token_type=event.token_type)
        else:
            c = candidates[0]
            kind = IntentKind.STOP if c.session is not None else IntentKind.START
            if kind is IntentKind.START and not self._startable(c):
                run.out.append(AuthorizationRejected(c.connector_id, tag, AuthStatus.INVALID))
                return
            intent = Intent(kind, c.connector_id, token_type=event.token_type)
        self._intents[tag] = intent
        run.out.append(NeedAuthorize(tag, event.connector_id))

    def _on_auth_result(self, event: AuthResult, run: _Run) -> None:
        intent = self._intents.pop(event.id_tag, None)
        if intent is None:
            LOGGER.debug("authorization result for %s without a pending request", mask_id(event.id_tag))
            return
        tag, parent = event.id_tag, event.parent_id_tag
        # ConcurrentTx still proves the card's identity and group, which is all a stop needs.
        stop_ok = intent.kind is IntentKind.STOP and event.status is AuthStatus.CONCURRENT_TX
        if event.status is not AuthStatus.ACCEPTED and not stop_ok:
            run.out.append(AuthorizationRejected(intent.connector_id, tag, event.status))
            return
        if parent is not None and parent == self.settings.master_pass_group:
            self._master_pass(intent, tag, run)
            return
        target = self.connectors.get(intent.connector_id) if intent.connector_id is not None else None
        if intent.kind is IntentKind.ANY:
            target = self._pick_for_any(tag, parent, may_stop=intent.source is not AuthSource.REMOTE)
            if target is None:
                # Card first on a shared reader with several free connectors: wait for a plug anywhere.
                if any(self._startable(c) and self._reservation_ok(c, tag, parent)
                       for c in self.connectors.values()):
                    self._grant(None, tag, parent, intent.source, run, intent.token_type)
                else:
                    run.out.append(AuthorizationRejected(None, tag, AuthStatus.INVALID))
                return
        if target is None:
            return
        if target.session is not None:
            s = target.session
            # Only a card presented to stop may stop; a start that lost the race to another start is refused.
            if intent.kind is not IntentKind.START and same_group(s.id_tag, s.parent_id_tag, tag, parent):
                self._stop(target, StopReason.LOCAL, run, by=tag)
            else:
                run.out.append(AuthorizationRejected(target.connector_id, tag, AuthStatus.INVALID))
            return
        if not self._startable(target) or not self._reservation_ok(target, tag, parent):
            run.out.append(AuthorizationRejected(target.connector_id, tag, AuthStatus.INVALID))
            return
        self._grant(target, tag, parent, intent.source, run, intent.token_type)

    def _master_pass(self, intent: Intent, tag: str, run: _Run) -> None:
        """A master pass stops every running transaction (no screen to choose one) and starts none."""
        running = [c for c in self.connectors.values() if c.session is not None]
        if not running or intent.source is AuthSource.REMOTE:
            LOGGER.info("master pass %s: nothing to stop; it starts no transaction", mask_id(tag))
            run.out.append(AuthorizationRejected(intent.connector_id, tag, AuthStatus.INVALID))
            return
        for c in running:
            self._stop(c, StopReason.MASTER_PASS, run, by=tag)

    def _pick_for_any(self, tag: str, parent: str | None, *, may_stop: bool) -> Connector | None:
        """Shared reader: a plugged idle connector to start, else a transaction of the same group to stop."""
        for c in self.connectors.values():
            if (c.session is None and c.plugged and c.auth is None and self._startable(c)
                    and self._reservation_ok(c, tag, parent)):
                return c
        for c in self.connectors.values():
            if (may_stop and c.session is not None
                    and same_group(c.session.id_tag, c.session.parent_id_tag, tag, parent)):
                return c
        free = [c for c in self.connectors.values()
                if c.session is None and self._startable(c) and self._reservation_ok(c, tag, parent)]
        return free[0] if len(self.connectors) == 1 and free else None

    def _on_tx_confirmed(self, event: TransactionConfirmed, run: _Run) -> None:
        for c in self.connectors.values():
            s = c.session
            if s is None or s.local_tx_id != event.local_tx_id:
                continue
            s.transaction_id = event.transaction_id
            if event.status is not AuthStatus.ACCEPTED and not s.invalid:
                LOGGER.info("transaction %d: id %s is %s", s.local_tx_id, mask_id(s.id_tag), event.status.value)
                run.out.append(Deauthorized(c.connector_id, s.local_tx_id, s.id_tag, run.clock.wall))
                s.invalid = True
                s.invalid_since_wh = c.energy_wh if c.energy_wh is not None else s.meter_start_wh
            self._limits_dirty(c)
            return

    def _on_fault(self, event: FaultRaised, run: _Run) -> None:
        if event.connector_id == 0:
            self.cp_faults[event.source] = event
            affected = list(self.connectors.values())
        elif (c := self._connector(event.connector_id)) is not None:
            c.faults[event.source] = event
            affected = [c]
        else:
            return
        if event.code == WELDED_CODE:
            for c in affected:
                if c.plugged:
                    self._set_lock(c, True, run)  # the cable may be live: it must not come out
        if not event.stops_charging:
            if event.suspends_charging:
                for c in affected:
                    self._open(c, run)  # the transaction goes on, suspended, until the fault clears or escalates
            return
        for c in affected:
            self._open(c, run)  # open first: safety before bookkeeping
            if c.session is not None:
                self._stop(c, stop_reason_for(event.code), run)
            c.auth = None

    def _on_fault_cleared(self, event: FaultCleared, run: _Run) -> None:
        if event.connector_id == 0:
            self.cp_faults.pop(event.source, None)
        elif (c := self._connector(event.connector_id)) is not None:
            gone = c.faults.pop(event.source, None)
            if (gone is not None and gone.code == WELDED_CODE and not _welded(c) and c.session is None
                    and c.keep_locked_for is None):
                self._set_lock(c, False, run)  # the contactor opened after all: the cable may go

    def _on_estop(self, event: EstopChanged, run: _Run) -> None:
        if event.connector_id == 0:
            self.cp_estop = event.pressed
            affected = list(self.connectors.values())
        elif (c := self._connector(event.connector_id)) is not None:
            c.estop = event.pressed
            affected = [c]
        else:
            return
        if not event.pressed:
            return
        for c in affected:
            self._open(c, run)
        for c in affected:
            if c.session is not None:
                self._stop(c, StopReason.EMERGENCY_STOP, run)
            c.auth = None
        self._cp_auth = None

    # ------------------------------------------------------------------------------------- helpers

    def _remote_start(self, cmd: RemoteStart, run: _Run) -> RemoteStartResult:
        tx_profile = cmd.tx_profile
        if tx_profile is not None:
            tx_profile = with_connector(tx_profile, cmd.connector_id or 0)
            if tx_profile.purpose is not ProfilePurpose.TX:
                return RemoteStartResult.REJECTED
        chosen: Connector | None
        if cmd.connector_id is not None:
            chosen = self.connectors.get(cmd.connector_id)
            if chosen is None or chosen.session is not None or not self._startable(chosen):
                return RemoteStartResult.REJECTED
            if chosen.reservation is not None and chosen.reservation.id_tag != cmd.id_tag:
                return RemoteStartResult.REJECTED
        else:
            free = [c for c in self.connectors.values()
                    if c.session is None and self._startable(c)
                    and (c.reservation is None or c.reservation.id_tag == cmd.id_tag)]
            if not free:
                return RemoteStartResult.REJECTED
            plugged = [c for c in free if c.plugged and c.auth is None]
            chosen = plugged[0] if plugged else (free[0] if len(self.connectors) == 1 else None)
            if chosen is None:
                # Several free connectors and none plugged: the first plug-in takes it (like a shared
                # reader); a chargingProfile cannot be placed before the connector is known and is dropped.
                if self.settings.authorize_remote_tx_requests:
                    self._intents[cmd.id_tag] = Intent(IntentKind.ANY, None, AuthSource.REMOTE)
                    run.out.append(NeedAuthorize(cmd.id_tag, None))
                else:
                    self._grant(None, cmd.id_tag, None, AuthSource.REMOTE, run)
                return RemoteStartResult.ACCEPTED
        c = chosen
        if tx_profile is not None:
            c.pending_tx_profile = with_connector(tx_profile, c.connector_id)
        if self.settings.authorize_remote_tx_requests:
            self._intents[cmd.id_tag] = Intent(IntentKind.START, c.connector_id, AuthSource.REMOTE)
            run.out.append(NeedAuthorize(cmd.id_tag, c.connector_id))
        else:
            self._grant(c, cmd.id_tag, None, AuthSource.REMOTE, run)
        return RemoteStartResult.ACCEPTED

    def _reservation_answer(self, c: Connector, cmd: ReserveNow) -> ReservationResult:
        if self.cp_estop or c.estop or stopping_fault(c, self.cp_faults) is not None:
            return ReservationResult.FAULTED
        if not c.operative or not self.cp_operative:
            return ReservationResult.UNAVAILABLE
        if c.session is not None or c.plugged or c.auth is not None:
            return ReservationResult.OCCUPIED
        if c.reservation is not None and c.reservation.reservation_id != cmd.reservation_id:
            return ReservationResult.OCCUPIED
        return ReservationResult.ACCEPTED

    def _reservation(self, reservation_id: int) -> Connector | None:
        for c in self.connectors.values():
            if c.reservation is not None and c.reservation.reservation_id == reservation_id:
                return c
        return None

    def _reservation_ok(self, c: Connector, tag: str, parent: str | None) -> bool:
        return c.reservation is None or reservation_accepts(c.reservation, tag, parent)

    def _startable(self, c: Connector) -> bool:
        """A new authorization may be attached: operative, no stopping fault, no e-stop, its EVSE free."""
        return (c.operative and self.cp_operative and not c.held and self.storage_ok and not self.cp_estop
                and not c.estop and not self._evse_busy(c)
                and stopping_fault(c, self.cp_faults) is None and suspending_fault(c, self.cp_faults) is None)

    def _evse_busy(self, c: Connector) -> bool:
        """Another connector of the same EVSE runs a transaction (one power path, one transaction)."""
        evse = self.evses[self._evse_of[c.connector_id]]
        return any(self.connectors[i].session is not None for i in evse.connector_ids if i != c.connector_id)

    def _set_operative(self, c: Connector, operative: bool) -> None:
        c.operative = operative
        if not operative:
            c.auth = None

    def _connector(self, connector_id: int) -> Connector | None:
        c = self.connectors.get(connector_id)
        if c is None:
            LOGGER.warning("event for unknown connector %d ignored", connector_id)
        return c

    def _run(self, now: float, monotonic: float | None) -> _Run:
        return _Run(_Clock(now, now if monotonic is None else monotonic))

    def _open(self, c: Connector, run: _Run) -> None:
        if c.contactor_closed:
            c.contactor_closed = False
            run.out.append(SetContactor(c.connector_id, False))

    def _set_lock(self, c: Connector, locked: bool, run: _Run) -> None:
        if not locked and _welded(c):
            return  # a welded contactor may leave the cable live: it stays locked until the fault clears
        if c.config.has_lock and c.locked != locked:
            c.locked = locked
            run.out.append(SetLock(c.connector_id, locked))

    def _limits_dirty(self, only: Connector | None = None) -> None:
        for c in [only] if only is not None else self.connectors.values():
            c.schedule_evaluated_at = None

    def _grant(self, c: Connector | None, tag: str, parent: str | None, source: AuthSource, run: _Run,
               token_type: str | None = None) -> None:
        """Attach an authorization to a connector (None: the charge point's, for the first plug-in)."""
        auth = Authorization(tag, parent, source, run.clock.mono, run.clock.wall,
                             c.energy_wh if c is not None else None)
        if c is None:
            self._cp_auth = auth
        else:
            c.auth = auth
        run.out.append(Authorized(None if c is None else c.connector_id, tag, source, run.clock.wall, token_type))

    def _start_point(self, c: Connector, auth: Authorization, run: _Run) -> Instant | None:
        """When the transaction of an authorized, plugged connector starts (None: not yet)."""
        assert c.energy_wh is not None
        points = set(self.settings.tx_start_point)
        now = Instant(run.clock.wall, run.clock.mono, c.energy_wh)
        reached: list[Instant] = []
        if "PowerPathClosed" in points or not points & _START_POINTS:
            reached.append(now)
        if "Authorized" in points:
            reached.append(Instant(auth.granted_wall, auth.granted_monotonic,
                                    c.energy_wh if auth.granted_energy_wh is None else auth.granted_energy_wh))
        if "EVConnected" in points and c.plugged_at is not None:
            plug = c.plugged_at
            reached.append(Instant(plug.wall, plug.mono, c.energy_wh if plug.energy_wh is None else plug.energy_wh))
        if "EnergyTransfer" in points and contactor_blockers(c, self.cp_estop, self.cp_faults) <= {
                Blocker.NOT_AUTHORIZED}:
            reached.append(now)  # the power path closes in this pass, once the transaction exists
        # the contactor never closed before the start, so the register then and now differ by no billed energy
        return min(reached, key=lambda instant: instant.mono, default=None)

    def _start(self, c: Connector, auth: Authorization, run: _Run, at: Instant) -> None:
        try:
            local_tx_id = self._allocate()
        except Exception as err:  # the allocator persists the id: no storage, no transaction (no energy)
            LOGGER.error("connector %d: no transaction id for %s (%s); start refused", c.connector_id,
                         auth.id_tag, err)
            c.auth = None
            return
        reservation_id = None
        if c.reservation is not None:
            reservation_id = c.reservation.reservation_id
            c.reservation = None
            run.out.append(ReservationEnded(reservation_id, ReservationEndReason.USED, c.connector_id))
        meter_start = c.energy_wh if at.energy_wh is None else at.energy_wh
        assert meter_start is not None  # _reconcile starts only with a reading
        c.session = Session(
            local_tx_id=local_tx_id, connector_id=c.connector_id, id_tag=auth.id_tag,
            parent_id_tag=auth.parent_id_tag, start_wall=at.wall, start_monotonic=at.mono,
            meter_start_wh=meter_start, reservation_id=reservation_id,
        )
        c.auth = None
        c.finishing = False
        c.keep_locked_for = None
        LOGGER.info("connector %d: transaction %d started for %s", c.connector_id, c.session.local_tx_id,
                    mask_id(auth.id_tag))
        run.out.append(TransactionStarted(c.connector_id, c.session.local_tx_id, auth.id_tag, meter_start,
                                          at.wall, reservation_id, auth.parent_id_tag))
        self._set_lock(c, True, run)
        if c.pending_tx_profile is not None:
            _, self.profiles = install_profile(
                self.profiles, c.pending_tx_profile, connector_ids=self.connectors,
                active_tx_id=None, has_tx=True, max_stack_level=self.settings.max_stack_level)
            c.pending_tx_profile = None
        self._limits_dirty(c)

    def _stop(self, c: Connector, reason: StopReason, run: _Run, *, keep_lock: bool = False,
              by: str | None = None) -> None:
        s = c.session
        if s is None:
            return
        self._open(c, run)
        meter_stop = c.energy_wh if c.energy_wh is not None else s.meter_start_wh
        LOGGER.info("connector %d: transaction %d stopped (%s)", c.connector_id, s.local_tx_id, reason.value)
        run.out.append(TransactionStopped(c.connector_id, s.local_tx_id, meter_stop, run.clock.wall, reason,
                                          s.id_tag, s.transaction_id, by))
        c.session = None
        c.finishing = c.plugged
        self.profiles = drop_tx_profiles(self.profiles, c.connector_id)
        self._limits_dirty(c)
        if reason is StopReason.DEAUTHORIZED:
            # OCPP 1.6 3.6.1: the cable stays locked until the EV side unplugs or the same id returns.
            c.keep_locked_for = s.id_tag
        elif not keep_lock:
            self._set_lock(c, False, run)
        if c.pending_operative is not None:
            self._set_operative(c, c.pending_operative)
            c.pending_operative = None
        if self.cp_pending_operative is not None and all(o.session is None for o in self.connectors.values()):
            operative, self.cp_pending_operative = self.cp_pending_operative, None
            self.cp_operative = operative
            for o in self.connectors.values():
                o.pending_operative = None
                self._set_operative(o, operative)

    # ----------------------------------------------------------------------------------- reconcile

    def _reconcile(self, run: _Run) -> None:
        clock = run.clock
        timeout = self.settings.connection_timeout_s
        if self._cp_auth is not None and clock.mono - self._cp_auth.granted_monotonic >= timeout:
            LOGGER.info("authorization of %s expired without a plug-in", mask_id(self._cp_auth.id_tag))
            self._cp_auth = None
        for c in self.connectors.values():
            if c.auth is not None and c.session is None:
                if c.plugged and self._startable(c) and c.energy_wh is not None:
                    # meterStart needs a reading: before the first one the start waits (a meter that does
                    # not answer raises its fault, which ends the authorization: no charging)
                    at = self._start_point(c, c.auth, run)
                    if at is not None:
                        self._start(c, c.auth, run, at)
                elif not c.plugged and clock.mono - c.auth.granted_monotonic >= timeout:
                    LOGGER.info("connector %d: ConnectionTimeOut for %s", c.connector_id, mask_id(c.auth.id_tag))
                    c.auth = None
                    c.pending_tx_profile = None
            if c.reservation is not None and clock.wall >= c.reservation.expiry:
                run.out.append(ReservationEnded(c.reservation.reservation_id, ReservationEndReason.EXPIRED,
                                                c.connector_id))
                c.reservation = None
            self._apply_invalid_id(c, run)
        # Limits after every start and stop of this call: the shared cap is split by the final count, and
        # every decrease is commanded before any increase or contactor closing.
        shares = self._shares(clock.wall)
        for c in self.connectors.values():
            self._apply_schedule(c, clock, shares[c.connector_id])
        wanted = {i: self._limit(c) for i, c in self.connectors.items()}
        for lowering in (True, False):
            for i, c in self.connectors.items():
                limit_a, limit_w = wanted[i]
                if (limit_a, limit_w) == (c.limit_a, c.limit_w):
                    continue
                lower = c.limit_a is None or limit_a < c.limit_a or (
                    limit_w is not None and (c.limit_w is None or limit_w < c.limit_w))
                if lower is lowering:
                    c.limit_a, c.limit_w = limit_a, limit_w
                    run.out.append(SetLimit(c.connector_id, limit_a, limit_w))
        for c in self.connectors.values():
            close = not contactor_blockers(c, self.cp_estop, self.cp_faults)
            if close != c.contactor_closed:
                c.contactor_closed = close
                run.out.append(SetContactor(c.connector_id, close))
            self._energy_event(c, run)
            view = connector_status(c, self.cp_estop, self.cp_faults)
            indicator = indicator_for(view.status)
            if indicator != c.indicator:
                c.indicator = indicator
                run.out.append(ShowIndicator(c.connector_id, indicator))
            if view != c.candidate:
                c.candidate, c.candidate_since = view, clock.mono
            if (c.candidate != c.reported
                    and clock.mono - c.candidate_since >= self.settings.minimum_status_duration_s):
                c.reported = c.candidate
                run.out.append(self._status_out(c.connector_id, view, run))
        cp_view = self._cp_view()
        if cp_view != self._cp_candidate:
            self._cp_candidate, self._cp_candidate_since = cp_view, clock.mono
        if (self._cp_candidate != self._cp_reported
                and clock.mono - self._cp_candidate_since >= self.settings.minimum_status_duration_s):
            self._cp_reported = self._cp_candidate
            run.out.append(self._status_out(0, cp_view, run))

    @staticmethod
    def _energy_event(c: Connector, run: _Run) -> None:
        """Report a change of the transaction's energy transfer (started, suspended by EV or EVSE, resumed)."""
        s = c.session
        if s is None:
            return
        if c.contactor_closed:
            if not s.energy_began:
                s.energy_began = True
                run.out.append(EnergyTransferStarted(c.connector_id, s.local_tx_id, run.clock.wall))
            elif s.suspended_by is not None:
                s.suspended_by = None
                run.out.append(EnergyTransferResumed(c.connector_id, s.local_tx_id, run.clock.wall))
            return
        if not s.energy_began:
            return  # not started yet: nothing was suspended
        by = SuspendedBy.EV if not c.plugged or not c.ev_ready else SuspendedBy.EVSE
        if by is not s.suspended_by:
            s.suspended_by = by
            run.out.append(EnergyTransferSuspended(c.connector_id, s.local_tx_id, by, run.clock.wall))

    def _apply_invalid_id(self, c: Connector, run: _Run) -> None:
        s = c.session
        if s is None or not s.invalid or s.energy_suspended:
            return
        used = (c.energy_wh if c.energy_wh is not None else s.invalid_since_wh) - s.invalid_since_wh
        action = invalid_id_action(used, self.settings.max_energy_on_invalid_id_wh,
                                   self.settings.stop_transaction_on_invalid_id)
        if action is InvalidIdAction.STOP:
            self._stop(c, StopReason.DEAUTHORIZED, run)
        elif action is InvalidIdAction.SUSPEND:
            s.energy_suspended = True
            self._open(c, run)

    def _shares(self, now: float) -> dict[int, int]:
        """Per connector, how many split the ChargePointMaxProfile (0: no share, paused)."""
        # Connectors with a transaction split it evenly; one without is counted in (the share it would get).
        # When an even split would give an AC connector less than its 6 A minimum, only as many as the cap
        # carries at the minimum share it, in the order their transactions started; later ones pause
        # (SuspendedEVSE) until one stops or the cap rises.
        active = sorted((c for c in self.connectors.values() if c.session is not None),
                        key=lambda c: (c.session.start_monotonic if c.session else 0.0, c.connector_id))
        _, cap = schedule_limits(self.profiles, 0, now)
        n = len(active)
        while n > 1 and any(_below_minimum(c, cap, n) for c in active[:n]):
            n -= 1
        shares = {c.connector_id: (n if i < n else 0) for i, c in enumerate(active)}
        for c in self.connectors.values():
            shares.setdefault(c.connector_id, len(active) + 1)
        return shares

    def _station_setup(self) -> ElectricalSetup:
        """W<->A for connector 0 (the charge point's total): the AC connectors' phases and voltage."""
        ac = [c.config for c in self.connectors.values() if not c.config.is_dc]
        first = ac[0] if ac else next(iter(self.connectors.values())).config
        return ElectricalSetup(first.voltage_v, max((cfg.phases for cfg in ac), default=first.phases),
                               is_dc=not ac)

    def _apply_schedule(self, c: Connector, clock: _Clock, share: int) -> None:
        due = (c.schedule_evaluated_at is None or clock.wall < c.schedule_evaluated_at
               or share != c.schedule_share
               or (c.schedule_next_change is not None and clock.wall >= c.schedule_next_change))
        if not due:
            return
        s = c.session
        limit, c.schedule_next_change = limit_at(
            self.profiles, c.connector_id, clock.wall,
            tx_start=s.start_wall if s else None, tx_id=s.transaction_id if s else None,
            setup=_setup(c), share=share,
        )
        c.schedule_limit_a, c.schedule_limit_w = limit.amps, limit.watts
        c.schedule_share = share
        c.schedule_evaluated_at = clock.wall

    @staticmethod
    def _limit(c: Connector) -> tuple[float, float | None]:
        """(A, W or None) to command: rounded down, so the sum of shares never exceeds the cap."""
        limit_w = effective_limit_w(c)
        limit_a = floor_tenth(effective_limit_a(c))
        if not c.config.is_dc and limit_a < c.config.min_current_a:
            limit_a = 0.0  # paused: a pilot duty cycle below 6 A means something else (IEC 61851-1)
        return limit_a, None if limit_w is None else math.floor(limit_w)

    def _cp_view(self) -> StatusView:
        if self.cp_estop:
            return StatusView(ConnectorStatus.FAULTED, ESTOP_FAULT)
        held = self.any_held()
        plain = ConnectorStatus.AVAILABLE if self.cp_operative and not held else ConnectorStatus.UNAVAILABLE
        for fault in self.cp_faults.values():
            return fault_view(fault, ConnectorStatus.FAULTED if fault.stops_charging else plain)
        return StatusView(plain)

    @staticmethod
    def _status_out(connector_id: int, view: StatusView, run: _Run) -> StatusChanged:
        return StatusChanged(connector_id, view.status, view.fault, run.clock.wall)


WELDED_CODE = "contactor_welded"
_START_POINTS = {"Authorized", "EVConnected", "PowerPathClosed", "EnergyTransfer"}  # the ones the core can see


def fault_dict(fault: Fault | None) -> dict[str, str] | None:
    """A fault as the snapshot shows it (the runtime adds the active protocol's names for it)."""
    if fault is None:
        return None
    return {"code": fault.code, "role": fault.role.value, "source": fault.source, "info": fault.info}


def _welded(c: Connector) -> bool:
    """A welded contactor: the power path may be live whatever the coil is told."""
    return any(f.code == WELDED_CODE for f in c.faults.values())


def _below_minimum(c: Connector, cap: Limit, share: int) -> bool:
    """Whether an even share of the cap would give this AC connector less than its minimum current."""
    if c.config.is_dc:
        return False
    amps = connector_limit(Limit(), cap, share, _setup(c)).amps
    return amps is not None and amps < c.config.min_current_a


def _setup(c: Connector) -> ElectricalSetup:
    return ElectricalSetup(c.config.voltage_v, c.config.phases, is_dc=c.config.is_dc)


def connector_ids(settings: CoreSettings) -> Sequence[int]:
    """The connector ids a CoreSettings describes (1..N)."""
    return list(range(1, len(settings.connectors) + 1))
