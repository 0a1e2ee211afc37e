"""The OCPP frame log (agent/framelog.py): redacted, clipped, bounded in size with rotation, buffered without
losing what was written, and the only handler the daemon puts on the frame logger."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_config
from agent.daemon import setup_logging
from agent.framelog import FRAMES, FrameLogHandler, StampFormatter, flush_frames, log_frame
from agent.redact import LOG_MAX_CHARS

CARD = "04A1B2C3D4E5F6"
SAMPLE = json.dumps([2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 5, "meterValue": [
    {"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": "1234.5"}]}]}], separators=(",", ":"))


@pytest.fixture
def frames() -> Iterator[logging.Logger]:
    """A logger of its own, as the daemon sets up agent.ocpp.frames."""
    logger = logging.getLogger(f"test.framelog.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + "*"))


def test_lines_are_written_at_once_without_an_event_loop(tmp_path: Path, frames: logging.Logger) -> None:
    path = tmp_path / "ocpp-frames.log"
    frames.addHandler(FrameLogHandler(path, max_bytes=100_000, backups=3))
    frames.debug("out %s", SAMPLE)
    line = path.read_text().splitlines()[-1]
    stamp, message = line[:23], line[24:]
    assert message == f"out {SAMPLE}"  # a frame without a secret goes out as it is
    assert stamp[4] == "-" and stamp[10] == " " and stamp[19] == ","  # logging's asctime: 2024-01-01 00:00:00,123


def test_secrets_are_masked_and_huge_frames_clipped(tmp_path: Path, frames: logging.Logger) -> None:
    path = tmp_path / "ocpp-frames.log"
    frames.addHandler(FrameLogHandler(path, max_bytes=100_000, backups=3))
    frames.debug("out %s", json.dumps([2, "a1", "StartTransaction", {"connectorId": 1, "idTag": CARD}]))
    frames.debug("in %s", json.dumps([2, "c1", "ChangeConfiguration",
                                      {"key": "AuthorizationKey", "value": "00112233445566778899"}]))
    frames.debug("in %s", json.dumps([2, "u1", "UpdateFirmware", {"location": "ftp://user:s3cret@host/fw"}]))
    big = "[2,\"big\",\"DataTransfer\",{\"data\":\"" + "a" * 200_000 + "\"}]"
    frames.debug("in %s", big)
    text = path.read_text()
    assert CARD not in text and "**********E5F6" in text
    assert "00112233445566778899" not in text and "s3cret" not in text
    assert max(len(line) for line in text.splitlines()) < LOG_MAX_CHARS
    assert f"[clipped: {len(big) + 3} chars in all]" in text  # "in " + the frame


def test_the_size_stays_bounded_by_rotation(tmp_path: Path, frames: logging.Logger) -> None:
    path = tmp_path / "ocpp-frames.log"
    frames.addHandler(FrameLogHandler(path, max_bytes=2_000, backups=3))
    for n in range(400):
        frames.debug("out [2,\"%05d\",\"Heartbeat\",{}] é", n)  # a non-ASCII character: counted in bytes
    kept = files(path)
    assert [p.name for p in kept] == ["ocpp-frames.log", *(f"ocpp-frames.log.{n}" for n in (1, 2, 3))]
    assert all(p.stat().st_size <= 2_000 for p in kept)
    lines = [ln for p in reversed(kept) for ln in p.read_text().splitlines()]  # oldest file first
    numbers = [int(ln.split('"')[1]) for ln in lines]
    assert numbers == list(range(numbers[0], 400))  # the newest lines, in order, none lost between files
    assert numbers[0] > 200  # about 4 x 2,000 bytes of lines kept, the older ones dropped


def test_an_existing_file_counts_toward_the_bound(tmp_path: Path, frames: logging.Logger) -> None:
    path = tmp_path / "ocpp-frames.log"
    path.write_text("x" * 1_990 + "\n")
    frames.addHandler(FrameLogHandler(path, max_bytes=2_000, backups=1))
    frames.debug("out %s", SAMPLE)
    assert (tmp_path / "ocpp-frames.log.1").read_text() == "x" * 1_990 + "\n"
    assert SAMPLE in path.read_text()


async def test_in_the_event_loop_lines_are_buffered_then_flushed(tmp_path: Path, frames: logging.Logger) -> None:
    path = tmp_path / "ocpp-frames.log"
    handler = FrameLogHandler(path, max_bytes=100_000, backups=3)
    frames.addHandler(handler)
    for n in range(50):
        frames.debug("out %s", SAMPLE.replace("m1", f"m{n}"))
    assert path.read_text() == ""  # no write per record: the loop has not run since
    for _ in range(100):  # FLUSH_S later the loop writes them (bounded wait, no timing assertion)
        await asyncio.sleep(0.05)
        if path.read_text():
            break
    assert len(path.read_text().splitlines()) == 50
    frames.debug("out last")
    handler.close()  # a close (the daemon's exit: logging.shutdown) writes what is buffered
    assert path.read_text().splitlines()[-1].endswith("out last")


def test_the_daemon_puts_one_handler_on_the_frame_logger(tmp_path: Path) -> None:
    example = load_config(Path(__file__).resolve().parents[2] / "systemd" / "evse-agent.toml.example")
    cfg = dataclasses.replace(example, state=dataclasses.replace(example.state, directory=str(tmp_path)))
    frames = logging.getLogger("agent.ocpp.frames")
    root = logging.getLogger()
    saved = (list(frames.handlers), list(root.handlers), frames.propagate, frames.level, root.level)
    try:
        setup_logging(cfg, verbose=False)
        handlers = [h for h in frames.handlers if h not in saved[0]]
        assert len(handlers) == 1 and isinstance(handlers[0], FrameLogHandler)
        assert handlers[0].path == tmp_path / "ocpp-frames.log"
        assert not frames.propagate  # not also to stderr (only with --verbose)
    finally:
        for handler in [h for h in frames.handlers if h not in saved[0]]:
            frames.removeHandler(handler)
            handler.close()
        root.handlers[:] = saved[1]
        frames.propagate, frames.level = saved[2], saved[3]
        root.setLevel(saved[4])


def test_the_cached_time_stamp_is_logging_s_own() -> None:
    plain, cached = logging.Formatter("%(asctime)s %(message)s"), StampFormatter("%(asctime)s %(message)s")
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_003_600.25, 1_700_000_000.0):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert cached.format(record) == plain.format(record)


def test_log_frame_reaches_every_handler_of_the_frame_logger() -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    collect = Collect(logging.DEBUG)
    FRAMES.addHandler(collect)
    level = FRAMES.level
    FRAMES.setLevel(logging.DEBUG)
    try:
        log_frame("out", SAMPLE)
        log_frame("in", b'[3,"m1",{}]')
        log_frame("out", json.dumps([2, "a1", "Authorize", {"idTag": CARD}]))  # redacted once, for every handler
        FRAMES.setLevel(logging.INFO)
        log_frame("out", "not logged: the frame logger is not at DEBUG")
    finally:
        FRAMES.removeHandler(collect)
        FRAMES.setLevel(level)
    assert seen == [f"out {SAMPLE}", "in b'[3,\"m1\",{}]'", 'out [2, "a1", "Authorize", {"idTag": "**********E5F6"}]']


async def test_in_the_event_loop_frames_reach_the_handlers_after_the_send_in_order() -> None:
    seen: list[tuple[str, float]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), record.created))

    collect = Collect(logging.DEBUG)
    FRAMES.addHandler(collect)
    level = FRAMES.level
    FRAMES.setLevel(logging.DEBUG)
    try:
        before = time.time()
        log_frame("in", '[3,"m1",{}]')
        log_frame("out", SAMPLE)
        after = time.time()
        assert seen == []  # noted, not yet handled: the exchange does not wait for the handlers
        flush_frames()  # what FrameGuard does right after a send
        assert [m for m, _ in seen] == ['in [3,"m1",{}]', f"out {SAMPLE}"]
        assert all(before <= at <= after for _, at in seen)  # the time each frame passed, not the handling time
        log_frame("in", '[3,"m2",{}]')  # no send follows: the loop hands it over by itself
        for _ in range(200):
            await asyncio.sleep(0.005)
            if len(seen) == 3:
                break
        assert seen[-1][0] == 'in [3,"m2",{}]'
    finally:
        flush_frames()
        FRAMES.removeHandler(collect)
        FRAMES.setLevel(level)


def test_a_deleted_log_file_is_started_again_at_rotation(tmp_path: Path, frames: logging.Logger) -> None:
    """A technician deleted ocpp-frames.log while the agent wrote it: the next rotation starts a new file."""
    path = tmp_path / "ocpp-frames.log"
    frames.addHandler(FrameLogHandler(path, max_bytes=2_000, backups=2))
    for n in range(30):
        frames.debug("out [2,\"%05d\",\"Heartbeat\",{}]", n)
    path.unlink()
    for n in range(30, 200):
        frames.debug("out [2,\"%05d\",\"Heartbeat\",{}]", n)
    assert '"00199"' in path.read_text()  # still logging, to the file where a technician looks
