"""The operations ledger in the running daemon: a real session counted, a problem report reaching the back office
as a DataTransfer valid against docs/operations.md, a power cut (SIGKILL and a new kernel boot id) recorded as a
gap with its cause, and evsectl showing it all (simulator, back office and agent as processes)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

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


def _periodic(rig: Rig, tx: int) -> list[tuple[float, float]]:
    """(energy Wh, power W) of every periodic sample of a transaction the back office received, in order."""
    out = []
    for m in rig.calls("MeterValues"):
        if m["payload"].get("transactionId") != tx:
            continue
        for value in m["payload"]["meterValue"]:
            by = {sv.get("measurand"): float(sv["value"]) for sv in value["sampledValue"]
                  if sv.get("context") == "Sample.Periodic" and not sv.get("phase")}
            if by:
                out.append((by["Energy.Active.Import.Register"], by["Power.Active.Import"]))
    return out


async def test_a_sessions_power_curve_is_its_periodic_samples_and_evsectl_plots_it(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={
        "MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 0,
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import"})
    start = await rig.start_session()
    tx = int(start["response"]["payload"]["transactionId"])
    await rig.wait_status(1, "Charging")
    await rig.office.wait_for(lambda: len(_periodic(rig, tx)) >= 4, timeout=15.0)
    assert evsectl(rig, "stop", "1").returncode == 0
    await rig.wait_call("StopTransaction")
    sessions = json.loads(evsectl(rig, "--json", "sessions").stdout)
    (session,) = [s for s in sessions if s["transaction_id"] == tx]
    number = str(session["tx_local_id"])

    curve = json.loads(evsectl(rig, "--json", "sessions", "--plot", number).stdout)
    await asyncio.sleep(1.0)  # every MeterValues of the session has reached the office (sent before the stop)
    sent = _periodic(rig, tx)
    # one point per periodic sample, the very reading that was sent (energy sent as whole Wh, rounded down)
    kept = [(math.floor(p["energy_wh"]), p["power_w"]) for p in curve["points"]]
    assert len(kept) == len(sent) >= 4
    for (energy, power), (sent_energy, sent_power) in zip(kept, sent, strict=True):
        assert energy == sent_energy and power == pytest.approx(sent_power, abs=0.5)
    assert max(p for _, p in kept) > 1000.0 and not curve["running"] and curve["connector"] == 1

    plot = evsectl(rig, "sessions", "--plot", number)
    assert plot.returncode == 0, plot.stderr
    assert f"session {number}, connector 1" in plot.stdout and "minutes since the start" in plot.stdout
    assert "\x1b" not in plot.stdout and max(len(line) for line in plot.stdout.splitlines()) <= 80  # no TTY
    assert f"{len(kept)} points kept" in plot.stdout
    missing = evsectl(rig, "sessions", "--plot", "999")
    assert missing.returncode == 1 and "no session 999" in missing.stderr
