"""What every part of the runtime shares: constants, the per-connector state, the link contract, and the
attributes of the charge point at run time."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.config import AgentConfig
from agent.core import events as ev
from agent.core.chargepoint import ChargePointCore
from agent.hardware import Hardware
from agent.metering import Sample
from agent.ports import ConfigVocabulary, SampleTrigger, TransactionJournal
from agent.settings import Settings, SettingsSource
from agent.store import Store
from drivers.base import MeterReading

if TYPE_CHECKING:
    from agent.runtime.operations import Operations
    from agent.security.manager import SecurityManager

LOGGER = logging.getLogger(__name__)

CLOCK_TOLERANCE_S = 2.0  # smaller differences are jitter, not a wrong clock
CLOCK_CHECK_S = 10.0  # how often an untrusted clock asks the kernel whether NTP has synchronized it
SLOW_POLL_S = 1.0  # a poll slower than this (and than two poll intervals) is logged
TICK_S = 0.25  # timeouts, reservations and schedule boundaries are checked this often
OPEN_RAMP_TIMEOUT_S = 2.0  # DC: wait this long for the current to fall before the contactor opens anyway
OPEN_SAFE_CURRENT_A = 2.0
RAMP_POLL_S = 0.05  # how often the current is read while it ramps down
RAMP_WAIT_MAX_S = 10.0  # the longest any opening waits for the current (bounded whatever the config says)
BOOT_METER_ATTEMPTS = 3
SAMPLE_SLACK_S = 0.1  # a sample due this much after a poll is taken at that poll (polls are not exact)
STOP_HOLD_TIMEOUT_S = 10.0  # the longest a connector is held for its stop record (bounded: never stuck)
STOP_METER_SETTLE_S = 1.0  # meters refresh their registers about once a second after the load drops
# a closing waits this long for the other connectors' lower limits (by then the device-silent rule has
# suspended a connector whose controller does not answer)
ORDER_WAIT_S = 5.0
DEFERRED_MAX = 2000  # records kept in memory while the disk is full (intermediate samples go first)
DEFERRED_RETRIES = 20  # a stop record failing for another reason than a full disk is retried this many polls

ROLES = {"meter": ev.DeviceRole.METER, "dc": ev.DeviceRole.DC_CONTROLLER,
         "contactor": ev.DeviceRole.CONTACTOR, "lock": ev.DeviceRole.LOCK,
         "imd": ev.DeviceRole.INSULATION_MONITOR}  # agent/hardware's Fault.role


class LinkSession(Protocol):
    """What the runtime needs from an open back-office connection (one per OCPP version)."""

    def status_changed(self, status: ev.StatusChanged) -> None: ...

    def outbox_changed(self) -> None: ...

    async def authorize(self, id_tag: str) -> ev.AuthResult: ...

    def send_sample(self, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> None: ...

    async def notify(self, action: str, payload: dict[str, Any]) -> None: ...




def _domain_fault_names(fault: ev.Fault | None) -> dict[str, Any]:
    """The fault's own code, when no protocol names it."""
    return {"error_code": fault.code if fault else None, "vendor_error_code": None}


@dataclass
class ConnectorState:
    """What the runtime last told the core about a connector's hardware."""

    plugged: bool | None = None
    ev_ready: bool | None = None
    isolation_valid: bool | None = None
    fault_codes: dict[str, str] = field(default_factory=dict)  # source -> "code/severity" last fed to the core
    reading: MeterReading | None = None
    soc_pct: float | None = None
    next_sample_mono: float | None = None
    next_end_sample_mono: float | None = None  # the next value kept for the end message (its own interval)
    stop_recorded: asyncio.Future[None] | None = None  # set while a stop waits for its final meter read
    actuator: asyncio.Queue[_Queued | _Barrier] = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class _Queued:
    """A contactor or limit command for a connector's actuator loop.

    `done` is resolved once it was carried out (or failed); a closing waits for `after`, the limits of the
    other connectors commanded in the same decision, so a shared cap's decreases reach the controllers first.
    """

    op: ev.SetContactor | ev.SetLimit
    done: asyncio.Future[None] | None = None
    after: tuple[asyncio.Future[None], ...] = ()


@dataclass
class _Deferred:
    """A store write that found the disk full: kept in memory, in order, until it can be committed."""

    what: str
    write: Callable[[], Any]
    thinnable: bool  # an intermediate sample may be dropped when memory is at its bound; starts/stops never
    failures: int = 0  # attempts that failed with something other than a full disk


@dataclass(frozen=True)
class _Barrier:
    """Resolved by the actuator loop once every command queued before it has been carried out.

    The loop then holds the connector until `release` is resolved (the stop is recorded), so nothing queued
    behind it (the next session's close) runs before the previous meterStop has been read.
    """

    done: asyncio.Future[None]
    release: asyncio.Future[None]


class AgentBase:
    """The state of the charge point at run time that every job of the runtime reads (set by Agent.__init__),
    and the few calls they make on each other."""

    config: AgentConfig
    store: Store
    hw: Hardware
    keys: ConfigVocabulary
    journal: TransactionJournal
    settings_source: SettingsSource
    core: ChargePointCore
    connectors: dict[int, ConnectorState]
    link_session: LinkSession | None
    clock_offset_s: float
    clock_trusted: bool
    clock_source: str
    _wall_minus_mono: float
    _next_clock_check: float
    _next_aligned: float | None
    _next_end_aligned: float | None
    _deferred: collections.deque[_Deferred]
    disk_full_since: float | None
    deferred_dropped: int
    storage_note: str | None
    _unrecorded_starts: set[int]
    _unrecorded_tx: set[int]
    _tasks: list[asyncio.Task[Any]]
    exit_requested: asyncio.Future[int] | None
    operations: Operations

    @property
    def settings(self) -> Settings:
        """The settings in force now."""
        return self.settings_source.current()

    def feed(self, event: ev.Input) -> None:
        """Apply an observation to the core and execute what it decides (Agent)."""
        raise NotImplementedError

    def execute(self, outputs: list[ev.Output]) -> None:
        """Carry out the core's decisions, in order (Agent)."""
        raise NotImplementedError

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        raise NotImplementedError

    def _outbox_changed(self) -> None:
        raise NotImplementedError

    def security_manager(self) -> SecurityManager:
        """The security event recorder (Agent)."""
        raise NotImplementedError
