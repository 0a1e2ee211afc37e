"""OCPP configuration keys: defaults, then the config file's [ocpp] table, then persisted changes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from agent.config import (
    OCPP16_KEYS,
    AgentConfig,
    check_typed_value,
    format_key_value,
    validate_key_value,
)
from agent.ocpp.signed import public_key_field
from agent.ports import ChangeResult
from agent.settings import TX_POINTS_16, PublishedSettings, Settings, parse_csl
from agent.store import Store

LOGGER = logging.getLogger(__name__)

__all__ = ["ChangeResult", "OcppKeys", "parse_csl"]

KEY_PREFIX = "ocpp16."  # rows in the store's config table
MEASURAND_KEYS = ("MeterValuesSampledData", "MeterValuesAlignedData", "StopTxnSampledData", "StopTxnAlignedData")
# the application note's read-only key per connector with a signing meter: the key its data sets verify with
METER_PUBLIC_KEY = re.compile(r"MeterPublicKey\[([1-9][0-9]{0,2})\]")



class OcppKeys(PublishedSettings):
    """Typed access to the 1.6 configuration keys, persisted in the store."""

    REFUSED_BY = "ChangeConfiguration"

    def __init__(self, config: AgentConfig, store: Store) -> None:
        self._store = store
        self._values: dict[str, int | bool | str] = dict(config.ocpp_initial_values())
        for key, raw in store.config_all().items():
            if not key.startswith(KEY_PREFIX):
                continue
            name = key.removeprefix(KEY_PREFIX)
            spec = OCPP16_KEYS.get(name)
            if spec is None or spec.readonly:
                continue
            try:
                typed = validate_key_value(name, raw)
            except (ValueError, KeyError, PermissionError) as err:
                LOGGER.warning("ignoring persisted value of %s: %s", name, err)
                continue
            if name == "SecurityProfile" and isinstance(typed, int):
                # Raised over OCPP it stays raised; raised in the file (by root) it is raised too.
                typed = max(typed, config.backoffice.security_profile)
            self._values[name] = typed
        self.listeners: list[Callable[[str], None]] = []
        # Set by the security module: may refuse a change (returns a status), and stores secrets.
        # each may refuse a change (returns a ChangeResult) or let it go on (None): security, measurands...
        self.change_guards: list[Callable[[str, int | bool | str], str | None]] = []
        self.secret_setter: Callable[[str, str], str] | None = None
        # connector id -> its signing meter's public key (hex DER), set by the daemon from the runtime
        self.meter_public_keys: Callable[[], dict[int, str]] = dict
        self._start_publishing()

    # ---- the typed settings the runtime reads (agent/settings.py) ---------------------------------

    def _to_settings(self) -> Settings:
        """The 1.6 configuration keys as typed settings."""
        max_energy = self.get_int("MaxEnergyOnInvalidId", 0)
        ping = self.get("WebSocketPingInterval")
        return Settings(
            connection_timeout_s=float(self.get_int("ConnectionTimeOut", 60)),
            stop_transaction_on_invalid_id=self.get_bool("StopTransactionOnInvalidId", True),
            max_energy_on_invalid_id_wh=float(max_energy) if max_energy > 0 else None,
            stop_transaction_on_ev_side_disconnect=self.get_bool("StopTransactionOnEVSideDisconnect", True),
            unlock_connector_on_ev_side_disconnect=self.get_bool("UnlockConnectorOnEVSideDisconnect", True),
            local_pre_authorize=self.get_bool("LocalPreAuthorize", False),
            local_authorize_offline=self.get_bool("LocalAuthorizeOffline", True),
            allow_offline_tx_for_unknown_id=self.get_bool("AllowOfflineTxForUnknownId", False),
            authorize_remote_tx_requests=self.get_bool("AuthorizeRemoteTxRequests", False),
            local_auth_list_enabled=self.get_bool("LocalAuthListEnabled", True),
            auth_cache_enabled=self.get_bool("AuthorizationCacheEnabled", True),
            minimum_status_duration_s=float(self.get_int("MinimumStatusDuration", 0)),
            tx_start_point=TX_POINTS_16,  # 1.6 has no key for them: authorized and plugged, both ways
            tx_stop_point=TX_POINTS_16,
            max_stack_level=self.get_int("ChargeProfileMaxStackLevel", 10),
            max_profiles_installed=self.get_int("MaxChargingProfilesInstalled", 20),
            max_schedule_periods=self.get_int("ChargingScheduleMaxPeriods", 24),
            sample_interval_s=self.get_int("MeterValueSampleInterval", 60),
            aligned_interval_s=self.get_int("ClockAlignedDataInterval", 0),
            sampled_measurands=tuple(parse_csl(self.get_str("MeterValuesSampledData"))),
            aligned_measurands=tuple(parse_csl(self.get_str("MeterValuesAlignedData"))),
            ended_sampled_measurands=tuple(parse_csl(self.get_str("StopTxnSampledData"))),
            ended_aligned_measurands=tuple(parse_csl(self.get_str("StopTxnAlignedData"))),
            heartbeat_interval_s=float(self.get_int("HeartbeatInterval", 300)),
            message_attempts=self.get_int("TransactionMessageAttempts", 3),
            message_retry_interval_s=float(self.get_int("TransactionMessageRetryInterval", 60)),
            websocket_ping_interval_s=float(ping) if isinstance(ping, int) and not isinstance(ping, bool) else None,
        )

    def _measurand_names(self) -> tuple[str, ...]:
        return MEASURAND_KEYS

    def get(self, key: str) -> int | bool | str | None:
        """The typed value, None when unset."""
        return self._values.get(key)

    def get_int(self, key: str, default: int = 0) -> int:
        """An integer key."""
        value = self._values.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    def get_bool(self, key: str, default: bool = False) -> bool:
        """A boolean key."""
        value = self._values.get(key, default)
        return value if isinstance(value, bool) else default

    def get_str(self, key: str, default: str = "") -> str:
        """A string or CSL key."""
        value = self._values.get(key, default)
        return value if isinstance(value, str) else default

    def change(self, key: str, value: str) -> str:
        """ChangeConfiguration: validate, persist, notify; return the 1.6 status."""
        if METER_PUBLIC_KEY.fullmatch(key):
            return ChangeResult.REJECTED  # read-only: the meter's own key
        try:
            typed = validate_key_value(key, value)
        except KeyError:
            return ChangeResult.NOT_SUPPORTED
        except (PermissionError, ValueError) as err:
            LOGGER.info("ChangeConfiguration %s refused: %s", key, err)
            return ChangeResult.REJECTED
        spec = OCPP16_KEYS[key]
        if key == "SecurityProfile" and isinstance(typed, int) and typed < self.get_int("SecurityProfile"):
            return ChangeResult.REJECTED  # the whitepaper forbids lowering the profile over OCPP
        for guard in self.change_guards:
            refused = guard(key, typed)
            if refused is not None:
                return refused
        if spec.secret:
            # Secrets never enter the config table: the security module keeps them in a 0600 file.
            if self.secret_setter is None or not isinstance(typed, str):
                return ChangeResult.REJECTED
            return self.secret_setter(key, typed)
        self._store.config_set(KEY_PREFIX + key, format_key_value(typed))
        self._values[key] = typed
        for listener in self.listeners:
            listener(key)
        if key == "SecurityProfile":
            return ChangeResult.ACCEPTED  # the whitepaper: Accepted, then reconnect with the new profile
        return ChangeResult.REBOOT_REQUIRED if spec.reboot_required else ChangeResult.ACCEPTED

    def set_local(self, key: str, value: int | bool | str) -> None:
        """Set a key from the charger itself (evsectl), with the same validation as the file."""
        typed = check_typed_value(key, value)
        self._store.config_set(KEY_PREFIX + key, format_key_value(typed))
        self._values[key] = typed
        for listener in self.listeners:
            listener(key)

    def entries(self, keys: list[str] | None = None) -> tuple[list[dict[str, object]], list[str]]:
        """GetConfiguration: (configurationKey entries, unknownKey); secrets are never returned."""
        if keys:
            # GetConfigurationMaxKeys: more keys asked than advertised are answered up to the limit
            limit = self.get_int("GetConfigurationMaxKeys", 50)
            if len(keys) > limit:
                LOGGER.warning("GetConfiguration asked for %d keys; answering the first %d (GetConfigurationMaxKeys)",
                               len(keys), limit)
                keys = keys[:limit]
        meter_keys = {f"MeterPublicKey[{cid}]": public_key_field(key)
                      for cid, key in sorted(self.meter_public_keys().items())}
        wanted = keys or sorted(OCPP16_KEYS) + list(meter_keys)
        known: list[dict[str, object]] = []
        unknown: list[str] = []
        for key in wanted:
            if key in meter_keys:
                known.append({"key": key, "readonly": True, "value": meter_keys[key]})
                continue
            spec = OCPP16_KEYS.get(key)
            if spec is None or spec.secret:
                if keys:
                    unknown.append(key)
                continue
            value = self._values.get(key)
            entry: dict[str, object] = {"key": key, "readonly": spec.readonly}
            if value is not None:
                entry["value"] = format_key_value(value)
            known.append(entry)
        return known, unknown
