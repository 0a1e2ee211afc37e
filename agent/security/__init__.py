"""OCPP Security Whitepaper: the vocabulary (`events`), the state directory's secret files (`files`), the manager
of profiles, keys and the security log (`manager`), and certificates with `cryptography` (`certificates`,
loaded only when a certificate is handled)."""

from __future__ import annotations

from agent.security.events import (
    CRITICAL_EVENTS,
    CertificateUse,
    FirmwareSecurity,
    SecurityError,
    SecurityEvents,
    SecurityEventType,
)
from agent.security.files import check_local_permissions, read_key_file, write_secret
from agent.security.manager import SecurityManager, classify_failure, client_ssl_context

__all__ = [
    "CRITICAL_EVENTS",
    "CertificateUse",
    "FirmwareSecurity",
    "SecurityError",
    "SecurityEventType",
    "SecurityEvents",
    "SecurityManager",
    "check_local_permissions",
    "classify_failure",
    "client_ssl_context",
    "read_key_file",
    "write_secret",
]
