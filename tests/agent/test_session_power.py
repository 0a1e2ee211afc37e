"""Per-session power curves (agent/store/operations.py `ops_power`): thinned evenly, bounded, pruned, written in
the meter pass's one fsync; and the charts evsectl draws with plotext (agent/diag/plots.py) without a terminal."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from agent.diag.operations import render, render_power
from agent.store import Store
from agent.store.operations import POWER_KEEP_S, POWER_KEEP_SESSIONS, POWER_MAX_POINTS, power_stride

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ANSI = re.compile(r"\x1b\[")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "agent.db")


def test_a_long_curve_is_thinned_evenly_and_keeps_its_newest_point(store: Store) -> None:
    samples = 1000  # a 16-hour session sampled every minute
    for i in range(samples):
        assert store.ops_power_point(7, 1, T0 + 60 * i, 1000.0 + i, 10.0 * i) == i
    points = store.ops_power_curve(7)
    stride = power_stride(samples - 1)
    assert stride == 4  # 500 points at every other sample would be too many; 250 at every fourth are not
    assert [p.seq for p in points] == [*range(0, samples, stride), samples - 1]
    assert len(points) <= POWER_MAX_POINTS + 1
    last = points[-1]
    assert (last.wall_time, last.power_w, last.energy_wh) == (T0 + 60 * 999, 1999.0, 9990.0)
    assert store.ops_power_curve(8) == []  # another session's curve is its own


def test_every_sample_is_kept_while_the_curve_is_short(store: Store) -> None:
    for i in range(POWER_MAX_POINTS):
        store.ops_power_point(1, 2, T0 + i, None if i == 3 else 7000.0, float(i))
    points = store.ops_power_curve(1)
    assert [p.seq for p in points] == list(range(POWER_MAX_POINTS))
    assert points[3].power_w is None  # a meter without a power register: the energy stays


def test_curves_are_kept_for_the_latest_sessions_only(store: Store) -> None:
    store.ops_power_point(1, 1, T0, 100.0, 0.0)
    store.ops_power_point(2, 1, T0 + 1, 100.0, 0.0)
    store.ops_power_point(1 + POWER_KEEP_SESSIONS, 1, T0 + 2, 100.0, 0.0)  # the first point prunes
    assert store.ops_power_curve(1) == [] and len(store.ops_power_curve(2)) == 1
    later = T0 + POWER_KEEP_S + 10
    store.ops_power_point(3 + POWER_KEEP_SESSIONS, 1, later, 100.0, 0.0)  # and drops curves too old
    assert store.ops_power_curve(2) == [] and store.ops_power_curve(1 + POWER_KEEP_SESSIONS) == []
    assert len(store.ops_power_curve(3 + POWER_KEEP_SESSIONS)) == 1


def test_the_point_shares_the_meter_passs_one_fsync(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[str] = []
    real = store._fsync_wal
    monkeypatch.setattr(store, "_fsync_wal", lambda: (syncs.append("wal"), real())[1])
    tx = store.reserve_tx_id(T0, 1.0)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)  # type: ignore[union-attr]
    with store.one_sync():  # what the runtime's meter pass does: the transaction row, then the curve's point
        store.update_transaction_meter(tx, 1234.0, T0)
        store.ops_power_point(tx, 1, T0, 7400.0, 1234.0)
        assert syncs == []
    store._conn.set_trace_callback(None)  # type: ignore[union-attr]
    assert syncs == ["wal"]  # one fsync for the pass, not one per record
    begins = [i for i, text in enumerate(statements) if text == "BEGIN IMMEDIATE"]
    assert len(begins) == 2 and all(statements[i - 1] == "PRAGMA synchronous=NORMAL" for i in begins)


def power_result(points: list[tuple[float, float | None, float]], running: bool = False) -> dict[str, object]:
    return {"tx_local_id": 12, "connector": 1, "start": T0, "stop": None if running else T0 + 3600,
            "running": running, "energy_wh": points[-1][2] - points[0][2],
            "points": [{"t": t, "power_w": p, "energy_wh": e} for t, p, e in points]}


def test_the_power_plot_without_a_terminal_is_plain_and_80_columns() -> None:
    points = [(T0 + 60 * i, 11000.0 if 2 <= i <= 40 else 500.0, 150.0 * i) for i in range(60)]
    text = render_power(power_result(points), chart=(80, False))
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert "session 12, connector 1, 2026-01-01 00:00 UTC (ended)" in lines[0]
    assert max(len(line) for line in lines[:-1]) == 80
    assert "kW" in text and "minutes since the start" in text
    assert any("11" in line.split("┤")[0] for line in lines if "┤" in line)  # the y axis reaches 11 kW
    assert lines[-1] == "60 points kept, energy 8.850 kWh, peak 11.00 kW"
    coloured = render_power(power_result(points), chart=(100, True))
    assert ANSI.search(coloured)  # on a terminal, plotext's colours


def test_a_meter_without_power_plots_the_power_its_energy_gives() -> None:
    points = [(T0 + 60 * i, None, 100.0 * i) for i in range(10)]  # 100 Wh a minute: 6 kW
    text = render_power(power_result(points, running=True), chart=(80, False))
    assert "(running)" in text
    drawn = [line for line in text.splitlines() if "⣀" in line]
    assert len(drawn) == 1 and drawn[0].startswith("6.3┤")  # one flat line at the top: 6 kW (the axis to 6.3)
    assert text.splitlines()[-1] == "10 points kept, energy 0.900 kWh, peak 6.00 kW"


def test_the_report_draws_one_bar_per_day_without_a_terminal() -> None:
    days = [{"date": f"2026-01-{d:02d}", "1": {"energy_wh": 1000.0 * d, "sessions": 1, "occupied_min": 10.0,
                                               "uptime_pct": 100.0}} for d in range(1, 31)]
    port = {"uptime_pct": 100.0, "raw_uptime_pct": 100.0, "recorded_min": 1440.0, "outage_min": 0.0,
            "excluded_min": 0.0, "sessions": 30, "energy_wh": 465_000.0, "utilization_pct": 5.0,
            "plugged_idle_min": 0.0, "peak_power_w": 11000.0, "mean_power_w": 7000.0, "faults": {},
            "outages_min": {}}
    result = {"period": {"since": T0, "until": T0 + 30 * 86400}, "ports": {"1": port}, "days": days,
              "station": {"online_min": 1.0, "offline_min": 0.0, "off_min": {}, "reconnects": 1, "rtt_p50_ms": 10,
                          "rtt_p99_ms": 20, "queue_mean": 0.0, "queue_max": 0}, "wear": [], "events": []}
    text = render(result, chart=(80, False))
    assert not ANSI.search(text)
    bars = {line.split("┤")[0]: line.count("█") for line in text.splitlines() if "┤" in line and "█" in line}
    # every day, the oldest on top, labelled with its exact figure
    assert list(bars) == [f"2026-01-{d:02d} {d:8.2f}" for d in range(1, 31)]
    assert bars["2026-01-30    30.00"] > bars["2026-01-15    15.00"] > bars["2026-01-01     1.00"]
    assert max(len(line) for line in text.splitlines() if "┤" in line) == 80


def test_the_chart_takes_the_terminals_width_and_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.diag import plots

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(plots.shutil, "get_terminal_size", lambda fallback: os.terminal_size((120, 40)))
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert plots.chart_size(io.StringIO()) == (80, False)  # a pipe or a file
    assert plots.chart_size(Tty()) == (120, True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert plots.chart_size(Tty()) == (120, False)
