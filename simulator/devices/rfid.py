"""A simulated RDM6300-style RFID reader on a pseudo-terminal, speaking the frames of `drivers.rfid`.

The driver opens the pty's slave path (or a stable symlink to it, like socat's `link=`) as it would
open /dev/ttyUSB0. Frames come from `drivers.rfid.encode_frame`, so the simulator cannot drift from
the driver's codec. Faults: garbage bytes, raw (e.g. bad-checksum) frames, the reader unplugged (stop).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tty

from drivers.rfid import STX, encode_frame

LOGGER = logging.getLogger(__name__)


class PtyPort:
    """A serial device's end of a pseudo-terminal, raw, with an optional stable symlink (socat's `link=`)."""

    def __init__(self, link: str | None) -> None:
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        self.path = ""

    def open_pty(self) -> str:
        """Create the pty; returns the path the driver opens (the symlink when one was asked for)."""
        master, slave = os.openpty()
        # Raw mode at once: 0x03 (ETX) is ^C to a cooked tty, and the driver may open the port later.
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave  # holding the slave open keeps the master writable
        self.path = os.ttyname(slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link)  # atomic: the driver never sees a half-made link
        return self.link or self.path

    def close_pty(self) -> None:
        """Unplug: the driver's reads fail and its port path goes away."""
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    @property
    def running(self) -> bool:
        """Whether the pty exists."""
        return self._master is not None


class SimRfidReader(PtyPort):
    """A card reader on a pty: `present()` a card, `send_garbage()`, `stop()` unplugs it."""

    def __init__(self, link: str | None = None, seed: int = 6300) -> None:
        super().__init__(link)
        self._random = random.Random(seed)  # garbage is reproducible from test to test
        self.dropped_writes = 0

    async def start(self) -> str:
        """Create the pty; returns the path the driver opens (the symlink when one was asked for)."""
        path = self.open_pty()
        LOGGER.info("rfid sim: reader on %s", path)
        return path

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they would come down the reader's TX line."""
        if self._master is None:
            raise RuntimeError("the simulated reader is not started")
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        if written < len(data):
            # A UART whose receiver does not read loses bytes too.
            self.dropped_writes += 1
            LOGGER.warning("rfid sim: %d of %d bytes dropped, nobody reads", len(data) - written, len(data))

    def present(self, uid_hex: str, repeats: int = 3) -> None:
        """Lay a card on the reader: its frame, repeated as a real reader repeats while it lies there."""
        frame = encode_frame(bytes.fromhex(uid_hex))
        self.send_raw(frame * max(1, repeats))

    def send_garbage(self, n: int) -> None:
        """Write n noise bytes (a start byte now and then, as line noise produces)."""
        noise = bytes(self._random.choice((STX, *range(0x20, 0x7F), 0xFF)) for _ in range(n))
        self.send_raw(noise)

    def stop(self) -> None:
        """Unplug the reader: the driver's reads fail and its port path goes away."""
        self.close_pty()
