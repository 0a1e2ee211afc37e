"""`evse-sim demo` (what `make run` shows): simulator, back office and agent as three processes, one session.

A card is presented, a CCS EV plugs in and charges with live progress; the back office goes away for a
while mid-session and comes back; the driver stops with the same card and unplugs. Then the demo prints
what the back office received and checks it against the meter's register. Exit 0 on success.

The story is told once (`Demo.play`); what differs between OCPP 1.6 and 2.0.1 (how the agent is configured, where
a connector's status and the transaction show up at the back office, the ledger and its checks) is a `Dialect`.
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
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from agent.clock import parse_iso
from agent.metering import billed_wh
from agent.ocpp.signed import decode
from drivers.errors import DriverError
from drivers.meters import ocmf
from simulator.backoffice_client import BackOfficeClient
from simulator.httpjson import http_json

CP_ID = "CP-SIM-001"  # the charge point of scenarios/demo.toml; another scenario names its own
SCENARIOS = {False: "demo.toml", True: "dc_signed.toml"}  # --signed: a CCS charger metered by a signing LEM DCBM
CARD_UID = "0F00A1B2C3"  # the idTag the simulated RDM6300 reader reports
PN532_CARD_UID = "04A2B3C4D5E680"  # a 7-byte NTAG on the simulated PN532 (`--rfid pn532`)
CARDS = {"rdm6300": CARD_UID, "pn532": PN532_CARD_UID}
START_TIMEOUT_S = 30.0
DEMO_OCPP = {"MeterValueSampleInterval": 2, "ClockAlignedDataInterval": 0, "HeartbeatInterval": 30,
             "StopTxnSampledData": "Energy.Active.Import.Register,SoC"}
# the same sampling as DEMO_OCPP in the 2.0.1 vocabulary, set by the back office (the [ocpp] table is 1.6 keys)
DEMO_VARIABLES_201 = {("SampledDataCtrlr", "TxUpdatedInterval"): "2",
                      ("SampledDataCtrlr", "TxEndedMeasurands"): "Energy.Active.Import.Register,SoC"}
ENERGY = "Energy.Active.Import.Register"
OUTAGE_MARGIN_S = 1.0  # the agent sees the link drop (and come back) a little after the back office acts


class Dialect:
    """What the demo does and reads differently per OCPP version; the story itself is `Demo.play`."""

    version = ""
    start_action = ""  # the message that tells the back office a transaction started
    stop_action = ""
    card = CARD_UID  # the card the driver presents (the demo's reader decides)

    def configure(self, agent_cfg: Path) -> None:
        """Add the demo's sampling to the agent config before the agent starts."""

    def after_boot(self, demo: Demo) -> None:
        """Configure the booted agent from the back office."""

    def status_of(self, demo: Demo, connector: int) -> str:
        """The connector's last status at the back office."""
        raise NotImplementedError

    def started(self, demo: Demo) -> bool:
        """True once the back office answered the transaction's start."""
        return bool(demo.calls(self.start_action))

    def charging(self, demo: Demo) -> bool:
        """True once the back office was told energy flows."""
        raise NotImplementedError

    def stopped(self, demo: Demo) -> bool:
        """True once the back office answered the transaction's end."""
        raise NotImplementedError

    def report(self, demo: Demo, meter_wh: float, outage: tuple[float, float]) -> bool:
        """Print what the back office received; True when it matches the meter (outage: wall-clock window)."""
        raise NotImplementedError


class V16(Dialect):
    """OCPP 1.6: StartTransaction, MeterValues, StopTransaction with meterStop."""

    version = "1.6"
    start_action = "StartTransaction"

    def configure(self, agent_cfg: Path) -> None:
        with open(agent_cfg, "a") as fh:
            fh.write("\n[ocpp]\n")
            for key, value in DEMO_OCPP.items():
                fh.write(f"{key} = {json.dumps(value)}\n")

    def status_of(self, demo: Demo, connector: int) -> str:
        entry = demo.office_status().get("connectors", {}).get(f"{demo.cp_id}/{connector}") or {}
        return str(entry.get("status", "?"))

    def charging(self, demo: Demo) -> bool:
        return self.status_of(demo, 1) == "Charging"

    def stopped(self, demo: Demo) -> bool:
        return bool(demo.calls("StopTransaction"))

    def report(self, demo: Demo, meter_wh: float, outage: tuple[float, float]) -> bool:
        start = demo.calls("StartTransaction")[-1]
        stop = demo.calls("StopTransaction")[-1]
        tx_id = start["response"]["payload"]["transactionId"]
        values = [m for m in demo.calls("MeterValues") if m["payload"].get("transactionId") == tx_id]
        stamps = [mv["timestamp"] for m in values for mv in m["payload"]["meterValue"]]
        meter_stop = stop["payload"]["meterStop"]
        energy = meter_stop - start["payload"]["meterStart"]
        violations = demo.violations()
        ok = (meter_stop == billed_wh(meter_wh) and stop["payload"]["transactionId"] == tx_id
              and stamps == sorted(stamps) and not violations)
        print(f"  StartTransaction  transactionId {tx_id}, idTag {start['payload']['idTag']}, "
              f"meterStart {start['payload']['meterStart']} Wh")
        print(f"  MeterValues       {len(values)} messages, {len(stamps)} samples, in chronological order: "
              f"{stamps == sorted(stamps)}")
        print(f"  StopTransaction   reason {stop['payload']['reason']}, meterStop {meter_stop} Wh "
              f"(meter register {meter_wh:.1f} Wh: {'equal' if meter_stop == billed_wh(meter_wh) else 'DIFFERENT'})")
        print(f"  energy delivered  {energy / 1000:.3f} kWh; schema violations: {len(violations)}")
        return ok


class V201(Dialect):
    """OCPP 2.0.1: TransactionEvent Started, Updated (seqNo, offline), Ended with the energy register."""

    version = "2.0.1"
    start_action = "TransactionEvent"

    def after_boot(self, demo: Demo) -> None:
        items = [{"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
                 for (c, v), value in DEMO_VARIABLES_201.items()]
        answer = demo.office_call("SetVariables", {"setVariableData": items})
        statuses = [r.get("attributeStatus") for r in (answer.get("payload") or {}).get("setVariableResult", [])]
        if answer.get("status") != "result" or statuses != ["Accepted"] * len(items):
            raise RuntimeError(f"SetVariables of the demo's sampling was not accepted: {answer}")

    def events(self, demo: Demo) -> list[dict[str, Any]]:
        """The answered TransactionEvent payloads, in the order received."""
        return [m["payload"] for m in demo.calls("TransactionEvent")]

    def status_of(self, demo: Demo, connector: int) -> str:
        # 2.0.1 statuses are per EVSE and connector; the demo charger's connector n is EVSE n, connector 1
        status = demo.office_status().get("evse_connectors", {}).get(f"{demo.cp_id}/{connector}/1")
        return str(status or "?")

    def started(self, demo: Demo) -> bool:
        return any(e["eventType"] == "Started" for e in self.events(demo))

    def charging(self, demo: Demo) -> bool:
        return any((e.get("transactionInfo") or {}).get("chargingState") == "Charging" for e in self.events(demo))

    def stopped(self, demo: Demo) -> bool:
        return any(e["eventType"] == "Ended" for e in self.events(demo))

    @staticmethod
    def energy_wh(event: dict[str, Any], context: str) -> int | None:
        """The energy register an event carries in this reading context, in Wh."""
        for value in event.get("meterValue", []):
            for sampled in value["sampledValue"]:
                if sampled.get("measurand", ENERGY) == ENERGY and sampled.get("context") == context:
                    multiplier = (sampled.get("unitOfMeasure") or {}).get("multiplier", 0)
                    return billed_wh(float(sampled["value"]) * 10 ** multiplier)
        return None

    def report(self, demo: Demo, meter_wh: float, outage: tuple[float, float]) -> bool:
        ledger = demo.office_ledger()
        problems: list[str] = list(ledger["problems"])
        ours = [tx for tx, evs in ledger["transactions"].items()
                if any((e.get("idToken") or {}).get("idToken") == self.card for e in evs)]
        if len(ours) != 1:
            print(f"  expected one transaction of card {self.card}, the back office has {len(ours)}")
            return False
        events: list[dict[str, Any]] = []
        for event in ledger["transactions"][ours[0]]:
            if event not in events:  # a resend after a lost answer is the same event, counted once
                events.append(event)
        started, ended = events[0], events[-1]
        updated = [e for e in events if e["eventType"] == "Updated"]
        seq_nos = [e["seqNo"] for e in events]
        # events stamped well inside the outage were queued with no back office: they must say so
        low, high = outage[0] + OUTAGE_MARGIN_S, outage[1] - OUTAGE_MARGIN_S
        queued = [e for e in events if low < (parse_iso(e["timestamp"]) or 0.0) < high]
        offline = [e for e in events if e.get("offline")]
        queued_ok = bool(queued) and all(e.get("offline") is True for e in queued)
        reason = (ended.get("transactionInfo") or {}).get("stoppedReason", "Local")  # Local is the spec's default
        begin_wh = self.energy_wh(started, "Transaction.Begin")
        end_wh = self.energy_wh(ended, "Transaction.End")
        energy_ok = end_wh is not None and end_wh == billed_wh(meter_wh)
        violations = demo.violations()
        ok = (not problems and queued_ok and ended["eventType"] == "Ended" and reason == "Local" and energy_ok
              and not violations)
        print(f"  TransactionEvent  Started  seqNo {started['seqNo']}, transactionId {ours[0]}, "
              f"idToken {started['idToken']['idToken']}, triggerReason {started['triggerReason']}, "
              f"energy {begin_wh} Wh")
        print(f"  TransactionEvent  Updated  {len(updated)} events in the order received:")
        for event in updated:
            sampled = self.energy_wh(event, "Sample.Periodic")
            print(f"    seqNo {event['seqNo']:>3}  {event['triggerReason']:<20} "
                  f"{'' if sampled is None else f'{sampled} Wh':<12}{'offline' if event.get('offline') else ''}")
        print(f"  seqNo             {seq_nos[0]}..{seq_nos[-1]}, without gaps (back office ledger check): "
              f"{'yes' if not problems else 'NO'}")
        print(f"  offline           {len(queued)} events queued during the outage, all offline: true: "
              f"{'yes' if queued_ok else 'NO'} ({len(offline)} offline events in all)")
        print(f"  TransactionEvent  Ended    seqNo {ended['seqNo']}, stoppedReason {reason}, energy {end_wh} Wh "
              f"(meter register {meter_wh:.1f} Wh: {'equal' if energy_ok else 'DIFFERENT'})")
        energy = (end_wh - begin_wh) if end_wh is not None and begin_wh is not None else 0
        print(f"  energy delivered  {energy / 1000:.3f} kWh; schema violations: {len(violations)}")
        for problem in problems:
            print(f"  ledger problem    {problem}")
        return ok


DIALECTS: dict[str, type[Dialect]] = {"1.6": V16, "2.0.1": V201}


def verify_ocmf(text: str, key_hex: str) -> tuple[bool, str]:
    """(verified, by what): pyocmf when installed (the test extra: an implementation that is not ours), else
    the agent's own OCMF codec."""
    try:
        import pyocmf
    except ImportError:
        try:
            return ocmf.verify(ocmf.parse("demo", text), key_hex), "drivers/meters/ocmf.py"
        except DriverError:
            return False, "drivers/meters/ocmf.py"
    try:
        return bool(pyocmf.OCMF.from_string(text, strict=True).verify_signature(key_hex)), "pyocmf"
    except (pyocmf.PyOCMFError, ValueError):
        return False, "pyocmf"


def ocmf_readings(text: str) -> list[tuple[str, float]]:
    """(TX, Wh) of a data set's readings, for display."""
    try:
        payload = json.loads(text.split("|", 1)[1].rsplit("|", 1)[0])
        return [(str(r["TX"]), float(r["RV"]) * (1000.0 if r.get("RU") == "kWh" else 1.0)) for r in payload["RD"]]
    except (ValueError, KeyError, IndexError, TypeError):
        return []


class Demo:
    """The three processes and the script that drives them."""

    def __init__(self, workdir: Path, ocpp_version: str = "1.6", rfid: str = "rdm6300",
                 signed: bool = False) -> None:
        self.workdir = workdir
        self.dialect = DIALECTS[ocpp_version]()
        self.rfid = rfid
        self.card = self.dialect.card = CARDS[rfid]
        self.signed = signed
        self.cp_id = CP_ID
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
        version = self.dialect.version
        bo_ready = self.workdir / "backoffice.json"
        # the back office serves only the demo's version: an agent speaking another one is refused, not served
        self._spawn("backoffice", [str(self.bin / "evse-sim"), "backoffice", "--port", "0", "--control-port",
                                   "0", "--id-tag", f"{self.card}=Accepted", "--ocpp", version, "--log",
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
        scenario = resources.files("simulator") / "scenarios" / SCENARIOS[self.signed]
        agent_cfg = self.workdir / "agent.toml"
        sim_ready = self.workdir / "sim.json"
        self._spawn("simulator", [str(self.bin / "evse-sim"), "hardware", "--config", str(scenario),
                                  "--write-agent-config", str(agent_cfg), "--ocpp-version", version, "--state-dir",
                                  str(self.workdir / "state"), "--backoffice-url", info["ocpp_url"],
                                  "--ready-file", str(sim_ready), "--rfid-model", self.rfid])
        self._wait_file(sim_ready, "simulator")
        self.sim_control = json.loads(sim_ready.read_text())["control"]
        with open(agent_cfg, "rb") as fh:
            self.cp_id = str(tomllib.load(fh)["charge_point"]["id"])
        self.dialect.configure(agent_cfg)
        self._spawn("agent", [str(self.bin / "evse-agent"), "--config", str(agent_cfg)])
        self._until(lambda: self.calls("BootNotification"), "the agent's BootNotification")
        self.dialect.after_boot(self)

    def sim(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return http_json(self.sim_control, "POST" if body is not None else "GET", path, body)

    def _client(self) -> BackOfficeClient:
        assert self.office is not None, "start() first"
        return self.office

    def calls(self, action: str) -> list[dict[str, Any]]:
        """The answered CALLs of an action from the demo's charge point, in the order received."""
        return [m for m in self._client().messages(cp_id=self.cp_id, action=action) if m.get("response")]

    def office_status(self) -> dict[str, Any]:
        """The back office's status summary."""
        return self._client().status()

    def office_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A call from the back office to the demo's charge point."""
        return self._client().call(self.cp_id, action, payload)

    def office_ledger(self) -> dict[str, Any]:
        """The back office's 2.0.1 transaction ledger of the demo's charge point and its problems."""
        return self._client().ledger(self.cp_id)

    def violations(self) -> list[dict[str, Any]]:
        """Every protocol or schema violation the back office recorded."""
        return self._client().violations()

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
        return self.dialect.status_of(self, connector)

    def progress(self, seconds: float, note: str = "") -> None:
        """Print one line a second: status, power, energy, SoC."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            state = self.sim("/state")["connectors"]["1"]
            link = "online " if self.office and self.office.connected(self.cp_id) else "OFFLINE"
            print(f"  [{link}] status {self.status_of(1):<13} power {state['power_w'] / 1000:6.1f} kW  "
                  f"energy {state['ev']['energy_in_wh'] / 1000:6.3f} kWh  SoC {state['ev']['soc_pct']:5.1f} %"
                  f"  {note}", flush=True)
            time.sleep(1.0)

    def play(self, charge_s: float, outage_s: float) -> bool:
        """The session; returns True when the back office's ledger matches the meter."""
        office = self._client()
        dialect = self.dialect
        print(f"agent booted (OCPP {dialect.version}); back office at {office.base_url}; "
              f"simulator at {self.sim_control}")
        print(f"1. card {self.card} presented at the {self.rfid.upper()} reader")
        self.sim("/card", {"uid": self.card})
        time.sleep(0.5)
        print("2. CCS EV plugs into connector 1")
        self.sim("/plug", {"connector": 1})
        self._until(lambda: dialect.started(self), f"the transaction's start ({dialect.start_action})")
        self._until(lambda: dialect.charging(self), "Charging")
        self.progress(charge_s / 2)
        print(f"3. the back office goes away for {outage_s:.0f} s (charging goes on, messages are queued)")
        outage_start = time.time()  # wall clock: compared with the timestamps of the agent's messages
        office.refuse(outage_s)
        self.progress(outage_s, "back office down")
        self._until(lambda: office.connected(self.cp_id), "reconnect", timeout=60)
        print("4. the agent is back online and drains its queue")
        self.progress(charge_s / 2)
        print("5. the driver presents the same card to stop, then unplugs")
        self.sim("/card", {"uid": self.card})
        self._until(lambda: dialect.stopped(self), "the transaction's end")
        self.sim("/unplug", {"connector": 1})
        self._until(lambda: self.status_of(1) == "Available", "Available")
        meter_wh = self.sim("/state")["connectors"]["1"]["meter"]["register_wh"]
        print("\nwhat the back office received:")
        ok = dialect.report(self, meter_wh, (outage_start, outage_start + outage_s))
        if self.signed:
            ok = self.signed_report() and ok
        print("demo OK" if ok else "demo FAILED")
        return ok

    def signed_data(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(message, context, SignedMeterValueType) of every signed data set the back office received."""
        found = []
        for action in ("MeterValues", "StopTransaction", "TransactionEvent"):
            for msg in self.calls(action):
                payload = msg["payload"]
                for value in payload.get("meterValue") or payload.get("transactionData") or []:
                    for sampled in value["sampledValue"]:
                        where = payload.get("eventType", action)
                        if sampled.get("format") == "SignedData":  # 1.6: the object as JSON text
                            found.append((where, sampled.get("context", ""), json.loads(sampled["value"])))
                        elif "signedMeterValue" in sampled:
                            found.append((where, sampled.get("context", ""), sampled["signedMeterValue"]))
        return found

    def signed_report(self) -> bool:
        """Verify every signed data set against the key the meter itself publishes; print one line each."""
        meter_url = self.sim("/state")["connectors"]["1"]["meter"]["url"]
        meter_key = str(http_json(meter_url, "GET", "/v1/status", None)["publicKeyOcmf"])
        found = self.signed_data()
        verified = 0
        for where, context, obj in found:
            text, key = decode(obj)
            ok, by = verify_ocmf(text, meter_key)
            readings = ", ".join(f"{tx} {wh / 1000:.3f} kWh" for tx, wh in ocmf_readings(text))
            same_key = key.lower() == meter_key.lower()
            verified += ok and same_key
            print(f"  signed data       {where:<16} {context:<18} {readings}: "
                  f"{'verified' if ok and same_key else 'NOT VERIFIED'} ({by}, the meter's own key)")
        print(f"  signed data sets  {verified} of {len(found)} verified")
        return bool(found) and verified == len(found)

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
    demo = Demo(workdir, args.ocpp, getattr(args, "rfid", "rdm6300"), signed=getattr(args, "signed", False))
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
