"""The local back office's server: listening, handshake checks, the session registry, decisions and controls.

One BackOffice serves many charge points; each connection gets a session of the version its websocket subprotocol
names (`v16.py` for ocpp1.6, `v201.py` for ocpp2.0.1) that records, validates and routes its frames and asks the
BackOffice for every decision (boot status, id tags, transactions, rejections).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from agent.ocpp.library import inline_schema_validation
from simulator.backoffice.control import ControlApi
from simulator.backoffice.ledger import check_transaction_events, transaction_ledger
from simulator.backoffice.log import MessageLog
from simulator.backoffice.schemas import (
    CALL,
    CALLERROR,
    CALLRESULT,
    ERROR_CODES_16,
    ERROR_CODES_201,
    V16,
    V201,
    SchemaValidator,
    frame_errors,
)
from simulator.backoffice.session import CALL_TIMEOUT_S, RecordingSession
from simulator.backoffice.v16 import SUBPROTOCOL, _Session
from simulator.backoffice.v201 import SUBPROTOCOL_201, V201Session

LOGGER = logging.getLogger(__name__)

BOOT_STATUSES = ("Accepted", "Pending", "Rejected")
ID_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
REFUSE_MODES = ("close", "reject")
VERSION_ORDERS = ("station", "office")  # whose order of preference picks the version when both are offered
SUBPROTOCOLS: dict[str, Subprotocol] = {V16: SUBPROTOCOL, V201: SUBPROTOCOL_201}
SESSIONS: dict[str, type[_Session] | type[V201Session]] = {V16: _Session, V201: V201Session}
WAIT_POLL_S = 0.05


class BackOffice:
    """The local OCPP 1.6J central system and 2.0.1 CSMS with its test controls."""

    def __init__(
        self,
        *,
        id_tags: dict[str, str] | None = None,
        parent_ids: dict[str, str] | None = None,
        heartbeat_interval: int = 300,
        boot_status: str = "Accepted",
        pending_boots: int = 0,
        boot_retry_interval: int = 10,
        vendor_ids: Iterable[str] = ("evse-agent",),
        passwords: dict[str, str] | None = None,
        log_path: Path | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
        ocpp_versions: Iterable[str] = (V16, V201),
        version_order: str = "station",
    ) -> None:
        """ocpp_versions: the versions served, in the office's order; version_order: who picks among both."""
        versions = tuple(ocpp_versions)
        if not versions or any(v not in SUBPROTOCOLS for v in versions):
            raise ValueError(f"ocpp_versions must be some of {sorted(SUBPROTOCOLS)}, got {versions!r}")
        if version_order not in VERSION_ORDERS:
            raise ValueError(f"version_order must be one of {VERSION_ORDERS}, got {version_order!r}")
        self.ocpp_versions = versions
        self.version_order = version_order
        for tag, status in (id_tags or {}).items():
            self._check_tag_status(tag, status)
        self._check_boot_status(boot_status)
        self.id_tags: dict[str, str] = dict(id_tags or {})
        self.parent_ids: dict[str, str] = dict(parent_ids or {})
        self.heartbeat_interval = heartbeat_interval
        self.boot_status = boot_status
        self.pending_boots = pending_boots  # answer Pending to this many boots of each charge point first
        self.boot_retry_interval = boot_retry_interval  # interval sent with Pending/Rejected
        self.vendor_ids: set[str] = set(vendor_ids)
        # HTTP Basic auth (security profile 1): None = no check; otherwise cp_id -> password.
        self.passwords: dict[str, str] | None = dict(passwords) if passwords is not None else None
        self.call_timeout_s = call_timeout_s
        self.validator = SchemaValidator()  # 1.6; validator_for() gives each version's
        self._validators = {V16: self.validator, V201: SchemaValidator(version=V201)}
        self._log = MessageLog(log_path)
        self.violations: list[dict[str, Any]] = []
        self.connector_status: dict[tuple[str, int], dict[str, str]] = {}
        self.transactions: dict[int, dict[str, Any]] = {}
        # 2.0.1: the station owns transactionId, so two stations may use the same one
        self.transactions_201: dict[tuple[str, str], dict[str, Any]] = {}
        self.evse_status: dict[tuple[str, int, int], str] = {}  # 2.0.1 (cp_id, evseId, connectorId) -> status
        self._versions: dict[str, str] = {}  # cp_id -> OCPP version of its current (or last) connection
        self._next_tx_id = 1
        self._boot_counts: dict[str, int] = {}
        self._boot_state: dict[str, str] = {}
        self._triggered: dict[str, set[str]] = {}
        self._rejections: dict[str, list[str]] = {}
        self._sessions: dict[str, RecordingSession] = {}
        self._server: Server | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._ssl: ssl.SSLContext | None = None
        self._offline = False
        self._reject_handshakes_until = 0.0
        self._online_task: asyncio.Task[None] | None = None
        self._control: ControlApi | None = None
        self._changed = asyncio.Event()

    # Lifecycle.

    @property
    def port(self) -> int:
        """The OCPP websocket port (0 before start)."""
        return self._port

    def url(self, cp_id: str = "", path: str = "ocpp") -> str:
        """The websocket URL a charge point uses (the cp id is appended when given)."""
        scheme = "wss" if self._ssl is not None else "ws"
        base = f"{scheme}://{self._host}:{self._port}/{path}"
        return f"{base}/{cp_id}" if cp_id else base

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Listen for charge points; returns the bound port.

        ssl_context serves wss:// (security profile 2; profile 3 when it requires client certificates).
        """
        # the library's own validation in the event loop: its thread-pool hop costs more than the validation
        inline_schema_validation()
        self._host, self._port, self._ssl = host, port, ssl_context
        self._offline = False
        await self._listen()
        LOGGER.info("back office listening on %s", self.url())
        return self._port

    async def stop(self) -> None:
        """Stop listening, close every connection and the control API, close the log."""
        self._cancel_online_task()
        await self._unlisten()
        if self._control is not None:
            await self._control.stop()
            self._control = None
        self._log.close()

    async def _listen(self) -> None:
        self._server = await serve(
            self._handle_ws,
            self._host,
            self._port,
            subprotocols=[SUBPROTOCOLS[v] for v in self.ocpp_versions],
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            ssl=self._ssl,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """The station's first supported subprotocol, or the office's first offered one (version_order)."""
        served = [SUBPROTOCOLS[v] for v in self.ocpp_versions]
        # NegotiationError: websockets refuses a missing or other subprotocol with HTTP 400
        if not offered:
            raise NegotiationError("missing subprotocol")
        order = offered if self.version_order == "station" else served
        for subprotocol in order:
            if subprotocol in served and subprotocol in offered:
                return subprotocol
        raise NegotiationError("invalid subprotocol; expected one of " + ", ".join(served))

    def validator_for(self, version: str) -> SchemaValidator:
        """The schema validator of an OCPP version ("1.6" or "2.0.1")."""
        return self._validators[version]

    def version_of(self, cp_id: str) -> str | None:
        """The OCPP version a charge point speaks (its current or last connection), None if never seen."""
        return self._versions.get(cp_id)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse the handshake when told to, when there is no charge point id, or on bad credentials."""
        if time.monotonic() < self._reject_handshakes_until:
            return connection.respond(503, "back office refuses connections\n")
        cp_id = self._cp_id(request.path)
        if not cp_id:
            return connection.respond(404, "no charge point id in the path\n")
        # Security profile 3: a verified TLS client certificate authenticates instead of Basic auth.
        if self.passwords is not None and not self._client_certified(connection) \
                and not self._authorized(cp_id, request.headers):
            LOGGER.warning("charge point %s failed Basic authentication", cp_id)
            response = connection.respond(401, "unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
            return response
        return None

    @staticmethod
    def _client_certified(connection: ServerConnection) -> bool:
        ssl_object = connection.transport.get_extra_info("ssl_object") if connection.transport else None
        return bool(ssl_object is not None and ssl_object.getpeercert())

    async def set_ssl_context(self, ssl_context: ssl.SSLContext | None) -> None:
        """Serve the next connections with another TLS context (same port); open connections are closed."""
        self._ssl = ssl_context
        if self._server is not None:
            await self._unlisten()
            await self._listen()
            self._notify()

    def _authorized(self, cp_id: str, headers: Headers) -> bool:
        assert self.passwords is not None
        value = headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and user == cp_id and cp_id in self.passwords and self.passwords[cp_id] == password

    @staticmethod
    def _cp_id(path: str) -> str:
        return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])

    async def _handle_ws(self, ws: ServerConnection) -> None:
        cp_id = self._cp_id(ws.request.path if ws.request else "")
        version = next(v for v, sub in SUBPROTOCOLS.items() if sub == ws.subprotocol)
        self._versions[cp_id] = version
        session = SESSIONS[version](cp_id, ws, self)
        # Register before closing the old connection, so that charge point never looks disconnected.
        old = self._sessions.get(cp_id)
        self._sessions[cp_id] = session
        if old is not None:
            LOGGER.info("charge point %s reconnected: closing its old connection", cp_id)
            await old.ws.close(1000, "replaced by a new connection")
        LOGGER.info("charge point %s connected (OCPP %s)", cp_id, version)
        self._notify()
        try:
            async for raw in ws:
                try:
                    await session.route_message(raw)
                except ConnectionClosed:
                    raise
                except Exception:  # one bad frame must not end the session; it is in the log already
                    LOGGER.exception("%s: failed to handle frame %r", cp_id, raw)
        except ConnectionClosed:
            pass
        finally:
            session.fail_pending()
            if self._sessions.get(cp_id) is session:
                del self._sessions[cp_id]
            LOGGER.info("charge point %s disconnected", cp_id)
            self._notify()

    # Decisions used by the handlers.

    def _boot_decision(self, cp_id: str) -> tuple[str, int]:
        count = self._boot_counts.get(cp_id, 0) + 1
        self._boot_counts[cp_id] = count
        status = "Pending" if count <= self.pending_boots else self.boot_status
        self._boot_state[cp_id] = status
        self._triggered.pop(cp_id, None)
        return status, self.heartbeat_interval if status == "Accepted" else self.boot_retry_interval

    def id_token_info(self, id_token: str) -> dict[str, Any]:
        """2.0.1 idTokenInfo (wire form) from the same id list as 1.6: the parent id is the groupIdToken."""
        tag_info = self.id_tag_info(id_token)
        info: dict[str, Any] = {"status": tag_info["status"]}
        if "parent_id_tag" in tag_info:
            info["groupIdToken"] = {"idToken": tag_info["parent_id_tag"], "type": "Central"}
        return info

    def _transaction_event(self, cp_id: str, event: dict[str, Any]) -> None:
        """Keep a 2.0.1 transaction's summary (the events themselves are in the message log)."""
        info = event.get("transaction_info") or {}
        tx_id = str(info.get("transaction_id"))
        tx = self.transactions_201.setdefault(
            (cp_id, tx_id),
            {"cp_id": cp_id, "transaction_id": tx_id, "evse_id": None, "connector_id": None, "id_token": None,
             "start": None, "stop": None, "stopped_reason": None, "events": 0, "last_seq_no": None},
        )
        tx["events"] += 1
        tx["last_seq_no"] = event.get("seq_no")
        evse = event.get("evse") or {}
        if "id" in evse:
            tx["evse_id"] = evse["id"]
            tx["connector_id"] = evse.get("connector_id", tx["connector_id"])
        if event.get("id_token"):
            tx["id_token"] = event["id_token"]["id_token"]
        if event.get("event_type") == "Started":
            tx["start"] = event.get("timestamp")
        elif event.get("event_type") == "Ended":
            tx["stop"] = event.get("timestamp")
            tx["stopped_reason"] = info.get("stopped_reason", "Local")  # Local is the spec's default

    def id_tag_info(self, id_tag: str) -> dict[str, str]:
        """The idTagInfo for an id (unknown ids are Invalid)."""
        info = {"status": self.id_tags.get(id_tag, "Invalid")}
        if id_tag in self.parent_ids:
            info["parent_id_tag"] = self.parent_ids[id_tag]
        return info

    def _new_transaction(
        self,
        cp_id: str,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        info: dict[str, str],
    ) -> int:
        tx_id = self._next_tx_id
        self._next_tx_id += 1
        self.transactions[tx_id] = {
            "cp_id": cp_id,
            "connector_id": connector_id,
            "id_tag": id_tag,
            "meter_start": meter_start,
            "start": timestamp,
            "status": info["status"],
            "meter_stop": None,
            "stop": None,
            "reason": None,
        }
        return tx_id

    def _stop_transaction(
        self, cp_id: str, tx_id: int, meter_stop: int, timestamp: str, reason: str | None
    ) -> None:
        tx = self.transactions.get(tx_id)
        if tx is None:
            # The spec wants the stop accepted anyway (e.g. -1 after a start that never got through).
            LOGGER.warning("%s stopped unknown transaction %d", cp_id, tx_id)
            return
        tx.update(meter_stop=meter_stop, stop=timestamp, reason=reason or "Local")

    def _check_incoming_call(
        self,
        cp_id: str,
        action: str,
        payload: object,
        frame: list[Any],
        *,
        validator: SchemaValidator | None = None,
    ) -> None:
        validator = validator or self.validator
        for error in validator.errors(action, payload):
            self._violation(cp_id, "in", "schema", action, frame, error)
        state = self._boot_state.get(cp_id)
        if state in ("Pending", "Rejected") and action != "BootNotification":
            triggered = self._triggered.get(cp_id, set())
            if action in triggered:
                triggered.discard(action)
            else:
                self._violation(
                    cp_id,
                    "in",
                    "protocol",
                    action,
                    frame,
                    f"{action} sent while the boot is {state} "
                    + ("(OCPP 1.6 4.2)" if validator.version == V16 else "(OCPP 2.0.1 B02/B03)"),
                )

    def _take_rejection(self, action: str) -> str | None:
        queue = self._rejections.get(action)
        if not queue:
            return None
        code = queue.pop(0)
        if not queue:
            del self._rejections[action]
        return code

    # Recording.

    def _record(self, cp_id: str, direction: str, raw: str | bytes, *, version: str = V16) -> list[Any] | None:
        """Log a frame; returns it decoded, or None (and a violation) when it is not a JSON array."""
        frame: Any = None
        error = None
        if isinstance(raw, bytes):
            error = "binary websocket frame (OCPP-J uses text frames)"
        else:
            try:
                frame = json.loads(raw)
            except json.JSONDecodeError as err:
                error = f"not JSON: {err}"
        self._log.add(cp_id, direction, raw, frame)
        if direction == "out":
            # The back office's own frames are not the peer's violations (it may echo a bad unique id).
            self._notify()
            return frame if isinstance(frame, list) else None
        if error is None:
            problems = frame_errors(frame, version)
            if problems:
                for problem in problems:
                    self._violation(cp_id, direction, "frame", None, frame, problem)
                if not isinstance(frame, list) or not frame or frame[0] not in (CALL, CALLRESULT, CALLERROR):
                    frame = None
        else:
            self._violation(cp_id, direction, "frame", None, raw, error)
        self._notify()
        return frame if isinstance(frame, list) else None

    def _violation(
        self, cp_id: str, direction: str, kind: str, action: str | None, message: object, error: str
    ) -> None:
        """Record one violation; kind: frame, schema, protocol, callerror_sent or unknown_response."""
        LOGGER.warning("OCPP violation from %s (%s, %s): %s in %s", cp_id, kind, action, error, message)
        entry = {
            "ts": time.time(),
            "cp_id": cp_id,
            "direction": direction,
            "kind": kind,
            "action": action,
            "error": error,
            "message": message if not isinstance(message, bytes) else message.decode("utf-8", "replace"),
        }
        self.violations.append(entry)
        self._log.add_violation(entry)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # Queries.

    def messages(
        self, cp_id: str | None = None, action: str | None = None, direction: str | None = "in"
    ) -> list[dict[str, Any]]:
        """Recorded CALLs with unique_id, payload and their answer ("response", None while unanswered)."""
        return self._log.query(cp_id, action, direction)

    def frames(self, cp_id: str | None = None) -> list[dict[str, Any]]:
        """The raw frame log entries (ts, cp_id, direction, message)."""
        return [copy.deepcopy(f) for f in self._log.frames if cp_id is None or f["cp_id"] == cp_id]

    def ledger(self, cp_id: str, *, require_ended: bool = True) -> dict[str, Any]:
        """A 2.0.1 station's TransactionEvents per transactionId and their problems (ledger.py's check)."""
        records = self.messages(cp_id, "TransactionEvent")
        return {
            "transactions": transaction_ledger(records),
            "problems": check_transaction_events(records, require_ended=require_ended),
        }

    def connected(self, cp_id: str) -> bool:
        """True while the charge point has an open websocket."""
        return cp_id in self._sessions

    def connected_ids(self) -> list[str]:
        """Every connected charge point id."""
        return sorted(self._sessions)

    def status(self) -> dict[str, Any]:
        """A summary for the control API."""
        return {
            "ocpp_port": self._port,
            "listening": self._server is not None,
            "offline": self._offline,
            "refusing": self.refusing,
            "connected": self.connected_ids(),
            "violations": len(self.violations),
            "messages": len(self._log.calls),
            "boot_status": self.boot_status,
            "pending_boots": self.pending_boots,
            "id_tags": dict(self.id_tags),
            "transactions": {str(k): v for k, v in self.transactions.items()},
            "connectors": {f"{cp}/{conn}": s for (cp, conn), s in self.connector_status.items()},
            "versions": dict(self._versions),
            "transactions_201": {f"{cp}/{tx}": v for (cp, tx), v in self.transactions_201.items()},
            "evse_connectors": {f"{cp}/{evse}/{conn}": s for (cp, evse, conn), s in self.evse_status.items()},
        }

    def clear(self) -> None:
        """Forget recorded messages and violations (between test phases)."""
        self._log.clear()
        self.violations.clear()

    async def wait_for(
        self,
        what: str | Callable[[], Any],
        timeout: float = 5.0,
        *,
        cp_id: str | None = None,
        count: int = 1,
        direction: str = "in",
    ) -> Any:
        """Wait for the count-th answered CALL of an action (returned), or for a predicate to be truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            if callable(what):
                value = what()
                if value:
                    return value
            else:
                found = [m for m in self.messages(cp_id, what, direction) if m["response"] is not None]
                if len(found) >= count:
                    return found[count - 1]
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what!r} (cp_id={cp_id})")
            # Also poll: a predicate may look at state the back office is not told about (the peer's side).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, WAIT_POLL_S))

    # Controls.

    async def call(
        self,
        cp_id: str,
        action: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        validate: bool = True,
    ) -> dict[str, Any]:
        """Send a CS->CP call (camelCase payload); returns its result or error, or a local failure status.

        Result: {"status": "result", "payload": {...}} or
        {"status": "error", "code": ..., "description": ..., "details": ...};
        local failures: {"status": "not_connected"} or {"status": "timeout"}. validate=False lets a test send
        a payload the schema forbids (to test the charge point's own validation).
        """
        payload = {} if payload is None else payload
        session = self._sessions.get(cp_id)
        if validate:
            # the connected station's version; 1.6 for one not connected (it gets not_connected anyway)
            validator = session.validator if session is not None else self.validator
            errors = validator.errors(action, payload)
            if errors:
                raise ValueError(f"invalid {action} payload: {'; '.join(errors)}")
        if session is None:
            return {"status": "not_connected", "cp_id": cp_id}
        if action == "TriggerMessage" and isinstance(payload.get("requestedMessage"), str):
            # A triggered message is allowed even while the boot is Pending.
            self._triggered.setdefault(cp_id, set()).add(payload["requestedMessage"])
        try:
            frame = await session.send_call(
                action, payload, self.call_timeout_s if timeout is None else timeout
            )
        except TimeoutError:
            return {"status": "timeout", "cp_id": cp_id}
        except (ConnectionError, ConnectionClosed):
            return {"status": "not_connected", "cp_id": cp_id}
        if frame[0] == CALLRESULT:
            return {"status": "result", "payload": frame[2] if len(frame) > 2 else None}
        return {
            "status": "error",
            "code": frame[2] if len(frame) > 2 else None,
            "description": frame[3] if len(frame) > 3 else None,
            "details": frame[4] if len(frame) > 4 else None,
        }

    async def send_raw(
        self, cp_id: str, text: str, *, unique_id: str | None = None, action: str = "", timeout: float | None = None
    ) -> dict[str, Any]:
        """Send any text to a charge point (tests of malformed frames); with unique_id, wait for its answer.

        Returns {"status": "sent"}, {"status": "answer", "frame": [...]}, or the local failures of call().
        """
        session = self._sessions.get(cp_id)
        if session is None:
            return {"status": "not_connected", "cp_id": cp_id}
        try:
            frame = await session.send_raw(
                text, unique_id, action, self.call_timeout_s if timeout is None else timeout
            )
        except TimeoutError:
            return {"status": "timeout", "cp_id": cp_id}
        except (ConnectionError, ConnectionClosed):
            return {"status": "not_connected", "cp_id": cp_id}
        return {"status": "sent"} if frame is None else {"status": "answer", "frame": frame}

    async def go_offline(self) -> None:
        """Close every connection and stop listening (the port is closed) until go_online()."""
        self._cancel_online_task()
        await self._close_port()

    async def _close_port(self) -> None:
        self._offline = True
        await self._unlisten()
        self._notify()

    async def go_online(self) -> None:
        """Listen again on the same port (and end a refuse_connections() period early)."""
        self._cancel_online_task()
        await self._open_port()

    async def _open_port(self) -> None:
        self._reject_handshakes_until = 0.0
        if self._server is None:
            await self._listen()
        self._offline = False
        self._notify()

    def _cancel_online_task(self) -> None:
        if self._online_task is not None:
            self._online_task.cancel()
            self._online_task = None

    @property
    def refusing(self) -> bool:
        """True during a refuse_connections() period."""
        return self._online_task is not None

    async def refuse_connections(self, seconds: float, *, mode: str = "close") -> None:
        """Drop every connection and refuse new ones for a while, then accept again by itself.

        mode "close": the port is closed (connection refused); "reject": the port stays open and every
        handshake gets HTTP 503.
        """
        if mode not in REFUSE_MODES:
            raise ValueError(f"mode must be one of {REFUSE_MODES}, got {mode!r}")
        self._cancel_online_task()
        if mode == "close":
            await self._close_port()
        else:
            self._reject_handshakes_until = time.monotonic() + seconds
            await asyncio.gather(*(self.drop(cp) for cp in list(self._sessions)))
        self._online_task = asyncio.get_running_loop().create_task(self._online_after(seconds))
        self._notify()

    async def _online_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._online_task = None
        await self._open_port()

    async def drop(self, cp_id: str, *, abrupt: bool = False) -> bool:
        """Close a charge point's websocket (abrupt: reset the TCP connection, no close frame)."""
        session = self._sessions.get(cp_id)
        if session is None:
            return False
        if abrupt:
            session.ws.transport.abort()
        else:
            await session.ws.close(1001, "dropped by the back office")
        return True

    def set_id_tag(self, id_tag: str, status: str, parent_id: str | None = None) -> None:
        """Set an id tag's status (Accepted, Blocked, Expired, Invalid, ConcurrentTx)."""
        self._check_tag_status(id_tag, status)
        self.id_tags[id_tag] = status
        if parent_id is not None:
            self.parent_ids[id_tag] = parent_id

    def set_boot_status(self, status: str, *, pending_boots: int | None = None) -> None:
        """Answer later BootNotifications with this status (after pending_boots Pending answers)."""
        self._check_boot_status(status)
        self.boot_status = status
        if pending_boots is not None:
            self.pending_boots = pending_boots
            self._boot_counts.clear()

    def reject_next(self, action: str, n: int = 1, error_code: str = "InternalError") -> None:
        """Answer the next n incoming CALLs of this action with a CALLERROR."""
        # the code is sent to whichever version connects next: a test picks one valid for its station
        if error_code not in ERROR_CODES_16 | ERROR_CODES_201:
            raise ValueError(
                f"{error_code!r} is not an OCPP 1.6 or 2.0.1 error code: {sorted(ERROR_CODES_16 | ERROR_CODES_201)}"
            )
        if n < 0:
            raise ValueError("n must be >= 0")
        self._rejections.setdefault(action, []).extend([error_code] * n)

    @staticmethod
    def _check_tag_status(id_tag: str, status: str) -> None:
        if status not in ID_TAG_STATUSES:
            raise ValueError(f"id tag {id_tag!r}: status must be one of {ID_TAG_STATUSES}, got {status!r}")

    @staticmethod
    def _check_boot_status(status: str) -> None:
        if status not in BOOT_STATUSES:
            raise ValueError(f"boot status must be one of {BOOT_STATUSES}, got {status!r}")

    # Control API over HTTP/JSON (routes and handlers in control.py).

    async def start_control(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve the HTTP control API; returns its port."""
        control = ControlApi(self)
        control_port = await control.start(host, port)
        self._control = control
        LOGGER.info("back office control API on http://%s:%d", host, control_port)
        return control_port
