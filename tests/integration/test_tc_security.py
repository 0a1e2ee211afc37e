"""Security Whitepaper end to end (TC_073..TC_087): the agent process against the local back office.

Profile 1 (Basic over ws://) and profile 2 -> 3 (TLS with a CA made in the test, then a client certificate);
certificates, the security log, GetLog and signed firmware over OCPP. The in-process cases (every bad TLS
server, the fallback) are in tests/agent/test_security.py.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.agent.test_security import Pki, server_context, write_pair
from tests.integration.harness import CP_ID, Rig
from tests.integration.test_tc_firmware import ARCHIVE, http_root  # noqa: F401 - the fixture

KEY = "0123456789abcdef0123456789abcdef"
NEW_KEY = "fedcba9876543210fedcba98"


def security_events(rig: Rig) -> list[str]:
    db = rig.state_dir / "agent.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return [r[0] for r in conn.execute("SELECT event_type FROM security_log ORDER BY id")]
    except sqlite3.OperationalError:  # the agent has not created it yet
        return []


async def wait_event(rig: Rig, event: str, timeout: float = 15.0) -> None:
    try:
        await rig.office.wait_for(lambda: event in security_events(rig), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no {event}: {security_events(rig)}\n{rig.agent_log()[-3000:]}") from None


async def ok(rig: Rig, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = await rig.cs_call(action, payload)
    assert result["status"] == "result", result
    return result["payload"]  # type: ignore[no-any-return]


def configure(rig: Rig, profile: int, tmp_path: Path, extra: str = "") -> None:
    key_file = tmp_path / "authkey"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    text = rig.agent_config.read_text().replace(
        "security_profile = 0", f'security_profile = {profile}\nauthorization_key_file = "{key_file}"\n{extra}')
    rig.agent_config.write_text(text)


async def test_tc_073_079_080_085_basic_auth_certificates_log_and_signed_firmware(
        rig_factory: Any, tmp_path: Path, http_root: tuple[str, Path]) -> None:  # noqa: F811
    rig: Rig = await rig_factory(start=False)
    rig.office.passwords = {CP_ID: "not-the-right-password"}
    await rig.start_sim()
    configure(rig, 1, tmp_path)
    rig.start_agent()
    # TC_085 negative: the wrong password is refused (HTTP 401) and reported; the backoff keeps trying.
    await wait_event(rig, "FailedToAuthenticateAtCentralSystem")
    rig.office.passwords = {CP_ID: KEY}
    await rig.wait_call("BootNotification")
    startup = await rig.wait_call("SecurityEventNotification")
    assert startup["payload"]["type"] == "StartupOfTheDevice"

    # TC_073: a new password over OCPP, used from the next connection on.
    rig.office.passwords = {CP_ID: NEW_KEY}
    assert (await ok(rig, "ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_KEY}))["status"] \
        == "Accepted"
    await rig.wait_call("BootNotification", count=2, timeout=20)
    assert (rig.state_dir / "authorization_key").stat().st_mode & 0o777 == 0o600
    named = await ok(rig, "GetConfiguration", {"key": ["AuthorizationKey", "SecurityProfile"]})
    assert named["unknownKey"] == ["AuthorizationKey"]
    assert named["configurationKey"][0]["value"] == "1"
    assert (await ok(rig, "ChangeConfiguration", {"key": "SecurityProfile", "value": "0"}))["status"] == "Rejected"

    # TC_075 / TC_076: CA certificates.
    maker, cs_root, rogue = Pki("Manufacturer"), Pki("CS Root"), Pki("Rogue")
    for use, pki in (("ManufacturerRootCertificate", maker), ("CentralSystemRootCertificate", cs_root)):
        assert (await ok(rig, "InstallCertificate", {"certificateType": use, "certificate": pki.pem}))["status"] \
            == "Accepted"
    listed = await ok(rig, "GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"})
    assert listed["status"] == "Accepted" and len(listed["certificateHashData"]) == 1
    assert int(listed["certificateHashData"][0]["serialNumber"], 16) == maker.cert.serial_number
    extra = Pki("Extra")
    await ok(rig, "InstallCertificate", {"certificateType": "ManufacturerRootCertificate", "certificate": extra.pem})
    listed = await ok(rig, "GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"})
    victim = next(h for h in listed["certificateHashData"] if int(h["serialNumber"], 16) == extra.cert.serial_number)
    assert (await ok(rig, "DeleteCertificate", {"certificateHashData": victim}))["status"] == "Accepted"
    assert (await ok(rig, "DeleteCertificate", {"certificateHashData": victim}))["status"] == "NotFound"

    # TC_074 / TC_077: the key pair is made on the charger; the signed chain is checked before use.
    assert (await ok(rig, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}))["status"] \
        == "Accepted"
    csr = (await rig.wait_call("SignCertificate"))["payload"]["csr"]
    assert "PRIVATE" not in csr
    assert (await ok(rig, "CertificateSigned", {"certificateChain": rogue.sign_csr(csr)}))["status"] == "Rejected"
    await wait_event(rig, "InvalidChargePointCertificate")
    assert (await ok(rig, "CertificateSigned", {"certificateChain": cs_root.sign_csr(csr)}))["status"] == "Accepted"

    # TC_080 / TC_081: signed firmware; a signing certificate from an unknown root, then a bad signature.
    base, root = http_root
    (root / "fw.tar.gz").write_bytes(ARCHIVE)
    signing_key = ec.generate_private_key(ec.SECP256R1())
    signer, _ = maker.issue("Firmware Signer", public_key=signing_key.public_key(), sans=())
    rogue_signer, _ = rogue.issue("Firmware Signer", public_key=signing_key.public_key(), sans=())
    from cryptography.hazmat.primitives import serialization

    def request(cert: Any, data: bytes, request_id: int) -> dict[str, Any]:
        signature = base64.b64encode(signing_key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()
        return {"requestId": request_id, "retries": 0, "retryInterval": 1, "firmware": {
            "location": f"{base}/fw.tar.gz", "retrieveDateTime": "2020-01-01T00:00:00Z",
            "signingCertificate": cert.public_bytes(serialization.Encoding.PEM).decode(), "signature": signature}}

    assert (await ok(rig, "SignedUpdateFirmware", request(rogue_signer, ARCHIVE, 1)))["status"] == "InvalidCertificate"
    await wait_event(rig, "InvalidFirmwareSigningCertificate")
    assert (await ok(rig, "SignedUpdateFirmware", request(signer, ARCHIVE + b"x", 2)))["status"] == "Accepted"
    await rig.office.wait_for(lambda: any(m["payload"]["status"] == "InvalidSignature"
                                          for m in rig.calls("SignedFirmwareStatusNotification")), timeout=15)
    await wait_event(rig, "InvalidFirmwareSignature")
    # Request 2 may still wait for the answer to its last notification: then it is AcceptedCanceled.
    assert (await ok(rig, "SignedUpdateFirmware", request(signer, ARCHIVE, 3)))["status"] in (
        "Accepted", "AcceptedCanceled")
    await rig.office.wait_for(lambda: [m["payload"]["status"] for m in rig.calls("SignedFirmwareStatusNotification")
                                       if m["payload"].get("requestId") == 3][-1:] == ["InstallationFailed"],
                              timeout=15)
    statuses = [m["payload"]["status"] for m in rig.calls("SignedFirmwareStatusNotification")
                if m["payload"].get("requestId") == 3]
    # No installer is configured on this rig: verified, then refused by the installer step.
    assert statuses == ["Downloading", "Downloaded", "SignatureVerified", "InstallationFailed"]

    # TC_079: the security log, uploaded with GetLog.
    got = await ok(rig, "GetLog", {"logType": "SecurityLog", "requestId": 7, "log": {"remoteLocation": base}})
    assert got["status"] == "Accepted"
    await rig.office.wait_for(lambda: [m["payload"]["status"] for m in rig.calls("LogStatusNotification")]
                              == ["Uploading", "Uploaded"], timeout=15)
    uploaded = (root / got["filename"]).read_text()
    for event in ("FailedToAuthenticateAtCentralSystem", "StartupOfTheDevice", "ReconfigurationOfSecurityParameters",
                  "InvalidChargePointCertificate", "InvalidFirmwareSignature"):
        assert event in uploaded, event

    # The key never reaches a log: neither the agent's nor its OCPP frame log.
    frame_log = rig.state_dir / "ocpp-frames.log"
    # the frame log reaches its file within a second (agent/framelog.py): wait for the frames to be there
    frames = await rig.office.wait_for(
        lambda: frame_log.exists() and "GetLog" in frame_log.read_text() and frame_log.read_text(), timeout=10)
    assert "AuthorizationKey" in frames
    for text in (rig.agent_log(), frames):
        assert KEY not in text and NEW_KEY not in text


async def test_tc_078_083_086_087_tls_profile_2_then_client_certificate(rig_factory: Any, tmp_path: Path) -> None:
    pki = Pki("Back Office CA")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pki.pem)
    client_cert, client_key = pki.issue(CP_ID, sans=())
    cert_path, key_path = write_pair(tmp_path / "client", "cp", client_cert, client_key)
    rig: Rig = await rig_factory(start=False)
    rig.office.passwords = {CP_ID: KEY}
    await rig.office.set_ssl_context(server_context(tmp_path, Pki("Impostor")))  # TC_078: untrusted server
    await rig.start_sim()
    configure(rig, 2, tmp_path, f'ca_file = "{ca_file}"\nclient_cert_file = "{cert_path}"\n'
                                f'client_key_file = "{key_path}"\n')
    rig.start_agent()
    await wait_event(rig, "InvalidCentralSystemCertificate")
    assert rig.calls("BootNotification") == []
    # TC_086: the right server certificate (host name 127.0.0.1 in its SAN); Basic auth inside TLS.
    await rig.office.set_ssl_context(server_context(tmp_path, pki, client_ca=pki))
    await rig.wait_call("BootNotification", timeout=20)
    # TC_083 / TC_087: upgrade to the client certificate; it holds after the reconnect, and cannot be undone.
    assert (await ok(rig, "ChangeConfiguration", {"key": "SecurityProfile", "value": "3"}))["status"] == "Accepted"
    await rig.wait_call("BootNotification", count=2, timeout=20)
    got = await ok(rig, "GetConfiguration", {"key": ["SecurityProfile"]})
    assert got["configurationKey"][0]["value"] == "3"
    assert (await ok(rig, "ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}))["status"] == "Rejected"
    assert "connected with security profile 3" in rig.agent_log()
