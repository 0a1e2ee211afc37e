"""The serial RFID driver against the simulated reader over a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drivers.errors import CommunicationFault, ConfigError
from drivers.registry import resolve
from drivers.rfid import ETX, STX, FrameDecoder, SerialIdReader, checksum, encode_frame, id_tag
from simulator.devices.rfid import SimRfidReader

CARD_A = "0F00A1B2C3"  # EM4100: version byte + 4 tag bytes
CARD_B = "1200C0FFEE"


async def eventually(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait for a condition the driver's task makes true."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def read(reader: SerialIdReader, timeout_s: float = 3.0) -> str:
    """read_id with a test timeout."""
    return await asyncio.wait_for(reader.read_id(), timeout_s)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimRfidReader]:
    """A simulated reader behind a stable symlink, as udev gives /dev/rfid."""
    reader = SimRfidReader(link=str(tmp_path / "rfid"))
    await reader.start()
    yield reader
    reader.stop()


@pytest.fixture
async def driver(sim: SimRfidReader) -> AsyncIterator[SerialIdReader]:
    """The real driver, connected to the simulated reader."""
    reader = SerialIdReader.from_config(
        "rfid", {"driver": "serial_rfid", "port": sim.link, "baudrate": 9600, "debounce_s": 0.3}
    )
    reader.reconnect_max_s = 0.2
    reader.start()
    # pyserial flushes the input buffer when it opens: a card shown before that is lost, as on hardware.
    await eventually(lambda: reader.connected)
    yield reader
    await reader.close()


def test_frame_matches_rdm6300_format() -> None:
    # 0x62 ^ 0xE3 ^ 0x08 ^ 0x6C ^ 0xED = 0x08
    assert encode_frame(bytes.fromhex("62E3086CED")) == b"\x0262E3086CED08\x03"
    assert checksum(bytes.fromhex("62E3086CED")) == 0x08
    assert len(encode_frame(bytes.fromhex(CARD_A))) == 14  # 1 + 10 + 2 + 1


def test_decoder_one_byte_at_a_time_and_resync() -> None:
    decoder = FrameDecoder()
    stream = b"\xffnoise\x02\x02zz\x03" + encode_frame(bytes.fromhex(CARD_A)) + b"\x0212"
    uids = [uid for byte in stream for uid in decoder.feed(bytes([byte]))]
    assert uids == [bytes.fromhex(CARD_A)]
    assert decoder.frame_errors == 2  # a STX right after STX, then a non-hex byte
    assert decoder.dropped_bytes > 0
    uids = decoder.feed(encode_frame(bytes.fromhex(CARD_B))[len(b"\x0212"):])
    assert uids == [bytes.fromhex(CARD_B)]  # the partial frame at the end was the next card's start


def test_decoder_rejects_bad_checksum_and_wrong_length() -> None:
    decoder = FrameDecoder()
    good = encode_frame(bytes.fromhex(CARD_A))
    bad = good[:-3] + b"00" + bytes([ETX])
    assert decoder.feed(bad) == []
    assert decoder.checksum_errors == 1
    eleven = bytes(range(1, 12))
    raw = bytes([STX]) + eleven.hex().upper().encode() + f"{checksum(eleven):02X}".encode() + bytes([ETX])
    assert decoder.feed(raw) == []
    assert decoder.frame_errors == 1
    assert decoder.feed(b"\x02" + b"A" * 40 + good) == [bytes.fromhex(CARD_A)]  # no ETX in time: resync


def test_id_tag_is_upper_hex_and_at_most_20_chars() -> None:
    assert id_tag(bytes.fromhex("0f00a1b2c3")) == "0F00A1B2C3"
    assert id_tag(bytes(range(10))) == "00010203040506070809"
    assert len(id_tag(bytes(range(16)))) == 20
    with pytest.raises(ValueError):
        encode_frame(bytes(11))


def test_registry_and_config_errors() -> None:
    assert resolve("serial_rfid") is SerialIdReader
    with pytest.raises(ConfigError) as info:
        SerialIdReader.from_config("rfid", {"port": "/dev/ttyS0", "baud": 9600})
    assert "allowed:" in str(info.value) and "baudrate" in str(info.value)
    with pytest.raises(ConfigError):
        SerialIdReader.from_config("rfid", {})
    with pytest.raises(ConfigError):
        SerialIdReader.from_config("rfid", {"port": "/dev/ttyS0", "debounce_s": -1})


async def test_card_read(sim: SimRfidReader, driver: SerialIdReader) -> None:
    sim.present(CARD_A.lower(), repeats=1)
    assert await read(driver) == CARD_A
    assert driver.health.ok and driver.last_error is None


async def test_card_lying_on_reader_yields_once(sim: SimRfidReader, driver: SerialIdReader) -> None:
    sim.present(CARD_A, repeats=5)
    assert await read(driver) == CARD_A
    sim.present(CARD_A, repeats=3)  # still lying there
    sim.present(CARD_B, repeats=3)
    assert await read(driver) == CARD_B  # the repeats of A were swallowed
    await asyncio.sleep(driver.debounce_s * 2)  # card taken away and shown again
    sim.present(CARD_A, repeats=2)
    assert await read(driver) == CARD_A
    assert driver.decoder.frames == 13


async def test_garbage_then_card(sim: SimRfidReader, driver: SerialIdReader) -> None:
    sim.send_garbage(200)
    sim.present(CARD_B, repeats=1)
    assert await read(driver) == CARD_B


async def test_bad_checksum_ignored_and_counted(sim: SimRfidReader, driver: SerialIdReader) -> None:
    frame = encode_frame(bytes.fromhex(CARD_A))
    wrong = checksum(bytes.fromhex(CARD_A)) ^ 0x5A
    sim.send_raw(frame[:-3] + f"{wrong:02X}".encode() + bytes([ETX]))
    sim.present(CARD_B, repeats=1)
    assert await read(driver) == CARD_B
    assert driver.decoder.checksum_errors == 1
    assert driver.error_counts() == {"frame_errors": 0, "checksum_errors": 1, "dropped_bytes": 0}


async def test_ten_byte_uid_gives_20_char_id_tag(sim: SimRfidReader, driver: SerialIdReader) -> None:
    eleven = bytes.fromhex("04A1B2C3D4E5F60718293A")  # no such UID size: would exceed CiString20
    sim.send_raw(bytes([STX]) + eleven.hex().upper().encode() + f"{checksum(eleven):02X}".encode() + b"\x03")
    sim.present("04a1b2c3d4e5f6071829", repeats=1)
    tag = await read(driver)
    assert tag == "04A1B2C3D4E5F6071829" and len(tag) == 20
    assert driver.decoder.frame_errors == 1
    assert driver.error_counts()["frame_errors"] == 1


async def test_reader_unplugged_and_back(sim: SimRfidReader, driver: SerialIdReader) -> None:
    sim.stop()
    await eventually(lambda: not driver.connected)
    assert not driver.health.ok
    assert driver.last_error is not None
    pending = asyncio.ensure_future(driver.read_id())  # keeps waiting across the reconnect
    await asyncio.sleep(0.3)  # a few failed reopen attempts while the port is gone
    assert not pending.done()
    assert not driver.health.ok and "cannot open" in (driver.last_error or "")

    await sim.start()
    await eventually(lambda: driver.connected)
    assert driver.health.ok and driver.last_error is None and driver.opens == 2
    sim.present(CARD_A, repeats=1)
    assert await asyncio.wait_for(pending, 3.0) == CARD_A


async def test_read_id_after_close_raises(sim: SimRfidReader, driver: SerialIdReader) -> None:
    pending = asyncio.ensure_future(driver.read_id())
    await asyncio.sleep(0)
    await driver.close()
    with pytest.raises(CommunicationFault):
        await asyncio.wait_for(pending, 3.0)
    with pytest.raises(CommunicationFault):
        await driver.read_id()
