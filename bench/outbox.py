"""Durable enqueue: Store.enqueue (synchronous=FULL) against a raw sqlite3 insert-and-commit loop."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from agent.store import Store
from bench.common import Figure, ratio
from bench.rig import meter_values_payload

ROUND_S = 2.0  # per round; rounds alternate so both sides see the same disk weather
ROUNDS = 3
TARGET_RATIO = 0.5


def _store_round(store: Store, tx: int, seconds: float, start_n: int) -> tuple[int, float]:
    """Enqueue realistic MeterValues for `seconds`; returns (messages, elapsed)."""
    n, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        payload = meter_values_payload(start_n + n, 12_345_600.0 + (start_n + n) * 138.0)
        store.enqueue("MeterValues", payload, tx_local_id=tx, wall_time=time.time(), monotonic=time.monotonic(),
                      clock_trusted=True)
        n += 1
    return n, time.perf_counter() - begin


def _raw_round(conn: sqlite3.Connection, seconds: float, start_n: int) -> tuple[int, float]:
    """The same rows with plain sqlite3: BEGIN, INSERT, COMMIT (the payload is serialised here too)."""
    n, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        payload = meter_values_payload(start_n + n, 12_345_600.0 + (start_n + n) * 138.0)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO outbox (action, payload, wall_time) VALUES (?, ?, ?)",
                     ("MeterValues", json.dumps(payload, separators=(",", ":")), time.time()))
        conn.execute("COMMIT")
        n += 1
    return n, time.perf_counter() - begin


async def enqueue_rate(workdir: Path) -> list[Figure]:
    """Figure 2 (synchronous on purpose: both loops block exactly as the agent's enqueue does)."""
    directory = workdir / "enqueue"
    directory.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(str(directory / "raw.db"), isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, "
                "payload TEXT NOT NULL, wall_time REAL NOT NULL)")
    totals = {"store": [0, 0.0], "raw": [0, 0.0]}
    with Store(directory / "agent.db") as store:
        tx = store.reserve_tx_id(time.time(), time.monotonic())
        for _ in range(ROUNDS):
            for name in ("raw", "store"):
                if name == "raw":
                    n, elapsed = _raw_round(raw, ROUND_S, int(totals[name][0]))
                else:
                    n, elapsed = _store_round(store, tx, ROUND_S, int(totals[name][0]))
                totals[name][0] += n
                totals[name][1] += elapsed
    raw.close()
    store_rate = totals["store"][0] / totals["store"][1]
    raw_rate = totals["raw"][0] / totals["raw"][1]
    return [Figure("durable enqueue (Store.enqueue)", store_rate, "msg/s", raw_rate, ratio(store_rate, raw_rate),
                   f"ratio >= {TARGET_RATIO}", store_rate >= TARGET_RATIO * raw_rate,
                   "baseline: sqlite3 BEGIN/INSERT/COMMIT, WAL + synchronous=FULL, same directory")]
