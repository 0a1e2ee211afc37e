"""An Agent wired the way the daemon wires it (the 1.6 keys and journal), for tests that build one directly."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

import agent.runtime
from agent.config import AgentConfig
from agent.daemon import wire_services
from agent.hardware import Hardware
from agent.ocpp.v16.journal import V16Journal
from agent.ocpp.v16.keys import OcppKeys
from agent.ocpp.v16.profiles import stored_profiles
from agent.ocpp.v16.statuses import snapshot_fields
from agent.runtime import Agent
from agent.store import Store


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
