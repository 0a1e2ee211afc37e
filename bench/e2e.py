"""End-to-end figures: idle footprint, event to wire, replay throughput, memory with a long queue."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CpuWindow, Figure, percentile, ratio, rss_kb
from bench.rig import (
    CARD,
    CP_ID,
    POLL_INTERVAL_S,
    ROOT,
    AgentProc,
    Sim,
    env_quiet,
    free_port,
    prefill,
    queued,
    wait_until,
)
from simulator.backoffice import BackOffice

LOGGER = logging.getLogger(__name__)

WARMUP_S = 8.0  # after both connectors reported Available: imports done, caches warm, pools connected
IDLE_WINDOW_S = 10.0
RSS_TARGET_RATIO = 1.3
CPU_TARGET_PCT = 1.0
EVENT_REPS = 30
EVENT_SLACK_S = 0.050  # target: p99 <= poll interval + 50 ms
REPLAY_COUNT = 10_000
RAW_HEARTBEAT_S = 5.0
REPLAY_TARGET_RATIO = 0.8
QUEUE_RSS_COUNT = 100_000
QUEUE_SETTLE_S = 8.0
QUEUE_RSS_TARGET_MB = 5.0


def _answered(office: BackOffice, action: str) -> list[dict[str, object]]:
    return [m for m in office.messages(CP_ID, action) if m["response"] is not None]


def _status(office: BackOffice, connector: int) -> str | None:
    entry = office.connector_status.get((CP_ID, connector))
    return entry["status"] if entry else None


async def _start_agent(sim: Sim, office: BackOffice, name: str) -> AgentProc:
    office.clear()
    agent = AgentProc(sim.agent_config(name, office.url()))
    await wait_until(lambda: _status(office, 1) == "Available" and _status(office, 2) == "Available",
                     "both connectors Available", 30.0, agent)
    return agent


async def idle_and_event(sim: Sim, office: BackOffice) -> list[Figure]:
    """Figures 1 and 4 on one running agent."""
    agent = await _start_agent(sim, office, "idle")
    baseline = subprocess.Popen([sys.executable, "-m", "bench.idle_baseline"], cwd=ROOT, env=env_quiet(),
                                stdout=subprocess.PIPE)
    try:
        assert baseline.stdout is not None
        await asyncio.to_thread(baseline.stdout.readline)
        await asyncio.sleep(WARMUP_S)
        window = CpuWindow([agent.pid, baseline.pid])
        await asyncio.sleep(IDLE_WINDOW_S)
        cpu = window.percent()
        agent_rss, base_rss = rss_kb(agent.pid) / 1024, rss_kb(baseline.pid) / 1024
    finally:
        baseline.terminate()
        baseline.wait(10)
    rows = [
        Figure("idle RSS (daemon, 2 connectors)", agent_rss, "MB", base_rss, ratio(agent_rss, base_rss),
               f"ratio <= {RSS_TARGET_RATIO}", agent_rss <= RSS_TARGET_RATIO * base_rss,
               "baseline: python importing ocpp 1.6+2.0.1, websockets, pymodbus, gpiozero, sqlite3, serial"),
        Figure("idle CPU (poll 1 s)", cpu[agent.pid], "% of a core", cpu[baseline.pid],
               ratio(cpu[agent.pid], cpu[baseline.pid]), f"<= {CPU_TARGET_PCT} %",
               cpu[agent.pid] <= CPU_TARGET_PCT, f"over {IDLE_WINDOW_S:.0f} s after {WARMUP_S:.0f} s warm-up"),
    ]
    try:
        rows += await _event_to_wire(sim, office, agent)
    except Exception as err:  # keep the idle rows; the crash row makes `python -m bench` exit 1
        LOGGER.exception("event-to-wire benchmark crashed")
        rows.append(Figure("plug -> StatusNotification / StartTransaction", None, "-", None, None, "-", None,
                           f"benchmark crashed: {err!r}"[:300]))
    finally:
        agent.stop()
    return rows


async def _event_to_wire(sim: Sim, office: BackOffice, agent: AgentProc) -> list[Figure]:
    """Card, then plug: time until the back office receives StatusNotification and StartTransaction."""
    status_ms: list[float] = []
    start_ms: list[float] = []
    phase = random.Random(7)
    for _ in range(EVENT_REPS):
        auths = len(_answered(office, "Authorize"))
        starts = len(_answered(office, "StartTransaction"))
        stops = len(_answered(office, "StopTransaction"))
        sim.call("/card", {"uid": CARD})
        # The card is authorized before the plug (Authorize answered, or the cache decided at once).
        deadline = time.monotonic() + 2.0
        while len(_answered(office, "Authorize")) == auths and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # A random phase against the agent's poll tick: otherwise every plug lands at the same point of it.
        await asyncio.sleep(0.2 + phase.uniform(0.0, POLL_INTERVAL_S))
        plugged = time.time()
        sim.call("/plug", {"connector": 1})
        def seen() -> tuple[dict[str, object], dict[str, object]] | None:
            started = _answered(office, "StartTransaction")
            status = [m for m in office.messages(CP_ID, "StatusNotification")
                      if float(m["ts"]) >= plugged and m["payload"]["connectorId"] == 1]  # type: ignore[index]  # noqa: B023
            return (started[starts], status[0]) if len(started) > starts and status else None  # noqa: B023

        start, first_status = await wait_until(seen, "StartTransaction and StatusNotification", 20.0, agent)
        status_ms.append((float(first_status["ts"]) - plugged) * 1000)  # type: ignore[arg-type]
        start_ms.append((float(start["ts"]) - plugged) * 1000)
        sim.call("/unplug", {"connector": 1})
        await wait_until(lambda: len(_answered(office, "StopTransaction")) > stops and _status(office, 1) ==  # noqa: B023
                         "Available", "StopTransaction and Available", 20.0, agent)
    limit_ms = POLL_INTERVAL_S * 1000 + EVENT_SLACK_S * 1000
    poll_ms = POLL_INTERVAL_S * 1000
    rows = []
    for what, samples in (("StatusNotification", status_ms), ("StartTransaction", start_ms)):
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        rows.append(Figure(f"plug -> {what} p50", p50, "ms", poll_ms, ratio(p50, poll_ms), "-", None,
                           f"{len(samples)} plug-ins; baseline = poll interval"))
        rows.append(Figure(f"plug -> {what} p99", p99, "ms", poll_ms, ratio(p99, poll_ms),
                           f"<= {limit_ms:.0f} ms", p99 <= limit_ms,
                           f"{len(samples)} plug-ins; baseline = poll interval"))
    return rows


async def _raw_rate(office: BackOffice, mode: str) -> float:
    """Round trips per second of the plain `ocpp` client against this back office."""
    # The back office runs in this event loop: the baseline client must not block it.
    raw = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.raw_heartbeat", office.url(f"RAW-{mode.upper()}"), str(RAW_HEARTBEAT_S),
        mode, cwd=ROOT, env=env_quiet(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(raw.communicate(), 60)
    if raw.returncode != 0:
        raise RuntimeError(f"raw {mode} client failed: {err.decode()[-1500:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return float(result["calls"]) / float(result["seconds"])


async def replay(sim: Sim, office: BackOffice, workdir: Path) -> list[Figure]:
    """Figure 3: 10,000 queued transaction messages drained to the back office, against raw Heartbeats."""
    raw_rate = await _raw_rate(office, "heartbeat")
    raw_meter_rate = await _raw_rate(office, "meter")
    office.clear()
    known = set(office.transactions)
    db = workdir / "replay" / "agent.db"
    prefill(db, REPLAY_COUNT)
    assert queued(db) == REPLAY_COUNT, queued(db)
    agent = AgentProc(sim.agent_config("replay", office.url()))
    try:
        await wait_until(lambda: any(t["cp_id"] == CP_ID and t["stop"] is not None
                                     for k, t in office.transactions.items() if k not in known),
                         "StopTransaction of the queued transaction", 300.0, agent)
        await asyncio.sleep(0.2)  # the CALLRESULT frame is recorded right after the handler returns
    finally:
        agent.stop()
    calls = office.messages(CP_ID)
    boot = next(m for m in calls if m["action"] == "BootNotification")
    tx = [m for m in calls if m["action"] in ("StartTransaction", "MeterValues", "StopTransaction")
          and m["response"] is not None]
    if len(tx) < REPLAY_COUNT:
        raise RuntimeError(f"only {len(tx)} of {REPLAY_COUNT} queued messages were answered")
    last_ack = max(float(m["response"]["ts"]) for m in tx)  # type: ignore[index]
    seconds = last_ack - float(boot["ts"])  # type: ignore[arg-type]
    rate = REPLAY_COUNT / seconds
    return [Figure("replay 10k queued messages", rate, "msg/s", raw_rate, ratio(rate, raw_rate),
                   f"ratio >= {REPLAY_TARGET_RATIO}", rate >= REPLAY_TARGET_RATIO * raw_rate,
                   f"{seconds:.1f} s from BootNotification to the last ack; baseline: raw ocpp Heartbeat "
                   "round trips, same back office"),
            Figure("replay vs raw MeterValues round trips", rate, "msg/s", raw_meter_rate,
                   ratio(rate, raw_meter_rate), "(diagnostic)", None,
                   "baseline: raw ocpp client sending the same MeterValues payload: the payload's own cost")]


async def queue_memory(sim: Sim, workdir: Path) -> list[Figure]:
    """RSS of the offline daemon with 100,000 queued messages minus RSS with an empty queue."""
    url = f"ws://127.0.0.1:{free_port()}/ocpp"  # nothing listens: the agent stays offline
    prefill(workdir / "rss-queued" / "agent.db", QUEUE_RSS_COUNT)
    rss: dict[str, float] = {}
    for name in ("rss-empty", "rss-queued"):
        agent = AgentProc(sim.agent_config(name, url))
        try:
            await wait_until(lambda: "started for" in agent.text(), "agent start", 30.0, agent)  # noqa: B023
            await asyncio.sleep(QUEUE_SETTLE_S)
            samples = []
            for _ in range(5):
                samples.append(rss_kb(agent.pid) / 1024)
                await asyncio.sleep(0.2)
            rss[name] = max(samples)
        finally:
            agent.stop()
    growth = rss["rss-queued"] - rss["rss-empty"]
    return [Figure("RSS growth, 100k queued (offline)", growth, "MB", rss["rss-empty"],
                   ratio(rss["rss-queued"], rss["rss-empty"]), f"<= {QUEUE_RSS_TARGET_MB:.0f} MB",
                   growth <= QUEUE_RSS_TARGET_MB,
                   f"RSS {rss['rss-queued']:.1f} MB with 100k queued vs {rss['rss-empty']:.1f} MB empty (baseline)")]
