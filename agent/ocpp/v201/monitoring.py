"""OCPP 2.0.1 N02-N08 monitoring: variable monitors, monitoring base and level, NotifyEvent."""

from __future__ import annotations

from agent.ocpp.v201.handler_base import HandlerBase


class MonitoringHandlers(HandlerBase):
    """Handlers of `V201ChargePoint` for this block; filled by the block's work."""
