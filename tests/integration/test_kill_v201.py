"""The power-loss kill test of tests/integration/test_kill.py over OCPP 2.0.1 (its own file, so the two kill
tests run on different workers): random SIGKILLs and back-office outages; per transaction Started first, Ended
last, seqNo without gaps, no transaction lost, energy tiling the meter register."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.integration.test_kill import CI_SESSIONS_V201, _kill_test


async def test_e11_kill_test_ledger_v201(rig_factory: Any) -> None:
    seed = int(os.environ.get("EVSE_KILL_SEED", "7"))
    result = await _kill_test(rig_factory, CI_SESSIONS_V201, seed=seed, ocpp_version="2.0.1")
    assert result["sessions"] == CI_SESSIONS_V201


@pytest.mark.soak
async def test_soak_kill_test_ledger_v201(rig_factory: Any) -> None:
    sessions = int(os.environ.get("EVSE_SOAK_SESSIONS", "200"))
    result = await _kill_test(rig_factory, sessions, seed=int(os.environ.get("EVSE_KILL_SEED", "11")),
                              ocpp_version="2.0.1")
    assert result["sessions"] == sessions
