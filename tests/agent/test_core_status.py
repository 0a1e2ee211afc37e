"""Faults, e-stop, availability, reservations and MinimumStatusDuration in ChargePointCore."""

from __future__ import annotations

import pytest

from agent.core import (
    AuthorizationRejected,
    AuthResult,
    AuthStatus,
    AvailabilityResult,
    CancelReservation,
    CancelReservationResult,
    ChangeAvailability,
    ConnectorStatus,
    DeviceRole,
    EstopChanged,
    EvReadyChanged,
    FaultCleared,
    FaultRaised,
    IdPresented,
    NeedAuthorize,
    PlugChanged,
    RemoteStart,
    RemoteStartResult,
    ReservationEnded,
    ReservationEndReason,
    ReservationResult,
    ReserveNow,
    SetContactor,
    StatusChanged,
    StopReason,
    TransactionStarted,
    TransactionStopped,
)
from agent.core.events import FAULT_EMERGENCY_STOP, Fault
from agent.ocpp.v16.statuses import ChargePointErrorCode, error_fields
from tests.agent.test_core_rig import Rig, one, only

# ------------------------------------------------------------------------------------------- faults

FAULT_CODES = [
    ("communication", DeviceRole.METER, ChargePointErrorCode.POWER_METER_FAILURE),
    ("energy_backwards", DeviceRole.METER, ChargePointErrorCode.POWER_METER_FAILURE),
    ("isolation_fault", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.GROUND_FAILURE),
    ("over_current", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.OVER_CURRENT_FAILURE),
    ("over_voltage", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.OVER_VOLTAGE),
    ("over_temperature", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.HIGH_TEMPERATURE),
    ("lock_failure", DeviceRole.LOCK, ChargePointErrorCode.CONNECTOR_LOCK_FAILURE),
    ("ev_communication", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.EV_COMMUNICATION_ERROR),
    ("contactor_welded", DeviceRole.CONTACTOR, ChargePointErrorCode.POWER_SWITCH_FAILURE),
    ("contactor_not_closed", DeviceRole.CONTACTOR, ChargePointErrorCode.POWER_SWITCH_FAILURE),
    ("communication", DeviceRole.ID_READER, ChargePointErrorCode.READER_FAILURE),
    ("communication", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.OTHER_ERROR),
    ("host_timeout", DeviceRole.DC_CONTROLLER, ChargePointErrorCode.OTHER_ERROR),
]  # the 1.6 mapping itself is tested in tests/agent/test_v16_statuses.py


@pytest.mark.parametrize(("code", "role", "expected"), FAULT_CODES)
def test_tc_041_fault_during_transaction_stops_and_reports_faulted(
    code: str, role: DeviceRole, expected: ChargePointErrorCode
) -> None:
    rig = Rig()
    rig.charge()
    out = rig.send(FaultRaised(1, "dev1", code, stops_charging=True, role=role))
    assert out[0] == SetContactor(1, False)
    # an insulation fault ends it as 2.0.1's GroundFault (1.6 sends Other); every other fault as Other
    reason = StopReason.GROUND_FAULT if code == "isolation_fault" else StopReason.OTHER
    assert one(out, TransactionStopped).reason is reason
    status = one(out, StatusChanged)
    assert (status.status, status.fault) == (ConnectorStatus.FAULTED, Fault(code, role, "dev1"))
    fields = error_fields(status.fault)  # what 1.6 tells the back office
    assert (fields.error_code, fields.vendor_error_code, fields.info) == (expected, code, "dev1")
    out = rig.send(FaultCleared(1, "dev1"))
    assert rig.status() is ConnectorStatus.FINISHING  # still plugged, transaction over
    assert one(out, StatusChanged).fault is None


def test_faulted_connector_refuses_cards_and_recovers() -> None:
    rig = Rig()
    rig.send(FaultRaised(1, "meter1", "communication", role=DeviceRole.METER))
    out = rig.send(IdPresented(1, "TAG1"))
    assert one(out, AuthorizationRejected).id_tag == "TAG1" and not only(out, NeedAuthorize)
    rig.send(FaultCleared(1, "meter1"))
    assert rig.status() is ConnectorStatus.AVAILABLE


def test_warning_fault_keeps_charging_and_reports_error_code() -> None:
    rig = Rig()
    rig.charge()
    out = rig.send(FaultRaised(1, "reader", "communication", stops_charging=False, role=DeviceRole.ID_READER))
    assert not only(out, TransactionStopped) and rig.contactor()
    status = one(out, StatusChanged)
    assert status.status is ConnectorStatus.CHARGING
    assert status.fault == Fault("communication", DeviceRole.ID_READER, "reader")
    assert error_fields(status.fault).error_code is ChargePointErrorCode.READER_FAILURE


def test_fault_clears_only_when_every_source_cleared() -> None:
    rig = Rig()
    rig.send(FaultRaised(1, "a", "over_voltage"), FaultRaised(1, "b", "over_temperature"))
    rig.send(FaultCleared(1, "a"))
    assert rig.status() is ConnectorStatus.FAULTED
    rig.send(FaultCleared(1, "b"))
    assert rig.status() is ConnectorStatus.AVAILABLE


def test_charge_point_fault_faults_every_connector_and_connector_zero() -> None:
    rig = Rig(connectors=2)
    rig.charge(1)
    out = rig.send(FaultRaised(0, "meter", "communication", role=DeviceRole.METER))
    assert one(out, TransactionStopped).connector_id == 1
    assert {(s.connector_id, s.status) for s in only(out, StatusChanged)} == {
        (0, ConnectorStatus.FAULTED), (1, ConnectorStatus.FAULTED), (2, ConnectorStatus.FAULTED)}
    rig.send(FaultCleared(0, "meter"))
    assert rig.status(0) is ConnectorStatus.AVAILABLE and rig.status(2) is ConnectorStatus.AVAILABLE


def test_emergency_stop_stops_with_reason_and_reports_faulted() -> None:
    rig = Rig(connectors=2)
    rig.charge(1)
    out = rig.send(EstopChanged(True))
    assert out[0] == SetContactor(1, False)
    assert one(out, TransactionStopped).reason is StopReason.EMERGENCY_STOP
    status = next(s for s in only(out, StatusChanged) if s.connector_id == 1)
    assert (status.status, status.fault) == (
        ConnectorStatus.FAULTED, Fault(FAULT_EMERGENCY_STOP, DeviceRole.ESTOP, info="emergency stop"))
    fields = error_fields(status.fault)
    assert (fields.error_code, fields.vendor_error_code, fields.info) == (
        ChargePointErrorCode.OTHER_ERROR, "EmergencyStop", "emergency stop")
    assert rig.status(2) is ConnectorStatus.FAULTED
    rig.send(EvReadyChanged(1, True))
    assert not rig.contactor()
    rig.send(EstopChanged(False))
    assert rig.status(1) is ConnectorStatus.FINISHING and rig.status(2) is ConnectorStatus.AVAILABLE
    assert not rig.contactor()  # no new transaction without a new authorization


# ------------------------------------------------------------------------------------- availability


def test_change_availability_inoperative_and_back() -> None:
    rig = Rig()
    answer, _ = rig.call("change_availability", ChangeAvailability(1, False))
    assert answer is AvailabilityResult.ACCEPTED
    assert rig.status() is ConnectorStatus.UNAVAILABLE
    rig.send(PlugChanged(1, True))
    assert rig.status() is ConnectorStatus.UNAVAILABLE
    out = rig.send(IdPresented(1, "TAG1"))
    assert only(out, AuthorizationRejected)
    answer, _ = rig.call("change_availability", ChangeAvailability(1, True))
    assert answer is AvailabilityResult.ACCEPTED
    assert rig.status() is ConnectorStatus.PREPARING
    assert rig.core.availability() == {0: True, 1: True}


def test_change_availability_during_transaction_is_scheduled() -> None:
    rig = Rig()
    rig.charge()
    answer, out = rig.call("change_availability", ChangeAvailability(1, False))
    assert answer is AvailabilityResult.SCHEDULED
    assert not only(out, TransactionStopped) and rig.contactor()
    assert rig.status() is ConnectorStatus.CHARGING
    rig.send(IdPresented(1, "TAG1"))
    assert rig.status() is ConnectorStatus.UNAVAILABLE
    assert rig.core.availability()[1] is False


def test_change_availability_connector_zero_during_a_transaction_is_scheduled_and_changes_nothing_yet() -> None:
    rig = Rig(connectors=2)
    rig.core.current_statuses(rig.wall, rig.mono)
    rig.charge(2)
    answer, out = rig.call("change_availability", ChangeAvailability(0, False))
    assert answer is AvailabilityResult.SCHEDULED and out == []
    assert rig.status(0) is ConnectorStatus.AVAILABLE and rig.status(1) is ConnectorStatus.AVAILABLE
    assert rig.status(2) is ConnectorStatus.CHARGING
    assert rig.core.availability() == {0: False, 1: False, 2: False}  # persisted as the target
    rig.send(PlugChanged(2, False))
    assert {rig.status(i) for i in (0, 1, 2)} == {ConnectorStatus.UNAVAILABLE}


def test_change_availability_connector_zero_without_transactions_applies_to_all_at_once() -> None:
    rig = Rig(connectors=2)
    answer, _ = rig.call("change_availability", ChangeAvailability(0, False))
    assert answer is AvailabilityResult.ACCEPTED
    assert {rig.status(i) for i in (0, 1, 2)} == {ConnectorStatus.UNAVAILABLE}


def test_change_availability_unknown_connector_rejected() -> None:
    assert Rig().call("change_availability", ChangeAvailability(5, False))[0] is AvailabilityResult.REJECTED


def test_restore_persisted_availability() -> None:
    rig = Rig(connectors=2)
    rig.core.restore(availability={2: False})
    statuses = rig.core.current_statuses(rig.wall, rig.mono)
    assert [s.status for s in statuses] == [ConnectorStatus.AVAILABLE, ConnectorStatus.AVAILABLE,
                                            ConnectorStatus.UNAVAILABLE]
    rig.core.restore(availability={0: False})
    statuses = rig.core.current_statuses(rig.wall, rig.mono)
    assert {s.status for s in statuses} == {ConnectorStatus.UNAVAILABLE}


# ------------------------------------------------------------------------------------- reservations


def _reserve(rig: Rig, connector: int = 1, reservation_id: int = 11, tag: str = "RES",
             parent: str | None = None, expiry_s: float = 600) -> ReservationResult:
    cmd = ReserveNow(connector, rig.wall + expiry_s, tag, reservation_id, parent)
    answer, _ = rig.call("reserve_now", cmd)
    assert isinstance(answer, ReservationResult)
    return answer


def test_reservation_accepted_shows_reserved_and_expires() -> None:
    rig = Rig()
    assert _reserve(rig, expiry_s=600) is ReservationResult.ACCEPTED
    assert rig.status() is ConnectorStatus.RESERVED
    assert not only(rig.advance(599), ReservationEnded)
    out = rig.advance(1)
    assert one(out, ReservationEnded) == ReservationEnded(11, ReservationEndReason.EXPIRED, 1)
    assert rig.status() is ConnectorStatus.AVAILABLE


def test_reserved_connector_starts_only_for_its_id_and_reports_reservation_id() -> None:
    rig = Rig()
    _reserve(rig)
    rig.send(PlugChanged(1, True))
    out = rig.authorize("OTHER")
    assert only(out, AuthorizationRejected) and not only(out, TransactionStarted)
    out = rig.authorize("RES")
    assert one(out, TransactionStarted).reservation_id == 11
    assert one(out, ReservationEnded).reason is ReservationEndReason.USED
    rig.advance(3600)
    assert not only(rig.log, ReservationEnded)[1:]


def test_reserved_connector_accepts_an_id_with_the_reservation_parent() -> None:
    rig = Rig()
    _reserve(rig, parent="FLEET")
    rig.send(PlugChanged(1, True))
    out = rig.authorize("MEMBER", parent="FLEET")
    assert one(out, TransactionStarted).reservation_id == 11


def test_remote_start_on_reserved_connector_for_other_id_rejected() -> None:
    rig = Rig()
    _reserve(rig)
    assert rig.call("remote_start", RemoteStart(1, "OTHER"))[0] is RemoteStartResult.REJECTED
    assert rig.call("remote_start", RemoteStart(1, "RES"))[0] is RemoteStartResult.ACCEPTED


def test_cancel_reservation() -> None:
    rig = Rig()
    _reserve(rig)
    answer, out = rig.call("cancel_reservation", CancelReservation(11))
    assert answer is CancelReservationResult.ACCEPTED
    assert one(out, ReservationEnded).reason is ReservationEndReason.CANCELLED
    assert rig.status() is ConnectorStatus.AVAILABLE
    assert rig.call("cancel_reservation", CancelReservation(11))[0] is CancelReservationResult.REJECTED


@pytest.mark.parametrize(("setup", "expected"), [
    ("plugged", ReservationResult.OCCUPIED),
    ("charging", ReservationResult.OCCUPIED),
    ("other_reservation", ReservationResult.OCCUPIED),
    ("faulted", ReservationResult.FAULTED),
    ("estop", ReservationResult.FAULTED),
    ("unavailable", ReservationResult.UNAVAILABLE),
    ("connector_zero", ReservationResult.REJECTED),
    ("unknown_connector", ReservationResult.REJECTED),
    ("already_expired", ReservationResult.REJECTED),
])
def test_reservation_refused(setup: str, expected: ReservationResult) -> None:
    rig = Rig()
    connector, expiry = 1, 600.0
    if setup == "plugged":
        rig.send(PlugChanged(1, True))
    elif setup == "charging":
        rig.charge()
    elif setup == "other_reservation":
        _reserve(rig, reservation_id=99)
    elif setup == "faulted":
        rig.send(FaultRaised(1, "dc", "over_voltage"))
    elif setup == "estop":
        rig.send(EstopChanged(True))
    elif setup == "unavailable":
        rig.call("change_availability", ChangeAvailability(1, False))
    elif setup == "connector_zero":
        connector = 0
    elif setup == "unknown_connector":
        connector = 4
    else:
        expiry = -1.0
    assert _reserve(rig, connector=connector, expiry_s=expiry) is expected


def test_same_reservation_id_replaces_the_reservation() -> None:
    rig = Rig(connectors=2)
    assert _reserve(rig, connector=1, tag="A") is ReservationResult.ACCEPTED
    assert _reserve(rig, connector=2, tag="B") is ReservationResult.ACCEPTED
    assert rig.status(1) is ConnectorStatus.AVAILABLE and rig.status(2) is ConnectorStatus.RESERVED


# --------------------------------------------------------------------------- MinimumStatusDuration


def test_minimum_status_duration_reports_a_status_only_after_it_held() -> None:
    rig = Rig(minimum_status_duration_s=5)
    rig.core.current_statuses(rig.wall, rig.mono)
    out = rig.send(PlugChanged(1, True))
    assert not only(out, StatusChanged)
    assert not only(rig.advance(4), StatusChanged)
    out = rig.advance(1)
    assert [(s.connector_id, s.status) for s in only(out, StatusChanged)] == [(1, ConnectorStatus.PREPARING)]


def test_minimum_status_duration_hides_a_short_flap() -> None:
    rig = Rig(minimum_status_duration_s=5)
    rig.core.current_statuses(rig.wall, rig.mono)
    rig.send(PlugChanged(1, True))
    rig.advance(2)
    rig.send(PlugChanged(1, False))
    rig.advance(10)
    assert not only(rig.log, StatusChanged)


def test_minimum_status_duration_zero_reports_at_once() -> None:
    rig = Rig()
    rig.core.current_statuses(rig.wall, rig.mono)
    out = rig.send(PlugChanged(1, True))
    assert one(out, StatusChanged).status is ConnectorStatus.PREPARING


def test_auth_result_for_rejected_connector_uses_its_status() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True), IdPresented(1, "X"))
    out = rig.send(AuthResult("X", AuthStatus.BLOCKED))
    assert one(out, AuthorizationRejected).status is AuthStatus.BLOCKED


@pytest.mark.parametrize("refusal", ["occupied", "faulted", "unavailable"])
def test_a_refused_reserve_now_leaves_the_same_reservation_on_another_connector(refusal: str) -> None:
    rig = Rig(connectors=2)
    assert _reserve(rig, connector=1, reservation_id=11) is ReservationResult.ACCEPTED
    if refusal == "occupied":
        rig.send(PlugChanged(2, True))
    elif refusal == "faulted":
        rig.send(FaultRaised(2, "controller2", "over_temperature"))
    else:
        rig.call("change_availability", ChangeAvailability(2, False))
    assert _reserve(rig, connector=2, reservation_id=11) is not ReservationResult.ACCEPTED
    assert rig.core.connectors[1].reservation is not None
    assert rig.core.connectors[1].reservation.reservation_id == 11
    assert rig.status(1) is ConnectorStatus.RESERVED
