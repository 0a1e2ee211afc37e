"""Stop reasons and times that tell the truth: a decided stop survives a power cut, and a transaction left
open at boot is told apart by how the previous run ended (clean stop, crash, power cut)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from agent.ocpp.v16.metering import billed_wh
from tests.integration.harness import Rig


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


async def _charging(rig: Rig) -> int:
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    return int(start["response"]["payload"]["transactionId"])


async def _restart_and_stop(rig: Rig) -> dict[str, Any]:
    boots = len(rig.calls("BootNotification"))
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    return await rig.wait_call("StopTransaction", timeout=20)


async def test_stop_reason_is_durable_the_moment_the_stop_is_decided(rig: Rig) -> None:
    tx = await _charging(rig)
    await asyncio.sleep(1.0)
    decided = time.time()
    answer = await rig.cs_call("RemoteStopTransaction", {"transactionId": tx}, timeout=10)
    assert answer["payload"]["status"] == "Accepted"
    # inside the window where the DC side ramps down and the meter settles: StopTransaction is not queued yet
    await asyncio.sleep(0.2)
    rig.power_cut()
    assert not rig.calls("StopTransaction")
    await rig.wait_contactor(False)
    register = rig.meter_wh()
    stop = await _restart_and_stop(rig)
    assert stop["payload"]["transactionId"] == tx
    assert stop["payload"]["reason"] == "Remote", stop["payload"]  # not PowerLoss
    assert abs(_epoch(stop["payload"]["timestamp"]) - decided) < 1.0, stop["payload"]  # not the boot time
    assert stop["payload"]["meterStop"] == billed_wh(register)
    assert len(rig.calls("StopTransaction")) == 1


async def test_process_killed_while_the_system_stays_up_stops_with_reason_other(rig: Rig) -> None:
    tx = await _charging(rig)
    rig.kill_agent()  # SIGKILL, OOM, a watchdog kill: the kernel boot id does not change
    await rig.wait_contactor(False)
    stop = await _restart_and_stop(rig)
    assert (stop["payload"]["transactionId"], stop["payload"]["reason"]) == (tx, "Other")
    assert "the agent process died while the system stayed up" in rig.agent_log()


async def test_clean_stop_of_the_agent_closes_the_transaction_with_reason_reboot(rig: Rig) -> None:
    tx = await _charging(rig)
    stopped = time.time()
    assert await rig.stop_agent() == 0  # SIGTERM from systemd
    stop = await _restart_and_stop(rig)
    assert (stop["payload"]["transactionId"], stop["payload"]["reason"]) == (tx, "Reboot")
    assert abs(_epoch(stop["payload"]["timestamp"]) - stopped) < 2.0, stop["payload"]


async def test_power_cut_stops_with_reason_power_loss(rig: Rig) -> None:
    tx = await _charging(rig)
    rig.power_cut()
    await rig.wait_contactor(False)
    register = rig.meter_wh()
    stop = await _restart_and_stop(rig)
    assert (stop["payload"]["transactionId"], stop["payload"]["reason"]) == (tx, "PowerLoss")
    assert stop["payload"]["meterStop"] == billed_wh(register)
    assert "the system booted without a clean shutdown" in rig.agent_log()
