"""The websocket to the back office: connect, subprotocol, ping/pong, reconnect with capped backoff and jitter."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import CloseCode

LOGGER = logging.getLogger(__name__)

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
# The largest frame accepted from the back office, in bytes (UTF-8). The largest frames 1.6 defines are
# far below it: a SendLocalList of SendLocalListMaxLength (100) entries is ~20 KB, a certificate chain at
# most 10,000 chars; 1 MiB leaves room for vendor DataTransfer. A larger frame closes the connection with
# 1009 (message too big) and the link reconnects; see docs/security.md.
MAX_FRAME_BYTES = 2**20
# A connection proves itself (and resets the reconnect backoff) when the back office accepts the
# BootNotification, or when it stays up this long: a back office that completes the handshake and drops the
# connection at once is retried with a growing delay, not hammered at the minimum one.
PROVEN_AFTER_S = 30.0
# How long a closing handshake may take: after a ping timeout the peer is gone, and waiting websockets'
# default 10 s for its close frame only delays the reconnect.
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How to reach the back office."""

    url: str
    charge_point_id: str
    ocpp_version: str = "1.6"
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 5.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    basic_auth_password: str | None = None
    ssl_context: ssl.SSLContext | None = None
    open_timeout_s: float = 10.0
    max_frame_bytes: int = MAX_FRAME_BYTES

    @property
    def endpoint(self) -> str:
        """The back office URL with the charge point id as the last path segment."""
        return self.url.rstrip("/") + "/" + self.charge_point_id


def backoff_delays(min_s: float, max_s: float, rng: random.Random | None = None) -> Any:
    """Yield capped exponential delays with full jitter on the upper half (avoids reconnect storms)."""
    rng = rng or random.Random()
    delay = min_s
    while True:
        yield delay / 2 + rng.random() * delay / 2
        delay = min(max_s, delay * 2)


Session = Callable[[ClientConnection], Awaitable[None]]


class LinkHooks(Protocol):
    """What the security module decides per attempt (agent/security/manager.py SecurityManager)."""

    def prepare(self, base: LinkSettings) -> LinkSettings:
        """The settings of the next attempt (profile, password, TLS context); may raise to skip it."""
        ...

    def connected(self) -> None:
        """The websocket handshake succeeded."""
        ...

    def failed(self, err: BaseException) -> None:
        """A connection attempt failed before the handshake completed."""
        ...


class Link:
    """Keeps one websocket to the back office open and runs `session(ws)` on each connection."""

    def __init__(self, settings: LinkSettings, session: Session, hooks: LinkHooks | None = None,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.base_settings = settings
        self.settings = settings
        self.hooks = hooks
        # told when the back office will not speak this OCPP version (no subprotocol agreed, or HTTP 400)
        self.on_refused = on_refused
        self._session = session
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._proven = False

    def mark_proven(self) -> None:
        """The back office accepted this connection (BootNotification Accepted): the backoff starts over."""
        self._proven = True

    def set_ping_interval(self, seconds: float) -> None:
        """WebSocketPingInterval changed: used from the next connection (0 disables pings)."""
        self.base_settings = replace(self.base_settings, ping_interval_s=max(0.0, seconds))
        LOGGER.info("websocket ping interval %.0f s from the next connection", seconds)

    def _headers(self) -> dict[str, str]:
        if self.settings.basic_auth_password is None:
            return {}
        raw = f"{self.settings.charge_point_id}:{self.settings.basic_auth_password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def run(self) -> None:
        """Connect, run the session, reconnect after any loss until `stop()`."""
        subprotocol = SUBPROTOCOLS[self.settings.ocpp_version]
        delays = backoff_delays(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        while not self._stop.is_set():
            handshake_done = False
            try:
                self.settings = self.base_settings
                if self.hooks is not None:
                    self.settings = self.hooks.prepare(self.base_settings)
                async with connect(
                    self.settings.endpoint,
                    subprotocols=[subprotocol],  # type: ignore[list-item]
                    additional_headers=self._headers(),
                    ping_interval=self.settings.ping_interval_s or None,
                    ping_timeout=self.settings.ping_timeout_s if self.settings.ping_interval_s else None,
                    open_timeout=self.settings.open_timeout_s,
                    close_timeout=CLOSE_TIMEOUT_S,
                    ssl=self.settings.ssl_context,
                    proxy=None,  # an environment proxy must never capture the back office link
                    max_size=self.settings.max_frame_bytes,
                ) as ws:
                    handshake_done = True
                    if self.hooks is not None:
                        self.hooks.connected()
                    if ws.subprotocol != subprotocol:
                        self.last_error = f"back office did not accept subprotocol {subprotocol}"
                        LOGGER.error("%s", self.last_error)
                        await ws.close(code=1002, reason="subprotocol")
                        if self.on_refused is not None:
                            self.on_refused(self.last_error)
                    else:
                        self._ws = ws
                        self.connects += 1
                        self.last_error = None
                        self._proven = False
                        LOGGER.info("connected to %s", self.settings.endpoint)
                        self.connected.set()
                        opened = asyncio.get_running_loop().time()
                        try:
                            await self._session(ws)
                        finally:
                            self.connected.clear()
                            self._ws = None
                            lasted = asyncio.get_running_loop().time() - opened
                            if self._proven or lasted >= PROVEN_AFTER_S:
                                delays = backoff_delays(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
                        self._log_close(ws)
            except asyncio.CancelledError:
                raise
            except InvalidStatus as err:
                self.last_error = f"handshake refused: HTTP {err.response.status_code}"
                LOGGER.warning("back office refused the connection: HTTP %s", err.response.status_code)
                self._failed(err, handshake_done)
                # websockets servers answer a subprotocol they do not serve with 400 Bad Request
                if err.response.status_code == 400 and self.on_refused is not None:
                    self.on_refused(f"handshake for {subprotocol} refused: HTTP 400")
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError, EOFError) as err:
                self.last_error = f"{type(err).__name__}: {err}"
                LOGGER.warning("cannot reach the back office: %s", self.last_error)
                self._failed(err, handshake_done)
            except Exception as err:  # the link must outlive any session bug; log it loudly
                self.last_error = f"{type(err).__name__}: {err}"
                if handshake_done:
                    LOGGER.exception("link session failed")
                else:  # e.g. the security settings cannot be built: a failed attempt, backoff applies
                    LOGGER.error("cannot connect: %s", self.last_error)
                    self._failed(err, handshake_done)
            if self._stop.is_set():
                break
            delay = next(delays)
            LOGGER.info("reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)

    def _log_close(self, ws: ClientConnection) -> None:
        """Say why the connection closed; a frame over the size limit is named as such."""
        sent = ws.protocol.close_sent
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            self.last_error = f"back office sent a frame over {self.settings.max_frame_bytes} bytes"
            LOGGER.warning("closed the connection with 1009: the back office sent a frame over %d bytes (%s)",
                           self.settings.max_frame_bytes, sent.reason)
        else:
            LOGGER.warning("connection to the back office closed")

    def _failed(self, err: BaseException, handshake_done: bool) -> None:
        if self.hooks is None or handshake_done:
            return
        try:
            self.hooks.failed(err)
        except Exception:  # recording an event must never stop the reconnect loop
            LOGGER.exception("security hook failed")

    async def drop(self) -> None:
        """Close the current connection (a reconnect follows)."""
        if self._ws is not None:
            await self._ws.close()

    async def stop(self) -> None:
        """Close and stop reconnecting."""
        self._stop.set()
        await self.drop()
