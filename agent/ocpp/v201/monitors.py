"""OCPP 2.0.1 monitoring (N02-N08, G05): variable monitors on the device model's live values, and NotifyEvent.

One `MonitorEngine` per agent, alive across connections (offline too): the daemon starts it, the handlers of
agent/ocpp/v201/monitoring.py reach it with `engine_for(agent)`. Every tick it reads the monitored variables
through the device model (power, current, voltage, energy from the last meter reading; availability from the
core's connector state; temperature from a DC controller), trips and clears monitors, and reports the core's
faults on the Problem variable of their component (statuses.fault_report) as hard-wired notifications.
Events are sent at once when a back office is connected; offline they are queued in the outbox when their
severity is at most MonitoringCtrlr.OfflineQueuingSeverity, and dropped otherwise.

Monitors are kept in the store's config table (rows `ocpp201mon.*`): custom monitors, changed or removed
pre-configured monitors, the id counters, and the faults last reported (so a fault that cleared while the
agent was down is reported cleared after the restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.clock import iso
from agent.core import events as ev
from agent.core.connector import ESTOP_FAULT, connector_status
from agent.metering import billed_wh, next_aligned
from agent.ocpp.v201.device_model import DataType, DeviceModel, VariableSpec, split_report
from agent.ocpp.v201.statuses import CONNECTOR_STATUS, fault_report
from drivers.base import ChademoStatus

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

TICK_S = 1.0  # monitors are evaluated this often (the hardware poll is about as fast)
ROW = "ocpp201mon."  # config-table rows of this module (not "ocpp201.": those are device model variables)
FIRST_CUSTOM_ID = 1000  # ids below are the station's pre-configured and hard-wired monitors
MAX_MONITORS = 500  # custom monitors kept at most: a back office cannot fill the disk with them
PERIOD_MAX_S = 7 * 86400  # a Periodic monitor longer than a week is refused as implausible
ACTUAL_MAX = 2500  # EventDataType.actualValue
TECH_CODE_MAX = 50
TECH_INFO_MAX = 500
THRESHOLDS = ("UpperThreshold", "LowerThreshold")
PERIODIC = ("Periodic", "PeriodicClockAligned")
MONITOR_TYPES = (*THRESHOLDS, "Delta", *PERIODIC)
CRITERIA = {"ThresholdMonitoring": THRESHOLDS, "DeltaMonitoring": ("Delta",), "PeriodicMonitoring": PERIODIC}
_NUMERIC = (DataType.INTEGER, DataType.DECIMAL)

# Severity of a hard-wired fault notification (0 Danger, 1 Hardware Failure, 2 System Failure, 3 Critical,
# 4 Error ...): it decides ActiveMonitoringLevel filtering and offline queuing like a monitor's severity.
FAULT_SEVERITY = {
    ev.FAULT_EMERGENCY_STOP: 0,
    "isolation_fault": 0,
    "imd_device_error": 1,  # the insulation is not monitored
    "imd_self_test_failed": 1,
    "isolation_warning": 6,  # Warning: charging goes on
    "contactor_welded": 0,  # the cable may stay live
    "over_temperature": 1,
    "over_current": 1,
    "over_voltage": 1,
    "under_voltage": 2,
    ev.FAULT_LOCAL_LIST_CONFLICT: 4,
}
FAULT_SEVERITY_DEFAULT = 1  # a device that is silent or misbehaves is a hardware failure


@dataclass
class Monitor:
    """One variable monitor (VariableMonitoringType) and what it last saw."""

    id: int
    kind: str  # eventNotificationType: CustomMonitor, PreconfiguredMonitor or HardWiredMonitor
    type: str  # MonitorEnumType
    value: float
    severity: int
    transaction: bool
    key: str  # the device model's name of the monitored variable
    factory: bool = False  # a pre-configured monitor active under FactoryDefault (All: every one)
    tripped: bool = False
    reference: str | None = None  # Delta: the value last reported
    next_due: float | None = None  # Periodic: monotonic; PeriodicClockAligned: wall time

    def stored(self) -> dict[str, Any]:
        """What is persisted of it."""
        return {"id": self.id, "kind": self.kind, "type": self.type, "value": self.value,
                "severity": self.severity, "transaction": self.transaction, "key": self.key}

    def wire(self) -> dict[str, Any]:
        """VariableMonitoringType."""
        value = int(self.value) if self.value == int(self.value) else self.value
        return {"id": self.id, "transaction": self.transaction, "value": value, "type": self.type,
                "severity": self.severity}


@dataclass(frozen=True)
class _FaultNote:
    """A fault as it is reported: where, and what it is."""

    component: dict[str, Any]
    variable: dict[str, Any]
    code: str
    info: str
    severity: int


_ENGINES: weakref.WeakKeyDictionary[Any, MonitorEngine] = weakref.WeakKeyDictionary()


def engine_for(agent: Agent) -> MonitorEngine | None:
    """The monitor engine of an agent, if one was built."""
    return _ENGINES.get(agent)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{round(value, 3):g}"


def next_counter(store: Any, name: str, first: int) -> int:
    """Take the next value of a stored monitoring counter (from `first`)."""
    value = max(first, int(store.config_get(ROW + name) or first))
    store.config_set(ROW + name, str(value + 1))
    return value


def next_event_id(store: Any) -> int:
    """The next NotifyEvent eventId of the station (the counter the monitors number their events with)."""
    return next_counter(store, "event_id", 1)


class MonitorEngine:
    """The monitors of one charging station, evaluated on live values, with NotifyEvent delivery."""

    def __init__(self, agent: Agent, model: DeviceModel, evses: Mapping[int, tuple[int, int]] | None = None) -> None:
        self.agent = agent
        self.model = model
        self.evses = dict(evses) if evses is not None else {cid: (cid, 1) for cid in agent.connectors}
        self.custom: dict[int, Monitor] = {}
        self.presets: dict[int, Monitor] = {}  # pre-configured and hard-wired, by id
        self.preset_defaults: dict[int, Monitor] = {}
        self.reported_faults: dict[str, _FaultNote] = {}
        self._sends: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._load()
        self._register_live_values()
        _ENGINES[agent] = self

    # ---- the monitored values ---------------------------------------------------------------------

    def _register_live_values(self) -> None:
        for spec in self.model.variables():
            if spec.evse_id is None:
                if spec.component == "ChargingStation" and spec.variable == "AvailabilityState":
                    self.model.live[spec.key] = self._station_state
                continue
            cid = spec.evse_id  # the device model numbers one EVSE per configured connector, by its id
            if cid not in self.agent.connectors:
                continue
            reader = {
                ("EVSE", "Power"): lambda c=cid: _fmt(self._reading(c, "power")),
                ("PowerMeter", "Current"): lambda c=cid: _fmt(self._reading(c, "current")),
                ("PowerMeter", "Voltage"): lambda c=cid: _fmt(self._reading(c, "voltage")),
                ("PowerMeter", "Energy"): lambda c=cid: _fmt(self._reading(c, "energy")),
                ("PowerMeter", "Problem"): lambda c=cid: self._problem(c, "PowerMeter"),
                ("TemperatureSensor", "Temperature"): lambda c=cid: _fmt(self._temperature(c)),
                ("CHAdeMOCtrlr", "CHAdeMOProtocolNumber"): lambda c=cid: self._chademo(c, "protocol"),
                ("CHAdeMOCtrlr", "VehicleStatus"): lambda c=cid: self._chademo(c, "vehicle_status"),
                ("CHAdeMOCtrlr", "Problem"): lambda c=cid: self._problem(c, "CHAdeMOCtrlr"),
                ("ISO15118Ctrlr", "Problem"): lambda c=cid: self._problem(c, "ISO15118Ctrlr"),
                ("EVSE", "AvailabilityState"): lambda c=cid: self._connector_state(c),
                ("Connector", "AvailabilityState"): lambda c=cid: self._connector_state(c),
            }.get((spec.component, spec.variable))
            if reader is not None:
                self.model.live[spec.key] = reader

    def _reading(self, cid: int, quantity: str) -> float | None:
        """A quantity of the connector's last meter reading; None when there is none or it is stale."""
        reading = self.agent.connectors[cid].reading
        if reading is None or reading.stale:
            return None  # never an old value presented as the present one
        if quantity == "power":
            return reading.power_w
        if quantity == "energy":
            return float(billed_wh(reading.energy_import_wh))
        values = [v for v in (reading.current_a if quantity == "current" else reading.voltage_v) if v is not None]
        if not values:
            return None
        return max(values) if quantity == "current" else values[0]

    def _temperature(self, cid: int) -> float | None:
        dc = self.agent.hw.connectors[cid].dc
        # the DC controller keeps its last status (not part of the DcController contract: read it if present)
        last = getattr(dc, "last_reading", None)
        status = last() if callable(last) else None
        if status is None or getattr(status, "stale", False):
            return None
        value = getattr(status, "temperature_c", None)
        return float(value) if isinstance(value, int | float) else None

    def _chademo(self, cid: int, what: str) -> str | None:
        """CHAdeMOCtrlr values from the controller's last status (map version 2, a CHAdeMO vehicle)."""
        last = getattr(self.agent.hw.connectors[cid].dc, "last_reading", None)
        status = last() if callable(last) else None
        detail = getattr(status, "detail", None)
        if status is None or getattr(status, "stale", False) or detail is None or detail.chademo_protocol is None:
            return None  # no CHAdeMO vehicle now: no value rather than an old one
        if what == "protocol":
            return str(detail.chademo_protocol)
        return "true" if detail.chademo_status & ChademoStatus.EV_CONTACTOR_OPEN else "false"

    def _connector_state(self, cid: int) -> str | None:
        core = self.agent.core
        connector = core.connectors.get(cid)
        if connector is None:
            return None
        return CONNECTOR_STATUS[connector_status(connector, core.cp_estop, core.cp_faults).status]

    def _station_state(self) -> str:
        core = self.agent.core
        if core.fault(0) is not None:
            return "Faulted"
        return "Unavailable" if core.availability().get(0) is False else "Available"

    def _problem(self, cid: int, component: str) -> str:
        evse_id, _ = self.evses.get(cid, (cid, 1))
        return "true" if any(n.component.get("name") == component and (n.component.get("evse") or {}).get("id")
                             == evse_id for n in self._active_faults().values()) else "false"

    # ---- persistence ------------------------------------------------------------------------------------

    def _presets_for(self) -> list[Monitor]:
        """The station's own monitors: an over-power alarm per EVSE (hard-wired), over-temperature of a DC
        controller and availability changes (pre-configured)."""
        out: list[Monitor] = []
        for spec in self.model.variables():
            if spec.component == "EVSE" and spec.variable == "Power":
                max_w = _number(self.model.get_str(f"{spec.key}@MaxSet") or None)
                if max_w:
                    out.append(Monitor(0, "HardWiredMonitor", "UpperThreshold", max_w * 1.1, 2, False, spec.key))
            elif spec.component == "TemperatureSensor" and spec.variable == "Temperature":
                out.append(Monitor(0, "PreconfiguredMonitor", "UpperThreshold", 80.0, 3, False, spec.key,
                                   factory=True))
            elif spec.component == "Connector" and spec.variable == "AvailabilityState":
                out.append(Monitor(0, "PreconfiguredMonitor", "Delta", 0.0, 8, False, spec.key))
        for n, monitor in enumerate(out, start=1):
            monitor.id = n
        return out

    def _load(self) -> None:
        store = self.agent.store
        self.preset_defaults = {m.id: m for m in self._presets_for()}
        self.presets = {i: dataclasses.replace(m) for i, m in self.preset_defaults.items()}
        for key, raw in store.config_all().items():
            if not key.startswith(ROW):
                continue
            try:
                data = json.loads(raw)
                if key.startswith(ROW + "custom."):
                    monitor = Monitor(int(data["id"]), "CustomMonitor", str(data["type"]), float(data["value"]),
                                      int(data["severity"]), bool(data["transaction"]), str(data["key"]))
                    if self.model.spec(monitor.key) is not None:
                        self.custom[monitor.id] = monitor
                elif key.startswith(ROW + "preset."):
                    preset_id = int(key.removeprefix(ROW + "preset."))
                    default = self.preset_defaults.get(preset_id)
                    if default is None:
                        continue
                    if data == "removed":
                        self.presets.pop(preset_id, None)
                    else:
                        self.presets[preset_id] = dataclasses.replace(
                            default, type=str(data["type"]), value=float(data["value"]),
                            severity=int(data["severity"]), transaction=bool(data["transaction"]))
                elif key == ROW + "faults":
                    self.reported_faults = {k: _FaultNote(**v) for k, v in data.items()}
            except (ValueError, KeyError, TypeError) as err:
                LOGGER.warning("ignoring stored monitoring row %s: %s", key, err)

    def _next(self, name: str, first: int) -> int:
        return next_counter(self.agent.store, name, first)

    # ---- N04 SetVariableMonitoring -------------------------------------------------------------------

    def active(self) -> list[Monitor]:
        """The monitors in force: custom ones, and the pre-configured ones the monitoring base activates."""
        base = self.model.get_str("MonitoringCtrlr.ActiveMonitoringBase", "FactoryDefault")
        presets = [m for m in self.presets.values() if m.kind == "HardWiredMonitor" or base == "All"
                   or (base == "FactoryDefault" and m.factory)]
        return sorted([*presets, *self.custom.values()], key=lambda m: m.id)

    def set_monitors(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """SetVariableMonitoring (wire-form items): one SetMonitoringResult per item, in order."""
        return [self._set_one(item) for item in items]

    def _set_one(self, item: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"type": item["type"], "severity": item["severity"],
                                  "component": dict(item["component"]), "variable": dict(item["variable"])}

        def refuse(status: str, reason: str, info: str) -> dict[str, Any]:
            result["status"] = status
            result["statusInfo"] = {"reasonCode": reason, "additionalInfo": info[:512]}
            return result

        spec, status = self.model.lookup(item["component"], item["variable"])
        if spec is None:
            return refuse(status, status, "no such component or variable")
        kind, value, severity = str(item["type"]), item["value"], item["severity"]
        problem = self._check(spec, kind, value, severity)
        if problem is not None:
            return refuse(*problem)
        value = float(value)
        transaction = bool(item.get("transaction", False))
        monitor_id = item.get("id")
        if monitor_id is not None:  # an id only replaces an existing monitor
            if monitor_id in self.custom:
                target: Monitor = self.custom[monitor_id]
            elif monitor_id in self.presets:
                target = self.presets[monitor_id]
                if target.kind == "HardWiredMonitor":
                    return refuse("Rejected", "ReadOnly", "a hard-wired monitor cannot be changed")
            else:
                return refuse("Rejected", "UnknownMonitorId", f"no monitor {monitor_id}")
            if target.key != spec.key:
                return refuse("Rejected", "OtherVariable", "the monitor watches another variable")
            replaced = dataclasses.replace(target, type=kind, value=value, severity=severity,
                                           transaction=transaction, tripped=False, reference=None, next_due=None)
            if replaced.kind == "CustomMonitor":
                self.custom[replaced.id] = replaced
                self.agent.store.config_set(f"{ROW}custom.{replaced.id}", json.dumps(replaced.stored()))
            else:
                self.presets[replaced.id] = replaced
                self.agent.store.config_set(f"{ROW}preset.{replaced.id}", json.dumps(replaced.stored()))
            result.update(status="Accepted", id=replaced.id)
            return result
        if any(m.key == spec.key and m.type == kind and m.severity == severity for m in self.active()):
            return refuse("Duplicate", "Duplicate", "a monitor of this type and severity exists on the variable")
        if len(self.custom) >= MAX_MONITORS:
            return refuse("Rejected", "TooManyMonitors", f"at most {MAX_MONITORS} custom monitors")
        monitor = Monitor(self._next("next_id", FIRST_CUSTOM_ID), "CustomMonitor", kind, value, severity,
                          transaction, spec.key)
        self.custom[monitor.id] = monitor
        self.agent.store.config_set(f"{ROW}custom.{monitor.id}", json.dumps(monitor.stored()))
        LOGGER.info("monitor %d: %s %s %g severity %d", monitor.id, spec.key, kind, value, severity)
        result.update(status="Accepted", id=monitor.id)
        return result

    @staticmethod
    def _check(spec: VariableSpec, kind: str, value: Any, severity: Any) -> tuple[str, str, str] | None:
        """Why a monitor cannot be set on this variable (status, reasonCode, info), or None."""
        if not spec.supports_monitoring:
            return "UnsupportedMonitorType", "NotMonitorable", f"{spec.key} does not support monitoring"
        if kind not in MONITOR_TYPES:
            return "UnsupportedMonitorType", "UnknownType", kind[:100]
        if kind in THRESHOLDS and spec.data_type not in _NUMERIC:
            return "UnsupportedMonitorType", "NotNumeric", f"{spec.key} is not a number: no threshold"
        if not isinstance(severity, int) or isinstance(severity, bool) or not 0 <= severity <= 9:
            return "Rejected", "InvalidSeverity", "severity is 0 to 9"
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return "Rejected", "InvalidValue", "the value is not a finite number"
        if kind == "Delta" and value < 0:
            return "Rejected", "InvalidValue", "a delta is not negative"
        if kind in PERIODIC and not 1 <= value <= PERIOD_MAX_S:
            return "Rejected", "InvalidValue", f"a period is 1 to {PERIOD_MAX_S} s"
        if kind in THRESHOLDS and spec.max_limit is not None and abs(value) > 1e3 * max(1.0, abs(spec.max_limit)):
            return "Rejected", "InvalidValue", "the threshold is far outside the variable's range"
        return None

    # ---- N06 ClearVariableMonitoring, N03 SetMonitoringBase, N05 SetMonitoringLevel -------------

    def clear_monitors(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """ClearVariableMonitoring: one ClearMonitoringResult per id."""
        results: list[dict[str, Any]] = []
        for monitor_id in ids:
            if monitor_id in self.custom:
                del self.custom[monitor_id]
                self.agent.store.config_delete(f"{ROW}custom.{monitor_id}")
                status = "Accepted"
            elif monitor_id in self.presets:
                if self.presets[monitor_id].kind == "HardWiredMonitor":
                    status = "Rejected"  # N06: a hard-wired monitor cannot be cleared
                else:
                    del self.presets[monitor_id]
                    self.agent.store.config_set(f"{ROW}preset.{monitor_id}", json.dumps("removed"))
                    status = "Accepted"
            else:
                status = "NotFound"
            results.append({"id": monitor_id, "status": status})
        return results

    def set_base(self, base: str) -> str:
        """SetMonitoringBase: All and FactoryDefault restore the pre-configured monitors (changed or cleared
        ones included); HardWiredOnly also clears every custom monitor."""
        self.model.set_local("MonitoringCtrlr.ActiveMonitoringBase", base)
        for key in list(self.agent.store.config_all()):
            if key.startswith(ROW + "preset.") or (base == "HardWiredOnly" and key.startswith(ROW + "custom.")):
                self.agent.store.config_delete(key)
        self.presets = {i: dataclasses.replace(m) for i, m in self.preset_defaults.items()}
        if base == "HardWiredOnly":
            self.custom.clear()
        LOGGER.info("monitoring base %s", base)
        return "Accepted"

    def set_level(self, severity: int) -> str:
        """SetMonitoringLevel: events above this severity number are not reported."""
        if not 0 <= severity <= 9:
            return "Rejected"
        self.model.set_local("MonitoringCtrlr.ActiveMonitoringLevel", severity)
        return "Accepted"

    # ---- N02 GetMonitoringReport -------------------------------------------------------------------

    def report(self, criteria: Sequence[str] | None = None,
               component_variable: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """MonitoringData of the monitors in force, by variable, filtered by criteria and componentVariable."""
        types = {t for c in criteria or CRITERIA for t in CRITERIA.get(c, ())}
        grouped: dict[str, list[Monitor]] = {}
        for monitor in self.active():
            spec = self.model.spec(monitor.key)
            if spec is None or monitor.type not in types:
                continue
            if component_variable and not any(self.model.matches(spec, cv) for cv in component_variable):
                continue
            grouped.setdefault(monitor.key, []).append(monitor)
        out = []
        for key, monitors in grouped.items():
            spec = self.model.spec(key)
            assert spec is not None
            out.append({"component": spec.component_json(), "variable": spec.variable_json(),
                        "variableMonitoring": [m.wire() for m in monitors]})
        return out

    def report_parts(self, request_id: int, data: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """NotifyMonitoringReport payloads split by DeviceDataCtrlr.ItemsPerMessage[GetReport]."""
        generated_at = iso(self.agent.now())
        parts = split_report(request_id, data, self.model.get_int("DeviceDataCtrlr.ItemsPerMessage[GetReport]", 50),
                             generated_at)
        for part in parts:
            part["monitor"] = part.pop("reportData")
        return parts

    # ---- evaluation --------------------------------------------------------------------------------

    def _in_transaction(self, spec: VariableSpec) -> bool:
        core = self.agent.core
        ids = [c for c, (e, _) in self.evses.items() if spec.evse_id in (None, e)]
        return any(core.session(cid) is not None for cid in ids)

    def _evaluate(self, monitor: Monitor, now: float, mono: float) -> dict[str, Any] | None:
        """The eventData this monitor reports now, if any."""
        spec = self.model.spec(monitor.key)
        if spec is None:
            return None
        if monitor.transaction and not self._in_transaction(spec):
            monitor.tripped, monitor.reference, monitor.next_due = False, None, None
            return None
        raw = self.model.get(monitor.key)
        text = None if raw is None else ("true" if raw is True else "false" if raw is False else str(raw))
        if text is None:
            return None  # no value now (a meter that does not answer): nothing to compare, nothing cleared
        trigger: str | None = None
        cleared = False
        if monitor.type in THRESHOLDS:
            value = _number(text)
            if value is None:
                return None
            over = value > monitor.value if monitor.type == "UpperThreshold" else value < monitor.value
            if over != monitor.tripped:
                monitor.tripped, trigger, cleared = over, "Alerting", not over
        elif monitor.type == "Delta":
            if monitor.reference is None:
                monitor.reference = text  # the value when the monitor was set is the reference
                return None
            number, reference = _number(text), _number(monitor.reference)
            moved = (abs(number - reference) > monitor.value if number is not None and reference is not None
                     and spec.data_type in _NUMERIC else text != monitor.reference)
            if moved:
                monitor.reference, trigger = text, "Delta"
        elif monitor.type == "Periodic":
            if monitor.next_due is None or mono >= monitor.next_due:
                due = monitor.next_due
                monitor.next_due = (due if due is not None else mono) + monitor.value
                if monitor.next_due <= mono:
                    monitor.next_due = mono + monitor.value
                trigger = "Periodic" if due is not None else None
        else:  # PeriodicClockAligned
            if monitor.next_due is None:
                monitor.next_due = next_aligned(now, max(1, int(monitor.value)))
            elif now >= monitor.next_due:
                monitor.next_due = next_aligned(now, max(1, int(monitor.value)))
                trigger = "Periodic"
        if trigger is None:
            return None
        data: dict[str, Any] = {"eventId": 0, "timestamp": iso(now), "trigger": trigger,
                                "actualValue": text[:ACTUAL_MAX], "component": spec.component_json(),
                                "variable": spec.variable_json(), "eventNotificationType": monitor.kind,
                                "variableMonitoringId": monitor.id}
        if cleared:
            data["cleared"] = True
        return data

    def _active_faults(self) -> dict[str, _FaultNote]:
        """Every fault the core holds now, by the component and variable it is reported on."""
        core = self.agent.core
        found: list[tuple[int, ev.Fault]] = []
        if core.cp_estop:
            found.append((0, ESTOP_FAULT))
        found += [(0, ev.Fault.of(raised)) for raised in core.cp_faults.values()]
        for cid, connector in core.connectors.items():
            if connector.estop:
                found.append((cid, ESTOP_FAULT))
            found += [(cid, ev.Fault.of(raised)) for raised in connector.faults.values()]
        for cid in (0, *core.connectors):
            fault = core.fault(cid)  # what the status reports (a core decision such as a list conflict)
            if fault is not None:
                found.append((cid, fault))
        notes: dict[str, _FaultNote] = {}
        for cid, fault in found:
            where = fault_report(fault)
            component: dict[str, Any] = {"name": where.component}
            if where.evse_scoped and cid:
                evse_id, connector_id = self.evses.get(cid, (cid, 1))
                component["evse"] = ({"id": evse_id, "connectorId": connector_id} if where.component == "Connector"
                                     else {"id": evse_id})
            key = json.dumps([component, where.variable], sort_keys=True)
            note = _FaultNote(component, {"name": where.variable}, fault.code[:TECH_CODE_MAX],
                              (fault.info or fault.source)[:TECH_INFO_MAX],
                              FAULT_SEVERITY.get(fault.code, FAULT_SEVERITY_DEFAULT))
            if key not in notes or note.severity < notes[key].severity:
                notes[key] = note
        return notes

    def _fault_events(self, now: float) -> list[tuple[dict[str, Any], int]]:
        current = self._active_faults()
        events: list[tuple[dict[str, Any], int]] = []
        for key, note in current.items():
            reported = self.reported_faults.get(key)
            # new, or worse than what was reported on the same variable (an insulation warning become a fault)
            if reported is None or note.severity < reported.severity:
                events.append((self._fault_data(note, now, "true", cleared=False), note.severity))
        for key, note in self.reported_faults.items():
            if key not in current:
                events.append((self._fault_data(note, now, "false", cleared=True), note.severity))
        if events:
            self.reported_faults = current
            self.agent.store.config_set(ROW + "faults", json.dumps(
                {k: dataclasses.asdict(n) for k, n in current.items()}))
        return events

    @staticmethod
    def _fault_data(note: _FaultNote, now: float, actual: str, *, cleared: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"eventId": 0, "timestamp": iso(now), "trigger": "Alerting", "actualValue": actual,
                                "component": note.component, "variable": note.variable,
                                "eventNotificationType": "HardWiredNotification", "techCode": note.code}
        if note.info:
            data["techInfo"] = note.info
        if cleared:
            data["cleared"] = True
        return data

    def tick(self, now: float | None = None, mono: float | None = None) -> list[dict[str, Any]]:
        """Evaluate the monitors and the faults once; the eventData delivered (sent or queued)."""
        now = self.agent.now() if now is None else now
        mono = time.monotonic() if mono is None else mono
        events = self._fault_events(now)
        if self.model.get_bool("MonitoringCtrlr.Enabled", True):
            for monitor in self.active():
                data = self._evaluate(monitor, now, mono)
                if data is not None:
                    events.append((data, monitor.severity))
        return self._deliver(events, now)

    def _deliver(self, events: list[tuple[dict[str, Any], int]], now: float) -> list[dict[str, Any]]:
        level = self.model.get_int("MonitoringCtrlr.ActiveMonitoringLevel", 9)
        session = self.agent.link_session
        if session is None:  # N07/N08: offline, only what is severe enough is kept for later
            level = min(level, self.model.get_int("MonitoringCtrlr.OfflineQueuingSeverity", 3))
        wanted = [data for data, severity in events if severity <= level]
        if not wanted:
            return []
        for data in wanted:
            data["eventId"] = self._next("event_id", 1)
        payload = {"generatedAt": iso(now), "seqNo": 0, "tbc": False, "eventData": wanted}
        if session is None:
            self.agent.store.enqueue("NotifyEvent", payload, wall_time=now, monotonic=time.monotonic(),
                                     clock_trusted=self.agent.clock_trusted, protocol="2.0.1")
            LOGGER.info("offline: %d monitoring events queued", len(wanted))
        else:
            task = asyncio.get_running_loop().create_task(session.notify("NotifyEvent", payload),
                                                          name="notify-event")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        return wanted

    def wake(self) -> None:
        """Evaluate now (a status changed) instead of at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Evaluate every TICK_S, or at once when woken, until cancelled."""
        while True:
            try:
                self.tick()
            except Exception:  # one bad evaluation must not end monitoring for good
                LOGGER.exception("monitor evaluation failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
