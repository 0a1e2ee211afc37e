"""At boot, a legal transaction whose local start was never recorded is ended on its meter and then forgotten;
while the meter does not answer it is kept, so the next boot can still end it (agent/runtime/signing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.hardware import ConnectorDevices, Hardware
from agent.store import Store
from drivers.errors import CommunicationFault
from tests.agent.wiring import agent_for, patch_runtime
from tests.integration.test_week_offline import config_text


@dataclass
class Caps:
    signed: bool = True


class SilentSigningMeter:
    """A signing meter that never answers, or one that holds no such transaction (answering=True)."""

    capabilities = Caps()

    def __init__(self, answering: bool) -> None:
        self.answering = answering
        self.asked = 0

    async def begin_transaction(self, _transaction: Any) -> None:
        raise AssertionError("not at boot")

    async def transaction_record(self, _transaction_id: str) -> None:
        self.asked += 1
        if not self.answering:
            raise CommunicationFault("meter1", "no answer")

    async def open_transaction(self) -> bool:
        return False


async def orphan_after_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answering: bool) -> tuple[Store, int]:
    async def no_wait(_s: float) -> None:
        return None

    monkeypatch.setattr("agent.runtime.signing.asyncio.sleep", no_wait)
    patch_runtime(monkeypatch, "BOOT_SIGNED_ATTEMPTS", 2)
    cfg = parse_config(config_text(tmp_path / "state", "1.6"))
    store = Store(tmp_path / "agent.db")
    meter = SilentSigningMeter(answering)
    hw = Hardware(connectors={1: ConnectorDevices(1, "dc", meter=meter, contactor=None)})  # type: ignore[arg-type]
    agent = agent_for(cfg, store, hw)
    store.signed_legal_begin(99, 1, "st-99", 0.0)  # asked of the meter; the process died before the start record
    await agent.recover_legal_orphans(set())
    return store, meter.asked


async def test_an_orphan_the_meter_does_not_answer_for_is_kept_for_the_next_boot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, asked = await orphan_after_boot(tmp_path, monkeypatch, answering=False)
    assert asked == 2
    assert [legal.meter_tx_id for legal in store.signed_legal_open()] == ["st-99"]
    store.close()


async def test_an_orphan_the_meter_never_began_is_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, asked = await orphan_after_boot(tmp_path, monkeypatch, answering=True)
    assert asked == 1 and store.signed_legal_open() == []
    store.close()
