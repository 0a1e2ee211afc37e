"""The Security Whitepaper's vocabulary: event types, certificate uses, the error, and the recorder port.

Kept apart from the manager so a service can record an event or refuse a file without knowing who keeps
the security log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

TECH_INFO_MAX = 255  # SecurityEventNotification.techInfo maxLength


class SecurityEventType(enum.StrEnum):
    """Security Whitepaper edition 3, appendix 1."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM = "FailedToAuthenticateAtCentralSystem"
    CENTRAL_SYSTEM_FAILED_TO_AUTHENTICATE = "CentralSystemFailedToAuthenticate"
    SETTING_SYSTEM_TIME = "SettingSystemTime"
    STARTUP_OF_THE_DEVICE = "StartupOfTheDevice"
    RESET_OR_REBOOT = "ResetOrReboot"
    SECURITY_LOG_WAS_CLEARED = "SecurityLogWasCleared"
    RECONFIGURATION_OF_SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
    MEMORY_EXHAUSTION = "MemoryExhaustion"
    INVALID_MESSAGES = "InvalidMessages"
    ATTEMPTED_REPLAY_ATTACKS = "AttemptedReplayAttacks"
    TAMPER_DETECTION_ACTIVATED = "TamperDetectionActivated"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"
    INVALID_CENTRAL_SYSTEM_CERTIFICATE = "InvalidCentralSystemCertificate"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"
    INVALID_TLS_VERSION = "InvalidTLSVersion"
    INVALID_TLS_CIPHER_SUITE = "InvalidTLSCipherSuite"


CRITICAL_EVENTS = frozenset({
    SecurityEventType.FIRMWARE_UPDATED, SecurityEventType.SETTING_SYSTEM_TIME,
    SecurityEventType.STARTUP_OF_THE_DEVICE, SecurityEventType.RESET_OR_REBOOT,
    SecurityEventType.SECURITY_LOG_WAS_CLEARED, SecurityEventType.MEMORY_EXHAUSTION,
    SecurityEventType.TAMPER_DETECTION_ACTIVATED,
})


class CertificateUse(enum.StrEnum):
    """CA certificates the back office may install (1.6 CertificateUseEnumType; 2.0.1 adds the ISO 15118
    roots, kept and reported, and calls the first one CSMSRootCertificate)."""

    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"
    V2G_ROOT = "V2GRootCertificate"
    MO_ROOT = "MORootCertificate"


class SecurityError(Exception):
    """A certificate, signature or credential is not acceptable; the message says why."""


class SecurityEvents(Protocol):
    """Records a security event (the security log, and the back office for a critical one)."""

    def event(self, kind: SecurityEventType, tech_info: str | None = None) -> None: ...


class FirmwareSecurity(SecurityEvents, Protocol):
    """What the firmware service asks of security: record events, check a signed file's signature."""

    def check_firmware(self, path: Path, signing_certificate: Any, signature_b64: str) -> None: ...


@dataclass(frozen=True)
class SecurityNames:
    """What the active protocol version calls the settings the security rules read and write (1.6 keys by
    default; 2.0.1 names SecurityCtrlr variables)."""

    security_profile: str = "SecurityProfile"
    authorization_key: str = "AuthorizationKey"
    organization_name: str = "CpoName"
    certificate_store_max_length: str = "CertificateStoreMaxLength"
    certificate_chain_max_size: str = "CertificateSignedMaxChainSize"
    # (1.6 event type, this version's word) where the words differ
    event_words: tuple[tuple[str, str], ...] = ()
    # events sent to the back office besides the critical ones (2.0.1 L01.FR.02/03 ask for the firmware ones)
    sent_events: frozenset[str] = frozenset()

    def event_type(self, kind: SecurityEventType) -> str:
        """The event's type in this version's words."""
        return dict(self.event_words).get(kind.value, kind.value)


V16_SECURITY_NAMES = SecurityNames()
V201_SECURITY_NAMES = SecurityNames(
    security_profile="SecurityCtrlr.SecurityProfile",
    authorization_key="SecurityCtrlr.BasicAuthPassword",
    organization_name="SecurityCtrlr.OrganizationName",
    # 2.0.1 has no variable for these two bounds: the defaults apply
    certificate_store_max_length="",
    certificate_chain_max_size="",
    event_words=(
        ("FailedToAuthenticateAtCentralSystem", "FailedToAuthenticateAtCsms"),
        ("CentralSystemFailedToAuthenticate", "CsmsFailedToAuthenticate"),
        ("InvalidCentralSystemCertificate", "InvalidCsmsCertificate"),
        ("InvalidChargePointCertificate", "InvalidChargingStationCertificate"),
    ),
    sent_events=frozenset({SecurityEventType.INVALID_FIRMWARE_SIGNATURE.value,
                           SecurityEventType.INVALID_FIRMWARE_SIGNING_CERTIFICATE.value}),
)
