"""`evse-sim demo --rfid pn532`: the demo's session with ISO 14443A cards on the simulated PN532 (a long proof,
run by make soak; tests/integration/test_rfid_formats.py is the short version in make test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.demo import PN532_CARD_UID
from tests.simulator.test_demo import run_demo


@pytest.mark.soak
@pytest.mark.parametrize("ocpp", ["1.6", "2.0.1"])
def test_demo_authorizes_a_card_on_the_pn532(tmp_path: Path, ocpp: str) -> None:
    result = run_demo(tmp_path, "--rfid", "pn532", "--ocpp", ocpp)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"card {PN532_CARD_UID} presented at the PN532 reader" in out
    if ocpp == "1.6":
        assert f"idTag {PN532_CARD_UID}" in out
    else:
        assert re.search(rf"TransactionEvent\s+Started\s+seqNo 0, transactionId \w+, idToken {PN532_CARD_UID}", out)
    assert out.rstrip().endswith("demo OK")
    agent_log = (tmp_path / "demo" / "agent.log").read_text()
    assert "PN532 v1.6 reading ISO 14443A cards" in agent_log and PN532_CARD_UID not in agent_log
