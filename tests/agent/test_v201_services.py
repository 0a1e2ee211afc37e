"""OCPP 2.0.1 L01/L02 UpdateFirmware and N01 GetLog on a real agent and store, with the version-neutral firmware
service and security manager behind them; every answer and every notification is checked against the official
2.0.1 schemas, transfers go to a local HTTP server."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.config.schema import FirmwareConfig
from agent.security.events import SecurityEventType
from agent.services.firmware import FirmwareManager
from tests.agent.test_security import Pki
from tests.agent.test_services import Ports
from tests.agent.test_v201_handlers import Rig, schema
from tests.integration.test_tc_firmware import Files, firmware_archive


class Notified:
    """The agent's link session as the services see it: what they notify, checked against the 2.0.1 schemas."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def notify(self, action: str, payload: dict[str, Any]) -> None:
        jsonschema.validate(payload, schema(f"{action}Request"))
        self.sent.append((action, payload))

    def statuses(self, action: str) -> list[str]:
        return [p["status"] for a, p in self.sent if a == action]

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None  # status_changed, outbox_changed...: not what these tests look at


class ServiceRig(Rig):
    """The handlers' rig with a recording link session and an installer that copies the file it gets."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.notified = Notified()
        self.agent.link_session = self.notified  # type: ignore[assignment]
        self.installed = tmp_path / "installed"
        self.installed.mkdir()
        self.agent.firmware.config = FirmwareConfig(installer=f"cp {{file}} {self.installed}/")

    def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.02)

        self.loop.run_until_complete(asyncio.wait_for(poll(), timeout))

    def queued_events(self) -> list[dict[str, Any]]:
        """SecurityEventNotifications in the outbox (schema-checked)."""
        found = [m.payload for m in self.store.pending(limit=100) if m.action == "SecurityEventNotification"]
        for payload in found:
            jsonschema.validate(payload, schema("SecurityEventNotificationRequest"))
        return found

    def answer_last_call(self, payload: dict[str, Any] | None = None) -> None:
        """The CSMS answers the agent's last CALL."""
        last = [json.loads(m) for m in self.wire.sent if json.loads(m)[0] == 2][-1]
        self.loop.run_until_complete(self.conn.cp.route_message(json.dumps([3, last[1], payload or {}])))

    def sent_calls(self, action: str) -> list[dict[str, Any]]:
        """CALLs the agent put on the wire (triggered messages), schema-checked."""
        frames = [json.loads(m) for m in self.wire.sent]
        payloads = [f[3] for f in frames if f[0] == 2 and f[2] == action]
        for payload in payloads:
            jsonschema.validate(payload, schema(f"{action}Request"))
        return payloads


@pytest.fixture
def srig(tmp_path: Path) -> Iterator[ServiceRig]:
    made = ServiceRig(tmp_path)
    yield made
    made.close()


@pytest.fixture
def www(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: Files(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def signing_pair(srig: ServiceRig, installed: bool = True) -> tuple[Pki, str, Any]:
    """A manufacturer root (installed over InstallCertificate unless told not) and a signing certificate of it."""
    root = Pki("Manufacturer Root")
    if installed:
        assert srig.call("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                "certificate": root.pem})["status"] == "Accepted"
    cert, key = root.issue("Firmware Signer", sans=())
    return root, cert.public_bytes(serialization.Encoding.PEM).decode(), key


def sign(key: Any, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def iso_in(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


# ---- L01 secure firmware update ---------------------------------------------------------------------------------


def test_l01_signed_update_runs_to_installed_with_the_request_id_on_every_status(
        srig: ServiceRig, www: tuple[str, Path]) -> None:
    base, root = www
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    _, cert_pem, key = signing_pair(srig)
    answer = srig.call("UpdateFirmware", {"requestId": 41, "retries": 0, "firmware": {
        "location": f"{base}/fw.tar.gz", "retrieveDateTime": iso_in(-60), "signingCertificate": cert_pem,
        "signature": sign(key, firmware_archive())}})
    assert answer["status"] == "Accepted"
    srig.wait(lambda: "Installed" in srig.notified.statuses("FirmwareStatusNotification"))
    assert srig.notified.sent == [("FirmwareStatusNotification", {"status": s, "requestId": 41}) for s in
                                  ("Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed")]
    assert (srig.installed / "fw.tar.gz").read_bytes() == firmware_archive()
    srig.wait(lambda: any(e["type"] == "FirmwareUpdated" for e in srig.queued_events()))


def test_l01_a_signing_certificate_of_no_installed_root_is_an_invalid_certificate(srig: ServiceRig) -> None:
    _, cert_pem, key = signing_pair(srig, installed=False)
    answer = srig.call("UpdateFirmware", {"requestId": 2, "firmware": {
        "location": "http://127.0.0.1:9/fw.tar.gz", "retrieveDateTime": iso_in(0), "signingCertificate": cert_pem,
        "signature": sign(key, b"x")}})
    assert answer["status"] == "InvalidCertificate"
    assert srig.notified.sent == []  # nothing was started
    # L01.FR.02: the event goes to the CSMS (in 1.6 it is only logged: not a critical event there)
    assert [e["type"] for e in srig.queued_events()] == ["InvalidFirmwareSigningCertificate"]


def test_l01_a_wrong_signature_is_invalid_signature_and_never_installed(srig: ServiceRig,
                                                                       www: tuple[str, Path]) -> None:
    base, root = www
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    _, cert_pem, key = signing_pair(srig)
    assert srig.call("UpdateFirmware", {"requestId": 3, "firmware": {
        "location": f"{base}/fw.tar.gz", "retrieveDateTime": iso_in(0), "signingCertificate": cert_pem,
        "signature": sign(key, b"another file")}})["status"] == "Accepted"
    srig.wait(lambda: "InvalidSignature" in srig.notified.statuses("FirmwareStatusNotification"))
    assert srig.notified.statuses("FirmwareStatusNotification") == ["Downloading", "Downloaded", "InvalidSignature"]
    assert not any(srig.installed.iterdir())
    assert [e["type"] for e in srig.queued_events()] == ["InvalidFirmwareSignature"]


def test_l01_a_later_retrieve_time_is_download_scheduled_and_a_new_request_cancels_it(
        srig: ServiceRig, www: tuple[str, Path]) -> None:
    base, root = www
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    first = srig.call("UpdateFirmware", {"requestId": 7, "firmware": {"location": f"{base}/fw.tar.gz",
                                                                      "retrieveDateTime": iso_in(3600)}})
    assert first["status"] == "Accepted"
    srig.wait(lambda: bool(srig.notified.sent))
    assert srig.notified.sent == [("FirmwareStatusNotification", {"status": "DownloadScheduled", "requestId": 7})]
    second = srig.call("UpdateFirmware", {"requestId": 8, "firmware": {"location": f"{base}/fw.tar.gz",
                                                                       "retrieveDateTime": iso_in(-1)}})
    assert second["status"] == "AcceptedCanceled"  # L01.FR.24
    srig.wait(lambda: "Installed" in srig.notified.statuses("FirmwareStatusNotification"))
    assert [p.get("requestId") for _, p in srig.notified.sent[1:]] == [8, 8, 8, 8]


def test_l02_unsigned_firmware_is_accepted_below_profile_3_only(srig: ServiceRig) -> None:
    request = {"requestId": 5, "firmware": {"location": "http://127.0.0.1:9/fw.tar.gz", "retrieveDateTime": iso_in(60)}}
    assert srig.call("UpdateFirmware", request)["status"] == "Accepted"
    srig.agent.security_manager().profile = 3
    answer = srig.call("UpdateFirmware", request)
    assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "SignatureRequired"


def test_l01_refusals_without_installer_or_with_a_location_the_transfers_cannot_reach(srig: ServiceRig) -> None:
    bad = srig.call("UpdateFirmware", {"requestId": 1, "firmware": {"location": "file:///etc/shadow",
                                                                    "retrieveDateTime": iso_in(0)}})
    assert bad["status"] == "Rejected" and bad["statusInfo"]["reasonCode"] == "BadLocation"
    srig.agent.firmware.config = FirmwareConfig(installer="")
    none = srig.call("UpdateFirmware", {"requestId": 1, "firmware": {"location": "http://h/fw.tar.gz",
                                                                     "retrieveDateTime": iso_in(0)}})
    assert none["status"] == "Rejected" and none["statusInfo"]["reasonCode"] == "NoInstaller"
    assert srig.notified.sent == []


def v201_service(tmp_path: Path, ports: Ports, transactions: list[bool]) -> FirmwareManager:
    return FirmwareManager(FirmwareConfig(installer="true {file}"), tmp_path, now=lambda: 0.0, notify=ports.notify,
                           transactions_open=lambda: transactions[0], settle=ports.settle,
                           request_exit=ports.request_exit, security=ports, write_bundle=ports.write_bundle,
                           protocol="2.0.1")


async def test_l01_install_scheduled_while_a_transaction_runs(tmp_path: Path, www: tuple[str, Path]) -> None:
    base, root = www
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    ports, transactions = Ports(), [True]
    service = v201_service(tmp_path, ports, transactions)
    service.start_update(f"{base}/fw.tar.gz", 0.0, 0, 1.0, request_id=9)
    for _ in range(200):
        if "InstallScheduled" in [p["status"] for _, p in ports.sent]:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert [p["status"] for _, p in ports.sent] == ["Downloading", "Downloaded", "InstallScheduled"]
    transactions[0] = False  # the session ended
    for _ in range(200):
        if ports.exits:
            break
        await asyncio.sleep(0.05)
    assert [p["status"] for _, p in ports.sent][3:] == ["Installing", "Installed"]
    for action, payload in ports.sent:
        assert action == "FirmwareStatusNotification" and payload["requestId"] == 9
        jsonschema.validate(payload, schema("FirmwareStatusNotificationRequest"))
    assert ports.events == [(SecurityEventType.FIRMWARE_UPDATED, "installed fw.tar.gz")]


async def test_l01_a_damaged_file_is_install_verification_failed(tmp_path: Path, www: tuple[str, Path]) -> None:
    base, root = www
    (root / "fw.tar.gz").write_bytes(firmware_archive()[:40])
    ports = Ports()
    service = v201_service(tmp_path, ports, [False])
    await service.update(f"{base}/fw.tar.gz", 0.0, 0, 1.0)
    assert [p["status"] for _, p in ports.sent] == ["Downloading", "Downloaded", "InstallVerificationFailed"]


# ---- N01 logs --------------------------------------------------------------------------------------------------


def test_n01_security_log_is_uploaded_with_log_status_notifications_carrying_the_request_id(
        srig: ServiceRig, www: tuple[str, Path]) -> None:
    base, root = www
    (root / "logs").mkdir()
    srig.agent.security_manager().event(SecurityEventType.INVALID_CHARGE_POINT_CERTIFICATE, "test")
    answer = srig.call("GetLog", {"logType": "SecurityLog", "requestId": 12, "log": {
        "remoteLocation": f"{base}/logs", "oldestTimestamp": iso_in(-3600)}})
    assert answer["status"] == "Accepted" and answer["filename"].startswith("security-")
    srig.wait(lambda: "Uploaded" in srig.notified.statuses("LogStatusNotification"))
    assert srig.notified.sent == [("LogStatusNotification", {"status": "Uploading", "requestId": 12}),
                                  ("LogStatusNotification", {"status": "Uploaded", "requestId": 12})]
    text = (root / "logs" / answer["filename"]).read_text()
    assert "InvalidChargingStationCertificate" in text  # 2.0.1's word for the event


def test_n01_diagnostics_log_upload_failure_and_a_new_request_cancels_the_running_one(srig: ServiceRig) -> None:
    request = {"logType": "DiagnosticsLog", "requestId": 20, "retries": 5, "retryInterval": 3600,
               "log": {"remoteLocation": "http://127.0.0.1:9/up"}}
    assert srig.call("GetLog", request)["status"] == "Accepted"
    srig.wait(lambda: bool(srig.notified.sent))
    replacing = srig.call("GetLog", {**request, "requestId": 21, "retries": 0})
    assert replacing["status"] == "AcceptedCanceled"
    srig.wait(lambda: "UploadFailure" in srig.notified.statuses("LogStatusNotification"))
    assert srig.notified.sent == [("LogStatusNotification", {"status": "Uploading", "requestId": 20}),
                                  ("LogStatusNotification", {"status": "Uploading", "requestId": 21}),
                                  ("LogStatusNotification", {"status": "UploadFailure", "requestId": 21})]
    bad = srig.call("GetLog", {**request, "log": {"remoteLocation": "gopher://h/x"}})
    assert bad["status"] == "Rejected"


def test_f06_triggered_firmware_and_log_status_are_idle_without_a_request_id(srig: ServiceRig) -> None:
    for message in ("FirmwareStatusNotification", "LogStatusNotification"):
        assert srig.call("TriggerMessage", {"requestedMessage": message})["status"] == "Accepted"
        srig.wait(lambda m=message: bool(srig.sent_calls(m)))  # type: ignore[misc]
        assert srig.sent_calls(message) == [{"status": "Idle"}]
        srig.answer_last_call()  # one call in flight (OCPP-J): the next waits for this answer
