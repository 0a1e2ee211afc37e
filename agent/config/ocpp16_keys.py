"""The OCPP 1.6 configuration key catalogue: each standard key's type, default, bounds and validation.

The config validator checks the [ocpp] table against it, so it lives in the config package (agent/config
imports nothing from agent/ocpp).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from agent.config.errors import type_name


class KeyType(enum.StrEnum):
    """Value type of an OCPP configuration key; CSL = comma-separated list carried as a string."""

    INT = "int"
    BOOL = "bool"
    STR = "str"
    CSL = "csl"


class CslItems(enum.StrEnum):
    """What the items of a CSL key must be."""

    ANY = "any"
    MEASURAND = "measurand"
    PHASE_ROTATION = "phase_rotation"
    FEATURE_PROFILE = "feature_profile"
    CHARGING_RATE_UNIT = "charging_rate_unit"
    FILE_TRANSFER = "file_transfer"


@dataclass(frozen=True)
class KeySpec:
    """One standard OCPP 1.6 configuration key."""

    type: KeyType
    default: int | bool | str | None
    readonly: bool = False
    reboot_required: bool = False
    min: int | None = None
    max: int | None = None
    secret: bool = False  # write-only: never returned by GetConfiguration, never logged
    derived: bool = False  # its value comes from elsewhere in this file or from the hardware
    profile: str = "Core"
    items: CslItems = CslItems.ANY
    max_items_key: str | None = None  # the readonly key that caps the number of CSL items


# The 1.6 Measurand enum (OCPP 1.6 section 7.31); tests check it against ocpp.v16.enums.Measurand.
MEASURANDS_16 = frozenset(
    {
        "Current.Export",
        "Current.Import",
        "Current.Offered",
        "Energy.Active.Export.Register",
        "Energy.Active.Import.Register",
        "Energy.Reactive.Export.Register",
        "Energy.Reactive.Import.Register",
        "Energy.Active.Export.Interval",
        "Energy.Active.Import.Interval",
        "Energy.Reactive.Export.Interval",
        "Energy.Reactive.Import.Interval",
        "Frequency",
        "Power.Active.Export",
        "Power.Active.Import",
        "Power.Factor",
        "Power.Offered",
        "Power.Reactive.Export",
        "Power.Reactive.Import",
        "RPM",
        "SoC",
        "Temperature",
        "Voltage",
    }
)
PHASES_16 = ("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")
PHASE_ROTATIONS = frozenset({"NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR"})
FEATURE_PROFILES = frozenset(
    {"Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging", "RemoteTrigger"}
)
FILE_TRANSFER_PROTOCOLS = frozenset({"FTP", "FTPS", "HTTP", "HTTPS", "SFTP"})
CHARGING_RATE_UNITS = frozenset({"Current", "Power"})
MAX_CSL_ITEMS = 20
MAX_VALUE_LEN = 500  # ChangeConfiguration.req value is CiString500

_I, _B, _S, _C = KeyType.INT, KeyType.BOOL, KeyType.STR, KeyType.CSL
_MEAS = CslItems.MEASURAND
_DAY_S = 86_400

OCPP16_KEYS: dict[str, KeySpec] = {
    # Core profile (OCPP 1.6 section 9.1)
    "AllowOfflineTxForUnknownId": KeySpec(_B, False),
    "AuthorizationCacheEnabled": KeySpec(_B, True),
    "AuthorizeRemoteTxRequests": KeySpec(_B, False),
    "BlinkRepeat": KeySpec(_I, 3, min=0, max=100),
    "ClockAlignedDataInterval": KeySpec(_I, 900, min=0, max=_DAY_S),
    "ConnectionTimeOut": KeySpec(_I, 60, min=1, max=3600),
    "ConnectorPhaseRotation": KeySpec(
        _C, "0.Unknown", items=CslItems.PHASE_ROTATION, max_items_key="ConnectorPhaseRotationMaxLength"
    ),
    "ConnectorPhaseRotationMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "GetConfigurationMaxKeys": KeySpec(_I, 50, readonly=True),
    "HeartbeatInterval": KeySpec(_I, 300, min=0, max=_DAY_S),
    "LightIntensity": KeySpec(_I, 100, min=0, max=100),
    "LocalAuthorizeOffline": KeySpec(_B, True),
    "LocalPreAuthorize": KeySpec(_B, False),
    "MaxEnergyOnInvalidId": KeySpec(_I, 0, min=0),
    "MeterValuesAlignedData": KeySpec(
        _C, "Energy.Active.Import.Register", items=_MEAS, max_items_key="MeterValuesAlignedDataMaxLength"
    ),
    "MeterValuesAlignedDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "MeterValuesSampledData": KeySpec(
        _C,
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage",
        items=_MEAS,
        max_items_key="MeterValuesSampledDataMaxLength",
    ),
    "MeterValuesSampledDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "MeterValueSampleInterval": KeySpec(_I, 60, min=0, max=_DAY_S),
    "MinimumStatusDuration": KeySpec(_I, 0, min=0, max=3600),
    "NumberOfConnectors": KeySpec(_I, None, readonly=True, derived=True),
    "ResetRetries": KeySpec(_I, 3, min=0, max=100),
    "StopTransactionOnEVSideDisconnect": KeySpec(_B, True),
    "StopTransactionOnInvalidId": KeySpec(_B, True),
    "StopTxnAlignedData": KeySpec(_C, "", items=_MEAS, max_items_key="StopTxnAlignedDataMaxLength"),
    "StopTxnAlignedDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "StopTxnSampledData": KeySpec(
        _C, "Energy.Active.Import.Register", items=_MEAS, max_items_key="StopTxnSampledDataMaxLength"
    ),
    "StopTxnSampledDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "SupportedFeatureProfiles": KeySpec(
        _C,
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
        readonly=True,
        items=CslItems.FEATURE_PROFILE,
    ),
    "SupportedFeatureProfilesMaxLength": KeySpec(_I, 6, readonly=True),
    "TransactionMessageAttempts": KeySpec(_I, 3, min=1, max=100),
    "TransactionMessageRetryInterval": KeySpec(_I, 60, min=0, max=_DAY_S),
    "UnlockConnectorOnEVSideDisconnect": KeySpec(_B, True),
    "WebSocketPingInterval": KeySpec(_I, 10, min=0, max=3600),
    # LocalAuthListManagement profile (9.2)
    "LocalAuthListEnabled": KeySpec(_B, True, profile="LocalAuthListManagement"),
    "LocalAuthListMaxLength": KeySpec(_I, 1000, readonly=True, profile="LocalAuthListManagement"),
    "SendLocalListMaxLength": KeySpec(_I, 100, readonly=True, profile="LocalAuthListManagement"),
    # Reservation profile (9.3)
    "ReserveConnectorZeroSupported": KeySpec(_B, False, readonly=True, profile="Reservation"),
    # SmartCharging profile (9.4)
    "ChargeProfileMaxStackLevel": KeySpec(_I, 10, readonly=True, profile="SmartCharging"),
    "ChargingScheduleAllowedChargingRateUnit": KeySpec(
        _C, "Current,Power", readonly=True, profile="SmartCharging", items=CslItems.CHARGING_RATE_UNIT
    ),
    "ChargingScheduleMaxPeriods": KeySpec(_I, 24, readonly=True, profile="SmartCharging"),
    "ConnectorSwitch3to1PhaseSupported": KeySpec(_B, False, readonly=True, profile="SmartCharging"),
    "MaxChargingProfilesInstalled": KeySpec(_I, 20, readonly=True, profile="SmartCharging"),
    # FirmwareManagement profile (9.5)
    "SupportedFileTransferProtocols": KeySpec(
        _C, "FTP,FTPS,HTTP,HTTPS", readonly=True, profile="FirmwareManagement", items=CslItems.FILE_TRANSFER
    ),
    # Security Whitepaper edition 3
    "AdditionalRootCertificateCheck": KeySpec(_B, False, readonly=True, profile="Security"),
    "AuthorizationKey": KeySpec(_S, None, secret=True, derived=True, profile="Security"),
    "CertificateSignedMaxChainSize": KeySpec(_I, 10000, readonly=True, profile="Security"),
    "CertificateStoreMaxLength": KeySpec(_I, 20, readonly=True, profile="Security"),
    "CpoName": KeySpec(_S, None, profile="Security"),
    # Raising it needs a new connection with new credentials; lowering is refused by the handler.
    "SecurityProfile": KeySpec(_I, 0, min=0, max=3, reboot_required=True, derived=True, profile="Security"),
}


def _csl_item_ok(kind: CslItems, item: str) -> bool:
    """Whether one CSL item is valid for its key."""
    if kind is CslItems.MEASURAND:
        if item in MEASURANDS_16:
            return True
        base, _, phase = item.rpartition(".")
        return phase in PHASES_16 and base in MEASURANDS_16
    if kind is CslItems.PHASE_ROTATION:
        conn, _, rotation = item.partition(".")
        return conn.isdigit() and rotation in PHASE_ROTATIONS
    if kind is CslItems.FEATURE_PROFILE:
        return item in FEATURE_PROFILES
    if kind is CslItems.CHARGING_RATE_UNIT:
        return item in CHARGING_RATE_UNITS
    if kind is CslItems.FILE_TRANSFER:
        return item in FILE_TRANSFER_PROTOCOLS
    return True


def _check_csl(spec: KeySpec, text: str) -> str:
    """Validate a CSL value and return it normalised ("a,b", no blanks)."""
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if any(not item for item in items):
        raise ValueError("empty item in comma-separated list")
    bad = [item for item in items if not _csl_item_ok(spec.items, item)]
    if bad:
        allowed = {
            CslItems.MEASURAND: "OCPP 1.6 measurands, optionally with a phase suffix (.L1, .L2-N, ...)",
            CslItems.PHASE_ROTATION: "connectorId.Rotation with Rotation in "
            + ", ".join(sorted(PHASE_ROTATIONS)),
            CslItems.FEATURE_PROFILE: ", ".join(sorted(FEATURE_PROFILES)),
            CslItems.CHARGING_RATE_UNIT: ", ".join(sorted(CHARGING_RATE_UNITS)),
            CslItems.FILE_TRANSFER: ", ".join(sorted(FILE_TRANSFER_PROTOCOLS)),
        }.get(spec.items, "")
        raise ValueError(f"invalid item(s) {', '.join(bad)}; allowed: {allowed}")
    if spec.max_items_key is not None:
        limit = OCPP16_KEYS[spec.max_items_key].default
        if isinstance(limit, int) and len(items) > limit:
            raise ValueError(f"{len(items)} items, at most {limit} ({spec.max_items_key})")
    return ",".join(items)


def _check_range(spec: KeySpec, value: int) -> int:
    """Check an int against the key's bounds."""
    if spec.min is not None and value < spec.min:
        raise ValueError(f"{value} is below the minimum {spec.min}")
    if spec.max is not None and value > spec.max:
        raise ValueError(f"{value} is above the maximum {spec.max}")
    return value


def _check_authorization_key(value: str) -> str:
    """AuthorizationKey: 16 to 40 printable ASCII characters (Security Whitepaper)."""
    if not 16 <= len(value) <= 40 or not all(33 <= ord(ch) <= 126 for ch in value):
        raise ValueError("AuthorizationKey must be 16 to 40 printable ASCII characters without spaces")
    return value


def validate_key_value(key: str, value_str: str) -> int | bool | str:
    """Validate a ChangeConfiguration value and return it typed.

    Unknown key: KeyError("NotSupported"); readonly key: PermissionError("Rejected"); bad value: ValueError.
    SecurityProfile may not be lowered: the caller knows the current value and refuses that.
    """
    spec = OCPP16_KEYS.get(key)
    if spec is None:
        raise KeyError("NotSupported")
    if spec.readonly:
        raise PermissionError("Rejected")
    if len(value_str) > MAX_VALUE_LEN:
        raise ValueError(f"value longer than {MAX_VALUE_LEN} characters")
    text = value_str.strip()
    if spec.type is KeyType.INT:
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            raise ValueError(f"{value_str!r} is not an integer")
        return _check_range(spec, int(text))
    if spec.type is KeyType.BOOL:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{value_str!r} is not true or false")
        return text.lower() == "true"
    if spec.type is KeyType.CSL:
        return _check_csl(spec, text)
    if key == "AuthorizationKey":
        return _check_authorization_key(value_str)
    return value_str


def check_typed_value(key: str, value: object) -> int | bool | str:
    """Validate an already-typed value (from the [ocpp] table) for a known key; ValueError if wrong."""
    spec = OCPP16_KEYS[key]
    if spec.type is KeyType.INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {type_name(value)}")
        return _check_range(spec, value)
    if spec.type is KeyType.BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {type_name(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    if spec.type is KeyType.CSL:
        return _check_csl(spec, value)
    return value


def format_key_value(value: int | bool | str) -> str:
    """A typed key value as the string OCPP carries (booleans as "true"/"false")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
