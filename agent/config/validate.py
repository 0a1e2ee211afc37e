"""Validation: the parsed TOML document to an AgentConfig, every problem as "FILE:LINE: key.path: reason".

Problems are collected, not raised one by one, and sorted by line, so an installer can fix the whole file in
one pass; `LineIndex` (scanner.py) gives the line of each key path.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.cardid import FORMATS_FIELDS, ID_TAG_MAX_V16, ID_TOKEN_MAX_V201, CardIdFormat
from agent.config.errors import ConfigError, Path_, format_path, type_name
from agent.config.ocpp16_keys import OCPP16_KEYS, check_typed_value
from agent.config.scanner import LineIndex
from agent.config.schema import (
    MAX_QUEUE_BYTES,
    PACKAGE_VERSION,
    AgentConfig,
    BackofficeConfig,
    ChargePointConfig,
    ConnectorConfig,
    ConnectorKind,
    DeviceConfig,
    DiagConfig,
    FirmwareConfig,
    GpioConfig,
    HardwareConfig,
    OcppVersion,
    OperationsConfig,
    StateConfig,
)
from drivers.registry import known_names

LOGGER = logging.getLogger("agent.config")  # the package's name, as before the split into modules

CHARGE_POINT_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,48}$")
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the terminating NUL


def _pin_factories() -> tuple[str, ...]:
    """The gpiozero pin factory names, defined once by the GPIO drivers (imported late: it loads gpiozero)."""
    from drivers.gpio import KNOWN_PIN_FACTORIES

    return KNOWN_PIN_FACTORIES


class _Problems:
    """Collects "FILE:LINE: path: reason" problems so one run reports them all."""

    def __init__(self, source: str, index: LineIndex) -> None:
        self.source = source
        self.index = index
        self.items: list[tuple[int, int, str]] = []

    def add(self, path: Path_, reason: str, line: int | None = None) -> None:
        """Record a problem at the line of path (or the given line)."""
        if line is None:
            line = self.index.line_of(path)
        where = f"{self.source}:{line}" if line is not None else self.source
        label = format_path(path)
        message = f"{where}: {label}: {reason}" if label else f"{where}: {reason}"
        self.items.append((line if line is not None else 0, len(self.items), message))

    def raise_if_any(self) -> None:
        """Raise ConfigError listing every problem by line."""
        if self.items:
            messages = [message for _, _, message in sorted(self.items)]
            raise ConfigError("\n".join(messages), messages)


_MISSING = object()


class _Table:
    """Typed access to one TOML table; remembers the keys read so unknown ones can be refused."""

    def __init__(
        self, data: Mapping[str, Any], path: Path_, problems: _Problems, allowed: tuple[str, ...]
    ) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.allowed = allowed
        self.absent = False
        self.check_unknown()

    def check_unknown(self) -> None:
        """Refuse keys that are not in the schema, suggesting the closest allowed one."""
        for key in self.data:
            if key not in self.allowed:
                close = difflib.get_close_matches(key, self.allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problems.add(
                    (*self.path, key), f"unknown key{hint}; allowed keys: {', '.join(self.allowed)}"
                )

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING and required and not self.absent:
            self.problems.add((*self.path, key), "missing required key")
        return value

    def _bad(self, key: str, expected: str, value: Any) -> None:
        self.problems.add((*self.path, key), f"expected {expected}, got {type_name(value)}")

    def string(
        self, key: str, default: str | None = None, *, required: bool = False, max_len: int = 0
    ) -> str:
        """A string; an empty string is kept as is."""
        value = self._get(key, required)
        if value is _MISSING:
            return default or ""
        if not isinstance(value, str):
            self._bad(key, "a string", value)
            return default or ""
        if max_len and len(value) > max_len:
            self.problems.add((*self.path, key), f"longer than {max_len} characters ({len(value)})")
        if required and not value:
            self.problems.add((*self.path, key), "must not be empty")
        return value

    def opt_string(self, key: str, max_len: int = 0) -> str | None:
        """An optional string; absent or "" gives None."""
        value = self.string(key, None, max_len=max_len)
        return value or None

    def integer(
        self,
        key: str,
        default: int = 0,
        *,
        required: bool = False,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        """An integer (a boolean is not an integer) within [lo, hi]."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self._bad(key, "an integer", value)
            return default
        self._range(key, value, lo, hi)
        return value

    def number(
        self,
        key: str,
        default: float = 0.0,
        *,
        required: bool = False,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
    ) -> float:
        """A float or integer (not a boolean), finite, within bounds; lo_open makes lo exclusive."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            self._bad(key, "a number", value)
            return default
        if not math.isfinite(value):
            self.problems.add((*self.path, key), f"must be a finite number, got {value}")
            return default
        if lo_open and lo is not None and value <= lo:
            self.problems.add((*self.path, key), f"must be > {lo:g}, got {value:g}")
        else:
            self._range(key, value, lo, hi)
        return float(value)

    def _range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = (
                f"{lo:g}..{hi:g}"
                if lo is not None and hi is not None
                else (f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            )
            self.problems.add((*self.path, key), f"must be {bounds}, got {value:g}")

    def table(self, key: str, *, required: bool = False) -> Mapping[str, Any] | None:
        """A sub-table, or None if absent (or wrong)."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self._bad(key, "a table", value)
            return None
        return value


_TOP_KEYS = (
    "charge_point",
    "backoffice",
    "state",
    "diag",
    "gpio",
    "hardware",
    "firmware",
    "operations",
    "ocpp",
    "estop",
    "rfid",
    "connectors",
    "card_id",
)
_CHARGE_POINT_KEYS = ("id", "vendor", "model", "serial_number", "firmware_version")
_BACKOFFICE_KEYS = (
    "url",
    "ocpp_version",
    "security_profile",
    "authorization_key_file",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "ping_interval_s",
    "response_timeout_s",
    "reconnect_min_s",
    "reconnect_max_s",
)
_STATE_KEYS = ("directory", "max_queue_bytes")
_DIAG_KEYS = ("socket", "group")
_GPIO_KEYS = ("pin_factory", "sim_address")
_HARDWARE_KEYS = ("poll_interval_s", "device_silent_suspend_s", "device_silent_stop_s", "meter_replaced_after_s")
_FIRMWARE_KEYS = ("installer", "download_dir", "max_bytes")
_OPERATIONS_KEYS = ("vendor_id", "problem_button_pin", "contactor_service_interval", "connector_service_interval",
                    "lock_service_interval", "station_service_interval")
_CONNECTOR_KEYS = (
    "id",
    "kind",
    "max_current_a",
    "phases",
    "voltage_v",
    "free_vend_id_tag",
    "meter",
    "dc_controller",
    "contactor",
    "lock",
    "indicator",
    "insulation_monitor",
    "cable_check",
)
CABLE_CHECKS = ("controller", "imd")
_DEFAULT_VOLTAGE_V = {ConnectorKind.AC: 230.0, ConnectorKind.DC: 400.0}


class _Validator:
    """Turns the parsed TOML document into an AgentConfig, collecting problems."""

    def __init__(self, doc: dict[str, Any], problems: _Problems) -> None:
        self.doc = doc
        self.p = problems
        self.known_drivers = known_names()
        self.devices: list[tuple[Path_, DeviceConfig]] = []  # every valid device table, for the pin check

    def sub(self, root: _Table, key: str, allowed: tuple[str, ...], *, required: bool = False) -> _Table:
        """The named sub-table of root as a _Table (empty if absent)."""
        data = root.table(key, required=required)
        table = _Table(data or {}, (*root.path, key), self.p, allowed)
        table.absent = data is None  # one "missing table" problem, not one per required key
        return table

    def build(self) -> AgentConfig:
        root = _Table(self.doc, (), self.p, _TOP_KEYS)
        charge_point = self.charge_point(self.sub(root, "charge_point", _CHARGE_POINT_KEYS, required=True))
        backoffice = self.backoffice(self.sub(root, "backoffice", _BACKOFFICE_KEYS, required=True))
        state = self.state(self.sub(root, "state", _STATE_KEYS, required=True))
        diag_t = self.sub(root, "diag", _DIAG_KEYS)
        diag = DiagConfig(
            socket=diag_t.string("socket", DiagConfig.socket), group=diag_t.string("group", DiagConfig.group)
        )
        if not os.path.isabs(diag.socket):
            self.p.add(("diag", "socket"), f"must be an absolute path, got {diag.socket!r}")
        elif len(os.fsencode(diag.socket)) > SUN_PATH_MAX:
            self.p.add(("diag", "socket"), f"a Unix socket path is at most {SUN_PATH_MAX} bytes")
        gpio_t = self.sub(root, "gpio", _GPIO_KEYS)
        pin_factory = gpio_t.opt_string("pin_factory")
        if pin_factory is not None and pin_factory not in _pin_factories():
            self.p.add(
                ("gpio", "pin_factory"),
                f"unknown pin factory {pin_factory!r}; known: "
                f"{', '.join(_pin_factories())} (or leave it out for gpiozero's default)",
            )
        sim_address = gpio_t.opt_string("sim_address")
        if sim_address is not None:
            host, _, port = sim_address.rpartition(":")
            if pin_factory != "evsesim":
                self.p.add(("gpio", "sim_address"), 'only used with pin_factory = "evsesim"')
            elif not host or not port.isdigit() or not 0 < int(port) < 65536:
                self.p.add(("gpio", "sim_address"), f"must be host:port, got {sim_address!r}")
        hw_t = self.sub(root, "hardware", _HARDWARE_KEYS)
        hardware = HardwareConfig(
            poll_interval_s=hw_t.number(
                "poll_interval_s", HardwareConfig.poll_interval_s, lo=0.0, lo_open=True, hi=60.0
            ),
            device_silent_suspend_s=hw_t.number(
                "device_silent_suspend_s", HardwareConfig.device_silent_suspend_s, lo=0.0, hi=60.0
            ),
            device_silent_stop_s=hw_t.number(
                "device_silent_stop_s", HardwareConfig.device_silent_stop_s, lo=0.0, hi=3600.0
            ),
            meter_replaced_after_s=hw_t.number(
                "meter_replaced_after_s", HardwareConfig.meter_replaced_after_s, lo=1.0, hi=86400.0
            ),
        )
        if hardware.meter_replaced_after_s < hardware.device_silent_stop_s + 2 * hardware.poll_interval_s:
            # the transaction must have ended (device silent too long) a poll or two before the baseline moves
            self.p.add(("hardware", "meter_replaced_after_s"),
                       f"must be at least device_silent_stop_s + 2 poll intervals "
                       f"({hardware.device_silent_stop_s + 2 * hardware.poll_interval_s:g})")
        if hardware.device_silent_stop_s < hardware.device_silent_suspend_s:
            self.p.add(("hardware", "device_silent_stop_s"),
                       f"must be at least device_silent_suspend_s ({hardware.device_silent_suspend_s})")
        fw_t = self.sub(root, "firmware", _FIRMWARE_KEYS)
        firmware = FirmwareConfig(
            installer=fw_t.string("installer", FirmwareConfig.installer),
            download_dir=fw_t.string("download_dir", FirmwareConfig.download_dir),
            max_bytes=fw_t.integer("max_bytes", FirmwareConfig.max_bytes, lo=1),
        )
        if firmware.download_dir and not os.path.isabs(firmware.download_dir):
            self.p.add(("firmware", "download_dir"), f"must be an absolute path, got {firmware.download_dir!r}")
        ops_t = self.sub(root, "operations", _OPERATIONS_KEYS)
        button = ops_t.integer("problem_button_pin", -1, lo=0, hi=53)
        operations = OperationsConfig(
            vendor_id=ops_t.string("vendor_id", OperationsConfig.vendor_id, max_len=255) or OperationsConfig.vendor_id,
            problem_button_pin=None if button < 0 else button,
            contactor_service_interval=ops_t.number(
                "contactor_service_interval", OperationsConfig.contactor_service_interval, lo=0.0, hi=1e9),
            connector_service_interval=ops_t.number(
                "connector_service_interval", OperationsConfig.connector_service_interval, lo=0.0, hi=1e9),
            lock_service_interval=ops_t.number(
                "lock_service_interval", OperationsConfig.lock_service_interval, lo=0.0, hi=1e9),
            station_service_interval=ops_t.number(
                "station_service_interval", OperationsConfig.station_service_interval, lo=0.0, hi=1e6),
        )
        ocpp = self.ocpp(root.table("ocpp") or {})
        estop = self.device(root, "estop", ())
        rfid = self.device(root, "rfid", ())
        card_id = self.card_id(self.sub(root, "card_id", FORMATS_FIELDS), backoffice.ocpp_version)
        connectors = self.connectors(root)
        self.check_pins_and_addresses()
        return AgentConfig(
            charge_point=charge_point,
            backoffice=backoffice,
            state=state,
            diag=diag,
            gpio=GpioConfig(pin_factory, sim_address),
            hardware=hardware,
            firmware=firmware,
            operations=operations,
            ocpp=ocpp,
            estop=estop,
            rfid=rfid,
            connectors=connectors,
            card_id=card_id,
        )

    def card_id(self, t: _Table, version: OcppVersion) -> CardIdFormat:
        """[card_id]: the format every reader's UIDs are written in (agent/cardid.py, docs/rfid.md)."""
        default = CardIdFormat()
        values: dict[str, Any] = {name: t.integer(name, default.length) if name == "length"
                                  else t.string(name, getattr(default, name)) for name in FORMATS_FIELDS}
        fmt = CardIdFormat(**values)
        for name, reason in fmt.problems():
            self.p.add(("card_id", name), reason)
        limit = ID_TAG_MAX_V16 if version is OcppVersion.V16 else ID_TOKEN_MAX_V201
        if fmt.length and len(fmt.prefix) + fmt.length > limit:
            self.p.add(("card_id", "length"), f"prefix and length make {len(fmt.prefix) + fmt.length} "
                                              f"characters; OCPP {version.value} carries at most {limit}")
        return fmt

    def charge_point(self, t: _Table) -> ChargePointConfig:
        cp_id = t.string("id", required=True)
        if cp_id and (not CHARGE_POINT_ID_RE.fullmatch(cp_id) or cp_id in (".", "..")):
            t.problems.add(
                ("charge_point", "id"),
                f"{cp_id!r} must be 1 to 48 characters of A-Z a-z 0-9 . _ - "
                "(it is the last path segment of the back-office URL)",
            )
        return ChargePointConfig(
            id=cp_id,
            vendor=t.string("vendor", required=True, max_len=20),
            model=t.string("model", required=True, max_len=20),
            serial_number=t.opt_string("serial_number", max_len=25),
            firmware_version=t.string("firmware_version", PACKAGE_VERSION, max_len=50) or PACKAGE_VERSION,
        )

    def backoffice(self, t: _Table) -> BackofficeConfig:
        url = t.string("url", required=True)
        if url:
            self.check_url(url)
        version_raw = t.string("ocpp_version", OcppVersion.V16.value)
        try:
            version = OcppVersion(version_raw)
        except ValueError:
            self.p.add(("backoffice", "ocpp_version"), f'must be "1.6" or "2.0.1", got {version_raw!r}')
            version = OcppVersion.V16
        profile = t.integer("security_profile", 0, lo=0, hi=3)
        cfg = BackofficeConfig(
            url=url,
            ocpp_version=version,
            security_profile=profile,
            authorization_key_file=t.opt_string("authorization_key_file"),
            ca_file=t.opt_string("ca_file"),
            client_cert_file=t.opt_string("client_cert_file"),
            client_key_file=t.opt_string("client_key_file"),
            ping_interval_s=t.number("ping_interval_s", 10.0, lo=0.0, hi=3600.0),
            response_timeout_s=t.number("response_timeout_s", 30.0, lo=0.0, lo_open=True, hi=600.0),
            reconnect_min_s=t.number("reconnect_min_s", 1.0, lo=0.0, lo_open=True, hi=3600.0),
            reconnect_max_s=t.number("reconnect_max_s", 60.0, lo=0.0, lo_open=True, hi=86400.0),
        )
        if cfg.reconnect_max_s < cfg.reconnect_min_s:
            self.p.add(
                ("backoffice", "reconnect_max_s"), f"must be >= reconnect_min_s ({cfg.reconnect_min_s:g})"
            )
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if profile in (2, 3) and scheme == "ws":
            self.p.add(("backoffice", "url"), f"security profile {profile} needs TLS: use wss://")
        if profile == 1 and scheme == "wss":
            self.p.add(
                ("backoffice", "url"),
                "security profile 1 is Basic auth without TLS (ws://); use security_profile = 2 for wss://",
            )
        if profile in (1, 2) and cfg.authorization_key_file is None:
            self.p.add(
                (
                    "backoffice",
                    "authorization_key_file" if "authorization_key_file" in t.data else "security_profile",
                ),
                f"security profile {profile} needs authorization_key_file (Basic auth password)",
            )
        if profile == 3:
            for key in ("client_cert_file", "client_key_file"):
                if getattr(cfg, key) is None:
                    self.p.add(
                        ("backoffice", key if key in t.data else "security_profile"),
                        f"security profile 3 needs {key} (TLS client certificate)",
                    )
        for key in ("authorization_key_file", "ca_file", "client_cert_file", "client_key_file"):
            value = getattr(cfg, key)
            if value is not None and not os.path.isabs(value):
                self.p.add(("backoffice", key), f"must be an absolute path, got {value!r}")
        return cfg

    def check_url(self, url: str) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            _ = parts.port  # raises ValueError on a bad port
        except ValueError as err:
            self.p.add(("backoffice", "url"), f"invalid URL {url!r}: {err}")
            return
        if parts.scheme.lower() not in ("ws", "wss"):
            self.p.add(("backoffice", "url"), f"scheme must be ws:// or wss://, got {url!r}")
        elif not parts.hostname:
            self.p.add(("backoffice", "url"), f"no host in {url!r}")
        elif parts.query or parts.fragment:
            self.p.add(
                ("backoffice", "url"),
                "must have no ?query or #fragment: the charge point id is appended as the last path segment",
            )
        elif parts.username or parts.password:
            self.p.add(("backoffice", "url"), "must carry no credentials; use authorization_key_file")

    def state(self, t: _Table) -> StateConfig:
        directory = t.string("directory", required=True)
        if directory and not os.path.isabs(directory):
            self.p.add(("state", "directory"), f"must be an absolute path, got {directory!r}")
        return StateConfig(
            directory=directory, max_queue_bytes=t.integer("max_queue_bytes", MAX_QUEUE_BYTES, lo=1)
        )

    def ocpp(self, data: Mapping[str, Any]) -> dict[str, int | bool | str]:
        out: dict[str, int | bool | str] = {}
        settable = tuple(k for k, s in OCPP16_KEYS.items() if not s.readonly and not s.derived)
        for key, value in data.items():
            path = ("ocpp", key)
            spec = OCPP16_KEYS.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, settable, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.p.add(
                    path, f"unknown OCPP 1.6 configuration key{hint}; known keys: {', '.join(settable)}"
                )
                continue
            if spec.readonly:
                self.p.add(path, "readonly key: the charge point reports it, it cannot be configured")
                continue
            if spec.derived:
                source = {
                    "AuthorizationKey": "backoffice.authorization_key_file",
                    "SecurityProfile": "backoffice.security_profile",
                }.get(key, "the hardware")
                self.p.add(path, f"set from {source}, not here")
                continue
            try:
                out[key] = check_typed_value(key, value)
            except ValueError as err:
                self.p.add(path, str(err))
        return out

    def device(
        self, parent: _Table, key: str, prefix: Path_, *, required: bool = False
    ) -> DeviceConfig | None:
        data = parent.table(key, required=required)
        if data is None:
            return None
        path = (*prefix, key)
        driver = data.get("driver", _MISSING)
        if driver is _MISSING:
            self.p.add(
                (*path, "driver"), f"missing required key; known drivers: {', '.join(self.known_drivers)}"
            )
            return None
        if not isinstance(driver, str):
            self.p.add((*path, "driver"), f"expected a string, got {type_name(driver)}")
            return None
        if driver not in self.known_drivers:
            close = difflib.get_close_matches(driver, self.known_drivers, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.p.add(
                (*path, "driver"),
                f"unknown driver {driver!r}{hint}; known drivers: {', '.join(self.known_drivers)}",
            )
            return None
        device = DeviceConfig(driver, dict(data))
        self.devices.append((path, device))
        return device

    def connectors(self, root: _Table) -> tuple[ConnectorConfig, ...]:
        raw = root.data.get("connectors", _MISSING)
        if raw is _MISSING or raw == []:
            self.p.add(("connectors",), "at least one [[connectors]] table is required")
            return ()
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            self.p.add(("connectors",), "must be an array of tables ([[connectors]])")
            return ()
        result: list[ConnectorConfig] = []
        seen: dict[int, int] = {}
        for index, item in enumerate(raw):
            conn = self.connector(_Table(item, ("connectors", index), self.p, _CONNECTOR_KEYS))
            if conn is None:
                continue
            if conn.id in seen:
                self.p.add(
                    ("connectors", index, "id"),
                    f"duplicate connector id {conn.id} (also connectors[{seen[conn.id]}])",
                )
                continue
            seen[conn.id] = index
            result.append(conn)
        expected = range(1, len(raw) + 1)
        for conn_id, index in seen.items():
            if conn_id not in expected:
                missing = sorted(set(expected) - set(seen))
                self.p.add(
                    ("connectors", index, "id"),
                    f"connector ids must be 1..{len(raw)} without gaps; "
                    f"{conn_id} is out of range (missing: {', '.join(map(str, missing))})",
                )
        return tuple(sorted(result, key=lambda c: c.id))

    def connector(self, t: _Table) -> ConnectorConfig | None:
        conn_id = t.integer("id", required=True, lo=1)
        kind_raw = t.string("kind", required=True)
        kind: ConnectorKind | None = None
        if kind_raw:
            try:
                kind = ConnectorKind(kind_raw)
            except ValueError:
                self.p.add((*t.path, "kind"), f'must be "ac" or "dc", got {kind_raw!r}')
        max_current_a = t.number("max_current_a", required=True, lo=0.0, lo_open=True, hi=1000.0)
        phases = t.integer("phases", 3)
        if phases not in (1, 3):
            self.p.add((*t.path, "phases"), f"must be 1 or 3, got {phases}")
        voltage_v = t.number(
            "voltage_v",
            _DEFAULT_VOLTAGE_V.get(kind or ConnectorKind.AC, 230.0),
            lo=0.0,
            lo_open=True,
            hi=1500.0,
        )
        free_vend = t.opt_string("free_vend_id_tag", max_len=20)
        meter = self.device(t, "meter", t.path, required=True)
        contactor = self.device(t, "contactor", t.path, required=True)
        dc_controller = self.device(t, "dc_controller", t.path)
        if kind is ConnectorKind.DC and "dc_controller" not in t.data:
            self.p.add((*t.path, "kind"), "a DC connector needs a [connectors.dc_controller] table")
        if kind is ConnectorKind.AC and "dc_controller" not in t.data:
            # IEC 61851: the control pilot is how an AC charger sees the EV plug in and become ready and how
            # it offers a current; without it no session could ever start (RemoteStart would hang).
            self.p.add((*t.path, "kind"), "an AC connector needs a [connectors.dc_controller] table: its "
                       'IEC 61851 pilot board (driver "modbus_dc", the generic controller register map)')
        lock = self.device(t, "lock", t.path)
        indicator = self.device(t, "indicator", t.path)
        imd = self.device(t, "insulation_monitor", t.path)
        cable_check = t.string("cable_check", "controller")
        if cable_check not in CABLE_CHECKS:
            self.p.add((*t.path, "cable_check"), f'must be "controller" or "imd", got {cable_check!r}')
        elif cable_check == "imd" and "insulation_monitor" not in t.data:
            self.p.add((*t.path, "cable_check"), 'cable_check = "imd" needs a [connectors.insulation_monitor] table')
        if kind is ConnectorKind.AC and "insulation_monitor" in t.data:
            self.p.add((*t.path, "kind"), "an insulation monitor belongs to a DC connector")
        if kind is None or meter is None or contactor is None or conn_id < 1:
            return None
        return ConnectorConfig(
            id=conn_id,
            kind=kind,
            max_current_a=max_current_a,
            meter=meter,
            contactor=contactor,
            phases=phases,
            voltage_v=voltage_v,
            free_vend_id_tag=free_vend,
            dc_controller=dc_controller,
            lock=lock,
            indicator=indicator,
            insulation_monitor=imd,
            cable_check=cable_check if cable_check in CABLE_CHECKS else "controller",
        )

    def check_pins_and_addresses(self) -> None:
        """A GPIO pin, or a (bus URL, device id) pair, belongs to one device; the later one is refused."""
        pins: dict[int | str, Path_] = {}
        addresses: dict[tuple[str, object], Path_] = {}
        in_file_order = sorted(self.devices, key=lambda item: self.p.index.line_of(item[0]) or 0)
        for path, device in in_file_order:
            for key, value in device.options.items():
                if key == "pin" or key.endswith("_pin"):
                    pin = _normalise_pin(value)
                    if pin is None:
                        continue  # the driver refuses a malformed pin with its own message
                    where = (*path, key)
                    if pin in pins:
                        first = pins[pin]
                        self.p.add(
                            where,
                            f"pin {value!r} is already used by {format_path(first)} "
                            f"(line {self.p.index.line_of(first)})",
                        )
                    else:
                        pins[pin] = where
            url, device_id = device.options.get("url"), device.options.get("device_id", 1)
            if isinstance(url, str) and not isinstance(device_id, list | dict):  # the driver refuses those
                address = (url, device_id)
                if address in addresses:
                    first = addresses[address]
                    self.p.add(
                        (*path, "url"),
                        f"{url} device_id {device_id} is already used by "
                        f"{format_path(first)} (line {self.p.index.line_of(first)})",
                    )
                else:
                    addresses[address] = path


def _normalise_pin(value: object) -> int | str | None:
    """BCM number for 17, "17", "GPIO17", "BCM17"; other strings (e.g. "BOARD11") as they are."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"(?i)(?:gpio|bcm)?(\d+)", value.strip())
        return int(match.group(1)) if match else value.strip().upper()
    return None


def parse_config(text: str, source: str = "<config>") -> AgentConfig:
    """Parse and validate config text; raise ConfigError("FILE:LINE: key.path: reason") on any problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if match:
            reason = message[: match.start()].rstrip()
            raise ConfigError(f"{source}:{match.group(1)}:{match.group(2)}: invalid TOML: {reason}") from None
        match = re.search(r"\(at end of document\)$", message)
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        reason = message[: match.start()].rstrip() if match else message
        raise ConfigError(f"{source}:{line}: invalid TOML: {reason} (at end of document)") from None
    index = LineIndex(text)
    problems = _Problems(source, index)
    cfg = _Validator(doc, problems).build()
    problems.raise_if_any()
    return cfg


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the config file at path."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: invalid TOML: not UTF-8 ({err.reason})") from err
    cfg = parse_config(text, str(path))
    LOGGER.info("config %s: charge point %s, %d connector(s)", path, cfg.charge_point.id, len(cfg.connectors))
    return cfg
