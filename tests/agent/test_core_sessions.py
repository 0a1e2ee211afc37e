"""Session rules of ChargePointCore: start either way, ConnectionTimeOut, stops, invalid ids, contactor."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.core import (
    AuthorizationRejected,
    AuthResult,
    AuthStatus,
    Blocker,
    ChargePointCore,
    ConnectorConfig,
    ConnectorStatus,
    DeviceRole,
    EstopChanged,
    EvReadyChanged,
    Fault,
    FaultCleared,
    FaultRaised,
    IdPresented,
    Input,
    IsolationChanged,
    LimitChanged,
    MeterSample,
    NeedAuthorize,
    PlugChanged,
    RemoteStart,
    RemoteStartResult,
    RemoteStop,
    RemoteStopResult,
    ResetKind,
    ResetRequested,
    ResetResult,
    SetContactor,
    SetLimit,
    SetLock,
    ShowIndicator,
    StatusChanged,
    StopReason,
    TransactionConfirmed,
    TransactionStarted,
    TransactionStopped,
    UnlockRequested,
    UnlockResult,
)
from agent.core.events import IndicatorState
from agent.ocpp.v16.profiles import parse_profile
from agent.ocpp.v16.statuses import error_fields
from tests.agent.test_core_rig import Rig, one, only

# ------------------------------------------------------------------------------------------ starting


def test_plug_first_then_card_starts_at_auth_and_closes_at_ev_ready() -> None:
    rig = Rig()
    rig.send(MeterSample(1, 1234.0, 0.0))
    rig.send(PlugChanged(1, True))
    assert rig.status() is ConnectorStatus.PREPARING
    out = rig.send(IdPresented(1, "TAG1"))
    assert one(out, NeedAuthorize) == NeedAuthorize("TAG1", 1)
    assert not only(out, TransactionStarted)
    out = rig.send(AuthResult("TAG1", AuthStatus.ACCEPTED))
    started = one(out, TransactionStarted)
    assert (started.connector_id, started.id_tag, started.meter_start_wh, started.timestamp) == (
        1, "TAG1", 1234.0, rig.wall)
    assert SetLock(1, True) in out
    assert not only(out, SetContactor)  # OCPP 1.6: the transaction starts before the EV is ready
    assert rig.status() is ConnectorStatus.SUSPENDED_EV
    out = rig.send(EvReadyChanged(1, True))
    assert SetContactor(1, True) in out
    assert rig.status() is ConnectorStatus.CHARGING
    assert ShowIndicator(1, IndicatorState.CHARGING) in out


def test_card_first_then_plug_starts_at_plug() -> None:
    rig = Rig()
    rig.authorize("TAG1")
    assert rig.status() is ConnectorStatus.PREPARING
    assert not only(rig.log, TransactionStarted)
    out = rig.send(PlugChanged(1, True))
    assert one(out, TransactionStarted).id_tag == "TAG1"
    out = rig.send(EvReadyChanged(1, True))
    assert SetContactor(1, True) in out


def test_tc_004_2_connection_timeout_without_plug_returns_to_available() -> None:
    rig = Rig(connection_timeout_s=30)
    rig.send(MeterSample(1, 0.0))
    rig.authorize("TAG1")
    assert rig.status() is ConnectorStatus.PREPARING
    rig.advance(29)
    assert rig.status() is ConnectorStatus.PREPARING
    rig.advance(1)
    assert rig.status() is ConnectorStatus.AVAILABLE
    out = rig.send(PlugChanged(1, True))
    assert not only(out, TransactionStarted)
    assert rig.status() is ConnectorStatus.PREPARING
    assert not only(rig.log, TransactionStarted)


def test_connection_timeout_runs_on_monotonic_time_not_wall_time() -> None:
    rig = Rig(connection_timeout_s=30)
    rig.authorize("TAG1")
    rig.wall += 10 * 365 * 86400  # NTP sync jumps the wall clock; monotonic time does not move
    rig.send(PlugChanged(1, True))
    assert only(rig.log, TransactionStarted)


@pytest.mark.parametrize("status", [AuthStatus.INVALID, AuthStatus.BLOCKED, AuthStatus.EXPIRED,
                                    AuthStatus.CONCURRENT_TX])
def test_tc_023_invalid_blocked_expired_id_does_not_start(status: AuthStatus) -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    out = rig.authorize("BAD", status=status)
    assert one(out, AuthorizationRejected) == AuthorizationRejected(1, "BAD", status)
    assert not only(rig.log, TransactionStarted)
    assert not rig.contactor()
    assert rig.status() is ConnectorStatus.PREPARING


def test_auth_result_without_pending_request_is_ignored() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    out = rig.send(AuthResult("NOBODY", AuthStatus.ACCEPTED))
    assert not only(out, TransactionStarted)


def test_free_vend_starts_at_plug_in() -> None:
    rig = Rig(free_vend_id="FREE")
    out = rig.send(PlugChanged(1, True))
    assert one(out, TransactionStarted).id_tag == "FREE"
    assert not only(out, NeedAuthorize)


# ------------------------------------------------------------------------------- contactor conditions

ALL_READY = ["authorized", "plugged", "ev_ready", "no_fault", "no_estop", "isolation", "limit"]


def _setup_all_but(rig: Rig, missing: str) -> None:
    """Bring a DC connector to ready-to-charge with every condition but `missing`."""
    if missing == "no_fault":
        rig.send(FaultRaised(1, "dc1", "over_temperature", stops_charging=True))
    if missing == "no_estop":
        rig.send(EstopChanged(True))
    if missing == "limit":
        rig.send(LimitChanged(1, 0.0))
    rig.send(PlugChanged(1, True))
    if missing != "authorized":
        rig.authorize("TAG1")
    if missing == "plugged":
        rig.send(PlugChanged(1, False))  # StopTransactionOnEVSideDisconnect=false keeps the transaction
    if missing != "isolation":
        rig.send(IsolationChanged(1, True))
    if missing != "ev_ready":
        rig.send(EvReadyChanged(1, True))


# A fault or an e-stop also refuses the authorization, so the transaction never starts either.
BLOCKERS_FOR = {
    "authorized": {Blocker.NOT_AUTHORIZED},
    "plugged": {Blocker.NOT_PLUGGED},
    "ev_ready": {Blocker.EV_NOT_READY},
    "no_fault": {Blocker.FAULT, Blocker.NOT_AUTHORIZED},
    "no_estop": {Blocker.ESTOP, Blocker.NOT_AUTHORIZED},
    "isolation": {Blocker.ISOLATION},
    "limit": {Blocker.LIMIT_ZERO},
}


def test_contactor_closes_when_every_condition_holds() -> None:
    rig = Rig(config=ConnectorConfig(is_dc=True), stop_transaction_on_ev_side_disconnect=False)
    _setup_all_but(rig, "")
    assert SetContactor(1, True) in rig.log
    assert rig.core.snapshot()["connectors"]["1"]["blockers"] == []


@pytest.mark.parametrize("missing", ALL_READY)
def test_contactor_stays_open_when_one_condition_is_missing(missing: str) -> None:
    rig = Rig(config=ConnectorConfig(is_dc=True), stop_transaction_on_ev_side_disconnect=False)
    _setup_all_but(rig, missing)
    assert SetContactor(1, True) not in rig.log
    assert not rig.contactor()
    assert set(rig.core.snapshot()["connectors"]["1"]["blockers"]) == {b.value for b in BLOCKERS_FOR[missing]}


REMOVALS: dict[str, Input] = {
    "unplug": PlugChanged(1, False),
    "ev_not_ready": EvReadyChanged(1, False),
    "fault": FaultRaised(1, "dc1", "over_current"),
    "cp_fault": FaultRaised(0, "meter", "communication"),
    "estop": EstopChanged(True),
    "isolation": IsolationChanged(1, False),
    "limit_zero": LimitChanged(1, 0.0),
}


@pytest.mark.parametrize("removal", list(REMOVALS))
def test_contactor_opens_when_a_condition_goes(removal: str) -> None:
    rig = Rig(config=ConnectorConfig(is_dc=True))
    rig.charge()
    assert rig.contactor()
    out = rig.send(REMOVALS[removal])
    assert SetContactor(1, False) in out
    assert not rig.contactor()
    stopped = only(out, TransactionStopped)
    if stopped:  # safety first: the contactor opens before the transaction is recorded as stopped
        assert out.index(SetContactor(1, False)) < out.index(stopped[0])


def test_ac_connector_ignores_isolation() -> None:
    rig = Rig(config=ConnectorConfig(is_dc=False))
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1")
    rig.send(EvReadyChanged(1, True))
    assert rig.contactor()


def test_ev_not_ready_after_start_is_suspended_ev_and_back_to_charging() -> None:
    rig = Rig()
    rig.charge()
    rig.send(EvReadyChanged(1, False))
    assert rig.status() is ConnectorStatus.SUSPENDED_EV
    rig.send(EvReadyChanged(1, True))
    assert rig.status() is ConnectorStatus.CHARGING


def test_limit_zero_is_suspended_evse_and_limit_follows_hardware() -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=32.0))
    rig.charge()
    out = rig.send(LimitChanged(1, 20.0))
    assert SetLimit(1, 20.0) in out
    out = rig.send(LimitChanged(1, 0.0))
    assert SetLimit(1, 0.0) in out and SetContactor(1, False) in out
    assert rig.status() is ConnectorStatus.SUSPENDED_EVSE
    out = rig.send(LimitChanged(1, None))
    assert SetLimit(1, 32.0) in out and SetContactor(1, True) in out


# ---------------------------------------------------------------------------------------- stopping


def test_local_stop_with_the_same_card_needs_no_authorize() -> None:
    rig = Rig()
    rig.charge(energy_wh=1000.0)
    rig.send(MeterSample(1, 4500.0, 7000.0))
    rig.wall += 3600
    out = rig.send(IdPresented(1, "TAG1"))
    assert not only(out, NeedAuthorize)
    stopped = one(out, TransactionStopped)
    assert (stopped.reason, stopped.meter_stop_wh, stopped.timestamp, stopped.id_tag) == (
        StopReason.LOCAL, 4500.0, rig.wall, "TAG1")
    assert SetContactor(1, False) in out and SetLock(1, False) in out
    assert rig.status() is ConnectorStatus.FINISHING
    rig.send(PlugChanged(1, False))
    assert rig.status() is ConnectorStatus.AVAILABLE


def test_local_stop_with_another_card_of_the_same_group() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1", parent="FLEET")
    out = rig.send(IdPresented(1, "TAG2"))
    assert one(out, NeedAuthorize).id_tag == "TAG2"
    out = rig.send(AuthResult("TAG2", AuthStatus.ACCEPTED, "FLEET"))
    assert one(out, TransactionStopped).reason is StopReason.LOCAL


def test_another_group_cannot_stop_the_transaction() -> None:
    rig = Rig()
    rig.charge()
    out = rig.authorize("STRANGER", parent="OTHER")
    assert not only(out, TransactionStopped)
    assert one(out, AuthorizationRejected).id_tag == "STRANGER"
    assert rig.contactor()


def test_second_card_finishing_connector_starts_a_new_transaction() -> None:
    rig = Rig()
    rig.charge()
    rig.send(IdPresented(1, "TAG1"))
    assert rig.status() is ConnectorStatus.FINISHING
    out = rig.authorize("TAG2")
    assert one(out, TransactionStarted).id_tag == "TAG2"


def test_ev_side_disconnect_stops_with_ev_disconnected() -> None:
    rig = Rig()
    rig.charge()
    out = rig.send(PlugChanged(1, False))
    assert one(out, TransactionStopped).reason is StopReason.EV_DISCONNECTED
    assert SetLock(1, False) in out
    assert rig.status() is ConnectorStatus.AVAILABLE


def test_ev_side_disconnect_suspends_when_stop_on_ev_side_disconnect_is_false() -> None:
    rig = Rig(stop_transaction_on_ev_side_disconnect=False)
    rig.charge()
    out = rig.send(PlugChanged(1, False))
    assert not only(out, TransactionStopped)
    assert SetContactor(1, False) in out
    assert rig.status() is ConnectorStatus.SUSPENDED_EV
    rig.send(PlugChanged(1, True), EvReadyChanged(1, True))
    assert rig.contactor()
    assert rig.status() is ConnectorStatus.CHARGING


def test_ev_side_disconnect_keeps_cable_locked_until_same_id_when_unlock_is_false() -> None:
    rig = Rig(unlock_connector_on_ev_side_disconnect=False)
    rig.charge()
    out = rig.send(PlugChanged(1, False))
    assert one(out, TransactionStopped).reason is StopReason.EV_DISCONNECTED
    assert SetLock(1, False) not in out
    assert rig.send(IdPresented(1, "OTHER")) == [NeedAuthorize("OTHER", 1)]
    out = rig.send(IdPresented(1, "TAG1"))
    assert out == [SetLock(1, False)]


def test_remote_start_then_plug_and_remote_stop() -> None:
    rig = Rig()
    answer, out = rig.call("remote_start", RemoteStart(1, "REMOTE1"))
    assert answer is RemoteStartResult.ACCEPTED
    assert rig.status() is ConnectorStatus.PREPARING
    rig.send(MeterSample(1, 10.0), PlugChanged(1, True), EvReadyChanged(1, True))
    started = one(rig.log, TransactionStarted)
    rig.send(TransactionConfirmed(started.local_tx_id, 4242))
    answer, out = rig.call("remote_stop", RemoteStop(999))
    assert answer is RemoteStopResult.REJECTED and not out
    answer, out = rig.call("remote_stop", RemoteStop(4242))
    assert answer is RemoteStopResult.ACCEPTED
    stopped = one(out, TransactionStopped)
    assert (stopped.reason, stopped.transaction_id) == (StopReason.REMOTE, 4242)


def test_remote_start_with_plugged_ev_starts_at_once() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    answer, out = rig.call("remote_start", RemoteStart(None, "REMOTE1"))
    assert answer is RemoteStartResult.ACCEPTED
    assert one(out, TransactionStarted).id_tag == "REMOTE1"


def test_remote_start_asks_authorize_when_authorize_remote_tx_requests() -> None:
    rig = Rig(authorize_remote_tx_requests=True)
    rig.send(PlugChanged(1, True))
    answer, out = rig.call("remote_start", RemoteStart(1, "REMOTE1"))
    assert answer is RemoteStartResult.ACCEPTED
    assert one(out, NeedAuthorize).id_tag == "REMOTE1" and not only(out, TransactionStarted)
    out = rig.send(AuthResult("REMOTE1", AuthStatus.ACCEPTED))
    assert one(out, TransactionStarted).id_tag == "REMOTE1"


@pytest.mark.parametrize("case", ["busy", "unknown_connector", "faulted", "unavailable", "not_a_tx_profile"])
def test_remote_start_rejected(case: str) -> None:
    rig = Rig()
    connector, profile = 1, None
    if case == "busy":
        rig.charge()
    elif case == "unknown_connector":
        connector = 3
    elif case == "faulted":
        rig.send(FaultRaised(1, "meter", "communication"))
    elif case == "unavailable":
        from agent.core import ChangeAvailability
        rig.call("change_availability", ChangeAvailability(1, False))
    else:  # a profile that is not a TxProfile
        schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}]}
        profile = parse_profile({"chargingProfileId": 1, "stackLevel": 0, "chargingProfileKind": "Relative",
                                 "chargingProfilePurpose": "TxDefaultProfile", "chargingSchedule": schedule})
    answer, _ = rig.call("remote_start", RemoteStart(connector, "R", profile))
    assert answer is RemoteStartResult.REJECTED


@pytest.mark.parametrize(("confirm", "stop_on_invalid", "expected"), [
    (AuthStatus.INVALID, True, "deauthorized"),
    (AuthStatus.BLOCKED, True, "deauthorized"),
    (AuthStatus.INVALID, False, "suspended"),
    (AuthStatus.ACCEPTED, True, "charging"),
])
def test_tc_037_offline_start_then_start_transaction_answer(
    confirm: AuthStatus, stop_on_invalid: bool, expected: str
) -> None:
    """TC_037_1 (accepted), TC_037_2 (suspend), TC_037_3 (DeAuthorized)."""
    rig = Rig(stop_transaction_on_invalid_id=stop_on_invalid)
    rig.charge()
    started = one(rig.log, TransactionStarted)
    out = rig.send(TransactionConfirmed(started.local_tx_id, 77, confirm))
    if expected == "deauthorized":
        stopped = one(out, TransactionStopped)
        assert (stopped.reason, stopped.transaction_id) == (StopReason.DEAUTHORIZED, 77)
        assert SetLock(1, False) not in out  # cable stays locked until EV-side unplug or same id
        assert rig.status() is ConnectorStatus.FINISHING
        assert rig.send(IdPresented(1, "TAG1")) == [SetLock(1, False)]
    elif expected == "suspended":
        assert not only(out, TransactionStopped)
        assert SetContactor(1, False) in out
        assert rig.status() is ConnectorStatus.SUSPENDED_EVSE
        rig.send(EvReadyChanged(1, False), EvReadyChanged(1, True))
        assert not rig.contactor()
    else:
        assert not out or not only(out, TransactionStopped)
        assert rig.contactor()


def test_max_energy_on_invalid_id_lets_that_much_energy_through() -> None:
    rig = Rig(stop_transaction_on_invalid_id=True, max_energy_on_invalid_id_wh=1000.0)
    rig.charge(energy_wh=5000.0)
    started = one(rig.log, TransactionStarted)
    out = rig.send(TransactionConfirmed(started.local_tx_id, 5, AuthStatus.INVALID))
    assert not only(out, TransactionStopped) and rig.contactor()
    out = rig.send(MeterSample(1, 5999.0))
    assert not only(out, TransactionStopped)
    out = rig.send(MeterSample(1, 6000.0))
    stopped = one(out, TransactionStopped)
    assert (stopped.reason, stopped.meter_stop_wh) == (StopReason.DEAUTHORIZED, 6000.0)


def test_confirmation_of_a_stopped_transaction_is_ignored() -> None:
    rig = Rig()
    rig.charge()
    started = one(rig.log, TransactionStarted)
    rig.send(IdPresented(1, "TAG1"))
    assert rig.send(TransactionConfirmed(started.local_tx_id, 5, AuthStatus.INVALID)) == []


@pytest.mark.parametrize(("kind", "reason"), [(ResetKind.HARD, StopReason.HARD_RESET),
                                              (ResetKind.SOFT, StopReason.SOFT_RESET)])
def test_reset_stops_every_transaction(kind: ResetKind, reason: StopReason) -> None:
    rig = Rig(connectors=2)
    rig.charge(1, "A")
    rig.charge(2, "B")
    answer, out = rig.call("reset", ResetRequested(kind))
    assert answer is ResetResult.ACCEPTED
    assert [s.reason for s in only(out, TransactionStopped)] == [reason, reason]
    assert SetContactor(1, False) in out and SetContactor(2, False) in out


def test_unlock_stops_transaction_and_unlocks() -> None:
    rig = Rig()
    rig.charge()
    answer, out = rig.call("unlock", UnlockRequested(1))
    assert answer is UnlockResult.UNLOCKED
    assert one(out, TransactionStopped).reason is StopReason.UNLOCK_COMMAND
    assert SetLock(1, False) in out


def test_unlock_without_lock_is_not_supported_and_lock_fault_fails() -> None:
    rig = Rig(config=ConnectorConfig(has_lock=False))
    assert rig.call("unlock", UnlockRequested(1))[0] is UnlockResult.NOT_SUPPORTED
    rig = Rig()
    rig.send(FaultRaised(1, "lock1", "lock_failure", stops_charging=False))
    assert rig.call("unlock", UnlockRequested(1))[0] is UnlockResult.UNLOCK_FAILED
    assert rig.call("unlock", UnlockRequested(9))[0] is UnlockResult.NOT_SUPPORTED


# ------------------------------------------------------------------------------------ shared reader


def test_shared_reader_starts_on_the_plugged_connector_and_stops_by_same_card() -> None:
    rig = Rig(connectors=2)
    rig.send(PlugChanged(2, True))
    out = rig.authorize("TAG1", connector_id=None)
    assert one(out, TransactionStarted).connector_id == 2
    out = rig.send(IdPresented(None, "TAG1"))
    assert one(out, TransactionStopped).connector_id == 2


def test_shared_reader_card_first_waits_for_any_plug() -> None:
    rig = Rig(connectors=2, connection_timeout_s=60)
    rig.authorize("TAG1", connector_id=None)
    assert not only(rig.log, TransactionStarted)
    out = rig.send(PlugChanged(2, True))
    assert one(out, TransactionStarted).connector_id == 2


def test_shared_reader_card_first_times_out() -> None:
    rig = Rig(connectors=2, connection_timeout_s=60)
    rig.authorize("TAG1", connector_id=None)
    rig.advance(61)
    rig.send(PlugChanged(1, True))
    assert not only(rig.log, TransactionStarted)


def test_shared_reader_stops_a_transaction_of_the_same_group() -> None:
    rig = Rig(connectors=2)
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1", connector_id=None, parent="FLEET")
    out = rig.authorize("TAG2", connector_id=None, parent="FLEET")
    assert one(out, TransactionStopped).reason is StopReason.LOCAL


# -------------------------------------------------------------------------------------------- views


def test_snapshot_is_json_and_shows_the_session() -> None:
    rig = Rig()
    rig.charge()
    snap = rig.core.snapshot()
    json.dumps(snap)
    assert snap["connectors"]["1"]["status"] == "Charging"
    assert snap["connectors"]["1"]["transaction"]["id_tag"] == "TAG1"


def test_current_statuses_lists_charge_point_and_connectors() -> None:
    rig = Rig(connectors=2)
    statuses = rig.core.current_statuses(rig.wall, rig.mono)
    assert [(s.connector_id, s.status) for s in statuses] == [
        (0, ConnectorStatus.AVAILABLE), (1, ConnectorStatus.AVAILABLE), (2, ConnectorStatus.AVAILABLE)]
    assert all(isinstance(s, StatusChanged) for s in statuses)


def test_card_answered_concurrent_tx_may_still_stop_its_group() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1", parent="FLEET")
    rig.send(IdPresented(1, "TAG2"))
    out = rig.send(AuthResult("TAG2", AuthStatus.CONCURRENT_TX, "FLEET"))
    assert one(out, TransactionStopped).reason is StopReason.LOCAL


def test_remote_start_never_stops_a_transaction_of_the_same_group() -> None:
    rig = Rig(connectors=2, authorize_remote_tx_requests=True)
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1", connector_id=1, parent="FLEET")
    answer, _ = rig.call("remote_start", RemoteStart(None, "TAG2"))
    assert answer is RemoteStartResult.ACCEPTED
    out = rig.send(AuthResult("TAG2", AuthStatus.ACCEPTED, "FLEET"))
    assert not only(out, TransactionStopped)
    out = rig.send(PlugChanged(2, True))
    assert one(out, TransactionStarted).id_tag == "TAG2"


def test_free_vend_does_not_take_a_reserved_connector() -> None:
    from agent.core import ReserveNow

    rig = Rig(free_vend_id="FREE")
    rig.call("reserve_now", ReserveNow(1, rig.wall + 600, "RES", 1))
    out = rig.send(PlugChanged(1, True))
    assert not only(out, TransactionStarted)


def test_boot_tick_commands_limit_and_indicator_after_current_statuses() -> None:
    rig = Rig(config=ConnectorConfig(max_current_a=25), energy_wh=None)
    rig.core.current_statuses(rig.wall, rig.mono)
    out = rig.advance(0)
    assert SetLimit(1, 25.0) in out and ShowIndicator(1, IndicatorState.AVAILABLE) in out
    assert not only(out, StatusChanged)


def test_start_waits_for_a_fresh_meter_reading_never_meter_start_zero() -> None:
    rig = Rig(energy_wh=None, free_vend_id="FREE")
    out = rig.send(PlugChanged(1, True), EvReadyChanged(1, True))
    assert not only(out, TransactionStarted) and not rig.contactor()
    out = rig.send(MeterSample(1, 123456.0, 0.0))
    assert one(out, TransactionStarted).meter_start_wh == 123456.0


def test_start_without_a_meter_reading_ends_with_the_meter_fault() -> None:
    rig = Rig(energy_wh=None)
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1")
    out = rig.send(FaultRaised(1, "meter1", "communication", True, DeviceRole.METER))
    assert not only(rig.log, TransactionStarted) and not rig.contactor()
    assert rig.status() is ConnectorStatus.FAULTED and not only(out, SetContactor)


def test_free_vend_id_is_per_connector() -> None:
    free_on_one = ConnectorConfig(free_vend_id="FREE")
    rig = Rig(connectors=2)
    rig.core.settings = replace(rig.core.settings, connectors=(free_on_one, ConnectorConfig()))
    rig.core = ChargePointCore(rig.core.settings)
    rig.send(MeterSample(1, 0.0, 0.0), MeterSample(2, 0.0, 0.0))
    assert not only(rig.send(PlugChanged(2, True)), TransactionStarted)
    assert one(rig.send(PlugChanged(1, True)), TransactionStarted).id_tag == "FREE"


def test_a_silent_meter_suspends_the_transaction_then_resumes_or_ends_it() -> None:
    rig = Rig()
    rig.charge()
    silent = FaultRaised(1, "meter1", "communication", False, DeviceRole.METER, suspends_charging=True)
    out = rig.send(silent)
    assert SetContactor(1, False) in out and not only(out, TransactionStopped)
    status = only(rig.log, StatusChanged)[-1]
    assert (status.status, status.fault) == (ConnectorStatus.SUSPENDED_EVSE, Fault.of(silent))
    assert error_fields(status.fault).error_code.value == "PowerMeterFailure"
    out = rig.send(FaultCleared(1, "meter1"))
    assert SetContactor(1, True) in out and rig.status() is ConnectorStatus.CHARGING
    rig.send(silent)
    out = rig.send(FaultRaised(1, "meter1", "communication", True, DeviceRole.METER))  # silent too long
    assert one(out, TransactionStopped).reason is StopReason.OTHER
    assert rig.status() is ConnectorStatus.FAULTED


def test_no_session_starts_while_a_device_is_silent() -> None:
    rig = Rig()
    rig.send(FaultRaised(1, "meter1", "communication", False, DeviceRole.METER, suspends_charging=True))
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1")
    assert not only(rig.log, TransactionStarted) and rig.status() is ConnectorStatus.FAULTED


def test_a_welded_contactor_keeps_the_cable_locked_and_refuses_unlock() -> None:
    rig = Rig()
    rig.charge()
    assert rig.core.connectors[1].locked
    out = rig.send(FaultRaised(1, "contactor1", "contactor_welded", True, DeviceRole.CONTACTOR))
    assert one(out, TransactionStopped).reason is StopReason.OTHER
    assert SetLock(1, False) not in out and rig.core.connectors[1].locked
    assert rig.status() is ConnectorStatus.FAULTED
    status = only(rig.log, StatusChanged)[-1]
    assert status.fault is not None and (status.fault.code, status.fault.role) == ("contactor_welded",
                                                                                 DeviceRole.CONTACTOR)
    fields = error_fields(status.fault)
    assert (fields.error_code.value, fields.vendor_error_code) == ("PowerSwitchFailure", "contactor_welded")
    answer, out = rig.call("unlock", UnlockRequested(1))
    assert answer is UnlockResult.UNLOCK_FAILED and not only(out, SetLock)
    assert "welded" in (rig.core.unlock_refusal(1) or "")
    rig.send(PlugChanged(1, False))  # whatever the EV side does
    assert rig.core.connectors[1].locked
    out = rig.send(FaultCleared(1, "contactor1"))  # the contact opened after all
    assert SetLock(1, False) in out


def test_a_contactor_welding_without_a_session_locks_a_plugged_cable() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    out = rig.send(FaultRaised(1, "contactor1", "contactor_welded", True, DeviceRole.CONTACTOR))
    assert SetLock(1, True) in out


def test_a_hold_for_the_selftest_makes_every_connector_unavailable_and_blocks_starts() -> None:
    rig = Rig(connectors=2)
    rig.core.current_statuses(rig.wall, rig.mono)
    out = rig.core.hold(True, rig.wall, rig.mono)
    rig.log += out
    assert {o.connector_id: o.status for o in only(out, StatusChanged)} == {
        0: ConnectorStatus.UNAVAILABLE, 1: ConnectorStatus.UNAVAILABLE, 2: ConnectorStatus.UNAVAILABLE}
    assert rig.call("remote_start", RemoteStart(2, "R"))[0] is RemoteStartResult.REJECTED
    rig.send(PlugChanged(1, True), EvReadyChanged(1, True))
    rig.authorize("TAG1")
    assert not only(rig.log, TransactionStarted)
    rig.log += rig.core.hold(False, rig.wall, rig.mono)
    assert rig.status(2) is ConnectorStatus.AVAILABLE and not rig.core.any_held()


def test_a_start_whose_transaction_id_cannot_be_stored_is_refused_and_others_go_on() -> None:
    def no_disk() -> int:
        raise OSError("no space left on device")

    rig = Rig(connectors=2)
    rig.charge(2, "B")
    rig.core._allocate = no_disk  # the store cannot reserve an id: the disk is full
    rig.charge(1, "A")
    assert [o.connector_id for o in only(rig.log, TransactionStarted)] == [2]
    assert not rig.contactor(1)
    out = rig.send(PlugChanged(2, False))  # the other connector's events are still carried out
    assert SetContactor(2, False) in out and one(out, TransactionStopped).reason is StopReason.EV_DISCONNECTED


def test_no_session_starts_while_storage_is_unavailable() -> None:
    rig = Rig()
    rig.core.storage_ok = False
    rig.charge()
    assert not only(rig.log, TransactionStarted)
    rig.core.storage_ok = True
    rig.authorize("TAG1")
    assert one(rig.log, TransactionStarted).id_tag == "TAG1"
