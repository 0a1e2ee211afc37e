"""`evse-agent`: the charge point daemon, the composition root.

Wires config, store, drivers, core, services, OCPP link and systemd: every part gets its ports from here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import DEFAULT_CONFIG_PATH as DEFAULT_CONFIG
from agent.config import AgentConfig, ConfigError, OcppVersion, load_config
from agent.diag.bundle import write_bundle
from agent.errors import AgentError
from agent.framelog import FrameLogHandler
from agent.hardware import ConnectorDevices, Hardware
from agent.link import SUBPROTOCOLS, Link, LinkHooks, LinkSettings
from agent.ocpp.v16.journal import V16Journal
from agent.ocpp.v16.keys import OcppKeys
from agent.ocpp.v16.profiles import stored_profiles
from agent.ocpp.v16.statuses import snapshot_fields
from agent.ports import GuardedConfig
from agent.redact import RedactingFilter
from agent.runtime import Agent
from agent.sdnotify import notify, watchdog_interval_s
from agent.security.events import V16_SECURITY_NAMES, V201_SECURITY_NAMES
from agent.security.files import check_local_permissions
from agent.security.manager import SecurityManager
from agent.services.firmware import FirmwareManager
from agent.store import Store, open_or_recover
from drivers.errors import DriverError, HardwareFault
from drivers.registry import resolve
from drivers.transport import BusPool

if TYPE_CHECKING:
    from agent.ocpp.session import Session

LOGGER = logging.getLogger("evse-agent")

# The e-stop callback runs in the pin library's thread and needs the interpreter lock to drop the coil; a busy
# event loop gives the lock up at its next blocking call or after the switch interval (5 ms by default). Only a
# thread waiting for the lock cuts the loop's turn short, so the loop pays nothing while no other thread wants
# it (docs/bench.md, e-stop).
GIL_SWITCH_INTERVAL_S = 0.0005
FRAME_LOG_BYTES = 5_000_000  # OCPP frame log: rotated at 5 MB, 3 files kept (small SD cards)
DC_VOLTAGE_BOUND_V = 1000.0  # CCS DC voltages reach 1000 V: the plausibility bound of a DC connector's meter
EXIT_CONFIG = 2
EXIT_HARDWARE = 3
EXIT_STORE = 4
EXIT_SWITCH_VERSION = -1  # serve() ends to start again in the configured OCPP version (never a process exit code)
DRAIN_POLL_S = 1.0  # how often a version switch looks whether the old version's queue is empty
DRAIN_REFUSALS = 3  # refusals of the old subprotocol in a row before its queued messages become dead letters


def setup_logging(cfg: AgentConfig | None, verbose: bool) -> None:
    """Lines to stderr (journald adds time); OCPP frames to a rotating file in the state directory."""
    cp_id = cfg.charge_point.id if cfg else "-"
    fmt = f"%(asctime)s %(levelname)s {cp_id} %(name)s: %(message)s"
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its timeouts are our faults, logged once
    logging.getLogger("ocpp").setLevel(logging.WARNING)  # frames go to the frame log instead
    logging.getLogger("websockets").setLevel(logging.WARNING)
    frames = logging.getLogger("agent.ocpp.frames")
    frames.propagate = verbose
    if cfg is not None:
        try:
            Path(cfg.state.directory).mkdir(parents=True, exist_ok=True)
            # redacts, bounds and buffers by itself (agent/framelog.py): every frame of a replay passes here
            frames.addHandler(FrameLogHandler(Path(cfg.state.directory) / "ocpp-frames.log",
                                              max_bytes=FRAME_LOG_BYTES, backups=3))
            frames.setLevel(logging.DEBUG)
        except OSError as err:
            LOGGER.warning("no OCPP frame log: %s", err)


def build_hardware(cfg: AgentConfig, pool: BusPool) -> Hardware:
    """Instantiate every driver named in the config."""
    from drivers.gpio import select_pin_factory

    if cfg.gpio.sim_address:
        os.environ["EVSE_SIM_GPIO"] = cfg.gpio.sim_address
    select_pin_factory(cfg.gpio.pin_factory)

    def make(kind: str, cid: int | None, device: Any) -> Any:
        name = f"{kind}{cid}" if cid is not None else kind
        return resolve(device.driver).from_config(name, dict(device.options), pool)

    connectors = {}
    for c in cfg.connectors:
        connectors[c.id] = ConnectorDevices(
            connector_id=c.id,
            kind=str(c.kind),
            meter=make("meter", c.id, c.meter),
            contactor=make("contactor", c.id, c.contactor),
            dc=make("controller", c.id, c.dc_controller) if c.dc_controller else None,
            lock=make("lock", c.id, c.lock) if c.lock else None,
            indicator=make("indicator", c.id, c.indicator) if c.indicator else None,
            imd=make("imd", c.id, c.insulation_monitor) if c.insulation_monitor else None,
            cable_check=c.cable_check,
        )
        # the meter checks every reading against this connector's bounds before publishing it (plausibility);
        # on DC the meter may sit on either side of the converter: voltage bounds allow any CCS voltage
        connectors[c.id].meter.configure_limits(
            nominal_voltage_v=c.voltage_v if c.kind == "ac" else max(c.voltage_v, DC_VOLTAGE_BOUND_V),
            phases=c.phases if c.kind == "ac" else None, max_current_a=c.max_current_a)
        contactor = connectors[c.id].contactor
        # First thing: every contactor open. A killed process leaves GPIO lines as they were and an AC
        # contactor has no heartbeat; the e-stop must also break the coil in hardware (docs/install.md).
        contactor.open()
        if contactor.feedback_closed is None:
            LOGGER.warning("connector %d: the contactor has no feedback pin: a welded contactor cannot be "
                           "detected (wire its mirror contact to feedback_pin)", c.id)
    welded = _welded_at_start(connectors)
    estop = make("estop", None, cfg.estop) if cfg.estop else None
    reader = make("rfid", None, cfg.rfid) if cfg.rfid else None
    return Hardware(welded_at_start=welded, connectors=connectors, estop=estop, reader=reader,
                    silent_suspend_s=cfg.hardware.device_silent_suspend_s,
                    silent_stop_s=cfg.hardware.device_silent_stop_s,
                    meter_replaced_after_s=cfg.hardware.meter_replaced_after_s)


def _welded_at_start(connectors: dict[int, ConnectorDevices]) -> set[int]:
    """Contactors whose mirror contact stays closed with the coil off: their cable is locked before anything
    else runs (a restart must not release a cable that may be live)."""
    with_feedback = [d for d in connectors.values() if d.contactor.feedback_closed is not None]
    if not with_feedback:
        return set()
    time.sleep(max(float(getattr(d.contactor, "settle_s", 0.1)) for d in with_feedback) + 0.05)
    welded = set()
    for devices in with_feedback:
        try:
            devices.contactor.check()  # the same mirror-contact rule as every poll
        except HardwareFault as err:
            if err.code != "contactor_welded":
                continue
            welded.add(devices.connector_id)
            LOGGER.error("connector %d: the contactor is closed with its coil off (welded?): cable locked",
                         devices.connector_id)
            if devices.lock is not None:
                with contextlib.suppress(Exception):
                    devices.lock.lock()
    return welded


def release_hardware(hw: Hardware) -> None:
    """Open contactors and free GPIO pins."""
    for devices in hw.connectors.values():
        with contextlib.suppress(Exception):
            devices.contactor.open()
        for device in (devices.contactor, devices.lock, devices.indicator):
            release = getattr(device, "release", None)
            if release is not None:
                with contextlib.suppress(Exception):
                    release()
    release = getattr(hw.estop, "release", None)
    if release is not None:
        with contextlib.suppress(Exception):
            release()


def build_problem_button(cfg: AgentConfig) -> Any | None:
    """The drivers' "report a problem" push button (`[operations] problem_button_pin`), None without one.

    Not a safety input: a pin that cannot be set up is logged and the charge point runs without the button.
    """
    pin = cfg.operations.problem_button_pin
    if pin is None:
        return None
    from drivers.gpio import GpioPushButton

    try:
        return GpioPushButton("problem_button", pin)
    except DriverError as err:
        LOGGER.error("no problem button: %s", err)
        return None


@dataclass(frozen=True)
class Services:
    """The services built for one agent."""

    security: SecurityManager
    firmware: FirmwareManager


def _build_v16(cfg: AgentConfig, store: Store, hw: Hardware
               ) -> tuple[Agent, GuardedConfig, Callable[[Agent, Any, Callable[[], None]], Session]]:
    """The runtime with the OCPP 1.6 adapter: configuration keys, journal, stored profiles, error codes."""
    from agent.ocpp.v16.connection import V16Connection
    from agent.ocpp.v16.operations import V16OperationsReporter

    keys = OcppKeys(cfg, store)
    agent = Agent(cfg, store, hw, keys, V16Journal(store, keys), keys, profiles=stored_profiles(store))
    keys.meter_public_keys = lambda: agent.meter_public_keys  # MeterPublicKey[n] (signing meters)
    agent.fault_names = snapshot_fields
    agent.operations.reporter = V16OperationsReporter(store, cfg.operations.vendor_id)

    def connect(agent: Agent, ws: Any, proven: Callable[[], None]) -> Session:
        return V16Connection(agent, ws, on_accepted=proven)

    return agent, keys, connect


def _build_v201(cfg: AgentConfig, store: Store, hw: Hardware
                ) -> tuple[Agent, GuardedConfig, Callable[[Agent, Any, Callable[[], None]], Session]]:
    """The runtime with the OCPP 2.0.1 adapter: the device model, the TransactionEvent journal."""
    from agent.ocpp.v201.connection import V201Connection, evse_numbering
    from agent.ocpp.v201.device_model import DeviceModel
    from agent.ocpp.v201.journal import V201Journal
    from agent.ocpp.v201.monitors import MonitorEngine
    from agent.ocpp.v201.operations import wire_operations
    from agent.ocpp.v201.profiles import stored_profiles as v201_stored_profiles
    from agent.ocpp.v201.reservations import reservation_reporter

    model = DeviceModel(cfg, store)
    if cfg.ocpp:
        # the [ocpp] table names OCPP 1.6 keys: under 2.0.1 the same settings are device model variables
        LOGGER.warning("ocpp_version is 2.0.1: the [ocpp] table (%s) is OCPP 1.6 configuration and is not used; "
                       "set the device model variables instead (SetVariables, or evsectl config)",
                       ", ".join(sorted(cfg.ocpp)))
    numbering: dict[int, tuple[int, int]] = {}
    journal = V201Journal(store, model, evse_of=lambda cid: numbering.get(cid, (cid, 1)))
    agent = Agent(cfg, store, hw, model, journal, model, profiles=v201_stored_profiles(store))  # 2.0.1 codec
    numbering.update(evse_numbering(agent.core.evses))
    wire_operations(agent.operations, model)  # the ledger's variables and NotifyEvents
    # N02-N08, G05: monitors and fault notifications, offline too; the task ends with the agent's others
    agent._spawn(MonitorEngine(agent, model, numbering).run(), "monitors")

    def outbox_changed() -> None:
        if agent.link_session is not None:
            agent.link_session.outbox_changed()

    agent.reservation_ended = reservation_reporter(store, outbox_changed)  # H04: an expiry reaches the office

    def keep_interval(seconds: int) -> None:
        model.set_local("OCPPCommCtrlr.HeartbeatInterval", seconds)

    def connect(agent: Agent, ws: Any, proven: Callable[[], None]) -> Session:
        return V201Connection(agent, ws, on_accepted=proven, device_model=model, keep_interval=keep_interval)

    return agent, model, connect


def wire_services(agent: Agent, keys: GuardedConfig) -> Services:
    """Build the services with the ports they take from the runtime and attach them to it (tests wire here too)."""
    cfg = agent.config

    def outbox_changed() -> None:
        if agent.link_session is not None:
            agent.link_session.outbox_changed()

    async def notify(action: str, payload: dict[str, Any]) -> None:
        # sent when online, never queued: a trigger asks for the current status again
        if agent.link_session is not None:
            await agent.link_session.notify(action, payload)

    def bundle(dest_dir: Path, log_lines: list[str], *, start: float | None = None,
               stop: float | None = None) -> Path:
        return write_bundle(agent, dest_dir, log_lines, start=start, stop=stop)

    def request_exit() -> None:
        # read when asked: serve() sets the future after the agent is built, and a test's agent may have none
        future = agent.exit_requested
        if future is not None and not future.done():
            future.set_result(0)

    security = SecurityManager(cfg, agent.store, keys, now=agent.now,
                               clock_trusted=lambda: agent.clock_trusted, outbox_changed=outbox_changed,
                               notify=notify, bundle=bundle, log_lines=lambda: agent.log_lines(),
                               protocol=agent.journal.protocol,
                               names=V201_SECURITY_NAMES if agent.journal.protocol == "2.0.1" else V16_SECURITY_NAMES)
    firmware = FirmwareManager(cfg.firmware, Path(cfg.state.directory), now=agent.now, notify=notify,
                               transactions_open=agent.transactions_open, settle=agent.settle,
                               request_exit=request_exit, security=security, write_bundle=bundle,
                               protocol=agent.journal.protocol)
    agent.security = security
    agent.firmware = firmware
    return Services(security, firmware)


async def watchdog(agent: Agent, poll_interval_s: float, stall_after_s: float | None = None) -> None:
    """WATCHDOG=1 only while the main loop completes passes: a hung driver call stops the pings."""
    stall_after_s = stall_after_s if stall_after_s is not None else max(3 * poll_interval_s, 5.0)
    interval = watchdog_interval_s()
    if interval is None:
        await asyncio.Event().wait()  # no watchdog asked for: idle, so the task set stays uniform
    assert interval is not None
    while True:
        await asyncio.sleep(interval)
        if agent.healthy_at and time.monotonic() - agent.healthy_at < stall_after_s:
            notify("WATCHDOG=1")
        else:
            LOGGER.error("main loop stalled; withholding the watchdog ping")


async def serve(cfg: AgentConfig) -> int:
    """Run the daemon until a signal or a reset."""
    state_dir = Path(cfg.state.directory)
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        # A damaged file is moved aside and salvaged (the charger must keep charging); a full disk or an
        # unwritable directory cannot be fixed from here: refuse with the reason, systemd retries.
        store, recovery = open_or_recover(state_dir / "agent.db", max_bytes=cfg.state.max_queue_bytes)
    except AgentError as err:
        LOGGER.critical("refusing to start: %s", err)
        return EXIT_STORE
    pool = BusPool()
    try:
        hw = build_hardware(cfg, pool)
    except DriverError as err:
        LOGGER.error("hardware: %s", err)
        store.close()
        return EXIT_HARDWARE
    keys: GuardedConfig
    connection: Callable[[Agent, Any, Callable[[], None]], Session]
    configured = str(cfg.backoffice.ocpp_version)
    version = version_to_drain(store, configured) or configured
    if version == OcppVersion.V201.value:
        agent, keys, connection = _build_v201(cfg, store, hw)
    else:
        agent, keys, connection = _build_v16(cfg, store, hw)
    store.set_protocol_in_use(version)
    agent.recovery_note = recovery
    loop = asyncio.get_running_loop()
    exit_future: asyncio.Future[int] = loop.create_future()
    agent.exit_requested = exit_future
    problem_button = build_problem_button(cfg)
    if problem_button is not None:
        agent.operations.bind_button(problem_button, loop)  # presses arrive in the GPIO thread

    def request_exit() -> None:
        if not exit_future.done():
            exit_future.set_result(0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_exit)

    from agent.ocpp.library import inline_schema_validation

    inline_schema_validation()

    async def session(ws: Any) -> None:
        await connection(agent, ws, link.mark_proven).run()

    # The security manager decides each attempt's URL scheme, Basic password and TLS context (profiles 1-3)
    # and falls back to the previous profile when a raised one cannot connect.
    security = wire_services(agent, keys).security
    hooks: LinkHooks = security
    if version == OcppVersion.V201.value:
        from agent.ocpp.v201.security import NetworkProfiles

        hooks = NetworkProfiles(security, keys, store)  # B10: the slots by NetworkConfigurationPriority
    link = Link(
        LinkSettings(
            url=cfg.backoffice.url, charge_point_id=cfg.charge_point.id,
            # WebSocketPingInterval as the keys hold it: a value set over OCPP survives restarts
            ocpp_version=version,
            ping_interval_s=float(keys.get_int("WebSocketPingInterval", round(cfg.backoffice.ping_interval_s))),
            reconnect_min_s=cfg.backoffice.reconnect_min_s, reconnect_max_s=cfg.backoffice.reconnect_max_s,
        ),
        session,
        hooks=hooks,
    )
    security.attach_link(link)
    switch = VersionSwitch(agent, store, version, configured, exit_future) if version != configured else None
    if switch is not None:
        link.on_refused = switch.refused

    def key_changed(key: str) -> None:
        if key == "WebSocketPingInterval":
            link.set_ping_interval(float(keys.get_int("WebSocketPingInterval")))

    keys.listeners.append(key_changed)
    security.startup()
    diag = None
    with contextlib.suppress(ImportError):
        from agent.diag.server import DiagServer

        diag = DiagServer(agent, cfg.diag.socket, cfg.diag.group)
        ring = diag.ring
        agent.log_lines = lambda: list(ring.lines)
    def ready() -> None:
        notify("READY=1\nSTATUS=hardware polled")

    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(agent.run(cfg.hardware.poll_interval_s, on_first_poll=ready), name="agent"),
        asyncio.create_task(link.run(), name="link"),
        asyncio.create_task(watchdog(agent, cfg.hardware.poll_interval_s), name="watchdog"),
    ]
    if diag is not None:
        tasks.append(asyncio.create_task(diag.run(), name="diag"))
    if switch is not None:
        tasks.append(asyncio.create_task(switch.run(), name="version-switch"))
    LOGGER.info("evse-agent %s started for %s", cfg.charge_point.firmware_version, cfg.charge_point.id)
    try:
        waiters: list[asyncio.Future[Any]] = [exit_future, *tasks]
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        for task in done:
            if task is not exit_future and task.exception() is not None:
                LOGGER.error("task %s died", task.get_name() if isinstance(task, asyncio.Task) else task,
                             exc_info=task.exception())
                code = 1
        if exit_future.done():
            code = exit_future.result()
        return code
    finally:
        notify("STOPPING=1")
        if exit_future.done():  # asked to stop (SIGTERM, reset): the next start must not take it for a crash
            agent.shutdown_cleanly()
        await agent.power_down()  # DC: ramp the current down before the contactors open
        await link.stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        agent.firmware.cancel()
        if hw.reader is not None:
            # close the serial port while the loop's executor still runs (pyserial-asyncio closes in it)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hw.reader.close(), 2.0)
        release_hardware(hw)
        if problem_button is not None:
            try:
                problem_button.release()
            except Exception:
                LOGGER.exception("problem button not released")
        await pool.close()
        try:
            agent.operations.close()  # the last minute of the ledger; the next start's gap begins here
        except Exception:
            LOGGER.exception("operations ledger not closed: its last minute is lost")
        store.close()
        LOGGER.info("stopped")


async def serve_until_stopped(cfg: AgentConfig) -> int:
    """serve(), again after a switch of OCPP version; the process exit code."""
    while (code := await serve(cfg)) == EXIT_SWITCH_VERSION:
        LOGGER.info("restarting in OCPP %s", cfg.backoffice.ocpp_version)
    return code


def version_to_drain(store: Store, configured: str) -> str | None:
    """The OCPP version still holding queued messages, or transactions it began, when the config names
    another one (else None): that version must finish them before the new one speaks."""
    others = [p for p, n in store.pending_protocols().items() if n and p != configured and p in SUBPROTOCOLS]
    if others:
        return sorted(others)[0]
    last = store.protocol_in_use()
    if last is not None and last != configured and last in SUBPROTOCOLS and store.unfinished_transactions():
        return last  # a transaction open at a power cut ends in the words it began in
    return None


class VersionSwitch:
    """A charger switched OCPP version with messages still queued: the old version runs until its queue is
    sent (then serve() starts again in the new one), or, when the back office refuses the old subprotocol,
    its messages become dead letters with the reason. Nothing is converted, nothing is dropped."""

    def __init__(self, agent: Agent, store: Store, old: str, new: str, exit_future: asyncio.Future[int]) -> None:
        self.agent = agent
        self.store = store
        self.old = old
        self.new = new
        self.exit_future = exit_future
        self.refusals = 0
        self.refusal: str | None = None
        LOGGER.warning("OCPP version is now %s, %d messages are queued in %s: sending them in %s first",
                       new, store.pending_protocols().get(old, 0), old, old)

    def refused(self, reason: str) -> None:
        """The link could not agree on the old version's subprotocol."""
        self.refusals += 1
        if self.refusals >= DRAIN_REFUSALS:
            self.refusal = reason

    def _idle(self) -> bool:
        return all(self.agent.core.session(cid) is None for cid in self.agent.connectors)

    async def run(self) -> None:
        """Watch the old version's queue; switch when it is empty (or refused) and no transaction runs."""
        while not self.exit_future.done():
            await asyncio.sleep(DRAIN_POLL_S)
            if not self._idle():
                continue  # a transaction begun in the old version ends in it
            if self.refusal is not None:
                moved = self.store.dead_letter_protocol(
                    self.old, f"queued for OCPP {self.old}; the back office does not speak it ({self.refusal})")
                LOGGER.error("the back office refuses OCPP %s: %d queued messages kept as dead letters",
                             self.old, moved)
            elif self.store.pending_protocols().get(self.old):
                continue
            LOGGER.warning("the OCPP %s queue is done: starting OCPP %s", self.old, self.new)
            self.exit_future.set_result(EXIT_SWITCH_VERSION)


def build_parser() -> argparse.ArgumentParser:
    """The evse-agent command line."""
    parser = argparse.ArgumentParser(prog="evse-agent", description="EV charge point agent (OCPP 1.6J).")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--check-config", action="store_true", help="validate the config file and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, OCPP frames included")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of evse-agent."""
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"evse-agent: refusing to start, config is invalid:\n{err}", file=sys.stderr)
        return EXIT_CONFIG
    unsafe = check_local_permissions(args.config, cfg)
    if unsafe:
        print("evse-agent: refusing to start, unsafe file permissions:\n" + "\n".join(unsafe), file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"{args.config}: OK ({len(cfg.connectors)} connectors)")
        return 0
    setup_logging(cfg, args.verbose)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        return asyncio.run(serve_until_stopped(cfg))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
