"""OCPP 2.0.1 L01-L02 firmware and N01 logs: UpdateFirmware, GetLog, on the version-neutral agent/services."""

from __future__ import annotations

from agent.ocpp.v201.handler_base import HandlerBase


class ServiceHandlers(HandlerBase):
    """Handlers of `V201ChargePoint` for this block; filled by the block's work."""
