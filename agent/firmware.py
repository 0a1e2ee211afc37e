"""Firmware updates and diagnostics uploads requested by the back office (OCPP 1.6 FirmwareManagement).

A firmware update never cuts a session: the installer runs only once no transaction is active, and the
restart that follows goes through the daemon's normal exit (systemd starts the new version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import tarfile
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.transfer import TransferError, download, redact, upload

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 900.0
IDLE_POLL_S = 1.0
SETTLE_S = 10.0

StatusSender = Callable[[str, str], Awaitable[None]]  # (action, status)


class FirmwareError(Exception):
    """The file cannot be installed."""


@dataclass(frozen=True)
class SignedFirmware:
    """A SignedUpdateFirmware request: its id and the already verified signing certificate."""

    request_id: int
    signing_certificate: Any  # cryptography x509.Certificate
    signature: str  # base64
    install_at: float | None = None


def verify_firmware(path: Path) -> None:
    """Refuse an empty file or a damaged archive before anything is installed."""
    size = path.stat().st_size
    if size == 0:
        raise FirmwareError(f"{path.name} is empty")
    name = path.name.lower()
    try:
        if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
            with tarfile.open(path) as tar:
                for _ in tar:
                    pass  # reading every member header checks the whole compressed stream
        elif name.endswith((".zip", ".whl")):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                if bad is not None:
                    raise FirmwareError(f"{path.name}: member {bad} is damaged")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise FirmwareError(f"{path.name} is not a valid archive: {err}") from err


class FirmwareManager:
    """Runs UpdateFirmware and GetDiagnostics jobs and reports their status."""

    def __init__(self, agent: Agent, send: StatusSender) -> None:
        self.agent = agent
        self.send = send
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self._firmware_job: asyncio.Task[None] | None = None
        self._diagnostics_job: asyncio.Task[None] | None = None
        self._signed: SignedFirmware | None = None
        cfg = agent.config
        self.download_dir = Path(cfg.firmware.download_dir or Path(cfg.state.directory) / "firmware")
        self.diagnostics_dir = Path(cfg.state.directory) / "diagnostics"

    @property
    def signed(self) -> SignedFirmware | None:
        """The SignedUpdateFirmware request of the current or last job; None for a plain UpdateFirmware."""
        return self._signed

    async def _firmware(self, status: str) -> None:
        if status != self.firmware_status:
            self.firmware_status = status
            LOGGER.info("firmware: %s", status)
            signed = self._signed
            if signed is None:
                await self.send("FirmwareStatusNotification", status)
            elif self.agent.link_session is not None:
                await self.agent.link_session.notify(
                    "SignedFirmwareStatusNotification", {"status": status, "requestId": signed.request_id})

    async def _diagnostics(self, status: str) -> None:
        if status != self.diagnostics_status:
            self.diagnostics_status = status
            LOGGER.info("diagnostics: %s", status)
            await self.send("DiagnosticsStatusNotification", status)

    # ---- firmware -----------------------------------------------------------------------------

    def start_update(self, location: str, retrieve_at: float, retries: int, retry_interval_s: float,
                     signed: SignedFirmware | None = None) -> bool:
        """Begin an update in the background (a newer request replaces a pending one); True if one was replaced."""
        replaced = self._firmware_job is not None and not self._firmware_job.done()
        if self._firmware_job is not None and replaced:
            self._firmware_job.cancel()
        self._signed = signed
        if signed is not None:
            self.firmware_status = "Idle"  # a new request: its first status is always sent
        self._firmware_job = asyncio.create_task(
            self.update(location, retrieve_at, retries, retry_interval_s), name="firmware-update")
        self._firmware_job.add_done_callback(_log_failure)
        return replaced

    async def update(self, location: str, retrieve_at: float, retries: int, retry_interval_s: float) -> None:
        """Download (with retries), verify (the signature too when signed), wait for no session, install."""
        delay = retrieve_at - self.agent.now()
        if delay > 0:
            await asyncio.sleep(delay)
        name = Path(urlsplit(location).path).name or "firmware.bin"
        self.download_dir.mkdir(parents=True, exist_ok=True)
        path = self.download_dir / name
        await self._firmware("Downloading")
        for attempt in range(retries + 1):
            try:
                size = await asyncio.to_thread(download, location, path,
                                               max_bytes=self.agent.config.firmware.max_bytes)
                LOGGER.info("firmware %s downloaded (%d bytes)", name, size)
                break
            except TransferError as err:
                LOGGER.warning("firmware download attempt %d/%d failed: %s", attempt + 1, retries + 1, err)
                if attempt < retries:
                    await asyncio.sleep(retry_interval_s)
        else:
            await self._firmware("DownloadFailed")
            self.firmware_status = "Idle"  # Idle is only reported when triggered
            return
        await self._firmware("Downloaded")
        signed = self._signed
        if signed is not None:
            from agent.security import SecurityError, SecurityManager

            try:
                SecurityManager.for_agent(self.agent).check_firmware(path, signed.signing_certificate,
                                                                      signed.signature)
            except SecurityError as err:
                LOGGER.error("firmware refused: %s", err)
                await self._firmware("InvalidSignature")
                self.firmware_status = "Idle"
                path.unlink(missing_ok=True)
                return
            await self._firmware("SignatureVerified")
            if signed.install_at is not None and signed.install_at > self.agent.now():
                await self._firmware("InstallScheduled")
                await asyncio.sleep(signed.install_at - self.agent.now())
        installer = self.agent.config.firmware.installer
        try:
            verify_firmware(path)
            if not installer:
                raise FirmwareError("no [firmware] installer is configured on this charger")
        except FirmwareError as err:
            LOGGER.error("firmware refused: %s", err)
            await self._firmware("InstallationFailed")
            self.firmware_status = "Idle"  # Idle is only reported when triggered
            return
        await self._wait_until_idle()
        await self._firmware("Installing")
        command = installer.replace("{file}", shlex.quote(str(path)))
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await asyncio.create_subprocess_shell(
                command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            output, _ = await asyncio.wait_for(proc.communicate(), INSTALL_TIMEOUT_S)
            ok = proc.returncode == 0
        except (TimeoutError, OSError) as err:
            output, ok = str(err).encode(), False
        finally:
            if proc is not None and proc.returncode is None:  # timed out or cancelled: no orphan installer
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        LOGGER.log(logging.INFO if ok else logging.ERROR, "installer exited %s: %s",
                   "ok" if ok else "with an error", output.decode(errors="replace")[-2000:])
        if not ok:
            await self._firmware("InstallationFailed")
            self.firmware_status = "Idle"  # Idle is only reported when triggered
            return
        await self._firmware("Installed")
        from agent.security import SecurityEventType, SecurityManager

        SecurityManager.for_agent(self.agent).event(SecurityEventType.FIRMWARE_UPDATED, f"installed {name}")
        await self._wait_until_idle()  # a session may have started while the installer ran
        await self.agent.settle(SETTLE_S)  # let the last session's messages reach the back office
        LOGGER.warning("firmware installed; restarting into the new version")
        future = self.agent.exit_requested
        if future is not None and not future.done():
            future.set_result(0)

    async def _wait_until_idle(self) -> None:
        """Never cut a session: wait until no connector has a transaction."""
        logged = False
        while self.agent.transactions_open():
            if not logged:
                LOGGER.info("firmware waits for the running sessions to end")
                logged = True
            await asyncio.sleep(IDLE_POLL_S)

    # ---- diagnostics ----------------------------------------------------------------------------

    def start_diagnostics(self, location: str, retries: int, retry_interval_s: float,
                          start: float | None, stop: float | None, log_lines: list[str]) -> str:
        """Write the archive now (its name goes into the answer) and upload it in the background."""
        from agent.diag.bundle import write_bundle

        path = write_bundle(self.agent, self.diagnostics_dir, log_lines, start=start, stop=stop)
        if self._diagnostics_job is not None and not self._diagnostics_job.done():
            self._diagnostics_job.cancel()
        self._diagnostics_job = asyncio.create_task(
            self._upload(location, path, retries, retry_interval_s), name="diagnostics-upload")
        self._diagnostics_job.add_done_callback(_log_failure)
        return path.name

    async def _upload(self, location: str, path: Path, retries: int, retry_interval_s: float) -> None:
        await self._diagnostics("Uploading")
        for attempt in range(retries + 1):
            try:
                target = await asyncio.to_thread(upload, location, path)
                LOGGER.info("diagnostics uploaded to %s", redact(target))
                await self._diagnostics("Uploaded")
                break
            except TransferError as err:
                LOGGER.warning("diagnostics upload attempt %d/%d failed: %s", attempt + 1, retries + 1, err)
                if attempt < retries:
                    await asyncio.sleep(retry_interval_s)
        else:
            await self._diagnostics("UploadFailed")
        self.diagnostics_status = "Idle"  # Idle is only reported when triggered
        with contextlib.suppress(OSError):
            for old in sorted(self.diagnostics_dir.glob("diagnostics-*.tar.gz"))[:-3]:
                old.unlink()  # keep the last three archives on the SD card

    def cancel(self) -> None:
        """Stop running jobs (daemon shutdown)."""
        for job in (self._firmware_job, self._diagnostics_job):
            if job is not None:
                job.cancel()


def _log_failure(task: asyncio.Task[None]) -> None:
    """A job that died is logged with its traceback, not lost as 'exception never retrieved'."""
    if not task.cancelled() and task.exception() is not None:
        LOGGER.error("%s failed", task.get_name(), exc_info=task.exception())
