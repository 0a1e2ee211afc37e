"""Integration rig: the simulator and the agent as real processes, the back office in the test's loop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from simulator.backoffice import BackOffice
from simulator.httpjson import http_json

HERE = Path(__file__).parent
SIM_CONFIG = HERE / "sim.toml"
CP_ID = "CP-TEST-1"
CARD = "0F00A1B2C3"  # what the simulated RDM6300 reader reports for this UID
# More cards (the reader reports 5-byte UIDs as 10 hex digits); their back-office status is set in conftest.
BLOCKED = "0B0000B10C"
EXPIRED = "0E0000E0E0"
UNKNOWN = "0D0000DEAD"
LOCAL = "0C0000AA01"  # Invalid for the back office unless a test says otherwise
START_TIMEOUT_S = 20.0
RECONNECT_MAX_S = 1.5
CARD_GAP_S = 1.5  # > the reader driver's 1 s debounce plus the reader's repeats


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Rig:
    """One simulated charger, one local back office, one agent process."""

    def __init__(self, workdir: Path, office: BackOffice, ocpp: dict[str, Any] | None = None,
                 hardware: dict[str, float] | None = None, ocpp_version: str = "1.6",
                 sim_config: Path | None = None) -> None:
        self.workdir = workdir
        # the simulated charger: another file (a scenario) by argument, or set by a test before start()
        self.sim_config = sim_config or SIM_CONFIG
        self.office = office
        self.ocpp_version = ocpp_version  # what the agent's config asks for ([backoffice] ocpp_version)
        self.ocpp = dict(ocpp or {})
        self.hardware = dict(hardware or {})  # [hardware] keys of the agent config (silence timeouts ...)
        self.backoffice_url: str | None = None  # another way to the back office (a proxy), if a test sets one
        self.sim_args: list[str] = []  # more `evse-sim hardware` options (e.g. --rfid-model pn532)
        self.reconnect_max_s = RECONNECT_MAX_S
        self.sim: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_config = workdir / "agent.toml"
        self.state_dir = workdir / "state"
        self.control = ""
        self.summary: dict[str, Any] = {}
        self._last_card = 0.0
        # The agent's kernel boot id comes from this file: a power cut is a SIGKILL plus a new boot id.
        self.boot_id_file = workdir / "kernel-boot-id"
        self.boot_id_file.write_text(uuid.uuid4().hex + "\n")

    # ---- processes ------------------------------------------------------------------------------

    async def start_sim(self) -> None:
        ready = self.workdir / "sim-ready.json"
        log = open(self.workdir / "sim.log", "ab")  # noqa: SIM115 - the process owns it
        self.sim = subprocess.Popen(
            [_bin("evse-sim"), "hardware", "--config", str(self.sim_config), "--write-agent-config",
             str(self.agent_config), "--state-dir", str(self.state_dir), "--ready-file", str(ready),
             "--backoffice-url", self.backoffice_url or self.office.url(), *self.sim_args],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.sim.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start: {(self.workdir / 'sim.log').read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        self.summary = json.loads(ready.read_text())
        self.control = self.summary["control"]
        if self.sim_config != SIM_CONFIG:  # a scenario names its own charger: the tests know it as CP_ID
            text = self.agent_config.read_text()
            self.agent_config.write_text(re.sub(r'(?m)^id = ".*"$', f'id = "{CP_ID}"', text, count=1))
        if self.ocpp_version != "1.6":
            text = self.agent_config.read_text()
            assert 'ocpp_version = "1.6"' in text, "the generated agent config names no OCPP version"
            self.agent_config.write_text(text.replace('ocpp_version = "1.6"', f'ocpp_version = "{self.ocpp_version}"'))
        # Offline tests wait for the reconnect: cap the backoff lower than the generated config does.
        text = self.agent_config.read_text()
        self.agent_config.write_text(text.replace("reconnect_max_s = 5.0", f"reconnect_max_s = {self.reconnect_max_s}"))
        if self.hardware:
            text = self.agent_config.read_text()
            extra = "".join(f"{key} = {value}\n" for key, value in self.hardware.items())
            assert "[hardware]\n" in text, "the generated agent config has no [hardware] table"
            self.agent_config.write_text(text.replace("[hardware]\n", "[hardware]\n" + extra, 1))
        if self.ocpp:
            with open(self.agent_config, "a") as fh:
                fh.write("\n[ocpp]\n")
                for key, value in self.ocpp.items():
                    text = ("true" if value else "false") if isinstance(value, bool) else (
                        str(value) if isinstance(value, int) else json.dumps(value))
                    fh.write(f"{key} = {text}\n")

    def start_agent(self) -> None:
        log = open(self.workdir / "agent.log", "ab")  # noqa: SIM115
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "EVSE_AGENT_BOOT_ID_FILE": str(self.boot_id_file)}
        self.agent = subprocess.Popen([_bin("evse-agent"), "--config", str(self.agent_config), "-v"],
                                      stdout=log, stderr=subprocess.STDOUT, env=env)

    async def start(self) -> None:
        await self.start_sim()
        self.start_agent()
        await self.office.wait_for("BootNotification", timeout=START_TIMEOUT_S, cp_id=CP_ID)
        await self.wait_status(1, "Available")

    def kill_agent(self) -> None:
        """SIGKILL: a power cut as far as the software can tell."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait(10)

    def power_cut(self) -> None:
        """The power goes: the process dies at once and the system boots again (a new kernel boot id)."""
        self.kill_agent()
        self.boot_id_file.write_text(uuid.uuid4().hex + "\n")

    async def stop_agent(self) -> int | None:
        if self.agent is None:
            return None
        if self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            for _ in range(200):
                if self.agent.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                self.agent.kill()
        return self.agent.wait(10)

    async def close(self) -> None:
        await self.stop_agent()
        if self.sim is not None and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            try:
                self.sim.wait(10)
            except subprocess.TimeoutExpired:
                self.sim.kill()

    def agent_log(self) -> str:
        path = self.workdir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- the simulated world --------------------------------------------------------------------

    def sim_call(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        return http_json(self.control, method, path, body)

    def plug(self, connector: int = 1) -> None:
        self.sim_call("/plug", {"connector": connector})

    def unplug(self, connector: int = 1) -> None:
        self.sim_call("/unplug", {"connector": connector})

    def card(self, uid: str = CARD) -> None:
        # A real reader repeats while the card lies on it; the driver debounces 1 s: take it away first.
        wait = self._last_card + CARD_GAP_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.sim_call("/card", {"uid": uid})
        self._last_card = time.monotonic()

    def fault(self, device: str, fault: str, on: bool = True, connector: int = 1, value: Any = None) -> None:
        self.sim_call("/fault", {"connector": connector, "device": device, "fault": fault, "on": on,
                                 "value": value})

    def estop(self, pressed: bool) -> None:
        self.sim_call("/estop", {"pressed": pressed})

    def sim_state(self) -> dict[str, Any]:
        return self.sim_call("/state", method="GET")

    # ---- what the back office saw --------------------------------------------------------------

    def statuses(self, connector: int) -> list[dict[str, Any]]:
        """The connector's StatusNotifications; a 2.0.1 one (EVSE n, its connector 1) reads as status/errorCode."""
        out = []
        for m in self.office.messages(CP_ID, "StatusNotification"):
            payload = m["payload"]
            if "connectorStatus" in payload:
                if payload.get("evseId") == connector:
                    out.append({"status": payload["connectorStatus"], "errorCode": "NoError", **payload})
            elif payload["connectorId"] == connector:
                out.append(payload)
        return out

    async def wait_status(self, connector: int, status: str, timeout: float = 15.0,
                          error_code: str | None = None, since: int = 0) -> dict[str, Any]:
        """Wait for a status among the connector's StatusNotifications from index `since` on."""
        def found() -> dict[str, Any] | None:
            for payload in reversed(self.statuses(connector)[since:]):
                if payload["status"] == status and (error_code is None or payload["errorCode"] == error_code):
                    return payload
            return None

        try:
            return await self.office.wait_for(found, timeout=timeout)
        except TimeoutError:
            seen = [(p["status"], p["errorCode"]) for p in self.statuses(connector)]
            raise AssertionError(f"connector {connector} never reported {status}; saw {seen}\n"
                                 f"{self.agent_log()[-3000:]}") from None

    async def wait_call(self, action: str, count: int = 1, timeout: float = 15.0) -> dict[str, Any]:
        try:
            return await self.office.wait_for(action, timeout=timeout, cp_id=CP_ID, count=count)
        except TimeoutError:
            raise AssertionError(f"no {action} #{count}\n{self.agent_log()[-3000:]}") from None

    def calls(self, action: str) -> list[dict[str, Any]]:
        return self.office.messages(CP_ID, action)

    async def cs_call(self, action: str, payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        result = await self.office.call(CP_ID, action, payload or {}, **kw)
        return result

    def contactor_closed(self, connector: int = 1) -> bool:
        return bool(self.sim_state()["connectors"][str(connector)]["contactor_closed"])

    def meter_wh(self, connector: int = 1) -> float:
        """The energy register as a Modbus client reads it from the simulated meter."""
        return float(self.sim_state()["connectors"][str(connector)]["meter"]["register_wh"])

    async def wait_sim(self, predicate: Any, what: str, timeout: float = 15.0) -> None:
        """Wait until predicate(sim_state()) is true (for what the back office cannot see while offline)."""
        deadline = time.monotonic() + timeout
        while not predicate(self.sim_state()):
            if time.monotonic() > deadline:
                raise AssertionError(f"simulator never reached: {what}\n{self.agent_log()[-3000:]}")
            await asyncio.sleep(0.1)

    async def wait_contactor(self, closed: bool, connector: int = 1, timeout: float = 15.0) -> None:
        await self.wait_sim(lambda s: s["connectors"][str(connector)]["contactor_closed"] == closed,
                            f"contactor {connector} {'closed' if closed else 'open'}", timeout)

    async def wait_connected(self, timeout: float = 20.0) -> None:
        """Wait until the agent is connected again and its boot was answered."""
        try:
            await self.office.wait_for(lambda: self.office.connected(CP_ID), timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"agent did not reconnect\n{self.agent_log()[-3000:]}") from None

    async def send_local_list(self, entries: dict[str, str], version: int = 1) -> None:
        """A full SendLocalList; entries map idTag -> status."""
        result = await self.cs_call("SendLocalList", {
            "listVersion": version, "updateType": "Full",
            "localAuthorizationList": [{"idTag": tag, "idTagInfo": {"status": status}}
                                       for tag, status in entries.items()]})
        assert result == {"status": "result", "payload": {"status": "Accepted"}}, result

    def tx_messages(self, transaction_id: int) -> list[dict[str, Any]]:
        """MeterValues and StopTransaction of one transaction, in the order the back office received them."""
        return [m for m in self.office.messages(CP_ID)
                if m["action"] in ("MeterValues", "StopTransaction")
                and m["payload"].get("transactionId") == transaction_id]

    async def start_session(self, connector: int = 1, uid: str = CARD) -> dict[str, Any]:
        """Card then plug; returns the StartTransaction call as the back office saw it."""
        count = len(self.calls("StartTransaction")) + 1
        self.card(uid)
        self.plug(connector)
        return await self.wait_call("StartTransaction", count=count)
