"""The session events of ChargePointCore: what a protocol needs to report a session (2.0.1 trigger reasons)."""

from __future__ import annotations

from agent.core import (
    AuthResult,
    AuthStatus,
    DeviceRole,
    EvReadyChanged,
    FaultCleared,
    FaultRaised,
    IdPresented,
    IsolationChanged,
    Output,
    PlugChanged,
    RemoteStart,
    RemoteStop,
    TransactionConfirmed,
    TransactionStarted,
    TransactionStopped,
)
from agent.core.events import (
    Authorized,
    AuthSource,
    Deauthorized,
    EnergyTransferResumed,
    EnergyTransferStarted,
    EnergyTransferSuspended,
    EvConnected,
    EvDisconnected,
    SuspendedBy,
)
from tests.agent.test_core_rig import START, Rig, one

SESSION = (Authorized, EvConnected, EvDisconnected, EnergyTransferStarted, EnergyTransferSuspended,
           EnergyTransferResumed, Deauthorized, TransactionStarted, TransactionStopped)


def story(outputs: list[Output]) -> list[str]:
    """The session events and transaction records, by name (a suspension with who suspended)."""
    names = []
    for out in outputs:
        if isinstance(out, SESSION):
            name = type(out).__name__
            if isinstance(out, EnergyTransferSuspended):
                name += f"({out.by.value})"
            if isinstance(out, TransactionStopped):
                name += f"({out.reason.value})"
            names.append(name)
    return names


def test_plug_first_session() -> None:
    rig = Rig()
    out = rig.send(PlugChanged(1, True))
    assert one(out, EvConnected) == EvConnected(1, START, None)
    rig.advance(5)
    out = rig.authorize("TAG1")
    assert one(out, Authorized) == Authorized(1, "TAG1", AuthSource.CARD, START + 5)
    rig.send(EvReadyChanged(1, True))
    rig.send(IdPresented(1, "TAG1"))  # the same card again stops
    assert story(rig.log) == ["EvConnected", "Authorized", "TransactionStarted", "EnergyTransferStarted",
                              "TransactionStopped(Local)"]


def test_card_first_session_and_ev_side_unplug() -> None:
    rig = Rig()
    rig.authorize("TAG1")
    rig.send(PlugChanged(1, True), EvReadyChanged(1, True))
    out = rig.send(PlugChanged(1, False))
    tx = one(rig.log, TransactionStarted).local_tx_id
    assert one(out, EvDisconnected) == EvDisconnected(1, START, tx)
    assert story(rig.log) == ["Authorized", "EvConnected", "TransactionStarted", "EnergyTransferStarted",
                              "TransactionStopped(EVDisconnected)", "EvDisconnected"]


def test_the_ev_suspends_and_resumes() -> None:
    rig = Rig()
    rig.charge()
    tx = one(rig.log, TransactionStarted).local_tx_id
    out = rig.send(EvReadyChanged(1, False))
    assert one(out, EnergyTransferSuspended) == EnergyTransferSuspended(1, tx, SuspendedBy.EV, START)
    out = rig.send(EvReadyChanged(1, True))
    assert one(out, EnergyTransferResumed) == EnergyTransferResumed(1, tx, START)
    assert story(rig.log)[-3:] == ["EnergyTransferStarted", "EnergyTransferSuspended(EV)", "EnergyTransferResumed"]


def test_the_station_suspends_for_a_silent_device_and_resumes() -> None:
    rig = Rig()
    rig.charge()
    rig.send(FaultRaised(1, "meter1", "communication", False, DeviceRole.METER, suspends_charging=True))
    rig.send(FaultCleared(1, "meter1"))
    assert story(rig.log)[-3:] == ["EnergyTransferStarted", "EnergyTransferSuspended(EVSE)",
                                   "EnergyTransferResumed"]


def test_a_suspension_that_changes_side_is_reported_again() -> None:
    rig = Rig()
    rig.charge()
    rig.send(FaultRaised(1, "meter1", "communication", False, DeviceRole.METER, suspends_charging=True))
    rig.send(EvReadyChanged(1, False))
    assert story(rig.log)[-2:] == ["EnergyTransferSuspended(EVSE)", "EnergyTransferSuspended(EV)"]


def test_no_energy_event_before_the_ev_first_asks() -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    rig.authorize("TAG1")
    rig.send(IdPresented(1, "TAG1"))
    assert story(rig.log) == ["EvConnected", "Authorized", "TransactionStarted", "TransactionStopped(Local)"]


def test_deauthorized_then_stopped_by_the_invalid_id_rule() -> None:
    rig = Rig()
    rig.charge()
    tx = one(rig.log, TransactionStarted).local_tx_id
    out = rig.send(TransactionConfirmed(tx, 42, AuthStatus.INVALID))
    assert one(out, Deauthorized) == Deauthorized(1, tx, "TAG1", START)
    assert story(out) == ["Deauthorized", "TransactionStopped(DeAuthorized)"]
    assert one(out, TransactionStopped).transaction_id == 42


def test_deauthorized_with_energy_suspended_by_the_station() -> None:
    rig = Rig(stop_transaction_on_invalid_id=False)
    rig.charge()
    tx = one(rig.log, TransactionStarted).local_tx_id
    out = rig.send(TransactionConfirmed(tx, 42, AuthStatus.BLOCKED))
    assert story(out) == ["Deauthorized", "EnergyTransferSuspended(EVSE)"]


def test_a_stop_ends_without_a_suspension() -> None:
    rig = Rig()
    rig.charge()
    rig.send(TransactionConfirmed(one(rig.log, TransactionStarted).local_tx_id, 7))
    _, out = rig.call("remote_stop", RemoteStop(7))
    assert story(out) == ["TransactionStopped(Remote)"]


def test_remote_start_without_a_connector_is_authorized_at_the_charge_point() -> None:
    rig = Rig(connectors=2)
    _, out = rig.call("remote_start", RemoteStart(None, "TAG9"))
    assert one(out, Authorized) == Authorized(None, "TAG9", AuthSource.REMOTE, START)
    out = rig.send(PlugChanged(2, True))
    assert story(out) == ["EvConnected", "TransactionStarted"]


def test_free_vend_is_authorized_by_the_plug() -> None:
    rig = Rig(free_vend_id="FREE")
    out = rig.send(PlugChanged(1, True), IsolationChanged(1, True))
    assert one(out, Authorized) == Authorized(1, "FREE", AuthSource.FREE_VEND, START)
    assert story(out) == ["EvConnected", "Authorized", "TransactionStarted"]


def test_a_shared_reader_answer_waits_at_the_charge_point() -> None:
    rig = Rig(connectors=2)
    out = rig.send(IdPresented(None, "TAG1"), AuthResult("TAG1", AuthStatus.ACCEPTED))
    assert one(out, Authorized) == Authorized(None, "TAG1", AuthSource.CARD, START)
