"""OCPP 2.0.1 K01-K10 smart charging: SetChargingProfile, GetChargingProfiles, ClearChargingProfile, and more."""

from __future__ import annotations

from agent.ocpp.v201.handler_base import HandlerBase


class SmartChargingHandlers(HandlerBase):
    """Handlers of `V201ChargePoint` for this block; filled by the block's work."""
