"""OCPP 2.0.1 L02 and N01 end to end: the agent process (`ocpp_version = "2.0.1"`) against the local 2.0.1 back
office, which validates every frame against the official schemas; files come from and go to a local HTTP server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.integration.harness import CP_ID, Rig
from tests.integration.test_tc_firmware import firmware_archive, http_root  # noqa: F401 (the fixture)

V201 = "2.0.1"


async def start_rig(rig_factory: Any, tmp_path: Path) -> tuple[Rig, Path]:
    installed = tmp_path / "installed"
    installed.mkdir(exist_ok=True)
    script = tmp_path / "install-firmware.sh"
    script.write_text(f"#!/bin/sh\ncp \"$1\" {installed}/\n")
    script.chmod(0o755)
    rig: Rig = await rig_factory(start=False, ocpp_version=V201)
    await rig.start_sim()
    with open(rig.agent_config, "a") as fh:
        fh.write(f'\n[firmware]\ninstaller = "{script} {{file}}"\n')
    rig.start_agent()
    await rig.office.wait_for("BootNotification", timeout=20)
    await rig.wait_status(1, "Available")
    assert rig.office.version_of(CP_ID) == V201
    return rig, installed


def notifications(rig: Rig, action: str) -> list[dict[str, Any]]:
    return [m["payload"] for m in rig.calls(action)]


async def wait_status(rig: Rig, action: str, final: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    try:
        await rig.office.wait_for(lambda: final in [p["status"] for p in notifications(rig, action)], timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"{action}: {notifications(rig, action)}\n{rig.agent_log()[-3000:]}") from None
    return notifications(rig, action)


async def test_l02_n01_firmware_update_and_log_upload_over_2_0_1(rig_factory: Any, tmp_path: Path,
                                                                 http_root: tuple[str, Path]) -> None:  # noqa: F811
    base, root = http_root
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    (root / "logs").mkdir()
    rig, installed = await start_rig(rig_factory, tmp_path)

    log = await rig.cs_call("GetLog", {"logType": "SecurityLog", "requestId": 5,
                                       "log": {"remoteLocation": f"{base}/logs"}})
    assert log["payload"]["status"] == "Accepted", log
    seen = await wait_status(rig, "LogStatusNotification", "Uploaded")
    assert seen == [{"status": "Uploading", "requestId": 5}, {"status": "Uploaded", "requestId": 5}]
    assert "StartupOfTheDevice" in (root / "logs" / log["payload"]["filename"]).read_text()

    boots = len(rig.calls("BootNotification"))
    update = await rig.cs_call("UpdateFirmware", {"requestId": 9, "firmware": {
        "location": f"{base}/fw.tar.gz", "retrieveDateTime": "2020-01-01T00:00:00Z"}})
    assert update["payload"]["status"] == "Accepted", update
    seen = await wait_status(rig, "FirmwareStatusNotification", "Installed")
    assert seen == [{"status": s, "requestId": 9} for s in ("Downloading", "Downloaded", "Installing", "Installed")]
    assert (installed / "fw.tar.gz").read_bytes() == firmware_archive()
    await rig.office.wait_for(lambda: any(p["type"] == "FirmwareUpdated"
                                          for p in notifications(rig, "SecurityEventNotification")), timeout=10)
    assert rig.agent is not None
    assert await asyncio.to_thread(rig.agent.wait, 20) == 0  # restarts into the new version
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1)
    assert rig.office.violations == []
