"""Smart charging, pure: charging profiles, the composite schedule (OCPP 1.6 section 3.13) and install rules.

Composition at an instant t for a connector:
1. per purpose, among the profiles valid at t, the highest stack level that has a period covering t wins
   (a higher level whose schedule has ended or not begun yet falls through to the next level);
2. TxProfile (for the connector's running transaction) overrides TxDefaultProfile; a TxDefaultProfile
   installed on the connector overrides one installed on connector 0;
3. ChargePointMaxProfile (connector 0 only) is one limit for the whole charge point: each connector that
   shares it gets an even part (OCPP 1.6 3.13.1: "shared by all Connectors").
AC folds W into A with the connector's real phases and nominal voltage (`watts = amps * voltage_v * phases`;
a period's numberPhases counts only where the charge point can switch phases). DC keeps A and W apart: a
power limit goes to the controller as W. Times are wall seconds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from agent.core.events import ClearProfileResult, ProfileResult
from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)

__all__ = ["ChargingProfile", "ChargingSchedule", "ProfileKind", "ProfilePurpose", "RateUnit", "Recurrency",
           "SchedulePeriod"]

LOGGER = logging.getLogger(__name__)

DEFAULT_PHASES = 3  # OCPP 1.6: numberPhases defaults to 3 when absent
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
LOOKAHEAD_S = 8 * DAY_S  # a weekly recurrence changes at least once in this window, if it changes at all


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """A period of a composite schedule: absolute start (wall s), limit in the requested unit."""

    start: float
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class ElectricalSetup:
    """What W<->A conversion needs for a connector: its real phases and nominal voltage."""

    voltage_v: float = 230.0
    phases: int = DEFAULT_PHASES
    is_dc: bool = False
    # ConnectorSwitch3to1PhaseSupported: only then may a period's numberPhases change the conversion
    phase_switching: bool = False

    def volts_per_amp(self, number_phases: int | None = None) -> float:
        """Watts per ampere of limit: V x phases on AC, V on DC."""
        if self.is_dc:
            return self.voltage_v
        phases = number_phases if self.phase_switching and number_phases else self.phases
        return self.voltage_v * phases


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit in A, in W, or both at once (None: not limited in that unit)."""

    amps: float | None = None
    watts: float | None = None
    number_phases: int | None = None  # the period's numberPhases, used only where phases can switch

    def tighter(self, other: Limit) -> Limit:
        """Both limits at once: the smaller in each unit."""
        return Limit(_min(self.amps, other.amps), _min(self.watts, other.watts), self.number_phases)

    def in_amps(self, setup: ElectricalSetup, number_phases: int | None = None) -> float | None:
        """The limit as one current (W converted with the setup's phases and voltage), None if unlimited."""
        from_w = None if self.watts is None else self.watts / setup.volts_per_amp(number_phases)
        return _min(self.amps, from_w)

    def in_unit(self, unit: RateUnit, setup: ElectricalSetup) -> float | None:
        """The limit as one value in unit (A or W), None if unlimited."""
        amps = self.in_amps(setup, self.number_phases)
        if unit is RateUnit.A or amps is None:
            return amps
        return amps * setup.volts_per_amp(self.number_phases)


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


# ------------------------------------------------------------------------------------ install rules


def install_profile(
    installed: Sequence[ChargingProfile],
    profile: ChargingProfile,
    *,
    connector_ids: Iterable[int],
    active_tx_id: int | None,
    has_tx: bool,
    max_stack_level: int = 100,
) -> tuple[ProfileResult, list[ChargingProfile]]:
    """Apply SetChargingProfile rules; return the answer and the new installed list.

    A profile with the same id, or the same stack level and purpose on the same connector, is replaced.
    ChargePointMaxProfile only on connector 0. TxProfile only on a connector with a running transaction
    (and, if the profile names a transactionId, that transaction).
    """
    if profile.connector_id != 0 and profile.connector_id not in set(connector_ids):
        return ProfileResult.REJECTED, list(installed)
    if profile.stack_level > max_stack_level:
        return ProfileResult.REJECTED, list(installed)
    if profile.purpose is ProfilePurpose.CHARGE_POINT_MAX and profile.connector_id != 0:
        return ProfileResult.REJECTED, list(installed)
    if profile.purpose is ProfilePurpose.TX:
        if profile.connector_id == 0 or not has_tx:
            return ProfileResult.REJECTED, list(installed)
        if profile.transaction_id is not None and profile.transaction_id != active_tx_id:
            return ProfileResult.REJECTED, list(installed)
    kept = [
        p
        for p in installed
        if p.profile_id != profile.profile_id
        and not (
            p.stack_level == profile.stack_level
            and p.purpose is profile.purpose
            and p.connector_id == profile.connector_id
        )
    ]
    kept.append(profile)
    return ProfileResult.ACCEPTED, kept


def clear_profiles(
    installed: Sequence[ChargingProfile],
    *,
    profile_id: int | None = None,
    connector_id: int | None = None,
    purpose: ProfilePurpose | str | None = None,
    stack_level: int | None = None,
) -> tuple[ClearProfileResult, list[ChargingProfile]]:
    """Apply ClearChargingProfile: by id (other criteria ignored), else by every criterion given."""
    if profile_id is not None:
        kept = [p for p in installed if p.profile_id != profile_id]
    else:
        wanted_purpose = ProfilePurpose(purpose) if purpose is not None else None

        def matches(p: ChargingProfile) -> bool:
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (wanted_purpose is None or p.purpose is wanted_purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in installed if not matches(p)]
    result = ClearProfileResult.ACCEPTED if len(kept) < len(installed) else ClearProfileResult.UNKNOWN
    return result, kept


def drop_tx_profiles(installed: Sequence[ChargingProfile], connector_id: int) -> list[ChargingProfile]:
    """TxProfiles end with their transaction (OCPP 1.6 3.13.2)."""
    return [p for p in installed if not (p.purpose is ProfilePurpose.TX and p.connector_id == connector_id)]


# -------------------------------------------------------------------------------------- computation


def _schedule_start(profile: ChargingProfile, t: float, tx_start: float | None) -> float | None:
    """The start of the schedule instance that applies at t, or None when none does."""
    sched = profile.schedule
    if profile.kind is ProfileKind.RELATIVE:
        return tx_start
    if profile.kind is ProfileKind.RECURRING:
        assert sched.start_schedule is not None  # parse_profile guarantees it
        period = DAY_S if profile.recurrency is Recurrency.DAILY else WEEK_S
        if t < sched.start_schedule:
            return None
        return sched.start_schedule + math.floor((t - sched.start_schedule) / period) * period
    if sched.start_schedule is not None:
        return sched.start_schedule
    # Absolute without startSchedule: a TxProfile starts with its transaction, anything else at the
    # epoch (i.e. the first period holds for ever).
    return tx_start if profile.purpose is ProfilePurpose.TX else 0.0


def _period_at(profile: ChargingProfile, t: float, tx_start: float | None) -> SchedulePeriod | None:
    if profile.valid_from is not None and t < profile.valid_from:
        return None
    if profile.valid_to is not None and t >= profile.valid_to:
        return None
    start = _schedule_start(profile, t, tx_start)
    if start is None:
        return None
    offset = t - start
    if offset < 0:
        return None
    duration = profile.schedule.duration_s
    if profile.kind is ProfileKind.RECURRING:
        period = DAY_S if profile.recurrency is Recurrency.DAILY else WEEK_S
        duration = period if duration is None else min(duration, period)
    if duration is not None and offset >= duration:
        return None
    found: SchedulePeriod | None = None
    for p in profile.schedule.periods:
        if p.start_period_s <= offset:
            found = p
        else:
            break
    return found


def _applies(profile: ChargingProfile, connector_id: int, tx_id: int | None, has_tx: bool) -> bool:
    if profile.purpose is ProfilePurpose.CHARGE_POINT_MAX:
        return profile.connector_id == 0
    if profile.purpose is ProfilePurpose.TX:
        if profile.connector_id != connector_id or not has_tx:
            return False
        return profile.transaction_id is None or profile.transaction_id == tx_id
    return profile.connector_id in (0, connector_id)


def _winner(
    profiles: Sequence[ChargingProfile], t: float, tx_start: float | None
) -> tuple[ChargingProfile, SchedulePeriod] | None:
    for profile in sorted(profiles, key=lambda p: p.stack_level, reverse=True):
        period = _period_at(profile, t, tx_start)
        if period is not None:
            return profile, period
    return None


def _as_limit(chosen: tuple[ChargingProfile, SchedulePeriod] | None) -> Limit:
    if chosen is None:
        return Limit()
    profile, period = chosen
    if profile.schedule.unit is RateUnit.A:
        return Limit(amps=period.limit, number_phases=period.number_phases)
    return Limit(watts=period.limit, number_phases=period.number_phases)


def schedule_limits(
    profiles: Sequence[ChargingProfile],
    connector_id: int,
    t: float,
    *,
    tx_start: float | None = None,
    tx_id: int | None = None,
) -> tuple[Limit, Limit]:
    """At t: (the connector's own limit from TxProfile/TxDefaultProfile, the whole charge point's cap).

    Both in the unit their profile gave; the cap is the ChargePointMaxProfile, shared by every connector.
    """
    has_tx = tx_start is not None
    usable = [p for p in profiles if _applies(p, connector_id, tx_id, has_tx)]
    by_purpose: dict[ProfilePurpose, list[ChargingProfile]] = {}
    for p in usable:
        by_purpose.setdefault(p.purpose, []).append(p)
    chosen = _winner(by_purpose.get(ProfilePurpose.TX, []), t, tx_start)
    if chosen is None:
        defaults = by_purpose.get(ProfilePurpose.TX_DEFAULT, [])
        chosen = _winner([p for p in defaults if p.connector_id == connector_id], t, tx_start)
        if chosen is None:
            chosen = _winner([p for p in defaults if p.connector_id == 0], t, tx_start)
    cap = _winner(by_purpose.get(ProfilePurpose.CHARGE_POINT_MAX, []), t, tx_start)
    return _as_limit(chosen), _as_limit(cap)


def connector_limit(own: Limit, cap: Limit, share: int, setup: ElectricalSetup) -> Limit:
    """The connector's limit: its own schedule and its share (1/share, none for 0) of the charge point's cap.

    AC folds everything into amperes (the pilot offers a current); DC keeps A and W apart, so a power limit
    reaches the controller's power register as W whatever the battery voltage.
    """
    if share <= 0:  # no part of the cap: paused until a transaction ends or the cap rises
        portion = Limit(None if cap.amps is None else 0.0, None if cap.watts is None else 0.0)
    else:
        portion = Limit(None if cap.amps is None else cap.amps / share,
                        None if cap.watts is None else cap.watts / share)
    merged = own.tighter(portion)
    if setup.is_dc:
        return Limit(merged.amps, merged.watts)
    return Limit(merged.in_amps(setup, own.number_phases))


def _breakpoints(profiles: Sequence[ChargingProfile], start: float, end: float,
                 tx_start: float | None) -> list[float]:
    """Every instant in [start, end) where some profile may change its value."""
    points = {start}

    def add(t: float | None) -> None:
        if t is not None and start < t < end:
            points.add(t)

    for p in profiles:
        add(p.valid_from)
        add(p.valid_to)
        sched = p.schedule
        if p.kind is ProfileKind.RECURRING:
            assert sched.start_schedule is not None
            period = DAY_S if p.recurrency is Recurrency.DAILY else WEEK_S
            first = max(0, math.floor((start - sched.start_schedule) / period))
            # A recurrence repeats itself: one lookahead window finds every distinct change.
            last = math.floor((min(end, start + LOOKAHEAD_S) - sched.start_schedule) / period)
            bases = [sched.start_schedule + k * period for k in range(first, last + 1)]
            length: float | None = period if sched.duration_s is None else min(sched.duration_s, period)
        else:
            only = _schedule_start(p, start, tx_start)
            bases = [] if only is None else [only]
            length = sched.duration_s
        for base in bases:
            for period_entry in sched.periods:
                add(base + period_entry.start_period_s)
            if length is not None:
                add(base + length)
    return sorted(points)


def composite_schedule(
    profiles: Sequence[ChargingProfile],
    connector_id: int,
    start: float,
    duration_s: float,
    unit: RateUnit | str = RateUnit.A,
    *,
    tx_start: float | None = None,
    tx_id: int | None = None,
    setup: ElectricalSetup | None = None,
    ceiling_a: float | None = None,
    share: int = 1,
) -> list[CompositePeriod]:
    """The composite schedule for [start, start + duration) as periods with absolute start times.

    Connector 0 reports the charge point's total (the ChargePointMaxProfile). For a connector, tx_start is
    the start of its running transaction (None: TxProfiles do not apply and Relative profiles do not start),
    share is how many connectors split the charge point's cap, ceiling_a caps every period (hardware and
    config max); times without any limit are reported at the ceiling, or omitted when there is no ceiling.
    Every value is converted with the connector's own phases and voltage and rounded down, so the report
    never exceeds a limit that produced it.
    """
    setup = setup or ElectricalSetup()
    unit = RateUnit(unit)
    end = start + duration_s
    result: list[CompositePeriod] = []
    for t in _breakpoints(profiles, start, end, tx_start):
        own, cap = schedule_limits(profiles, connector_id, t, tx_start=tx_start, tx_id=tx_id)
        limit = cap if connector_id == 0 else connector_limit(own, cap, share, setup)
        if ceiling_a is not None:
            limit = limit.tighter(Limit(amps=ceiling_a))
        value = limit.in_unit(unit, setup)
        if value is None:
            continue
        value = floor_tenth(value)
        phases = None if setup.is_dc else setup.phases
        if result and result[-1].limit == value and result[-1].number_phases == phases:
            continue
        result.append(CompositePeriod(t, value, phases))
    return result


def limit_at(
    profiles: Sequence[ChargingProfile],
    connector_id: int,
    now: float,
    *,
    tx_start: float | None = None,
    tx_id: int | None = None,
    setup: ElectricalSetup | None = None,
    share: int = 1,
) -> tuple[Limit, float | None]:
    """(the connector's limit at now, the next wall time it may change or None).

    The limit is its own schedule combined with its share of the charge point's cap (see connector_limit).
    """
    setup = setup or ElectricalSetup()

    def at(t: float) -> Limit:
        own, cap = schedule_limits(profiles, connector_id, t, tx_start=tx_start, tx_id=tx_id)
        return connector_limit(own, cap, share, setup)

    current = at(now)
    for t in _breakpoints(profiles, now, math.inf, tx_start)[1:]:
        if at(t) != current:
            return current, t
    return current, None


def floor_tenth(value: float) -> float:
    """Round down to 0.1 (never up: a limit reported or commanded must not exceed the one computed)."""
    return math.floor(value * 10 + 1e-6) / 10


def effective_limit(*ceilings: float | None) -> float:
    """The minimum of the ceilings given (hardware max, config max, schedule); None ignores one."""
    values = [max(0.0, c) for c in ceilings if c is not None]
    return min(values) if values else 0.0


def with_connector(profile: ChargingProfile, connector_id: int) -> ChargingProfile:
    """A copy of profile installed on another connector."""
    return replace(profile, connector_id=connector_id)
