"""evsectl against a running daemon (simulator + back office + agent as processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from agent.diag.cli import EXIT_PERMISSION, CtlError, request
from tests.integration.harness import CARD, Rig


def evsectl(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    sock = str(rig.state_dir / "evsectl.sock")
    return subprocess.run([str(Path(sys.executable).parent / "evsectl"), "--socket", sock, *args],
                          capture_output=True, text=True, timeout=20)


async def test_evsectl_not_running_exit_code(tmp_path: Path) -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "evsectl"), "--socket",
                             str(tmp_path / "none.sock"), "status"], capture_output=True, text=True)
    assert result.returncode == 3
    assert "not running" in result.stderr


async def test_evsectl_technician_flow(rig: Rig) -> None:
    await asyncio.sleep(0.5)
    status = evsectl(rig, "status")
    assert status.returncode == 0, status.stderr
    assert "back office online" in status.stdout
    data = json.loads(evsectl(rig, "--json", "status").stdout)
    assert set(data["connectors"]) == {"1", "2"}
    meter = evsectl(rig, "meter")
    assert "fresh" in meter.stdout
    rig.plug(1)
    await rig.wait_status(1, "Preparing")
    card = evsectl(rig, "card", CARD)
    assert card.returncode == 0, card.stderr
    await rig.wait_call("StartTransaction")
    await rig.wait_status(1, "Charging")
    stop = evsectl(rig, "stop", "1")
    assert stop.returncode == 0, stop.stderr
    stopped = await rig.wait_call("StopTransaction")
    assert stopped["payload"]["reason"] == "Local"
    sessions = json.loads(evsectl(rig, "--json", "sessions").stdout)
    assert sessions[0]["reason"] == "Local" and sessions[0]["id_tag"] == CARD
    queue = json.loads(evsectl(rig, "--json", "queue").stdout)
    assert "stats" in queue
    config = evsectl(rig, "config", "get", "MeterValueSampleInterval")
    assert "MeterValueSampleInterval" in config.stdout
    assert "AuthorizationKey" not in evsectl(rig, "config", "get").stdout
    bad = evsectl(rig, "stop", "2")
    assert bad.returncode == 1 and "no transaction" in bad.stderr


async def test_evsectl_selftest_log_and_bundle(rig: Rig) -> None:
    await asyncio.sleep(0.5)
    result = await asyncio.to_thread(evsectl, rig, "--json", "selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["1"]["contactor"]["ok"] and report["1"]["lock"]["ok"] and report["1"]["meter"]["ok"]
    assert report["1"]["controller"]["ok"] and report["2"]["contactor"]["ok"]
    assert report["estop"]["ok"]
    # a welded contactor fails the click test, and the exit code says so
    rig.fault("contactor", "welded", connector=2)
    failed = await asyncio.to_thread(evsectl, rig, "selftest", "2")
    assert failed.returncode == 1 and "FAIL" in failed.stdout
    rig.fault("contactor", "welded", on=False, connector=2)
    # refused while an EV is plugged in: the contactor is never closed onto a vehicle outside a session
    rig.plug(1)
    await rig.wait_status(1, "Preparing")
    refused = await asyncio.to_thread(evsectl, rig, "selftest", "1")
    assert refused.returncode == 1 and "plugged" in refused.stderr
    log = evsectl(rig, "log", "-n", "50")
    assert "StatusNotification" in log.stdout  # OCPP frames are in the technician's log
    bundle = json.loads(evsectl(rig, "--json", "bundle").stdout)
    assert Path(bundle["path"]).exists() and bundle["bytes"] > 0


async def test_evsectl_start_and_unlock(rig: Rig) -> None:
    rig.plug(1)
    await rig.wait_status(1, "Preparing")
    started = evsectl(rig, "start", "1", "--id-tag", CARD)
    assert started.returncode == 0 and "Accepted" in started.stdout, started.stdout + started.stderr
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD and start["payload"]["connectorId"] == 1
    await rig.wait_status(1, "Charging")
    unlocked = evsectl(rig, "unlock", "1")
    assert unlocked.returncode == 0 and "Unlocked" in unlocked.stdout, unlocked.stdout + unlocked.stderr
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "UnlockCommand"
    # outside the group: reads are allowed, write commands refused (SO_PEERCRED on the socket)
    for parent in [rig.state_dir, *rig.state_dir.parents]:
        if str(parent) in ("/", "/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)  # let "nobody" reach the socket in the test's tmp dir
    sock = str(rig.state_dir / "evsectl.sock")
    assert await asyncio.to_thread(as_nobody, sock, "status") == "ok"
    assert await asyncio.to_thread(as_nobody, sock, "card") == "permission"


def as_nobody(path: str, command: str) -> str:
    """Send one evsectl request from a forked child running as nobody; 'ok', 'permission' or the error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop every privilege, then ask
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = request(path, command, {"id_tag": CARD})
            os.write(write_end, b"ok" if result is not None else b"none")
        except CtlError as err:
            os.write(write_end, b"permission" if err.code == EXIT_PERMISSION else str(err).encode())
        except BaseException as err:  # report anything to the parent, never run the parent's code
            os.write(write_end, repr(err).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        return fh.read().decode()


async def test_welded_contactor_keeps_the_cable_locked_and_unlock_is_refused(rig: Rig) -> None:
    await rig.start_session(1)
    await rig.wait_status(1, "Charging")
    assert rig.sim_state()["connectors"]["1"]["locked"]
    rig.fault("contactor", "welded")
    rig.card()  # the driver stops: the coil opens, the mirror contact stays closed
    await rig.wait_status(1, "Faulted", error_code="PowerSwitchFailure")
    await asyncio.sleep(1.0)
    assert rig.sim_state()["connectors"]["1"]["locked"], "a possibly live cable was released"
    answer = await rig.cs_call("UnlockConnector", {"connectorId": 1}, timeout=10)
    assert answer["payload"]["status"] == "UnlockFailed", answer
    unlocked = evsectl(rig, "unlock", "1")
    assert "UnlockFailed" in unlocked.stdout and "welded" in unlocked.stdout, unlocked.stdout + unlocked.stderr
    assert rig.sim_state()["connectors"]["1"]["locked"]
    assert "unlock refused" in rig.agent_log()


async def test_selftest_holds_every_connector_out_of_service_while_it_runs(rig: Rig) -> None:
    await asyncio.sleep(0.5)
    seen = {c: len(rig.statuses(c)) for c in (1, 2)}
    selftest = asyncio.create_task(asyncio.to_thread(evsectl, rig, "selftest", "1"))
    await rig.wait_status(1, "Unavailable", since=seen[1])
    await rig.wait_status(2, "Unavailable", since=seen[2])  # the connector not clicked is held too
    answer = await rig.cs_call("RemoteStartTransaction", {"idTag": CARD, "connectorId": 2}, timeout=10)
    assert answer["payload"]["status"] == "Rejected", answer
    result = await selftest
    assert result.returncode == 0, result.stdout + result.stderr
    await rig.wait_status(1, "Available", since=seen[1])
    await rig.wait_status(2, "Available", since=seen[2])
    assert not rig.calls("StartTransaction")


async def test_selftest_is_refused_when_a_plug_state_is_unknown(rig_factory: object) -> None:
    rig: Rig = await rig_factory(start=False)  # type: ignore[operator]
    await rig.start_sim()
    rig.fault("dc", "silent", connector=2)  # the AC pilot board never answers: plugged or not is unknown
    rig.start_agent()
    await rig.office.wait_for("BootNotification", timeout=20)
    await asyncio.sleep(1.5)
    refused = await asyncio.to_thread(evsectl, rig, "selftest", "2")
    assert refused.returncode == 1 and "plug state unknown" in refused.stderr, refused.stdout + refused.stderr
    assert not rig.sim_state()["connectors"]["2"]["contactor_closed"]
