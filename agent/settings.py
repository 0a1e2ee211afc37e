"""The typed settings the runtime and the core read, whatever protocol version configured them.

Each protocol version maps its own vocabulary onto `Settings` (1.6: configuration keys in
`agent/ocpp/v16/keys.py`; 2.0.1: device model variables). Nothing below `agent/ocpp` reads a setting by its
OCPP name: it reads a field here, and hears about changes by field name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# When a transaction starts and stops, in OCPP 2.0.1's words (TxStartPoint/TxStopPoint): it starts at the first
# point reached and stops when the first stop point is no longer true. PowerPathClosed is Authorized AND
# EVConnected (2.0.1 defines it so), which is what 1.6 fixes for both.
TX_POINTS = ("ParkingBayOccupancy", "EVConnected", "Authorized", "DataSigned", "PowerPathClosed", "EnergyTransfer")
TX_POINTS_16 = ("PowerPathClosed",)


@dataclass(frozen=True, slots=True)
class Settings:
    """One consistent picture of the settings; a change publishes a new instance."""

    # sessions and authorization
    connection_timeout_s: float = 60.0
    stop_transaction_on_invalid_id: bool = True
    max_energy_on_invalid_id_wh: float | None = None  # None: no energy for an id found invalid mid-session
    stop_transaction_on_ev_side_disconnect: bool = True
    unlock_connector_on_ev_side_disconnect: bool = True
    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False
    authorize_remote_tx_requests: bool = False
    master_pass_group_id: str | None = None  # 2.0.1 AuthCtrlr.MasterPassGroupId (1.6 has no master pass)
    local_auth_list_enabled: bool = True
    auth_cache_enabled: bool = True
    minimum_status_duration_s: float = 0.0
    tx_start_point: tuple[str, ...] = TX_POINTS_16  # names from TX_POINTS
    tx_stop_point: tuple[str, ...] = TX_POINTS_16
    # smart charging
    max_stack_level: int = 10
    max_profiles_installed: int = 20
    max_schedule_periods: int = 24
    # metering: intervals in seconds (0 = off) and measurand names (the same names in 1.6 and 2.0.1)
    sample_interval_s: int = 60
    aligned_interval_s: int = 0
    sampled_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    aligned_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    ended_sampled_measurands: tuple[str, ...] = ()  # kept for the transaction's end message
    ended_aligned_measurands: tuple[str, ...] = ()
    started_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)  # in the start message (2.0.1)
    # how often values are kept for the end message: None = at every sample of the kind (1.6 StopTxn*Data),
    # 0 = none between the start and the end (2.0.1 TxEndedInterval)
    ended_sample_interval_s: int | None = None
    ended_aligned_interval_s: int | None = None
    # the back-office connection
    heartbeat_interval_s: float = 300.0
    message_attempts: int = 3  # CALLERRORs before a transaction message becomes a dead letter
    message_retry_interval_s: float = 60.0
    websocket_ping_interval_s: float | None = None  # None: the config file's value
    message_timeout_s: float | None = None  # a call unanswered this long failed; None: the config file's value


def parse_csl(value: str) -> list[str]:
    """Split a comma-separated list (of measurands, of transaction points), dropping empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]


def changed_fields(old: Settings, new: Settings) -> frozenset[str]:
    """The names of the fields whose value differs."""
    return frozenset(f.name for f in dataclasses.fields(Settings) if getattr(old, f.name) != getattr(new, f.name))


LOGGER = logging.getLogger(__name__)
REJECTED = "Rejected"  # the refusal a change guard returns (agent/ports.py ChangeResult.REJECTED)

SettingsListener = Callable[[frozenset[str]], None]  # called with the names of the fields that changed
MeasurandCheck = Callable[[Sequence[str]], list[str]]  # returns the measurands that cannot be provided


class SettingsSource(Protocol):
    """Where the runtime gets its settings: the active protocol version's configuration."""

    def current(self) -> Settings:
        """The settings in force now."""
        ...

    def subscribe(self, listener: SettingsListener) -> None:
        """Call listener with the changed field names after every accepted change."""
        ...

    def add_measurand_check(self, check: MeasurandCheck) -> None:
        """Refuse a measurand list naming what `check` says cannot be provided (and warn about it at start)."""
        ...


class PublishedSettings:
    """The part of a version's configuration that serves the runtime (SettingsSource): the current `Settings`
    rebuilt after every accepted change, listeners told the changed field names, measurand lists guarded.

    A version's class calls `_start_publishing()` once its values are loaded and defines `_to_settings`,
    `_measurand_names` (its names of the measurand lists) and `get_str`; `change_guards` is its change hook.
    """

    _settings: Settings
    _settings_listeners: list[SettingsListener]
    change_guards: list[Callable[[str, int | bool | str], str | None]]
    listeners: list[Callable[[str], None]]
    REFUSED_BY = "a change"  # the request named in the log when a measurand list is refused

    def _to_settings(self) -> Settings:
        raise NotImplementedError

    def _measurand_names(self) -> Sequence[str]:
        raise NotImplementedError

    def get_str(self, key: str, default: str = "") -> str:
        """A string value by the version's name."""
        raise NotImplementedError

    def _start_publishing(self) -> None:
        self._settings = self._to_settings()
        self._settings_listeners = []
        self.listeners.append(self._publish_settings)

    def current(self) -> Settings:
        """The settings in force now (SettingsSource)."""
        return self._settings

    def subscribe(self, listener: SettingsListener) -> None:
        """Hear about changed settings by field name (SettingsSource)."""
        self._settings_listeners.append(listener)

    def add_measurand_check(self, check: MeasurandCheck) -> None:
        """A measurand list naming what no connector can provide is refused; warn about it now (SettingsSource)."""
        names = tuple(self._measurand_names())
        for name in names:
            missing = check(parse_csl(self.get_str(name)))
            if missing:
                LOGGER.warning("%s lists %s, which no connector's devices can provide: left out", name,
                               ", ".join(missing))

        def guard(name: str, value: int | bool | str) -> str | None:
            if name not in names or not isinstance(value, str):
                return None
            missing = check(parse_csl(value))
            if missing:
                LOGGER.info("%s %s refused: %s cannot be measured here", self.REFUSED_BY, name, ", ".join(missing))
                return REJECTED
            return None

        self.change_guards.append(guard)

    def _publish_settings(self, _name: str) -> None:
        old, self._settings = self._settings, self._to_settings()
        changed = changed_fields(old, self._settings)
        for listener in self._settings_listeners if changed else ():
            listener(changed)
