"""The operations ledger in OCPP 2.0.1: its figures as read-only device model variables, its events as NotifyEvent.

The variables (`OperationsCtrlr`, agent/ocpp/v201/device_model.py `operations_variables`) are read live from the
ledger's committed rows (at most a minute old: the ledger commits once a minute), never written by a read.
Maintenance due, replacements and problem reports are NotifyEvent messages queued in the outbox like the 1.6
DataTransfer reports: committed before the first attempt, sent in order, never dropped. Their eventIds come
from the station's one NotifyEvent counter (the monitors'). The daily usage report has no 2.0.1 message: the
back office reads the variables (GetVariables, GetReport) instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from agent.clock import iso
from agent.core.operations import DAY_S
from agent.ocpp.v201.device_model import OPERATIONS_PERIODS, DeviceModel
from agent.ocpp.v201.monitors import next_event_id
from agent.store import Store

if TYPE_CHECKING:
    from agent.runtime.operations import Operations

COMPONENT = "OperationsCtrlr"
TECH_INFO_MAX = 500  # EventDataType.techInfo
ACTUAL_MAX = 2500  # EventDataType.actualValue
YEAR_DAYS = 365
WEAR_COUNTERS = {  # variable -> (part, counter key in the ledger's wear)
    "ContactorOperations": ("contactor", "n.contactor_ops"),
    "ContactorOperationsUnderLoad": ("contactor", "n.contactor_ops_under_load"),
    "PlugCycles": ("connector", "n.plug_cycles"),
    "LockCycles": ("lock", "n.lock_cycles"),
    "OperatingHours": ("station", "x.operating_h"),
}
# the variable each event is reported on (it exists in the device model: a back office can read it back)
EVENT_VARIABLE = {"MaintenanceDue": "MaintenanceDue", "Replacement": "Replacement", "ProblemReport": "ProblemReport"}


def _number(value: float | None, digits: int = 3) -> str | None:
    if value is None:
        return None
    text = f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".")
    return text or "0"


class LiveFigures:
    """Readers of the OperationsCtrlr variables from the ledger's rows and wear."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def _period(self, period: str) -> tuple[float, float]:
        now = self.ops.agent.now()
        day = now // DAY_S * DAY_S
        return (day, day + DAY_S) if period == "Day" else (day - (YEAR_DAYS - 1) * DAY_S, day + DAY_S)

    def port(self, cid: int, period: str) -> dict[str, Any]:
        """A port's figures over the period (from the committed daily rows)."""
        from agent.runtime.operations import figures  # the runtime's arithmetic, not its state

        since, until = self._period(period)
        rows = [r for r in self.ops.store.ops_rows("daily", since, until) if r[1] == cid]
        return dict(figures(rows, [cid])["ports"][cid])

    def wear(self, cid: int, variable: str) -> str | None:
        part, key = WEAR_COUNTERS[variable]
        for item in self.ops.wear():
            if item["connector"] == cid and item["part"] == part:
                return _number(item["counters"].get(key, 0.0), 2 if key == "x.operating_h" else 0)
        return None

    def due(self, cid: int) -> str:
        return "true" if any(w["due"] for w in self.ops.wear() if w["connector"] == cid) else "false"

    def last(self, kind: str, cid: int) -> dict[str, Any] | None:
        for event in self.ops.store.ops_events(200, kind=kind):
            if event.connector_id == cid:
                return {"id": event.id, **event.detail}
        return None

    def replacement(self, cid: int) -> str:
        event = self.last("replacement", cid)
        if event is None:
            return ""
        return f"{event.get('part')}: {event.get('old') or '?'} -> {event.get('new') or '?'}"[:250]

    def problem(self, cid: int) -> str:
        event = self.last("problem", cid)
        return str(event["id"]) if event else "0"


def register_live(model: DeviceModel, ops: Operations) -> None:
    """The OperationsCtrlr variables' Actual values, read from the ledger when asked."""
    live = LiveFigures(ops)

    def port(cid: int, period: str, figure: str, digits: int) -> Callable[[], str | None]:
        def read() -> str | None:
            value = live.port(cid, period)[figure]
            return str(int(value)) if digits == 0 and value is not None else _number(value, digits)
        return read

    model.live[f"{COMPONENT}.ProblemReport"] = partial(live.problem, 0)
    for cid in ops.connector_ids:
        at = f"{COMPONENT}[{cid}]"
        readers: dict[str, Callable[[], str | None]] = {
            f"{at}.MaintenanceDue": partial(live.due, cid),
            f"{at}.Replacement": partial(live.replacement, cid),
            f"{at}.ProblemReport": partial(live.problem, cid),
        }
        for period in OPERATIONS_PERIODS:
            readers[f"{at}.Uptime[{period}]"] = port(cid, period, "uptime_pct", 3)
            readers[f"{at}.Sessions[{period}]"] = port(cid, period, "sessions", 0)
            readers[f"{at}.Energy[{period}]"] = port(cid, period, "energy_wh", 1)
        for variable in WEAR_COUNTERS:
            readers[f"{at}.{variable}"] = partial(live.wear, cid, variable)
        for key, reader in readers.items():
            if model.spec(key) is not None:
                model.live[key] = reader


def _tech_info(payload: dict[str, Any]) -> str:
    """The report's fields as compact JSON, at most TECH_INFO_MAX characters (the snapshot's details go first)."""
    data = dict(payload)
    for drop in ("connectors", "queue", "counters"):
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if len(text) <= TECH_INFO_MAX:
            return text
        data.pop(drop, None)
    data["note"] = str(data.get("note", ""))[:100]
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= TECH_INFO_MAX else text[:TECH_INFO_MAX]


def event_data(kind: str, payload: dict[str, Any], wall: float, event_id: int) -> dict[str, Any]:
    """The NotifyEvent eventData of a ledger report."""
    cid = int(payload.get("connectorId") or 0)
    component: dict[str, Any] = {"name": COMPONENT}
    if cid > 0:
        component["evse"] = {"id": cid}
    if kind == "MaintenanceDue":
        actual = "true"
    elif kind == "Replacement":
        actual = f"{payload.get('part')}: {payload.get('old') or '?'} -> {payload.get('new') or '?'}"
    else:
        actual = str(payload.get("reportId", 0))
    return {"eventId": event_id, "timestamp": iso(wall), "trigger": "Alerting", "actualValue": actual[:ACTUAL_MAX],
            "component": component, "variable": {"name": EVENT_VARIABLE[kind]},
            "eventNotificationType": "HardWiredNotification", "techCode": kind, "techInfo": _tech_info(payload)}


class V201OperationsReporter:
    """Queues maintenance due, replacements and problem reports as NotifyEvent in the outbox."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def report(self, kind: str, payload: dict[str, Any], wall: float, clock_trusted: bool) -> None:
        """Commit the NotifyEvent to the outbox (the daily usage report is read as variables instead)."""
        if kind not in EVENT_VARIABLE:
            return
        data = event_data(kind, payload, wall, next_event_id(self.store))
        message = {"generatedAt": iso(wall), "seqNo": 0, "tbc": False, "eventData": [data]}
        self.store.enqueue("NotifyEvent", message, wall_time=wall, monotonic=time.monotonic(),
                           clock_trusted=clock_trusted, protocol="2.0.1")


def wire_operations(ops: Operations, model: DeviceModel) -> None:
    """What the 2.0.1 daemon adds to the ledger: the reporter and the variables' live values."""
    ops.reporter = V201OperationsReporter(ops.store)
    register_live(model, ops)
