"""Local OCPP 1.6J back office (central system) for `make run`, the demo and the integration tests.

Built on the `ocpp` library's central-system side over `websockets`. On top of the library it validates every
incoming CALL and every CALLRESULT that answers one of its own calls against the official 1.6 JSON schemas
with `jsonschema` (independently of the library), records every frame in both directions, and offers
behaviour switches (refuse connections, drop, reject the next calls, id tag statuses) through a Python API
and a tiny HTTP/JSON control API.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import datetime as dt
import json
import logging
import re
import signal
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import jsonschema
import ocpp.messages
import ocpp.v16
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from simulator.httpjson import JsonHttpServer

LOGGER = logging.getLogger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
SCHEMA_DIR = Path(ocpp.v16.__file__).parent / "schemas"
CALL, CALLRESULT, CALLERROR = 2, 3, 4
UNIQUE_ID_MAX_LEN = 36  # OCPP-J 1.6 section 4.1.1: the unique id is at most 36 characters
# OCPP-J 1.6 section 4.2.3 (spelling as in the spec: FormationViolation, OccurenceConstraintViolation).
ERROR_CODES_16 = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)
BOOT_STATUSES = ("Accepted", "Pending", "Rejected")
ID_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
REFUSE_MODES = ("close", "reject")
WAIT_POLL_S = 0.05
CALL_TIMEOUT_S = 10.0  # long enough for a busy 2-core CI machine, short enough to fail a test quickly
# RFC 3339 date-time, as JSON Schema's "date-time" format means: the offset is mandatory.
_DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def utc_now_iso() -> str:
    """The current UTC time as OCPP wants it (RFC 3339, millisecond precision, Z)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_date_time(value: object) -> bool:
    """JSON Schema "date-time" check (RFC 3339), without the optional rfc3339-validator package."""
    if not isinstance(value, str):
        return True  # the "type" keyword reports non-strings
    if not _DATE_TIME_RE.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_uri(value: object) -> bool:
    """JSON Schema "uri" check: an absolute URI with a scheme (rfc3987 is not installed)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", parts.scheme)) and " " not in value


# The library's own validation in the event loop: its thread-pool hop costs more than the validation.
ocpp.messages.ASYNC_VALIDATION = False

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
FORMAT_CHECKER.checks("date-time")(_is_date_time)
FORMAT_CHECKER.checks("uri")(_is_uri)


class SchemaValidator:
    """Validates OCPP 1.6 payloads against the schema files shipped in `ocpp/v16/schemas`."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._dir = schema_dir
        self._cache: dict[str, Any] = {}

    def _validator(self, name: str) -> Any:
        if name not in self._cache:
            path = self._dir / f"{name}.json"
            if not path.is_file():
                self._cache[name] = None
            else:
                schema = json.loads(path.read_text(encoding="utf-8"))
                cls = jsonschema.validators.validator_for(schema)
                self._cache[name] = cls(schema, format_checker=FORMAT_CHECKER)
        return self._cache[name]

    def known(self, action: str) -> bool:
        """True when the action has a request schema."""
        return self._validator(action) is not None

    def errors(self, action: str, payload: object, *, response: bool = False) -> list[str]:
        """Every schema error of a request (or, with response=True, a confirmation) payload."""
        name = f"{action}Response" if response else action
        validator = self._validator(name)
        if validator is None:
            return [f"no OCPP 1.6 schema for {name!r}"]
        found = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<payload>'}: {e.message}" for e in found]


def frame_errors(frame: object) -> list[str]:
    """Structural errors of a decoded OCPP-J frame (section 4 of the OCPP-J 1.6 spec)."""
    if not isinstance(frame, list) or not frame:
        return ["frame is not a non-empty JSON array"]
    kind = frame[0]
    expected = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}
    if kind not in expected or isinstance(kind, bool):
        return [f"unknown message type id {kind!r}"]
    problems = []
    if len(frame) != expected[kind]:
        problems.append(f"message type {kind} needs {expected[kind]} elements, got {len(frame)}")
    if len(frame) > 1:
        uid = frame[1]
        if not isinstance(uid, str) or not uid:
            problems.append(f"unique id {uid!r} is not a non-empty string")
        elif len(uid) > UNIQUE_ID_MAX_LEN:
            problems.append(f"unique id is {len(uid)} characters, at most {UNIQUE_ID_MAX_LEN} allowed")
    if kind == CALL and len(frame) == 4:
        if not isinstance(frame[2], str):
            problems.append("action is not a string")
        if not isinstance(frame[3], dict):
            problems.append("payload is not a JSON object")
    if kind == CALLRESULT and len(frame) == 3 and not isinstance(frame[2], dict):
        problems.append("payload is not a JSON object")
    if kind == CALLERROR and len(frame) == 5:
        if frame[2] not in ERROR_CODES_16:
            problems.append(f"error code {frame[2]!r} is not an OCPP 1.6 error code")
        if not isinstance(frame[3], str):
            problems.append("error description is not a string")
        if not isinstance(frame[4], dict):
            problems.append("error details is not a JSON object")
    return problems


def _parse_kv(items: Iterable[str], what: str) -> dict[str, str]:
    """Parse repeated KEY=VALUE command-line items."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        result[key] = value
    return result


class _Session(ChargePoint):
    """One connected charge point: the library's central-system side, with recording and raw calls."""

    def __init__(self, cp_id: str, ws: ServerConnection, office: BackOffice) -> None:
        super().__init__(cp_id, ws, response_timeout=CALL_TIMEOUT_S, logger=LOGGER)
        self.ws = ws
        self._office = office
        self._pending: dict[str, tuple[str, asyncio.Future[list[Any]]]] = {}
        self._own_errors: set[str] = set()  # CALLERRORs the back office meant to send (reject_next)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Record, validate independently, then let the library route the frame."""
        frame = self._office._record(self.id, "in", raw_msg)
        if frame is None:
            return
        kind = frame[0]
        if kind == CALL:
            if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[1], str):
                if isinstance(frame[1] if len(frame) > 1 else None, str):
                    await self._send_error(frame[1], "FormationViolation", "malformed CALL frame")
                return
            action, payload = frame[2], frame[3]
            self._office._check_incoming_call(self.id, action, payload, frame)
            code = self._office._take_rejection(action)
            if code is not None:
                await self._send_error(frame[1], code, f"back office told to reject {action}")
                return
            await super().route_message(raw_msg)
            return
        uid = frame[1] if len(frame) > 1 else None
        entry = self._pending.get(uid) if isinstance(uid, str) else None
        if entry is None:
            self._office._violation(
                self.id, "in", "unknown_response", None, frame, "answer to no pending call"
            )
            return
        action, future = entry
        if kind == CALLRESULT and len(frame) == 3:
            for error in self._office.validator.errors(action, frame[2], response=True):
                self._office._violation(self.id, "in", "schema", action, frame, error)
        if not future.done():
            future.set_result(frame)

    async def _send_error(self, uid: str, code: str, description: str) -> None:
        self._own_errors.add(uid)
        await self._send(json.dumps([CALLERROR, uid, code, description, {}]))

    async def _send(self, message: str) -> None:
        """Record every outgoing frame; a CALLERROR the library produced is a violation by the peer."""
        frame = self._office._record(self.id, "out", message)
        if frame is not None and frame[0] == CALLERROR:
            uid = frame[1]
            if uid in self._own_errors:
                self._own_errors.discard(uid)
            else:
                call = self._office._log.find_call(self.id, "in", uid)
                action = call["action"] if call else None
                self._office._violation(
                    self.id,
                    "in",
                    "callerror_sent",
                    action,
                    frame,
                    f"ocpp library answered {frame[2]}: {frame[3]}",
                )
        await self.ws.send(message)

    async def send_call(self, action: str, payload: dict[str, Any], timeout: float) -> list[Any]:
        """Send one CALL (one in flight per connection, as OCPP-J requires) and return the answer frame."""
        async with self._call_lock:
            uid = str(uuid.uuid4())
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._pending[uid] = (action, future)
            try:
                await self._send(json.dumps([CALL, uid, action, payload], separators=(",", ":")))
                return await asyncio.wait_for(future, timeout)
            finally:
                self._pending.pop(uid, None)

    async def send_raw(self, text: str, unique_id: str | None, action: str, timeout: float) -> list[Any] | None:
        """Send any text as it is (malformed or oversized frames); the answer to unique_id, None if none asked."""
        async with self._call_lock:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            if unique_id is not None:
                self._pending[unique_id] = (action, future)
            try:
                self._office._record(self.id, "out", text)
                await self.ws.send(text)  # not self._send: a CALLERROR sent on purpose is no violation
                return None if unique_id is None else await asyncio.wait_for(future, timeout)
            finally:
                if unique_id is not None:
                    self._pending.pop(unique_id, None)

    def fail_pending(self) -> None:
        """The connection is gone: every waiting call fails now rather than at its timeout."""
        for _action, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.id} disconnected"))

    # Handlers: they translate, the BackOffice decides.

    @on(Action.boot_notification)
    def on_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        status, interval = self._office._boot_decision(self.id)
        return call_result.BootNotification(current_time=utc_now_iso(), interval=interval, status=status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now_iso())

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        self._office.connector_status[(self.id, connector_id)] = {"status": status, "errorCode": error_code}
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._office.id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> call_result.StartTransaction:
        info = self._office.id_tag_info(id_tag)
        tx_id = self._office._new_transaction(self.id, connector_id, id_tag, meter_start, timestamp, info)
        return call_result.StartTransaction(transaction_id=tx_id, id_tag_info=info)

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self, transaction_id: int, meter_stop: int, timestamp: str, **kwargs: Any
    ) -> call_result.StopTransaction:
        self._office._stop_transaction(self.id, transaction_id, meter_stop, timestamp, kwargs.get("reason"))
        id_tag = kwargs.get("id_tag")
        return call_result.StopTransaction(id_tag_info=self._office.id_tag_info(id_tag) if id_tag else None)

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        status = "Accepted" if vendor_id in self._office.vendor_ids else "UnknownVendorId"
        return call_result.DataTransfer(status=status)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, **kwargs: Any) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **kwargs: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **kwargs: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **kwargs: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **kwargs: Any) -> call_result.SignCertificate:
        # Accepted means "will be processed": a test sends CertificateSigned itself through call().
        return call_result.SignCertificate(status="Accepted")


class MessageLog:
    """Every frame in both directions and the CALLs paired with their answers.

    The file holds one JSON object a line: a frame {"ts", "cp_id", "direction", "message"} ("raw" instead of
    "message" when the text was not JSON), or a violation {"violation": {...}}.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.frames: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self._open: dict[tuple[str, str, str], dict[str, Any]] = {}  # (cp_id, call direction, uid) -> call
        self._by_uid: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open(
                "a", encoding="utf-8", buffering=1
            )  # line-buffered: other processes tail it

    def add(self, cp_id: str, direction: str, raw: str | bytes, frame: object) -> None:
        """Append one frame; pair a CALLRESULT/CALLERROR with the CALL it answers."""
        ts = time.time()
        entry: dict[str, Any] = {"ts": ts, "cp_id": cp_id, "direction": direction}
        if isinstance(frame, list):
            entry["message"] = frame
        else:
            entry["raw"] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self.frames.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[1], str):
            return
        kind, uid = frame[0], frame[1]
        if kind == CALL and len(frame) == 4:
            call = {
                "ts": ts,
                "cp_id": cp_id,
                "direction": direction,
                "unique_id": uid,
                "action": frame[2],
                "payload": frame[3],
                "response": None,
            }
            self.calls.append(call)
            self._open[(cp_id, direction, uid)] = call
            self._by_uid[(cp_id, direction, uid)] = call
        elif kind in (CALLRESULT, CALLERROR):
            call_direction = "out" if direction == "in" else "in"
            answered = self._open.pop((cp_id, call_direction, uid), None)
            if answered is None:
                return
            if kind == CALLRESULT:
                answered["response"] = {
                    "ts": ts,
                    "type": "result",
                    "payload": frame[2] if len(frame) > 2 else None,
                }
            else:
                answered["response"] = {
                    "ts": ts,
                    "type": "error",
                    "code": frame[2] if len(frame) > 2 else None,
                    "description": frame[3] if len(frame) > 3 else None,
                    "details": frame[4] if len(frame) > 4 else None,
                }

    def find_call(self, cp_id: str, direction: str, uid: str) -> dict[str, Any] | None:
        """The latest CALL with this unique id in this direction."""
        return self._by_uid.get((cp_id, direction, uid))

    def query(
        self, cp_id: str | None = None, action: str | None = None, direction: str | None = "in"
    ) -> list[dict[str, Any]]:
        """CALLs (copies) filtered by charge point, action and direction (None = both)."""
        return [
            copy.deepcopy(c)
            for c in self.calls
            if (cp_id is None or c["cp_id"] == cp_id)
            and (action is None or c["action"] == action)
            and (direction is None or c["direction"] == direction)
        ]

    def clear(self) -> None:
        """Forget the in-memory history (the file keeps it)."""
        self.frames.clear()
        self.calls.clear()
        self._open.clear()
        self._by_uid.clear()

    def close(self) -> None:
        """Close the log file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class BackOffice:
    """The local OCPP 1.6J central system with its test controls."""

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
    ) -> None:
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
        self.validator = SchemaValidator()
        self._log = MessageLog(log_path)
        self.violations: list[dict[str, Any]] = []
        self.connector_status: dict[tuple[str, int], dict[str, str]] = {}
        self.transactions: dict[int, dict[str, Any]] = {}
        self._next_tx_id = 1
        self._boot_counts: dict[str, int] = {}
        self._boot_state: dict[str, str] = {}
        self._triggered: dict[str, set[str]] = {}
        self._rejections: dict[str, list[str]] = {}
        self._sessions: dict[str, _Session] = {}
        self._server: Server | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._ssl: ssl.SSLContext | None = None
        self._offline = False
        self._reject_handshakes_until = 0.0
        self._online_task: asyncio.Task[None] | None = None
        self._control: JsonHttpServer | None = None
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
            subprotocols=[SUBPROTOCOL],  # websockets refuses a missing or other subprotocol with HTTP 400
            process_request=self._process_request,
            ssl=self._ssl,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

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
        session = _Session(cp_id, ws, self)
        # Register before closing the old connection, so that charge point never looks disconnected.
        old = self._sessions.get(cp_id)
        self._sessions[cp_id] = session
        if old is not None:
            LOGGER.info("charge point %s reconnected: closing its old connection", cp_id)
            await old.ws.close(1000, "replaced by a new connection")
        LOGGER.info("charge point %s connected", cp_id)
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

    def _check_incoming_call(self, cp_id: str, action: str, payload: object, frame: list[Any]) -> None:
        for error in self.validator.errors(action, payload):
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
                    f"{action} sent while the boot is {state} (OCPP 1.6 4.2)",
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

    def _record(self, cp_id: str, direction: str, raw: str | bytes) -> list[Any] | None:
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
            problems = frame_errors(frame)
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
        if self._log._file is not None:
            self._log._file.write(json.dumps({"violation": entry}, separators=(",", ":")) + "\n")
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
        if validate:
            errors = self.validator.errors(action, payload)
            if errors:
                raise ValueError(f"invalid {action} payload: {'; '.join(errors)}")
        session = self._sessions.get(cp_id)
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
        if error_code not in ERROR_CODES_16:
            raise ValueError(f"{error_code!r} is not an OCPP 1.6 error code: {sorted(ERROR_CODES_16)}")
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

    # Control API over HTTP/JSON (the simulator's shared stdlib server).

    async def start_control(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve the HTTP control API; returns its port."""
        server = JsonHttpServer()
        for method, path, handler in (
            ("GET", "/status", self._h_status),
            ("GET", "/messages", self._h_messages),
            ("GET", "/violations", self._h_violations),
            ("GET", "/frames", self._h_frames),
            ("POST", "/call", self._h_call),
            ("POST", "/raw", self._h_raw),
            ("POST", "/refuse", self._h_refuse),
            ("POST", "/drop", self._h_drop),
            ("POST", "/offline", self._h_offline),
            ("POST", "/online", self._h_online),
            ("POST", "/id_tags", self._h_id_tags),
            ("POST", "/boot_status", self._h_boot_status),
            ("POST", "/reject_next", self._h_reject_next),
            ("POST", "/clear", self._h_clear),
        ):
            server.route(method, path, handler)
        control_port = await server.start(host, port)
        self._control = server
        LOGGER.info("back office control API on http://%s:%d", host, control_port)
        return control_port

    async def _h_status(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.status()

    async def _h_messages(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        direction = query.get("direction", "in")
        return self.messages(
            query.get("cp_id"), query.get("action"), None if direction == "any" else direction
        )

    async def _h_violations(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.violations

    async def _h_frames(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.frames(query.get("cp_id"))

    async def _h_call(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return await self.call(
            body["cp_id"],
            body["action"],
            body.get("payload", {}),
            timeout=body.get("timeout"),
            validate=body.get("validate", True),
        )

    async def _h_raw(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return await self.send_raw(
            body["cp_id"],
            body["text"],
            unique_id=body.get("unique_id"),
            action=body.get("action", ""),
            timeout=body.get("timeout"),
        )

    async def _h_refuse(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        await self.refuse_connections(float(body["seconds"]), mode=body.get("mode", "close"))
        return {"ok": True}

    async def _h_drop(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return {"dropped": await self.drop(body["cp_id"], abrupt=bool(body.get("abrupt", False)))}

    async def _h_offline(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        await self.go_offline()
        return {"ok": True}

    async def _h_online(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        await self.go_online()
        return {"ok": True}

    async def _h_id_tags(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        for tag, status in body.items():
            self._check_tag_status(tag, status)  # all or nothing
        for tag, status in body.items():
            self.set_id_tag(tag, status)
        return {"ok": True}

    async def _h_boot_status(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        self.set_boot_status(body["status"], pending_boots=body.get("pending_boots"))
        return {"ok": True}

    async def _h_reject_next(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        self.reject_next(body["action"], int(body.get("n", 1)), body.get("error_code", "InternalError"))
        return {"ok": True}

    async def _h_clear(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        self.clear()
        return {"ok": True}


# Command line: `evse-sim backoffice ...` (wired through add_cli/run_cli) or `python -m simulator.backoffice`.


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `backoffice` sub-command to an argparse sub-parsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backoffice", help="run the local OCPP 1.6J back office with its HTTP control API"
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_cli)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="OCPP websocket port (0 = any free port)")
    parser.add_argument("--control-port", type=int, default=9001, help="HTTP control API port (0 = any)")
    parser.add_argument("--id-tag", action="append", default=[], metavar="TAG=STATUS", help="known id tag")
    parser.add_argument(
        "--parent-id", action="append", default=[], metavar="TAG=PARENT", help="parent id tag"
    )
    parser.add_argument("--heartbeat-interval", type=int, default=300, help="interval sent when Accepted (s)")
    parser.add_argument("--boot-status", default="Accepted", choices=BOOT_STATUSES)
    parser.add_argument("--pending-boots", type=int, default=0, help="answer Pending to the first N boots")
    parser.add_argument("--boot-retry-interval", type=int, default=10, help="interval sent with Pending (s)")
    parser.add_argument("--vendor-id", action="append", default=None, help="DataTransfer vendor ids accepted")
    parser.add_argument("--password", action="append", default=[], metavar="CP=PASSWORD", help="Basic auth")
    parser.add_argument("--log", type=Path, default=None, help="append every frame as JSON lines here")


def run_cli(args: argparse.Namespace) -> int:
    """Run the back office until SIGINT/SIGTERM; prints one JSON line with the bound ports first."""
    try:
        return asyncio.run(serve_forever(args))
    except ValueError as err:
        LOGGER.error("%s", err)
        return 2


async def serve_forever(args: argparse.Namespace) -> int:
    """Start the back office and its control API from parsed arguments and run until a signal."""
    office = BackOffice(
        id_tags=_parse_kv(args.id_tag, "--id-tag"),
        parent_ids=_parse_kv(args.parent_id, "--parent-id"),
        heartbeat_interval=args.heartbeat_interval,
        boot_status=args.boot_status,
        pending_boots=args.pending_boots,
        boot_retry_interval=args.boot_retry_interval,
        vendor_ids=args.vendor_id if args.vendor_id is not None else ("evse-agent",),
        passwords=_parse_kv(args.password, "--password") or None,
        log_path=args.log,
    )
    port = await office.start(args.host, args.port)
    control_port = await office.start_control(args.host, args.control_port)
    print(
        json.dumps(
            {"ocpp_url": f"ws://{args.host}:{port}/ocpp", "ocpp_port": port, "control_port": control_port}
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await office.stop()
    return 0


def main_backoffice(argv: list[str] | None = None) -> int:
    """Entry point for `python -m simulator.backoffice`."""
    parser = argparse.ArgumentParser(prog="evse-sim backoffice", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main_backoffice())
