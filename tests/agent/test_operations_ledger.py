"""The operations ledger: the pure accounting (agent/core/operations.py) and its rows on disk (agent/store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.events import ConnectorStatus, DeviceRole, Fault, Tick
from agent.core.faults import VEHICLE_FAULT_CODES
from agent.core.operations import (
    CAUSE_EV,
    HOUR_S,
    MAX_GAP_S,
    OperationsLedger,
    fault_cause,
    percentile_ms,
    port_figures,
)
from agent.store import Store
from agent.store.operations import DAILY_KEEP_S, HOURLY_KEEP_S, SNAPSHOT_LOGS_KEPT
from tests.agent.wiring import charging_agent

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
METER_SILENT = Fault("communication", DeviceRole.METER, "meter1", "silent")


def counters(ledger: OperationsLedger, now: float, connector: int = 1) -> dict[str, float]:
    """The daily counters of one connector after taking everything up to now."""
    result: dict[str, float] = {}
    for (_day, cid, key), value in ledger.take(now).daily.items():
        if cid == connector:
            result[key] = result.get(key, 0.0) + value
    return result


def test_time_in_each_state_is_split_at_hours_and_adds_up() -> None:
    ledger = OperationsLedger([1], T0, can_start_offline=True)
    ledger.link(True, T0)
    ledger.status(1, ConnectorStatus.PREPARING, None, "", T0 + 600)
    ledger.plug(1, True, T0 + 600)
    ledger.contactor(1, True, T0 + 900)
    ledger.status(1, ConnectorStatus.CHARGING, None, "", T0 + 900)
    ledger.power(1, 7000.0, T0 + 1000)
    ledger.energy(1, 7000.0, T0 + 4500)
    ledger.contactor(1, False, T0 + 4500)  # under load: the power was 7 kW
    ledger.status(1, ConnectorStatus.FAULTED, METER_SILENT, "", T0 + 4500)
    ledger.status(1, ConnectorStatus.AVAILABLE, None, "", T0 + 5400)
    hourly = ledger.take(T0 + 7200).hourly
    first_hour = {k: v for (p, c, k), v in hourly.items() if p == T0 and c == 1}
    assert first_hour["t.available"] == 600 and first_hour["t.occupied"] == 300
    assert first_hour["t.charging"] == HOUR_S - 900
    second = {k: v for (p, c, k), v in hourly.items() if p == T0 + HOUR_S and c == 1}
    assert second["t.charging"] == 900 and second["t.faulted.meter.communication"] == 900
    assert second["n.contactor_ops_under_load"] == 1 and second["n.faults.meter.communication"] == 1
    assert sum(v for (p, c, k), v in hourly.items() if c == 1 and k.startswith("t.")) == 7200


def test_uptime_excludes_only_the_excluded_causes_and_keeps_the_raw_figures() -> None:
    ledger = OperationsLedger([1], T0 + 600, can_start_offline=False)
    ledger.gap(T0, T0 + 600, "power_loss")  # 10 min before this run began, excluded
    ledger.link(True, T0 + 600)
    ledger.status(1, ConnectorStatus.FAULTED, METER_SILENT, "", T0 + 3600)  # 60 min outage, counted
    ledger.status(1, ConnectorStatus.UNAVAILABLE, None, "maintenance", T0 + 7200)  # 30 min, excluded
    ledger.status(1, ConnectorStatus.AVAILABLE, None, "", T0 + 9000)
    ledger.link(False, T0 + 10_000)  # offline, no offline start possible: 20 min down
    ledger.link(True, T0 + 11_200)
    c = counters(ledger, T0 + 86_400)
    fig = port_figures(c)
    assert fig["outage_min"] == pytest.approx(60 + 30 + 20 + 10)
    assert fig["excluded_min"] == pytest.approx(30 + 10)
    assert fig["outages_min"] == {"maintenance": 30.0, "meter.communication": 60.0, "offline": 20.0,
                                  "power_loss": 10.0}
    assert fig["recorded_min"] == pytest.approx(1440)  # the gap and the run cover the day once
    assert fig["uptime_pct"] == pytest.approx(100 * (1440 - 80) / 1440)
    assert fig["raw_uptime_pct"] == pytest.approx(100 * (1440 - 120) / 1440)


def test_offline_is_up_when_a_driver_can_still_start() -> None:
    ledger = OperationsLedger([1], T0, can_start_offline=True)
    fig = port_figures(counters(ledger, T0 + 3600))
    assert fig["outage_min"] == 0 and fig["uptime_pct"] == 100.0


def test_round_trip_percentiles_from_the_histogram() -> None:
    ledger = OperationsLedger([1], T0)
    for _ in range(98):
        ledger.round_trip(0.015, T0)
    ledger.round_trip(0.4, T0)
    ledger.round_trip(3.0, T0)
    station = counters(ledger, T0 + 1, connector=0)
    assert percentile_ms(station, 0.5) == 20
    assert percentile_ms(station, 0.99) == 500


def test_a_commit_adds_counters_keeps_peaks_and_bounds_the_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    try:
        ledger = OperationsLedger([1], T0)
        ledger.contactor(1, True, T0)
        ledger.power(1, 5000.0, T0 + 10)
        store.ops_commit(ledger.take(T0 + 60), wall=T0 + 60)
        ledger.power(1, 3000.0, T0 + 70)  # lower: the peak stays
        ledger.contactor(1, False, T0 + 80)
        store.ops_commit(ledger.take(T0 + 120), wall=T0 + 120)
        rows = {(c, k): v for _p, c, k, v in store.ops_rows("daily", T0, T0 + 86_400)}
        assert rows[(1, "max.power_w")] == 5000.0 and rows[(1, "n.contactor_ops")] == 2
        assert rows[(1, "x.operating")] == 80 and rows[(1, "t.offline")] == 120  # never online, nobody could start
        assert store.ops_wear()[(1, "n.contactor_ops")][0] == 2
        assert store.ops_state()["last_commit_wall"] == repr(T0 + 120)
        # a year later: the hourly rows of then are gone, the daily ones are kept for DAILY_KEEP_S
        later = T0 + HOURLY_KEEP_S + 3600
        store.ops_commit(ledger.take(later), wall=later)
        assert store.ops_rows("hourly", T0, T0 + 3600) == []
        assert store.ops_rows("daily", T0, T0 + 86_400)
        much_later = T0 + DAILY_KEEP_S + 86_400
        store.ops_commit(ledger.take(much_later), wall=much_later)
        assert store.ops_rows("daily", T0, T0 + 86_400) == []
    finally:
        store.close()


@pytest.mark.parametrize("code", sorted(VEHICLE_FAULT_CODES))
def test_every_vehicle_fault_of_the_dc_controller_is_the_vehicles_cause(code: str) -> None:
    """NEVI uptime excludes what the vehicle caused: every code the DC controller names the vehicle with counts."""
    assert fault_cause(Fault(code, DeviceRole.DC_CONTROLLER, "dc1", code)) == CAUSE_EV


def test_problem_snapshots_are_kept_for_the_newest_reports_only(tmp_path: Path) -> None:
    """Every report stays, but only the newest SNAPSHOT_LOGS_KEPT carry their log lines: a bounded file."""
    store = Store(tmp_path / "agent.db")
    log = ["x" * 300] * 200  # a full snapshot, about 60 KB
    for n in range(SNAPSHOT_LOGS_KEPT + 10):
        store.ops_event("problem", 0, {"note": f"report {n}", "log": log}, wall_time=float(n), clock_trusted=True)
    store.ops_event("replacement", 1, {"part": "meter"}, wall_time=99.0, clock_trusted=True)
    problems = store.ops_events(limit=1000, kind="problem")
    assert len(problems) == SNAPSHOT_LOGS_KEPT + 10
    with_log = [e.detail["note"] for e in problems if "log" in e.detail]
    assert with_log == [f"report {n}" for n in range(SNAPSHOT_LOGS_KEPT + 9, 9, -1)]  # newest first
    assert all(e.detail["note"] for e in problems)  # the reports themselves stay whole
    store.close()


def test_a_clock_set_forward_or_back_books_no_time() -> None:
    """A Pi without a real-time clock boots in 1970 and NTP sets it: the step is not time in a state, and the
    ledger does not split decades into hours."""
    ledger = OperationsLedger([1], 0.0, can_start_offline=True)
    ledger.status(1, ConnectorStatus.AVAILABLE, None, "", 60.0)  # a minute in 1970
    ledger.clock_stepped(T0 - 60.0)  # the clock set to 2026
    ledger.status(1, ConnectorStatus.CHARGING, None, "", T0 + 600)
    ledger.clock_stepped(-86_400.0)  # and a day back
    pending = ledger.take(T0 - 86_400 + 900)
    booked = sum(v for (_p, c, k), v in pending.hourly.items() if c == 1 and k.startswith("t."))
    assert booked == 60 + 600 + 300
    assert len(pending.hourly) < 20


def test_a_gap_longer_than_the_daily_rows_are_kept_is_booked_for_what_is_kept() -> None:
    ledger = OperationsLedger([1], T0, can_start_offline=True)
    ledger.gap(0.0, T0, "power_loss")
    pending = ledger.take(T0)
    days = {p for (p, c, k) in pending.daily if k == "t.off.power_loss"}
    assert len(days) <= MAX_GAP_S // 86_400 + 1


async def test_the_runtime_moves_the_ledger_with_a_clock_set_by_the_back_office(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with charging_agent(tmp_path, monkeypatch, "1.6") as run:
        ledger = run.agent.operations.ledger
        run.agent.feed(Tick())
        ledger.take(run.agent.now())
        run.agent.clock_offset_s += 20 * 365 * 86_400.0  # the back office's time: twenty years on
        run.agent.feed(Tick())
        pending = ledger.take(run.agent.now())
        booked = sum(v for (_p, c, k), v in pending.hourly.items() if c == 1 and k.startswith("t."))
        assert booked < 60 and len(pending.hourly) < 20
