"""`evse-sim demo` as `make run` starts it: three processes, one session, the ledger printed; for 1.6 and 2.0.1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from agent.clock import iso
from simulator.backoffice import check_transaction_events
from simulator.demo import CARD_UID, V201, Demo

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


@pytest.mark.soak  # make soak: the signed session itself is in make test (tests/integration/test_signed_dc.py)
def test_demo_signed_verifies_every_signed_data_set_at_the_end_of_its_ledger(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--signed", "--ocpp", "2.0.1")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"signed data\s+Started\s+Transaction.Begin\s+B [\d.]+ kWh: verified \(pyocmf", out), out
    assert re.search(r"signed data\s+Ended\s+Transaction.End\s+B [\d.]+ kWh, E [\d.]+ kWh: verified \(pyocmf",
                     out), out
    assert "signed data sets  2 of 2 verified" in out
    assert out.rstrip().endswith("demo OK")


class LedgerOnly:
    """Stands in for a running Demo: the back office's ledger of a hand-made 2.0.1 transaction."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def office_ledger(self) -> dict[str, Any]:
        return {"transactions": {"tx1": self.events}, "problems": check_transaction_events(self.events)}

    def violations(self) -> list[dict[str, Any]]:
        return []


def _event(seq_no: int, event_type: str, at: float, *, offline: bool = False, wh: int | None = None,
           context: str = "Sample.Periodic") -> dict[str, Any]:
    event: dict[str, Any] = {"seqNo": seq_no, "eventType": event_type, "timestamp": iso(at),
                             "triggerReason": "MeterValuePeriodic", "transactionInfo": {"transactionId": "tx1"},
                             "idToken": {"idToken": CARD_UID, "type": "ISO14443"}}
    if offline:
        event["offline"] = True
    if wh is not None:
        event["meterValue"] = [{"timestamp": iso(at), "sampledValue": [
            {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}]}]
    return event


def _session(**changes: Any) -> list[dict[str, Any]]:
    """Started at t=0, Updated at 1 (online), 5 (inside the outage 3..8, offline), 10; Ended at 11."""
    events = [_event(0, "Started", 0.0, wh=1000, context="Transaction.Begin"), _event(1, "Updated", 1.0),
              _event(2, "Updated", 5.0, offline=changes.get("offline", True)), _event(3, "Updated", 10.0),
              _event(changes.get("last_seq", 4), "Ended", 11.0, wh=1200, context="Transaction.End")]
    events[-1]["transactionInfo"]["stoppedReason"] = changes.get("reason", "Local")
    return events


@pytest.mark.parametrize(("changes", "meter_wh", "ok"), [
    ({}, 1200.7, True),
    ({}, 1201.0, False),  # the Ended energy is not the meter's register to the Wh
    ({"offline": False}, 1200.0, False),  # an event queued during the outage does not say offline
    ({"last_seq": 5}, 1200.0, False),  # a gap in seqNo
    ({"reason": "Remote"}, 1200.0, False),  # not stopped by the card
])
def test_the_201_ledger_checks_fail_the_demo(changes: dict[str, Any], meter_wh: float, ok: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    demo = cast(Demo, LedgerOnly(_session(**changes)))
    assert V201().report(demo, meter_wh, (3.0, 8.0)) is ok, capsys.readouterr().out
