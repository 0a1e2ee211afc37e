"""NXP PN532 over its UART ("HSU") interface: ISO/IEC 14443A cards at 13.56 MHz (see docs/rfid.md).

Frames (UM0701-02 section 6.2), the same both ways; TFI 0xD4 host -> PN532, 0xD5 PN532 -> host:

    [preamble 00][start 00 FF][LEN][LCS][TFI][data: LEN-1][DCS][postamble 00]

LEN counts TFI and data; LEN + LCS = 0 and TFI + data + DCS = 0 (mod 256). ACK is 00 00 FF 00 FF 00, NACK
00 00 FF FF 00 00, the application error frame 00 00 FF 01 FF 7F 81 00. The host writes a command, the
PN532 answers ACK at once and the response (command code + 1) when done. The host answers a response with
a bad checksum with NACK (the PN532 sends it again) and aborts a command that takes too long with ACK.

The codec (`encode_frame`, `Pn532Decoder`) is role-neutral: the simulator answers with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import serial
import serial_asyncio_fast

from drivers.base import CardRead
from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout
from drivers.rfid import SerialCardReader, StreamDecoder

LOGGER = logging.getLogger(__name__)

START_CODE = b"\x00\xff"
TFI_HOST = 0xD4  # host controller to PN532
TFI_PN532 = 0xD5  # PN532 to host controller
TFI_ERROR = 0x7F  # the application-level error frame's only byte
ACK_FRAME = b"\x00\x00\xff\x00\xff\x00"
NACK_FRAME = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
# HSU wake-up: 0x55 0x55 then a long preamble gives the chip time to start its oscillator (as libnfc does)
WAKEUP = b"\x55\x55" + bytes(14)
MAX_DATA = 254  # normal frames: LEN <= 255 counts TFI; extended frames are never needed for these commands

# commands (UM0701-02 section 7); the response code is the command code + 1
GET_FIRMWARE_VERSION = 0x02
SAM_CONFIGURATION = 0x14
RF_CONFIGURATION = 0x32
IN_LIST_PASSIVE_TARGET = 0x4A
SAM_NORMAL = 0x01  # no SAM: the PN532 is the reader
RF_MAX_RETRIES = 0x05  # RFConfiguration item: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
BR_106_TYPE_A = 0x00  # InListPassiveTarget BrTy: 106 kbps ISO/IEC 14443 type A
PN532_IC = 0x32  # GetFirmwareVersion's IC byte

UID_SIZES = (4, 7, 10)  # ISO/IEC 14443-3 single, double and triple size UIDs
# SAK -> the card family it announces (NXP AN10833); a guess for the installer, never used to authorize
CARD_TYPES = {
    0x00: "MIFARE Ultralight / NTAG",
    0x08: "MIFARE Classic 1K",
    0x09: "MIFARE Mini",
    0x10: "MIFARE Plus 2K (SL2)",
    0x11: "MIFARE Plus 4K (SL2)",
    0x18: "MIFARE Classic 4K",
    0x20: "ISO 14443-4 card",
    0x28: "SmartMX with MIFARE Classic 1K",
    0x38: "SmartMX with MIFARE Classic 4K",
}
DESFIRE_ATQA = 0x0344

DEFAULT_BAUDRATE = 115200  # the PN532's HSU rate after reset
DEFAULT_DEBOUNCE_S = 1.0  # a card lying on the reader is seen at every poll; it yields once
DEFAULT_POLL_INTERVAL_S = 0.2
DEFAULT_RESPONSE_TIMEOUT_S = 1.0  # InListPassiveTarget with the retries below answers well within this
DEFAULT_PASSIVE_RETRIES = 0x10  # the chip gives up after this many activation tries and answers NbTg = 0
ACK_TIMEOUT_S = 0.25  # the chip ACKs within a millisecond; the margin is for a loaded host
COMMAND_ATTEMPTS = 3  # a frame NACKed or not ACKed is sent again this often
RESPONSE_RESENDS = 2  # a response with a bad checksum is asked again (NACK) this often
FAILED_POLLS_MAX = 3  # consecutive failed polls before the port is reopened and the chip woken again
OPEN_TIMEOUT_S = 2.0
RECONNECT_MAX_S = 5.0
READ_CHUNK = 256


# ---- codec ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """A normal information frame: TFI and data (data[0] is the command or response code)."""

    tfi: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    """The ACK frame."""


@dataclass(frozen=True, slots=True)
class Nack:
    """The NACK frame: send the last frame again."""


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The application-level error frame (a syntax error in the command)."""


@dataclass(frozen=True, slots=True)
class BadChecksum:
    """A frame whose data checksum did not match (its content is not used)."""


Item = Frame | Ack | Nack | ErrorFrame | BadChecksum


def encode_frame(tfi: int, data: bytes, *, corrupt_checksum: bool = False) -> bytes:
    """A normal information frame; corrupt_checksum makes a wrong DCS (the simulator's fault)."""
    if not 1 <= len(data) <= MAX_DATA:
        raise ValueError(f"a frame carries 1 to {MAX_DATA} data bytes, not {len(data)}")
    body = bytes([tfi]) + data
    length = len(body)
    dcs = (-sum(body)) & 0xFF
    if corrupt_checksum:
        dcs ^= 0x5A
    return b"\x00" + START_CODE + bytes([length, (-length) & 0xFF]) + body + bytes([dcs, 0x00])


class Pn532Decoder(StreamDecoder):
    """Byte stream to frames; resynchronises on garbage by dropping bytes until the next start code.

    Linear in its input and bounded: garbage is dropped at once, and at most one frame (262 bytes) waits.
    """

    def _drop(self, count: int) -> None:
        chunk = self._buffer[:count]
        self.dropped_bytes += len(chunk) - chunk.count(0)  # preamble and postamble zeros are no garbage
        del self._buffer[:count]

    def feed(self, data: bytes) -> list[Item]:
        """Add received bytes; return the complete items in order."""
        buf = self._buffer
        buf.extend(data)
        items: list[Item] = []
        while True:
            start = buf.find(START_CODE)
            if start < 0:
                # a trailing 00 may be the first half of the next start code
                self._drop(len(buf) - (1 if buf and buf[-1] == 0 else 0))
                break
            if start:
                self._drop(start)
            if len(buf) < 4:
                break
            length, lcs = buf[2], buf[3]
            if (length, lcs) == (0x00, 0xFF):
                items.append(Ack())
                del buf[:4]
                continue
            if (length, lcs) == (0xFF, 0x00):
                items.append(Nack())
                del buf[:4]
                continue
            if length == 0 or (length + lcs) & 0xFF:
                # 00 FF FF FF (an extended frame, never asked for) or a length that fails its checksum: a
                # false start code inside garbage. Drop it and look for the next one.
                self.frame_errors += 1
                self._drop(2)
                continue
            end = 4 + length + 1  # the body and its DCS
            if len(buf) < end:
                break
            body = bytes(buf[4 : 4 + length])
            dcs = buf[4 + length]
            del buf[:end]
            if (sum(body) + dcs) & 0xFF:
                self.checksum_errors += 1
                items.append(BadChecksum())
            elif body == bytes([TFI_ERROR]):
                items.append(ErrorFrame())
            elif body[0] in (TFI_HOST, TFI_PN532) and length >= 2:
                self.frames += 1
                items.append(Frame(body[0], body[1:]))
            else:
                self.frame_errors += 1
        return items


# ---- ISO 14443A targets -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One ISO/IEC 14443A card found by InListPassiveTarget."""

    uid: bytes
    sak: int
    atqa: int
    ats: bytes = b""


def card_type(sak: int, atqa: int) -> str:
    """The card family a SAK (and ATQA) announce, for the installer's view."""
    if sak == 0x20 and atqa == DESFIRE_ATQA:
        return "MIFARE DESFire"
    return CARD_TYPES.get(sak, f"unknown (SAK {sak:02X})")


def encode_target(target: Target, tg: int = 1) -> bytes:
    """One target of an InListPassiveTarget response: Tg, SENS_RES (ATQA), SEL_RES (SAK), NFCID1, ATS."""
    out = bytes([tg]) + target.atqa.to_bytes(2, "big") + bytes([target.sak, len(target.uid)]) + target.uid
    return out + target.ats


def parse_targets(payload: bytes) -> list[Target]:
    """The targets of an InListPassiveTarget response (after its code); ValueError when it cannot be true."""
    if not payload:
        raise ValueError("empty InListPassiveTarget response")
    count = payload[0]
    if count > 2:  # MaxTg is 1; the chip can list 2 at most
        raise ValueError(f"{count} targets listed")
    targets = []
    at = 1
    for _ in range(count):
        if len(payload) < at + 5:
            raise ValueError("target cut short")
        atqa = int.from_bytes(payload[at + 1 : at + 3], "big")
        sak = payload[at + 3]
        size = payload[at + 4]
        if size not in UID_SIZES:
            raise ValueError(f"a UID of {size} bytes")
        uid = payload[at + 5 : at + 5 + size]
        if len(uid) != size:
            raise ValueError("UID cut short")
        at += 5 + size
        ats = b""
        if sak & 0x20 and at < len(payload):  # ISO 14443-4: the ATS follows, its first byte its length
            ats_len = payload[at]
            if ats_len < 1 or at + ats_len > len(payload):
                raise ValueError("ATS cut short")
            ats = payload[at : at + ats_len]
            at += ats_len
        targets.append(Target(uid, sak, atqa, ats))
    return targets


# ---- the driver -------------------------------------------------------------------------------------------


class _PortLost(CommunicationFault):
    """The serial port failed or closed (reader unplugged): reopen it."""


class Pn532Reader(SerialCardReader):
    """A PN532 board on a serial port in HSU mode (UART pins, a USB adapter, or a simulator pty)."""

    OPTIONS = ("port", "baudrate", "debounce_s", "poll_interval_s", "response_timeout_s", "passive_retries")
    TASK_PREFIX = "pn532"

    def __init__(
        self,
        name: str,
        port: str,
        baudrate: int = DEFAULT_BAUDRATE,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        response_timeout_s: float = DEFAULT_RESPONSE_TIMEOUT_S,
        passive_retries: int = DEFAULT_PASSIVE_RETRIES,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        super().__init__(name, port, baudrate, debounce_s, reconnect_max_s)
        self.poll_interval_s = poll_interval_s
        self.response_timeout_s = response_timeout_s
        self.passive_retries = passive_retries
        self.decoder = Pn532Decoder()
        self.firmware: tuple[int, int, int] | None = None  # IC, version, revision
        self.initialised = 0  # wake-up and SAMConfiguration done this often
        self.polls = 0
        self.timeouts = 0
        self.nacks_received = 0
        self.nacks_sent = 0
        self.error_frames = 0
        self.bad_responses = 0  # well-framed responses that cannot be true
        self._items: deque[Item] = deque()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: object | None = None) -> Pn532Reader:
        """Build from a config table: {port, baudrate, debounce_s, poll_interval_s, response_timeout_s,
        passive_retries}."""
        port, baudrate = cls.serial_options(name, options, cls.OPTIONS, DEFAULT_BAUDRATE, "/dev/serial0")
        numbers = {}
        for key, default, low in (("debounce_s", DEFAULT_DEBOUNCE_S, 0.0),
                                  ("poll_interval_s", DEFAULT_POLL_INTERVAL_S, 0.01),
                                  ("response_timeout_s", DEFAULT_RESPONSE_TIMEOUT_S, 0.05)):
            value = options.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 60:
                raise ConfigError(name, f"{key} must be a number from {low} to 60, not {value!r}")
            numbers[key] = float(value)
        retries = options.get("passive_retries", DEFAULT_PASSIVE_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= 0xFE:
            raise ConfigError(name, f"passive_retries must be an integer from 1 to 254, not {retries!r}")
        return cls(name, port, baudrate=baudrate, passive_retries=retries, **numbers)

    def error_counts(self) -> dict[str, int]:
        """Refusals by kind (the decoder's, plus timeouts, NACKs and error frames), for evsectl."""
        return {**self.decoder.error_counts(), "timeouts": self.timeouts, "nacks": self.nacks_received,
                "error_frames": self.error_frames, "bad_responses": self.bad_responses}

    # -- reading

    def _card(self, target: Target) -> None:
        kind = card_type(target.sak, target.atqa)
        self._accept(CardRead(self.name, target.uid, "ISO14443A", time.monotonic(), target.sak, target.atqa, kind),
                     f" ({len(target.uid)} bytes, SAK {target.sak:02X}, {kind})")

    async def _session(self) -> None:
        """Open the port, wake and set up the chip, poll until it fails; raises a DriverError."""
        try:
            self._reader, self._writer = await asyncio.wait_for(
                serial_asyncio_fast.open_serial_connection(url=self.port, baudrate=self.baudrate),
                OPEN_TIMEOUT_S,
            )
        except (OSError, serial.SerialException, TimeoutError) as err:
            raise CommunicationFault(self.name, f"cannot open {self.port}: {err}") from err
        self.opens += 1
        self.decoder.reset()
        self._items.clear()
        try:
            await self._initialise()
            self._set_health(True, None)
            LOGGER.info("%s: PN532 v%d.%d reading ISO 14443A cards on %s", self.name,
                        *(self.firmware or (0, 0, 0))[1:], self.port)
            failed = 0
            while not self._closed:
                try:
                    targets = await self._poll()
                    failed = 0
                except _PortLost:
                    raise
                except CommunicationFault as err:
                    failed += 1
                    LOGGER.debug("%s: poll failed (%d in a row): %s", self.name, failed, err.message)
                    if failed >= FAILED_POLLS_MAX:
                        raise CommunicationFault(self.name, f"{failed} polls failed, last: {err.message}") from err
                    targets = []
                for target in targets:
                    self._card(target)
                await asyncio.sleep(self.poll_interval_s)
        finally:
            if self._writer is not None:
                self._writer.close()
            self._reader = self._writer = None

    async def _initialise(self) -> None:
        """Wake the chip from power-down, check it is a PN532, leave the SAM out, bound the polling."""
        self._write(WAKEUP)
        try:
            firmware = await self.command(GET_FIRMWARE_VERSION, b"")
        except _PortLost:
            raise
        except CommunicationFault as err:
            raise CommunicationFault(
                self.name, f"no PN532 answers on {self.port} ({err.message}); is the board in HSU mode?") from err
        if len(firmware) != 4 or firmware[0] != PN532_IC:
            self.bad_responses += 1
            raise CommunicationFault(self.name, f"not a PN532: firmware answer {firmware.hex()}")
        self.firmware = (firmware[0], firmware[1], firmware[2])
        await self.command(SAM_CONFIGURATION, bytes([SAM_NORMAL, 0x14, 0x01]))
        # finite activation retries: InListPassiveTarget answers "no card" instead of waiting forever
        await self.command(RF_CONFIGURATION, bytes([RF_MAX_RETRIES, 0xFF, 0x01, self.passive_retries]))
        self.initialised += 1

    async def _poll(self) -> list[Target]:
        """One InListPassiveTarget for one ISO 14443A card at 106 kbps."""
        self.polls += 1
        payload = await self.command(IN_LIST_PASSIVE_TARGET, bytes([1, BR_106_TYPE_A]), self.response_timeout_s)
        try:
            return parse_targets(payload)
        except ValueError as err:
            self.bad_responses += 1
            raise CommunicationFault(self.name, f"InListPassiveTarget answer refused: {err}") from err

    # -- the link

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise _PortLost(self.name, "port not open")
        try:
            self._writer.write(data)
        except (OSError, serial.SerialException) as err:
            raise _PortLost(self.name, f"{self.port}: {err}") from err

    async def _next_item(self, deadline: float, waiting_for: str) -> Item:
        loop = asyncio.get_running_loop()
        while not self._items:
            if self._reader is None:
                raise _PortLost(self.name, "port not open")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeviceTimeout(self.name, f"no {waiting_for}")
            try:
                data = await asyncio.wait_for(self._reader.read(READ_CHUNK), remaining)
            except TimeoutError:
                raise DeviceTimeout(self.name, f"no {waiting_for}") from None
            except (OSError, serial.SerialException) as err:
                raise _PortLost(self.name, f"{self.port}: {err}") from err
            if not data:
                raise _PortLost(self.name, f"{self.port}: port closed (reader unplugged?)")
            self._items.extend(self.decoder.feed(data))
        return self._items.popleft()

    async def command(self, code: int, params: bytes, response_timeout_s: float | None = None) -> bytes:
        """Send a command, wait for its ACK and its response; return the response data after its code."""
        frame = encode_frame(TFI_HOST, bytes([code]) + params)
        loop = asyncio.get_running_loop()
        name = f"command {code:02X}"
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            self._write(frame)
            # the ACK; late answers to an earlier command are skipped on the way, all within one deadline (a
            # line that keeps sending other frames must not keep the command waiting)
            ack_deadline = loop.time() + ACK_TIMEOUT_S
            try:
                while True:
                    item = await self._next_item(ack_deadline, f"ACK to {name}")
                    if isinstance(item, Ack | Nack | ErrorFrame):
                        break
            except DeviceTimeout:
                self.timeouts += 1
                self.decoder.reset()
                if attempt == COMMAND_ATTEMPTS:
                    raise
                continue
            if isinstance(item, Nack):
                self.nacks_received += 1
                continue
            if isinstance(item, ErrorFrame):
                self.error_frames += 1
                raise CommunicationFault(self.name, f"{name}: the PN532 answered with an error frame")
            return await self._response(code, loop.time() + (response_timeout_s or self.response_timeout_s))
        raise CommunicationFault(self.name, f"{name}: NACKed {COMMAND_ATTEMPTS} times")

    async def _response(self, code: int, deadline: float) -> bytes:
        resends = 0
        while True:
            try:
                item = await self._next_item(deadline, f"response to command {code:02X}")
            except DeviceTimeout:
                self.timeouts += 1
                self._write(ACK_FRAME)  # abort the command: the chip is free for the next one
                self.decoder.reset()
                raise
            if isinstance(item, Frame) and item.tfi == TFI_PN532 and item.data[0] == code + 1:
                return item.data[1:]
            if isinstance(item, BadChecksum):
                if resends == RESPONSE_RESENDS:
                    raise CommunicationFault(self.name, f"command {code:02X}: response checksum wrong "
                                             f"{resends + 1} times")
                resends += 1
                self.nacks_sent += 1
                self._write(NACK_FRAME)  # the PN532 sends its last response again
            elif isinstance(item, ErrorFrame):
                self.error_frames += 1
                raise CommunicationFault(self.name, f"command {code:02X}: the PN532 answered with an error frame")
            # anything else is a late answer to an earlier command, or our own echo: not this response
