"""OCPP 1.6 Security Whitepaper: profiles 1-3, the AuthorizationKey, certificates, security events and log.

The charge point's TLS key pair is generated here (EC P-256) and never leaves the state directory. CA
certificates installed over OCPP live next to it. A raised SecurityProfile or a new AuthorizationKey takes
effect on the next connection; if that connection cannot be made, the previous profile and key come back
(Security Whitepaper, "Upgrade security profile").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import InvalidMessage, InvalidStatus

from agent.clock import iso
from agent.config import AgentConfig
from agent.link import LinkSettings
from agent.ports import ChangeResult, GuardedConfig
from agent.security.events import (
    CRITICAL_EVENTS,
    TECH_INFO_MAX,
    V16_SECURITY_NAMES,
    CertificateUse,
    SecurityError,
    SecurityEventType,
    SecurityNames,
)
from agent.security.files import CERT_DIR, KEY_FILE, read_key_file, write_secret
from agent.services.ports import BundleWriter, Notify
from agent.services.transfer import redact, transfer_with_retries, upload
from agent.store import Store

if TYPE_CHECKING:
    from cryptography import x509

    from agent.link import Link
    from agent.security.certificates import CertificateStore

LOGGER = logging.getLogger(__name__)

FALLBACK_AFTER_FAILURES = 3  # connection attempts with a new profile/key before the old one comes back
RECONNECT_DELAY_S = 0.5  # lets the ChangeConfiguration answer reach the back office before the close
EVENT_REPEAT_S = 300.0  # the same connection failure is logged again at most this often (backoff storms)


# ---- TLS and connection failures ----------------------------------------------------------------------------


def client_ssl_context(*, ca_file: str | None, ca_data: str, client_cert: tuple[str, str] | None) -> ssl.SSLContext:
    """TLS 1.2 or newer, the server verified (host name included) against ca_file and installed roots."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file or ca_data:
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        if ca_data:
            ctx.load_verify_locations(cadata=ca_data)
    else:
        ctx.load_default_certs()
    if client_cert is not None:
        ctx.load_cert_chain(certfile=client_cert[0], keyfile=client_cert[1])
    return ctx


_TLS_VERSION_MARKS = ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_SSL_VERSION", "WRONG_VERSION_NUMBER",
                      "NO_PROTOCOLS_AVAILABLE", "VERSION_TOO_LOW", "VERSION_TOO_HIGH")
_CIPHER_MARKS = ("NO_SHARED_CIPHER", "NO_CIPHERS", "HANDSHAKE_FAILURE", "INSUFFICIENT_SECURITY")
_CLIENT_CERT_MARKS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "CERTIFICATE_UNKNOWN",
                      "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "ACCESS_DENIED", "UNSUPPORTED_CERTIFICATE")


def _causes(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify_failure(err: BaseException) -> tuple[SecurityEventType, str] | None:
    """The security event a failed connection attempt stands for, with its tech info; None for plain outages."""
    for cause in _causes(err):
        if isinstance(cause, InvalidStatus) and cause.response.status_code in (401, 403):
            return (SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM,
                    f"HTTP {cause.response.status_code} at the websocket handshake")
        if isinstance(cause, ssl.SSLCertVerificationError):
            return SecurityEventType.INVALID_CENTRAL_SYSTEM_CERTIFICATE, str(cause.verify_message or cause)
        if isinstance(cause, ssl.SSLError):
            text = f"{cause.reason or ''} {cause}".upper()
            if any(mark in text for mark in _TLS_VERSION_MARKS):
                return SecurityEventType.INVALID_TLS_VERSION, str(cause.reason or cause)
            if any(mark in text for mark in _CLIENT_CERT_MARKS):
                return (SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM,
                        f"the back office refused the client certificate: {cause.reason or cause}")
            if any(mark in text for mark in _CIPHER_MARKS):
                return SecurityEventType.INVALID_TLS_CIPHER_SUITE, str(cause.reason or cause)
    return None


# ---- the manager ----------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A profile or key change on trial: what to go back to if the new one cannot connect."""

    profile: int
    key: str | None  # None: the key file in the state directory did not exist
    failures: int = 0


class SecurityManager:
    """Security profile, AuthorizationKey, certificates and the security log of one charge point."""

    def __init__(self, config: AgentConfig, store: Store, keys: GuardedConfig, *, now: Callable[[], float] = time.time,
                 clock_trusted: Callable[[], bool] = lambda: False,
                 outbox_changed: Callable[[], None] = lambda: None, notify: Notify | None = None,
                 bundle: BundleWriter | None = None, log_lines: Callable[[], list[str]] = list,
                 protocol: str = "1.6", names: SecurityNames = V16_SECURITY_NAMES) -> None:
        self.config = config
        self.names = names
        self.protocol = protocol  # the OCPP version the queued SecurityEventNotifications are written in
        self.store = store
        self.keys = keys
        self._now = now
        self._clock_trusted = clock_trusted
        self._outbox_changed = outbox_changed
        self._notify = notify
        self._bundle = bundle
        self._log_lines = log_lines
        self.state_dir = Path(config.state.directory)
        self._certs: CertificateStore | None = None
        self.profile = keys.get_int(names.security_profile, config.backoffice.security_profile)
        self.link: Link | None = None
        self.log_status = "Idle"
        self.log_request_id: int | None = None  # of the current or last GetLog
        self._log_job: asyncio.Task[None] | None = None
        self._pending: _Pending | None = None
        self._last_failure: tuple[str, str, float] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        keys.listeners.append(self._on_key_changed)
        keys.change_guards.append(self.guard_change)
        keys.secret_setter = self.set_authorization_key

    @property
    def certs(self) -> CertificateStore:
        """The certificate store, loaded (with `cryptography`) on first use."""
        if self._certs is None:
            from agent.security.certificates import CertificateStore

            self._certs = CertificateStore(self.state_dir / CERT_DIR,
                                           self.keys.get_int(self.names.certificate_store_max_length, 20))
        return self._certs

    # ---- events -----------------------------------------------------------------------------------

    def event(self, kind: SecurityEventType, tech_info: str | None = None) -> None:
        """Record a security event; a critical one is also queued as SecurityEventNotification."""
        now, trusted = self._now(), self._clock_trusted()
        info = tech_info[:TECH_INFO_MAX] if tech_info else None
        self.store.security_log_append(kind.value, info, wall_time=now, clock_trusted=trusted)
        LOGGER.warning("security event %s%s", kind.value, f": {info}" if info else "")
        if kind in CRITICAL_EVENTS or kind.value in self.names.sent_events:
            payload: dict[str, Any] = {"type": self.names.event_type(kind), "timestamp": iso(now)}
            if info:
                payload["techInfo"] = info
            # the same payload in 1.6 (Security Whitepaper) and 2.0.1 (a few types renamed: SecurityNames);
            # the protocol tag decides who may send it
            self.store.enqueue("SecurityEventNotification", payload, wall_time=now, monotonic=time.monotonic(),
                               clock_trusted=trusted, protocol=self.protocol)
            self._outbox_changed()

    def startup(self) -> None:
        """At boot: StartupOfTheDevice."""
        self.event(SecurityEventType.STARTUP_OF_THE_DEVICE, f"security profile {self.profile}")

    def reset_requested(self, kind: str) -> None:
        """Reset (Soft/Hard) accepted: ResetOrReboot."""
        self.event(SecurityEventType.RESET_OR_REBOOT, f"{kind} reset requested by the back office")

    def clock_set(self, offset_s: float) -> None:
        """The clock was moved by the back office's time: SettingSystemTime."""
        self.event(SecurityEventType.SETTING_SYSTEM_TIME, f"clock moved by {offset_s:+.1f} s")

    def security_log_text(self, oldest: float | None = None, latest: float | None = None) -> str:
        """The local security log, oldest first, one event a line."""
        lines = []
        for row in reversed(self.store.security_log(limit=10_000)):
            if (oldest is not None and row.wall_time < oldest) or (latest is not None and row.wall_time > latest):
                continue
            trusted = "" if row.clock_trusted else " (clock not synchronised)"
            kind = dict(self.names.event_words).get(row.event_type, row.event_type)  # this version's word
            lines.append(f"{iso(row.wall_time)} {kind}{trusted} {row.tech_info or ''}".rstrip())
        return "\n".join(lines) + ("\n" if lines else "")

    # ---- credentials and profiles -------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        """Where an AuthorizationKey set over OCPP is kept."""
        return self.state_dir / KEY_FILE

    def authorization_key(self) -> str | None:
        """The Basic auth password: the one set over OCPP, else the configured file's."""
        if self.key_path.exists():
            return read_key_file(self.key_path)
        if self.config.backoffice.authorization_key_file:
            return read_key_file(Path(self.config.backoffice.authorization_key_file))
        return None

    def _has_key(self) -> bool:
        try:
            return self.authorization_key() is not None
        except SecurityError:
            return False

    def _client_cert(self) -> tuple[str, str] | None:
        installed = self.certs.client_certificate()
        if installed is not None:
            return str(installed[0]), str(installed[1])
        bo = self.config.backoffice
        if bo.client_cert_file and bo.client_key_file:
            return bo.client_cert_file, bo.client_key_file
        return None

    def guard_change(self, key: str, value: int | bool | str) -> str | None:
        """Refuse a SecurityProfile the charge point has no credentials for; None lets the change go on."""
        if key != self.names.security_profile or not isinstance(value, int) or value <= self.profile:
            return None
        if value in (1, 2) and not self._has_key():
            LOGGER.warning("SecurityProfile %d refused: no AuthorizationKey is set", value)
            return ChangeResult.REJECTED
        if value == 3 and self._client_cert() is None:
            LOGGER.warning("SecurityProfile 3 refused: no charge point certificate is installed")
            return ChangeResult.REJECTED
        return None

    def _begin_trial(self) -> None:
        if self._pending is None:
            old_key = read_key_file(self.key_path) if self.key_path.exists() else None
            self._pending = _Pending(self.profile, old_key)
        self._pending.failures = 0

    def set_authorization_key(self, key: str, value: str) -> str:
        """ChangeConfiguration AuthorizationKey: persist (0600) and use it from the next connection."""
        if key != self.names.authorization_key:
            return ChangeResult.REJECTED
        try:
            self._begin_trial()
            write_secret(self.key_path, value.encode() + b"\n")
        except (OSError, SecurityError) as err:
            LOGGER.error("the new AuthorizationKey could not be stored: %s", err)
            return ChangeResult.REJECTED
        self.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS, f"{self.names.authorization_key} changed")
        self._reconnect_soon()
        return ChangeResult.ACCEPTED

    def _on_key_changed(self, key: str) -> None:
        if key != self.names.security_profile:
            return
        new = self.keys.get_int(self.names.security_profile)
        if new == self.profile:
            return
        self._begin_trial()
        old, self.profile = self.profile, new
        self.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                   f"SecurityProfile {old} -> {new}")
        self._reconnect_soon()

    def _reconnect_soon(self) -> None:
        link = self.link
        if link is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is connected either
            loop = asyncio.get_running_loop()

            def drop() -> None:
                task = loop.create_task(link.drop(), name="security-reconnect")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            loop.call_later(RECONNECT_DELAY_S, drop)

    def _fall_back(self) -> None:
        pending, self._pending = self._pending, None
        assert pending is not None
        failed = self.profile
        self.profile = pending.profile  # first, so the key listener sees no change
        self.keys.set_local(self.names.security_profile, pending.profile)
        if pending.key is None:
            self.key_path.unlink(missing_ok=True)
        else:
            write_secret(self.key_path, pending.key.encode() + b"\n")
        LOGGER.error("cannot connect with the new security settings (profile %d); back to profile %d",
                     failed, pending.profile)
        self.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                   f"fallback from profile {failed} to {pending.profile} after {FALLBACK_AFTER_FAILURES} failures")

    # ---- link hooks -------------------------------------------------------------------------------

    def attach_link(self, link: Link) -> None:
        """The link whose connection is renewed after a change."""
        self.link = link

    def prepare(self, base: LinkSettings, profile: int | None = None) -> LinkSettings:
        """The settings of the next attempt for the current profile, or the one a 2.0.1 network profile names
        (credentials re-read each time)."""
        profile = self.profile if profile is None else profile
        parts = urlsplit(base.url)
        scheme = {1: "ws", 2: "wss", 3: "wss"}.get(profile, parts.scheme)
        url = urlunsplit((scheme, *parts[1:]))
        password = self.authorization_key() if profile in (1, 2) else None
        if profile in (1, 2) and password is None:
            raise SecurityError(f"security profile {profile} needs an AuthorizationKey")
        ctx = None
        if scheme == "wss":
            client = self._client_cert() if profile == 3 else None
            if profile == 3 and client is None:
                raise SecurityError("security profile 3 needs a charge point certificate")
            try:
                ctx = client_ssl_context(ca_file=self.config.backoffice.ca_file,
                                         ca_data=self.certs.roots_pem(CertificateUse.CENTRAL_SYSTEM_ROOT),
                                         client_cert=client)
            except (OSError, ValueError, ssl.SSLError) as err:
                raise SecurityError(f"TLS settings cannot be loaded: {err}") from err
        return dataclasses.replace(base, url=url, basic_auth_password=password, ssl_context=ctx)

    def adopt_profile(self, profile: int, why: str) -> None:
        """A connection succeeded with a higher profile (2.0.1 A05, a network profile): it is now the station's."""
        if profile <= self.profile:
            return
        old, self.profile = self.profile, profile  # first, so the key listener sees no change
        self.keys.set_local(self.names.security_profile, profile)
        self.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS, f"SecurityProfile {old} -> {profile} "
                   f"({why})")

    def connected(self) -> None:
        """The websocket handshake succeeded: a change on trial is now in force."""
        self._last_failure = None
        if self._pending is not None:
            LOGGER.info("connected with security profile %d; the change is in force", self.profile)
            self._pending = None

    def failed(self, err: BaseException) -> None:
        """A connection attempt failed: record its security event, fall back after repeated failures."""
        found = classify_failure(err)
        if found is None and self.profile == 3 and isinstance(err, InvalidMessage):
            # TLS 1.3 checks the client certificate after the handshake: a server that refuses it often
            # just closes (no alert reaches us), so the HTTP answer never comes.
            found = (SecurityEventType.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM,
                     "the back office closed the connection after TLS (client certificate refused?)")
        if found is not None:
            kind, info = found
            now = time.monotonic()
            last = self._last_failure
            if last is None or last[:2] != (kind.value, info) or now - last[2] > EVENT_REPEAT_S:
                self._last_failure = (kind.value, info, now)
                self.event(kind, info)
        if self._pending is not None:
            self._pending.failures += 1
            if self._pending.failures >= FALLBACK_AFTER_FAILURES:
                self._fall_back()

    # ---- GetLog ----------------------------------------------------------------------------------

    @property
    def log_upload_running(self) -> bool:
        """A GetLog upload is under way (a new GetLog cancels it: AcceptedCanceled)."""
        return self._log_job is not None and not self._log_job.done()

    async def _log_status(self, status: str, request_id: int) -> None:
        self.log_status = status
        if self._notify is not None:
            await self._notify("LogStatusNotification", {"status": status, "requestId": request_id})

    def start_get_log(self, log_type: str, request_id: int, location: str, retries: int,
                      retry_interval_s: float, oldest: float | None, latest: float | None) -> str:
        """Write the log file now (its name is the answer) and upload it in the background."""
        folder = self.state_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if log_type == "SecurityLog":
            path = folder / f"security-{self.config.charge_point.id}-{stamp}.log"
            path.write_text(self.security_log_text(oldest, latest))
        else:
            if self._bundle is None:
                raise OSError("no diagnostics archive can be written here")
            path = self._bundle(folder, self._log_lines(), start=oldest, stop=latest)
        if self._log_job is not None and not self._log_job.done():
            self._log_job.cancel()  # the new request replaces the running upload
        self.log_request_id = request_id
        task = asyncio.get_running_loop().create_task(
            self._upload_log(location, path, request_id, retries, retry_interval_s), name="get-log")
        self._log_job = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return path.name

    async def _upload_log(self, location: str, path: Path, request_id: int, retries: int,
                          retry_interval_s: float) -> None:
        await self._log_status("Uploading", request_id)
        target = await transfer_with_retries("log upload", lambda: upload(location, path), retries,
                                             retry_interval_s)
        if target is not None:
            LOGGER.info("log uploaded to %s", redact(target))
            await self._log_status("Uploaded", request_id)
        else:
            await self._log_status("UploadFailure", request_id)
        self.log_status = "Idle"
        with contextlib.suppress(OSError):
            for pattern in ("security-*.log", "diagnostics-*.tar.gz"):
                for old in sorted(path.parent.glob(pattern))[:-3]:
                    old.unlink()

    # ---- firmware ---------------------------------------------------------------------------------

    def check_signing_certificate(self, pem: str) -> x509.Certificate:
        """The firmware signing certificate, verified against the installed ManufacturerRootCertificates."""
        from agent.security.certificates import load_pem_chain, verify_chain

        try:
            chain = load_pem_chain(pem)
            verify_chain(chain, self.certs.installed(CertificateUse.MANUFACTURER_ROOT))
        except SecurityError as err:
            self.event(SecurityEventType.INVALID_FIRMWARE_SIGNING_CERTIFICATE, str(err))
            raise
        return chain[0]

    def check_firmware(self, path: Path, signing_certificate: x509.Certificate, signature_b64: str) -> None:
        """The signature over the downloaded file; InvalidFirmwareSignature when it does not match."""
        from agent.security.certificates import verify_firmware_signature

        try:
            verify_firmware_signature(path, signing_certificate, signature_b64)
        except (SecurityError, OSError) as err:
            self.event(SecurityEventType.INVALID_FIRMWARE_SIGNATURE, str(err))
            raise SecurityError(str(err)) from err

    # ---- charge point certificate -------------------------------------------------------------------

    def certificate_signing_request(self) -> str:
        """A new key pair's CSR for SignCertificate (CN = charge point id, O = CpoName)."""
        org = self.keys.get_str(self.names.organization_name) or None
        return self.certs.generate_csr(self.config.charge_point.id, org)

    def certificate_signed(self, chain_pem: str) -> str:
        """CertificateSigned: Accepted once the chain is valid for our key, else Rejected with the event."""
        from agent.security.certificates import load_pem_chain

        max_size = self.keys.get_int(self.names.certificate_chain_max_size, 10000)
        try:
            if len(chain_pem) > max_size:
                raise SecurityError(f"chain of {len(chain_pem)} bytes exceeds CertificateSignedMaxChainSize")
            roots = self.certs.installed(CertificateUse.CENTRAL_SYSTEM_ROOT)
            if self.config.backoffice.ca_file:
                with contextlib.suppress(OSError, SecurityError):
                    roots += load_pem_chain(Path(self.config.backoffice.ca_file).read_bytes())
            self.certs.accept_signed_chain(chain_pem, roots)
        except SecurityError as err:
            self.event(SecurityEventType.INVALID_CHARGE_POINT_CERTIFICATE, str(err))
            return "Rejected"
        except OSError as err:
            LOGGER.error("the charge point certificate could not be stored: %s", err)
            return "Rejected"
        return "Accepted"
