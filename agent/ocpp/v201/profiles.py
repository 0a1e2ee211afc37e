"""The OCPP 2.0.1 charging profile codec: ChargingProfileType JSON to the core's parsed ChargingProfile and back.

The core takes parsed, protocol-neutral profiles (agent/core/profiles.py); this module reads the 2.0.1 shape
(camelCase on the wire, snake_case from the `ocpp` library), checks what the schema cannot (K01's rules on
schedules, kinds and phases) and says why a profile is refused with a 2.0.1 reasonCode.

Choices, written down because the specification leaves them to the station:
- A profile may carry up to three chargingSchedule entries (K01; meant for ISO 15118, where the EV picks one).
  This station has no ISO 15118 schedule negotiation: it applies the *first* entry, checks the others with the
  same rules, and keeps all of them in the stored JSON, so GetChargingProfiles reports the profile as received.
- The core keys profiles by the agent's connector (0 = the whole station); the 2.0.1 `transactionId` string is
  resolved by the handlers to the connector that runs it, so the parsed profile carries no transaction id.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ocpp.charge_point import snake_to_camel_case

from agent.clock import iso
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)
from agent.ocpp.v16.profiles import parse_time
from agent.store import Store

LOGGER = logging.getLogger(__name__)

MAX_SCHEDULES = 3  # ChargingProfileType.chargingSchedule maxItems
MAX_PERIODS = 1024  # ChargingScheduleType.chargingSchedulePeriod maxItems (PeriodsPerSchedule is lower)
MAX_TX_ID_LEN = 36  # transactionId maxLength
EXTERNAL = "ChargingStationExternalConstraints"  # set by an external system (EMS), never by the CSMS
PURPOSES = {  # 2.0.1 chargingProfilePurpose -> the core's purpose
    "ChargingStationMaxProfile": ProfilePurpose.CHARGE_POINT_MAX,
    "TxDefaultProfile": ProfilePurpose.TX_DEFAULT,
    "TxProfile": ProfilePurpose.TX,
}
WIRE_PURPOSE = {core: wire for wire, core in PURPOSES.items()}
LIMIT_SOURCE = "CSO"  # every profile here was installed by the CSMS (no EMS or grid operator input)

# reasonCode values of StatusInfoType (OCPP 2.0.1 part 2, appendix "Reason codes"), at most 20 characters
DUPLICATE_PROFILE = "DuplicateProfile"
INVALID_SCHEDULE = "InvalidSchedule"
INVALID_STACK_LEVEL = "InvalidStackLevel"
INVALID_VALUE = "InvalidValue"
MISSING_PARAM = "MissingParam"
OUT_OF_STORAGE = "OutOfStorage"
TOO_MANY_ELEMENTS = "TooManyElements"
TX_NOT_FOUND = "TxNotFound"
UNKNOWN_EVSE = "UnknownEvse"
UNSUPPORTED_PARAM = "UnsupportedParam"
UNSUPPORTED_RATE_UNIT = "UnsupportedRateUnit"


class ProfileError(ValueError):
    """A charging profile the station refuses: reason_code for statusInfo, the message for additionalInfo."""

    def __init__(self, reason_code: str, info: str) -> None:
        super().__init__(info)
        self.reason_code = reason_code

    def status_info(self) -> dict[str, str]:
        """StatusInfoType, snake_case as the library's call_result takes it."""
        return {"reason_code": self.reason_code, "additional_info": str(self)[:512]}


def wire_form(data: Any) -> Any:
    """The library's snake_case payload as wire camelCase, Decimal numbers as int or float (JSON-storable)."""
    return _plain_numbers(snake_to_camel_case(data))


def _plain_numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def _int(value: Any, what: str, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProfileError(INVALID_VALUE if value is not None else MISSING_PARAM, f"{what} must be an integer")
    if minimum is not None and value < minimum:
        raise ProfileError(INVALID_VALUE, f"{what} must be at least {minimum}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ProfileError(INVALID_SCHEDULE, f"{what} must be a number")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise ProfileError(INVALID_SCHEDULE, f"{what} must be a finite, non-negative number")
    return number


def _time(value: Any, what: str) -> float:
    try:
        return parse_time(value)
    except ValueError as err:
        raise ProfileError(INVALID_VALUE, f"{what}: {err}") from err


def wire_purpose(data: Mapping[str, Any]) -> str | None:
    """The 2.0.1 chargingProfilePurpose of a profile in wire form."""
    purpose = data.get("chargingProfilePurpose")
    return purpose if isinstance(purpose, str) else None


def wire_transaction_id(data: Mapping[str, Any]) -> str | None:
    """The transactionId a TxProfile names, checked for type and length."""
    value = data.get("transactionId")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TX_ID_LEN:
        raise ProfileError(INVALID_VALUE, f"transactionId must be a string of 1..{MAX_TX_ID_LEN} characters")
    return value


def parse_profile(data: Mapping[str, Any], connector_id: int = 0) -> ChargingProfile:
    """Parse a ChargingProfileType in wire (camelCase) form into the core's profile; ProfileError says why not.

    The first chargingSchedule is the one applied (see the module docstring); every entry is checked.
    """
    if not isinstance(data, Mapping):
        raise ProfileError(INVALID_VALUE, "chargingProfile must be an object")
    profile_id = _int(data.get("id"), "id")
    stack_level = _int(data.get("stackLevel"), "stackLevel", minimum=0)
    raw_purpose = wire_purpose(data)
    if raw_purpose == EXTERNAL:
        # K01.FR.22: external constraints come from the station's own EMS input, the CSMS may not set them
        raise ProfileError(INVALID_VALUE, "ChargingStationExternalConstraints cannot be set by the CSMS")
    if raw_purpose not in PURPOSES:
        raise ProfileError(INVALID_VALUE, f"chargingProfilePurpose {raw_purpose!r} is not known")
    purpose = PURPOSES[raw_purpose]
    try:
        kind = ProfileKind(str(data.get("chargingProfileKind")))
    except ValueError as err:
        raise ProfileError(INVALID_VALUE, "chargingProfileKind must be Absolute, Recurring or Relative") from err
    raw_rec = data.get("recurrencyKind")
    try:
        recurrency = Recurrency(raw_rec) if raw_rec is not None else None
    except ValueError as err:
        raise ProfileError(INVALID_VALUE, "recurrencyKind must be Daily or Weekly") from err
    if kind is ProfileKind.RECURRING and recurrency is None:
        raise ProfileError(MISSING_PARAM, "a Recurring profile needs recurrencyKind")
    if purpose is ProfilePurpose.CHARGE_POINT_MAX and kind is ProfileKind.RELATIVE:
        raise ProfileError(INVALID_VALUE, "a ChargingStationMaxProfile cannot be Relative")  # K01.FR.38
    if wire_transaction_id(data) is not None and purpose is not ProfilePurpose.TX:
        raise ProfileError(INVALID_VALUE, "transactionId is only allowed in a TxProfile")
    valid_from = _time(data["validFrom"], "validFrom") if data.get("validFrom") is not None else None
    valid_to = _time(data["validTo"], "validTo") if data.get("validTo") is not None else None
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ProfileError(INVALID_VALUE, "validTo must be after validFrom")
    raw_schedules = data.get("chargingSchedule")
    if isinstance(raw_schedules, Mapping):
        raw_schedules = [raw_schedules]  # tolerated: one schedule given as an object, the 1.6 shape
    if not isinstance(raw_schedules, Sequence) or isinstance(raw_schedules, str) or not raw_schedules:
        raise ProfileError(MISSING_PARAM, "chargingSchedule must be a non-empty list")
    if len(raw_schedules) > MAX_SCHEDULES:
        raise ProfileError(TOO_MANY_ELEMENTS, f"at most {MAX_SCHEDULES} chargingSchedule entries")
    schedules = [_parse_schedule(raw, kind) for raw in raw_schedules]
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        schedule=schedules[0],
        connector_id=connector_id,
        recurrency=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
    )


def schedule_period_counts(data: Mapping[str, Any]) -> list[int]:
    """How many periods each chargingSchedule entry of a wire-form profile has (for PeriodsPerSchedule)."""
    raw = data.get("chargingSchedule")
    entries = [raw] if isinstance(raw, Mapping) else raw if isinstance(raw, list) else []
    return [len(e.get("chargingSchedulePeriod") or []) if isinstance(e, Mapping) else 0 for e in entries]


def _parse_schedule(data: Any, kind: ProfileKind) -> ChargingSchedule:
    if not isinstance(data, Mapping):
        raise ProfileError(INVALID_SCHEDULE, "a chargingSchedule entry must be an object")
    _int(data.get("id"), "chargingSchedule id")
    try:
        unit = RateUnit(str(data.get("chargingRateUnit")))
    except ValueError as err:
        raise ProfileError(UNSUPPORTED_RATE_UNIT, "chargingRateUnit must be A or W") from err
    raw_periods = data.get("chargingSchedulePeriod")
    if not isinstance(raw_periods, Sequence) or isinstance(raw_periods, str) or not raw_periods:
        raise ProfileError(INVALID_SCHEDULE, "chargingSchedulePeriod must be a non-empty list")
    if len(raw_periods) > MAX_PERIODS:
        raise ProfileError(TOO_MANY_ELEMENTS, f"at most {MAX_PERIODS} periods in a schedule")
    periods: list[SchedulePeriod] = []
    for raw in raw_periods:
        if not isinstance(raw, Mapping):
            raise ProfileError(INVALID_SCHEDULE, "a chargingSchedulePeriod entry must be an object")
        start = raw.get("startPeriod")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise ProfileError(INVALID_SCHEDULE, "startPeriod must be a non-negative integer")
        limit = _number(raw.get("limit"), "limit")
        phases = raw.get("numberPhases")
        if phases is not None and (not isinstance(phases, int) or isinstance(phases, bool) or not 1 <= phases <= 3):
            raise ProfileError(INVALID_SCHEDULE, "numberPhases must be 1, 2 or 3")
        if raw.get("phaseToUse") is not None:
            # only with numberPhases 1 on an EVSE that can switch the phase (ACPhaseSwitchingSupported): none here
            raise ProfileError(INVALID_SCHEDULE, "phaseToUse is not supported: no EVSE can switch phases")
        periods.append(SchedulePeriod(float(start), limit, phases))
    if periods[0].start_period_s != 0:
        raise ProfileError(INVALID_SCHEDULE, "the first startPeriod must be 0")
    if any(b.start_period_s <= a.start_period_s for a, b in itertools.pairwise(periods)):
        raise ProfileError(INVALID_SCHEDULE, "startPeriod values must increase")
    start_schedule = data.get("startSchedule")
    if kind is ProfileKind.RELATIVE and start_schedule is not None:
        raise ProfileError(INVALID_SCHEDULE, "a Relative profile must not have startSchedule")  # K01.FR.41
    if kind is not ProfileKind.RELATIVE and start_schedule is None:
        raise ProfileError(INVALID_SCHEDULE, f"an {kind.value} profile needs startSchedule")  # K01.FR.40
    duration = data.get("duration")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool) or duration < 0):
        raise ProfileError(INVALID_SCHEDULE, "duration must be a non-negative integer")
    min_rate = data.get("minChargingRate")
    return ChargingSchedule(
        unit=unit,
        periods=tuple(periods),
        duration_s=float(duration) if duration is not None else None,
        start_schedule=_time(start_schedule, "startSchedule") if start_schedule is not None else None,
        min_charging_rate=_number(min_rate, "minChargingRate") if min_rate is not None else None,
    )


def encode_profile(profile: ChargingProfile, transaction_id: str | None = None) -> dict[str, Any]:
    """The core's profile as a 2.0.1 ChargingProfileType (wire form); its one schedule takes the profile's id."""
    sched = profile.schedule
    schedule: dict[str, Any] = {
        "id": profile.profile_id,
        "chargingRateUnit": sched.unit.value,
        "chargingSchedulePeriod": [
            {"startPeriod": int(p.start_period_s), "limit": p.limit,
             **({"numberPhases": p.number_phases} if p.number_phases else {})}
            for p in sched.periods],
    }
    if sched.start_schedule is not None:
        schedule["startSchedule"] = iso(sched.start_schedule)
    if sched.duration_s is not None:
        schedule["duration"] = int(sched.duration_s)
    if sched.min_charging_rate is not None:
        schedule["minChargingRate"] = sched.min_charging_rate
    out: dict[str, Any] = {
        "id": profile.profile_id,
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": WIRE_PURPOSE[profile.purpose],
        "chargingProfileKind": profile.kind.value,
        "chargingSchedule": [schedule],
    }
    if profile.recurrency is not None:
        out["recurrencyKind"] = profile.recurrency.value
    if profile.valid_from is not None:
        out["validFrom"] = iso(profile.valid_from)
    if profile.valid_to is not None:
        out["validTo"] = iso(profile.valid_to)
    if transaction_id is not None and profile.purpose is ProfilePurpose.TX:
        out["transactionId"] = transaction_id
    return out


def stored_profiles(store: Store) -> list[ChargingProfile]:
    """The 2.0.1 profiles the store keeps (keyed by `id`, on the agent's connector), parsed; one that no longer
    parses (or a 1.6 profile left from another version) is skipped with a warning."""
    profiles = []
    for connector_id, raw in store.profiles():
        try:
            profiles.append(parse_profile(raw, connector_id))
        except ProfileError as err:
            LOGGER.warning("not restoring a stored charging profile on connector %d: %s", connector_id, err)
    return profiles
