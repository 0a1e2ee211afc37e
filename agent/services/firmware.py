"""Firmware updates and diagnostics uploads requested by the back office (OCPP 1.6 FirmwareManagement and
the Security Whitepaper's signed update; OCPP 2.0.1 L01/L02).

A firmware update never cuts a session: the installer runs only once no transaction is active, and the
restart that follows goes through the daemon's normal exit (systemd starts the new version). Under 2.0.1
every update has a requestId and its statuses are 2.0.1's (DownloadScheduled, InstallScheduled while
sessions run, InstallVerificationFailed for a damaged file), all in FirmwareStatusNotification.
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
from typing import Any
from urllib.parse import urlsplit

from agent.config.schema import FirmwareConfig
from agent.security.events import FirmwareSecurity, SecurityError, SecurityEventType
from agent.services.ports import BundleWriter, Notify
from agent.services.transfer import download, redact, transfer_with_retries, upload

LOGGER = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 900.0
IDLE_POLL_S = 1.0
SETTLE_S = 10.0


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

    def __init__(self, config: FirmwareConfig, state_dir: Path, *, now: Callable[[], float], notify: Notify,
                 transactions_open: Callable[[], bool], settle: Callable[[float], Awaitable[None]],
                 request_exit: Callable[[], None], security: FirmwareSecurity, write_bundle: BundleWriter,
                 protocol: str = "1.6") -> None:
        self.config = config
        self.protocol = protocol  # the OCPP version whose status words and messages the notifications use
        self._now = now
        self._notify = notify
        self._transactions_open = transactions_open
        self._settle = settle
        self._request_exit = request_exit
        self._security = security
        self._write_bundle = write_bundle
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self._firmware_job: asyncio.Task[None] | None = None
        self._diagnostics_job: asyncio.Task[None] | None = None
        self._signed: SignedFirmware | None = None
        self._request_id: int | None = None  # 2.0.1: every update has one, carried by every notification
        self._install_at: float | None = None
        self.download_dir = Path(config.download_dir or state_dir / "firmware")
        self.diagnostics_dir = state_dir / "diagnostics"

    @property
    def signed(self) -> SignedFirmware | None:
        """The SignedUpdateFirmware request of the current or last job; None for a plain UpdateFirmware."""
        return self._signed

    @property
    def request_id(self) -> int | None:
        """The requestId of the current or last update (2.0.1 UpdateFirmware, 1.6 SignedUpdateFirmware)."""
        return self._signed.request_id if self._signed is not None else self._request_id

    @property
    def installing(self) -> bool:
        """The installer is running: a new request must not cancel it (the charger could be left half-updated)."""
        return self.firmware_status == "Installing"

    @property
    def _v201(self) -> bool:
        return self.protocol == "2.0.1"

    async def _firmware(self, status: str) -> None:
        if status != self.firmware_status:
            self.firmware_status = status
            LOGGER.info("firmware: %s", status)
            signed = self._signed
            if self._v201:
                payload: dict[str, Any] = {"status": status}
                if self.request_id is not None:
                    payload["requestId"] = self.request_id
                await self._notify("FirmwareStatusNotification", payload)
            elif signed is None:
                await self._notify("FirmwareStatusNotification", {"status": status})
            else:
                await self._notify("SignedFirmwareStatusNotification",
                                   {"status": status, "requestId": signed.request_id})

    async def _diagnostics(self, status: str) -> None:
        if status != self.diagnostics_status:
            self.diagnostics_status = status
            LOGGER.info("diagnostics: %s", status)
            await self._notify("DiagnosticsStatusNotification", {"status": status})

    # ---- firmware -----------------------------------------------------------------------------

    def start_update(self, location: str, retrieve_at: float, retries: int, retry_interval_s: float,
                     signed: SignedFirmware | None = None, *, request_id: int | None = None,
                     install_at: float | None = None) -> bool:
        """Begin an update in the background (a newer request replaces a pending one); True if one was replaced."""
        replaced = self._firmware_job is not None and not self._firmware_job.done()
        if self._firmware_job is not None and replaced:
            self._firmware_job.cancel()
        self._signed = signed
        self._request_id = request_id
        self._install_at = install_at
        if signed is not None or self._v201:
            self.firmware_status = "Idle"  # a new request: its first status is always sent
        self._firmware_job = asyncio.create_task(
            self.update(location, retrieve_at, retries, retry_interval_s), name="firmware-update")
        self._firmware_job.add_done_callback(_log_failure)
        return replaced

    async def update(self, location: str, retrieve_at: float, retries: int, retry_interval_s: float) -> None:
        """Download (with retries), verify (the signature too when signed), wait for no session, install."""
        delay = retrieve_at - self._now()
        if delay > 0:
            if self._v201:
                await self._firmware("DownloadScheduled")
            await asyncio.sleep(delay)
        name = Path(urlsplit(location).path).name or "firmware.bin"
        self.download_dir.mkdir(parents=True, exist_ok=True)
        path = self.download_dir / name
        await self._firmware("Downloading")
        max_bytes = self.config.max_bytes
        size = await transfer_with_retries("firmware download",
                                           lambda: download(location, path, max_bytes=max_bytes), retries,
                                           retry_interval_s)
        if size is not None:
            LOGGER.info("firmware %s downloaded (%d bytes)", name, size)
        else:
            await self._firmware("DownloadFailed")
            self.firmware_status = "Idle"  # Idle is only reported when triggered
            return
        await self._firmware("Downloaded")
        signed = self._signed
        if signed is not None:
            try:
                self._security.check_firmware(path, signed.signing_certificate, signed.signature)
            except SecurityError as err:
                LOGGER.error("firmware refused: %s", err)
                await self._firmware("InvalidSignature")
                self.firmware_status = "Idle"
                path.unlink(missing_ok=True)
                return
            await self._firmware("SignatureVerified")
        install_at = signed.install_at if signed is not None else self._install_at
        if install_at is not None and install_at > self._now():
            await self._firmware("InstallScheduled")
            await asyncio.sleep(install_at - self._now())
        installer = self.config.installer
        try:
            verify_firmware(path)
        except FirmwareError as err:
            LOGGER.error("firmware refused: %s", err)
            # 2.0.1 has a word for a file that fails its check; 1.6 only InstallationFailed
            await self._firmware("InstallVerificationFailed" if self._v201 else "InstallationFailed")
            self.firmware_status = "Idle"  # Idle is only reported when triggered
            return
        if not installer:
            LOGGER.error("firmware refused: no [firmware] installer is configured on this charger")
            await self._firmware("InstallationFailed")
            self.firmware_status = "Idle"
            return
        if self._v201 and self._transactions_open():
            await self._firmware("InstallScheduled")  # L01: installation waits for the running sessions
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
        self._security.event(SecurityEventType.FIRMWARE_UPDATED, f"installed {name}")
        await self._wait_until_idle()  # a session may have started while the installer ran
        await self._settle(SETTLE_S)  # let the last session's messages reach the back office
        LOGGER.warning("firmware installed; restarting into the new version")
        self._request_exit()

    async def _wait_until_idle(self) -> None:
        """Never cut a session: wait until no connector has a transaction."""
        logged = False
        while self._transactions_open():
            if not logged:
                LOGGER.info("firmware waits for the running sessions to end")
                logged = True
            await asyncio.sleep(IDLE_POLL_S)

    # ---- diagnostics ----------------------------------------------------------------------------

    def start_diagnostics(self, location: str, retries: int, retry_interval_s: float,
                          start: float | None, stop: float | None, log_lines: list[str]) -> str:
        """Write the archive now (its name goes into the answer) and upload it in the background."""
        path = self._write_bundle(self.diagnostics_dir, log_lines, start=start, stop=stop)
        if self._diagnostics_job is not None and not self._diagnostics_job.done():
            self._diagnostics_job.cancel()
        self._diagnostics_job = asyncio.create_task(
            self._upload(location, path, retries, retry_interval_s), name="diagnostics-upload")
        self._diagnostics_job.add_done_callback(_log_failure)
        return path.name

    async def _upload(self, location: str, path: Path, retries: int, retry_interval_s: float) -> None:
        await self._diagnostics("Uploading")
        target = await transfer_with_retries("diagnostics upload", lambda: upload(location, path), retries,
                                             retry_interval_s)
        if target is not None:
            LOGGER.info("diagnostics uploaded to %s", redact(target))
            await self._diagnostics("Uploaded")
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
