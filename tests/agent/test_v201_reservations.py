"""OCPP 2.0.1 H01-H04 reservations on a real agent and store: ReserveNow's five answers, CancelReservation, a
token of the reservation's group using it, and an expiry queued as ReservationStatusUpdate Expired; every
answer and queued message checked against the official schemas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from agent.clock import iso
from agent.core import events as ev
from agent.ocpp.v201.reservations import reservation_reporter
from agent.ocpp.v201.statuses import connector_status
from tests.agent.test_v201_handlers import Rig, schema


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    made.agent.reservation_ended = reservation_reporter(made.store, lambda: None)  # as agent/daemon.py wires it
    yield made
    made.close()


def reserve(rig: Rig, reservation_id: int = 7, *, evse_id: int | None = 1, token: str = "A1",
            group: str | None = None, expiry_s: float = 600.0, **extra: object) -> str:
    payload: dict[str, object] = {"id": reservation_id, "expiryDateTime": iso(time.time() + expiry_s),
                                  "idToken": {"idToken": token, "type": "ISO14443"}, **extra}
    if evse_id is not None:
        payload["evseId"] = evse_id
    if group is not None:
        payload["groupIdToken"] = {"idToken": group, "type": "Central"}
    jsonschema.validate(payload, schema("ReserveNowRequest"))
    return str(rig.call("ReserveNow", payload)["status"])


def status_of(rig: Rig, connector_id: int = 1) -> str:
    return connector_status(ev.ConnectorStatus(rig.agent.core.snapshot()["connectors"][str(connector_id)]["status"]))


def queued(rig: Rig, action: str) -> list[dict[str, object]]:
    return [m.payload for m in rig.store.pending() if m.action == action]


def feed(rig: Rig, event: ev.Input) -> None:
    """Feed an observation inside the loop (an authorization runs as a task), then let its tasks run."""
    async def run() -> None:
        rig.agent.feed(event)
        await asyncio.sleep(0.05)

    rig.loop.run_until_complete(run())


def observe_meter(rig: Rig) -> None:
    async def observe() -> None:
        reading = await rig.meter.read()
        rig.agent.connectors[1].reading = reading
        rig.agent.feed(ev.MeterSample(1, reading.energy_import_wh, 0.0))

    rig.loop.run_until_complete(observe())


def test_h01_reserve_now_accepted_makes_the_evse_reserved(rig: Rig) -> None:
    assert reserve(rig) == "Accepted"
    assert status_of(rig) == "Reserved"
    # the same id again replaces it (H01.FR.02), another id on the reserved EVSE is Occupied
    assert reserve(rig, 7, token="A2") == "Accepted"
    assert rig.agent.core.snapshot()["connectors"]["1"]["reservation"]["id_tag"] == "A2"
    assert reserve(rig, 8) == "Occupied"


def test_h01_reserve_now_rejected_for_no_such_evse_type_or_time(rig: Rig) -> None:
    assert reserve(rig, evse_id=9) == "Rejected"
    assert reserve(rig, evse_id=0) == "Rejected"
    assert reserve(rig, expiry_s=-10) == "Rejected"
    assert reserve(rig, connectorType="cCCS2") == "Rejected"  # the EVSE has a Type 2 socket only
    assert reserve(rig, connectorType="sType2") == "Accepted"


def test_h01_reservation_ctrlr_variables_are_honoured(rig: Rig) -> None:
    # NonEvseSpecific is false (read-only): a reservation of no particular EVSE is refused
    assert reserve(rig, evse_id=None) == "Rejected"
    assert rig.device_model.change("ReservationCtrlr.Enabled", "false") == "Accepted"
    assert reserve(rig) == "Rejected"
    assert status_of(rig) == "Available"
    assert rig.device_model.change("ReservationCtrlr.Enabled", "true") == "Accepted"
    assert reserve(rig) == "Accepted"


def test_h01_reserve_now_occupied_unavailable_faulted(rig: Rig) -> None:
    rig.agent.feed(ev.PlugChanged(1, True))
    assert reserve(rig) == "Occupied"
    rig.agent.feed(ev.PlugChanged(1, False))
    assert rig.call("ChangeAvailability", {"operationalStatus": "Inoperative"})["status"] == "Accepted"
    assert reserve(rig) == "Unavailable"
    assert rig.call("ChangeAvailability", {"operationalStatus": "Operative"})["status"] == "Accepted"
    rig.agent.feed(ev.FaultRaised(1, "meter", "energy_backwards", True, ev.DeviceRole.METER))
    assert reserve(rig) == "Faulted"


def test_h02_cancel_reservation(rig: Rig) -> None:
    assert reserve(rig, 11) == "Accepted"
    assert rig.call("CancelReservation", {"reservationId": 11})["status"] == "Accepted"
    assert status_of(rig) == "Available"
    assert rig.call("CancelReservation", {"reservationId": 11})["status"] == "Rejected"
    assert queued(rig, "ReservationStatusUpdate") == []  # the back office asked: nothing to report back


def test_h03_a_token_of_the_reservation_group_uses_it_and_the_started_event_names_it(rig: Rig) -> None:
    # the group is known from the local list (offline here: LocalAuthorizeOffline decides from the list)
    assert rig.call("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": "B2", "type": "ISO14443"},
         "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "FLEET", "type": "Central"}}},
        {"idToken": {"idToken": "C3", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]})[
        "status"] == "Accepted"
    assert reserve(rig, 21, token="A1", group="FLEET") == "Accepted"
    observe_meter(rig)
    feed(rig, ev.IdPresented(1, "C3"))  # not of the group: the reservation holds
    assert rig.agent.core.snapshot()["connectors"]["1"]["authorized_id"] is None
    feed(rig, ev.IdPresented(1, "B2"))
    feed(rig, ev.PlugChanged(1, True))
    assert rig.agent.core.session(1) is not None
    started = queued(rig, "TransactionEvent")[0]
    jsonschema.validate(started, schema("TransactionEventRequest"))
    assert started["eventType"] == "Started" and started["reservationId"] == 21
    assert queued(rig, "ReservationStatusUpdate") == []  # used, not expired


def test_h04_an_expired_reservation_is_queued_as_reservation_status_update_expired(rig: Rig) -> None:
    assert reserve(rig, 31, expiry_s=30) == "Accepted"
    later = rig.agent.now() + 60
    rig.agent.execute(rig.agent.core.handle(ev.Tick(), later, time.monotonic() + 60))
    assert status_of(rig) == "Available"
    updates = queued(rig, "ReservationStatusUpdate")
    assert updates == [{"reservationId": 31, "reservationUpdateStatus": "Expired"}]
    jsonschema.validate(updates[0], schema("ReservationStatusUpdateRequest"))
    assert [m.protocol for m in rig.store.pending() if m.action == "ReservationStatusUpdate"] == ["2.0.1"]
