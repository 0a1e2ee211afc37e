"""OCPP 2.0.1 A01-A05, M03-M06 security and certificates, B09-B10 network profiles, in 2.0.1 messages.

The handlers translate; agent/security/ decides (the certificate store, the charging station's key pair and
CSR, the security profile rules, the security events in 2.0.1's words). Network profiles: SetNetworkProfile
stores a slot's connection data in the store; `NetworkProfiles` is the link's hook that tries the slots in
NetworkConfigurationPriority order, each NetworkProfileConnectionAttempts times (B10), and adopts a higher
security profile once a connection with it succeeds (A05).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from agent.ocpp.v201.handler_base import HandlerBase
from agent.ports import ChangeResult, GuardedConfig
from agent.security.events import CertificateUse, SecurityEventType
from agent.settings import parse_csl

if TYPE_CHECKING:
    from agent.link import LinkSettings
    from agent.security.manager import SecurityManager
    from agent.store import Store

LOGGER = logging.getLogger(__name__)

# InstallCertificateUseEnumType -> where the certificate store keeps it (CSMSRootCertificate is 1.6's
# CentralSystemRootCertificate: the roots the link verifies the back office's TLS certificate with)
INSTALL_USES = {
    "CSMSRootCertificate": CertificateUse.CENTRAL_SYSTEM_ROOT,
    "ManufacturerRootCertificate": CertificateUse.MANUFACTURER_ROOT,
    "V2GRootCertificate": CertificateUse.V2G_ROOT,
    "MORootCertificate": CertificateUse.MO_ROOT,
}
# GetCertificateIdUseEnumType; V2GCertificateChain is an ISO 15118 station certificate this charger never has
ID_USES = ("V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate", "V2GCertificateChain",
           "ManufacturerRootCertificate")
CS_CERTIFICATE = "ChargingStationCertificate"

PRIORITY = "OCPPCommCtrlr.NetworkConfigurationPriority"
ATTEMPTS = "OCPPCommCtrlr.NetworkProfileConnectionAttempts"
SLOT_KEY = "ocpp201net.slot."  # store config rows of SetNetworkProfile (the device model reads "ocpp201." only)
FILE_SLOT = 0  # the config file's connection ([backoffice] url and security_profile): never overwritten
MESSAGE_TIMEOUT_MAX_S = 3600


# ---- B09, B10: network profiles ------------------------------------------------------------------------------


def stored_profile(store: Store, slot: int) -> dict[str, Any] | None:
    """The connection data (camelCase) SetNetworkProfile stored in a slot, if any."""
    raw = store.config_get(f"{SLOT_KEY}{slot}")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def check_profile(slot: int, data: dict[str, Any], current_profile: int, slots: tuple[str, ...]) -> str | None:
    """Why a SetNetworkProfile cannot be stored (a reasonCode), or None when it can."""
    if str(slot) not in slots or slot == FILE_SLOT:
        return "BadSlot"
    if data.get("ocppVersion") != "OCPP20" or data.get("ocppTransport") != "JSON":
        return "UnsupportedVersion"  # this station speaks OCPP 2.0.1 over JSON only
    if data.get("apn") is not None or data.get("vpn") is not None:
        return "UnsupportedNetwork"  # the modem and any VPN are the operating system's, not ours
    profile = data.get("securityProfile")
    if not isinstance(profile, int) or not 1 <= profile <= 3:
        return "BadSecurityProfile"
    if profile < current_profile:
        return "Downgrade"  # A05.FR.07/B09: never below the profile in force
    parts = urlsplit(str(data.get("ocppCsmsUrl", "")))
    if parts.scheme != ("ws" if profile == 1 else "wss") or not parts.hostname:
        return "BadUrl"
    timeout = data.get("messageTimeout")
    if not isinstance(timeout, int) or not 1 <= timeout <= MESSAGE_TIMEOUT_MAX_S:
        return "BadMessageTimeout"
    return None


class NetworkProfiles:
    """The link's hooks under 2.0.1: the slot of each attempt by NetworkConfigurationPriority, the fallback to
    the next slot after NetworkProfileConnectionAttempts failures (B10); TLS and credentials are the security
    manager's."""

    def __init__(self, security: SecurityManager, config: GuardedConfig, store: Store) -> None:
        self.security = security
        self.config = config
        self.store = store
        self.slot = FILE_SLOT  # of the current or last attempt
        self._index = 0
        self._failures = 0
        config.change_guards.append(self.guard_priority)

    def guard_priority(self, key: str, value: int | bool | str) -> str | None:
        """A priority naming a slot SetNetworkProfile never filled is refused."""
        if key != PRIORITY or not isinstance(value, str):
            return None
        for item in parse_csl(value):
            if int(item) != FILE_SLOT and stored_profile(self.store, int(item)) is None:
                LOGGER.warning("NetworkConfigurationPriority %s refused: slot %s holds no profile", value, item)
                return ChangeResult.REJECTED
        return None

    def order(self) -> list[int]:
        """The slots to try, in priority order: filled ones, none below the security profile in force."""
        slots: list[int] = []
        for item in parse_csl(self.config.get_str(PRIORITY, str(FILE_SLOT))):
            slot = int(item)
            if slot == FILE_SLOT:
                slots.append(slot)
                continue
            data = stored_profile(self.store, slot)
            if data is not None and int(data.get("securityProfile", 0)) >= self.security.profile:
                slots.append(slot)
        return slots or [FILE_SLOT]

    def prepare(self, base: LinkSettings) -> LinkSettings:
        """The next attempt's URL and security profile from the slot in turn."""
        order = self.order()
        self.slot = order[self._index % len(order)]
        data = stored_profile(self.store, self.slot) if self.slot != FILE_SLOT else None
        if data is None:
            return self.security.prepare(base)
        return self.security.prepare(dataclasses.replace(base, url=str(data["ocppCsmsUrl"])),
                                     profile=int(data["securityProfile"]))

    def connected(self) -> None:
        """Connected: the slot stays; a higher security profile it names is now the station's (A05)."""
        self.security.connected()
        self._failures = 0
        data = stored_profile(self.store, self.slot) if self.slot != FILE_SLOT else None
        if data is not None:
            self.security.adopt_profile(int(data["securityProfile"]), f"network profile slot {self.slot}")

    def failed(self, err: BaseException) -> None:
        """An attempt failed: after NetworkProfileConnectionAttempts of them, the next slot (B10)."""
        self.security.failed(err)
        self._failures += 1
        if self._failures >= max(1, self.config.get_int(ATTEMPTS, 3)):
            self._failures = 0
            self._index += 1
            order = self.order()
            LOGGER.warning("network profile slot %d failed; trying slot %d", self.slot,
                           order[self._index % len(order)])


class SecurityHandlers(HandlerBase):
    """Certificates (M03-M06, A02-A03), SignCertificate on a trigger, SetNetworkProfile (B09, A05)."""

    @property
    def _security_manager(self) -> SecurityManager:
        return self.agent.security_manager()

    def _count_certificates(self) -> None:
        """SecurityCtrlr.CertificateEntries follows the store after a change (it is not persisted)."""
        with contextlib.suppress(KeyError, ValueError):  # a vocabulary without the variable
            self._security_manager.keys.set_local("SecurityCtrlr.CertificateEntries",
                                                  self._security_manager.certs.count())

    # ---- M05, M03, M04: CA certificates ----------------------------------------------------------------

    @on(Action.install_certificate)
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any) -> Any:
        use = INSTALL_USES.get(certificate_type)
        if use is None:
            return call_result.InstallCertificate(status="Rejected")
        status = self._security_manager.certs.install(use, certificate)
        if status == "Accepted":
            self._security_manager.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                                         f"{certificate_type} installed")
            self._count_certificates()
        return call_result.InstallCertificate(status=status)

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: list[str] | None = None, **_: Any) -> Any:
        chains: list[dict[str, Any]] = []
        certs = self._security_manager.certs
        for kind in certificate_type or ID_USES:
            use = INSTALL_USES.get(kind)
            if use is None:
                continue  # V2GCertificateChain: no ISO 15118 certificate on this charger
            chains.extend({"certificateType": kind, "certificateHashData": h.to_ocpp()} for h in certs.hashes([use]))
        if not chains:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(status="Accepted", certificate_hash_data_chain=chains)

    @on(Action.delete_certificate)
    def on_delete_certificate(self, certificate_hash_data: dict[str, Any], **_: Any) -> Any:
        status = self._security_manager.certs.delete(snake_to_camel_case(certificate_hash_data))
        if status == "Accepted":
            self._security_manager.event(SecurityEventType.RECONFIGURATION_OF_SECURITY_PARAMETERS,
                                         f"certificate {certificate_hash_data.get('serial_number')} deleted")
            self._count_certificates()
        return call_result.DeleteCertificate(status=status)

    # ---- A02, A03: the charging station certificate ------------------------------------------------------

    @on(Action.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, certificate_type: str | None = None, **_: Any) -> Any:
        if certificate_type not in (None, CS_CERTIFICATE):
            return call_result.CertificateSigned(status="Rejected", status_info={"reason_code": "NoISO15118"})
        return call_result.CertificateSigned(status=self._security_manager.certificate_signed(certificate_chain))

    async def send_sign_certificate(self) -> None:
        """A new key pair on the charger and its CSR to the back office (SignCertificate)."""
        try:
            csr = self._security_manager.certificate_signing_request()
        except (OSError, ValueError) as err:
            LOGGER.error("no CSR could be made: %s", err)
            return
        answer = await self.conn.send_plain("SignCertificate", {"csr": csr, "certificateType": CS_CERTIFICATE})
        LOGGER.info("SignCertificate answered %s", answer.get("status") if answer else "nothing")

    # ---- B09, A05: network profiles ---------------------------------------------------------------------

    @on(Action.set_network_profile)
    def on_set_network_profile(self, configuration_slot: int, connection_data: dict[str, Any], **_: Any) -> Any:
        from agent.ocpp.v201.device_model import NETWORK_SLOTS

        data = snake_to_camel_case(connection_data)
        security = self._security_manager
        reason = check_profile(configuration_slot, data, security.profile, NETWORK_SLOTS)
        # the manager's upgrade rule: no profile the charger has no credentials for
        if reason is None and security.guard_change(security.names.security_profile,
                                                    int(data["securityProfile"])) is not None:
            reason = "NoCredentials"
        if reason is not None:
            LOGGER.warning("SetNetworkProfile slot %d refused: %s", configuration_slot, reason)
            return call_result.SetNetworkProfile(status="Rejected", status_info={"reason_code": reason})
        try:
            self.agent.store.config_set(f"{SLOT_KEY}{configuration_slot}", json.dumps(data, sort_keys=True))
        except Exception as err:  # the store's error tree is sqlite's: the answer is Failed, whatever it was
            LOGGER.error("SetNetworkProfile slot %d could not be stored: %s", configuration_slot, err)
            return call_result.SetNetworkProfile(status="Failed")
        LOGGER.info("network profile slot %d stored (%s, security profile %d)", configuration_slot,
                    urlsplit(str(data["ocppCsmsUrl"])).hostname, data["securityProfile"])
        return call_result.SetNetworkProfile(status="Accepted")
