"""Transports chosen by URL: `tcp://host:port` for Modbus TCP, a device path for Modbus RTU.

Several devices on one RS-485 port share one `ModbusBus` (one lock, one request at a time); the bus
reconnects by itself with capped exponential backoff.

The bus speaks Modbus itself (frames in `drivers.modbus_frames`) so that a response is accepted only if
its unit id, transaction id (TCP), function code and byte count match the request, and the CRC (RTU)
holds; every refusal is counted per kind and per device id (`error_counts()`). After any refused or
missing answer the connection is reopened: a late answer must never be matched to the next request.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import serial
import serial_asyncio_fast

from drivers import modbus_frames as mf
from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout, FrameError

LOGGER = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0  # a dead meter must not cost a bus more than one connect attempt every 30 s
DEFAULT_TIMEOUT_S = 1.0  # a 20-register read at 9600 baud takes about 60 ms
CONNECT_TIMEOUT_S = 3.0  # opening a TCP connection or a serial port
RTU_GAP_S = 0.05  # only on a frame that fails its checks: silence this long ends it (> USB latency timer)

T = TypeVar("T")
@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a bus is: TCP host and port, or a serial device with its line settings."""

    url: str
    kind: str  # "tcp" or "serial"
    host: str = ""
    port: int = 0
    path: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> str:
        """One bus per physical line: the TCP address or the device path."""
        return f"tcp://{self.host}:{self.port}" if self.kind == "tcp" else self.path


def parse_endpoint(url: str, baudrate: int = 9600, parity: str = "N", stopbits: int = 1) -> Endpoint:
    """Parse `tcp://host:port`, `rtu:///dev/ttyUSB0` or a plain device path."""
    if url.startswith("tcp://"):
        parsed = urlparse(url)
        if not parsed.hostname or not parsed.port:
            raise ConfigError(url, "a TCP transport needs tcp://host:port")
        return Endpoint(url=url, kind="tcp", host=parsed.hostname, port=parsed.port)
    path = url.removeprefix("rtu://").removeprefix("serial://")
    if not path.startswith("/"):
        raise ConfigError(url, "expected tcp://host:port or a serial device path such as /dev/ttyUSB0")
    if parity not in ("N", "E", "O"):
        raise ConfigError(url, f"parity must be N, E or O, not {parity!r}")
    return Endpoint(url=url, kind="serial", path=path, baudrate=baudrate, parity=parity, stopbits=stopbits)


class _Link(asyncio.Protocol):
    """One open connection (TCP socket or serial port): the bytes received since the request was sent."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.transport: asyncio.BaseTransport | None = None
        self._event = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write on."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Append received bytes and wake the waiting request."""
        self.buffer += data
        self._event.set()

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake the waiting request; the bus reconnects on the next one."""
        self.closed = True
        self._event.set()

    def send(self, data: bytes) -> None:
        """Forget stale bytes (an answer nobody waits for), then write the request."""
        self.buffer.clear()
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(data)

    async def wait(self, deadline: float) -> bool:
        """Wait for more bytes (or the connection closing) until `deadline`; False on timeout."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or self.closed:
            return False
        self._event.clear()
        try:
            await asyncio.wait_for(self._event.wait(), remaining)
        except TimeoutError:
            return False
        return not self.closed or bool(self.buffer)

    def close(self) -> None:
        """Close the connection."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ModbusBus:
    """One Modbus line (TCP connection or RS-485 port) shared by every device on it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.lock = asyncio.Lock()
        self._link: _Link | None = None
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        self._quiet_until = 0.0
        self._tid = 0
        self.requests = 0
        self.failures = 0
        self._errors: dict[int, dict[str, int]] = {}

    def error_counts(self, device_id: int | None = None) -> dict[str, int]:
        """Failed exchanges by kind (`modbus_frames.KINDS`, zeros included), of one device id or of the line."""
        counts = dict.fromkeys(mf.KINDS, 0)
        for unit, kinds in self._errors.items():
            if device_id is None or unit == device_id:
                for kind, n in kinds.items():
                    counts[kind] += n
        return counts

    def errors_of(self, device_id: int) -> int:
        """Every failed exchange with one device id so far (the sum of its error_counts; only ever grows)."""
        return sum(self._errors.get(device_id, {}).values())

    def _count(self, device_id: int, kind: str) -> None:
        self.failures += 1
        kinds = self._errors.setdefault(device_id, {})
        kinds[kind] = kinds.get(kind, 0) + 1

    async def _open(self) -> _Link:
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        if ep.kind == "tcp":
            _, tcp_link = await asyncio.wait_for(
                loop.create_connection(_Link, ep.host, ep.port), CONNECT_TIMEOUT_S
            )
            return tcp_link
        _, serial_link = await asyncio.wait_for(
            serial_asyncio_fast.create_serial_connection(
                loop, _Link, ep.path, baudrate=ep.baudrate, parity=ep.parity, stopbits=ep.stopbits,
                bytesize=ep.bytesize,
            ),
            CONNECT_TIMEOUT_S,
        )
        assert isinstance(serial_link, _Link)
        return serial_link

    async def _ensure_connected(self, device: str, device_id: int) -> _Link:
        if self._link is not None and not self._link.closed:
            return self._link
        now = time.monotonic()
        if now < self._next_attempt:
            raise CommunicationFault(
                device, f"{self.endpoint.url} unreachable, next attempt in {self._next_attempt - now:.1f} s"
            )
        if self._quiet_until > now:
            # RTU after a missing answer: let a late answer land on a closed port, not on the next request
            await asyncio.sleep(self._quiet_until - now)
        self._link = None
        try:
            self._link = await self._open()
        except (OSError, termios.error, serial.SerialException, TimeoutError) as err:
            self._count(device_id, "io_error")
            self._backoff_s = min(RECONNECT_MAX_S, max(RECONNECT_MIN_S, self._backoff_s * 2))
            self._next_attempt = time.monotonic() + self._backoff_s
            LOGGER.debug("connect to %s failed: %s", self.endpoint.url, err)
            raise CommunicationFault(device, f"cannot connect to {self.endpoint.url}") from err
        if self._backoff_s:
            LOGGER.info("reconnected to %s", self.endpoint.url)
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        return self._link

    def _drop(self, backoff: bool) -> None:
        """Forget the connection so the next request reconnects (after a backoff for an I/O error)."""
        if self._link is not None:
            self._link.close()
            self._link = None
        if backoff:
            self._backoff_s = min(RECONNECT_MAX_S, max(RECONNECT_MIN_S, self._backoff_s * 2))
            self._next_attempt = time.monotonic() + self._backoff_s

    async def _exchange(self, device: str, device_id: int, pdu: bytes, what: str,
                        parse: Callable[[bytes], T]) -> T:
        """Send one request and return the parsed answer; every refusal is counted and raised."""
        async with self.lock:
            link = await self._ensure_connected(device, device_id)
            self.requests += 1
            try:
                if self.endpoint.kind == "tcp":
                    answer = await self._transact_tcp(link, device_id, pdu)
                else:
                    answer = await self._transact_rtu(link, device_id, pdu)
                return parse(answer)
            except mf.FrameMismatch as err:
                self._count(device_id, err.kind)
                if err.kind != "exception_code":
                    # The stream may hold the rest of a frame or a late answer: only a new connection is
                    # certain to be in step. The line itself is fine, so no backoff.
                    self._drop(backoff=False)
                    if self.endpoint.kind == "serial" and err.kind in ("timeout", "truncated"):
                        self._quiet_until = time.monotonic() + self.timeout_s
                if err.kind == "timeout":
                    raise DeviceTimeout(device, f"no answer to {what}") from err
                if err.kind == "io_error":
                    self._drop(backoff=True)
                raise FrameError(device, err.kind, f"{what}: {err.detail}", err.exception_code) from err
            except (OSError, termios.error, serial.SerialException) as err:
                self._count(device_id, "io_error")
                self._drop(backoff=True)
                raise CommunicationFault(device, f"I/O error: {err}") from err

    async def _fill(self, link: _Link, size: int, deadline: float) -> None:
        """Wait until the link holds `size` bytes; FrameMismatch on timeout or a closed connection."""
        while len(link.buffer) < size:
            if link.closed:
                if link.buffer:
                    raise mf.FrameMismatch("truncated", f"connection closed after {len(link.buffer)} bytes")
                raise mf.FrameMismatch("io_error", "connection closed by the device")
            if not await link.wait(deadline):
                if link.closed:
                    continue
                if link.buffer:
                    raise mf.FrameMismatch("truncated", f"{len(link.buffer)} of {size} bytes, then silence")
                raise mf.FrameMismatch("timeout", "no answer")

    async def _transact_tcp(self, link: _Link, device_id: int, pdu: bytes) -> bytes:
        """[tid:2][pid:2][len:2][unit:1][pdu]: the answer's PDU, once its header matches the request."""
        self._tid = self._tid % 0xFFFF + 1
        tid = self._tid
        link.send(mf.tcp_frame(tid, device_id, pdu))
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        await self._fill(link, mf.MBAP_LEN, deadline)
        header = bytes(link.buffer[: mf.MBAP_LEN])
        r_tid, r_pid, length, r_unit = (
            int.from_bytes(header[0:2], "big"), int.from_bytes(header[2:4], "big"),
            int.from_bytes(header[4:6], "big"), header[6],
        )
        if r_pid != 0 or not 2 <= length <= mf.MAX_PDU + 1:
            raise mf.FrameMismatch("framing", f"not an MBAP header: {header.hex()}")
        await self._fill(link, mf.MBAP_LEN + length - 1, deadline)
        if r_tid != tid:
            raise mf.FrameMismatch("wrong_transaction", f"answer to transaction {r_tid}, request was {tid}")
        if r_unit != device_id:
            raise mf.FrameMismatch("wrong_unit", f"answer from unit {r_unit}, request was to {device_id}")
        return bytes(link.buffer[mf.MBAP_LEN: mf.MBAP_LEN + length - 1])

    async def _transact_rtu(self, link: _Link, device_id: int, pdu: bytes) -> bytes:
        """[unit:1][pdu][crc:2]: the answer's PDU, once its CRC holds and its unit matches the request."""
        loop = asyncio.get_running_loop()
        link.send(mf.rtu_frame(bytes((device_id,)) + pdu))
        deadline = loop.time() + self.timeout_s
        buf = link.buffer
        while True:
            need = mf.rtu_response_length(bytes(buf[:3]))
            if need is not None and len(buf) >= need and mf.crc_ok(bytes(buf[:need])):
                frame = bytes(buf[:need])
                break
            if (need is not None and len(buf) >= need) or (need is None and len(buf) >= 3):
                # The header promised a length the CRC does not confirm (or an unknown function): the
                # frame ends at a line gap. A well-formed frame then means its byte count lies.
                while await link.wait(min(deadline, loop.time() + RTU_GAP_S)):
                    pass
                frame = bytes(buf)
                if mf.crc_ok(frame):
                    break
                if need is None:
                    raise mf.FrameMismatch("framing", f"unknown function code {buf[1]} in {len(buf)} bytes")
                raise mf.FrameMismatch("crc", f"CRC error in a {len(buf)}-byte frame")
            if link.closed:
                raise mf.FrameMismatch("truncated" if buf else "io_error", "serial port closed")
            if not await link.wait(deadline) and not link.closed:
                if not buf:
                    raise mf.FrameMismatch("timeout", "no answer")
                if mf.crc_ok(bytes(buf)):
                    frame = bytes(buf)  # shorter than its byte count says; the PDU check refuses it
                    break
                raise mf.FrameMismatch("truncated", f"{len(buf)} bytes, then silence")
        if frame[0] != device_id:
            raise mf.FrameMismatch("wrong_unit", f"answer from unit {frame[0]}, request was to {device_id}")
        return frame[1:-2]

    async def read(self, device: str, device_id: int, function: int, address: int, count: int) -> list[int]:
        """Read `count` registers with function code 3 (holding) or 4 (input)."""
        if function not in (3, 4):
            raise ConfigError(device, f"unsupported read function code {function}")
        if not 1 <= count <= mf.MAX_READ_REGS:
            raise ConfigError(device, f"cannot read {count} registers in one request")
        return await self._exchange(
            device, device_id, mf.read_request(function, address, count),
            f"read {count} @0x{address:04X}", lambda pdu: mf.parse_read_response(pdu, function, count),
        )

    async def write(self, device: str, device_id: int, address: int, values: list[int]) -> None:
        """Write holding registers (function 16)."""
        if not 1 <= len(values) <= mf.MAX_WRITE_REGS:
            raise ConfigError(device, f"cannot write {len(values)} registers in one request")
        count = len(values)
        await self._exchange(
            device, device_id, mf.write_request(address, values), f"write {count} @0x{address:04X}",
            lambda pdu: mf.parse_write_response(pdu, address, count),
        )

    async def close(self) -> None:
        """Close the connection."""
        self._drop(backoff=False)


class BusPool:
    """Hands out one `ModbusBus` per physical line so devices on one RS-485 port share its lock."""

    def __init__(self) -> None:
        self._buses: dict[str, ModbusBus] = {}

    def get(self, url: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> ModbusBus:
        """Return the bus for `url`, creating it on first use."""
        endpoint = parse_endpoint(url, baudrate=baudrate, parity=parity, stopbits=stopbits)
        bus = self._buses.get(endpoint.key)
        if bus is None:
            bus = self._buses[endpoint.key] = ModbusBus(endpoint, timeout_s=timeout_s)
        elif endpoint.kind == "serial" and bus.endpoint != endpoint:
            raise ConfigError(url, f"line settings differ from another device on {endpoint.path}")
        return bus

    async def close(self) -> None:
        """Close every bus."""
        for bus in self._buses.values():
            await bus.close()
        self._buses.clear()


DEFAULT_POOL = BusPool()
