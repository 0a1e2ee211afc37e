"""The running charge point, split by job: feeding the core and executing its outputs (`agent.py`), metering,
transactions, authorization, actuators, boot recovery, durable writes and the clock, each a mixin on the shared
state of `base.AgentBase`."""

from __future__ import annotations

from agent.runtime.agent import Agent
from agent.runtime.base import ConnectorState, LinkSession

__all__ = ["Agent", "ConnectorState", "LinkSession"]
