"""OCPP 2.0.1 N02-N08 monitoring: variable monitors, monitoring base and level, NotifyEvent.

The handlers translate; the monitors themselves, their evaluation and NotifyEvent are the agent's
`MonitorEngine` (agent/ocpp/v201/monitors.py), which outlives a connection. Without one (no device model)
every request gets the honest refusal its answer type has.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import FormatViolationError, OccurrenceConstraintViolationError
from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from agent.ocpp.v201.device_model import MONITORING_BASES
from agent.ocpp.v201.handler_base import HandlerBase
from agent.ocpp.v201.monitors import MONITOR_TYPES, MonitorEngine, engine_for

LOGGER = logging.getLogger(__name__)


class MonitoringHandlers(HandlerBase):
    """SetVariableMonitoring, ClearVariableMonitoring, SetMonitoringBase, SetMonitoringLevel, GetMonitoringReport."""

    @property
    def monitors(self) -> MonitorEngine | None:
        """The agent's monitor engine (built by the daemon with the device model), if any."""
        return engine_for(self.agent)

    def _bounded(self, name: str, items: list[Any]) -> None:
        """N04/N06: a request beyond ItemsPerMessage or BytesPerMessage of its kind is refused whole."""
        engine = self.monitors
        if engine is None:
            return
        max_items = engine.model.get_int(f"MonitoringCtrlr.ItemsPerMessage[{name}]", 20)
        max_bytes = engine.model.get_int(f"MonitoringCtrlr.BytesPerMessage[{name}]", 16384)
        if len(items) > max_items:
            raise OccurrenceConstraintViolationError(description=f"more than {max_items} items")
        if len(json.dumps(items, default=str)) > max_bytes:
            raise FormatViolationError(description=f"more than {max_bytes} bytes")

    @on(Action.set_variable_monitoring)
    def on_set_variable_monitoring(self, set_monitoring_data: list[dict[str, Any]], **_: Any) -> Any:
        self._bounded("SetVariableMonitoring", set_monitoring_data)
        items = snake_to_camel_case(set_monitoring_data)
        engine = self.monitors
        if engine is None:
            results = [{"status": "UnknownComponent" if d["type"] in MONITOR_TYPES else "UnsupportedMonitorType",
                        "type": d["type"], "severity": d["severity"], "component": d["component"],
                        "variable": d["variable"]} for d in items]
        else:
            results = engine.set_monitors(items)
        return call_result.SetVariableMonitoring(set_monitoring_result=camel_to_snake_case(results))

    @on(Action.clear_variable_monitoring)
    def on_clear_variable_monitoring(self, id: list[int], **_: Any) -> Any:
        self._bounded("ClearVariableMonitoring", id)
        engine = self.monitors
        results = engine.clear_monitors(id) if engine is not None else [{"id": i, "status": "NotFound"} for i in id]
        return call_result.ClearVariableMonitoring(clear_monitoring_result=camel_to_snake_case(results))

    @on(Action.set_monitoring_base)
    def on_set_monitoring_base(self, monitoring_base: str, **_: Any) -> Any:
        engine = self.monitors
        if engine is None or monitoring_base not in MONITORING_BASES:
            return call_result.SetMonitoringBase(status="NotSupported")
        return call_result.SetMonitoringBase(status=engine.set_base(monitoring_base))

    @on(Action.set_monitoring_level)
    def on_set_monitoring_level(self, severity: int, **_: Any) -> Any:
        engine = self.monitors
        if engine is None:
            return call_result.SetMonitoringLevel(status="Rejected")
        return call_result.SetMonitoringLevel(status=engine.set_level(severity))

    @on(Action.get_monitoring_report)
    def on_get_monitoring_report(self, request_id: int, monitoring_criteria: list[str] | None = None,
                                 component_variable: list[dict[str, Any]] | None = None, **_: Any) -> Any:
        engine = self.monitors
        if engine is None:
            return call_result.GetMonitoringReport(status="NotSupported")
        data = engine.report(monitoring_criteria, snake_to_camel_case(component_variable or []))
        return call_result.GetMonitoringReport(status="Accepted" if data else "EmptyResultSet")

    @after(Action.get_monitoring_report)
    async def after_get_monitoring_report(self, request_id: int, monitoring_criteria: list[str] | None = None,
                                          component_variable: list[dict[str, Any]] | None = None,
                                          **_: Any) -> None:
        engine = self.monitors
        if engine is None:
            return
        # N02: the report follows the answer, in parts of at most ItemsPerMessage monitored variables
        data = engine.report(monitoring_criteria, snake_to_camel_case(component_variable or []))
        for part in engine.report_parts(request_id, data):
            await self.conn.send_plain("NotifyMonitoringReport", part)
