"""A simulated PN532 (HSU) on a pseudo-terminal, answering with the frame codec of `drivers.pn532`.

The driver opens the pty's slave path (or a stable symlink to it) as it would open /dev/serial0. The chip
starts asleep, as after power-on in HSU mode: frames are ignored until the 0x55 wake-up. It answers
GetFirmwareVersion, SAMConfiguration, RFConfiguration and InListPassiveTarget (106 kbps type A, one target),
an error frame to anything else, and sends its last response again on a NACK.

Faults (switched by name, for every answer or for the next `count` answers): `no_answer` (silent),
`bad_checksum` (responses with a wrong DCS), `garbage` (noise and a false start code before each frame),
`nack` (NACK instead of ACK). `stop()` unplugs the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random

from drivers.pn532 import (
    ACK_FRAME,
    ERROR_FRAME,
    GET_FIRMWARE_VERSION,
    IN_LIST_PASSIVE_TARGET,
    NACK_FRAME,
    RF_CONFIGURATION,
    SAM_CONFIGURATION,
    TFI_HOST,
    TFI_PN532,
    UID_SIZES,
    Frame,
    Nack,
    Pn532Decoder,
    Target,
    encode_frame,
    encode_target,
)
from simulator.devices.rfid import PtyPort

LOGGER = logging.getLogger(__name__)

FAULTS = ("no_answer", "bad_checksum", "garbage", "nack")
FIRMWARE = bytes([0x32, 0x01, 0x06, 0x07])  # IC PN532, v1.6, ISO 14443A/B and ISO 18092 supported
FALSE_START = b"\x00\xff\x05\x00"  # a start code whose length checksum fails, as noise can produce
# Default card per UID size: what such cards usually are (ATQA's bits 7-6 give the UID size)
DEFAULT_CARDS = {
    4: (0x08, 0x0004, b""),  # MIFARE Classic 1K
    7: (0x00, 0x0044, b""),  # MIFARE Ultralight / NTAG
    10: (0x20, 0x0084, bytes.fromhex("067577810280")),  # a triple-size ISO 14443-4 card with an ATS
}
DESFIRE_ATS = bytes.fromhex("067577810280")


def make_target(uid_hex: str, sak: int | None = None, atqa: int | None = None) -> Target:
    """A card from its UID; SAK and ATQA default to the usual card of that UID size."""
    uid = bytes.fromhex(uid_hex)
    if len(uid) not in UID_SIZES:
        raise ValueError(f"an ISO 14443A UID has {', '.join(map(str, UID_SIZES))} bytes, not {len(uid)}")
    default_sak, default_atqa, ats = DEFAULT_CARDS[len(uid)]
    sak = default_sak if sak is None else sak
    atqa = default_atqa if atqa is None else atqa
    if sak & 0x20 and not ats:
        ats = DESFIRE_ATS
    return Target(uid, sak, atqa, ats if sak & 0x20 else b"")


class SimPn532(PtyPort):
    """A PN532 on a pty: `present()` a card, `set_fault()`, `stop()` unplugs it."""

    def __init__(self, link: str | None = None, seed: int = 532) -> None:
        super().__init__(link)
        self.decoder = Pn532Decoder()
        self.awake = False
        self.sam_configured = False
        self.commands: list[int] = []  # command codes received, in order (bounded)
        self.wakeups = 0
        self.nacks_received = 0
        self.dropped_writes = 0
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)  # -1: always; n > 0: the next n times
        self._card: Target | None = None
        self._card_polls = 0  # polls the card stays for; 0: until taken away
        self._last_response: bytes | None = None  # the last response's data (b"": the error frame)
        self._random = random.Random(seed)  # garbage is reproducible from test to test

    async def start(self) -> str:
        """Create the pty and listen; returns the path the driver opens (the symlink when one was asked for)."""
        path = self.open_pty()
        self.awake = self.sam_configured = False  # a power cycle: asleep, unconfigured
        self.decoder.reset()
        assert self._master is not None
        asyncio.get_running_loop().add_reader(self._master, self._readable)
        LOGGER.info("pn532 sim: reader on %s", path)
        return path

    # -- the test's hands

    def present(self, uid_hex: str, sak: int | None = None, atqa: int | None = None, polls: int = 0) -> None:
        """Lay a card on the reader: for the next `polls` polls, or until `take_away()` when 0."""
        self._card = make_target(uid_hex, sak, atqa)
        self._card_polls = polls

    def take_away(self) -> None:
        """No card on the reader."""
        self._card = None

    def set_fault(self, fault: str, on: bool = True, count: int | None = None) -> None:
        """Switch a fault on (for every answer, or the next `count` answers) or off."""
        if fault not in FAULTS:
            raise ValueError(f"unknown PN532 fault {fault!r}; known: {', '.join(FAULTS)}")
        self.faults[fault] = (count if count else -1) if on else 0

    def _fault(self, fault: str) -> bool:
        left = self.faults[fault]
        if left and left > 0:
            self.faults[fault] = left - 1
        return left != 0

    # -- the wire

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # nobody holds the slave open: nothing to answer
        if not self.awake and 0x55 in data:
            self.awake = True  # HSU wake-up; the frames after it in the same write count
            self.wakeups += 1
        for item in self.decoder.feed(data):
            if not self.awake:
                continue  # asleep: the chip hears nothing but the wake-up
            if isinstance(item, Nack):
                self.nacks_received += 1
                if self._last_response is not None and not self._fault("no_answer"):
                    self._respond(self._last_response)
            elif isinstance(item, Frame) and item.tfi == TFI_HOST:
                self._command(item.data[0], item.data[1:])

    def _command(self, code: int, params: bytes) -> None:
        if len(self.commands) < 10_000:
            self.commands.append(code)
        if self._fault("no_answer"):
            return
        if self._fault("nack"):
            self._send(NACK_FRAME)
            return
        self._send(ACK_FRAME)
        answer = self._answer(code, params)
        if answer is None:
            self._last_response = b""
            self._send(ERROR_FRAME)
            return
        self._last_response = bytes([code + 1]) + answer
        self._respond(self._last_response)

    def _respond(self, data: bytes) -> None:
        """A response frame (the error frame for empty data), corrupted while bad_checksum is on."""
        if data == b"":
            self._send(ERROR_FRAME)
        else:
            self._send(encode_frame(TFI_PN532, data, corrupt_checksum=self._fault("bad_checksum")))

    def _answer(self, code: int, params: bytes) -> bytes | None:
        """The response data after its code; None: the error frame (a command this chip does not take)."""
        if code == GET_FIRMWARE_VERSION:
            return FIRMWARE
        if code == SAM_CONFIGURATION and params[:1] == b"\x01":
            self.sam_configured = True
            return b""
        if code == RF_CONFIGURATION and params:
            return b""
        if code == IN_LIST_PASSIVE_TARGET and self.sam_configured and params == bytes([1, 0]):
            card = self._card
            if card is None:
                return b"\x00"
            if self._card_polls:
                self._card_polls -= 1
                if not self._card_polls:
                    self._card = None  # it was held for that many polls and is gone now
            return b"\x01" + encode_target(card)
        return None

    def _send(self, frame: bytes) -> None:
        if self._fault("garbage"):
            noise = bytes(self._random.randrange(1, 0xFF) for _ in range(self._random.randrange(3, 40)))
            frame = noise + FALSE_START + noise[:5] + frame
        if self._master is None:
            return
        try:
            written = os.write(self._master, frame)
        except (BlockingIOError, OSError):
            written = 0
        if written < len(frame):
            self.dropped_writes += 1  # a UART whose receiver does not read loses bytes too

    def stop(self) -> None:
        """Unplug the reader: the driver's reads fail and its port path goes away."""
        if self._master is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
        self.close_pty()
