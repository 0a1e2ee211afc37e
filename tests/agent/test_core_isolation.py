"""DC insulation rules of the core: the cable check gates the close, a warning lets charging go on and is
reported, a fault stops energy and ends the transaction with GroundFault; the adapters' words for them."""

from __future__ import annotations

from agent.core import (
    ConnectorConfig,
    ConnectorStatus,
    FaultCleared,
    FaultRaised,
    IsolationChanged,
    PlugChanged,
    SetContactor,
    StatusChanged,
    TransactionStopped,
)
from agent.core.connector import Blocker, contactor_blockers
from agent.core.events import DeviceRole, Fault, StopReason
from agent.ocpp.v16.statuses import ChargePointErrorCode, error_fields, stop_reason_16
from agent.ocpp.v201.journal import ENDED
from agent.ocpp.v201.monitors import FAULT_SEVERITY
from agent.ocpp.v201.statuses import fault_report
from tests.agent.test_core_rig import Rig, one, only

DC = ConnectorConfig(is_dc=True, has_lock=True, max_current_a=200.0, voltage_v=400.0)
IMD = DeviceRole.INSULATION_MONITOR


def warning(source: str = "imd1") -> FaultRaised:
    return FaultRaised(1, source, "isolation_warning", False, IMD, "insulation 400 kOhm < warning 500")


def fault(source: str = "imd1") -> FaultRaised:
    return FaultRaised(1, source, "isolation_fault", True, IMD, "insulation 50 kOhm < fault 100")


def blockers(rig: Rig) -> frozenset[Blocker]:
    return contactor_blockers(rig.core.connectors[1], rig.core.cp_estop, rig.core.cp_faults)


def test_cable_check_gates_the_close() -> None:
    rig = Rig(config=DC)
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1")
    from agent.core import EvReadyChanged

    rig.send(EvReadyChanged(1, True))
    assert not rig.contactor() and blockers(rig) == {Blocker.ISOLATION}
    out = rig.send(IsolationChanged(1, True))
    assert one(out, SetContactor).closed and rig.contactor()


def test_a_new_plug_in_needs_a_new_cable_check() -> None:
    rig = Rig(config=DC)
    rig.charge()
    assert rig.contactor()
    rig.send(PlugChanged(1, False))
    rig.send(PlugChanged(1, True))
    assert Blocker.ISOLATION in blockers(rig)


def test_cable_check_lost_while_charging_opens_and_suspends() -> None:
    rig = Rig(config=DC)
    rig.charge()
    out = rig.send(IsolationChanged(1, False))
    assert not one(out, SetContactor).closed
    assert rig.core.session(1) is not None  # not a stop: the check may pass again
    rig.advance(1)
    assert rig.status() is ConnectorStatus.SUSPENDED_EVSE


def test_warning_lets_charging_go_on_and_is_reported() -> None:
    rig = Rig(config=DC)
    rig.charge()
    rig.advance(1)
    out = rig.send(warning())
    rig.advance(1)
    out += rig.log[-3:]
    assert not only(out, SetContactor) and rig.contactor()
    assert not only(rig.log, TransactionStopped)
    reported = [o for o in rig.log if isinstance(o, StatusChanged) and o.fault is not None]
    assert reported and reported[-1].status is ConnectorStatus.CHARGING
    assert reported[-1].fault is not None and reported[-1].fault.code == "isolation_warning"
    rig.send(FaultCleared(1, "imd1"))
    rig.advance(1)
    last = [o for o in rig.log if isinstance(o, StatusChanged)][-1]
    assert last.status is ConnectorStatus.CHARGING and last.fault is None


def test_fault_stops_energy_and_ends_with_ground_fault() -> None:
    rig = Rig(config=DC)
    rig.charge()
    out = rig.send(warning(), fault())
    assert not one(out, SetContactor).closed
    stopped = one(out, TransactionStopped)
    assert stopped.reason is StopReason.GROUND_FAULT
    rig.advance(1)
    assert rig.status() is ConnectorStatus.FAULTED
    # nothing starts while it lasts: the same card again does not close the contactor
    rig.authorize("TAG1")
    assert not rig.contactor()


def test_controller_isolation_fault_ends_with_ground_fault_too() -> None:
    rig = Rig(config=DC)
    rig.charge()
    out = rig.send(FaultRaised(1, "controller1", "isolation_fault", True, DeviceRole.DC_CONTROLLER, "isolation"))
    assert one(out, TransactionStopped).reason is StopReason.GROUND_FAULT


def test_other_faults_keep_reason_other() -> None:
    rig = Rig(config=DC)
    rig.charge()
    out = rig.send(FaultRaised(1, "imd1", "imd_device_error", True, IMD, "device error"))
    assert one(out, TransactionStopped).reason is StopReason.OTHER


def test_adapter_words() -> None:
    """1.6 has no GroundFault reason (Other); 2.0.1 names it; statuses and NotifyEvent by code."""
    assert stop_reason_16(StopReason.GROUND_FAULT) == "Other"
    assert ENDED[StopReason.GROUND_FAULT] == ("AbnormalCondition", "GroundFault")
    warn = error_fields(Fault("isolation_warning", IMD, "imd1", "insulation 400 kOhm"))
    assert warn.error_code is ChargePointErrorCode.OTHER_ERROR and warn.vendor_error_code == "isolation_warning"
    assert error_fields(Fault("isolation_fault", IMD, "imd1")).error_code is ChargePointErrorCode.GROUND_FAILURE
    for code in ("isolation_warning", "isolation_fault", "imd_device_error", "imd_self_test_failed",
                 "imd_communication"):
        assert fault_report(Fault(code, IMD, "imd1")).component == "InsulationMonitor"
    assert FAULT_SEVERITY["isolation_warning"] > FAULT_SEVERITY["isolation_fault"]
