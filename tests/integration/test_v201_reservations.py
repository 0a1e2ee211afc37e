"""OCPP 2.0.1 H01/H04 end to end: the agent process reserves an EVSE for the local back office, shows it
Reserved, and when the reservation expires reports ReservationStatusUpdate Expired and is Available again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.clock import iso
from tests.integration.harness import CP_ID, Rig

V201 = "2.0.1"


async def test_h01_h04_a_reservation_that_expires_reaches_the_back_office_as_expired(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201)
    answer = await rig.cs_call("ReserveNow", {"id": 42, "expiryDateTime": iso(time.time() + 3),
                                              "idToken": {"idToken": "RES1", "type": "ISO14443"}, "evseId": 1})
    assert answer["status"] == "result" and answer["payload"]["status"] == "Accepted", answer
    await rig.wait_status(1, "Reserved")
    since = len(rig.statuses(1))

    def expired() -> dict[str, Any] | None:
        updates = [m for m in rig.calls("ReservationStatusUpdate") if m["response"] is not None]
        return updates[0]["payload"] if updates else None

    update = await rig.office.wait_for(expired, timeout=15.0)
    assert update == {"reservationId": 42, "reservationUpdateStatus": "Expired"}
    await rig.wait_status(1, "Available", since=since)
    assert rig.office.violations == []
    assert rig.office.version_of(CP_ID) == V201


async def test_h04_a_reservation_that_expired_while_the_agent_was_down_is_reported_expired(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201)
    answer = await rig.cs_call("ReserveNow", {"id": 43, "expiryDateTime": iso(time.time() + 2),
                                              "idToken": {"idToken": "RES1", "type": "ISO14443"}, "evseId": 1})
    assert answer["payload"]["status"] == "Accepted", answer
    await rig.wait_status(1, "Reserved")
    rig.kill_agent()
    await asyncio.sleep(3.0)  # expires while the agent is down
    rig.start_agent()

    def expired() -> dict[str, Any] | None:
        updates = [m for m in rig.calls("ReservationStatusUpdate") if m["response"] is not None]
        return updates[0]["payload"] if updates else None

    assert await rig.office.wait_for(expired, timeout=20.0) == {"reservationId": 43,
                                                               "reservationUpdateStatus": "Expired"}
    await rig.office.wait_for(lambda: rig.statuses(1)[-1]["status"] == "Available", timeout=15)
