"""Tests of agent/security/: certificates, signatures, secrets, events, and the link against a TLS back office.

A CA is made in the test with `cryptography`; the back office serves real TLS on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import os
import ssl
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from agent.config import AgentConfig, parse_config
from agent.link import Link, LinkSettings
from agent.ocpp.v16.keys import OcppKeys
from agent.security.certificates import certificate_hash, load_pem_chain, verify_chain, verify_firmware_signature
from agent.security.events import CertificateUse, SecurityError
from agent.security.files import check_local_permissions
from agent.security.manager import SecurityManager
from agent.store import Store
from simulator.backoffice import BackOffice

CP = "CP-SEC-1"
KEY = "0123456789abcdef0123456789abcdef"
UTC = dt.UTC


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


class Pki:
    """A test CA: issues server, client and signing certificates and signs CSRs."""

    def __init__(self, name: str = "Test Root", *, rsa_key: bool = False) -> None:
        self.key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key \
            else ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(_now() - dt.timedelta(days=1)).not_valid_after(_now() + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, cn: str, *, public_key: Any = None, sans: tuple[str, ...] = ("localhost", "127.0.0.1"),
              expired: bool = False, key: Any = None) -> tuple[x509.Certificate, Any]:
        """A leaf certificate (and its new key unless public_key is given)."""
        import ipaddress

        if public_key is None:
            key = key or ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        start = _now() - dt.timedelta(days=10 if expired else 1)
        end = _now() - dt.timedelta(days=1) if expired else _now() + dt.timedelta(days=10)
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(self.cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def sign_csr(self, csr_pem: str) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        cert, _ = self.issue(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,  # type: ignore[arg-type]
                             public_key=csr.public_key(), sans=())
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def write_pair(folder: Path, name: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    """PEM files for a certificate and its key (key mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def server_context(folder: Path, pki: Pki, *, expired: bool = False, sans: tuple[str, ...] = ("localhost", "127.0.0.1"),
                   client_ca: Pki | None = None, tls11: bool = False) -> ssl.SSLContext:
    """A back office TLS context with a certificate issued by pki."""
    cert, key = pki.issue("backoffice", expired=expired, sans=sans)
    cert_path, key_path = write_pair(folder, f"server-{os.urandom(4).hex()}", cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    if tls11:
        # OpenSSL 3 still negotiates TLS 1.1 at security level 0: a server stuck below 1.2.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if client_ca is not None:
        ctx.load_verify_locations(cadata=client_ca.pem)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class Tls11Server:
    """A blocking TLS server stuck at TLS 1.1 (asyncio servers drop the alert, so the client sees only a reset)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        import socket
        import threading

        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.attempts = 0
        self.handshakes = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            try:
                self.ctx.wrap_socket(conn, server_side=True).close()
                self.handshakes += 1
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self) -> None:
        self.sock.close()


def make_config(tmp_path: Path, *, profile: int, url: str, ca_file: Path | None = None,
                client: tuple[Path, Path] | None = None) -> AgentConfig:
    key_file = tmp_path / "authkey"
    if not key_file.exists():
        key_file.write_text(KEY + "\n")
        key_file.chmod(0o600)
    lines = [f'[charge_point]\nid = "{CP}"\nvendor = "Acme"\nmodel = "AC22"\n', "[backoffice]", f'url = "{url}"',
             f"security_profile = {profile}", "reconnect_min_s = 0.05", "reconnect_max_s = 0.2"]
    if profile in (1, 2):
        lines.append(f'authorization_key_file = "{key_file}"')
    if ca_file:
        lines.append(f'ca_file = "{ca_file}"')
    if client:
        lines += [f'client_cert_file = "{client[0]}"', f'client_key_file = "{client[1]}"']
    lines += ["", "[state]", f'directory = "{tmp_path / "state"}"', "", "[[connectors]]", "id = 1", 'kind = "ac"',
              "max_current_a = 32.0", "[connectors.meter]", 'driver = "eastron_sdm630"',
              'url = "tcp://127.0.0.1:5020"', "device_id = 1", "[connectors.dc_controller]", 'driver = "modbus_dc"',
              'url = "tcp://127.0.0.1:5020"', "device_id = 2", "[connectors.contactor]",
              'driver = "gpio_contactor"', "pin = 22"]
    return parse_config("\n".join(lines) + "\n", "agent.toml")


class Rig:
    """A SecurityManager on a real store, its Link, and the back office in this loop."""

    def __init__(self, cfg: AgentConfig) -> None:
        Path(cfg.state.directory).mkdir(parents=True, exist_ok=True)
        self.store = Store(Path(cfg.state.directory) / "agent.db")
        self.keys = OcppKeys(cfg, self.store)
        self.security = SecurityManager(cfg, self.store, self.keys)
        self.link = Link(LinkSettings(url=cfg.backoffice.url, charge_point_id=CP, reconnect_min_s=0.05,
                                      reconnect_max_s=0.2, open_timeout_s=3.0),
                         self._session, hooks=self.security)
        self.security.attach_link(self.link)
        self.peer_certs: list[bool] = []
        self.task: asyncio.Task[None] | None = None

    async def _session(self, ws: Any) -> None:
        await ws.wait_closed()

    def events(self) -> list[str]:
        return [e.event_type for e in self.store.security_log(1000)]

    def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())

    async def wait(self, predicate: Any, timeout: float = 8.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timeout; events {self.events()}, link error {self.link.last_error}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.link.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.store.close()


@pytest.fixture
async def office() -> AsyncIterator[BackOffice]:
    bo = BackOffice(passwords={CP: KEY})
    yield bo
    await bo.stop()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


# ---- certificates ---------------------------------------------------------------------------------------


def test_chain_verification(pki: Pki) -> None:
    leaf, _ = pki.issue("leaf")
    verify_chain([leaf], [pki.cert])
    with pytest.raises(SecurityError, match="not an installed root"):
        verify_chain([leaf], [Pki("Other").cert])
    old, _ = pki.issue("old", expired=True)
    with pytest.raises(SecurityError, match="not valid now"):
        verify_chain([old], [pki.cert])
    with pytest.raises(SecurityError):
        load_pem_chain("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")


def test_certificate_hash_is_computed_over_the_issuer(pki: Pki) -> None:
    got = certificate_hash(pki.cert).to_ocpp()
    point = pki.key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
    assert got["issuerKeyHash"] == hashlib.sha256(point).hexdigest()
    assert got["issuerNameHash"] == hashlib.sha256(pki.cert.subject.public_bytes()).hexdigest()
    assert int(got["serialNumber"], 16) == pki.cert.serial_number


def test_tc_075_076_install_list_delete_ca_certificates(tmp_path: Path, pki: Pki) -> None:
    rig = Rig(make_config(tmp_path, profile=0, url="ws://127.0.0.1:1/ocpp"))
    certs = rig.security.certs
    assert certs.hashes([CertificateUse.MANUFACTURER_ROOT]) == []
    assert certs.install(CertificateUse.MANUFACTURER_ROOT, pki.pem) == "Accepted"
    other = Pki("CS Root")
    assert certs.install(CertificateUse.CENTRAL_SYSTEM_ROOT, other.pem) == "Accepted"
    leaf, _ = pki.issue("not-a-ca")
    assert certs.install(CertificateUse.CENTRAL_SYSTEM_ROOT,
                         leaf.public_bytes(serialization.Encoding.PEM).decode()) == "Rejected"
    assert certs.install(CertificateUse.CENTRAL_SYSTEM_ROOT, "garbage") == "Failed"
    [manufacturer] = certs.hashes([CertificateUse.MANUFACTURER_ROOT])
    assert manufacturer == certificate_hash(pki.cert)
    assert certs.delete({**manufacturer.to_ocpp(), "serialNumber": "1"}) == "NotFound"
    assert certs.delete(manufacturer.to_ocpp()) == "Accepted"
    assert certs.hashes([CertificateUse.MANUFACTURER_ROOT]) == []
    assert len(certs.hashes([CertificateUse.CENTRAL_SYSTEM_ROOT])) == 1
    rig.store.close()


def test_tc_074_077_certificate_signed_is_validated(tmp_path: Path, pki: Pki) -> None:
    rig = Rig(make_config(tmp_path, profile=0, url="ws://127.0.0.1:1/ocpp"))
    sec = rig.security
    assert sec.certificate_signed(pki.sign_csr(sec.certificate_signing_request())) == "Rejected"  # root unknown
    assert rig.events() == ["InvalidChargePointCertificate"]
    assert sec.certs.install(CertificateUse.CENTRAL_SYSTEM_ROOT, pki.pem) == "Accepted"
    csr = sec.certificate_signing_request()
    assert x509.load_pem_x509_csr(csr.encode()).subject.rfc4514_string() == f"CN={CP}"
    key_file = sec.certs.cp_dir / "pending-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    foreign, _ = pki.issue(CP, sans=())  # signed by the right CA, but for another key pair
    assert sec.certificate_signed(foreign.public_bytes(serialization.Encoding.PEM).decode()) == "Rejected"
    assert sec.certificate_signed(Pki("Rogue").sign_csr(csr)) == "Rejected"
    assert sec.certs.client_certificate() is None
    assert sec.certificate_signed(pki.sign_csr(csr)) == "Accepted"
    chain, key = sec.certs.client_certificate() or (None, None)
    assert chain is not None and key is not None and key.stat().st_mode & 0o777 == 0o600
    assert rig.events().count("InvalidChargePointCertificate") == 3
    assert "PRIVATE KEY" not in csr
    rig.store.close()


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_firmware_signature(tmp_path: Path, kind: str) -> None:
    signer = Pki("Signer", rsa_key=kind == "rsa")
    firmware = tmp_path / "fw.tar.gz"
    firmware.write_bytes(os.urandom(100_000))
    data = firmware.read_bytes()
    if kind == "rsa":
        signature = signer.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = signer.key.sign(data, ec.ECDSA(hashes.SHA256()))
    verify_firmware_signature(firmware, signer.cert, base64.b64encode(signature).decode())
    firmware.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SecurityError, match="does not match"):
        verify_firmware_signature(firmware, signer.cert, base64.b64encode(signature).decode())
    with pytest.raises(SecurityError, match="base64"):
        verify_firmware_signature(firmware, signer.cert, "not base64!")


# ---- secrets, permissions, events -------------------------------------------------------------------------


def test_a05_under_2_0_1_the_basic_auth_password_and_profile_are_the_security_ctrlr_variables(tmp_path: Path) -> None:
    """The security rules read the 2.0.1 device model by its own names: BasicAuthPassword (write-only) goes to
    the 0600 key file, the profile is SecurityCtrlr.SecurityProfile; nothing secret enters the config table."""
    from agent.ocpp.v201.device_model import DeviceModel
    from agent.security.events import V201_SECURITY_NAMES

    cfg = make_config(tmp_path, profile=1, url="ws://127.0.0.1:1/ocpp")
    Path(cfg.state.directory).mkdir(parents=True, exist_ok=True)
    store = Store(Path(cfg.state.directory) / "agent.db")
    model = DeviceModel(cfg, store)
    security = SecurityManager(cfg, store, model, protocol="2.0.1", names=V201_SECURITY_NAMES)
    assert security.profile == 1
    new = "fedcba9876543210fedcba98"
    item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
    (result,) = model.set_variables([{**item, "attributeValue": new}])
    assert result["attributeStatus"] == "Accepted"
    assert security.authorization_key() == new
    assert security.key_path.stat().st_mode & 0o777 == 0o600
    assert all(new not in v for v in store.config_all().values())
    (read,) = model.get_variables([item])
    assert read["attributeStatus"] != "Accepted" and "attributeValue" not in read  # write-only
    assert [e.event_type for e in store.security_log(10)] == ["ReconfigurationOfSecurityParameters"]
    store.close()


def test_tc_073_authorization_key_is_write_only_and_0600(tmp_path: Path) -> None:
    rig = Rig(make_config(tmp_path, profile=1, url="ws://127.0.0.1:1/ocpp"))
    new = "fedcba9876543210fedcba98"
    assert rig.keys.change("AuthorizationKey", "short") == "Rejected"
    assert rig.keys.change("AuthorizationKey", new) == "Accepted"
    assert rig.security.authorization_key() == new
    assert rig.security.key_path.stat().st_mode & 0o777 == 0o600
    known, unknown = rig.keys.entries(["AuthorizationKey"])
    assert known == [] and unknown == ["AuthorizationKey"]
    assert all(new not in v for v in rig.store.config_all().values())
    assert rig.events() == ["ReconfigurationOfSecurityParameters"]
    settings = rig.security.prepare(rig.link.base_settings)
    assert settings.basic_auth_password == new and settings.url.startswith("ws://")
    rig.store.close()


def test_tc_084_profile_cannot_be_lowered_and_needs_credentials(tmp_path: Path) -> None:
    rig = Rig(make_config(tmp_path, profile=2, url="wss://127.0.0.1:1/ocpp"))
    assert rig.keys.change("SecurityProfile", "1") == "Rejected"
    assert rig.keys.change("SecurityProfile", "0") == "Rejected"
    assert rig.keys.change("SecurityProfile", "3") == "Rejected"  # no client certificate on this charger
    assert rig.keys.change("SecurityProfile", "2") == "Accepted"
    assert rig.keys.get_int("SecurityProfile") == 2
    rig.store.close()


def test_critical_events_are_queued_others_only_logged(tmp_path: Path) -> None:
    from agent.security.events import SecurityEventType

    rig = Rig(make_config(tmp_path, profile=0, url="ws://127.0.0.1:1/ocpp"))
    rig.security.startup()
    rig.security.event(SecurityEventType.INVALID_TLS_VERSION, "x")
    queued = rig.store.pending()
    assert [(m.action, m.payload["type"]) for m in queued] == [("SecurityEventNotification", "StartupOfTheDevice")]
    assert rig.events() == ["InvalidTLSVersion", "StartupOfTheDevice"]
    assert "StartupOfTheDevice" in rig.security.security_log_text()
    rig.store.close()


def test_unsafe_permissions_refuse_the_start(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, profile=1, url="ws://127.0.0.1:1/ocpp")
    config_file = tmp_path / "agent.toml"
    config_file.write_text("")
    config_file.chmod(0o644)
    assert check_local_permissions(config_file, cfg) == []
    config_file.chmod(0o666)
    (tmp_path / "authkey").chmod(0o640)
    problems = check_local_permissions(config_file, cfg)
    assert len(problems) == 2
    assert "writable by every user" in problems[0] and "chmod o-w" in problems[0]
    assert "authkey" in problems[1] and "chmod 600" in problems[1]


# ---- the link against a TLS back office ------------------------------------------------------------------------


async def test_tc_085_wrong_basic_password_is_refused_and_reported(tmp_path: Path, office: BackOffice) -> None:
    await office.start()
    office.passwords = {CP: "another-password-000"}
    rig = Rig(make_config(tmp_path, profile=1, url=office.url()))
    rig.start()
    try:
        await rig.wait(lambda: "FailedToAuthenticateAtCentralSystem" in rig.events())
        assert not office.connected(CP)
        office.passwords = {CP: KEY}
        await rig.wait(lambda: office.connected(CP))
        # One event for the repeated same failure (the backoff retried several times meanwhile).
        assert rig.events().count("FailedToAuthenticateAtCentralSystem") == 1
    finally:
        await rig.close()


@pytest.mark.parametrize(("case", "event"), [
    ("wrong_ca", "InvalidCentralSystemCertificate"),
    ("expired", "InvalidCentralSystemCertificate"),
    ("wrong_host", "InvalidCentralSystemCertificate"),
    ("tls11", "InvalidTLSVersion"),
])
async def test_tc_078_086_bad_server_is_refused_with_its_event(tmp_path: Path, office: BackOffice, pki: Pki,
                                                               case: str, event: str) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pki.pem)
    server_pki = Pki("Impostor") if case == "wrong_ca" else pki
    await office.start(ssl_context=server_context(tmp_path, server_pki, expired=case == "expired",
                                                  sans=("other.example",) if case == "wrong_host"
                                                  else ("localhost", "127.0.0.1")))
    tls11 = Tls11Server(server_context(tmp_path, pki, tls11=True)) if case == "tls11" else None
    url = office.url() if tls11 is None else f"wss://127.0.0.1:{tls11.port}/ocpp"
    rig = Rig(make_config(tmp_path, profile=2, url=url, ca_file=ca_file))
    rig.start()
    try:
        await rig.wait(lambda: event in rig.events())
        await rig.wait(lambda: rig.link.last_error is not None)
        assert not office.connected(CP)
        if tls11 is not None:
            await rig.wait(lambda: tls11.attempts >= 2)  # refused, and tried again after the backoff
            assert tls11.handshakes == 0
            tls11.close()
            return
        # A good server on the same port: the backoff brings the agent in.
        await office.set_ssl_context(server_context(tmp_path, pki))
        await rig.wait(lambda: office.connected(CP))
    finally:
        await rig.close()


async def test_tc_083_087_profile_upgrade_to_client_certificate_with_fallback(
        tmp_path: Path, office: BackOffice, pki: Pki) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pki.pem)
    client_cert, client_key = pki.issue(CP, sans=())
    client = write_pair(tmp_path / "client", "cp", client_cert, client_key)
    # The back office trusts another client CA first: the upgrade to profile 3 cannot connect.
    await office.start(ssl_context=server_context(tmp_path, pki, client_ca=Pki("Other Clients")))
    rig = Rig(make_config(tmp_path, profile=2, url=office.url(), ca_file=ca_file, client=client))
    rig.start()
    try:
        await rig.wait(lambda: office.connected(CP))
        assert rig.keys.change("SecurityProfile", "3") == "Accepted"
        await rig.wait(lambda: rig.security.profile == 2 and "fallback" in
                       (rig.store.security_log(1)[0].tech_info or ""), timeout=15)
        assert rig.keys.get_int("SecurityProfile") == 2
        assert "FailedToAuthenticateAtCentralSystem" in rig.events()
        await rig.wait(lambda: office.connected(CP))
        # Now the back office trusts our client CA: the upgrade holds.
        await office.set_ssl_context(server_context(tmp_path, pki, client_ca=pki))
        await rig.wait(lambda: office.connected(CP))
        before = rig.link.connects
        assert rig.keys.change("SecurityProfile", "3") == "Accepted"
        # a connection made after the change with the profile-3 settings (client certificate, no Basic auth):
        # the reconnect forced by the back office's new TLS context may still be a profile-2 one before it
        await rig.wait(lambda: rig.link.connects > before and office.connected(CP) and rig.security._pending is None
                       and rig.link.settings.basic_auth_password is None, timeout=15)
        assert rig.keys.get_int("SecurityProfile") == 3
        assert rig.link.settings.ssl_context is not None
        assert rig.keys.change("SecurityProfile", "2") == "Rejected"
    finally:
        await rig.close()
