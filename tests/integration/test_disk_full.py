"""A full state disk during a session: the main loop goes on, safety does not wait for the disk, the records
that could not be written wait in memory and reach the back office once space returns."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Rig
from tests.integration.test_evsectl import evsectl

SECOND = "0A0000B0B0"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                reason="mounting a small tmpfs needs root")


def _fill(directory: Path) -> Path:
    """Write a file until the file system says ENOSPC."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    # unbuffered: a buffered file keeps the bytes the full disk refused and raises ENOSPC again on close
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    return filler


async def test_full_disk_during_a_session_keeps_the_loop_and_loses_nothing(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 0},
                                 start=False)
    rig.state_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(rig.state_dir)], check=True)
    try:
        await rig.start()
        start = await rig.start_session()
        tx = int(start["response"]["payload"]["transactionId"])
        await rig.wait_status(1, "Charging")
        await asyncio.sleep(1.5)
        filler = _fill(rig.state_dir)
        last: list[Any] = []

        def disk_full_shown() -> bool:
            # an answer cut short while the daemon writes on a full disk is "not yet": it must come within the wait
            result = evsectl(rig, "--json", "status")
            last[:] = [result]
            try:
                return bool(json.loads(result.stdout)["storage"]["disk_full"])
            except ValueError:
                return False

        try:
            await rig.office.wait_for(disk_full_shown, timeout=15)
        except TimeoutError:
            raise AssertionError(f"evsectl status never showed the full disk: {last[0].stdout[-500:]!r} "
                                 f"{last[0].stderr[-1500:]!r}\n{rig.agent_log()[-3000:]}") from None
        status = evsectl(rig, "status")
        assert status.returncode == 0 and "STATE DISK FULL" in status.stdout, status.stdout + status.stderr
        await asyncio.sleep(2.0)
        assert rig.agent is not None and rig.agent.poll() is None, rig.agent_log()[-3000:]
        rig.plug(2)  # a second driver arrives: no session may start without a durable start record
        rig.office.set_id_tag(SECOND, "Accepted")
        rig.card(SECOND)
        await asyncio.sleep(2.0)
        assert not rig.sim_state()["connectors"]["2"]["contactor_closed"]
        assert rig.contactor_closed(1)  # the running session goes on
        rig.card()  # the driver stops: the contactor opens without the disk
        await rig.wait_contactor(False)
        await asyncio.sleep(1.5)
        assert not [m for m in rig.calls("StopTransaction") if m["payload"]["transactionId"] == tx]
        filler.unlink()  # space returns
        stop = await rig.wait_call("StopTransaction", timeout=20)
        assert stop["payload"]["transactionId"] == tx and stop["payload"]["reason"] == "Local"
        await asyncio.sleep(2.0)
        # nothing for a transaction the back office never saw (no StopTransaction with transactionId 0)
        assert [m["payload"]["transactionId"] for m in rig.calls("StopTransaction")] == [tx]
        assert len(rig.calls("StartTransaction")) == 1
        assert stop["payload"]["meterStop"] > start["payload"]["meterStart"]
        values = [m for m in rig.calls("MeterValues") if m["payload"].get("transactionId") == tx]
        assert len(values) >= 4, len(values)  # the samples taken while the disk was full arrived too
        stamps = [v["payload"]["meterValue"][0]["timestamp"] for v in values]
        assert stamps == sorted(stamps)
        await rig.office.wait_for(lambda: "state disk was full" in evsectl(rig, "status").stdout, timeout=10)
        assert "MemoryExhaustion" in rig.agent_log()
        assert rig.agent.poll() is None
    finally:
        await rig.close()
        subprocess.run(["umount", "-l", str(rig.state_dir)], check=False)
