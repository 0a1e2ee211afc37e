"""The operations ledger in OCPP 2.0.1: maintenance due, replacements and problem reports as NotifyEvent in the
outbox, the figures as read-only OperationsCtrlr variables (GetVariables, SetVariables refused), every message
checked against the official 2.0.1 schemas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.core import events as ev
from agent.ocpp.v201.operations import wire_operations
from tests.agent.test_v201_handlers import Rig, schema

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
OPS1 = {"name": "OperationsCtrlr", "evse": {"id": 1}}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    wire_operations(made.agent.operations, made.device_model)  # as agent/daemon.py _build_v201 does
    yield made
    made.close()


def queued_events(rig: Rig) -> list[dict[str, Any]]:
    out = []
    for msg in rig.store.pending(limit=500):
        if msg.action == "NotifyEvent":
            jsonschema.validate(msg.payload, schema("NotifyEventRequest"))
            assert msg.protocol == "2.0.1"
            out += msg.payload["eventData"]
    return out


def get(rig: Rig, *variables: tuple[dict[str, Any], str, str | None]) -> dict[tuple[str, str | None], Any]:
    request = {"getVariableData": [{"component": c, "variable": {"name": n, **({"instance": i} if i else {})}}
                                   for c, n, i in variables]}
    jsonschema.validate(request, schema("GetVariablesRequest"))
    results = rig.call("GetVariables", request)["getVariableResult"]
    return {(r["variable"]["name"], r["variable"].get("instance")): r for r in results}


def test_reports_become_notify_events_numbered_with_the_monitors_counter(rig: Rig) -> None:
    ops = rig.agent.operations
    ops.problem("technician", "screen dark", 1)
    ops.replacement(1, "meter", "SN123", "SN456")
    ops.intervals["connector"] = ("n.plug_cycles", 1.0)
    rig.loop.run_until_complete(_plug_cycle(rig))
    ops.commit()
    events = queued_events(rig)
    codes = [e["techCode"] for e in events]
    assert codes == ["ProblemReport", "Replacement", "MaintenanceDue"]
    assert [e["eventId"] for e in events] == sorted({e["eventId"] for e in events})  # distinct, rising
    problem, replacement, due = events
    assert problem["component"] == OPS1 and problem["variable"] == {"name": "ProblemReport"}
    assert problem["trigger"] == "Alerting" and problem["eventNotificationType"] == "HardWiredNotification"
    assert '"note":"screen dark"' in problem["techInfo"] and len(problem["techInfo"]) <= 500
    assert replacement["actualValue"] == "meter: SN123 -> SN456"
    assert due["variable"] == {"name": "MaintenanceDue"} and due["actualValue"] == "true"
    # the variables the events name exist and read back the same
    values = get(rig, (OPS1, "ProblemReport", None), (OPS1, "Replacement", None), (OPS1, "MaintenanceDue", None))
    assert values[("ProblemReport", None)]["attributeValue"] == problem["actualValue"]
    assert values[("Replacement", None)]["attributeValue"] == replacement["actualValue"]
    assert values[("MaintenanceDue", None)]["attributeValue"] == "true"


async def _plug_cycle(rig: Rig) -> None:
    rig.agent.feed(ev.PlugChanged(1, True))
    await asyncio.sleep(0.02)
    rig.agent.feed(ev.PlugChanged(1, False))
    await asyncio.sleep(0.02)


def test_the_figures_are_read_only_variables_read_from_the_ledger(rig: Rig) -> None:
    ops = rig.agent.operations
    rig.loop.run_until_complete(_plug_cycle(rig))
    rig.loop.run_until_complete(_plug_cycle(rig))
    ops.commit()
    values = get(rig, (OPS1, "Uptime", "Day"), (OPS1, "Uptime", "Year"), (OPS1, "Sessions", "Day"),
                 (OPS1, "Energy", "Year"), (OPS1, "PlugCycles", None), (OPS1, "ContactorOperations", None),
                 (OPS1, "OperatingHours", None), ({"name": "OperationsCtrlr"}, "ProblemReport", None))
    assert all(r["attributeStatus"] == "Accepted" for r in values.values()), values
    assert values[("PlugCycles", None)]["attributeValue"] == "2"
    assert values[("ContactorOperations", None)]["attributeValue"] == "0"
    assert values[("Sessions", "Day")]["attributeValue"] == "0"
    assert float(values[("Uptime", "Day")]["attributeValue"]) == pytest.approx(100.0)
    request = {"setVariableData": [{"component": OPS1, "variable": {"name": "PlugCycles"}, "attributeValue": "0"}]}
    jsonschema.validate(request, schema("SetVariablesRequest"))
    assert rig.call("SetVariables", request)["setVariableResult"][0]["attributeStatus"] == "Rejected"
