"""OCPP 1.6 Security Whitepaper handlers (mixed into V16ChargePoint)."""

from __future__ import annotations


class SecurityHandlers:
    """Security extension handlers: certificates, logs, signed firmware, extended trigger."""
