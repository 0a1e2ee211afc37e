"""Firmware update and diagnostics over OCPP 1.6 (TC_044, TC_045) against local HTTP and FTP servers."""

from __future__ import annotations

import asyncio
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

from tests.integration.harness import Rig


def firmware_archive() -> bytes:
    return ARCHIVE


def _make_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"#!/bin/sh\necho new firmware\n"
        info = tarfile.TarInfo("firmware/install.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = _make_archive()


class Files(http.server.SimpleHTTPRequestHandler):
    """GET serves the directory; PUT stores uploads in it."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        target = Path(self.directory) / self.path.lstrip("/")
        target.write_bytes(self.rfile.read(length))
        self.send_response(201)
        self.end_headers()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: Files(*a, directory=str(root)))  # type: ignore[misc]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture
def ftp_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "ftp"
    root.mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user("tech", "s3cret-ftp", str(root), perm="elradfmw")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "passive_ports": None})
    server = FTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2, "blocking": True},
                              daemon=True)
    thread.start()
    yield f"ftp://tech:s3cret-ftp@127.0.0.1:{server.address[1]}", root
    server.close_all()


async def start_rig(rig_factory: Any, tmp_path: Path, installer_exit: int = 0) -> tuple[Rig, Path]:
    installed = tmp_path / "installed"
    installed.mkdir(exist_ok=True)
    script = tmp_path / "install-firmware.sh"
    script.write_text(f"#!/bin/sh\ncp \"$1\" {installed}/\nexit {installer_exit}\n")
    script.chmod(0o755)
    rig: Rig = await rig_factory(start=False)
    await rig.start_sim()
    with open(rig.agent_config, "a") as fh:
        fh.write(f'\n[firmware]\ninstaller = "{script} {{file}}"\n')
    rig.start_agent()
    await rig.office.wait_for("BootNotification", timeout=20)
    await rig.wait_status(1, "Available")
    return rig, installed


def statuses(rig: Rig, action: str) -> list[str]:
    return [m["payload"]["status"] for m in rig.calls(action)]


async def wait_statuses(rig: Rig, action: str, final: str, timeout: float = 20.0) -> list[str]:
    try:
        await rig.office.wait_for(lambda: final in statuses(rig, action), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"{action}: {statuses(rig, action)}\n{rig.agent_log()[-3000:]}") from None
    return statuses(rig, action)


async def test_tc_044_1_firmware_download_and_install(rig_factory: Any, tmp_path: Path,
                                                      http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "fw-2.0.tar.gz").write_bytes(firmware_archive())
    rig, installed = await start_rig(rig_factory, tmp_path)
    boots = len(rig.calls("BootNotification"))
    result = await rig.cs_call("UpdateFirmware", {"location": f"{base}/fw-2.0.tar.gz",
                                                  "retrieveDate": "2020-01-01T00:00:00Z"})
    assert result["status"] == "result"
    seen = await wait_statuses(rig, "FirmwareStatusNotification", "Installed")
    assert seen == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert (installed / "fw-2.0.tar.gz").read_bytes() == firmware_archive()
    assert rig.agent is not None
    assert await asyncio.to_thread(rig.agent.wait, 15) == 0  # restarts into the new version
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1)


async def test_tc_044_1_install_waits_for_the_running_session(rig_factory: Any, tmp_path: Path,
                                                              http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    rig, installed = await start_rig(rig_factory, tmp_path)
    await rig.start_session()
    await rig.wait_status(1, "Charging")
    await rig.cs_call("UpdateFirmware", {"location": f"{base}/fw.tar.gz", "retrieveDate": "2020-01-01T00:00:00Z"})
    await wait_statuses(rig, "FirmwareStatusNotification", "Downloaded")
    await asyncio.sleep(2.0)
    assert "Installing" not in statuses(rig, "FirmwareStatusNotification")  # never cuts a session
    assert not rig.calls("StopTransaction")
    rig.card()
    await rig.wait_call("StopTransaction")
    await wait_statuses(rig, "FirmwareStatusNotification", "Installed")
    assert (installed / "fw.tar.gz").exists()


async def test_tc_044_2_download_failed(rig_factory: Any, tmp_path: Path, http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    rig, installed = await start_rig(rig_factory, tmp_path)
    await rig.cs_call("UpdateFirmware", {"location": f"{base}/missing.tar.gz", "retrieveDate": "2020-01-01T00:00:00Z",
                                         "retries": 1, "retryInterval": 1})
    seen = await wait_statuses(rig, "FirmwareStatusNotification", "DownloadFailed")
    assert seen == ["Downloading", "DownloadFailed"]
    assert not any(installed.iterdir())
    assert rig.agent is not None and rig.agent.poll() is None  # no restart


async def test_tc_044_3_installation_failed(rig_factory: Any, tmp_path: Path, http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    rig, _ = await start_rig(rig_factory, tmp_path, installer_exit=1)
    await rig.cs_call("UpdateFirmware", {"location": f"{base}/fw.tar.gz", "retrieveDate": "2020-01-01T00:00:00Z"})
    seen = await wait_statuses(rig, "FirmwareStatusNotification", "InstallationFailed")
    assert seen == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert rig.agent is not None and rig.agent.poll() is None


async def test_tc_044_3_damaged_archive_is_never_installed(rig_factory: Any, tmp_path: Path,
                                                          http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "fw.tar.gz").write_bytes(firmware_archive()[:40])
    rig, installed = await start_rig(rig_factory, tmp_path)
    await rig.cs_call("UpdateFirmware", {"location": f"{base}/fw.tar.gz", "retrieveDate": "2020-01-01T00:00:00Z"})
    seen = await wait_statuses(rig, "FirmwareStatusNotification", "InstallationFailed")
    assert "Installing" not in seen
    assert not any(installed.iterdir())


async def test_firmware_over_ftp(rig_factory: Any, tmp_path: Path, ftp_root: tuple[str, Path]) -> None:
    base, root = ftp_root
    (root / "fw.tar.gz").write_bytes(firmware_archive())
    rig, installed = await start_rig(rig_factory, tmp_path)
    await rig.cs_call("UpdateFirmware", {"location": f"{base}/fw.tar.gz", "retrieveDate": "2020-01-01T00:00:00Z"})
    await wait_statuses(rig, "FirmwareStatusNotification", "Installed")
    assert (installed / "fw.tar.gz").read_bytes() == firmware_archive()
    assert "s3cret-ftp" not in rig.agent_log()


async def test_tc_045_1_get_diagnostics_http(rig_factory: Any, tmp_path: Path, http_root: tuple[str, Path]) -> None:
    base, root = http_root
    rig, _ = await start_rig(rig_factory, tmp_path)
    (root / "uploads").mkdir()
    result = await rig.cs_call("GetDiagnostics", {"location": f"{base}/uploads"})
    name = result["payload"]["fileName"]
    assert name.endswith(".tar.gz")
    seen = await wait_statuses(rig, "DiagnosticsStatusNotification", "Uploaded")
    assert seen == ["Uploading", "Uploaded"]
    with tarfile.open(root / "uploads" / name) as tar:
        members = set(tar.getnames())
    assert {"config.json", "status.json", "database.json", "versions.json", "agent.log"} <= members


async def test_tc_045_1_get_diagnostics_ftp(rig_factory: Any, tmp_path: Path, ftp_root: tuple[str, Path]) -> None:
    base, root = ftp_root
    rig, _ = await start_rig(rig_factory, tmp_path)
    result = await rig.cs_call("GetDiagnostics", {"location": f"{base}/"})
    await wait_statuses(rig, "DiagnosticsStatusNotification", "Uploaded")
    assert (root / result["payload"]["fileName"]).stat().st_size > 0


async def test_tc_045_2_upload_failed(rig_factory: Any, tmp_path: Path) -> None:
    rig, _ = await start_rig(rig_factory, tmp_path)
    await rig.cs_call("GetDiagnostics", {"location": "ftp://nobody:x@127.0.0.1:1/", "retries": 1,
                                         "retryInterval": 1})
    seen = await wait_statuses(rig, "DiagnosticsStatusNotification", "UploadFailed")
    assert seen == ["Uploading", "UploadFailed"]  # one status per state, no flood during the retries
