"""What every group of OCPP 2.0.1 handlers shares: the agent, the session, the device model, the EVSE numbering.

`V201ChargePoint` (agent/ocpp/v201/chargepoint.py) is built from one mixin per block of the specification
(smart charging, firmware and logs, security, monitoring, reservations), each a subclass of `HandlerBase`, so
each block lives in its own module and the library's `@on`/`@after` routes are found on the combined class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.ocpp.session import Session
    from agent.runtime import Agent


class DeviceModelPort(Protocol):
    """What the handlers ask of the 2.0.1 device model (agent/ocpp/v201/device_model.py), in the wire's
    camelCase form."""

    def get_variables(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """GetVariables: one result per requested item."""
        ...

    def set_variables(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """SetVariables: one result per item, applied and persisted."""
        ...

    def base_report(self, report_base: str) -> list[dict[str, Any]]:
        """GetBaseReport: the reportData of ConfigurationInventory, FullInventory or SummaryInventory."""
        ...

    def report(self, component_variable: Sequence[Mapping[str, Any]] | None = None,
               component_criteria: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """GetReport: the reportData of the named variables of the components meeting the criteria."""
        ...

    def report_parts(self, request_id: int, report_data: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """NotifyReport payloads, split by ItemsPerMessage."""
        ...



class HandlerBase:
    """The state the 2.0.1 handler mixins read; set by `V201ChargePoint.__init__`."""

    agent: Agent
    conn: Session
    device_model: DeviceModelPort | None
    evses: dict[int, tuple[int, int]]  # agent connector id -> (evseId, connectorId)
    boot_pending: bool  # B02: configuration only, no transaction starts

    def connectors_of(self, evse_id: int | None, connector_id: int | None = None) -> list[int]:
        """The agent connectors an EVSE (and connector within it) names; evse None or 0: all of them."""
        return [cid for cid, (e, c) in sorted(self.evses.items())
                if evse_id in (None, 0, e) and connector_id in (None, c)]

    def evse_of(self, connector_id: int) -> tuple[int, int]:
        """The (evseId, connectorId) of an agent connector."""
        return self.evses.get(connector_id, (connector_id, 1))
