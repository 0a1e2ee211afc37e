"""The core's API vocabulary: enums, inputs (observations and commands) and outputs (decisions).

Everything here is a frozen dataclass or an enum with OCPP 1.6 compatible string values and
protocol-neutral names, so the 1.6 adapter can pass `.value` straight into a payload and the 2.0.1
adapter can translate. Faults are the domain's (`Fault`: the driver's code and the device's role); each
adapter names them in its protocol's words (1.6: agent/ocpp/v16/statuses.py). Nothing here does I/O.
Times are wall seconds (epoch floats) unless the name says monotonic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.core.profiles import ChargingProfile
from drivers.base import IndicatorState

__all__ = [
    "FAULT_EMERGENCY_STOP",
    "FAULT_LOCAL_LIST_CONFLICT",
    "ISOLATION_FAULT_CODES",
    "VEHICLE_FAULT_CODES",
    "AuthResult",
    "AuthSource",
    "AuthStatus",
    "AuthorizationRejected",
    "Authorized",
    "AvailabilityResult",
    "CancelReservation",
    "CancelReservationResult",
    "ChangeAvailability",
    "ClearChargingProfile",
    "ClearProfileResult",
    "Command",
    "ConnectorStatus",
    "Deauthorized",
    "DeviceRole",
    "EnergyTransferResumed",
    "EnergyTransferStarted",
    "EnergyTransferSuspended",
    "EstopChanged",
    "EvConnected",
    "EvDisconnected",
    "EvReadyChanged",
    "Fault",
    "FaultCleared",
    "FaultRaised",
    "IdPresented",
    "IndicatorState",
    "Input",
    "IsolationChanged",
    "LimitChanged",
    "LinkChanged",
    "MeterSample",
    "NeedAuthorize",
    "Output",
    "PlugChanged",
    "ProfileResult",
    "RemoteStart",
    "RemoteStartResult",
    "RemoteStop",
    "RemoteStopResult",
    "ReservationEndReason",
    "ReservationEnded",
    "ReservationResult",
    "ReserveNow",
    "ResetKind",
    "ResetRequested",
    "ResetResult",
    "SessionEvent",
    "SetChargingProfile",
    "SetContactor",
    "SetLimit",
    "SetLock",
    "ShowIndicator",
    "StatusChanged",
    "StopReason",
    "SuspendedBy",
    "Tick",
    "TransactionConfirmed",
    "TransactionStarted",
    "TransactionStopped",
    "UnlockRequested",
    "UnlockResult",
]


# --------------------------------------------------------------------------------------------- enums


class ConnectorStatus(enum.StrEnum):
    """Connector status; values are the OCPP 1.6 ChargePointStatus strings."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(enum.StrEnum):
    """Why a transaction stopped; values are the OCPP 1.6 Reason strings."""

    LOCAL = "Local"
    REMOTE = "Remote"
    EV_DISCONNECTED = "EVDisconnected"
    EMERGENCY_STOP = "EmergencyStop"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    DEAUTHORIZED = "DeAuthorized"
    HARD_RESET = "HardReset"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    OTHER = "Other"
    MASTER_PASS = "MasterPass"  # a master pass stopped it (2.0.1 C16; only 2.0.1 configures a master pass group)
    GROUND_FAULT = "GroundFault"  # an insulation (isolation) fault stopped it (2.0.1's word; 1.6 reports Other)
    STOPPED_BY_EV = "StoppedByEV"  # the vehicle reported a fault and ended its session (2.0.1; 1.6 says Other)


class AuthStatus(enum.StrEnum):
    """Authorization status of an id; values are the OCPP 1.6 AuthorizationStatus strings."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class DeviceRole(enum.StrEnum):
    """Which kind of device raised a fault; a protocol names a generic fault code by it."""

    METER = "meter"
    DC_CONTROLLER = "dc_controller"
    CONTACTOR = "contactor"
    LOCK = "lock"
    ID_READER = "id_reader"
    ESTOP = "estop"
    INSULATION_MONITOR = "insulation_monitor"
    OTHER = "other"


class AuthSource(enum.StrEnum):
    """How an authorization was granted."""

    CARD = "card"
    REMOTE = "remote"
    FREE_VEND = "free_vend"


class SuspendedBy(enum.StrEnum):
    """Which side stopped drawing energy during a transaction."""

    EV = "EV"  # the EV does not ask (not ready, or unplugged while the transaction goes on)
    EVSE = "EVSE"  # the station does not offer (a fault, a limit of 0, an id found invalid)


class ResetKind(enum.StrEnum):
    """Reset type; values are the OCPP 1.6 ResetType strings."""

    HARD = "Hard"
    SOFT = "Soft"


class RemoteStartResult(enum.StrEnum):
    """Answer to a remote start."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


RemoteStopResult = RemoteStartResult
ResetResult = RemoteStartResult


class AvailabilityResult(enum.StrEnum):
    """Answer to a change of availability."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    SCHEDULED = "Scheduled"


class ReservationResult(enum.StrEnum):
    """Answer to a reservation request."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelReservationResult(enum.StrEnum):
    """Answer to a reservation cancellation."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class UnlockResult(enum.StrEnum):
    """Answer to an unlock request."""

    UNLOCKED = "Unlocked"
    UNLOCK_FAILED = "UnlockFailed"
    NOT_SUPPORTED = "NotSupported"


class ProfileResult(enum.StrEnum):
    """Answer to installing a charging profile."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    NOT_SUPPORTED = "NotSupported"


class ClearProfileResult(enum.StrEnum):
    """Answer to clearing charging profiles."""

    ACCEPTED = "Accepted"
    UNKNOWN = "Unknown"


class ReservationEndReason(enum.StrEnum):
    """Why a reservation ended."""

    USED = "Used"
    EXPIRED = "Expired"
    CANCELLED = "Cancelled"


# -------------------------------------------------------------------------------------------- inputs
# Observations from agent/hardware and from the adapter; fed through ChargePointCore.handle().


@dataclass(frozen=True, slots=True)
class PlugChanged:
    """A cable was plugged into (or removed from) an EV on this connector."""

    connector_id: int
    plugged: bool


@dataclass(frozen=True, slots=True)
class EvReadyChanged:
    """The EV asks for energy (IEC 61851 state C/D, or the DC sequence reached "ready") or stopped asking."""

    connector_id: int
    ready: bool


@dataclass(frozen=True, slots=True)
class IsolationChanged:
    """The DC insulation monitor says the isolation is valid (or not, or not measured yet)."""

    connector_id: int
    valid: bool


@dataclass(frozen=True, slots=True)
class IdPresented:
    """A card was read. connector_id None: a reader shared by all connectors (the core picks one)."""

    connector_id: int | None
    id_tag: str
    token_type: str | None = None  # what proved the id ("ISO14443", "Local"...); None: the protocol's default


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The answer to a NeedAuthorize (back office Authorize, local list, cache or offline rule)."""

    id_tag: str
    status: AuthStatus
    parent_id_tag: str | None = None
    expiry: float | None = None


@dataclass(frozen=True, slots=True)
class TransactionConfirmed:
    """The back office answered StartTransaction: its transactionId and the id's status."""

    local_tx_id: int
    transaction_id: int
    status: AuthStatus = AuthStatus.ACCEPTED
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class FaultRaised:
    """A device reports a fault (connector_id 0 = the whole charge point); `code` is the driver's code."""

    connector_id: int
    source: str
    code: str
    stops_charging: bool = True
    role: DeviceRole = DeviceRole.OTHER
    info: str = ""
    # without stops_charging: the contactor opens and no session starts, but a running transaction goes on
    # (SuspendedEVSE with the fault's error code) until the fault clears or is raised again as stopping
    suspends_charging: bool = False


@dataclass(frozen=True, slots=True)
class FaultCleared:
    """The fault raised by `source` on this connector is gone."""

    connector_id: int
    source: str


@dataclass(frozen=True, slots=True)
class EstopChanged:
    """The emergency stop was pressed or released (connector_id 0 = the whole charge point)."""

    pressed: bool
    connector_id: int = 0


@dataclass(frozen=True, slots=True)
class MeterSample:
    """A fresh meter reading for a connector (energy register and power)."""

    connector_id: int
    energy_wh: float
    power_w: float | None = None


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """The back office connection went up or down (only shown in the snapshot; auth is the adapter's job)."""

    online: bool


@dataclass(frozen=True, slots=True)
class LimitChanged:
    """The hardware's own current ceiling changed (e.g. a DC controller derating); None = back to max."""

    connector_id: int
    hardware_max_a: float | None


@dataclass(frozen=True, slots=True)
class Tick:
    """Clock tick: expire timeouts and reservations, re-evaluate limits, report held statuses."""


# ------------------------------------------------------------------------------------------ commands
# Back office (or evsectl) requests that need a synchronous answer; each has a ChargePointCore method.


@dataclass(frozen=True, slots=True)
class RemoteStart:
    """Start a transaction for id_tag (connector None: the core picks one)."""

    connector_id: int | None
    id_tag: str
    tx_profile: ChargingProfile | None = None


@dataclass(frozen=True, slots=True)
class RemoteStop:
    """Stop the transaction with this back-office transactionId (or, when the station owns the id as in OCPP
    2.0.1, with this local transaction id)."""

    transaction_id: int
    local_tx_id: int | None = None


@dataclass(frozen=True, slots=True)
class ChangeAvailability:
    """Make a connector (0 = the charge point and all connectors) operative or inoperative."""

    connector_id: int
    operative: bool


@dataclass(frozen=True, slots=True)
class ReserveNow:
    """Reserve a connector for id_tag (or its parent) until expiry (wall seconds)."""

    connector_id: int
    expiry: float
    id_tag: str
    reservation_id: int
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class CancelReservation:
    """Cancel a reservation."""

    reservation_id: int


@dataclass(frozen=True, slots=True)
class UnlockRequested:
    """Unlock a connector (stops its transaction first, reason UnlockCommand)."""

    connector_id: int


@dataclass(frozen=True, slots=True)
class ResetRequested:
    """A reset is about to happen: stop every transaction with the matching reason."""

    kind: ResetKind


@dataclass(frozen=True, slots=True)
class SetChargingProfile:
    """Install a charging profile, parsed by the protocol adapter's codec."""

    connector_id: int
    profile: ChargingProfile


@dataclass(frozen=True, slots=True)
class ClearChargingProfile:
    """Clear profiles by id, or by any combination of connector, purpose and stack level."""

    profile_id: int | None = None
    connector_id: int | None = None
    purpose: str | None = None
    stack_level: int | None = None


# ------------------------------------------------------------------------------------------- outputs
# Decisions; the hardware layer executes the actuator ones, the adapter turns the rest into messages.

FAULT_EMERGENCY_STOP = "emergency_stop"  # the e-stop is pressed (not a device fault: no source)
FAULT_LOCAL_LIST_CONFLICT = "local_list_conflict"  # the back office contradicts the local authorization list
# the faults a vehicle reports: CHAdeMO H'102.4 fault flags and H'102.5.2, DIN 70121 / ISO 15118-2
# DC_EVErrorCodeType, and "the EV reports an error" of a version 1 controller
VEHICLE_FAULT_CODES = frozenset({
    "chademo_battery_over_voltage",
    "chademo_battery_under_voltage",
    "chademo_current_deviation",
    "chademo_high_battery_temperature",
    "chademo_voltage_deviation",
    "chademo_charging_system_fault",
    "ccs_ress_temperature_inhibit",
    "ccs_ev_shift_position",
    "ccs_connector_lock_fault",
    "ccs_ress_malfunction",
    "ccs_current_differential",
    "ccs_voltage_out_of_range",
    "ccs_reserved_error",
    "ccs_system_incompatibility",
    "ev_error",
})
# A stopping fault with one of these codes is an insulation fault: the transaction ends with GROUND_FAULT.
ISOLATION_FAULT_CODES = frozenset({"isolation_fault"})


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault reported with a status, in the domain's words; each protocol adapter names it in its own."""

    code: str  # the driver's fault code (FaultRaised.code), or a FAULT_* code of the core
    role: DeviceRole = DeviceRole.OTHER
    source: str = ""  # the device that raised it ("" for a FAULT_* code)
    info: str = ""  # what the device or the core said about it

    @classmethod
    def of(cls, raised: FaultRaised) -> Fault:
        """The fault a device raised."""
        return cls(raised.code, raised.role, raised.source, raised.info)


@dataclass(frozen=True, slots=True)
class SetContactor:
    """Close or open the power contactor (DC: allow charging on/off)."""

    connector_id: int
    closed: bool


@dataclass(frozen=True, slots=True)
class SetLimit:
    """Offer this current (A) and, on DC, this power (W; None: no power limit) to the EV; 0 means no energy."""

    connector_id: int
    current_a: float
    power_w: float | None = None


@dataclass(frozen=True, slots=True)
class SetLock:
    """Lock or unlock the cable in the socket (only emitted for connectors with a lock)."""

    connector_id: int
    locked: bool


@dataclass(frozen=True, slots=True)
class ShowIndicator:
    """Show a connector state on its LEDs (emitted at once, not delayed by MinimumStatusDuration)."""

    connector_id: int
    state: IndicatorState


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Report a (held) status of a connector, or of the charge point for connector_id 0 (fault None: no error)."""

    connector_id: int
    status: ConnectorStatus
    fault: Fault | None = None
    timestamp: float = 0.0


@dataclass(frozen=True, slots=True)
class NeedAuthorize:
    """Resolve id_tag (agent.core.auth.decide_local, else the back office), then feed AuthResult."""

    id_tag: str
    connector_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationRejected:
    """A presented id was refused (for a reader display or LED blink)."""

    connector_id: int | None
    id_tag: str
    status: AuthStatus


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    """A transaction began; the adapter persists it and queues the start message."""

    connector_id: int
    local_tx_id: int
    id_tag: str
    meter_start_wh: float
    timestamp: float
    reservation_id: int | None = None
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionStopped:
    """A transaction ended; transaction_id is the back office's id if confirmed, else None."""

    connector_id: int
    local_tx_id: int
    meter_stop_wh: float
    timestamp: float
    reason: StopReason
    id_tag: str | None = None
    transaction_id: int | None = None
    stopped_by: str | None = None  # the id presented to stop it (a token of the same group, a master pass)


# Session events: what happened to a session, in the words any protocol can report (2.0.1's trigger
# reasons and charging states are built from them; 1.6 needs none). TransactionStarted/Stopped complete them.


@dataclass(frozen=True, slots=True)
class Authorized:
    """An id may charge (connector_id None: granted at the charge point, the first plug-in takes it)."""

    connector_id: int | None
    id_tag: str
    source: AuthSource
    timestamp: float
    token_type: str | None = None  # from the IdPresented that asked (None: not a card, or not known)


@dataclass(frozen=True, slots=True)
class EvConnected:
    """A cable was plugged into an EV (local_tx_id: the transaction already running on it, if any)."""

    connector_id: int
    timestamp: float
    local_tx_id: int | None = None


@dataclass(frozen=True, slots=True)
class EvDisconnected:
    """The cable was removed at the EV side (local_tx_id: the transaction that ran on it, if any)."""

    connector_id: int
    timestamp: float
    local_tx_id: int | None = None


@dataclass(frozen=True, slots=True)
class EnergyTransferStarted:
    """The power path closed for the first time in a transaction."""

    connector_id: int
    local_tx_id: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class EnergyTransferSuspended:
    """The power path opened during a transaction that goes on."""

    connector_id: int
    local_tx_id: int
    by: SuspendedBy
    timestamp: float


@dataclass(frozen=True, slots=True)
class EnergyTransferResumed:
    """The power path closed again after a suspension."""

    connector_id: int
    local_tx_id: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class Deauthorized:
    """The back office refused the id of a running transaction (what follows is the invalid-id rule's)."""

    connector_id: int
    local_tx_id: int
    id_tag: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class ReservationEnded:
    """A reservation was used, expired or cancelled."""

    reservation_id: int
    reason: ReservationEndReason
    connector_id: int = 0


Input = (
    PlugChanged
    | EvReadyChanged
    | IsolationChanged
    | IdPresented
    | AuthResult
    | TransactionConfirmed
    | FaultRaised
    | FaultCleared
    | EstopChanged
    | MeterSample
    | LinkChanged
    | LimitChanged
    | Tick
)

Command = (
    RemoteStart
    | RemoteStop
    | ChangeAvailability
    | ReserveNow
    | CancelReservation
    | UnlockRequested
    | ResetRequested
    | SetChargingProfile
    | ClearChargingProfile
)

Output = (
    SetContactor
    | SetLimit
    | SetLock
    | ShowIndicator
    | StatusChanged
    | NeedAuthorize
    | AuthorizationRejected
    | TransactionStarted
    | TransactionStopped
    | ReservationEnded
    | Authorized
    | EvConnected
    | EvDisconnected
    | EnergyTransferStarted
    | EnergyTransferSuspended
    | EnergyTransferResumed
    | Deauthorized
)

SessionEvent = (
    Authorized
    | EvConnected
    | EvDisconnected
    | EnergyTransferStarted
    | EnergyTransferSuspended
    | EnergyTransferResumed
    | Deauthorized
)
