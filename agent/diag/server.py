"""The daemon's side of `evsectl`: one JSON request per line on a Unix socket, one JSON answer per line."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import grp
import json
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core import events as ev
from agent.framelog import StampFormatter
from agent.redact import RedactingFilter

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

# Anyone local may read status; write commands are checked per peer (SO_PEERCRED): root, the daemon's
# user or a member of the configured group (technicians).
SOCKET_MODE = 0o666
MAX_REQUEST = 64 * 1024
LOG_LINES = 1000
WRITE_COMMANDS = frozenset({"config_set", "card", "start", "stop", "unlock", "bundle", "selftest"})


class RingHandler(logging.Handler):
    """Keeps the last log lines (OCPP frames included) for `evsectl log`."""

    def __init__(self, capacity: int = LOG_LINES) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.total = 0  # lines ever emitted: `log --follow` asks for what came after its last count
        self.setFormatter(StampFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))  # a stamp per second
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))
            self.total += 1


class DiagServer:
    """Serves agent state and technician commands over a Unix socket."""

    def __init__(self, agent: Agent, path: str, group: str = "") -> None:
        self.agent = agent
        self.path = Path(path)
        self.group = group
        self.ring = RingHandler()
        logging.getLogger().addHandler(self.ring)
        logging.getLogger("agent.ocpp.frames").addHandler(self.ring)

    async def run(self) -> None:
        """Listen until cancelled."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, SOCKET_MODE)
        if self.group:
            try:
                os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
            except (KeyError, PermissionError) as err:
                LOGGER.warning("cannot give %s to group %s: %s", self.path, self.group, err)
        LOGGER.info("evsectl socket at %s", self.path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _may_write(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        if uid in (0, os.getuid()):
            return True
        if not self.group:
            return False
        try:
            wanted = grp.getgrnam(self.group).gr_gid
        except KeyError:
            return False
        if gid == wanted:
            return True
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("Groups:"):
                    return str(wanted) in line.split()[1:]
        except OSError:
            return False
        return False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                command = str(request["cmd"])
                args = request.get("args") or {}
                if command in WRITE_COMMANDS and not self._may_write(writer):
                    raise PermissionError(f"{command} needs membership of the {self.group or 'daemon'} group")
                answer = {"ok": True, "result": await self.handle(command, args)}
            except PermissionError as err:
                answer = {"ok": False, "error": str(err), "permission": True}
            except (ValueError, KeyError, TypeError) as err:
                answer = {"ok": False, "error": str(err) or type(err).__name__}
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def handle(self, command: str, args: dict[str, Any]) -> Any:
        """Run one command; ValueError/KeyError become an error answer."""
        agent = self.agent
        if command == "status":
            return agent.status()
        if command == "meter":
            return self._meters()
        if command == "sessions":
            return self._sessions(int(args.get("limit", 20)))
        if command == "queue":
            return self._queue(int(args.get("limit", 20)))
        if command == "config_get":
            known, unknown = agent.keys.entries([args["key"]] if args.get("key") else None)
            return {"ocpp": known, "unknown": unknown, "file": agent.config.redacted()}
        if command == "config_set":
            return {"status": agent.keys.change(str(args["key"]), str(args["value"]))}
        if command == "log":
            lines = list(self.ring.lines)
            if args.get("since") is not None:
                new = max(0, self.ring.total - int(args["since"]))
                return {"lines": lines[-new:] if new else [], "total": self.ring.total}
            return {"lines": lines[-int(args.get("lines", 100)):], "total": self.ring.total}
        if command == "cards":  # evsectl card --watch: the cards read after `since`, every format at once
            return {"cards": [c.to_dict() for c in agent.cards.since(int(args.get("since") or 0))],
                    "total": agent.cards.total, "format": agent.cards.format.describe()}
        if command == "card":
            agent.feed(ev.IdPresented(args.get("connector"), str(args["id_tag"])))
            return {"presented": args["id_tag"]}
        if command == "start":
            result, outs = agent.core.remote_start(
                ev.RemoteStart(int(args["connector"]), str(args.get("id_tag") or "TECHNICIAN")),
                agent.now(), time.monotonic())
            agent.execute(outs)
            return {"status": result.value}
        if command == "stop":
            session = agent.core.session(int(args["connector"]))
            if session is None:
                raise ValueError(f"no transaction on connector {args['connector']}")
            # the same id again is a local stop (reason Local), exactly as if the card were presented
            agent.feed(ev.IdPresented(int(args["connector"]), session.id_tag))
            return {"stopping": session.local_tx_id}
        if command == "unlock":
            unlocked, outs = agent.core.unlock(ev.UnlockRequested(int(args["connector"])), agent.now(),
                                               time.monotonic())
            agent.execute(outs)
            refusal = agent.core.unlock_refusal(int(args["connector"]))
            return {"status": unlocked.value, **({"reason": refusal} if refusal else {})}
        if command == "selftest":
            from agent.diag.selftest import run_selftest

            ids = [int(args["connector"])] if args.get("connector") else None
            return await run_selftest(agent, ids)
        if command == "bundle":
            from agent.diag.bundle import write_bundle

            path = write_bundle(agent, Path(agent.config.state.directory) / "diagnostics", list(self.ring.lines))
            return {"path": str(path), "bytes": path.stat().st_size}
        if command in ("report", "service", "report_problem", "session_power"):
            from agent.diag import operations

            return operations.handle(agent.operations, command, args)
        raise ValueError(f"unknown command {command!r}")

    def _meters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cid, state in self.agent.connectors.items():
            r = state.reading
            out[str(cid)] = None if r is None else {
                "energy_import_wh": r.energy_import_wh, "power_w": r.power_w, "voltage_v": list(r.voltage_v),
                "current_a": list(r.current_a), "frequency_hz": r.frequency_hz, "stale": r.stale,
                "age_s": round(time.monotonic() - r.read_monotonic, 2), "soc_pct": state.soc_pct,
            }
        return out

    def _sessions(self, limit: int) -> list[dict[str, Any]]:
        rows = self.agent.store.recent_transactions(limit)
        return [
            {"tx_local_id": r.tx_local_id, "station_tx_id": r.station_tx_id, "transaction_id": r.transaction_id,
             "connector": r.connector_id, "id_tag": r.id_tag, "start": r.start_wall, "stop": r.stop_wall,
             "reason": r.stop_reason,
             "energy_wh": round((r.meter_stop_wh if r.meter_stop_wh is not None else r.last_energy_wh)
                                - r.meter_start_wh, 1), "running": r.stop_wall is None}
            for r in rows if r.connector_id
        ]

    def _queue(self, limit: int) -> dict[str, Any]:
        store = self.agent.store
        return {
            "stats": store.outbox_stats(),
            "pending": [{"id": m.id, "action": m.action, "attempts": m.attempts, "error": m.last_error,
                         "payload": m.payload} for m in store.pending(limit)],
            "dead_letters": [{"id": d.id, "action": d.action, "attempts": d.attempts, "error": d.error,
                              "payload": d.payload} for d in store.dead_letters(limit)],
        }
