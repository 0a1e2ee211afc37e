"""Smart charging: install/clear rules, composite schedules, limits in the core."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core import (
    ChargingProfile,
    ClearChargingProfile,
    ClearProfileResult,
    CompositePeriod,
    ConnectorConfig,
    ConnectorStatus,
    ElectricalSetup,
    IdPresented,
    PlugChanged,
    ProfileResult,
    RemoteStart,
    SetContactor,
    SetLimit,
    TransactionConfirmed,
    TransactionStarted,
    clear_profiles,
    composite_schedule,
    install_profile,
    limit_at,
)
from agent.core import SetChargingProfile as CoreSetChargingProfile
from agent.ocpp.v16.profiles import parse_profile
from tests.agent.test_core_rig import START, Rig, one, only

T0 = START
ONE_AMP = {"startPeriod": 0, "limit": 1}
LATE_START = {"startPeriod": 5, "limit": 1}


def prof(pid: int = 1, level: int = 0, purpose: str = "TxDefaultProfile", kind: str = "Absolute",
         periods: list[tuple[float, float]] | None = None, unit: str = "A", start: float | None = T0,
         duration: float | None = None, **extra: Any) -> dict[str, Any]:
    """A csChargingProfiles dict in OCPP 1.6 JSON shape."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in (periods or [(0, 16)])],
    }
    if start is not None:
        schedule["startSchedule"] = start
    if duration is not None:
        schedule["duration"] = duration
    return {"chargingProfileId": pid, "stackLevel": level, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": schedule, **extra}


def SetChargingProfile(connector_id: int, raw: dict[str, Any]) -> CoreSetChargingProfile:
    """The core command for a profile in 1.6 JSON shape, parsed by the 1.6 codec as the adapter does."""
    return CoreSetChargingProfile(connector_id, parse_profile(raw, connector_id))


def parsed(connector_id: int = 0, **kwargs: Any) -> ChargingProfile:
    return parse_profile(prof(**kwargs), connector_id)


def amps_at(profiles: list[ChargingProfile], connector_id: int, now: float) -> tuple[float | None, float | None]:
    """limit_at on a 3-phase 230 V AC connector, as (A or None, next change)."""
    limit, next_change = limit_at(profiles, connector_id, now)
    return limit.amps, next_change


# ---------------------------------------------------------------------------------- install / clear


def test_install_replaces_same_id_and_same_level_purpose_connector() -> None:
    a = parsed(1, pid=1, level=0)
    result, installed = install_profile([], a, connector_ids=[1, 2], active_tx_id=None, has_tx=False)
    assert result is ProfileResult.ACCEPTED and installed == [a]
    b = parsed(1, pid=2, level=0, periods=[(0, 10)])
    _, installed = install_profile(installed, b, connector_ids=[1, 2], active_tx_id=None, has_tx=False)
    assert installed == [b]
    c = parsed(2, pid=2, level=1)
    _, installed = install_profile(installed, c, connector_ids=[1, 2], active_tx_id=None, has_tx=False)
    assert installed == [c]
    d = parsed(1, pid=3, level=1)
    _, installed = install_profile(installed, d, connector_ids=[1, 2], active_tx_id=None, has_tx=False)
    assert installed == [c, d]


@pytest.mark.parametrize(("profile", "has_tx", "tx_id", "expected"), [
    (dict(connector_id=1, purpose="TxProfile"), False, None, ProfileResult.REJECTED),
    (dict(connector_id=1, purpose="TxProfile"), True, 9, ProfileResult.ACCEPTED),
    (dict(connector_id=1, purpose="TxProfile", transactionId=8), True, 9, ProfileResult.REJECTED),
    (dict(connector_id=1, purpose="TxProfile", transactionId=9), True, 9, ProfileResult.ACCEPTED),
    (dict(connector_id=0, purpose="TxProfile"), True, 9, ProfileResult.REJECTED),
    (dict(connector_id=1, purpose="ChargePointMaxProfile"), False, None, ProfileResult.REJECTED),
    (dict(connector_id=0, purpose="ChargePointMaxProfile"), False, None, ProfileResult.ACCEPTED),
    (dict(connector_id=5, purpose="TxDefaultProfile"), False, None, ProfileResult.REJECTED),
    (dict(connector_id=1, level=101), False, None, ProfileResult.REJECTED),
])
def test_install_rules(
    profile: dict[str, Any], has_tx: bool, tx_id: int | None, expected: ProfileResult
) -> None:
    p = parsed(**profile)
    result, _ = install_profile([], p, connector_ids=[1], active_tx_id=tx_id, has_tx=has_tx,
                                max_stack_level=100)
    assert result is expected


def test_clear_by_id_or_criteria() -> None:
    profiles = [parsed(1, pid=1, level=0), parsed(1, pid=2, level=1), parsed(0, pid=3, level=0,
                                                                             purpose="ChargePointMaxProfile")]
    result, kept = clear_profiles(profiles, profile_id=2, connector_id=0)
    assert result is ClearProfileResult.ACCEPTED and [p.profile_id for p in kept] == [1, 3]
    result, kept = clear_profiles(profiles, purpose="TxDefaultProfile", stack_level=1)
    assert [p.profile_id for p in kept] == [1, 3]
    result, kept = clear_profiles(profiles, connector_id=1)
    assert [p.profile_id for p in kept] == [3]
    result, kept = clear_profiles(profiles)
    assert kept == []
    result, kept = clear_profiles(profiles, profile_id=42)
    assert result is ClearProfileResult.UNKNOWN and kept == profiles


# --------------------------------------------------------------------------------- composite schedule


def periods(result: list[CompositePeriod]) -> list[tuple[float, float]]:
    return [(p.start - T0, p.limit) for p in result]


def test_composite_highest_stack_level_wins_and_falls_through_when_it_ends() -> None:
    low = parsed(0, pid=1, level=0, periods=[(0, 32)])
    high = parsed(0, pid=2, level=5, periods=[(0, 10), (600, 12)], duration=1200)
    result = composite_schedule([low, high], 1, T0, 3600)
    assert periods(result) == [(0, 10), (600, 12), (1200, 32)]


def test_composite_tx_profile_overrides_tx_default_and_cp_max_caps() -> None:
    default = parsed(0, pid=1, level=9, periods=[(0, 32)])
    tx = parsed(1, pid=2, level=0, purpose="TxProfile", kind="Relative", start=None,
                periods=[(0, 20), (300, 8)])
    cap = parsed(0, pid=3, level=0, purpose="ChargePointMaxProfile", periods=[(0, 16)])
    result = composite_schedule([default, tx, cap], 1, T0, 1000, tx_start=T0 + 100)
    assert periods(result) == [(0, 16), (400, 8)]
    no_tx = composite_schedule([default, tx, cap], 1, T0, 1000)
    assert periods(no_tx) == [(0, 16)]


def test_composite_connector_default_beats_connector_zero_default() -> None:
    everywhere = parsed(0, pid=1, level=3, periods=[(0, 30)])
    here = parsed(2, pid=2, level=0, periods=[(0, 6)])
    assert periods(composite_schedule([everywhere, here], 2, T0, 60)) == [(0, 6)]
    assert periods(composite_schedule([everywhere, here], 1, T0, 60)) == [(0, 30)]


def test_composite_watts_to_amps_and_back() -> None:
    w = parsed(0, pid=1, unit="W", periods=[(0, 11040)])
    setup = ElectricalSetup(230.0, 3)
    assert periods(composite_schedule([w], 1, T0, 60, "A", setup=setup)) == [(0, 16.0)]
    assert periods(composite_schedule([w], 1, T0, 60, "W", setup=setup)) == [(0, 11040.0)]
    one_phase = parse_profile({**prof(unit="W"), "chargingSchedule": {
        "chargingRateUnit": "W", "startSchedule": T0,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3680, "numberPhases": 1}]}})
    # a 3-phase connector that cannot switch phases draws on all three: numberPhases does not change it
    assert periods(composite_schedule([one_phase], 1, T0, 60, "A", setup=setup)) == [(0, 5.3)]
    switching = ElectricalSetup(230.0, 3, phase_switching=True)
    assert periods(composite_schedule([one_phase], 1, T0, 60, "A", setup=switching)) == [(0, 16.0)]


def test_composite_daily_recurring_profile() -> None:
    night = parsed(0, pid=1, kind="Recurring", recurrencyKind="Daily", start=T0,
                   periods=[(0, 6), (8 * 3600, 32)])
    result = composite_schedule([night], 1, T0 + 86400 + 3600, 10 * 3600)
    assert periods(result) == [(86400 + 3600, 6), (86400 + 8 * 3600, 32)]


def test_composite_valid_from_and_to() -> None:
    p = parsed(0, pid=1, periods=[(0, 10)], validFrom=T0 + 100, validTo=T0 + 200)
    assert periods(composite_schedule([p], 1, T0, 300, ceiling_a=32)) == [(0, 32), (100, 10), (200, 32)]
    assert periods(composite_schedule([p], 1, T0, 300)) == [(100, 10)]


def test_limit_at_gives_limit_and_next_change() -> None:
    p = parsed(0, pid=1, periods=[(0, 10), (600, 10), (900, 20)])
    assert amps_at([p], 1, T0 + 10) == (10, T0 + 900)
    assert amps_at([p], 1, T0 + 900) == (20, None)
    assert amps_at([], 1, T0) == (None, None)
    future = parsed(0, pid=2, periods=[(0, 8)], start=T0 + 50)
    assert amps_at([future], 1, T0) == (None, T0 + 50)


# ---------------------------------------------------------------------------------- in the core


def _limits(rig: Rig) -> list[float]:
    return [o.current_a for o in only(rig.log, SetLimit)]


def test_tx_default_profile_limits_the_offer_and_changes_at_the_period_boundary() -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=32))
    rig.charge()
    answer, out = rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, 16), (600, 10)])))
    assert answer is ProfileResult.ACCEPTED
    assert SetLimit(1, 16.0) in out
    assert not only(rig.advance(599 - (rig.wall - T0)), SetLimit)
    assert SetLimit(1, 10.0) in rig.advance(1)


def test_cp_max_profile_caps_hardware_and_config() -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=16))
    rig.charge()
    rig.call("set_charging_profile", SetChargingProfile(0, prof(purpose="ChargePointMaxProfile",
                                                                periods=[(0, 40)])))
    assert _limits(rig)[-1] == 16.0


def test_schedule_limit_zero_suspends_evse() -> None:
    rig = Rig()
    rig.charge()
    _, out = rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, 0)])))
    assert SetContactor(1, False) in out
    assert rig.status() is ConnectorStatus.SUSPENDED_EVSE
    _, out = rig.call("clear_charging_profile", ClearChargingProfile(profile_id=1))
    assert SetContactor(1, True) in out


def test_tx_profile_needs_a_transaction_and_ends_with_it() -> None:
    rig = Rig()
    tx = prof(pid=5, purpose="TxProfile", kind="Relative", start=None, periods=[(0, 8)])
    assert rig.call("set_charging_profile", SetChargingProfile(1, tx))[0] is ProfileResult.REJECTED
    rig.charge()
    started = one(rig.log, TransactionStarted)
    rig.send(TransactionConfirmed(started.local_tx_id, 31))
    assert rig.call("set_charging_profile", SetChargingProfile(1, {**tx, "transactionId": 30}))[0] is (
        ProfileResult.REJECTED)
    answer, out = rig.call("set_charging_profile", SetChargingProfile(1, {**tx, "transactionId": 31}))
    assert answer is ProfileResult.ACCEPTED and SetLimit(1, 8.0) in out
    out = rig.send(IdPresented(1, "TAG1"))
    assert rig.core.profiles == []
    assert SetLimit(1, 32.0) in out


def test_remote_start_charging_profile_applies_to_the_new_transaction() -> None:
    rig = Rig()
    tx = prof(pid=5, purpose="TxProfile", kind="Relative", start=None, periods=[(0, 6)])
    rig.call("remote_start", RemoteStart(1, "R", parse_profile(tx, 1)))
    out = rig.send(PlugChanged(1, True))
    assert only(out, TransactionStarted) and SetLimit(1, 6.0) in out


def test_core_composite_schedule_includes_local_limits() -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=20))
    rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, 32), (60, 10)])))
    result = rig.core.composite_schedule(1, 120, "A", rig.wall)
    assert result is not None and [(p.start - rig.wall, p.limit) for p in result] == [(0, 20), (60, 10)]
    assert rig.core.composite_schedule(9, 120, "A", rig.wall) is None
    with pytest.raises(ValueError):  # a profile the codec cannot read never reaches the core: Rejected there
        parse_profile({"bad": 1})


def test_limit_at_finds_a_change_far_in_the_future() -> None:
    p = parsed(0, pid=1, periods=[(0, 10)], validTo=T0 + 60 * 86400)
    assert amps_at([p], 1, T0) == (10, T0 + 60 * 86400)


def test_weekly_recurring_profile_repeats_every_week() -> None:
    weekly = parsed(0, pid=1, kind="Recurring", recurrencyKind="Weekly", start=T0,
                    periods=[(0, 8), (86400, 16)])
    assert amps_at([weekly], 1, T0 + 7 * 86400 + 10) == (8, T0 + 8 * 86400)
    assert amps_at([weekly], 1, T0 + 8 * 86400) == (16, T0 + 14 * 86400)
    assert amps_at([weekly], 1, T0 - 10) == (None, T0)


# ------------------------------------------------------------- the cap is shared, W stays W (issue 10)


def _last_limits(log: list[Any]) -> dict[int, SetLimit]:
    last: dict[int, SetLimit] = {}
    for o in log:
        if isinstance(o, SetLimit):
            last[o.connector_id] = o
    return last


def _sum_of_closed_limits_never_exceeds(log: list[Any], cap_a: float) -> None:
    """Replays the outputs in order: at every step the limits of closed contactors add up to at most cap_a."""
    limits: dict[int, float] = {}
    closed: set[int] = set()
    for o in log:
        if isinstance(o, SetLimit):
            limits[o.connector_id] = o.current_a
        elif isinstance(o, SetContactor):
            (closed.add if o.closed else closed.discard)(o.connector_id)
        assert sum(limits.get(i, 0.0) for i in closed) <= cap_a + 1e-9, (o, limits, closed)


def test_charge_point_max_profile_is_shared_by_the_charging_connectors() -> None:
    rig = Rig(connectors=2, config=ConnectorConfig(max_current_a=32))
    rig.call("set_charging_profile", SetChargingProfile(0, prof(purpose="ChargePointMaxProfile",
                                                                periods=[(0, 20)])))
    rig.charge(1, "A")
    assert _last_limits(rig.log)[1].current_a == 20.0
    rig.charge(2, "B")
    last = _last_limits(rig.log)
    assert (last[1].current_a, last[2].current_a) == (10.0, 10.0)
    _sum_of_closed_limits_never_exceeds(rig.log, 20.0)
    rig.send(PlugChanged(2, False))  # B leaves: A gets the whole cap again
    assert _last_limits(rig.log)[1].current_a == 20.0
    _sum_of_closed_limits_never_exceeds(rig.log, 20.0)


def test_shared_cap_of_three_connectors_rounds_down() -> None:
    rig = Rig(connectors=3, config=ConnectorConfig(max_current_a=32))
    rig.call("set_charging_profile", SetChargingProfile(0, prof(purpose="ChargePointMaxProfile",
                                                                periods=[(0, 32)])))
    for i, tag in enumerate("ABC", start=1):
        rig.charge(i, tag)
    assert {o.current_a for o in _last_limits(rig.log).values()} == {10.6}
    _sum_of_closed_limits_never_exceeds(rig.log, 32.0)


def test_composite_schedule_of_connector_zero_is_the_charge_point_total() -> None:
    rig = Rig(connectors=2, config=ConnectorConfig(max_current_a=32))
    rig.call("set_charging_profile", SetChargingProfile(0, prof(purpose="ChargePointMaxProfile",
                                                                periods=[(0, 20)])))
    rig.charge(1, "A")
    rig.charge(2, "B")
    total = rig.core.composite_schedule(0, 60, "A", rig.wall)
    assert total is not None and [p.limit for p in total] == [20.0]
    each = rig.core.composite_schedule(1, 60, "A", rig.wall)
    assert each is not None and [p.limit for p in each] == [10.0]


def test_ac_watts_use_the_connectors_real_phases_not_the_profiles_number_phases() -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=32, phases=3, voltage_v=230.0))
    rig.charge()
    schedule = {"chargingRateUnit": "W", "startSchedule": T0,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000, "numberPhases": 1}]}
    rig.call("set_charging_profile", SetChargingProfile(0, {**prof(), "chargingSchedule": schedule}))
    assert _last_limits(rig.log)[1] == SetLimit(1, 15.9, None)  # 11000 / (3 x 230), never 32 or 47.8
    in_w = rig.core.composite_schedule(1, 60, "W", rig.wall)
    assert in_w is not None and in_w[0].limit <= 11000 and in_w[0].number_phases == 3


def test_dc_power_limit_reaches_the_controller_as_watts() -> None:
    dc = ConnectorConfig(is_dc=True, max_current_a=200, voltage_v=400.0, phases=1)
    rig = Rig(config=dc)
    rig.charge()
    assert _last_limits(rig.log)[1] == SetLimit(1, 200.0, None)
    rig.call("set_charging_profile", SetChargingProfile(0, prof(unit="W", periods=[(0, 50000)])))
    assert _last_limits(rig.log)[1] == SetLimit(1, 200.0, 50000)  # W stays W: no 41.7 A
    rig.call("set_charging_profile", SetChargingProfile(0, prof(pid=2, level=1, periods=[(0, 80)])))
    assert _last_limits(rig.log)[1] == SetLimit(1, 80.0, None)


def test_dc_gets_both_limits_when_a_cap_in_w_meets_a_profile_in_a() -> None:
    dc = ConnectorConfig(is_dc=True, max_current_a=200, voltage_v=400.0, phases=1)
    rig = Rig(config=dc)
    rig.charge()
    rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, 120)])))
    rig.call("set_charging_profile", SetChargingProfile(0, prof(pid=2, purpose="ChargePointMaxProfile",
                                                                unit="W", periods=[(0, 30000)])))
    assert _last_limits(rig.log)[1] == SetLimit(1, 120.0, 30000)


@pytest.mark.parametrize(("limit", "closed"), [(5.9, False), (6.0, True), (0.5, False)])
def test_ac_limit_below_six_amps_suspends_charging(limit: float, closed: bool) -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=32))
    rig.charge()
    assert rig.contactor()
    rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, limit)])))
    assert rig.contactor() is closed
    if not closed:
        assert rig.status() is ConnectorStatus.SUSPENDED_EVSE
        assert "limit_below_minimum" in rig.core.snapshot()["connectors"]["1"]["blockers"]
        rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, 6)])))
        assert rig.contactor() and rig.status() is ConnectorStatus.CHARGING


def test_dc_has_no_six_amp_minimum() -> None:
    rig = Rig(config=ConnectorConfig(is_dc=True, max_current_a=200, voltage_v=400.0, phases=1))
    rig.charge()
    rig.call("set_charging_profile", SetChargingProfile(0, prof(periods=[(0, 3)])))
    assert rig.contactor()


# ------------------------------------------------------------------ advertised limits are enforced (issue 11)


def test_more_schedule_periods_than_charging_schedule_max_periods_is_rejected() -> None:
    rig = Rig(max_schedule_periods=3)
    three = prof(periods=[(0, 10), (60, 12), (120, 14)])
    four = prof(pid=2, periods=[(0, 10), (60, 12), (120, 14), (180, 16)])
    assert rig.call("set_charging_profile", SetChargingProfile(0, three))[0] is ProfileResult.ACCEPTED
    assert rig.call("set_charging_profile", SetChargingProfile(0, four))[0] is ProfileResult.REJECTED
    assert [p.profile_id for p in rig.core.profiles] == [1]


def test_a_profile_beyond_max_charging_profiles_installed_is_rejected_but_a_replacement_is_not() -> None:
    rig = Rig(max_profiles_installed=2)
    for pid in (1, 2):
        assert rig.call("set_charging_profile", SetChargingProfile(0, prof(pid=pid, level=pid)))[0] is (
            ProfileResult.ACCEPTED)
    assert rig.call("set_charging_profile", SetChargingProfile(0, prof(pid=3, level=3)))[0] is ProfileResult.REJECTED
    # the same id again replaces it: the count does not grow
    assert rig.call("set_charging_profile", SetChargingProfile(0, prof(pid=2, level=5)))[0] is (
        ProfileResult.ACCEPTED)
    assert sorted(p.profile_id for p in rig.core.profiles) == [1, 2]


def test_a_cap_too_small_for_every_ac_connector_charges_as_many_as_fit_at_six_amps() -> None:
    rig = Rig(connectors=3, config=ConnectorConfig(max_current_a=32))
    rig.call("set_charging_profile", SetChargingProfile(0, prof(purpose="ChargePointMaxProfile",
                                                                periods=[(0, 16)])))
    for i, tag in enumerate("ABC", start=1):
        rig.charge(i, tag)
        rig.advance(1)
    # 16 A / 3 = 5.3 A would pause all three: the first two get 8 A, the third waits
    last = _last_limits(rig.log)
    assert (last[1].current_a, last[2].current_a, last[3].current_a) == (8.0, 8.0, 0.0)
    assert rig.contactor(1) and rig.contactor(2) and not rig.contactor(3)
    assert rig.status(3) is ConnectorStatus.SUSPENDED_EVSE
    _sum_of_closed_limits_never_exceeds(rig.log, 16.0)
    rig.send(PlugChanged(1, False))  # A leaves: C gets its share
    last = _last_limits(rig.log)
    assert (last[2].current_a, last[3].current_a) == (8.0, 8.0) and rig.contactor(3)
    _sum_of_closed_limits_never_exceeds(rig.log, 16.0)


def test_a_cap_in_watts_is_shared_by_dc_connectors_as_power() -> None:
    dc = ConnectorConfig(is_dc=True, max_current_a=200, voltage_v=400.0, phases=1)
    rig = Rig(connectors=2, config=dc)
    rig.call("set_charging_profile", SetChargingProfile(0, prof(purpose="ChargePointMaxProfile", unit="W",
                                                                periods=[(0, 50000)])))
    rig.charge(1, "A")
    assert _last_limits(rig.log)[1] == SetLimit(1, 200.0, 50000)
    rig.charge(2, "B")
    last = _last_limits(rig.log)
    assert (last[1], last[2]) == (SetLimit(1, 200.0, 25000), SetLimit(2, 200.0, 25000))
