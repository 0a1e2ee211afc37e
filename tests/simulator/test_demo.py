"""`evse-sim demo` as `make run` starts it: three processes, one session, the ledger printed; for 1.6 and 2.0.1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DEMO_TIMEOUT_S = 180.0  # startup, 8 s of charging, a 5 s outage and the reconnect, on 2 shared cores
SHORT = ["--charge-s", "8", "--outage-s", "5"]  # still long enough for samples queued inside the outage


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `evse-sim demo` with these arguments; its output is in the result."""
    evse_sim = Path(sys.executable).parent / "evse-sim"
    return subprocess.run([str(evse_sim), "demo", "--workdir", str(tmp_path / "demo"), *SHORT, *args],
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False)


def test_demo_plays_the_session_over_ocpp_16(tmp_path: Path) -> None:
    result = run_demo(tmp_path)  # no --ocpp: what `make run` plays
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "agent booted (OCPP 1.6)" in out
    assert re.search(r"StopTransaction\s+reason Local, meterStop \d+ Wh \(meter register [\d.]+ Wh: equal\)", out), out
    assert "in chronological order: True" in out and "schema violations: 0" in out
    assert out.rstrip().endswith("demo OK")


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
