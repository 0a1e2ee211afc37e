"""The daemon with a damaged state database: it recovers, keeps charging, and says what it did."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.test_evsectl import evsectl


async def test_damaged_database_at_start_is_recovered_and_reported(rig_factory: Any) -> None:
    rig = await rig_factory(start=False)
    await rig.start_sim()
    rig.state_dir.mkdir(parents=True, exist_ok=True)
    (rig.state_dir / "agent.db").write_bytes(b"\x00garbage, not an SQLite file" * 100)
    rig.start_agent()
    await rig.office.wait_for("BootNotification", timeout=20)
    await rig.wait_status(1, "Available")
    await asyncio.sleep(0.5)
    status = json.loads(evsectl(rig, "--json", "status").stdout)
    assert "moved to" in status["recovery"]
    assert list(rig.state_dir.glob("agent.db.damaged-*"))
    assert "state database was damaged" in rig.agent_log()
    await rig.start_session()  # and it charges
    await rig.wait_status(1, "Charging")
