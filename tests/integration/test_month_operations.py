"""The simulated month (issue 15): sessions, faults, a back-office outage, a power cut, a crash, a clean restart,
a maintenance hold, a back-office unavailability and a meter replacement, on a simulated clock; the operations
ledger is checked against what the scenario did (uptime to the minute, energy to the Wh, sessions, faults by
cause), then a real back office receives the reports (DataTransfer through the outbox) and their data are
validated against the schemas in docs/operations.md.

The agent code is the real one (runtime, core, SQLite store, the 1.6 adapter over a real websocket); only
the clock is simulated and the hardware observations are fed as the poll would produce them (a month of
polls cannot be waited for). Restarts build a new Agent on the same database file, as a new process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from websockets.asyncio.client import connect

from agent.config import parse_config
from agent.core import events as ev
from agent.core.operations import DEFAULT_EXCLUDED
from agent.diag.operations import render, render_csv
from agent.hardware import ConnectorDevices, ConnectorObservation, Fault, Hardware
from agent.ocpp.library import inline_schema_validation
from agent.ocpp.v16.connection import V16Connection
from agent.ocpp.v16.operations import V16OperationsReporter
from agent.runtime import Agent
from agent.store import Store
from drivers.base import MeterCapabilities, MeterReading
from drivers.gpio import GpioContactor
from simulator.backoffice_client import BackOfficeClient
from tests.agent.wiring import agent_for, patch_runtime

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
STEP_S = 3600.0  # the poll is simulated at least once an hour (and at every event)
DAYS = 30
VENDOR = "org.example.ops"
CONNECTOR_SERVICE_CYCLES = 40


class SimClock:
    """Stands in for the `time` module inside agent.runtime: a simulated wall and monotonic clock."""

    def __init__(self, start: float) -> None:
        self.t = start

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t - START + 1000.0


@dataclass
class Port:
    """What the scenario did on a connector: the truth the ledger is checked against."""

    energy_wh: float = 100_000.0  # the meter register
    power_w: float = 0.0
    plugged: bool = False
    faults: dict[tuple[str, str], Fault] = field(default_factory=dict)
    delivered_wh: float = 0.0
    sessions: int = 0
    under_load: int = 0  # contactor openings while the EV drew current
    outage_s: dict[str, float] = field(default_factory=dict)
    fault_counts: dict[str, int] = field(default_factory=dict)

    def outage(self, cause: str, seconds: float) -> None:
        self.outage_s[cause] = self.outage_s.get(cause, 0.0) + seconds


class PortMeter:
    """A port's meter: its register is what the scenario delivered (reads outside the poll get it too)."""

    capabilities = MeterCapabilities(phases=3, export_energy=False, per_phase_power=False)

    def __init__(self, name: str, port: Port, clock: SimClock) -> None:
        self.name = name
        self.port = port
        self.clock = clock

    def reading(self) -> MeterReading:
        return MeterReading(energy_import_wh=self.port.energy_wh, power_w=self.port.power_w,
                            voltage_v=(230.0, 230.0, 230.0), current_a=(0.0, 0.0, 0.0),
                            read_monotonic=self.clock.monotonic(), read_wall=self.clock.t)

    async def read(self) -> MeterReading:
        return self.reading()

    def last_reading(self) -> MeterReading | None:
        return None

    async def close(self) -> None:
        return None


def config_text(state: Path) -> str:
    connectors = "".join(f"""
[[connectors]]
id = {i}
kind = "ac"
max_current_a = 32.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:{5000 + i}"
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:{5100 + i}"
[connectors.contactor]
driver = "gpio_contactor"
pin = {20 + i}
""" for i in (1, 2))
    return f"""
[charge_point]
id = "CP-MONTH"
vendor = "Test"
model = "Month"

[backoffice]
url = "ws://127.0.0.1:9/ocpp"

[state]
directory = "{state}"

[operations]
vendor_id = "{VENDOR}"
connector_service_interval = {CONNECTOR_SERVICE_CYCLES}

[ocpp]
AllowOfflineTxForUnknownId = true
MeterValueSampleInterval = 0
ClockAlignedDataInterval = 0
""" + connectors


def schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each report's data, from docs/operations.md (```json blocks under "#### <messageId>")."""
    text = (ROOT / "docs" / "operations.md").read_text()
    found = re.findall(r"#### (\w+)\n[^#]*?```json\n(.*?)\n```", text, re.S)
    assert len(found) == 4, [name for name, _ in found]
    return {name: json.loads(body) for name, body in found}


class Month:
    """The scenario: one agent at a time on one database, a clock, two ports and what happened to them."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.clock = SimClock(START)
        patch_runtime(monkeypatch, "time", self.clock)
        patch_runtime(monkeypatch, "STOP_METER_SETTLE_S", 0.0)  # real seconds, 150 times
        self.boot = "boot-1"
        patch_runtime(monkeypatch, "kernel_boot_id", lambda: self.boot)
        self.cfg = parse_config(config_text(tmp_path / "state"))
        self.db = tmp_path / "agent.db"
        self.ports = {1: Port(), 2: Port()}
        self.contactors = {i: GpioContactor(f"contactor{i}", 20 + i) for i in self.ports}
        self.meters = {i: PortMeter(f"meter{i}", port, self.clock) for i, port in self.ports.items()}
        devices = {i: ConnectorDevices(i, "ac", meter=self.meters[i],  # type: ignore[arg-type]
                                       contactor=self.contactors[i]) for i in self.ports}
        self.hw = Hardware(connectors=devices)
        self.hw.first_poll_ok = True
        self.online = True
        self.offline_s = 0.0
        self.gaps: dict[str, float] = {}
        self.store: Store
        self.agent: Agent
        self.actuators: list[asyncio.Task[None]] = []
        self.serviced_after = 0
        self.office: subprocess.Popen[bytes] | None = None

    async def boot_agent(self) -> None:
        """A start of the agent process on the database (recovery first, as Agent.run does)."""
        self.store = Store(self.db)
        self.agent = agent_for(self.cfg, self.store, self.hw)
        self.agent.operations.reporter = V16OperationsReporter(self.store, self.cfg.operations.vendor_id)
        await self.agent.recover_power_loss()
        self.actuators = [asyncio.create_task(self.agent.actuator_loop(i)) for i in self.ports]
        if self.online:
            self.agent.feed(ev.LinkChanged(True))
        self.poll()

    async def stop_agent(self, how: str) -> None:
        """The process ends: "clean" (SIGTERM), "crash" or "power_loss" (nothing more is written)."""
        self.poll()  # the last poll (and the ledger's commit) at this very time
        if how == "clean":
            self.agent.shutdown_cleanly()
            self.agent.operations.close()
        for task in self.actuators:
            task.cancel()
        await asyncio.gather(*self.actuators, return_exceptions=True)
        self.store.close()

    def poll(self) -> None:
        """What one hardware poll sees on each port, through the runtime's own path."""
        for cid, port in self.ports.items():
            self.agent._observe(cid, ConnectorObservation(cid, self.meters[cid].reading(), None, dict(port.faults),
                                                          plugged=port.plugged, ev_ready=port.plugged))
        self.agent.feed(ev.Tick())

    async def advance(self, seconds: float) -> None:
        """Let time pass, polling at least once an hour; charging ports draw their power."""
        end = self.clock.t + seconds
        while self.clock.t < end:
            step = min(STEP_S, end - self.clock.t)
            self.clock.t += step
            for port in self.ports.values():
                if port.power_w:
                    wh = port.power_w * step / 3600.0
                    port.energy_wh += wh
                    port.delivered_wh += wh
            self.poll()
            await asyncio.sleep(0)

    async def settle(self, predicate: Callable[[], bool], what: str) -> None:
        for _ in range(200):
            if predicate():
                return
            await asyncio.sleep(0.005)
        raise AssertionError(what)

    async def session(self, cid: int, minutes: float, power_w: float, under_load: bool = False) -> None:
        """Plug, card, charge, card again (a local stop; under load: while the EV still draws), unplug."""
        port = self.ports[cid]
        tag = f"CARD{cid}"
        port.plugged = True
        self.poll()
        self.agent.feed(ev.IdPresented(cid, tag))
        await self.settle(lambda: self.agent.core.connectors[cid].contactor_closed,
                          f"connector {cid} did not start charging")
        port.power_w = power_w
        await self.advance(minutes * 60.0)
        if under_load:
            port.under_load += 1
        else:
            port.power_w = 0.0  # the EV finished: it draws nothing when the card stops the session
            self.poll()
        self.agent.feed(ev.IdPresented(cid, tag))
        port.power_w = 0.0
        await self.settle(lambda: self.agent.core.session(cid) is None and not self.agent.transactions_open(),
                          f"connector {cid} did not stop")
        await self.advance(60.0)
        port.plugged = False
        self.poll()
        port.sessions += 1

    async def fault(self, cid: int, code: str, role: str, minutes: float, cause: str) -> None:
        port = self.ports[cid]
        port.faults[(f"dev{cid}", code)] = Fault(f"dev{cid}", code, "scenario", stops_charging=True, role=role)
        self.poll()
        await self.advance(minutes * 60.0)
        del port.faults[(f"dev{cid}", code)]
        self.poll()
        port.outage(cause, minutes * 60.0)
        port.fault_counts[cause] = port.fault_counts.get(cause, 0) + 1

    async def off(self, how: str, minutes: float) -> None:
        """The agent is stopped (or the power cut) for a while, then starts again."""
        await self.stop_agent(how)
        self.clock.t += minutes * 60.0
        if how == "power_loss":
            self.boot = f"boot-{int(self.clock.t)}"  # the system itself booted again
        cause = {"clean": "reboot", "crash": "crash", "power_loss": "power_loss"}[how]
        for port in self.ports.values():
            port.outage(cause, minutes * 60.0)
        self.gaps[cause] = self.gaps.get(cause, 0.0) + minutes * 60.0
        await self.boot_agent()

    async def link_down(self, minutes: float) -> None:
        self.online = False
        self.agent.feed(ev.LinkChanged(False))
        await self.advance(minutes * 60.0)
        self.offline_s += minutes * 60.0
        self.online = True
        self.agent.feed(ev.LinkChanged(True))

    async def unavailable(self, cid: int, minutes: float) -> None:
        """The back office sets a connector inoperative, then operative again."""
        agent = self.agent
        result, outs = agent.core.change_availability(ev.ChangeAvailability(cid, False), agent.now())
        assert result is ev.AvailabilityResult.ACCEPTED
        agent.execute(outs)
        await self.advance(minutes * 60.0)
        result, outs = agent.core.change_availability(ev.ChangeAvailability(cid, True), agent.now())
        agent.execute(outs)
        self.ports[cid].outage("backoffice", minutes * 60.0)

    async def maintenance(self, minutes: float) -> None:
        """A technician holds the charge point out of service (a self-test)."""
        self.agent.execute(self.agent.core.hold(True, self.agent.now()))
        await self.advance(minutes * 60.0)
        self.agent.execute(self.agent.core.hold(False, self.agent.now()))
        for port in self.ports.values():
            port.outage("maintenance", minutes * 60.0)

    async def service_cable(self) -> None:
        """A technician replaces the worn cable of port 1 and records the service."""
        self.agent.operations.service(1, "connector", "new cable")
        self.serviced_after = self.ports[1].sessions

    async def problem(self) -> None:
        """A driver presses the problem button at port 2."""
        self.agent.operations.problem("button", "screen dark", 2)

    async def replace_meter(self, cid: int) -> None:
        """A new meter with a register far below the old one: the hardware layer reports it once."""
        port = self.ports[cid]
        port.energy_wh = 500.0
        await self.fault(cid, "meter_replaced", "meter", 1.0, "meter.meter_replaced")


async def play(month: Month, days: int) -> None:
    """The month's script; every day 2 sessions on port 1 and 3 on port 2, and the events of the day."""
    events: dict[int, list[tuple[float, Callable[[], Any]]]] = {
        3: [(10.0, lambda: month.fault(1, "communication", "meter", 90, "meter.communication"))],
        6: [(14.0, lambda: month.fault(2, "ev_error", "dc", 30, "ev"))],
        8: [(0.5, lambda: month.link_down(6 * 60))],
        10: [(2.0, lambda: month.off("power_loss", 180))],
        15: [(9.0, lambda: month.unavailable(2, 120))],
        18: [(11.0, lambda: month.replace_meter(1))],
        20: [(9.5, lambda: month.maintenance(45))],
        21: [(10.0, month.service_cable)],
        22: [(13.0, lambda: month.off("crash", 10))],
        25: [(3.0, lambda: month.off("clean", 5))],
        27: [(16.0, month.problem)],
    }
    for day in range(days):
        busy = day % 7 in (4, 5)  # busier at the weekend, and some days the first driver leaves early
        plan: list[tuple[float, Callable[[], Any]]] = [
            (7.0, functools.partial(month.session, 2, 20 + 10 * (day % 3), 22_000.0)),
            (8.0, functools.partial(month.session, 1, 60 + 15 * (day % 4), 7_000.0, under_load=day % 5 == 0)),
            (12.0, functools.partial(month.session, 2, 50 if busy else 30, 22_000.0)),
            (18.0, functools.partial(month.session, 1, 45, 11_000.0)),
            (19.0, functools.partial(month.session, 2, 90 if busy else 30, 22_000.0)),
            *events.get(day, []),
        ]
        for hour, action in sorted(plan, key=lambda p: p[0]):
            await month.advance(START + day * DAY + hour * 3600.0 - month.clock.t)
            await action()
    await month.advance(START + days * DAY - month.clock.t)


def check_ledger(month: Month, report: dict[str, Any], days: int) -> None:
    """The ledger against the scenario: uptime to the minute, energy to the Wh, sessions, faults by cause."""
    total_min = days * 1440
    for cid, port in month.ports.items():
        fig = report["ports"][str(cid)]
        assert fig["recorded_min"] == pytest.approx(total_min, abs=1.0)
        expected = {cause: s / 60.0 for cause, s in port.outage_s.items()}
        assert fig["outages_min"] == pytest.approx(expected, abs=1.0), (cid, fig["outages_min"], expected)
        outage = sum(expected.values())
        excluded = sum(v for cause, v in expected.items() if cause in DEFAULT_EXCLUDED)
        assert fig["outage_min"] == pytest.approx(outage, abs=1.0)
        assert fig["excluded_min"] == pytest.approx(excluded, abs=1.0)
        assert fig["uptime_pct"] == pytest.approx(100.0 * (total_min - (outage - excluded)) / total_min, abs=0.003)
        assert fig["energy_wh"] == pytest.approx(port.delivered_wh, abs=1.0)
        assert fig["sessions"] == port.sessions
        assert fig["faults"] == {cause: float(n) for cause, n in port.fault_counts.items()}
        assert fig["wear"]["n.contactor_ops"] == 2 * port.sessions
        assert fig["wear"].get("n.contactor_ops_under_load", 0) == port.under_load
        assert fig["wear"]["n.plug_cycles"] == port.sessions
    station = report["station"]
    assert station["offline_min"] == pytest.approx(month.offline_s / 60.0, abs=1.0)
    assert station["off_min"] == pytest.approx({k: v / 60.0 for k, v in month.gaps.items()}, abs=1.0)
    assert station["reconnects"] == 1 + len(month.gaps) + 1  # the first link, one after each restart, the outage


async def drain_to_backoffice(month: Month, tmp_path: Path) -> BackOfficeClient:
    """Start the local back office (its own process) and let the agent's session drain the outbox."""
    log = open(tmp_path / "backoffice.log", "wb")  # noqa: SIM115
    office = subprocess.Popen([str(Path(sys.executable).parent / "evse-sim"), "backoffice", "--port", "0",
                               "--control-port", "0", "--id-tag=CARD1=Accepted", "--id-tag=CARD2=Accepted"],
                              stdout=log, stderr=subprocess.STDOUT)
    month.office = office
    info: dict[str, Any] = {}
    for _ in range(200):
        lines = [ln for ln in (tmp_path / "backoffice.log").read_text(errors="replace").splitlines()
                 if ln.startswith("{") and "ocpp_url" in ln]
        if lines:
            info = json.loads(lines[0])
            break
        await asyncio.sleep(0.05)
    assert info, "back office did not start"
    client = BackOfficeClient(f"http://127.0.0.1:{info['control_port']}")
    async with connect(info["ocpp_url"] + "/CP-MONTH", subprotocols=["ocpp1.6"], proxy=None) as ws:  # type: ignore[list-item]
        session = asyncio.create_task(V16Connection(month.agent, ws).run())
        for _ in range(1200):
            if not month.store.pending_count():
                break
            await asyncio.sleep(0.05)
        assert month.store.pending_count() == 0, "the queue did not drain"
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await session
    return client


async def test_a_simulated_month_the_ledger_matches_the_scenario_and_reports_arrive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inline_schema_validation()  # as the daemon does
    Device.pin_factory = MockFactory()
    month = Month(tmp_path, monkeypatch)
    try:
        await month.boot_agent()
        await play(month, DAYS)
        ops = month.agent.operations
        report = ops.report(START, START + DAYS * DAY)
        print("\n" + render(report))
        check_ledger(month, report, DAYS)
        assert render_csv(report).count("\n") == DAYS * 2  # a header and one row per day and port
        # wear: port 2 crossed its plug-in interval once (raised once, still due); port 1 was serviced on day 21
        wear = {(w["connector"], w["part"]): w for w in report["wear"]}
        assert wear[(2, "connector")]["due"] and wear[(2, "connector")]["value"] == DAYS * 3
        assert not wear[(1, "connector")]["due"]
        assert wear[(1, "connector")]["value"] == month.ports[1].sessions - month.serviced_after
        assert wear[(1, "meter")]["since"] == pytest.approx(START + 18 * DAY + 11 * 3600, abs=60)
        kinds = [e["kind"] for e in report["events"]]
        assert kinds.count("maintenance_due") == 2  # port 2 on day 13, port 1 on day 19 (cleared on day 21)
        assert kinds.count("replacement") == 1 and kinds.count("problem") == 1 and kinds.count("service") == 1
        # upstream: everything arrives at a real back office, each data valid against its documented schema
        client = await drain_to_backoffice(month, tmp_path)
        transfers = client.messages(cp_id="CP-MONTH", action="DataTransfer")
        assert all(m["payload"]["vendorId"] == VENDOR for m in transfers)
        by_id: dict[str, list[dict[str, Any]]] = {}
        for m in transfers:
            by_id.setdefault(m["payload"]["messageId"], []).append(json.loads(m["payload"]["data"]))
        assert len(by_id["DailyUsageReport"]) == DAYS
        assert len(by_id["MaintenanceDue"]) == 2 and len(by_id["Replacement"]) == 1
        assert len(by_id["ProblemReport"]) == 1
        docs = schemas()
        for message_id, items in by_id.items():
            for data in items:
                jsonschema.validate(data, docs[message_id])
        daily_energy = sum(c["energyWh"] for d in by_id["DailyUsageReport"] for c in d["connectors"])
        assert daily_energy == pytest.approx(sum(p.delivered_wh for p in month.ports.values()), abs=DAYS * 2 * 0.1)
        assert client.violations() == []
    finally:
        with contextlib.suppress(Exception):
            await month.stop_agent("clean")
        if month.office is not None:
            month.office.terminate()
            month.office.wait(10)
        for contactor in month.contactors.values():
            contactor.release()
        Device.pin_factory.reset()
