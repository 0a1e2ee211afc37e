"""OCPP 1.6 Security Whitepaper handlers (mixed into V16ChargePoint).

They translate; agent/security/ decides. Calls to the back office (SignCertificate, the triggered
messages) are sent from `@after` handlers, which the library runs as tasks after the answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from agent.clock import parse_iso
from agent.security.events import CertificateUse, SecurityError

if TYPE_CHECKING:
    from agent.ocpp.session import Session
    from agent.runtime import Agent
    from agent.security.manager import SecurityManager

LOGGER = logging.getLogger(__name__)

EXTENDED_TRIGGERS = ("BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                     "MeterValues", "SignChargePointCertificate", "StatusNotification")
PLAIN_TRIGGERS = ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification")


class SecurityHandlers:
    """Security extension handlers: certificates, logs, signed firmware, extended trigger."""

    if TYPE_CHECKING:
        agent: Agent
        conn: Session

        async def call(self, payload: Any, suppress: bool = True, unique_id: Any = None,
                       skip_schema_validation: bool = False) -> Any: ...

    @property
    def security(self) -> SecurityManager:
        """The agent's security manager."""
        return self.agent.security_manager()

    # ---- certificates ----------------------------------------------------------------------------

    @on(Action.install_certificate)
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any) -> Any:
        status = self.security.certs.install(CertificateUse(certificate_type), certificate)
        if status == "Accepted":
            from agent.security.events import SecurityEventType

            self.security.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                                f"{certificate_type} installed")
        return call_result.InstallCertificate(status=status)

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: str, **_: Any) -> Any:
        hashes = self.security.certs.hashes([CertificateUse(certificate_type)])
        if not hashes:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(
            status="Accepted", certificate_hash_data=[h.to_ocpp() for h in hashes])

    @on(Action.delete_certificate)
    def on_delete_certificate(self, certificate_hash_data: dict[str, Any], **_: Any) -> Any:
        status = self.security.certs.delete(snake_to_camel_case(certificate_hash_data))
        if status == "Accepted":
            from agent.security.events import SecurityEventType

            self.security.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                                f"certificate {certificate_hash_data.get('serial_number')} deleted")
        return call_result.DeleteCertificate(status=status)

    @on(Action.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> Any:
        return call_result.CertificateSigned(status=self.security.certificate_signed(certificate_chain))

    async def send_sign_certificate(self) -> None:
        """Generate a key pair on the charger and send its CSR (SignCertificate)."""
        csr = self.security.certificate_signing_request()
        try:
            result = await self.call(call.SignCertificate(csr=csr), suppress=False)
        except (TimeoutError, OCPPError) as err:
            LOGGER.warning("SignCertificate failed: %r", err)
            return
        LOGGER.info("SignCertificate answered %s", result.status)

    # ---- extended trigger ------------------------------------------------------------------------

    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                    **_: Any) -> Any:
        if requested_message not in EXTENDED_TRIGGERS:
            return call_result.ExtendedTriggerMessage(status="NotImplemented")
        if connector_id is not None and connector_id != 0 and connector_id not in self.agent.connectors:
            return call_result.ExtendedTriggerMessage(status="Rejected")
        return call_result.ExtendedTriggerMessage(status="Accepted")

    @after(Action.extended_trigger_message)
    async def after_extended_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                             **_: Any) -> None:
        if connector_id is not None and connector_id != 0 and connector_id not in self.agent.connectors:
            return
        if requested_message == "SignChargePointCertificate":
            await self.send_sign_certificate()
        elif requested_message == "LogStatusNotification":
            await self.conn.notify("LogStatusNotification", {"status": self.security.log_status})
        elif requested_message == "FirmwareStatusNotification":
            status, signed = self.agent.firmware.firmware_status, self.agent.firmware.signed
            if signed is not None:
                await self.conn.notify("SignedFirmwareStatusNotification",
                                       {"status": status, "requestId": signed.request_id})
            else:
                await self.conn.notify("FirmwareStatusNotification", {"status": status})
        elif requested_message in PLAIN_TRIGGERS:
            await self.conn.triggered(requested_message, connector_id)

    # ---- logs --------------------------------------------------------------------------------------

    @on(Action.get_log)
    def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, retries: int | None = None,
                   retry_interval: int | None = None, **_: Any) -> Any:

        try:
            name = self.security.start_get_log(
                log_type, request_id, log["remote_location"], retries if retries is not None else 3,
                float(retry_interval if retry_interval is not None else 30),
                parse_iso(log.get("oldest_timestamp")), parse_iso(log.get("latest_timestamp")))
        except (OSError, ValueError) as err:
            LOGGER.error("GetLog %s: the log could not be written: %s", log_type, err)
            return call_result.GetLog(status="Rejected")
        return call_result.GetLog(status="Accepted", filename=name)

    # ---- signed firmware ------------------------------------------------------------------------------

    @on(Action.signed_update_firmware)
    def on_signed_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None = None,
                                  retry_interval: int | None = None, **_: Any) -> Any:
        from agent.services.firmware import SignedFirmware

        try:
            cert = self.security.check_signing_certificate(firmware["signing_certificate"])
        except SecurityError as err:
            LOGGER.error("SignedUpdateFirmware %d refused: %s", request_id, err)
            return call_result.SignedUpdateFirmware(status="InvalidCertificate")
        signed = SignedFirmware(request_id, cert, firmware["signature"],
                                parse_iso(firmware.get("install_date_time")))
        replaced = self.agent.firmware.start_update(
            firmware["location"], parse_iso(firmware["retrieve_date_time"]) or self.agent.now(),
            retries if retries is not None else 3, float(retry_interval if retry_interval is not None else 30),
            signed)
        return call_result.SignedUpdateFirmware(status="AcceptedCanceled" if replaced else "Accepted")
