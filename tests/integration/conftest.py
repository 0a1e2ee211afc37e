"""Fixtures of the integration tests: a back office in the test loop, the simulator and agent as processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator.backoffice import BackOffice
from tests.integration.harness import BLOCKED, CARD, EXPIRED, Rig


@pytest.fixture
async def office(tmp_path: Path) -> AsyncIterator[BackOffice]:
    bo = BackOffice(id_tags={CARD: "Accepted", "BLOCKED01": "Blocked", "EXPIRED01": "Expired",
                             BLOCKED: "Blocked", EXPIRED: "Expired"},
                    heartbeat_interval=300, log_path=tmp_path / "backoffice.jsonl")
    await bo.start()
    yield bo
    await bo.stop()


@pytest.fixture
async def rig_factory(tmp_path: Path, office: BackOffice) -> AsyncIterator[object]:
    rigs: list[Rig] = []

    async def make(ocpp: dict[str, object] | None = None, start: bool = True,
                   hardware: dict[str, float] | None = None, ocpp_version: str = "1.6",
                   sim_config: Path | None = None) -> Rig:
        rig = Rig(tmp_path, office, ocpp, hardware, ocpp_version, sim_config)
        rigs.append(rig)
        if start:
            await rig.start()
        return rig

    yield make
    for rig in rigs:
        await rig.close()
    assert office.violations == [], f"back office saw schema/protocol violations: {office.violations}"


@pytest.fixture
async def rig(rig_factory: object) -> Rig:
    return await rig_factory()  # type: ignore[operator, no-any-return]
