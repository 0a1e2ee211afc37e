"""Back-office commands of OCPP 1.6 against the running agent: configuration, local list, cache, data transfer
and malformed calls (OCTT-named where a case applies)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

from tests.integration.harness import CARD, CP_ID, Rig

STANDARD_KEYS = ("AuthorizeRemoteTxRequests", "ClockAlignedDataInterval", "ConnectionTimeOut",
                 "GetConfigurationMaxKeys", "HeartbeatInterval", "LocalAuthorizeOffline", "LocalPreAuthorize",
                 "MeterValuesAlignedData", "MeterValuesSampledData", "MeterValueSampleInterval",
                 "NumberOfConnectors", "ResetRetries", "StopTransactionOnInvalidId", "StopTxnAlignedData",
                 "StopTxnSampledData", "SupportedFeatureProfiles", "TransactionMessageAttempts",
                 "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect")


async def ok(rig: Rig, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send a call that must be answered with a CALLRESULT; return its payload."""
    result = await rig.cs_call(action, payload or {}, timeout=10)
    assert result["status"] == "result", f"{action}: {result}\n{rig.agent_log()[-2000:]}"
    return result["payload"]  # type: ignore[no-any-return]


async def config(rig: Rig, *keys: str) -> dict[str, dict[str, Any]]:
    """GetConfiguration as {key: entry}."""
    payload = await ok(rig, "GetConfiguration", {"key": list(keys)} if keys else {})
    return {entry["key"]: entry for entry in payload.get("configurationKey", [])}


async def restart_agent(rig: Rig) -> None:
    """Stop the agent cleanly and start it again; wait until the new connection is accepted."""
    boots = len(rig.calls("BootNotification"))
    await rig.stop_agent()
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    await rig.office.wait_for(lambda: rig.office.connected(CP_ID), timeout=5)


# ---- configuration --------------------------------------------------------------------------------


async def test_tc_040_1_configuration_key_not_supported(rig: Rig) -> None:
    assert (await ok(rig, "ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}))["status"] == "NotSupported"
    got = await ok(rig, "GetConfiguration", {"key": ["NoSuchKey", "HeartbeatInterval"]})
    assert got["unknownKey"] == ["NoSuchKey"]
    assert [e["key"] for e in got["configurationKey"]] == ["HeartbeatInterval"]


async def test_tc_040_2_invalid_value(rig: Rig) -> None:
    for value in ("abc", "-5", "1.5"):
        answer = await ok(rig, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": value})
        assert answer["status"] == "Rejected", value
    answer = await ok(rig, "ChangeConfiguration", {"key": "MeterValuesSampledData", "value": "Bogus.Measurand"})
    assert answer["status"] == "Rejected"
    answer = await ok(rig, "ChangeConfiguration", {"key": "LocalPreAuthorize", "value": "maybe"})
    assert answer["status"] == "Rejected"
    assert (await config(rig, "MeterValueSampleInterval"))["MeterValueSampleInterval"]["value"] == "60"


async def test_change_configuration_readonly_key_rejected(rig: Rig) -> None:
    for key in ("NumberOfConnectors", "GetConfigurationMaxKeys", "SupportedFeatureProfiles"):
        before = (await config(rig, key))[key]
        assert before["readonly"] is True
        assert (await ok(rig, "ChangeConfiguration", {"key": key, "value": "3"}))["status"] == "Rejected", key
        assert (await config(rig, key))[key] == before
    assert (await config(rig, "NumberOfConnectors"))["NumberOfConnectors"]["value"] == "2"


async def test_change_configuration_accepted_and_persisted_across_restart(rig: Rig) -> None:
    changes = {"MeterValueSampleInterval": "15", "LocalPreAuthorize": "true", "ConnectionTimeOut": "45",
               "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import"}
    for key, value in changes.items():
        assert (await ok(rig, "ChangeConfiguration", {"key": key, "value": value}))["status"] == "Accepted", key
    assert {k: e["value"] for k, e in (await config(rig, *changes)).items()} == changes
    await restart_agent(rig)
    assert {k: e["value"] for k, e in (await config(rig, *changes)).items()} == changes


async def test_get_configuration_all_keys_never_authorization_key(rig: Rig) -> None:
    got = await ok(rig, "GetConfiguration", {})
    assert "unknownKey" not in got or got["unknownKey"] == []
    keys = {e["key"]: e for e in got["configurationKey"]}
    assert set(STANDARD_KEYS) <= set(keys)
    assert "AuthorizationKey" not in keys
    assert keys["HeartbeatInterval"]["readonly"] is False
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
    assert "Core" in keys["SupportedFeatureProfiles"]["value"].split(",")
    # Asked for by name, the secret is unknown rather than disclosed.
    named = await ok(rig, "GetConfiguration", {"key": ["AuthorizationKey"]})
    assert named.get("configurationKey", []) == [] and named["unknownKey"] == ["AuthorizationKey"]


# ---- local authorization list ---------------------------------------------------------------------


def _entry(id_tag: str, status: str | None = "Accepted") -> dict[str, Any]:
    return {"idTag": id_tag, **({"idTagInfo": {"status": status}} if status else {})}


async def test_tc_042_1_get_local_list_version(rig: Rig) -> None:
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == 0
    sent = await ok(rig, "SendLocalList", {"listVersion": 7, "updateType": "Full",
                                           "localAuthorizationList": [_entry("TAG1")]})
    assert sent["status"] == "Accepted"
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == 7
    # An empty full list empties it: version is then still what the back office sent.
    sent = await ok(rig, "SendLocalList", {"listVersion": 8, "updateType": "Full"})
    assert sent["status"] == "Accepted"
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == 8


async def test_get_local_list_version_disabled_is_minus_one(rig_factory: Any) -> None:
    rig = await rig_factory(ocpp={"LocalAuthListEnabled": False})
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == -1
    sent = await ok(rig, "SendLocalList", {"listVersion": 1, "updateType": "Full",
                                           "localAuthorizationList": [_entry("TAG1")]})
    assert sent["status"] == "NotSupported"


async def test_tc_043_1_send_local_list_full_starts_without_authorize(rig_factory: Any) -> None:
    rig = await rig_factory(ocpp={"LocalPreAuthorize": True})
    sent = await ok(rig, "SendLocalList", {"listVersion": 1, "updateType": "Full",
                                           "localAuthorizationList": [_entry(CARD), _entry("OTHER01")]})
    assert sent["status"] == "Accepted"
    start = await rig.start_session()
    assert start["payload"]["idTag"] == CARD
    # LocalPreAuthorize: a listed valid id starts at once, the back office is not asked first.
    assert rig.calls("Authorize") == []


async def test_tc_043_2_send_local_list_differential(rig: Rig) -> None:
    full = [_entry("TAG1"), _entry("TAG2"), _entry("TAG3", "Blocked")]
    assert (await ok(rig, "SendLocalList", {"listVersion": 3, "updateType": "Full",
                                            "localAuthorizationList": full}))["status"] == "Accepted"
    # Differential: TAG4 added, TAG2 removed (no idTagInfo), TAG3 updated.
    diff = [_entry("TAG4"), _entry("TAG2", None), _entry("TAG3", "Accepted")]
    assert (await ok(rig, "SendLocalList", {"listVersion": 4, "updateType": "Differential",
                                            "localAuthorizationList": diff}))["status"] == "Accepted"
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == 4
    assert local_list(rig) == {"TAG1": "Accepted", "TAG3": "Accepted", "TAG4": "Accepted"}


def local_list(rig: Rig) -> dict[str, str]:
    """The agent's local list as its SQLite store holds it (read by the test beside the running agent)."""
    found = sorted(rig.workdir.rglob("agent.db"))
    assert found, "no agent.db"
    with contextlib.closing(sqlite3.connect(found[0], timeout=5)) as conn:
        return dict(conn.execute("SELECT id_tag, status FROM local_list").fetchall())


async def test_tc_043_3_send_local_list_version_mismatch(rig: Rig) -> None:
    assert (await ok(rig, "SendLocalList", {"listVersion": 5, "updateType": "Full",
                                            "localAuthorizationList": [_entry("TAG1")]}))["status"] == "Accepted"
    for version in (5, 4):
        answer = await ok(rig, "SendLocalList", {"listVersion": version, "updateType": "Differential",
                                                 "localAuthorizationList": [_entry("TAG2")]})
        assert answer["status"] == "VersionMismatch", version
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == 5


async def test_tc_043_4_send_local_list_failed_too_long(rig: Rig) -> None:
    limit = int((await config(rig, "SendLocalListMaxLength"))["SendLocalListMaxLength"]["value"])
    items = [_entry(f"T{i:05d}") for i in range(limit + 1)]
    answer = await ok(rig, "SendLocalList", {"listVersion": 9, "updateType": "Full",
                                             "localAuthorizationList": items})
    assert answer["status"] == "Failed"
    assert (await ok(rig, "GetLocalListVersion"))["listVersion"] == 0  # nothing applied


async def test_local_list_blocked_id_asks_online_and_is_refused_offline(rig: Rig) -> None:
    # The list says Blocked, the back office says Accepted. Online (no LocalPreAuthorize) the back office
    # decides: the agent asks. Offline the list is the authority: refused.
    assert (await ok(rig, "SendLocalList", {"listVersion": 1, "updateType": "Full",
                                            "localAuthorizationList": [_entry(CARD, "Blocked")]}))["status"] \
        == "Accepted"
    await rig.office.go_offline()
    await rig.office.wait_for(lambda: not rig.office.connected(CP_ID), timeout=5)
    rig.card()
    rig.plug()
    await rig.office.wait_for(lambda: "decided locally: Blocked" in rig.agent_log(), timeout=10)
    boots = len(rig.calls("BootNotification"))
    await rig.office.go_online()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    await rig.wait_status(1, "Preparing")
    await asyncio.sleep(1.0)
    assert rig.calls("StartTransaction") == [] and rig.calls("Authorize") == []
    rig.card()  # online: asked, and the back office's Accepted wins (the cable is still in)
    start = await rig.wait_call("StartTransaction")
    assert len(rig.calls("Authorize")) == 1 and start["payload"]["idTag"] == CARD


# ---- authorization cache --------------------------------------------------------------------------


async def test_tc_061_clear_cache(rig_factory: Any) -> None:
    rig = await rig_factory(ocpp={"LocalPreAuthorize": True})
    await rig.start_session()
    assert len(rig.calls("Authorize")) == 1
    await rig.wait_status(1, "Charging")
    rig.card()
    await rig.wait_call("StopTransaction")
    seen = len(rig.statuses(1))
    rig.unplug()
    # the Available after the unplug, not the one at boot: by then the StopTransaction answer (whose idTagInfo
    # refreshes the cache) has been handled, so ClearCache is the last word
    await rig.wait_status(1, "Available", since=seen)
    assert (await ok(rig, "ClearCache"))["status"] == "Accepted"
    # The id was cached (LocalPreAuthorize would start it without asking); after ClearCache it is asked again.
    rig.card()
    await rig.wait_call("Authorize", count=2)


async def test_cached_id_not_asked_again_with_local_pre_authorize(rig_factory: Any) -> None:
    rig = await rig_factory(ocpp={"LocalPreAuthorize": True})
    await rig.start_session()
    await rig.wait_status(1, "Charging")
    rig.card()
    await rig.wait_call("StopTransaction")
    rig.unplug()
    await rig.wait_status(1, "Available")
    await rig.start_session()  # from the cache this time
    assert len(rig.calls("Authorize")) == 1


# ---- data transfer and malformed calls ---------------------------------------------------------------


async def test_data_transfer_unknown_vendor_and_message(rig: Rig) -> None:
    assert (await ok(rig, "DataTransfer", {"vendorId": "com.example.nobody"}))["status"] == "UnknownVendorId"
    answer = await ok(rig, "DataTransfer", {"vendorId": "evse-agent", "messageId": "nothing"})
    assert answer["status"] == "UnknownMessageId"
    answer = await ok(rig, "DataTransfer", {"vendorId": "evse-agent", "messageId": "ping", "data": "x"})
    assert answer == {"status": "Accepted", "data": "x"}


async def test_invalid_calls_get_the_right_callerror_and_the_daemon_survives(rig: Rig) -> None:
    cases = [
        ("ChangeConfiguration", {"key": 5, "value": "1"}, "TypeConstraintViolation"),
        ("ChangeConfiguration", {"key": "HeartbeatInterval"}, "ProtocolError"),
        ("Reset", {"type": "Soft", "extra": 1}, "FormationViolation"),
        ("FooBarAction", {}, "NotImplemented"),  # not a 1.6 action: not known by the receiver
        ("RemoteStopTransaction", {"transactionId": "x"}, "TypeConstraintViolation"),
    ]
    for action, payload, code in cases:
        answer = await rig.cs_call(action, payload, validate=False, timeout=10)
        assert answer["status"] == "error" and answer["code"] == code, (action, payload, answer)
    assert rig.agent is not None and rig.agent.poll() is None
    start = await rig.start_session()
    assert start["payload"]["idTag"] == CARD


async def test_known_but_unsupported_action_is_not_supported(rig: Rig) -> None:
    # OCPP-J 1.6: NotSupported = "recognized but not supported": a charge-point-initiated action sent to it.
    answer = await rig.cs_call("Heartbeat", {}, timeout=10)
    assert answer["status"] == "error" and answer["code"] == "NotSupported", answer


async def test_get_configuration_answers_up_to_get_configuration_max_keys(rig: Rig) -> None:
    limit = int((await config(rig, "GetConfigurationMaxKeys"))["GetConfigurationMaxKeys"]["value"])
    asked = [*STANDARD_KEYS, *(f"NoSuchKey{i}" for i in range(limit + 5 - len(STANDARD_KEYS)))]
    assert len(asked) == limit + 5
    got = await ok(rig, "GetConfiguration", {"key": asked})
    answered = [e["key"] for e in got.get("configurationKey", [])] + got.get("unknownKey", [])
    assert sorted(answered) == sorted(asked[:limit]), got


async def test_advertised_smart_charging_limits_are_enforced(rig: Rig) -> None:
    limits = await config(rig, "ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled")
    max_periods = int(limits["ChargingScheduleMaxPeriods"]["value"])
    max_profiles = int(limits["MaxChargingProfilesInstalled"]["value"])

    def profile(pid: int, periods: int) -> dict[str, Any]:
        return {"connectorId": 0, "csChargingProfiles": {
            "chargingProfileId": pid, "stackLevel": pid % 10, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
                {"startPeriod": 60 * i, "limit": 16.0} for i in range(periods)]}}}

    assert (await ok(rig, "SetChargingProfile", profile(1, max_periods + 1)))["status"] == "Rejected"
    assert (await ok(rig, "SetChargingProfile", profile(1, max_periods)))["status"] == "Accepted"
    await ok(rig, "ClearChargingProfile", {"id": 1})
    def placed(pid: int) -> dict[str, Any]:  # each on its own connector and level: none replaces another
        body = profile(pid, 1)
        body["connectorId"] = pid % 3
        body["csChargingProfiles"]["stackLevel"] = pid // 3
        return body

    for pid in range(1, max_profiles + 1):
        assert (await ok(rig, "SetChargingProfile", placed(pid)))["status"] == "Accepted", pid
    assert (await ok(rig, "SetChargingProfile", placed(max_profiles + 1)))["status"] == "Rejected"
