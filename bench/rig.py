"""The processes of the end-to-end figures: one simulator, agents with their own configs and state databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.store import Store
from simulator.backoffice import BackOffice
from simulator.httpjson import http_json

ROOT = Path(__file__).resolve().parent.parent
SIM_CONFIG = ROOT / "tests" / "integration" / "sim.toml"  # two connectors: DC with its meter, AC meter
CP_ID = "CP-TEST-1"
CARD = "0F00A1B2C3"  # the id the simulated RDM6300 reports; Accepted by the bench's back office
START_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 1.0
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "msync")  # what reaches the disk now


def bin_path(name: str) -> str:
    """A console script of the virtualenv this interpreter runs from."""
    return str(Path(sys.executable).parent / name)


def free_port() -> int:
    """A loopback port that nothing listens on (for an agent that must stay offline)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_office() -> BackOffice:
    """The local back office as the integration tests configure it, without a log file."""
    return BackOffice(id_tags={CARD: "Accepted"}, heartbeat_interval=300)


class Sim:
    """`evse-sim hardware` as a process; writes the agent config template it serves."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.template = workdir / "agent-template.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.control = ""

    async def start(self) -> None:
        ready = self.workdir / "sim-ready.json"
        log = open(self.workdir / "sim.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [bin_path("evse-sim"), "hardware", "--config", str(SIM_CONFIG), "--write-agent-config",
             str(self.template), "--state-dir", str(self.workdir / "state"), "--ready-file", str(ready),
             "--backoffice-url", "ws://127.0.0.1:1/ocpp"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start: {(self.workdir / 'sim.log').read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        self.control = json.loads(ready.read_text())["control"]

    def call(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        """The simulator's HTTP control API."""
        return http_json(self.control, method, path, body)

    def agent_config(self, name: str, url: str, poll_interval_s: float = POLL_INTERVAL_S, *,
                     free_vend: str | None = None, extra: str = "") -> Path:
        """An agent config for these devices with its own state directory, back office URL and poll interval;
        `free_vend`: connector 1 starts without a card, with this id; `extra`: TOML tables appended."""
        state = self.workdir / name
        state.mkdir(parents=True, exist_ok=True)
        text = self.template.read_text()
        text = re.sub(r'(?m)^url = "ws://[^"]*"$', f"url = {json.dumps(url)}", text)
        text = re.sub(r"(?m)^directory = .*$", f"directory = {json.dumps(str(state))}", text)
        text = re.sub(r"(?m)^socket = .*$", f"socket = {json.dumps(str(state / 'evsectl.sock'))}", text)
        text = re.sub(r"(?m)^poll_interval_s = .*$", f"poll_interval_s = {poll_interval_s!r}", text)
        if free_vend is not None:
            text = re.sub(r"(?m)^id = 1$", f"id = 1\nfree_vend_id_tag = {json.dumps(free_vend)}", text, count=1)
        text += "\n" + extra
        path = self.workdir / f"{name}.toml"
        path.write_text(text)
        return path

    def stop(self) -> None:
        stop_process(self.proc)


class AgentProc:
    """`evse-agent --config FILE` as a process; optionally through `bench.launch` (its instruments) and under
    `strace` counting the sync calls (see `SYNC_CALLS`)."""

    def __init__(self, config: Path, *, launch: list[str] | None = None, env: dict[str, str] | None = None,
                 strace_out: Path | None = None) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.strace_out = strace_out
        log = open(self.log, "ab")  # noqa: SIM115 - the process owns it
        if launch is None:
            argv = [bin_path("evse-agent"), "--config", str(config)]
        else:
            argv = [sys.executable, "-m", "bench.launch", *launch, "--", "--config", str(config)]
        if strace_out is not None:
            # --seccomp-bpf: only the traced calls stop the process, every other system call runs untouched
            argv = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-ttt", "-y",
                    "-e", f"trace={','.join(SYNC_CALLS)}", "-o", str(strace_out), *argv]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=env if env is not None else os.environ.copy())
        self._pid: int | None = None if strace_out is not None else self.proc.pid

    @property
    def pid(self) -> int:
        """The agent's pid (under strace: strace's child, found once it exists)."""
        if self._pid is None:
            deadline = time.monotonic() + 10.0
            while self._pid is None:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                found = children.read_text().split() if children.exists() else []
                if found:
                    self._pid = int(found[0])
                elif time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"no agent process under strace:\n{self.tail()}")
                else:
                    time.sleep(0.01)
        return self._pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        """The whole log."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self) -> str:
        """The end of the log, for error messages."""
        return self.text()[-3000:]

    def signal(self, signum: int) -> None:
        """Send a signal to the agent itself (not to strace)."""
        os.kill(self.pid, signum)

    def syncs(self, start_wall: float = 0.0, end_wall: float = float("inf")) -> list[tuple[float, str]]:
        """(wall time, "call(fd<path>)") of the sync calls strace saw in [start_wall, end_wall]."""
        if self.strace_out is None or not self.strace_out.exists():
            return []
        found = []
        for line in self.strace_out.read_text(errors="replace").splitlines():
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[2].split("(", 1)[0] not in SYNC_CALLS:
                continue
            at = float(parts[1])
            if start_wall <= at <= end_wall:
                found.append((at, parts[2].split(")", 1)[0] + ")"))
        return found

    def stop(self) -> None:
        if self.strace_out is not None and self._pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)  # strace passes a signal on, but say it to the agent
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def wait_until(predicate: Any, what: str, timeout: float, agent: AgentProc | None = None) -> Any:
    """Poll a predicate every 20 ms; fail with the agent's log tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if agent is not None and not agent.alive():
            raise RuntimeError(f"agent exited while waiting for {what}:\n{agent.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}" + (f":\n{agent.tail()}" if agent else ""))
        await asyncio.sleep(0.02)


def meter_values_payload(n: int, energy_wh: float) -> dict[str, Any]:
    """A 1.6 MeterValues sample as the agent queues it for a DC session (energy, power, current, voltage, SoC)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + n * 10)) + ".000Z"
    sampled = [
        {"value": f"{energy_wh:.1f}", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
         "unit": "Wh", "location": "Outlet"},
        {"value": "49800.0", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W",
         "location": "Outlet"},
        {"value": "124.5", "context": "Sample.Periodic", "measurand": "Current.Import", "unit": "A",
         "location": "Outlet"},
        {"value": "400.1", "context": "Sample.Periodic", "measurand": "Voltage", "unit": "V", "location": "Outlet"},
        {"value": "42", "context": "Sample.Periodic", "measurand": "SoC", "unit": "Percent", "location": "EV"},
        {"value": "125.0", "context": "Sample.Periodic", "measurand": "Current.Offered", "unit": "A"},
    ]
    return {"connectorId": 1, "transactionId": 0, "meterValue": [{"timestamp": stamp, "sampledValue": sampled}]}


def prefill(db: Path, count: int, *, stop: bool = True) -> None:
    """Queue one offline transaction: StartTransaction, count - 2 MeterValues, StopTransaction.

    Start, the first sample and Stop go through Store exactly as the agent writes them; the bulk of the
    samples is copied in one SQLite transaction (committing them one by one would take minutes and measure
    nothing new: the enqueue figure measures that path).
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    now, mono = time.time(), time.monotonic()
    with Store(db) as store:
        tx = store.reserve_tx_id(now, mono)
        store.begin_transaction(tx, 1, CARD, 12_345_600.0, now, mono, None, "StartTransaction",
                                {"connectorId": 1, "idTag": CARD, "meterStart": 12_345_600,
                                 "timestamp": "2023-11-14T22:13:20.000Z"}, clock_trusted=True)
        store.enqueue("MeterValues", meter_values_payload(0, 12_345_600.0), tx_local_id=tx, wall_time=now,
                      monotonic=mono, clock_trusted=True, thinnable=True, tx_id_field="transactionId")
        boot_id = store.boot_id
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        conn.execute("BEGIN")
        rows = []
        for n in range(1, count - 2):
            payload = meter_values_payload(n, 12_345_600.0 + n * 138.0)
            rows.append(("MeterValues", json.dumps(payload, separators=(",", ":")), tx, 1, boot_id, now, mono, 1,
                         "transactionId"))
        conn.executemany(
            "INSERT INTO outbox (action, payload, tx_local_id, thinnable, boot_id, wall_time, monotonic, "
            "clock_trusted, tx_id_field) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
    if stop:
        with Store(db) as store:
            energy = 12_345_600.0 + count * 138.0
            store.end_transaction(tx, energy, now, mono, "Local", "StopTransaction",
                                  {"transactionId": 0, "meterStop": int(energy), "idTag": CARD,
                                   "timestamp": "2023-11-15T01:00:00.000Z", "reason": "Local"},
                                  clock_trusted=True, tx_id_field="transactionId")


def queued(db: Path) -> int:
    """Rows in the outbox (a check of the prefill)."""
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def env_quiet() -> dict[str, str]:
    """The environment for helper processes (unbuffered, so their one JSON line arrives at once)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def disk_io(pid: int) -> dict[str, int]:
    """/proc/PID/io: write_bytes (sent to the block layer), wchar (passed to write calls), syscw (write calls)."""
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = int(value)
    return fields


class ResponderProc:
    """`python -m bench.responder` as a process, driven over its stdin and stdout (one JSON line each way)."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.responder", cwd=ROOT, env=env_quiet(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT_S)
        self.port = int(json.loads(line)["port"])

    def url(self, cp_id: str = "") -> str:
        """The URL an agent config names (the agent appends its id) or a client uses (with cp_id)."""
        return f"ws://127.0.0.1:{self.port}/ocpp" + (f"/{cp_id}" if cp_id else "")

    async def command(self, line: str) -> Any:
        """One command, its JSON answer."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
            answer = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30.0))
        if "error" in answer:
            raise RuntimeError(f"responder: {answer['error']}")
        return answer

    async def stats(self, cp_id: str) -> dict[str, Any]:
        return dict(await self.command(f"stats /ocpp/{cp_id}"))

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
