"""OCPP 2.0.1 C09-C16 on a real agent and store: a token of the transaction's group stops it (the group from the
local list, the cache or the Authorize answer), a master pass (AuthCtrlr.MasterPassGroupId) stops every
transaction and starts none, StopTxOnInvalidId reaches the core; the Ended events checked against the schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.core import events as ev
from agent.ocpp.v201.connection import auth_result
from agent.store import AuthEntry
from tests.agent.test_v201_handlers import Rig, schema


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)

    async def actuators() -> None:  # as Agent.run starts it: a stop waits for the contactor to open
        made.agent._spawn(made.agent.actuator_loop(1), "actuator-1")

    made.loop.run_until_complete(actuators())
    yield made
    made.close()


def feed(rig: Rig, event: ev.Input) -> None:
    """Feed an observation inside the loop (an authorization runs as a task), then let its tasks run."""
    async def run() -> None:
        rig.agent.feed(event)
        await asyncio.sleep(0.05)

    rig.loop.run_until_complete(run())


def local_list(rig: Rig, *entries: tuple[str, str | None]) -> None:
    """The local list (offline, LocalAuthorizeOffline decides from it): (token, group) pairs, all Accepted."""
    items: list[dict[str, Any]] = []
    for token, group in entries:
        info: dict[str, Any] = {"status": "Accepted"}
        if group is not None:
            info["groupIdToken"] = {"idToken": group, "type": "Central"}
        items.append({"idToken": {"idToken": token, "type": "ISO14443"}, "idTokenInfo": info})
    assert rig.call("SendLocalList", {"versionNumber": 1, "updateType": "Full",
                                      "localAuthorizationList": items})["status"] == "Accepted"


def start(rig: Rig, token: str) -> None:
    """Present a card at the connector and plug in: a transaction runs."""
    async def observe() -> None:
        reading = await rig.meter.read()
        rig.agent.connectors[1].reading = reading
        rig.agent.feed(ev.MeterSample(1, reading.energy_import_wh, 0.0))

    rig.loop.run_until_complete(observe())
    feed(rig, ev.IdPresented(1, token))
    feed(rig, ev.PlugChanged(1, True))
    assert rig.agent.core.session(1) is not None


def ended(rig: Rig) -> dict[str, Any]:
    """The Ended event, once the stop's final meter read is done and it is queued."""
    for _ in range(40):
        found = [m.payload for m in rig.store.pending()
                 if m.action == "TransactionEvent" and m.payload["eventType"] == "Ended"]
        if found:
            break
        rig.loop.run_until_complete(asyncio.sleep(0.05))
    (payload,) = found
    jsonschema.validate(payload, schema("TransactionEventRequest"))
    return payload


def test_c09_a_token_of_the_same_group_from_the_local_list_stops_the_transaction(rig: Rig) -> None:
    local_list(rig, ("A1", "FLEET"), ("B2", "FLEET"), ("C3", "OTHER"))
    start(rig, "A1")
    feed(rig, ev.IdPresented(1, "C3"))  # another group: refused, the transaction goes on
    assert rig.agent.core.session(1) is not None
    feed(rig, ev.IdPresented(1, "B2"))
    assert rig.agent.core.session(1) is None
    event = ended(rig)
    assert (event["triggerReason"], event["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "Local")
    assert event["idToken"]["idToken"] == "B2"  # the token that stopped it


def test_c09_the_group_from_the_authorization_cache_counts_too(rig: Rig) -> None:
    local_list(rig, ("A1", "FLEET"))
    # what an Authorize answer said of B2 (its groupIdToken) is cached; offline, the cache decides
    rig.agent.remember_authorization(auth_result("B2", {"status": "Accepted",
                                                        "groupIdToken": {"idToken": "FLEET", "type": "Central"}}))
    assert rig.store.cache_get("B2") == AuthEntry("B2", "Accepted", None, "FLEET")
    start(rig, "A1")
    feed(rig, ev.IdPresented(1, "B2"))
    assert rig.agent.core.session(1) is None


def test_c16_a_master_pass_stops_the_transaction_with_stopped_reason_master_pass(rig: Rig) -> None:
    assert rig.device_model.change("AuthCtrlr.MasterPassGroupId", "MASTER") == "Accepted"
    assert rig.agent.core.settings.master_pass_group == "MASTER"
    local_list(rig, ("A1", "FLEET"), ("M1", "MASTER"))
    start(rig, "A1")
    feed(rig, ev.IdPresented(1, "M1"))
    assert rig.agent.core.session(1) is None
    event = ended(rig)
    assert (event["triggerReason"], event["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "MasterPass")
    assert event["idToken"]["idToken"] == "M1"


def test_c16_a_master_pass_starts_no_transaction(rig: Rig) -> None:
    assert rig.device_model.change("AuthCtrlr.MasterPassGroupId", "MASTER") == "Accepted"
    local_list(rig, ("M1", "MASTER"))
    feed(rig, ev.IdPresented(1, "M1"))
    feed(rig, ev.PlugChanged(1, True))
    assert rig.agent.core.session(1) is None
    assert rig.agent.core.snapshot()["connectors"]["1"]["authorized_id"] is None


def test_c16_without_a_master_pass_group_the_same_token_is_an_ordinary_one(rig: Rig) -> None:
    assert rig.agent.core.settings.master_pass_group is None  # MasterPassGroupId "" (the default): none
    local_list(rig, ("M1", "MASTER"))
    start(rig, "M1")


def test_c10_stop_tx_on_invalid_id_and_max_energy_reach_the_core(rig: Rig) -> None:
    assert rig.device_model.change("TxCtrlr.StopTxOnInvalidId", "false") == "Accepted"
    assert rig.device_model.change("TxCtrlr.MaxEnergyOnInvalidId", "500") == "Accepted"
    settings = rig.agent.core.settings
    assert settings.stop_transaction_on_invalid_id is False and settings.max_energy_on_invalid_id_wh == 500.0


def test_c01_the_token_type_of_a_request_start_is_kept_in_the_started_event(rig: Rig) -> None:
    assert rig.call("RequestStartTransaction", {"idToken": {"idToken": "EMAID1", "type": "eMAID"},
                                                "remoteStartId": 3, "evseId": 1})["status"] == "Accepted"
    assert [m for m in rig.store.pending() if m.action == "TransactionEvent"] == []

    async def observe() -> None:
        reading = await rig.meter.read()
        rig.agent.connectors[1].reading = reading
        rig.agent.feed(ev.MeterSample(1, reading.energy_import_wh, 0.0))

    rig.loop.run_until_complete(observe())
    feed(rig, ev.PlugChanged(1, True))
    (started,) = [m.payload for m in rig.store.pending() if m.action == "TransactionEvent"]
    jsonschema.validate(started, schema("TransactionEventRequest"))
    assert started["idToken"] == {"idToken": "EMAID1", "type": "eMAID"}
    assert started["transactionInfo"]["remoteStartId"] == 3
