"""Replay figures against the lean responder: drain rate against raw clients sending the same stored frames,
CPU and disk per replayed message, event-loop stalls, the e-stop under load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Figure, cpu_s, percentile, ratio, rss_kb
from bench.e2e import _estop_rows, estop_probe
from bench.raw_client import stored_frames
from bench.rig import CP_ID, ROOT, AgentProc, ResponderProc, Sim, disk_io, env_quiet

ROUNDS = 3
COUNT = 3_000
RATIO_OCPP_TARGET = 2.0
RATIO_BARE_TARGET = 0.5
CPU_TARGET = 0.5
FSYNC_TARGET = 0.05
BYTES_TARGET_KB = 3.0
STALL_TARGET_MS = 50.0
PING_MS = 10
STALL_MESSAGES = 3_000  # of the 100k queue: the StartTransaction ack, then a steady replay
SAMPLE_S = 0.1


async def _agent_round(sim: Sim, responder: ResponderProc, template: Path, name: str, count: int, *,
                       strace: bool = False, ping_ms: int = 0, launch: list[str] | None = None,
                       during: Any = None) -> dict[str, Any]:
    """Start an agent on a copy of `template` against the responder; sample (tx, cpu, write_bytes, rss) until
    `count` transaction messages are answered; `during(agent)` runs once the replay is under way."""
    config = sim.agent_config(name, responder.url())
    state = sim.workdir / name
    for leftover in state.glob("agent.db*"):
        leftover.unlink()
    shutil.copyfile(template, state / "agent.db")
    path = f"/ocpp/{CP_ID}"
    await responder.command(f"reset {path}")
    if ping_ms:
        await responder.command(f"ping {path} {ping_ms}")
    agent = AgentProc(config, launch=launch, strace_out=sim.workdir / f"{name}.strace" if strace else None)
    samples: list[tuple[int, float, int, float]] = []
    extra: Any = None
    try:
        deadline = time.monotonic() + 600
        while True:
            stats = await responder.stats(CP_ID)
            if stats["tx"] > 0:
                io = disk_io(agent.pid)
                samples.append((stats["tx"], cpu_s(agent.pid), io["write_bytes"], rss_kb(agent.pid) / 1024))
            if during is not None and extra is None and stats["tx"] >= 100:
                extra = await during(agent)
            if stats["tx"] >= count:
                break
            if not agent.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"replay stopped at {stats['tx']} of {count}:\n{agent.tail()}")
            await asyncio.sleep(SAMPLE_S)
        if ping_ms:
            await responder.command(f"ping {path} 0")
        stats = await responder.stats(CP_ID)
        syncs = agent.syncs(stats["first_tx_wall"], stats["last_tx_answer_wall"]) if strace else []
    finally:
        agent.stop()
    return {"stats": stats, "samples": samples, "syncs": syncs, "extra": extra}


async def _raw_round(responder: ResponderProc, mode: str, db: Path) -> dict[str, Any]:
    """One baseline client run (its own process); the responder times it as it times the agent."""
    cp_id = f"RAW-{mode.upper()}"
    await responder.command(f"reset /ocpp/{cp_id}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.raw_client", mode, responder.url(cp_id), str(db), cwd=ROOT, env=env_quiet(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 600)
    if proc.returncode != 0:
        raise RuntimeError(f"raw {mode} client failed: {err.decode()[-1500:]}")
    return {"client": json.loads(out.decode().strip().splitlines()[-1]), "stats": await responder.stats(cp_id)}


def _drain(stats: dict[str, Any]) -> tuple[int, float]:
    """(messages, seconds from the first arriving to the last answered) as the responder saw them."""
    return int(stats["tx"]), float(stats["last_tx_answer"]) - float(stats["first_tx"])


def _slope(samples: list[tuple[int, float, int, float]], field: int) -> float:
    """d(field)/d(messages) between the first and the last sample."""
    first, last = samples[0], samples[-1]
    if last[0] == first[0]:
        raise RuntimeError("too few samples during the replay")
    return (last[field] - first[field]) / (last[0] - first[0])


async def replay(sim: Sim, responder: ResponderProc, template: Path) -> list[Figure]:
    """Items 1 and 11: 3 alternating rounds of 3k stored messages; then one round under strace for the disk."""
    frames = stored_frames(template)
    if len(frames) != COUNT:
        raise RuntimeError(f"template holds {len(frames)} messages, not {COUNT}")
    totals: dict[str, list[float]] = {"agent": [0, 0.0], "ocpp": [0, 0.0], "bare": [0, 0.0]}
    agent_cpu: list[float] = []
    ocpp_cpu: list[float] = []
    for n in range(ROUNDS):
        result = await _agent_round(sim, responder, template, f"replay-{n}", COUNT)
        count, seconds = _drain(result["stats"])
        totals["agent"][0] += count
        totals["agent"][1] += seconds
        agent_cpu.append(_slope(result["samples"], 1))
        for mode in ("ocpp", "bare"):
            raw = await _raw_round(responder, mode, template)
            count, seconds = _drain(raw["stats"])
            totals[mode][0] += count
            totals[mode][1] += seconds
            if mode == "ocpp":
                ocpp_cpu.append(raw["client"]["cpu_s"] / raw["client"]["sent"])
    rate = {k: v[0] / v[1] for k, v in totals.items()}
    a_cpu, o_cpu = sum(agent_cpu) / len(agent_cpu) * 1000, sum(ocpp_cpu) / len(ocpp_cpu) * 1000
    disk = await _agent_round(sim, responder, template, "replay-disk", COUNT, strace=True)
    count, _ = _drain(disk["stats"])
    fsyncs = len(disk["syncs"]) / count
    written = _slope(disk["samples"], 2) / 1024
    frame_kb = sum(len(text) for _, text in frames) / len(frames) / 1024
    where: dict[str, int] = {}
    for _, what in disk["syncs"]:
        where[what] = where.get(what, 0) + 1
    note = (f"{ROUNDS} alternating rounds of {COUNT} stored messages (StartTransaction, 6-sample MeterValues, "
            "StopTransaction) to bench.responder in its own process, timed there from the first message to the "
            "last answer")
    return [
        Figure("replay vs raw ocpp client, same frames", rate["agent"], "msg/s", rate["ocpp"],
               ratio(rate["agent"], rate["ocpp"]), f"ratio >= {RATIO_OCPP_TARGET}",
               rate["agent"] >= RATIO_OCPP_TARGET * rate["ocpp"],
               note + "; baseline: plain ocpp.v16.ChargePoint, the library's call dataclasses, inline validation"),
        Figure("replay vs bare websockets client, same frames", rate["agent"], "msg/s", rate["bare"],
               ratio(rate["agent"], rate["bare"]), f"ratio >= {RATIO_BARE_TARGET}",
               rate["agent"] >= RATIO_BARE_TARGET * rate["bare"],
               note + "; baseline: plain websockets client, stored text in a CALL frame"),
        Figure("agent CPU per replayed message", a_cpu, "ms", o_cpu, ratio(a_cpu, o_cpu),
               f"ratio <= {CPU_TARGET}", a_cpu <= CPU_TARGET * o_cpu,
               "agent: /proc/PID/stat slope over the drain; baseline: the raw ocpp client's own process time"),
        Figure("fsyncs per replayed message", fsyncs, "fsync", None, None, f"<= {FSYNC_TARGET}",
               fsyncs <= FSYNC_TARGET,
               f"{len(disk['syncs'])} sync calls for {count} messages in a 4th round under strace --seccomp-bpf: "
               f"{dict(sorted(where.items(), key=lambda kv: -kv[1])[:3])}"),
        Figure("bytes written per replayed message", written, "KB", frame_kb, ratio(written, frame_kb),
               f"<= {BYTES_TARGET_KB:.0f} KB", written <= BYTES_TARGET_KB,
               "/proc/PID/io write_bytes slope over the drain; baseline: the stored frame's own size"),
    ]


def _max_rtt(pings: list[list[float]], start: float, end: float) -> tuple[float, int]:
    """Longest round trip (ms) of the pings sent in [start, end], and how many there were."""
    inside = [rtt for sent, rtt in pings if start <= sent <= end]
    return (max(inside) * 1000 if inside else float("nan")), len(inside)


async def stalls(sim: Sim, responder: ResponderProc, big: Path) -> list[Figure]:
    """Item 12: 100k queued, pinged every 10 ms from the responder, until 3k are drained."""
    result = await _agent_round(sim, responder, big, "stall", STALL_MESSAGES, ping_ms=PING_MS)
    stats = result["stats"]
    pings = stats["pings"]
    if stats["start_answer"] is None or stats["after_start"] is None or not pings:
        raise RuntimeError("no StartTransaction answer or no pings in the stall run")
    ack_ms, ack_n = _max_rtt(pings, stats["start_answer"] - 0.05, stats["after_start"])
    steady_from = stats["after_start"]  # from the first message after the answer: no unmeasured half second
    replay_ms, replay_n = _max_rtt(pings, steady_from, stats["last_tx_answer"])
    median = percentile([rtt for _, rtt in pings], 50) * 1000
    gap = (stats["after_start"] - stats["start_answer"]) * 1000
    return [
        Figure("longest event-loop stall, StartTransaction ack, 100k queued", ack_ms, "ms", median,
               ratio(ack_ms, median), f"<= {STALL_TARGET_MS:.0f} ms", ack_ms <= STALL_TARGET_MS,
               f"longest websocket ping round trip (bench.responder pings every {PING_MS} ms, {ack_n} pings) from "
               f"the StartTransaction answer to the next message ({gap:.0f} ms later); baseline: median round trip"),
        Figure("longest event-loop stall during a replay", replay_ms, "ms", median, ratio(replay_ms, median),
               f"<= {STALL_TARGET_MS:.0f} ms", replay_ms <= STALL_TARGET_MS,
               f"longest ping round trip over {replay_n} pings while {STALL_MESSAGES} of the 100k queued drained; "
               "baseline: median round trip"),
    ]


class _Done(Exception):
    """Ends an agent round early once its `during` step has run."""


async def estop_under_load(sim: Sim, responder: ResponderProc, big: Path, idle: dict[str, Any] | None
                           ) -> list[Figure]:
    """Item 3: the e-stop probe in an agent draining the 100k queue (the round ends when the probe is done)."""
    estop_file = sim.workdir / "load-estop.json"
    loaded: dict[str, Any] = {}

    async def probe(agent: AgentProc) -> Any:
        loaded.update(await estop_probe(agent, estop_file))
        raise _Done

    with contextlib.suppress(_Done):
        await _agent_round(sim, responder, big, "estop-load", 10**9, launch=["--estop", str(estop_file)],
                           during=probe)
    return _estop_rows("during a replay", loaded, idle)
