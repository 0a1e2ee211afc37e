"""The drivers' "report a problem" push button: a press on a (mock) GPIO pin records a problem report with its
snapshot, queues it upstream and blinks the indicators, as `evsectl report-problem` does.

The hardware is what the daemon builds from the config (`build_hardware`, `build_problem_button`) on gpiozero's
MockFactory; the edge is driven from a thread of its own, as the pin library delivers it.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.core import events as ev
from agent.daemon import build_hardware, build_problem_button
from agent.diag.bundle import MAX_PROBLEM_REPORTS, write_bundle
from agent.ocpp.v16.operations import V16OperationsReporter
from agent.store import Store
from drivers.base import IndicatorState
from drivers.transport import BusPool
from tests.agent.wiring import agent_for, patch_runtime

BUTTON_PIN = 26


def config_text(state: Path, button: bool = True) -> str:
    return f"""
[charge_point]
id = "CP-BUTTON"
vendor = "Test"
model = "Button"

[backoffice]
url = "ws://127.0.0.1:9/ocpp"

[state]
directory = "{state}"

[gpio]
pin_factory = "mock"

[operations]
vendor_id = "org.example.ops"
{"problem_button_pin = " + str(BUTTON_PIN) if button else ""}

[[connectors]]
id = 1
kind = "ac"
max_current_a = 32.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:9"
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:10"
device_id = 1
[connectors.contactor]
driver = "gpio_contactor"
pin = 21
[connectors.indicator]
driver = "gpio_indicator"
red_pin = 5
green_pin = 6
blue_pin = 13
"""


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's own mock pins as the global factory."""
    previous = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = previous


async def press(factory: MockFactory, times: int = 1) -> None:
    """Press (and release) the button from a thread of its own, as the pin library's callbacks arrive."""
    pin = factory.pin(BUTTON_PIN)

    def edges() -> None:
        for _ in range(times):
            pin.drive_low()  # pulled up: pressed shorts the pin to ground
            pin.drive_high()

    thread = threading.Thread(target=edges, name="gpio")
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.001)
    thread.join()
    for _ in range(5):  # the loop runs what the thread handed it (call_soon_threadsafe is FIFO)
        await asyncio.sleep(0)


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(what)


async def test_a_press_records_a_problem_report_queues_it_and_blinks_the_indicator(
        tmp_path: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_runtime(monkeypatch, "ACK_BLINK_S", 0.05)  # the blink's length is not what is tested
    cfg = parse_config(config_text(tmp_path / "state"))
    pool = BusPool()
    hw = build_hardware(cfg, pool)
    store = Store(tmp_path / "agent.db")
    agent = agent_for(cfg, store, hw)
    agent.operations.reporter = V16OperationsReporter(store, cfg.operations.vendor_id)
    agent.log_lines = lambda: ["2026-01-01 10:00:00 INFO the line before the press"]
    button = build_problem_button(cfg)
    assert button is not None
    indicator: Any = hw.connectors[1].indicator
    try:
        agent.operations.bind_button(button, asyncio.get_running_loop())
        agent.execute([ev.ShowIndicator(1, IndicatorState.AVAILABLE)])
        assert indicator.state is IndicatorState.AVAILABLE
        await press(factory)
        problems = store.ops_events(kind="problem")
        assert len(problems) == 1
        detail = problems[0].detail
        assert detail["source"] == "button" and detail["connectorId"] == 0
        assert set(detail["connectors"]) == {"1"} and detail["connectors"]["1"]["status"]
        assert detail["log"] == ["2026-01-01 10:00:00 INFO the line before the press"]
        assert detail["queue"]["pending"] == 0  # counted before the report itself was queued
        assert indicator.state is IndicatorState.OFF  # the acknowledgement
        await wait_for(lambda: indicator.state is IndicatorState.AVAILABLE, "the indicator was not restored")
        queued = [m for m in store.pending(10) if m.action == "DataTransfer"]
        assert [m.payload["messageId"] for m in queued] == ["ProblemReport"]
        data = json.loads(queued[0].payload["data"])
        assert data["reportId"] == problems[0].id and data["source"] == "button" and "log" not in data
    finally:
        button.release()
        for devices in hw.connectors.values():
            devices.contactor.release()
            devices.indicator.release()  # type: ignore[union-attr]
        await pool.close()
        store.close()


async def test_a_burst_of_presses_is_one_report_and_a_later_press_another(
        tmp_path: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 1000.0}

    class Mono:
        """The runtime's `time` with a monotonic clock the test moves."""

        @staticmethod
        def monotonic() -> float:
            return clock["t"]

        @staticmethod
        def time() -> float:
            return 1_767_225_600.0 + clock["t"]

    patch_runtime(monkeypatch, "time", Mono)
    cfg = parse_config(config_text(tmp_path / "state"))
    pool = BusPool()
    hw = build_hardware(cfg, pool)
    store = Store(tmp_path / "agent.db")
    agent = agent_for(cfg, store, hw)
    button = build_problem_button(cfg)
    assert button is not None
    try:
        agent.operations.bind_button(button, asyncio.get_running_loop())
        await press(factory, times=5)  # a contact that bounces, or a driver pressing again and again
        assert button.presses == 5
        assert len(store.ops_events(kind="problem")) == 1
        clock["t"] += 60.0
        await press(factory)
        assert len(store.ops_events(kind="problem")) == 2
    finally:
        button.release()
        for devices in hw.connectors.values():
            devices.contactor.release()
            devices.indicator.release()  # type: ignore[union-attr]
        await pool.close()
        store.close()


def bundled_problems(path: Path) -> list[dict[str, Any]]:
    with tarfile.open(path) as tar:
        member = tar.extractfile("problem-reports.json")
        assert member is not None
        result: list[dict[str, Any]] = json.load(member)
        return result


async def test_the_next_diagnostics_bundle_carries_the_reports_since_the_last_one(
        tmp_path: Path, factory: MockFactory) -> None:
    cfg = parse_config(config_text(tmp_path / "state", button=False))
    pool = BusPool()
    hw = build_hardware(cfg, pool)
    store = Store(tmp_path / "agent.db")
    agent = agent_for(cfg, store, hw)
    agent.log_lines = lambda: ["2026-01-01 10:00:00 WARNING meter1 silent"]
    try:
        first = agent.operations.problem("technician", "display dark", 1)
        bundled = bundled_problems(write_bundle(agent, tmp_path / "b1", []))
        assert [p["reportId"] for p in bundled] == [first["reportId"]]
        assert bundled[0]["note"] == "display dark"
        assert bundled[0]["log"] == ["2026-01-01 10:00:00 WARNING meter1 silent"]
        assert bundled[0]["connectors"]["1"]["status"] and "queue" in bundled[0]
        assert bundled_problems(write_bundle(agent, tmp_path / "b2", [])) == []  # already carried
        reports = [agent.operations.problem("technician", f"report {i}")["reportId"]
                   for i in range(MAX_PROBLEM_REPORTS + 3)]
        bundled = bundled_problems(write_bundle(agent, tmp_path / "b3", []))
        assert [p["reportId"] for p in bundled] == reports[::-1][:MAX_PROBLEM_REPORTS]  # bounded: the newest
    finally:
        for devices in hw.connectors.values():
            devices.contactor.release()
            devices.indicator.release()  # type: ignore[union-attr]
        await pool.close()
        store.close()


def test_no_pin_no_button(tmp_path: Path) -> None:
    assert build_problem_button(parse_config(config_text(tmp_path, button=False))) is None
