"""The OCPP 1.6 charging profile codec: csChargingProfiles JSON to the core's parsed ChargingProfile and back.

The core takes parsed profiles only; this is where the 1.6 shape (camelCase on the wire, snake_case from the
`ocpp` library) is read and checked, and written back for the store.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agent.core.limits import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)
from agent.store import Store

LOGGER = logging.getLogger(__name__)


def parse_time(value: Any) -> float:
    """Parse an OCPP date-time string (ISO 8601, 'Z' allowed) into wall seconds."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"date-time must be a string, got {type(value).__name__}")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"bad date-time {value!r}") from err
    if stamp.tzinfo is None:
        raise ValueError(f"date-time {value!r} has no time zone")
    return stamp.timestamp()


def _field(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in data:
            return data[name]
    return None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{what} must be finite")
    return float(value)


def _enum(enum_type: type[enum.StrEnum], value: Any, what: str) -> Any:
    try:
        return enum_type(value)
    except ValueError as err:
        raise ValueError(f"{what} {value!r} is not one of {[m.value for m in enum_type]}") from err


def parse_profile(data: Mapping[str, Any], connector_id: int = 0) -> ChargingProfile:
    """Parse a csChargingProfiles object (camelCase or the ocpp library's snake_case); ValueError says why."""
    if not isinstance(data, Mapping):
        raise ValueError("charging profile must be an object")
    profile_id = _field(data, "chargingProfileId", "charging_profile_id")
    if not isinstance(profile_id, int) or isinstance(profile_id, bool):
        raise ValueError("chargingProfileId must be an integer")
    stack_level = _field(data, "stackLevel", "stack_level")
    if not isinstance(stack_level, int) or isinstance(stack_level, bool) or stack_level < 0:
        raise ValueError("stackLevel must be a non-negative integer")
    purpose = _enum(ProfilePurpose, _field(data, "chargingProfilePurpose", "charging_profile_purpose"),
                    "chargingProfilePurpose")
    kind = _enum(ProfileKind, _field(data, "chargingProfileKind", "charging_profile_kind"),
                 "chargingProfileKind")
    raw_rec = _field(data, "recurrencyKind", "recurrency_kind")
    recurrency = _enum(Recurrency, raw_rec, "recurrencyKind") if raw_rec is not None else None
    if kind is ProfileKind.RECURRING and recurrency is None:
        raise ValueError("a Recurring profile needs recurrencyKind")
    raw_tx = _field(data, "transactionId", "transaction_id")
    if raw_tx is not None and (not isinstance(raw_tx, int) or isinstance(raw_tx, bool)):
        raise ValueError("transactionId must be an integer")
    if raw_tx is not None and purpose is not ProfilePurpose.TX:
        raise ValueError("transactionId is only allowed in a TxProfile")
    valid_from = _field(data, "validFrom", "valid_from")
    valid_to = _field(data, "validTo", "valid_to")
    raw_schedule = _field(data, "chargingSchedule", "charging_schedule")
    if not isinstance(raw_schedule, Mapping):
        raise ValueError("chargingSchedule is missing")
    schedule = _parse_schedule(raw_schedule)
    if kind is ProfileKind.RECURRING and schedule.start_schedule is None:
        raise ValueError("a Recurring profile needs startSchedule")
    if kind is ProfileKind.RELATIVE and schedule.start_schedule is not None:
        raise ValueError("a Relative profile must not have startSchedule")
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        schedule=schedule,
        connector_id=connector_id,
        recurrency=recurrency,
        valid_from=parse_time(valid_from) if valid_from is not None else None,
        valid_to=parse_time(valid_to) if valid_to is not None else None,
        transaction_id=raw_tx,
    )


def _parse_schedule(data: Mapping[str, Any]) -> ChargingSchedule:
    unit = _enum(RateUnit, _field(data, "chargingRateUnit", "charging_rate_unit"), "chargingRateUnit")
    raw_periods = _field(data, "chargingSchedulePeriod", "charging_schedule_period")
    if not isinstance(raw_periods, Sequence) or isinstance(raw_periods, str) or not raw_periods:
        raise ValueError("chargingSchedulePeriod must be a non-empty list")
    periods: list[SchedulePeriod] = []
    for raw in raw_periods:
        if not isinstance(raw, Mapping):
            raise ValueError("a chargingSchedulePeriod entry must be an object")
        start = _number(_field(raw, "startPeriod", "start_period"), "startPeriod")
        limit = _number(raw.get("limit"), "limit")
        if start < 0 or limit < 0:
            raise ValueError("startPeriod and limit must not be negative")
        phases = _field(raw, "numberPhases", "number_phases")
        if phases is not None and (not isinstance(phases, int) or not 1 <= phases <= 3):
            raise ValueError("numberPhases must be 1, 2 or 3")
        periods.append(SchedulePeriod(start, limit, phases))
    if periods[0].start_period_s != 0:
        raise ValueError("the first startPeriod must be 0")
    starts = [p.start_period_s for p in periods]
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ValueError("startPeriod values must increase")
    duration = _field(data, "duration")
    start_schedule = _field(data, "startSchedule", "start_schedule")
    min_rate = _field(data, "minChargingRate", "min_charging_rate")
    return ChargingSchedule(
        unit=unit,
        periods=tuple(periods),
        duration_s=_number(duration, "duration") if duration is not None else None,
        start_schedule=parse_time(start_schedule) if start_schedule is not None else None,
        min_charging_rate=_number(min_rate, "minChargingRate") if min_rate is not None else None,
    )


def stored_profiles(store: Store) -> list[ChargingProfile]:
    """The charging profiles persisted by the 1.6 handlers, parsed; one that no longer parses is dropped."""
    profiles = []
    for connector_id, raw in store.profiles():
        try:
            profiles.append(parse_profile(raw, connector_id))
        except ValueError as err:
            LOGGER.warning("dropping a stored charging profile: %s", err)
    return profiles
