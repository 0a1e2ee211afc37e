"""`evse-sim demo` (what `make run` shows): simulator, back office and agent as three processes, one session.

A card is presented, a CCS EV plugs in and charges with live progress; the back office goes away for a
while mid-session and comes back; the driver stops with the same card and unplugs. Then the demo prints
what the back office received and checks that meterStop equals the meter's register. Exit 0 on success.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from agent.ocpp.v16.metering import billed_wh
from simulator.backoffice_client import BackOfficeClient
from simulator.httpjson import http_json

CP_ID = "CP-SIM-001"
CARD_UID = "0F00A1B2C3"  # the idTag the simulated RDM6300 reader reports
START_TIMEOUT_S = 30.0
DEMO_OCPP = {"MeterValueSampleInterval": 2, "ClockAlignedDataInterval": 0, "HeartbeatInterval": 30,
             "StopTxnSampledData": "Energy.Active.Import.Register,SoC"}


class Demo:
    """The three processes and the script that drives them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.office: BackOfficeClient | None = None
        self.sim_control = ""
        self.bin = Path(sys.executable).parent

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[name] = proc
        return proc

    def _wait_file(self, path: Path, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not path.exists() or not path.read_text().strip():
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {self.workdir / (name + '.log')}")
            time.sleep(0.05)

    def start(self) -> None:
        """Start the back office, the simulated hardware and the agent."""
        bo_ready = self.workdir / "backoffice.json"
        self._spawn("backoffice", [str(self.bin / "evse-sim"), "backoffice", "--port", "0", "--control-port",
                                   "0", "--id-tag", f"{CARD_UID}=Accepted", "--log",
                                   str(self.workdir / "backoffice-frames.jsonl")])
        # the back office prints one JSON line with its ports into its log
        deadline = time.monotonic() + START_TIMEOUT_S
        info: dict[str, Any] | None = None
        while info is None:
            for line in (self.workdir / "backoffice.log").read_text(errors="replace").splitlines():
                if line.startswith("{") and "ocpp_url" in line:
                    info = json.loads(line)
            if info is None:
                if self.procs["backoffice"].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"back office did not start; see {self.workdir / 'backoffice.log'}")
                time.sleep(0.05)
        bo_ready.write_text(json.dumps(info))
        self.office = BackOfficeClient(f"http://127.0.0.1:{info['control_port']}")
        scenario = resources.files("simulator") / "scenarios" / "demo.toml"
        agent_cfg = self.workdir / "agent.toml"
        sim_ready = self.workdir / "sim.json"
        self._spawn("simulator", [str(self.bin / "evse-sim"), "hardware", "--config", str(scenario),
                                  "--write-agent-config", str(agent_cfg), "--state-dir",
                                  str(self.workdir / "state"), "--backoffice-url", info["ocpp_url"],
                                  "--ready-file", str(sim_ready)])
        self._wait_file(sim_ready, "simulator")
        self.sim_control = json.loads(sim_ready.read_text())["control"]
        with open(agent_cfg, "a") as fh:
            fh.write("\n[ocpp]\n")
            for key, value in DEMO_OCPP.items():
                fh.write(f"{key} = {json.dumps(value)}\n")
        self._spawn("agent", [str(self.bin / "evse-agent"), "--config", str(agent_cfg)])
        self._until(lambda: self._calls("BootNotification"), "the agent's BootNotification")

    def sim(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return http_json(self.sim_control, "POST" if body is not None else "GET", path, body)

    def _calls(self, action: str) -> list[dict[str, Any]]:
        assert self.office is not None
        return [m for m in self.office.messages(cp_id=CP_ID, action=action) if m.get("response")]

    def _until(self, predicate: Any, what: str, timeout: float = START_TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}; see {self.workdir}/{name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; logs in {self.workdir}")
            time.sleep(0.2)

    def status_of(self, connector: int) -> str:
        assert self.office is not None
        entry = self.office.status().get("connectors", {}).get(f"{CP_ID}/{connector}") or {}
        return str(entry.get("status", "?"))

    def progress(self, seconds: float, note: str = "") -> None:
        """Print one line a second: status, power, energy, SoC."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            state = self.sim("/state")["connectors"]["1"]
            link = "online " if self.office and self.office.connected(CP_ID) else "OFFLINE"
            print(f"  [{link}] status {self.status_of(1):<13} power {state['power_w'] / 1000:6.1f} kW  "
                  f"energy {state['ev']['energy_in_wh'] / 1000:6.3f} kWh  SoC {state['ev']['soc_pct']:5.1f} %"
                  f"  {note}", flush=True)
            time.sleep(1.0)

    def play(self, charge_s: float, outage_s: float) -> bool:
        """The session; returns True when the back office's ledger matches the meter."""
        assert self.office is not None
        print(f"agent booted; back office at {self.office.base_url}; simulator at {self.sim_control}")
        print(f"1. card {CARD_UID} presented at the reader")
        self.sim("/card", {"uid": CARD_UID})
        time.sleep(0.5)
        print("2. CCS EV plugs into connector 1")
        self.sim("/plug", {"connector": 1})
        self._until(lambda: self._calls("StartTransaction"), "StartTransaction")
        self._until(lambda: self.status_of(1) == "Charging", "Charging")
        self.progress(charge_s / 2)
        print(f"3. the back office goes away for {outage_s:.0f} s (charging goes on, messages are queued)")
        self.office.refuse(outage_s)
        self.progress(outage_s, "back office down")
        self._until(lambda: self.office is not None and self.office.connected(CP_ID), "reconnect", timeout=60)
        print("4. the agent is back online and drains its queue")
        self.progress(charge_s / 2)
        print("5. the driver presents the same card to stop, then unplugs")
        self.sim("/card", {"uid": CARD_UID})
        self._until(lambda: self._calls("StopTransaction"), "StopTransaction")
        self.sim("/unplug", {"connector": 1})
        self._until(lambda: self.status_of(1) == "Available", "Available")
        return self.report()

    def report(self) -> bool:
        """Print what the back office received and check it against the meter."""
        assert self.office is not None
        start = self._calls("StartTransaction")[-1]
        stop = self._calls("StopTransaction")[-1]
        tx_id = start["response"]["payload"]["transactionId"]
        values = [m for m in self._calls("MeterValues") if m["payload"].get("transactionId") == tx_id]
        stamps = [mv["timestamp"] for m in values for mv in m["payload"]["meterValue"]]
        meter_wh = self.sim("/state")["connectors"]["1"]["meter"]["register_wh"]
        meter_stop = stop["payload"]["meterStop"]
        energy = meter_stop - start["payload"]["meterStart"]
        violations = self.office.violations()
        ok = (meter_stop == billed_wh(meter_wh) and stop["payload"]["transactionId"] == tx_id
              and stamps == sorted(stamps) and not violations)
        print("\nwhat the back office received:")
        print(f"  StartTransaction  transactionId {tx_id}, idTag {start['payload']['idTag']}, "
              f"meterStart {start['payload']['meterStart']} Wh")
        print(f"  MeterValues       {len(values)} messages, {len(stamps)} samples, in chronological order: "
              f"{stamps == sorted(stamps)}")
        print(f"  StopTransaction   reason {stop['payload']['reason']}, meterStop {meter_stop} Wh "
              f"(meter register {meter_wh:.1f} Wh: {'equal' if meter_stop == billed_wh(meter_wh) else 'DIFFERENT'})")
        print(f"  energy delivered  {energy / 1000:.3f} kWh; schema violations: {len(violations)}")
        print("demo OK" if ok else "demo FAILED")
        return ok

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of `evse-sim demo`."""
    temp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="evse-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir)
    ok = False
    try:
        demo.start()
        ok = demo.play(args.charge_s, args.outage_s)
        if args.stay:
            print(f"\nall three keep running (logs in {workdir}); Ctrl-C to stop")
            print(f"  simulator control  {demo.sim_control}/state   (POST /plug /unplug /card /fault /estop)")
            print(f"  back office control {demo.office.base_url if demo.office else '?'}/status")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except (RuntimeError, OSError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        for name in demo.procs:
            log = workdir / f"{name}.log"
            if log.exists():
                print(f"--- last lines of {log}", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    finally:
        demo.stop()
        if temp and ok and not args.stay:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1
