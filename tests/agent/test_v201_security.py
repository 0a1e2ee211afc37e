"""OCPP 2.0.1 M03-M06 certificates, A02-A05 security, B09-B10 network profiles on a real agent and store; every
answer and every message the agent sends is checked against the official 2.0.1 schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from agent.link import LinkSettings
from agent.ocpp.v201.security import NetworkProfiles, stored_profile
from agent.security.events import CertificateUse, SecurityEventType
from tests.agent.test_security import Pki
from tests.agent.test_v201_services import ServiceRig

PASSWORD = "0123456789abcdef0123"  # BasicAuthPassword: 16 to 40 characters


@pytest.fixture
def srig(tmp_path: Path) -> Iterator[ServiceRig]:
    made = ServiceRig(tmp_path)
    yield made
    made.close()


def install(srig: ServiceRig, kind: str, pem: str) -> str:
    return str(srig.call("InstallCertificate", {"certificateType": kind, "certificate": pem})["status"])


# ---- M03-M05 CA certificates ----------------------------------------------------------------------------------


def test_m05_m03_each_root_type_is_installed_and_listed_as_a_hash_chain(srig: ServiceRig) -> None:
    roots = {kind: Pki(kind) for kind in ("CSMSRootCertificate", "ManufacturerRootCertificate",
                                         "V2GRootCertificate", "MORootCertificate")}
    for kind, pki in roots.items():
        assert install(srig, kind, pki.pem) == "Accepted"
    listed = srig.call("GetInstalledCertificateIds", {})
    assert listed["status"] == "Accepted"
    assert sorted(c["certificateType"] for c in listed["certificateHashDataChain"]) == sorted(roots)
    serials = {c["certificateType"]: int(c["certificateHashData"]["serialNumber"], 16)
               for c in listed["certificateHashDataChain"]}
    assert serials == {kind: pki.cert.serial_number for kind, pki in roots.items()}
    # the CSMS root is what the link verifies the back office's TLS certificate with
    assert roots["CSMSRootCertificate"].pem in srig.agent.security_manager().certs.roots_pem(
        CertificateUse.CENTRAL_SYSTEM_ROOT)
    only = srig.call("GetInstalledCertificateIds", {"certificateType": ["MORootCertificate"]})
    assert [c["certificateType"] for c in only["certificateHashDataChain"]] == ["MORootCertificate"]
    assert srig.call("GetInstalledCertificateIds", {"certificateType": ["V2GCertificateChain"]})["status"] == "NotFound"
    entries = srig.device_model.get_variables([{"component": {"name": "SecurityCtrlr"},
                                                "variable": {"name": "CertificateEntries"}}])
    assert entries[0]["attributeValue"] == "4"


def test_m05_a_leaf_is_rejected_and_garbage_failed(srig: ServiceRig) -> None:
    leaf, _ = Pki("Root").issue("not a CA", sans=())
    from cryptography.hazmat.primitives import serialization

    assert install(srig, "CSMSRootCertificate", leaf.public_bytes(serialization.Encoding.PEM).decode()) == "Rejected"
    assert install(srig, "CSMSRootCertificate", "-----BEGIN CERTIFICATE-----\nxx\n") == "Failed"
    assert srig.call("GetInstalledCertificateIds", {})["status"] == "NotFound"


def test_m04_delete_certificate_by_its_hash_data(srig: ServiceRig) -> None:
    assert install(srig, "V2GRootCertificate", Pki("V2G").pem) == "Accepted"
    hash_data = srig.call("GetInstalledCertificateIds", {})["certificateHashDataChain"][0]["certificateHashData"]
    assert srig.call("DeleteCertificate", {"certificateHashData": hash_data})["status"] == "Accepted"
    assert srig.call("DeleteCertificate", {"certificateHashData": hash_data})["status"] == "NotFound"
    assert srig.call("GetInstalledCertificateIds", {})["status"] == "NotFound"


# ---- A02, A03: the charging station certificate ---------------------------------------------------------------


def test_a02_triggered_sign_certificate_then_certificate_signed_installs_the_chain(srig: ServiceRig) -> None:
    csms = Pki("CSMS Root")
    assert install(srig, "CSMSRootCertificate", csms.pem) == "Accepted"
    trigger = srig.call("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    assert trigger["status"] == "Accepted"
    srig.wait(lambda: bool(srig.sent_calls("SignCertificate")))
    request = srig.sent_calls("SignCertificate")[0]
    assert request["certificateType"] == "ChargingStationCertificate" and "CERTIFICATE REQUEST" in request["csr"]
    srig.answer_last_call({"status": "Accepted"})
    assert srig.call("CertificateSigned", {"certificateChain": csms.sign_csr(request["csr"]),
                                           "certificateType": "V2GCertificate"})["status"] == "Rejected"
    assert srig.call("CertificateSigned", {"certificateChain": csms.sign_csr(request["csr"]),
                                           "certificateType": "ChargingStationCertificate"})["status"] == "Accepted"
    assert srig.agent.security_manager().certs.client_certificate() is not None


def test_a03_a_chain_of_an_unknown_root_is_rejected_with_the_2_0_1_event_word(srig: ServiceRig) -> None:
    srig.agent.security_manager().certificate_signing_request()
    other = Pki("Someone else")
    csr = srig.agent.security_manager().certificate_signing_request()
    assert srig.call("CertificateSigned", {"certificateChain": other.sign_csr(csr)})["status"] == "Rejected"
    log = srig.agent.security_manager().security_log_text()
    assert "InvalidChargingStationCertificate" in log and "InvalidChargePointCertificate" not in log


def test_a04_critical_security_events_are_queued_in_2_0_1(srig: ServiceRig) -> None:
    security = srig.agent.security_manager()
    security.startup()
    security.event(SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM, "HTTP 401")  # logged, not sent
    events = srig.queued_events()
    assert [e["type"] for e in events] == ["StartupOfTheDevice"]
    assert {m.protocol for m in srig.store.pending(limit=10)} == {"2.0.1"}
    assert "FailedToAuthenticateAtCsms" in security.security_log_text()


# ---- B09, B10, A05: network profiles ---------------------------------------------------------------------------


def profile(url: str = "wss://csms.example/ocpp", security: int = 2, **extra: Any) -> dict[str, Any]:
    return {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url, "messageTimeout": 30,
            "securityProfile": security, "ocppInterface": "Wired0", **extra}


def set_password(srig: ServiceRig) -> None:
    result = srig.device_model.set_variables([{"component": {"name": "SecurityCtrlr"},
                                               "variable": {"name": "BasicAuthPassword"},
                                               "attributeValue": PASSWORD}])
    assert result[0]["attributeStatus"] == "Accepted"


@pytest.mark.parametrize(("slot", "data", "reason"), [
    (0, profile(), "BadSlot"),
    (5, profile(), "BadSlot"),
    (1, {**profile(), "ocppVersion": "OCPP16"}, "UnsupportedVersion"),
    (1, profile(apn={"apn": "internet", "apnAuthentication": "NONE"}), "UnsupportedNetwork"),
    (1, profile(url="ws://csms.example/ocpp"), "BadUrl"),
    (1, profile(security=3), "NoCredentials"),  # no charging station certificate installed
])
def test_b09_set_network_profile_refusals(srig: ServiceRig, slot: int, data: dict[str, Any], reason: str) -> None:
    set_password(srig)
    answer = srig.call("SetNetworkProfile", {"configurationSlot": slot, "connectionData": data})
    assert answer == {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
    assert stored_profile(srig.store, slot) is None


def test_b09_a05_no_profile_below_the_one_in_force_and_none_without_credentials(srig: ServiceRig) -> None:
    no_key = srig.call("SetNetworkProfile", {"configurationSlot": 1, "connectionData": profile()})
    assert no_key["statusInfo"]["reasonCode"] == "NoCredentials"
    srig.agent.security_manager().profile = 2
    lower = srig.call("SetNetworkProfile", {"configurationSlot": 1,
                                            "connectionData": profile("ws://csms.example/ocpp", 1)})
    assert lower["statusInfo"]["reasonCode"] == "Downgrade"


def test_b09_b10_stored_profile_is_tried_by_priority_then_falls_back_and_a05_adopts_its_profile(
        srig: ServiceRig) -> None:
    set_password(srig)
    security = srig.agent.security_manager()
    security.connected()  # the new password was proven on the connection in use (no rollback of it)
    hooks = NetworkProfiles(security, srig.device_model, srig.store)
    priority = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"},
                 "attributeValue": "1,0"}]
    assert srig.device_model.set_variables(priority)[0]["attributeStatus"] == "Rejected"  # slot 1 is empty
    assert srig.call("SetNetworkProfile", {"configurationSlot": 1, "connectionData": profile()})["status"] == "Accepted"
    assert stored_profile(srig.store, 1) == profile()
    assert srig.device_model.set_variables(priority)[0]["attributeStatus"] == "RebootRequired"
    attempts = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkProfileConnectionAttempts"},
                 "attributeValue": "2"}]
    assert srig.device_model.set_variables(attempts)[0]["attributeStatus"] == "Accepted"

    base = LinkSettings(url="ws://127.0.0.1:9/ocpp", charge_point_id="CP-WD")
    first = hooks.prepare(base)
    assert first.url == "wss://csms.example/ocpp" and first.basic_auth_password == PASSWORD
    refused = InvalidStatus(Response(503, "down", None))  # type: ignore[arg-type]
    hooks.failed(refused)
    assert hooks.prepare(base).url == "wss://csms.example/ocpp"  # NetworkProfileConnectionAttempts is 2
    hooks.failed(refused)
    fallback = hooks.prepare(base)  # B10: the next slot in priority, the config file's
    assert fallback.url == "ws://127.0.0.1:9/ocpp" and hooks.slot == 0 and security.profile == 0
    for _ in range(2):
        hooks.failed(refused)
    assert hooks.prepare(base).url == "wss://csms.example/ocpp"  # round again
    hooks.connected()  # A05: the connection with profile 2 succeeded: it is the station's now
    assert security.profile == 2 and srig.device_model.get_int("SecurityCtrlr.SecurityProfile") == 2
    assert "SecurityProfile 0 -> 2 (network profile slot 1)" in security.security_log_text()
    # slot 0 (the file's URL) stays a fallback, but never below the profile in force: wss with the password
    for _ in range(2):
        hooks.failed(refused)
    again = hooks.prepare(base)
    assert hooks.slot == 0 and again.url == "wss://127.0.0.1:9/ocpp" and again.ssl_context is not None
