"""Which stop reason a fault ends a running transaction with: a small pure decision table.

A fault that stops charging ends the transaction. Most faults are the station's (a device that fails), and
OCPP names no better reason than Other for them; a fault the vehicle itself reports (a CHAdeMO fault flag,
a CCS EV error code, the generic EV error of a version 1 controller) means the EV ended the session:
StoppedByEV. The codes are the DC driver's (`drivers.dc.registers`); the core holds them as plain strings,
like the protocol adapters' tables, and a test keeps this table in step with the driver.
"""

from __future__ import annotations

from agent.core.events import ISOLATION_FAULT_CODES, VEHICLE_FAULT_CODES, StopReason

STOP_REASONS: dict[str, StopReason] = {
    **dict.fromkeys(VEHICLE_FAULT_CODES, StopReason.STOPPED_BY_EV),
    # an insulation fault (the IMD's or the controller's isolation check): docs/dc-safety.md
    **dict.fromkeys(ISOLATION_FAULT_CODES, StopReason.GROUND_FAULT),
}


def stop_reason_for(code: str) -> StopReason:
    """The reason a transaction stops with when a fault of this code stops charging."""
    return STOP_REASONS.get(code, StopReason.OTHER)
