"""Charging profiles as the core takes them: parsed, protocol-neutral (each version's codec builds them)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ProfilePurpose(enum.StrEnum):
    """chargingProfilePurpose."""

    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class ProfileKind(enum.StrEnum):
    """chargingProfileKind."""

    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Recurrency(enum.StrEnum):
    """recurrencyKind."""

    DAILY = "Daily"
    WEEKLY = "Weekly"


class RateUnit(enum.StrEnum):
    """chargingRateUnit."""

    A = "A"
    W = "W"


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """One period: from start_period_s (relative to the schedule start) on, at most `limit` (A or W)."""

    start_period_s: float
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    """A chargingSchedule; start_schedule is wall seconds or None."""

    unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    duration_s: float | None = None
    start_schedule: float | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """A charging profile as installed on connector_id (0 = the whole charge point)."""

    profile_id: int
    stack_level: int
    purpose: ProfilePurpose
    kind: ProfileKind
    schedule: ChargingSchedule
    connector_id: int = 0
    recurrency: Recurrency | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: int | None = None
