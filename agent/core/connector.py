"""Per-connector state and the pure rules on it: contactor conditions, status and the fault reported with it.

The ChargePointCore mutates a Connector's fields in its handlers; the functions here only read them.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from agent.core.events import (
    FAULT_EMERGENCY_STOP,
    ConnectorStatus,
    DeviceRole,
    Fault,
    FaultRaised,
    IndicatorState,
)
from agent.core.limits import ChargingProfile
from agent.core.session import Authorization, Reservation, Session

LOGGER = logging.getLogger(__name__)

# Faulted, not Unavailable: Unavailable belongs to a change of availability, and the back office must see
# an alarm it can tell apart.
ESTOP_FAULT = Fault(FAULT_EMERGENCY_STOP, DeviceRole.ESTOP, info="emergency stop")


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """Static facts about a connector."""

    is_dc: bool = False
    max_current_a: float = 32.0  # config max (cable rating, installation)
    has_lock: bool = False  # a socket with a motor lock; tethered cables have none
    voltage_v: float = 230.0  # for W <-> A conversion of charging profiles
    phases: int = 3
    min_current_a: float = 6.0  # AC: IEC 61851-1 has no PWM duty cycle below 6 A (ignored on DC)
    free_vend_id: str | None = None  # set: a plug-in on this connector starts a transaction for this id
    evse_id: int | None = None  # the EVSE it belongs to (None: its own, numbered like the connector)


@dataclass(frozen=True, slots=True)
class Evse:
    """Connectors that share one power path: at most one of them runs a transaction at a time."""

    evse_id: int
    connector_ids: tuple[int, ...]


class Blocker(enum.StrEnum):
    """A reason the contactor may not close (empty set = it closes)."""

    NOT_AUTHORIZED = "not_authorized"
    NOT_PLUGGED = "not_plugged"
    EV_NOT_READY = "ev_not_ready"
    FAULT = "fault"
    ESTOP = "estop"
    ISOLATION = "isolation"
    LIMIT_ZERO = "limit_zero"
    LIMIT_BELOW_MINIMUM = "limit_below_minimum"  # AC: above 0 but below the 6 A the pilot can offer


@dataclass(frozen=True, slots=True)
class StatusView:
    """A status with the fault reported with it, as StatusChanged reports it."""

    status: ConnectorStatus
    fault: Fault | None = None


def fault_view(fault: FaultRaised, status: ConnectorStatus) -> StatusView:
    """The status view of a device's fault."""
    return StatusView(status, Fault.of(fault))


@dataclass(frozen=True, slots=True)
class Instant:
    """A moment of a connector: wall and monotonic time and its meter register then."""

    wall: float
    mono: float
    energy_wh: float | None


@dataclass(slots=True)
class Connector:
    """The mutable state of one connector (owned by ChargePointCore)."""

    connector_id: int
    config: ConnectorConfig = field(default_factory=ConnectorConfig)
    plugged: bool = False
    plugged_at: Instant | None = None  # when the EV was plugged in (an EVConnected start point dates from it)
    ev_ready: bool = False
    isolation_valid: bool = False
    hardware_max_a: float | None = None
    energy_wh: float | None = None
    power_w: float | None = None
    faults: dict[str, FaultRaised] = field(default_factory=dict)  # by source
    estop: bool = False
    operative: bool = True
    pending_operative: bool | None = None  # ChangeAvailability Scheduled until the transaction ends
    held: bool = False  # out of service while a technician's self-test runs (not persisted)
    reservation: Reservation | None = None
    auth: Authorization | None = None
    session: Session | None = None
    finishing: bool = False
    keep_locked_for: str | None = None  # the id that may release the cable (DeAuthorized, EV-side unplug)
    pending_tx_profile: ChargingProfile | None = None  # a RemoteStart chargingProfile, installed at the start
    # what the core last commanded / reported
    contactor_closed: bool = False
    locked: bool = False
    limit_a: float | None = None
    limit_w: float | None = None  # DC only: the power limit sent to the controller (None: unlimited)
    schedule_limit_a: float | None = None
    schedule_limit_w: float | None = None  # DC only: AC folds W into schedule_limit_a
    schedule_share: int = 1  # how many connectors the ChargePointMaxProfile was split between
    schedule_next_change: float | None = None
    schedule_evaluated_at: float | None = None
    indicator: IndicatorState | None = None
    candidate: StatusView | None = None
    candidate_since: float = 0.0
    reported: StatusView | None = None


def stopping_fault(connector: Connector, cp_faults: dict[str, FaultRaised]) -> FaultRaised | None:
    """The first active fault (connector or charge point) that stops charging, or None."""
    for fault in (*connector.faults.values(), *cp_faults.values()):
        if fault.stops_charging:
            return fault
    return None


def suspending_fault(connector: Connector, cp_faults: dict[str, FaultRaised]) -> FaultRaised | None:
    """The first active fault that suspends charging without ending the transaction, or None."""
    for fault in (*connector.faults.values(), *cp_faults.values()):
        if fault.suspends_charging and not fault.stops_charging:
            return fault
    return None


def warning_fault(connector: Connector, cp_faults: dict[str, FaultRaised]) -> FaultRaised | None:
    """The first active fault that does not stop charging (reported with the normal status), or None."""
    suspending = suspending_fault(connector, cp_faults)
    if suspending is not None:
        return suspending
    for fault in (*connector.faults.values(), *cp_faults.values()):
        if not fault.stops_charging:
            return fault
    return None


def effective_limit_a(connector: Connector) -> float:
    """min(config max, hardware max, charging schedule), never negative."""
    values = [connector.config.max_current_a]
    if connector.hardware_max_a is not None:
        values.append(connector.hardware_max_a)
    if connector.schedule_limit_a is not None:
        values.append(connector.schedule_limit_a)
    return max(0.0, min(values))


def effective_limit_w(connector: Connector) -> float | None:
    """DC: the charging schedule's power limit (W), never negative; None when no profile limits power."""
    if not connector.config.is_dc or connector.schedule_limit_w is None:
        return None
    return max(0.0, connector.schedule_limit_w)


def contactor_blockers(
    connector: Connector, cp_estop: bool, cp_faults: dict[str, FaultRaised]
) -> frozenset[Blocker]:
    """Every reason the contactor may not close now; it closes only when this is empty."""
    blockers: set[Blocker] = set()
    session = connector.session
    if session is None or session.energy_suspended:
        blockers.add(Blocker.NOT_AUTHORIZED)
    if not connector.plugged:
        blockers.add(Blocker.NOT_PLUGGED)
    if not connector.ev_ready:
        blockers.add(Blocker.EV_NOT_READY)
    if stopping_fault(connector, cp_faults) is not None or suspending_fault(connector, cp_faults) is not None:
        blockers.add(Blocker.FAULT)
    if cp_estop or connector.estop:
        blockers.add(Blocker.ESTOP)
    if connector.config.is_dc and not connector.isolation_valid:
        blockers.add(Blocker.ISOLATION)
    limit_a, limit_w = effective_limit_a(connector), effective_limit_w(connector)
    if limit_a <= 0 or (limit_w is not None and limit_w <= 0):
        blockers.add(Blocker.LIMIT_ZERO)
    elif not connector.config.is_dc and limit_a < connector.config.min_current_a:
        blockers.add(Blocker.LIMIT_BELOW_MINIMUM)
    return frozenset(blockers)


def connector_status(
    connector: Connector, cp_estop: bool, cp_faults: dict[str, FaultRaised]
) -> StatusView:
    """The status the connector is in now (before MinimumStatusDuration)."""
    if cp_estop or connector.estop:
        return StatusView(ConnectorStatus.FAULTED, ESTOP_FAULT)
    fault = stopping_fault(connector, cp_faults)
    if fault is not None:
        return fault_view(fault, ConnectorStatus.FAULTED)
    fault = suspending_fault(connector, cp_faults)
    if fault is not None and connector.session is None:
        return fault_view(fault, ConnectorStatus.FAULTED)  # unusable until it clears: nothing can start
    status = _plain_status(connector, cp_estop, cp_faults)
    warning = warning_fault(connector, cp_faults)
    if warning is not None:
        return fault_view(warning, status)
    return StatusView(status)


def _plain_status(connector: Connector, cp_estop: bool, cp_faults: dict[str, FaultRaised]) -> ConnectorStatus:
    session = connector.session
    if session is not None:
        if not connector.plugged or not connector.ev_ready:
            return ConnectorStatus.SUSPENDED_EV
        if connector.contactor_closed:
            return ConnectorStatus.CHARGING
        return ConnectorStatus.SUSPENDED_EVSE
    if not connector.operative or connector.held:
        return ConnectorStatus.UNAVAILABLE
    if connector.plugged and connector.finishing:
        return ConnectorStatus.FINISHING
    if connector.plugged or connector.auth is not None:
        return ConnectorStatus.PREPARING
    if connector.reservation is not None:
        return ConnectorStatus.RESERVED
    return ConnectorStatus.AVAILABLE


_INDICATOR = {
    ConnectorStatus.AVAILABLE: IndicatorState.AVAILABLE,
    ConnectorStatus.PREPARING: IndicatorState.PREPARING,
    ConnectorStatus.CHARGING: IndicatorState.CHARGING,
    ConnectorStatus.SUSPENDED_EV: IndicatorState.SUSPENDED,
    ConnectorStatus.SUSPENDED_EVSE: IndicatorState.SUSPENDED,
    ConnectorStatus.FINISHING: IndicatorState.FINISHING,
    ConnectorStatus.RESERVED: IndicatorState.RESERVED,
    ConnectorStatus.UNAVAILABLE: IndicatorState.UNAVAILABLE,
    ConnectorStatus.FAULTED: IndicatorState.FAULTED,
}


# The EVSE shows the connector that says most about it: one in use, then one reserved, then a free one.
_EVSE_ORDER = (ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EVSE, ConnectorStatus.SUSPENDED_EV,
               ConnectorStatus.FINISHING, ConnectorStatus.PREPARING, ConnectorStatus.RESERVED,
               ConnectorStatus.AVAILABLE, ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED)


def evse_status(statuses: list[ConnectorStatus]) -> ConnectorStatus:
    """The status of an EVSE from its connectors' statuses."""
    return min(statuses, key=_EVSE_ORDER.index)


def indicator_for(status: ConnectorStatus) -> IndicatorState:
    """The LED state that shows a connector status."""
    return _INDICATOR[status]
