"""Hardware contracts (DESIGN section 2): one Protocol per role and frozen dataclasses of readings.

Rules every implementation follows:
- every request has a timeout; no call blocks the caller for longer than that timeout;
- errors are raised from the tree in `drivers.errors`, never raw OS or pymodbus exceptions;
- a reading carries the monotonic and wall time at which the device answered; a device that stops
  answering raises (or yields `stale=True`), it never republishes an old value with a new time;
- after a communication fault the driver keeps the last setpoint and re-applies it when the device
  is back, then the caller sees the fault clear on the next successful read.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


def now_stamps() -> tuple[float, float]:
    """Return (monotonic, wall) seconds for a reading taken now."""
    return time.monotonic(), time.time()


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One poll of an energy meter. Values the model lacks, or marked not-available, are None."""

    energy_import_wh: float
    energy_export_wh: float | None = None
    power_w: float | None = None
    voltage_v: tuple[float | None, ...] = ()
    current_a: tuple[float | None, ...] = ()
    power_phase_w: tuple[float | None, ...] = ()
    frequency_hz: float | None = None
    read_monotonic: float = 0.0
    read_wall: float = 0.0
    stale: bool = False


@dataclass(frozen=True, slots=True)
class MeterCapabilities:
    """What a meter model can report."""

    phases: int
    export_energy: bool
    per_phase_power: bool
    signed: bool = False


class EnergyMeter(Protocol):
    """An energy meter.

    `read()` returns a fresh, plausible reading or raises CommunicationFault/DeviceTimeout; after a
    failure, `last_reading()` returns the previous values with `stale=True` and their original read time.
    A reading out of the connector's bounds, with energy below the last accepted reading or growing faster
    than the connector's power allows, raises ImplausibleReading (a CommunicationFault) and is not used
    as the baseline (drivers/meters/plausibility.py); `configure_limits()` gives the connector's bounds.
    `error_counts()` returns failed reads by kind; `backwards_for_s()` how long readings have consistently
    been below the last accepted energy; `accept_baseline()` re-baselines a replaced or reset meter.
    The meter reconnects by itself with capped backoff; a read during the backoff raises at once.
    """

    name: str
    capabilities: MeterCapabilities

    async def read(self) -> MeterReading: ...

    def last_reading(self) -> MeterReading | None: ...

    def configure_limits(self, nominal_voltage_v: float = 230.0, phases: int | None = None,
                         max_current_a: float = 80.0) -> None: ...

    def error_counts(self) -> dict[str, int]: ...

    def backwards_for_s(self) -> float: ...

    @property
    def backwards_energy_wh(self) -> float | None: ...

    def accept_baseline(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LegalTransaction:
    """What a signing meter binds to a legal (billing) transaction: the station's ids, passed through untouched."""

    transaction_id: str  # the station's local transaction id; the meter keeps its record under it
    evse_id: str  # the charging point's id as the operator publishes it (e.g. "DE*ABC*E123*1")
    client_id: str = ""  # the user's identifier (idTag / idToken); "" when nobody is assigned
    tariff_id: int = 0  # the meter's tariff slot
    cable_id: int = 0  # the meter's cable-loss compensation table (0: none)
    user_data: str = ""  # free text the meter stores with the record


@dataclass(frozen=True, slots=True)
class SignedMeterValue:
    """One signed data set exactly as the meter produced it, with what a verifier needs beside it.

    `data` is never re-encoded: a verifier checks the signature over its payload bytes, so the agent
    stores and sends this string as it is. `begin_wh`/`end_wh` are the register values read from it
    (for display and plausibility only; billing uses the signed data).
    """

    data: str  # e.g. "OCMF|{...}|{...}"
    encoding: str  # "OCMF" (OCPP 2.0.1 encodingMethod)
    signing_method: str  # e.g. "ECDSA-secp256r1-SHA256" (OCPP 2.0.1 signingMethod)
    public_key: str  # hex of the DER SubjectPublicKeyInfo, as OCMF verifiers take it
    transaction_id: str | None = None  # the station's transaction id the meter filed it under, if known
    begin_wh: float | None = None
    end_wh: float | None = None
    read_monotonic: float = 0.0
    read_wall: float = 0.0


class SignedMeter(EnergyMeter, Protocol):
    """An energy meter that signs the readings of a legal transaction (Eichrecht; DESIGN section 2).

    Everything of EnergyMeter holds (live values through `read()`, plausibility, faults, recovery by
    itself). Besides:
    - `begin_transaction()` starts the meter's legal transaction with the station's ids and returns the
      signed begin data set, or None when the meter signs the whole transaction only at its end;
      `end_transaction()` ends it and returns the signed data set that covers it (begin and end readings).
    - Both raise DriverError like `read()` (DeviceTimeout, CommunicationFault, ImplausibleReading for a
      data set whose signature, serial, unit or values do not hold) and never return a data set the driver
      could not check; the caller retries an end until it succeeds (the meter keeps the transaction open).
    - `public_key()` is the key (hex DER) every data set of this meter verifies with; it does not change
      while the meter runs, and a data set that does not verify with it is refused.
    - `transaction_record()` fetches the meter's own signed record of a transaction by the station's id
      (after a power cut or an agent crash: the meter may have closed it by itself); None when the meter
      has no such record; `last_transaction()` the most recent record of the meter's logbook (None when
      empty). `open_transaction()` says whether the meter holds a legal transaction open, so that after a
      restart the agent ends it with `end_transaction()` or fetches the record the meter closed itself.
    """

    async def begin_transaction(self, transaction: LegalTransaction) -> SignedMeterValue | None: ...

    async def end_transaction(self, transaction_id: str) -> SignedMeterValue: ...

    async def public_key(self) -> str: ...

    async def transaction_record(self, transaction_id: str) -> SignedMeterValue | None: ...

    async def open_transaction(self) -> bool: ...

    async def last_transaction(self) -> SignedMeterValue | None: ...


class ChargeProtocol(enum.IntEnum):
    """The DC charging protocol the controller speaks to the EV."""

    NONE = 0
    CCS = 1
    CHADEMO = 2


class PlugState(enum.IntEnum):
    """Whether a vehicle connector is plugged into an EV."""

    UNPLUGGED = 0
    PLUGGED = 1


class EvState(enum.IntEnum):
    """IEC 61851-1 control pilot state (A to F)."""

    A = 0  # not connected
    B = 1  # connected, not ready
    C = 2  # charging
    D = 3  # charging, ventilation required
    E = 4  # no power / short circuit
    F = 5  # EVSE fault


class Isolation(enum.IntEnum):
    """Result of the insulation monitoring device (IMD)."""

    INVALID = 0  # not measured yet
    VALID = 1
    WARNING = 2
    FAULT = 3
    NO_IMD = 4


class DcError(enum.IntFlag):
    """Error bits a DC controller reports; each maps to a hardware fault code."""

    NONE = 0
    ISOLATION = 1 << 0
    OVER_VOLTAGE = 1 << 1
    OVER_CURRENT = 1 << 2
    OVER_TEMPERATURE = 1 << 3
    EV_COMMUNICATION = 1 << 4
    EV_ERROR = 1 << 5
    POWER_MODULE = 1 << 6
    CONTACTOR = 1 << 7
    HOST_TIMEOUT = 1 << 8
    PILOT_FAULT = 1 << 9
    INTERNAL = 1 << 10


class EstopReason(enum.IntEnum):
    """Why the controller performed an emergency stop."""

    NONE = 0
    BUTTON = 1
    HOST_COMMAND = 2
    HOST_TIMEOUT = 3
    OVER_TEMPERATURE = 4
    HV_MALFUNCTION = 5
    ISOLATION = 6


class ChademoStatus(enum.IntFlag):
    """CHAdeMO vehicle status flags (CAN frame H'102, byte 5), as the controller passes them on."""

    NONE = 0
    CHARGING_ENABLED = 1 << 0  # H'102.5.0: the vehicle permits charging
    SHIFT_POSITION = 1 << 1  # H'102.5.1: the shift lever is not in parking
    CHARGING_SYSTEM_FAULT = 1 << 2  # H'102.5.2: the vehicle's charging system reports a fault
    EV_CONTACTOR_OPEN = 1 << 3  # H'102.5.3 "vehicle status": EV contactor open (or welding detection done)
    STOP_REQUEST = 1 << 4  # H'102.5.4: normal stop request before charging


class ChademoFault(enum.IntFlag):
    """CHAdeMO vehicle fault flags (CAN frame H'102, byte 4): the vehicle stops charging on any of them."""

    NONE = 0
    BATTERY_OVER_VOLTAGE = 1 << 0
    BATTERY_UNDER_VOLTAGE = 1 << 1
    CURRENT_DEVIATION = 1 << 2  # the charger's current deviates from the vehicle's request
    HIGH_BATTERY_TEMPERATURE = 1 << 3
    VOLTAGE_DEVIATION = 1 << 4  # the vehicle's battery voltage deviates from what the charger measures


class CcsPhase(enum.IntEnum):
    """Where a DIN 70121 / ISO 15118-2 DC session is (the request the EV sent last)."""

    IDLE = 0  # no session
    SESSION_SETUP = 1  # SLAC, SessionSetup, service discovery, payment, authorization
    CHARGE_PARAMETER_DISCOVERY = 2
    CABLE_CHECK = 3  # insulation test of the cable before energy flows
    PRE_CHARGE = 4  # the charger matches the EV's battery voltage
    POWER_DELIVERY = 5  # PowerDeliveryReq (start)
    CURRENT_DEMAND = 6  # energy flows
    POWER_DELIVERY_STOP = 7  # PowerDeliveryReq (stop): the current ramps down
    WELDING_DETECTION = 8  # the EV checks its contactors for welding
    SESSION_STOP = 9  # SessionStopReq: the session is over


class EvErrorCode(enum.IntEnum):
    """DC_EVErrorCodeType of DIN 70121 / ISO 15118-2, in the order the standards list it."""

    NO_ERROR = 0
    RESS_TEMPERATURE_INHIBIT = 1  # FAILED_RESSTemperatureInhibit
    EV_SHIFT_POSITION = 2  # FAILED_EVShiftPosition
    CHARGER_CONNECTOR_LOCK_FAULT = 3  # FAILED_ChargerConnectorLockFault
    EV_RESS_MALFUNCTION = 4  # FAILED_EVRESSMalfunction
    CHARGING_CURRENT_DIFFERENTIAL = 5  # FAILED_ChargingCurrentdifferential
    CHARGING_VOLTAGE_OUT_OF_RANGE = 6  # FAILED_ChargingVoltageOutOfRange
    RESERVED_A = 7
    RESERVED_B = 8
    RESERVED_C = 9
    CHARGING_SYSTEM_INCOMPATIBILITY = 10  # FAILED_ChargingSystemIncompatibility
    NO_DATA = 11


@dataclass(frozen=True, slots=True)
class DcVehicleDetail:
    """What a version 2 controller adds about the vehicle: CHAdeMO and CCS session detail (None: not known)."""

    chademo_protocol: int | None = None  # CHAdeMO control protocol number (H'102.0)
    chademo_status: ChademoStatus = ChademoStatus.NONE
    chademo_faults: ChademoFault = ChademoFault.NONE
    max_charging_time_s: int | None = None  # CHAdeMO H'101.1/2
    estimated_charging_time_s: int | None = None  # CHAdeMO H'101.3
    battery_capacity_kwh: float | None = None  # CHAdeMO H'101.5-6
    ccs_phase: CcsPhase = CcsPhase.IDLE
    ev_error_code: EvErrorCode = EvErrorCode.NO_ERROR
    full_soc_pct: float | None = None  # ISO 15118 FullSOC
    bulk_soc_pct: float | None = None  # ISO 15118 BulkSOC
    ev_max_power_w: float | None = None  # ISO 15118 EVMaximumPowerLimit

    @property
    def charging_enabled(self) -> bool:
        """CHAdeMO: the vehicle permits charging (H'102.5.0)."""
        return bool(self.chademo_status & ChademoStatus.CHARGING_ENABLED)


@dataclass(frozen=True, slots=True)
class DcStatus:
    """One poll of a DC charge controller."""

    protocol: ChargeProtocol
    plug: PlugState
    ev_state: EvState
    chademo_step: int
    ev_ready: bool
    soc_pct: float | None
    ev_target_v: float
    ev_target_a: float
    ev_max_v: float
    ev_max_a: float
    present_v: float
    present_a: float
    isolation: Isolation
    errors: DcError
    estop: EstopReason
    charging_allowed: bool
    limit_a: float
    limit_w: float
    temperature_c: float | None = None
    read_monotonic: float = 0.0
    read_wall: float = 0.0
    stale: bool = False
    map_version: int = 1  # the register map the controller implements (docs/dc-controller.md)
    detail: DcVehicleDetail | None = None  # map version 2 and later


class DcController(Protocol):
    """A CCS or CHAdeMO charge controller.

    The host must call `heartbeat()` at least every `heartbeat_timeout_s / 2`; a controller that hears
    nothing for `heartbeat_timeout_s` stops charging by itself (falls safe) and reports HOST_TIMEOUT.
    `allow_charging(False)` returns once the command is written; the controller ramps the current down
    before it opens its own contactors, so the caller never blocks on the power path.
    """

    name: str

    async def read(self) -> DcStatus: ...

    async def allow_charging(self, allowed: bool) -> None: ...

    async def set_limits(self, current_a: float, power_w: float) -> None: ...

    async def emergency_shutdown(self) -> None: ...

    async def reset_faults(self) -> None: ...

    async def heartbeat(self) -> None: ...

    def error_counts(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class Contactor(Protocol):
    """A relay switching the charging power, with a mirror contact reporting its real position.

    `open()` and `close()` drive the coil at once and return; `check()` compares the mirror contact
    with the command after the settle time and raises HardwareFault("contactor_welded") when it stays
    closed after an open, HardwareFault("contactor_not_closed") when it did not close.
    `open()` is safe to call from any thread (the e-stop callback calls it).
    """

    name: str

    def close(self) -> None: ...

    def open(self) -> None: ...

    @property
    def commanded_closed(self) -> bool: ...

    @property
    def feedback_closed(self) -> bool | None: ...

    def check(self) -> None: ...


class EmergencyStop(Protocol):
    """A latching emergency stop button; `on_change` callbacks run in the GPIO thread."""

    name: str

    @property
    def pressed(self) -> bool: ...

    def on_change(self, callback: Callable[[bool], None]) -> None: ...


class IndicatorState(enum.Enum):
    """What an indicator shows; the agent maps connector states onto these."""

    OFF = "off"
    AVAILABLE = "available"
    PREPARING = "preparing"
    CHARGING = "charging"
    SUSPENDED = "suspended"
    FINISHING = "finishing"
    RESERVED = "reserved"
    UNAVAILABLE = "unavailable"
    FAULTED = "faulted"


class Indicator(Protocol):
    """LEDs showing a connector state with a colour and blink pattern."""

    name: str

    def show(self, state: IndicatorState) -> None: ...

    @property
    def state(self) -> IndicatorState: ...


class ConnectorLock(Protocol):
    """A motor lock holding the cable in the socket; raises HardwareFault("lock_failure") on a mismatch."""

    name: str

    def lock(self) -> None: ...

    def unlock(self) -> None: ...

    @property
    def locked(self) -> bool | None: ...

    def check(self) -> None: ...


def mask_id(text: str) -> str:
    """A card id for a log: all but its last four characters masked (a UID identifies a person)."""
    return "*" * max(0, len(text) - 4) + text[-4:]


@dataclass(frozen=True, slots=True)
class CardRead:
    """One card as the reader saw it: the UID bytes in the order the card sent them, and what it is.

    `technology` is the air interface ("ISO14443A", "ISO15693", "EM4100"); `sak` and `atqa` are the ISO
    14443A select acknowledge and answer to request (None on other technologies); `card_type` a name guessed
    from them ("MIFARE Classic 1K"). The agent turns `uid` into an idTag with the configured format.
    """

    reader: str
    uid: bytes
    technology: str
    monotonic: float
    sak: int | None = None
    atqa: int | None = None
    card_type: str = ""


class IdReader(Protocol):
    """An RFID reader; `read_card()` waits for the next card (debounced) and returns what was read.

    A card lying on the reader yields once; it yields again after it was away for the debounce time. A
    reader that is unplugged keeps `read_card()` waiting while the driver reopens the port; `health` says
    why meanwhile. `close()` makes a waiting `read_card()` raise CommunicationFault. `read_id()` is the
    card's UID in the default format (upper-case hex, card order), for callers that format nothing.
    """

    name: str

    async def read_card(self) -> CardRead: ...

    async def read_id(self) -> str: ...

    def error_counts(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class ImdState(enum.Enum):
    """What an insulation monitoring device (IMD) says about the insulation of the DC output."""

    OK = "ok"  # resistance above the warning threshold
    WARNING = "warning"  # below the warning (pre-alarm) threshold, above the fault threshold
    FAULT = "fault"  # below the fault (alarm) threshold
    SELF_TEST = "self_test"  # a self-test runs: no measurement
    DEVICE_ERROR = "device_error"  # the device reports its own fault
    NO_MEASUREMENT = "no_measurement"  # no valid value yet (starting, disabled, value marked invalid)


@dataclass(frozen=True, slots=True)
class ImdThresholds:
    """The IMD's alarm thresholds in ohms: below `warning_ohm` a warning, below `fault_ohm` a fault."""

    warning_ohm: float
    fault_ohm: float


@dataclass(frozen=True, slots=True)
class InsulationReading:
    """One poll of an IMD; resistance and voltage are None when the device marks them invalid."""

    state: ImdState
    resistance_ohm: float | None
    voltage_v: float | None
    thresholds: ImdThresholds
    read_monotonic: float = 0.0
    read_wall: float = 0.0
    stale: bool = False


@dataclass(frozen=True, slots=True)
class ImdSelfTestResult:
    """The outcome of an IMD self-test."""

    ok: bool
    detail: str
    finished_monotonic: float = 0.0


class InsulationMonitor(Protocol):
    """An insulation monitoring device on a DC output (IEC 61557-8; IEC 61851-23 cable check).

    - `read()` returns a fresh reading or raises CommunicationFault/DeviceTimeout (a reading the driver
      cannot trust raises ImplausibleReading); the state is the worse of the device's own alarm and the
      driver's comparison of the resistance with `thresholds`, so a device whose alarm settings were
      changed behind the agent's back still faults in time.
    - The driver owns the thresholds: it writes them on the first exchange and again after every
      communication fault (the device may have been reset), like the DC controller's setpoints.
    - `self_test()` runs the device's self-test and waits for its end, bounded by the driver's timeout; a
      test that does not end in time, or ends with a device error, is a failed test (never an exception
      for the device's own verdict; DriverError only when the device cannot be reached).
    - `last_reading()` is the previous reading marked stale after a failed read (never republished fresh).
    """

    name: str

    @property
    def thresholds(self) -> ImdThresholds: ...

    async def read(self) -> InsulationReading: ...

    async def set_thresholds(self, warning_ohm: float, fault_ohm: float) -> None: ...

    async def self_test(self) -> ImdSelfTestResult: ...

    def last_reading(self) -> InsulationReading | None: ...

    def error_counts(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


@runtime_checkable
class CountsCommunicationErrors(Protocol):
    """A driver that counts its failed exchanges with the device (the Modbus and HTTP drivers).

    `communication_errors()` is the number of failed exchanges since the driver was built, counted as each one
    happens and never decreasing: one per request that got no answer in time, an answer refused by the frame
    checks (CRC, framing, another unit's or transaction's answer, a wrong byte count or function), an exception
    response or an I/O error. A request tried again is counted again; a poll that reads several blocks can count
    more than one. A reading that arrived intact but is implausible is not a communication error. The count is
    the driver's own: it knows nothing of who reads it (the operations ledger takes its increase per hour).
    """

    def communication_errors(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A device's health as the agent and evsectl show it (one record per device, replaced on every change)."""

    name: str
    ok: bool
    error: str | None = None
    since_monotonic: float = field(default_factory=time.monotonic)
    failures: int = 0  # failed requests since the agent started
    last_ok_monotonic: float = 0.0  # 0: never answered yet
    failing_since: float | None = None  # monotonic time of the first failure of the current silence

