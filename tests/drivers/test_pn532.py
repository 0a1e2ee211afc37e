"""The PN532 driver against the simulated PN532 over a real pty: every UID size, card type and fault."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import CardRead, IdReader
from drivers.errors import CommunicationFault, ConfigError
from drivers.pn532 import (
    ACK_FRAME,
    ERROR_FRAME,
    GET_FIRMWARE_VERSION,
    IN_LIST_PASSIVE_TARGET,
    NACK_FRAME,
    SAM_CONFIGURATION,
    TFI_HOST,
    TFI_PN532,
    Ack,
    BadChecksum,
    ErrorFrame,
    Frame,
    Nack,
    Pn532Decoder,
    Pn532Reader,
    Target,
    card_type,
    encode_frame,
    encode_target,
    parse_targets,
)
from drivers.registry import resolve
from simulator.devices.pn532 import SimPn532

UID4 = "A1B2C3D4"
UID7 = "04A2B3C4D5E680"
UID10 = "04112233445566778899"


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for a condition the driver's task makes true."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def read(reader: Pn532Reader, timeout_s: float = 5.0) -> CardRead:
    """read_card with a test timeout."""
    return await asyncio.wait_for(reader.read_card(), timeout_s)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimPn532]:
    """A simulated PN532 behind a stable symlink, as udev gives /dev/rfid."""
    chip = SimPn532(link=str(tmp_path / "pn532"))
    await chip.start()
    yield chip
    chip.stop()


@pytest.fixture
async def driver(sim: SimPn532) -> AsyncIterator[Pn532Reader]:
    """The real driver, connected to the simulated chip and past its set-up."""
    reader = Pn532Reader.from_config(
        "rfid", {"driver": "pn532", "port": sim.link, "debounce_s": 0.3, "poll_interval_s": 0.02})
    reader.reconnect_max_s = 0.2
    reader.start()
    await eventually(lambda: reader.connected)
    yield reader
    await reader.close()


# ---- the codec, both ways -----------------------------------------------------------------------------------


def test_frame_layout_matches_um0701() -> None:
    # SAMConfiguration normal mode, as in UM0701-02 and every PN532 library
    frame = encode_frame(TFI_HOST, bytes([SAM_CONFIGURATION, 0x01, 0x14, 0x01]))
    assert frame == bytes.fromhex("0000FF05FBD4140114010200")
    assert encode_frame(TFI_PN532, bytes([0x15])) == bytes.fromhex("0000FF02FED5151600")
    assert Pn532Decoder().feed(ACK_FRAME + NACK_FRAME + ERROR_FRAME) == [Ack(), Nack(), ErrorFrame()]
    with pytest.raises(ValueError):
        encode_frame(TFI_HOST, b"")


def test_decoder_one_byte_at_a_time_and_resync() -> None:
    decoder = Pn532Decoder()
    good = encode_frame(TFI_PN532, bytes([0x4B, 0x00]))
    stream = b"\x55\x13\x00\xff\x05\x00\x99" + good + b"\x00\xff\xff\xff\x00\x03" + ACK_FRAME
    items = [item for byte in stream for item in decoder.feed(bytes([byte]))]
    assert items == [Frame(TFI_PN532, bytes([0x4B, 0x00])), Ack()]
    assert decoder.frame_errors == 2  # a length that fails its checksum, an extended frame
    assert decoder.dropped_bytes > 0


def test_decoder_bad_checksum_and_unknown_tfi() -> None:
    decoder = Pn532Decoder()
    bad = encode_frame(TFI_PN532, bytes([0x03, 0x32, 1, 6, 7]), corrupt_checksum=True)
    assert decoder.feed(bad) == [BadChecksum()]
    assert decoder.checksum_errors == 1
    assert decoder.feed(encode_frame(0x42, b"\x01")) == []
    assert decoder.frame_errors == 1


def test_decoder_is_linear_and_bounded_on_hostile_input() -> None:
    decoder = Pn532Decoder()
    # a megabyte of false start codes and noise: every byte looked at a bounded number of times
    decoder.feed(b"\x00\xff\x07\x00" * 250_000)
    decoder.feed(bytes(range(1, 255)) * 4000)
    assert len(decoder._buffer) <= 1  # the bound is the point of the test
    assert decoder.feed(ACK_FRAME) == [Ack()]


@pytest.mark.parametrize(("uid", "sak", "atqa", "kind"), [
    (UID4, 0x08, 0x0004, "MIFARE Classic 1K"),
    (UID4, 0x18, 0x0002, "MIFARE Classic 4K"),
    (UID7, 0x00, 0x0044, "MIFARE Ultralight / NTAG"),
    (UID7, 0x20, 0x0344, "MIFARE DESFire"),
    (UID10, 0x20, 0x0084, "ISO 14443-4 card"),
])
def test_target_round_trip(uid: str, sak: int, atqa: int, kind: str) -> None:
    ats = bytes.fromhex("067577810280") if sak & 0x20 else b""
    target = Target(bytes.fromhex(uid), sak, atqa, ats)
    assert parse_targets(b"\x01" + encode_target(target)) == [target]
    assert card_type(sak, atqa) == kind


@pytest.mark.parametrize("payload", [
    b"",  # no NbTg
    b"\x03",  # more targets than the chip can list
    bytes.fromhex("01010004080501020304"),  # a 5-byte UID is no ISO 14443A UID
    bytes.fromhex("0101000408070102"),  # UID cut short
    bytes.fromhex("01010344200401020304" + "09AABB"),  # ATS longer than the frame
])
def test_implausible_targets_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_targets(payload)


def test_registry_and_config_errors() -> None:
    assert resolve("pn532") is Pn532Reader
    with pytest.raises(ConfigError) as info:
        Pn532Reader.from_config("rfid", {"port": "/dev/serial0", "baud": 115200})
    assert "allowed:" in str(info.value) and "poll_interval_s" in str(info.value)
    for bad in ({}, {"port": "/dev/serial0", "poll_interval_s": 0}, {"port": "x", "passive_retries": 255},
                {"port": "x", "response_timeout_s": True}):
        with pytest.raises(ConfigError):
            Pn532Reader.from_config("rfid", bad)


def test_both_readers_fit_the_contract() -> None:
    from drivers.rfid import SerialIdReader

    readers: list[IdReader] = [Pn532Reader("a", "/dev/null"), SerialIdReader("b", "/dev/null")]
    assert all(callable(r.read_card) and callable(r.read_id) for r in readers)


# ---- the driver against the simulated chip ------------------------------------------------------------------


async def test_wakes_and_sets_up_the_chip(sim: SimPn532, driver: Pn532Reader) -> None:
    assert sim.wakeups == 1 and sim.sam_configured
    assert driver.firmware == (0x32, 1, 6)
    assert sim.commands[:3] == [0x02, 0x14, 0x32]  # firmware, SAM, RF retries; then polling
    await eventually(lambda: sim.commands.count(IN_LIST_PASSIVE_TARGET) >= 2)
    assert driver.health.ok and driver.last_error is None


@pytest.mark.parametrize(("uid", "sak", "atqa", "kind"), [
    (UID4, None, None, "MIFARE Classic 1K"),
    (UID4, 0x18, 0x0002, "MIFARE Classic 4K"),
    (UID4, 0x09, 0x0004, "MIFARE Mini"),
    (UID7, None, None, "MIFARE Ultralight / NTAG"),
    (UID7, 0x20, 0x0344, "MIFARE DESFire"),
    (UID10, None, None, "ISO 14443-4 card"),
])
async def test_every_uid_size_and_card_type(sim: SimPn532, driver: Pn532Reader, uid: str, sak: int | None,
                                            atqa: int | None, kind: str) -> None:
    sim.present(uid.lower(), sak=sak, atqa=atqa, polls=2)
    card = await read(driver)
    assert card.uid == bytes.fromhex(uid) and card.uid.hex().upper() == uid
    assert card.technology == "ISO14443A" and card.card_type == kind and card.reader == "rfid"
    if sak is not None:
        assert card.sak == sak and card.atqa == atqa


async def test_read_id_is_upper_hex_in_card_order(sim: SimPn532, driver: Pn532Reader) -> None:
    sim.present(UID7.lower(), polls=1)
    assert await asyncio.wait_for(driver.read_id(), 5.0) == UID7


async def test_card_lying_on_reader_yields_once(sim: SimPn532, driver: Pn532Reader) -> None:
    sim.present(UID4)  # stays until taken away
    assert (await read(driver)).uid.hex().upper() == UID4
    polls = driver.polls
    await eventually(lambda: driver.polls >= polls + 30)  # seen at every poll, far longer than the debounce
    sim.present(UID7, polls=1)
    assert (await read(driver)).uid.hex().upper() == UID7  # the lying card did not yield again
    sim.take_away()
    await asyncio.sleep(driver.debounce_s * 2)
    sim.present(UID4, polls=1)
    assert (await read(driver)).uid.hex().upper() == UID4  # taken away and shown again


@pytest.mark.parametrize("fault", ["bad_checksum", "garbage", "nack"])
async def test_one_off_fault_is_absorbed(sim: SimPn532, driver: Pn532Reader, fault: str) -> None:
    sim.set_fault(fault, count=2)
    sim.present(UID10, polls=1)
    card = await read(driver)
    assert card.uid.hex().upper() == UID10
    counts = driver.error_counts()
    if fault == "bad_checksum":
        assert counts["checksum_errors"] >= 1 and driver.nacks_sent >= 1 and sim.nacks_received >= 1
    elif fault == "garbage":
        assert counts["dropped_bytes"] > 0 and counts["frame_errors"] >= 1
    else:
        assert counts["nacks"] >= 1
    assert driver.health.ok and driver.opens == 1  # absorbed without reopening the port


async def test_no_answer_once_is_retried(sim: SimPn532, driver: Pn532Reader) -> None:
    sim.set_fault("no_answer", count=1)
    sim.present(UID4, polls=1)
    assert (await read(driver)).uid.hex().upper() == UID4
    assert driver.error_counts()["timeouts"] >= 1 and driver.opens == 1


@pytest.mark.parametrize("fault", ["no_answer", "bad_checksum", "garbage", "nack"])
async def test_lasting_fault_faults_the_reader_then_it_recovers(sim: SimPn532, driver: Pn532Reader,
                                                                 fault: str) -> None:
    sim.set_fault(fault)
    if fault == "garbage":
        # noise before every frame alone is absorbed: the chip keeps answering
        sim.present(UID7, polls=1)
        assert (await read(driver)).uid.hex().upper() == UID7
        assert driver.health.ok and driver.error_counts()["dropped_bytes"] > 0
        return
    await eventually(lambda: not driver.connected, timeout_s=15.0)
    assert not driver.health.ok and driver.last_error
    sim.set_fault(fault, on=False)
    await eventually(lambda: driver.connected, timeout_s=15.0)
    assert driver.health.ok and driver.last_error is None and driver.opens >= 2
    sim.present(UID4, polls=1)
    assert (await read(driver)).uid.hex().upper() == UID4


async def test_error_frame_from_an_unconfigured_chip_reinitialises(sim: SimPn532, driver: Pn532Reader) -> None:
    sim.sam_configured = False  # the chip reset behind our back (brown-out): polls answer an error frame
    await eventually(lambda: driver.error_counts()["error_frames"] >= 1)
    await eventually(lambda: sim.sam_configured, timeout_s=15.0)  # set up again after the failed polls
    sim.present(UID7, polls=1)
    assert (await read(driver)).uid.hex().upper() == UID7
    assert driver.initialised >= 2


async def test_reader_unplugged_and_back(sim: SimPn532, driver: Pn532Reader) -> None:
    sim.stop()
    await eventually(lambda: not driver.connected)
    assert not driver.health.ok and driver.last_error
    pending = asyncio.ensure_future(driver.read_card())  # keeps waiting across the reconnect
    await asyncio.sleep(0.3)
    assert not pending.done()
    await sim.start()  # plugged back: a new pty behind the same link, the chip asleep again
    await eventually(lambda: driver.connected)
    assert sim.wakeups == 2 and driver.initialised == 2 and driver.opens >= 2
    sim.present(UID10, polls=1)
    card = await asyncio.wait_for(pending, 5.0)
    assert card.uid.hex().upper() == UID10


async def test_a_chip_that_never_wakes_is_reported(sim: SimPn532, tmp_path: Path) -> None:
    sim.set_fault("no_answer")
    reader = Pn532Reader("rfid", sim.link or "", reconnect_max_s=0.2)
    reader.start()
    try:
        await eventually(lambda: reader.last_error is not None)
        assert "HSU mode" in (reader.last_error or "") and not reader.health.ok
    finally:
        await reader.close()


async def test_read_card_after_close_raises(sim: SimPn532, driver: Pn532Reader) -> None:
    pending = asyncio.ensure_future(driver.read_card())
    await asyncio.sleep(0)
    await driver.close()
    with pytest.raises(CommunicationFault):
        await asyncio.wait_for(pending, 3.0)
    with pytest.raises(CommunicationFault):
        await driver.read_card()


# ---- the decoder on random bytes ------------------------------------------------------------------------------

FRAME_MAX = 4 + 255 + 1  # start code, LEN, LCS, body, DCS: the most the decoder ever keeps


def _decode(stream: bytes, cuts: list[int]) -> list[Any]:
    decoder = Pn532Decoder()
    items: list[Any] = []
    last = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        items += decoder.feed(stream[last:cut])
        assert len(decoder._buffer) <= FRAME_MAX  # a partial frame, never an unbounded buffer
        last = max(last, cut)
    return items


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(garbage=st.binary(max_size=300).map(lambda b: b.replace(b"\xff", b"")),
       data=st.binary(min_size=1, max_size=254), tail=st.binary(max_size=300),
       cuts=st.lists(st.integers(0, 900), max_size=6))
def test_decoder_finds_a_frame_after_any_noise_in_any_chunking(garbage: bytes, data: bytes, tail: bytes,
                                                               cuts: list[int]) -> None:
    # noise without a start code (no FF byte), then a frame, then anything
    stream = garbage + encode_frame(TFI_PN532, data) + tail
    whole = _decode(stream, [])
    assert whole == _decode(stream, cuts)
    assert whole[0] == Frame(TFI_PN532, data)


async def test_frames_other_than_the_ack_never_extend_the_ack_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Late answers to earlier commands are skipped while waiting for the ACK, all within one deadline: a line
    that keeps sending them must time the command out, not keep it waiting."""
    reader = Pn532Reader("rfid", "/dev/null")
    deadlines: list[float] = []
    stale = [Frame(TFI_PN532, bytes([0x4B, 0x00]))] * 5

    async def next_item(deadline: float, _waiting_for: str) -> Any:
        deadlines.append(deadline)
        await asyncio.sleep(0.01)
        return stale.pop() if stale else Ack()

    async def response(_code: int, _deadline: float) -> bytes:
        return b""

    monkeypatch.setattr(reader, "_write", lambda _frame: None)
    monkeypatch.setattr(reader, "_next_item", next_item)
    monkeypatch.setattr(reader, "_response", response)
    await reader.command(GET_FIRMWARE_VERSION, b"")
    assert len(deadlines) == 6 and len(set(deadlines)) == 1, deadlines
