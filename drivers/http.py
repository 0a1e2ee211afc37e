"""A small HTTP/1.1 client on asyncio streams for devices that speak HTTP/JSON (the LEM DCBM meter).

One request per connection (`Connection: close`): an embedded web server that hangs or resets costs one
request, never a stuck pooled connection. Every request is bounded in time (`timeout_s` for the whole
exchange) and in size (status line and headers MAX_HEADER_BYTES, body MAX_BODY_BYTES, checked before the
body is read when a Content-Length says it). Failures are DriverErrors with a counted `kind`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout

LOGGER = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8 * 1024  # status line plus headers; a device's are a few hundred bytes
MAX_HEADERS = 64
MAX_BODY_BYTES = 64 * 1024  # the largest meter answer (a status or an OCMF data set) is a few KiB
KINDS = ("timeout", "io_error", "framing", "oversized", "http_status", "garbage", "implausible")


class HttpFault(CommunicationFault):
    """An HTTP exchange that failed: `kind` is one of KINDS (the counter it is counted under)."""

    def __init__(self, device: str, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(device, message)
        self.kind = kind
        self.status = status


class HttpTimeout(DeviceTimeout):
    """No complete answer within the timeout (kind "timeout")."""

    kind = "timeout"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status code, body bytes and the content type (lower case, without parameters)."""

    status: int
    body: bytes
    content_type: str

    def json(self, device: str) -> Any:
        """The body as JSON; raise HttpFault("garbage") when it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON; absurd nesting
            raise HttpFault(device, "garbage", f"answer is not JSON: {str(err)[:80]}") from None


class HttpClient:
    """Requests to one device at `http://host[:port][/base]`."""

    def __init__(self, device: str, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(device, f"url must be http://host[:port], not {url!r} (https is not supported yet)")
        try:
            port = parts.port or 80
        except ValueError as err:
            raise ConfigError(device, f"bad port in url {url!r}: {err}") from None
        self.device = device
        self.host = parts.hostname
        self.port = port
        self.base = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._counts = dict.fromkeys(KINDS, 0)
        self._lock = asyncio.Lock()  # one request at a time: the meter's web server is small

    def count(self, kind: str) -> None:
        """Count a failure found above the transport (a bad status, garbage or implausible content)."""
        self._counts[kind] = self._counts.get(kind, 0) + 1

    def error_counts(self) -> dict[str, int]:
        """Failed requests by kind, zeros included; counters only grow."""
        return dict(self._counts)

    @staticmethod
    def query(path: str, **params: str) -> str:
        """`path?key=value&...` with the values percent-encoded (ids come from users and back offices)."""
        if not params:
            return path
        return path + "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())

    async def request(self, method: str, path: str, body: Any = None) -> HttpResponse:
        """Send one request (a JSON body if given) and return the whole response; raise HttpFault/HttpTimeout."""
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        head = (f"{method} {self.base}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Accept: application/json, text/plain\r\nConnection: close\r\nContent-Length: {len(data)}\r\n")
        if body is not None:
            head += "Content-Type: application/json\r\n"
        raw = head.encode("latin-1") + b"\r\n" + data
        async with self._lock:
            try:
                return await asyncio.wait_for(self._exchange(raw), self.timeout_s)
            except TimeoutError:
                self.count("timeout")
                raise HttpTimeout(self.device, f"no answer to {method} {path} within {self.timeout_s:g} s") from None
            except HttpFault as err:
                self.count(err.kind)
                raise
            except (OSError, asyncio.IncompleteReadError) as err:
                self.count("io_error")
                raise HttpFault(self.device, "io_error", f"{method} {path}: {err!r}") from err

    async def _exchange(self, raw: bytes) -> HttpResponse:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES)
        try:
            writer.write(raw)
            await writer.drain()
            return await self._read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _fault(self, kind: str, message: str) -> HttpFault:
        return HttpFault(self.device, kind, message)

    async def _line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise self._fault("oversized", f"a header line is longer than {MAX_HEADER_BYTES} bytes") from None

    async def _read_response(self, reader: asyncio.StreamReader) -> HttpResponse:
        # HTTP/1.1 <status> <reason>\r\n, then headers up to an empty line, then the body
        status_line = (await self._line(reader)).decode("latin-1").rstrip("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit() or not code.isascii():
            raise self._fault("framing", f"not an HTTP status line: {status_line[:60]!r}")
        headers: dict[str, str] = {}
        size = len(status_line)
        while True:
            line = await self._line(reader)
            size += len(line)
            if size > MAX_HEADER_BYTES or len(headers) > MAX_HEADERS:
                raise self._fault("oversized", f"headers longer than {MAX_HEADER_BYTES} bytes")
            text = line.decode("latin-1").rstrip("\r\n")
            if not text:
                break
            name, colon, value = text.partition(":")
            if not colon:
                raise self._fault("framing", f"bad header line {text[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked(reader)
        elif "content-length" in headers:
            length_text = headers["content-length"]
            if not length_text.isdigit() or not length_text.isascii():
                raise self._fault("framing", f"bad Content-Length {length_text[:20]!r}")
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                raise self._fault("oversized", f"body of {length} bytes, more than {MAX_BODY_BYTES}")
            body = await reader.readexactly(length)
        else:  # HTTP/1.0 style: the body runs to the end of the connection
            body = await reader.read(MAX_BODY_BYTES + 1)
            while len(body) <= MAX_BODY_BYTES:
                more = await reader.read(MAX_BODY_BYTES + 1 - len(body))
                if not more:
                    break
                body += more
            if len(body) > MAX_BODY_BYTES:
                raise self._fault("oversized", f"body longer than {MAX_BODY_BYTES} bytes")
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        return HttpResponse(int(code), body, content_type)

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        # [size hex][;ext]\r\n[data]\r\n ... 0\r\n[trailers]\r\n
        body = b""
        while True:
            size_text = (await self._line(reader)).decode("latin-1").partition(";")[0].strip()
            if not size_text or len(size_text) > 8 or any(c not in "0123456789abcdefABCDEF" for c in size_text):
                raise self._fault("framing", f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                while (await self._line(reader)).strip():  # trailers up to the empty line
                    pass
                return body
            if len(body) + size > MAX_BODY_BYTES:
                raise self._fault("oversized", f"chunked body longer than {MAX_BODY_BYTES} bytes")
            body += await reader.readexactly(size)
            if (await reader.readexactly(2)) != b"\r\n":
                raise self._fault("framing", "chunk not followed by CRLF")
