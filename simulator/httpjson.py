"""A tiny HTTP/1.1 JSON server and client (stdlib only) for the simulator's control interfaces."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

LOGGER = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], dict[str, str]], Awaitable[Any]]
MAX_BODY = 1 << 20  # control requests are small; refuse anything larger


class HttpError(Exception):
    """An error answered to the client with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class JsonHttpServer:
    """Routes `METHOD /path` to async handlers that take (json body, query) and return JSON."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self._server: asyncio.Server | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Register a handler."""
        self.routes[(method.upper(), path)] = handler

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen and return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length > MAX_BODY:
                    await self._answer(writer, 413, {"error": "body too large"})
                    return
                raw = await reader.readexactly(length) if length else b""
                status, body = await self._dispatch(method, target, raw)
                await self._answer(writer, status, body)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    async def _dispatch(self, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        parts = urlsplit(target)
        handler = self.routes.get((method.upper(), parts.path))
        if handler is None:
            return 404, {"error": f"no route {method} {parts.path}"}
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise HttpError(400, "the body must be a JSON object")
            return 200, await handler(body, dict(parse_qsl(parts.query)))
        except HttpError as err:
            return err.status, {"error": str(err)}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            return 400, {"error": f"bad request: {err!r}"}
        except Exception as err:  # a control request must never take the simulator down
            LOGGER.exception("control handler %s %s failed", method, parts.path)
            return 500, {"error": repr(err)}

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()


def http_json(base_url: str, method: str, path: str, body: dict[str, Any] | None = None,
              timeout_s: float = 10.0) -> Any:
    """Call a JsonHttpServer synchronously; raise HttpError on a non-200 answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base_url.rstrip("/") + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", str(err))
        except ValueError:
            message = str(err)
        raise HttpError(err.code, message) from err
