"""Tests of agent/services/: the one retry rule for transfers, and the firmware service driven through its ports
alone (no runtime)."""

from __future__ import annotations

import logging
from asyncio import sleep as real_sleep
from pathlib import Path
from typing import Any

import pytest

from agent.config.schema import FirmwareConfig
from agent.security.events import SecurityEventType
from agent.services import transfer as transfer_module
from agent.services.firmware import FirmwareManager
from agent.services.transfer import TransferError, transfer_with_retries


class Sleeps:
    """asyncio.sleep as the retry helper sees it: recorded, and only a yield to the loop."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.waits.append(delay)
        await real_sleep(0)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    recorder = Sleeps()
    monkeypatch.setattr(transfer_module.asyncio, "sleep", recorder)
    return recorder


async def test_retries_then_gives_up_with_a_wait_between_attempts(sleeps: Sleeps,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def failing() -> int:
        nonlocal calls
        calls += 1
        raise TransferError("server down")

    with caplog.at_level(logging.WARNING):
        assert await transfer_with_retries("log upload", failing, 2, 7.5) is None
    assert calls == 3  # the first attempt and two retries
    assert sleeps.waits == [7.5, 7.5]  # no wait after the last attempt
    assert [r.getMessage() for r in caplog.records] == [
        f"log upload attempt {n}/3 failed: server down" for n in (1, 2, 3)]


async def test_a_later_attempt_that_succeeds_returns_its_result(sleeps: Sleeps) -> None:
    answers: list[Any] = [TransferError("busy"), 42]

    def flaky() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return int(answer)

    assert await transfer_with_retries("firmware download", flaky, 3, 1.0) == 42
    assert sleeps.waits == [1.0]


async def test_zero_retries_is_one_attempt(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def failing() -> int:
        calls.append(1)
        raise TransferError("no")

    assert await transfer_with_retries("diagnostics upload", failing, 0, 5.0) is None
    assert len(calls) == 1 and sleeps.waits == []


class Ports:
    """The runtime's side of the firmware service, recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[SecurityEventType, str | None]] = []
        self.exits = 0
        self.bundles: list[tuple[Path, list[str]]] = []

    async def notify(self, action: str, payload: dict[str, Any]) -> None:
        self.sent.append((action, payload))

    async def settle(self, timeout_s: float) -> None:
        return None

    def request_exit(self) -> None:
        self.exits += 1

    def event(self, kind: SecurityEventType, tech_info: str | None = None) -> None:
        self.events.append((kind, tech_info))

    def check_firmware(self, path: Path, signing_certificate: Any, signature_b64: str) -> None:
        return None

    def write_bundle(self, dest_dir: Path, log_lines: list[str], *, start: float | None = None,
                     stop: float | None = None) -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True)
        path = dest_dir / "diagnostics-CP-1-20250101T000000Z.tar.gz"
        path.write_bytes(b"archive")
        self.bundles.append((dest_dir, log_lines))
        return path


def make_manager(tmp_path: Path, ports: Ports) -> FirmwareManager:
    return FirmwareManager(FirmwareConfig(installer="true {file}"), tmp_path, now=lambda: 0.0, notify=ports.notify,
                           transactions_open=lambda: False, settle=ports.settle, request_exit=ports.request_exit,
                           security=ports, write_bundle=ports.write_bundle)


async def test_firmware_download_failure_is_reported_through_the_notify_port(tmp_path: Path, sleeps: Sleeps) -> None:
    ports = Ports()
    manager = make_manager(tmp_path, ports)
    await manager.update("gopher://example.invalid/fw.tar.gz", 0.0, 1, 3.0)  # an unsupported scheme fails at once
    assert ports.sent == [("FirmwareStatusNotification", {"status": "Downloading"}),
                          ("FirmwareStatusNotification", {"status": "DownloadFailed"})]
    assert sleeps.waits == [3.0]
    assert manager.firmware_status == "Idle" and ports.exits == 0 and ports.events == []
    assert manager.download_dir == tmp_path / "firmware"


async def test_diagnostics_are_written_by_the_bundle_port_and_uploaded_with_retries(tmp_path: Path,
                                                                                   sleeps: Sleeps) -> None:
    ports = Ports()
    manager = make_manager(tmp_path, ports)
    name = manager.start_diagnostics("gopher://example.invalid/up/", 2, 4.0, None, None, ["a line"])
    assert name == "diagnostics-CP-1-20250101T000000Z.tar.gz"
    assert ports.bundles == [(tmp_path / "diagnostics", ["a line"])]
    while manager.diagnostics_status != "Idle" or not ports.sent:
        await real_sleep(0.01)
    assert ports.sent == [("DiagnosticsStatusNotification", {"status": "Uploading"}),
                          ("DiagnosticsStatusNotification", {"status": "UploadFailed"})]
    assert sleeps.waits == [4.0, 4.0]
    manager.cancel()
