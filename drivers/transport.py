"""Transports chosen by URL: `tcp://host:port` for Modbus TCP, a device path for Modbus RTU.

Several devices on one RS-485 port share one `ModbusBus` (one lock, one request at a time); the bus
reconnects by itself with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse

from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout

LOGGER = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0  # a dead meter must not cost a bus more than one connect attempt every 30 s
DEFAULT_TIMEOUT_S = 1.0  # a 20-register read at 9600 baud takes about 60 ms


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


class ModbusBus:
    """One Modbus line (TCP connection or RS-485 port) shared by every device on it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        self.requests = 0
        self.failures = 0

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        ep = self.endpoint
        if ep.kind == "tcp":
            # reconnect_delay=0: pymodbus must not reconnect on its own, the bus does it with its backoff.
            return AsyncModbusTcpClient(
                ep.host, port=ep.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
            )
        return AsyncModbusSerialClient(
            ep.path,
            framer=FramerType.RTU,
            baudrate=ep.baudrate,
            parity=ep.parity,
            stopbits=ep.stopbits,
            bytesize=ep.bytesize,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    async def _ensure_connected(self, device: str) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._next_attempt:
            raise CommunicationFault(
                device, f"{self.endpoint.url} unreachable, next attempt in {self._next_attempt - now:.1f} s"
            )
        if self._client is not None:
            self._client.close()
        self._client = self._make_client()
        try:
            ok = await self._client.connect()
        except (OSError, termios.error, ModbusException) as err:
            ok = False
            LOGGER.debug("connect to %s failed: %s", self.endpoint.url, err)
        if not ok:
            self._backoff_s = min(RECONNECT_MAX_S, max(RECONNECT_MIN_S, self._backoff_s * 2))
            self._next_attempt = time.monotonic() + self._backoff_s
            self._client.close()
            self._client = None
            raise CommunicationFault(device, f"cannot connect to {self.endpoint.url}")
        if self._backoff_s:
            LOGGER.info("reconnected to %s", self.endpoint.url)
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        return self._client

    def _drop(self) -> None:
        """Forget the connection after an I/O error so the next request reconnects."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._backoff_s = min(RECONNECT_MAX_S, max(RECONNECT_MIN_S, self._backoff_s * 2))
        self._next_attempt = time.monotonic() + self._backoff_s

    async def read(self, device: str, device_id: int, function: int, address: int, count: int) -> list[int]:
        """Read `count` registers with function code 3 (holding) or 4 (input)."""
        if function not in (3, 4):
            raise ConfigError(device, f"unsupported read function code {function}")
        async with self.lock:
            client = await self._ensure_connected(device)
            self.requests += 1
            try:
                if function == 4:
                    rr = await client.read_input_registers(address, count=count, device_id=device_id)
                else:
                    rr = await client.read_holding_registers(address, count=count, device_id=device_id)
            except ModbusException as err:
                self.failures += 1
                self._on_io_error(err)
                raise self._wrap(device, err, f"read {count} @0x{address:04X}") from err
            except (OSError, termios.error) as err:
                self.failures += 1
                self._drop()
                raise CommunicationFault(device, f"I/O error: {err}") from err
        if isinstance(rr, ExceptionResponse) or rr.isError():
            self.failures += 1
            code = getattr(rr, "exception_code", None)
            raise CommunicationFault(device, f"Modbus exception {code} reading 0x{address:04X}")
        if len(rr.registers) != count:
            self.failures += 1
            raise CommunicationFault(device, f"short answer: {len(rr.registers)} of {count} registers")
        return list(rr.registers)

    async def write(self, device: str, device_id: int, address: int, values: list[int]) -> None:
        """Write holding registers (function 16)."""
        async with self.lock:
            client = await self._ensure_connected(device)
            self.requests += 1
            try:
                rr = await client.write_registers(address, values, device_id=device_id)
            except ModbusException as err:
                self.failures += 1
                self._on_io_error(err)
                raise self._wrap(device, err, f"write @0x{address:04X}") from err
            except (OSError, termios.error) as err:
                self.failures += 1
                self._drop()
                raise CommunicationFault(device, f"I/O error: {err}") from err
        if rr.isError():
            self.failures += 1
            code = getattr(rr, "exception_code", None)
            raise CommunicationFault(device, f"Modbus exception {code} writing 0x{address:04X}")

    def _on_io_error(self, err: ModbusException) -> None:
        # A late answer to a timed-out request would be matched to the next one (TCP stream, or RTU bytes
        # still in the port): reopening the connection is the only safe resynchronisation. The device
        # answered nothing, the line itself is fine, so reconnect at once, without backoff.
        if self._client is not None:
            self._client.close()
            self._client = None

    @staticmethod
    def _wrap(device: str, err: ModbusException, what: str) -> CommunicationFault:
        text = str(err)
        if "timeout" in text.lower() or "no response" in text.lower():
            return DeviceTimeout(device, f"no answer to {what}")
        return CommunicationFault(device, f"{what} failed: {text}")

    async def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()
            self._client = None


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
