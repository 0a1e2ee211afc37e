"""OCPP 2.0.1 A01-A05, M03-M06 security and certificates, B09-B10 network profiles, in 2.0.1 messages."""

from __future__ import annotations

from agent.ocpp.v201.handler_base import HandlerBase


class SecurityHandlers(HandlerBase):
    """Handlers of `V201ChargePoint` for this block; filled by the block's work."""
