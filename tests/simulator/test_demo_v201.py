"""`evse-sim demo --ocpp 2.0.1` (its own file, so the two demos run on different workers): the make run session
over 2.0.1, the ledger with seqNo without gaps, the outage's events offline, the energy equal to the register."""

from __future__ import annotations

import re
from pathlib import Path

from tests.simulator.test_demo import run_demo


def test_demo_plays_the_same_session_over_ocpp_201(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--ocpp", "2.0.1")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "agent booted (OCPP 2.0.1)" in out
    assert re.search(r"TransactionEvent\s+Started\s+seqNo 0, transactionId \w+, idToken 0F00A1B2C3", out), out
    updated = [int(n) for n in re.findall(r"^\s+seqNo\s+(\d+)\s", out, re.MULTILINE)]
    ended = re.search(r"TransactionEvent\s+Ended\s+seqNo (\d+), stoppedReason Local, energy \d+ Wh "
                      r"\(meter register [\d.]+ Wh: equal\)", out)
    assert ended, out
    assert updated and [0, *updated, int(ended.group(1))] == list(range(len(updated) + 2)), out
    assert re.search(r"[1-9]\d* events queued during the outage, all offline: true: yes", out), out
    assert "without gaps (back office ledger check): yes" in out
    assert "schema violations: 0" in out and "StopTransaction" not in out
    assert out.rstrip().endswith("demo OK")
