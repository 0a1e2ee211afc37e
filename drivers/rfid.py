"""Serial RFID reader in the RDM6300 / EM4100 UART format (see docs/rfid.md).

Frame, 9600 baud 8N1, everything between STX and ETX is ASCII hex:

    [STX 0x02][data: 2*N hex chars][checksum: 2 hex chars][ETX 0x03]

N is 5 for the RDM6300 (1 version/customer byte + 4 tag bytes of an EM4100 card); the decoder also
takes N = 4, 7 or 10 (ISO/IEC 14443 UID sizes) in the same framing. The checksum is the XOR of the N
data bytes. The reader repeats the frame while the card lies on it; the driver debounces that.
The idTag is the data in upper-case hex: at most 20 characters, OCPP 1.6's CiString20.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import serial
import serial_asyncio_fast

from drivers.base import CardRead, DeviceHealth, mask_id
from drivers.errors import CommunicationFault, ConfigError, DriverError

LOGGER = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
UID_SIZES = (4, 5, 7, 10)  # bytes: ISO 14443 single/double/triple size UIDs, EM4100 with version byte
MAX_BODY = 2 * max(UID_SIZES) + 2  # hex chars between STX and ETX
ID_TAG_MAX = 20  # OCPP 1.6 idTag is CiString20
_HEX = frozenset(b"0123456789ABCDEFabcdef")

DEFAULT_BAUDRATE = 9600  # RDM6300 fixed rate
DEFAULT_DEBOUNCE_S = 1.0  # an RDM6300 repeats every ~100 ms while the card lies on it
OPEN_TIMEOUT_S = 2.0
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0  # a USB reader re-enumerates within seconds; no need to hammer udev faster
CARD_MAX_AGE_S = 30.0  # a card shown long ago, unread by anyone, must not start a session now
QUEUE_MAX = 8
READ_CHUNK = 256


def checksum(data: bytes) -> int:
    """XOR of the data bytes, as the reader computes it."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode_frame(uid: bytes) -> bytes:
    """Encode a UID as the reader sends it (used by the simulator and the tests)."""
    if len(uid) not in UID_SIZES:
        raise ValueError(f"a UID has {', '.join(map(str, UID_SIZES))} bytes, not {len(uid)}")
    return bytes([STX]) + uid.hex().upper().encode() + f"{checksum(uid):02X}".encode() + bytes([ETX])


def id_tag(uid: bytes) -> str:
    """The OCPP idTag of a UID: upper-case hex, at most 20 characters."""
    return uid.hex().upper()[:ID_TAG_MAX]


class StreamDecoder:
    """What every card reader's byte-stream decoder keeps: the partial frame and the counts of what it refused."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.frames = 0
        self.checksum_errors = 0
        self.frame_errors = 0
        self.dropped_bytes = 0

    def error_counts(self) -> dict[str, int]:
        """Frames refused since start: malformed ("frame_errors"), bad checksum, and bytes dropped resyncing."""
        return {"frame_errors": self.frame_errors, "checksum_errors": self.checksum_errors,
                "dropped_bytes": self.dropped_bytes}

    def reset(self) -> None:
        """Forget a partial frame (after a timeout or a reconnect)."""
        self._buffer.clear()


class FrameDecoder(StreamDecoder):
    """Byte stream to UIDs; resynchronises on garbage by dropping bytes until the next STX."""

    def _drop(self, count: int) -> None:
        self.dropped_bytes += count
        del self._buffer[:count]

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the UIDs of the complete, valid frames."""
        self._buffer.extend(data)
        uids: list[bytes] = []
        while self._buffer:
            start = self._buffer.find(STX)
            if start < 0:
                self._drop(len(self._buffer))
                break
            if start:
                self._drop(start)
            # [STX][hex...][ETX]: scan the body until ETX or the first byte that cannot be in it.
            end = None
            bad_at = None
            for index in range(1, min(len(self._buffer), MAX_BODY + 2)):
                byte = self._buffer[index]
                if byte == ETX:
                    end = index
                    break
                if byte not in _HEX:
                    bad_at = index
                    break
            if end is None and bad_at is None:
                if len(self._buffer) < MAX_BODY + 2:
                    break  # a frame in progress
                bad_at = MAX_BODY + 1  # no ETX where it must be
            if bad_at is not None:
                self.frame_errors += 1
                self._drop(bad_at)  # the offending byte may be the next STX: keep it
                continue
            assert end is not None
            body = bytes(self._buffer[1:end])
            del self._buffer[: end + 1]
            uid = self._parse(body)
            if uid is not None:
                self.frames += 1
                uids.append(uid)
        return uids

    def _parse(self, body: bytes) -> bytes | None:
        if len(body) % 2 or (len(body) - 2) // 2 not in UID_SIZES:
            self.frame_errors += 1
            LOGGER.debug("rfid: frame with %d hex chars ignored", len(body))
            return None
        raw = bytes.fromhex(body.decode("ascii"))
        uid, check = raw[:-1], raw[-1]
        if checksum(uid) != check:
            self.checksum_errors += 1
            LOGGER.debug("rfid: bad checksum %02X for %s", check, mask_id(uid.hex().upper()))
            return None
        return uid


class SerialCardReader:
    """What every card reader on a serial port shares (the RDM6300 here, the PN532 in drivers/pn532.py): the
    reconnecting read loop, health, the debounced queue of cards, read_card/read_id, close. A subclass opens its
    port and reads in `_session()` and hands each card to `_accept()`."""

    TASK_PREFIX = "rfid"

    def __init__(self, name: str, port: str, baudrate: int, debounce_s: float, reconnect_max_s: float) -> None:
        self.name = name
        self.port = port
        self.baudrate = baudrate
        self.debounce_s = debounce_s
        self.reconnect_max_s = reconnect_max_s
        self.opens = 0
        self._queue: deque[CardRead] = deque(maxlen=QUEUE_MAX)
        self._card_ready: asyncio.Event | None = None
        self._last_seen: dict[bytes, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = False
        self._last_error: str | None = None
        self._since = time.monotonic()

    @staticmethod
    def serial_options(name: str, options: dict[str, Any], allowed_options: tuple[str, ...], default_baudrate: int,
                       port_example: str) -> tuple[str, int]:
        """The port and baudrate of a config table, unknown options refused."""
        allowed = {*allowed_options, "driver"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        port = options.get("port")
        if not isinstance(port, str) or not port:
            raise ConfigError(name, f"port must be a serial device path such as {port_example}")
        baudrate = options.get("baudrate", default_baudrate)
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ConfigError(name, f"baudrate must be a positive integer, not {baudrate!r}")
        return port, baudrate

    # -- health

    @property
    def connected(self) -> bool:
        """Whether the reader is there (its port open, and for a chip its set-up answered)."""
        return self._connected

    @property
    def last_error(self) -> str | None:
        """The last fault (cleared when the reader answers again)."""
        return self._last_error

    @property
    def health(self) -> DeviceHealth:
        """ok while the reader answers; the agent shows the reader faulted otherwise."""
        return DeviceHealth(self.name, self._connected, self._last_error, self._since)

    def _set_health(self, connected: bool, error: str | None) -> None:
        if connected != self._connected:
            self._since = time.monotonic()
        self._connected = connected
        self._last_error = error

    # -- reading

    def start(self) -> None:
        """Open the port in the background (read_card does this too); needs a running loop."""
        if self._closed:
            raise CommunicationFault(self.name, "reader is closed")
        if self._task is None or self._task.done():
            self._card_ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.TASK_PREFIX}-{self.name}")

    async def read_id(self) -> str:
        """Wait for the next card (debounced) and return its idTag; waits across reconnects."""
        return id_tag((await self.read_card()).uid)

    async def read_card(self) -> CardRead:
        """Wait for the next card (debounced) and return it; waits across reconnects."""
        self.start()
        assert self._card_ready is not None
        while True:
            while self._queue:
                card = self._queue.popleft()
                age = time.monotonic() - card.monotonic
                if age <= CARD_MAX_AGE_S:
                    return card
                LOGGER.info("%s: card %s read %.0f s ago dropped", self.name, mask_id(id_tag(card.uid)), age)
            self._card_ready.clear()
            await self._card_ready.wait()
            if self._closed:
                raise CommunicationFault(self.name, "reader closed while waiting for a card")

    def _accept(self, card: CardRead, detail: str = "") -> None:
        """Queue a card unless it is the same one again within the debounce time."""
        now = card.monotonic
        last = self._last_seen.get(card.uid)
        self._last_seen[card.uid] = now  # a card lying on the reader keeps refreshing its own debounce
        for old in [u for u, seen in self._last_seen.items() if now - seen > self.debounce_s]:
            del self._last_seen[old]
        if last is not None and now - last <= self.debounce_s:
            return
        if len(self._queue) == self._queue.maxlen:
            LOGGER.warning("%s: nobody reads cards, dropping %s", self.name, mask_id(id_tag(self._queue[0].uid)))
        self._queue.append(card)
        LOGGER.info("%s: card %s%s", self.name, mask_id(id_tag(card.uid)), detail)
        if self._card_ready is not None:
            self._card_ready.set()

    async def _session(self) -> None:
        """Open the port and read until it fails; raises a DriverError (or returns when the port closed)."""
        raise NotImplementedError

    async def _run(self) -> None:
        backoff = RECONNECT_MIN_S
        while not self._closed:
            error: DriverError
            try:
                await self._session()
                error = CommunicationFault(self.name, f"{self.port}: port closed (reader unplugged?)")
            except DriverError as err:
                error = err
            if self._closed:
                break
            if self._connected:
                backoff = RECONNECT_MIN_S  # it worked until now: the first retry comes quickly
            # Warn once per distinct fault; a reader that stays unplugged must not flood the log.
            log = LOGGER.debug if error.message == self._last_error else LOGGER.warning
            self._set_health(False, error.message)
            log("%s: %s; retrying in %.1f s", self.name, error.message, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max_s)

    async def close(self) -> None:
        """Stop reading and close the port; a waiting read_card raises CommunicationFault."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set_health(False, "closed")
        if self._card_ready is not None:
            self._card_ready.set()


class SerialIdReader(SerialCardReader):
    """An RFID reader on a serial port (USB adapter, UART or a simulator pty)."""

    OPTIONS = ("port", "baudrate", "debounce_s")

    def __init__(
        self,
        name: str,
        port: str,
        baudrate: int = DEFAULT_BAUDRATE,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        super().__init__(name, port, baudrate, debounce_s, reconnect_max_s)
        self.decoder = FrameDecoder()

    @classmethod
    def from_config(
        cls, name: str, options: dict[str, Any], pool: object | None = None
    ) -> SerialIdReader:
        """Build from a config table: {port, baudrate, debounce_s}."""
        port, baudrate = cls.serial_options(name, options, cls.OPTIONS, DEFAULT_BAUDRATE, "/dev/ttyUSB0")
        debounce_s = options.get("debounce_s", DEFAULT_DEBOUNCE_S)
        if isinstance(debounce_s, bool) or not isinstance(debounce_s, int | float) or debounce_s < 0:
            raise ConfigError(name, f"debounce_s must be a non-negative number, not {debounce_s!r}")
        return cls(name, port, baudrate=baudrate, debounce_s=float(debounce_s))

    def error_counts(self) -> dict[str, int]:
        """The decoder's refusals by kind (frame_errors, checksum_errors, dropped_bytes), for evsectl."""
        return self.decoder.error_counts()

    def _card(self, uid: bytes) -> None:
        # 5 bytes is the RDM6300's EM4100 frame; 4, 7 and 10 come from ISO 14443A bridge boards
        technology = "EM4100" if len(uid) == 5 else "ISO14443A"
        self._accept(CardRead(self.name, uid, technology, time.monotonic()))

    async def _session(self) -> None:
        """Open the port and decode until it fails; raises CommunicationFault."""
        try:
            reader, writer = await asyncio.wait_for(
                serial_asyncio_fast.open_serial_connection(url=self.port, baudrate=self.baudrate),
                OPEN_TIMEOUT_S,
            )
        except (OSError, serial.SerialException, TimeoutError) as err:
            raise CommunicationFault(self.name, f"cannot open {self.port}: {err}") from err
        self.opens += 1
        self.decoder.reset()
        self._set_health(True, None)
        LOGGER.info("%s: reading cards on %s", self.name, self.port)
        try:
            while not self._closed:
                data = await reader.read(READ_CHUNK)
                if not data:
                    return
                for uid in self.decoder.feed(data):
                    self._card(uid)
        except (OSError, serial.SerialException) as err:
            raise CommunicationFault(self.name, f"{self.port}: {err}") from err
        finally:
            writer.close()
