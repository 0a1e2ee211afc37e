"""The operations ledger in the running daemon: a real session counted, a problem report reaching the back office
as a DataTransfer valid against docs/operations.md, a power cut (SIGKILL and a new kernel boot id) recorded as a
gap with its cause, and evsectl showing it all (simulator, back office and agent as processes)."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from tests.integration.harness import CARD, Rig
from tests.integration.test_evsectl import evsectl
from tests.integration.test_month_operations import schemas


async def test_a_session_a_problem_report_and_a_power_cut_in_the_ledger(rig: Rig) -> None:
    rig.plug(1)
    await rig.wait_status(1, "Preparing")
    rig.card(CARD)
    started = await rig.wait_call("StartTransaction")
    await rig.wait_status(1, "Charging")
    await asyncio.sleep(3.0)  # a few polls of energy
    assert evsectl(rig, "stop", "1").returncode == 0
    stopped = await rig.wait_call("StopTransaction")
    seen = len(rig.statuses(1))
    rig.unplug(1)
    await rig.wait_status(1, "Available", since=seen)
    session_wh = stopped["payload"]["meterStop"] - started["payload"]["meterStart"]
    assert session_wh > 0

    problem = evsectl(rig, "report-problem", "--connector", "1", "--note", "cable damaged")
    assert problem.returncode == 0, problem.stderr
    assert "problem report" in problem.stdout
    call = await rig.office.wait_for(lambda: next((m for m in rig.office.messages(action="DataTransfer")
                                                   if m["payload"]["messageId"] == "ProblemReport"), None),
                                     timeout=15.0)
    assert call["payload"]["vendorId"] == "org.evse-agent"
    data = json.loads(call["payload"]["data"])
    jsonschema.validate(data, schemas()["ProblemReport"])
    assert data["note"] == "cable damaged" and data["connectors"]["1"]["status"] == "Available"

    report = json.loads(evsectl(rig, "--json", "report", "--days", "1").stdout)
    port = report["ports"]["1"]
    assert port["sessions"] == 1
    assert port["energy_wh"] == pytest.approx(session_wh, abs=1.0)  # the register's increase, to the Wh
    assert port["uptime_pct"] == 100.0 and port["wear"]["n.plug_cycles"] == 1
    assert report["station"]["reconnects"] >= 1 and report["station"]["rtt_p50_ms"] is not None
    text = evsectl(rig, "report", "--days", "1")
    assert text.returncode == 0 and "uptime per port" in text.stdout, text.stderr
    csv_rows = evsectl(rig, "report", "--days", "1", "--csv").stdout.splitlines()
    assert csv_rows[0].startswith("date,port,uptime_pct") and len(csv_rows) == 3

    rig.power_cut()
    await asyncio.sleep(2.0)
    seen = len(rig.statuses(1))
    rig.start_agent()
    await rig.wait_status(1, "Available", timeout=30.0, since=seen)
    await asyncio.sleep(1.0)
    after = json.loads(evsectl(rig, "--json", "report", "--days", "1").stdout)
    assert after["station"]["off_min"].get("power_loss", 0) > 0
    assert after["ports"]["1"]["outages_min"].get("power_loss", 0) > 0
    assert after["ports"]["1"]["sessions"] == 1  # the first run's session survived the cut
    gaps = [e for e in after["events"] if e["kind"] == "gap"]
    assert gaps and gaps[0]["detail"]["cause"] == "power_loss"
