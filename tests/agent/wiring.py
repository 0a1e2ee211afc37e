"""An Agent wired the way the daemon wires it (the 1.6 keys and journal), for tests that build one directly."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pkgutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

import agent.runtime
from agent.config import AgentConfig, parse_config
from agent.core import events as ev
from agent.daemon import wire_services
from agent.hardware import ConnectorDevices, Hardware
from agent.ocpp.v16.journal import V16Journal
from agent.ocpp.v16.keys import OcppKeys
from agent.ocpp.v16.profiles import stored_profiles
from agent.ocpp.v16.statuses import snapshot_fields
from agent.runtime import Agent
from agent.store import Store
from drivers.gpio import GpioContactor


def agent_for(cfg: AgentConfig, store: Store, hw: Hardware) -> Agent:
    """Agent(cfg, store, hw) with the OCPP 1.6 keys, journal and stored profiles, and its services wired."""
    keys = OcppKeys(cfg, store)
    agent = Agent(cfg, store, hw, keys, V16Journal(store, keys), keys, profiles=stored_profiles(store))
    wire_services(agent, keys)
    agent.fault_names = snapshot_fields
    return agent


def patch_runtime(monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    """Replace a global (a constant, `time`, a clock function) in every module of the runtime package that has it."""
    patched = 0
    for info in pkgutil.iter_modules(agent.runtime.__path__, "agent.runtime."):
        module = importlib.import_module(info.name)
        if hasattr(module, name):
            monkeypatch.setattr(module, name, value)
            patched += 1
    assert patched, f"no runtime module has {name}"


@dataclass
class Charging:
    """A session charging on the real runtime, journal and store with a simulated clock (`charging_agent`)."""

    agent: Agent
    store: Store
    meter: Any  # tests.integration.test_week_offline.StepMeter
    clock: Any  # tests.integration.test_week_offline.FakeClock

    def sample(self, minutes: float = 1.0) -> None:
        """Let `minutes` pass at 7 kW and run one meter pass."""
        self.clock.offset += 60.0 * minutes
        self.meter.energy_wh += 7000.0 / 60.0 * minutes
        self.agent.connectors[1].reading = self.meter.reading()
        self.agent._sample_meters()


@contextlib.asynccontextmanager
async def charging_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str,
                         variables: dict[str, str] | None = None) -> AsyncIterator[Charging]:
    """One AC connector, plugged and charging for CARD0001 (2.0.1 device model variables set before the start)."""
    from agent.daemon import _build_v16, _build_v201
    from tests.integration.test_week_offline import FakeClock, StepMeter, config_text

    clock = FakeClock()
    patch_runtime(monkeypatch, "time", clock)
    Device.pin_factory = MockFactory()
    cfg = parse_config(config_text(tmp_path / "state", version))
    store = Store(tmp_path / "agent.db")
    meter = StepMeter("meter1")
    contactor = GpioContactor("contactor1", 21)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=meter, contactor=contactor)})  # type: ignore[arg-type]
    agent, model, _ = (_build_v201 if version == "2.0.1" else _build_v16)(cfg, store, hw)
    wire_services(agent, model)
    actuator = asyncio.create_task(agent.actuator_loop(1))
    try:
        for key, value in (variables or {}).items():
            assert model.change(key, value) == "Accepted", key
        agent.connectors[1].reading = meter.reading()
        agent.feed(ev.MeterSample(1, meter.energy_wh, 7000.0))
        agent.feed(ev.PlugChanged(1, True))
        agent.feed(ev.EvReadyChanged(1, True))
        agent.feed(ev.IdPresented(1, "CARD0001"))
        for _ in range(100):
            if agent.core.session(1) is not None and store.recent_transactions(1):
                break
            await asyncio.sleep(0.02)
        assert agent.core.session(1) is not None
        yield Charging(agent, store, meter, clock)
    finally:
        # the agent's own tasks too (the monitor engine the 2.0.1 build starts, authorizations, stops)
        tasks = [actuator, *agent._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5.0)
        contactor.release()
        store.close()
        Device.pin_factory.reset()
