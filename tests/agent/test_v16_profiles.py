"""The OCPP 1.6 charging profile codec: csChargingProfiles JSON to the core's parsed profiles."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core import ProfileKind, ProfilePurpose, RateUnit, Recurrency
from agent.ocpp.v16.profiles import parse_profile, stored_profiles
from agent.store import Store
from tests.agent.test_core_limits import LATE_START, ONE_AMP, T0, prof


def test_parse_profile_ocpp_json_with_iso_times() -> None:
    p = parse_profile({
        "chargingProfileId": 7, "stackLevel": 2, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Recurring", "recurrencyKind": "Daily", "validTo": "2030-01-01T00:00:00Z",
        "chargingSchedule": {"chargingRateUnit": "W", "startSchedule": "2023-11-14T22:13:20Z",
                             "duration": 3600, "minChargingRate": 6.0,
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000, "numberPhases": 3},
                                                        {"startPeriod": 1800, "limit": 7400.5}]}}, 1)
    assert (p.profile_id, p.stack_level, p.purpose, p.kind, p.recurrency, p.connector_id) == (
        7, 2, ProfilePurpose.TX_DEFAULT, ProfileKind.RECURRING, Recurrency.DAILY, 1)
    assert p.schedule.start_schedule == T0 and p.schedule.unit is RateUnit.W
    assert p.schedule.periods[1].limit == 7400.5 and p.schedule.periods[0].number_phases == 3
    assert p.valid_to == 1893456000.0


def test_parse_profile_accepts_snake_case_from_the_ocpp_library() -> None:
    p = parse_profile({"charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxProfile",
                       "charging_profile_kind": "Relative", "transaction_id": 5,
                       "charging_schedule": {"charging_rate_unit": "A",
                                             "charging_schedule_period": [{"start_period": 0, "limit": 10}]}})
    assert p.transaction_id == 5 and p.kind is ProfileKind.RELATIVE


@pytest.mark.parametrize(("change", "reason"), [
    ({"chargingProfilePurpose": "Bogus"}, "chargingProfilePurpose"),
    ({"stackLevel": -1}, "stackLevel"),
    ({"chargingProfileKind": "Recurring"}, "recurrencyKind"),
    ({"chargingProfileKind": "Relative"}, "startSchedule"),
    ({"transactionId": 3}, "transactionId"),
    ({"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": []}}, "non-empty"),
    ({"chargingSchedule": {"chargingRateUnit": "kW", "chargingSchedulePeriod": [ONE_AMP]}},
     "chargingRateUnit"),
    ({"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [LATE_START]}},
     "first startPeriod"),
    ({"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 1}, {"startPeriod": 0, "limit": 2}]}}, "increase"),
    ({"chargingSchedule": {"chargingRateUnit": "A", "startSchedule": "yesterday",
                           "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1}]}}, "date-time"),
    ({"validFrom": "2024-01-01T00:00:00"}, "time zone"),
])
def test_parse_profile_rejects_with_reason(change: dict[str, Any], reason: str) -> None:
    data = prof()
    data.update(change)
    with pytest.raises(ValueError, match=reason):
        parse_profile(data)



def test_stored_profiles_are_parsed_and_a_bad_one_is_dropped(tmp_path: Any) -> None:
    with Store(tmp_path / "a.db") as store:
        store.profile_put(1, prof(pid=3, level=1))
        store.profile_put(0, {**prof(pid=4), "chargingProfilePurpose": "Bogus"})
        assert [(p.profile_id, p.connector_id, p.stack_level) for p in stored_profiles(store)] == [(3, 1, 1)]
