"""OCPP 2.0.1 L01-L02 firmware and N01 logs: UpdateFirmware, GetLog, on the version-neutral agent/services.

The handlers translate: the firmware service (agent/services/firmware.py) downloads, verifies, waits for the
sessions and installs; the security manager checks the signing certificate and uploads the logs. Their
notifications are 2.0.1's (FirmwareStatusNotification and LogStatusNotification with the requestId).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from agent.clock import parse_iso
from agent.ocpp.v201.handler_base import HandlerBase
from agent.security.events import SecurityError
from agent.services.transfer import SCHEMES

if TYPE_CHECKING:
    from agent.security.manager import SecurityManager

LOGGER = logging.getLogger(__name__)

DEFAULT_RETRIES = 3  # the request may leave retries out: the station decides (L01, N01)
DEFAULT_RETRY_INTERVAL_S = 30
MAX_RETRIES = 10  # hostile input: a request cannot keep a transfer going for ever
MAX_RETRY_INTERVAL_S = 3600
UNSIGNED_MAX_PROFILE = 2  # security profile 3 (a PKI with client certificates) accepts signed firmware only
LOG_TYPES = ("DiagnosticsLog", "SecurityLog")


def _bounded(value: int | None, default: int, top: int) -> int:
    """A retries/retryInterval value within 0..top (a missing one is the default)."""
    return default if value is None else max(0, min(int(value), top))


def _transfer_location(url: str) -> bool:
    """A location the transfers can reach: one of their schemes and a host."""
    parts = urlsplit(url)
    return parts.scheme in SCHEMES and bool(parts.hostname)


def _refused(status: str, reason: str) -> dict[str, Any]:
    return {"status": status, "status_info": {"reason_code": reason}}


class ServiceHandlers(HandlerBase):
    """UpdateFirmware (L01 signed, L02 unsigned), GetLog (N01) and their triggered status notifications."""

    @property
    def _security(self) -> SecurityManager:
        return self.agent.security_manager()

    # ---- L01, L02: firmware -------------------------------------------------------------------------

    @on(Action.update_firmware)
    def on_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> Any:
        from agent.services.firmware import SignedFirmware

        service = self.agent.firmware
        if service.installing:
            # L01.FR.24 asks to cancel a pending update; a running installer is not stopped half way
            return call_result.UpdateFirmware(**_refused("Rejected", "InstallInProgress"))
        if not service.config.installer:
            return call_result.UpdateFirmware(**_refused("Rejected", "NoInstaller"))
        location = str(firmware["location"])
        if not _transfer_location(location):
            return call_result.UpdateFirmware(**_refused("Rejected", "BadLocation"))
        try:
            retrieve_at = parse_iso(firmware.get("retrieve_date_time"))
            install_at = parse_iso(firmware.get("install_date_time"))
        except ValueError:
            return call_result.UpdateFirmware(**_refused("Rejected", "BadDateTime"))
        pem, signature = firmware.get("signing_certificate"), firmware.get("signature")
        signed = None
        if pem or signature:
            if not pem:
                return call_result.UpdateFirmware(**_refused("InvalidCertificate", "NoCertificate"))
            try:
                # L01.FR.02/03: checked against the ManufacturerRootCertificates before anything is fetched
                cert = self._security.check_signing_certificate(str(pem))
            except SecurityError as err:
                LOGGER.error("UpdateFirmware %d refused: %s", request_id, err)
                return call_result.UpdateFirmware(status="InvalidCertificate")
            if not signature:
                return call_result.UpdateFirmware(**_refused("Rejected", "NoSignature"))
            signed = SignedFirmware(request_id, cert, str(signature), install_at)
        elif self._security.profile > UNSIGNED_MAX_PROFILE:
            LOGGER.error("UpdateFirmware %d refused: unsigned firmware under security profile %d", request_id,
                         self._security.profile)
            return call_result.UpdateFirmware(**_refused("Rejected", "SignatureRequired"))
        replaced = service.start_update(
            location, retrieve_at or self.agent.now(), _bounded(retries, DEFAULT_RETRIES, MAX_RETRIES),
            float(_bounded(retry_interval, DEFAULT_RETRY_INTERVAL_S, MAX_RETRY_INTERVAL_S)), signed,
            request_id=request_id, install_at=install_at)
        LOGGER.info("UpdateFirmware %d (%s) accepted%s", request_id, "signed" if signed else "unsigned",
                    ", the previous update canceled" if replaced else "")
        return call_result.UpdateFirmware(status="AcceptedCanceled" if replaced else "Accepted")

    def firmware_status_payload(self) -> dict[str, Any]:
        """FirmwareStatusNotification for a trigger: the current status, with its requestId unless Idle."""
        service = self.agent.firmware
        payload: dict[str, Any] = {"status": service.firmware_status}
        if service.firmware_status != "Idle" and service.request_id is not None:
            payload["requestId"] = service.request_id
        return payload

    # ---- N01: logs ------------------------------------------------------------------------------------

    @on(Action.get_log)
    def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, retries: int | None = None,
                   retry_interval: int | None = None, **_: Any) -> Any:
        if log_type not in LOG_TYPES:
            return call_result.GetLog(**_refused("Rejected", "UnknownLogType"))
        location = str(log["remote_location"])
        if not _transfer_location(location):
            return call_result.GetLog(**_refused("Rejected", "BadLocation"))
        try:
            oldest, latest = parse_iso(log.get("oldest_timestamp")), parse_iso(log.get("latest_timestamp"))
        except ValueError:
            return call_result.GetLog(**_refused("Rejected", "BadDateTime"))
        replacing = self._security.log_upload_running  # N01: a new request cancels the running upload
        try:
            name = self._security.start_get_log(
                log_type, request_id, location, _bounded(retries, DEFAULT_RETRIES, MAX_RETRIES),
                float(_bounded(retry_interval, DEFAULT_RETRY_INTERVAL_S, MAX_RETRY_INTERVAL_S)), oldest, latest)
        except (OSError, ValueError) as err:
            LOGGER.error("GetLog %s: the log could not be written: %s", log_type, err)
            return call_result.GetLog(**_refused("Rejected", "WriteFailed"))
        return call_result.GetLog(status="AcceptedCanceled" if replacing else "Accepted", filename=name)

    def log_status_payload(self) -> dict[str, Any]:
        """LogStatusNotification for a trigger: the current status, with its requestId unless Idle."""
        security = self._security
        payload: dict[str, Any] = {"status": security.log_status}
        if security.log_status != "Idle" and security.log_request_id is not None:
            payload["requestId"] = security.log_request_id
        return payload

    async def send_service_status(self, message: str) -> None:
        """A triggered FirmwareStatusNotification or LogStatusNotification (F06)."""
        payload = self.firmware_status_payload() if message == "FirmwareStatusNotification" else \
            self.log_status_payload()
        await self.conn.send_plain(message, payload)
