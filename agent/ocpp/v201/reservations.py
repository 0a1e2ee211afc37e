"""OCPP 2.0.1 H01-H04 reservations, N09-N10 customer information, B08 GetReport."""

from __future__ import annotations

from agent.ocpp.v201.handler_base import HandlerBase


class ReservationHandlers(HandlerBase):
    """Handlers of `V201ChargePoint` for this block; filled by the block's work."""
