"""The simulated charger hardware: devices on their real wire protocols, an EV per connector, a control API.

`evse-sim hardware --config FILE` runs this. Each connector couples its EV model, its meter (Modbus), its
DC controller (Modbus, DC only), its contactor and lock (GPIO pins mirrored from the agent's process) so the
meter's energy grows with the power that actually flows through a closed contactor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import ChargeProtocol, DcError, Isolation, PlugState
from simulator.devices.dc_controller import SimDcController
from simulator.devices.gpio import GpioPinServer
from simulator.devices.imd import HEALTHY_OHM, SimIsoCha
from simulator.devices.lem_dcbm import SimLemDcbm
from simulator.devices.meter import SimMeter
from simulator.devices.modbus_server import Faults, ModbusDeviceServer, RegisterBank
from simulator.devices.pn532 import SimPn532
from simulator.devices.rfid import SimRfidReader
from simulator.ev import EvModel
from simulator.httpjson import HttpError, JsonHttpServer

LOGGER = logging.getLogger(__name__)

TICK_S = 0.1  # physics step; the agent polls at 1 s, so 10 steps per poll keep the energy smooth
AC_VOLTAGE_V = 230.0
DC_EFFICIENCY = 0.95  # the meter sits on the AC input of the DC charger
DEVICE_FAULTS = ("silent", "slow", "crc_error", "garbage", "exception", "stuck", "backwards")
LEM_DCBM_MODEL = "lem_dcbm400600"  # the signing DC meter speaks HTTP/JSON, not Modbus (its port is HTTP)
# the simulated reader ([rfid] model) -> the agent's driver name for it
RFID_MODELS = {"rdm6300": "serial_rfid", "pn532": "pn532"}


class SimConfigError(ValueError):
    """The simulator's config file is invalid."""


@dataclass
class ModbusEndpointConfig:
    """Where one simulated Modbus device listens."""

    transport: str = "tcp"  # "tcp" or "rtu"
    port: int = 0
    device_id: int = 1
    model: str = ""
    line: str = ""  # RTU: devices naming the same line share one pty, like one RS-485 bus
    map_version: int = 2  # DC controller: the register map version it serves (docs/dc-controller.md)


@dataclass
class SimConnectorConfig:
    """One connector of the simulated charger."""

    id: int
    kind: str
    max_current_a: float
    phases: int
    meter: ModbusEndpointConfig
    dc: ModbusEndpointConfig | None
    contactor_pin: int
    contactor_feedback_pin: int
    lock_pin: int | None
    lock_feedback_pin: int | None
    indicator_pins: tuple[int, int, int] | None
    ev: dict[str, Any] = field(default_factory=dict)
    imd: ModbusEndpointConfig | None = None  # DC: a Bender isoCHA425HV on the output
    imd_options: dict[str, Any] = field(default_factory=dict)  # warning_kohm, fault_kohm, self_test_s
    cable_check: str = "controller"  # what the generated agent config names for the cable check


@dataclass
class SimConfig:
    """The whole simulated charger."""

    charge_point_id: str
    backoffice_url: str
    control_port: int
    gpio_port: int
    rfid: bool
    estop_pin: int | None
    connectors: list[SimConnectorConfig]
    state_directory: str = "/tmp/evse-agent-sim"
    rfid_model: str = "rdm6300"  # or "pn532" (ISO 14443A cards over the PN532's HSU frames)


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise SimConfigError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool:
        raise SimConfigError(f"{where}.{key}: expected {kind}, got a boolean")
    if not isinstance(value, kind):
        raise SimConfigError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    return value


def load_sim_config(path: str | Path) -> SimConfig:
    """Read and check a simulator config file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise SimConfigError(f"{path}: {err}") from err
    cp = data.get("charge_point", {})
    control = data.get("control", {})
    gpio = data.get("gpio", {})
    connectors = []
    for index, raw in enumerate(data.get("connectors", [])):
        where = f"{path}: connectors[{index}]"
        kind = _get(raw, "kind", str, where)
        if kind not in ("ac", "dc"):
            raise SimConfigError(f"{where}.kind: must be 'ac' or 'dc'")
        meter_raw = _get(raw, "meter", dict, where)
        meter = ModbusEndpointConfig(
            transport=_get(meter_raw, "transport", str, where + ".meter", "tcp"),
            port=_get(meter_raw, "port", int, where + ".meter", 0),
            device_id=_get(meter_raw, "device_id", int, where + ".meter", 1),
            line=_get(meter_raw, "line", str, where + ".meter", ""),
            model=_get(meter_raw, "model", str, where + ".meter"),
        )
        dc = None
        # DC needs its charge controller; on AC the same register map serves a pilot (IEC 61851) board.
        if kind == "dc" or "dc_controller" in raw:
            dc_raw = _get(raw, "dc_controller", dict, where)
            dc = ModbusEndpointConfig(
                transport=_get(dc_raw, "transport", str, where + ".dc_controller", "tcp"),
                port=_get(dc_raw, "port", int, where + ".dc_controller", 0),
                device_id=_get(dc_raw, "device_id", int, where + ".dc_controller", 1),
            line=_get(dc_raw, "line", str, where + ".dc_controller", ""),
                model=_get(dc_raw, "protocol", str, where + ".dc_controller", "ccs"),
                map_version=_get(dc_raw, "map_version", int, where + ".dc_controller", 2),
            )
            if dc.map_version not in (1, 2):
                raise SimConfigError(f"{where}.dc_controller.map_version: must be 1 or 2")
        for endpoint in (meter, dc):
            if endpoint is not None and endpoint.transport not in ("tcp", "rtu"):
                raise SimConfigError(f"{where}: transport must be 'tcp' or 'rtu'")
        imd, imd_options, cable_check = _imd_config(raw, where)
        contactor = _get(raw, "contactor", dict, where)
        lock = raw.get("lock")
        indicator = raw.get("indicator")
        connectors.append(
            SimConnectorConfig(
                id=_get(raw, "id", int, where),
                kind=kind,
                max_current_a=float(_get(raw, "max_current_a", (int, float), where, 32.0)),
                phases=_get(raw, "phases", int, where, 3),
                meter=meter,
                dc=dc,
                contactor_pin=_get(contactor, "pin", int, where + ".contactor"),
                contactor_feedback_pin=_get(contactor, "feedback_pin", int, where + ".contactor"),
                lock_pin=_get(lock, "pin", int, where + ".lock") if lock else None,
                lock_feedback_pin=_get(lock, "feedback_pin", int, where + ".lock") if lock else None,
                indicator_pins=(
                    (
                        _get(indicator, "red_pin", int, where + ".indicator"),
                        _get(indicator, "green_pin", int, where + ".indicator"),
                        _get(indicator, "blue_pin", int, where + ".indicator"),
                    )
                    if indicator
                    else None
                ),
                ev=dict(raw.get("ev", {})),
                imd=imd,
                imd_options=imd_options,
                cable_check=cable_check,
            )
        )
    if not connectors:
        raise SimConfigError(f"{path}: at least one [[connectors]] is needed")
    return SimConfig(
        charge_point_id=_get(cp, "id", str, f"{path}: charge_point", "CP-SIM-001"),
        backoffice_url=_get(cp, "backoffice_url", str, f"{path}: charge_point", "ws://127.0.0.1:9000/ocpp"),
        control_port=_get(control, "port", int, f"{path}: control", 0),
        gpio_port=_get(gpio, "port", int, f"{path}: gpio", 0),
        rfid=bool(data.get("rfid", {}).get("enabled", True)),
        estop_pin=data.get("estop", {}).get("pin"),
        connectors=connectors,
        state_directory=_get(data.get("state", {}), "directory", str, f"{path}: state", "/tmp/evse-agent-sim"),
        rfid_model=_rfid_model(_get(data.get("rfid", {}), "model", str, f"{path}: rfid", "rdm6300"), path),
    )


IMD_OPTIONS = ("transport", "port", "device_id", "line", "warning_kohm", "fault_kohm", "self_test_s",
               "cable_check")


def _imd_config(raw: dict[str, Any], where: str) -> tuple[ModbusEndpointConfig | None, dict[str, Any], str]:
    """A connector's [connectors.insulation_monitor] table: where it listens, the agent's thresholds, and
    whether the agent's cable check uses it ("imd", the default with an IMD) or the controller's result."""
    table = raw.get("insulation_monitor")
    if table is None:
        return None, {}, "controller"
    here = where + ".insulation_monitor"
    if not isinstance(table, dict):
        raise SimConfigError(f"{here}: must be a table")
    unknown = set(table) - set(IMD_OPTIONS)
    if unknown:
        raise SimConfigError(f"{here}: unknown keys {sorted(unknown)}; allowed {list(IMD_OPTIONS)}")
    endpoint = ModbusEndpointConfig(
        transport=_get(table, "transport", str, here, "tcp"), port=_get(table, "port", int, here, 0),
        device_id=_get(table, "device_id", int, here, 3), model="bender_isocha425hv",
        line=_get(table, "line", str, here, ""))
    if endpoint.transport not in ("tcp", "rtu"):
        raise SimConfigError(f"{here}: transport must be 'tcp' or 'rtu'")
    cable_check = _get(table, "cable_check", str, here, "imd")
    if cable_check not in ("imd", "controller"):
        raise SimConfigError(f"{here}.cable_check: must be 'imd' or 'controller'")
    options = {key: table[key] for key in ("warning_kohm", "fault_kohm", "self_test_s") if key in table}
    return endpoint, options, cable_check


def _rfid_model(model: str, path: str | Path) -> str:
    if model not in RFID_MODELS:
        raise SimConfigError(f"{path}: rfid.model must be one of {', '.join(RFID_MODELS)}, got {model!r}")
    return model


@dataclass
class SimConnector:
    """A connector's simulated devices and EV, coupled by `step`."""

    config: SimConnectorConfig
    ev: EvModel
    meter: SimMeter | SimLemDcbm
    meter_server: ModbusDeviceServer | None  # None for the LEM DCBM, which serves its own HTTP API
    meter_url: str = ""
    dc: SimDcController | None = None
    dc_server: ModbusDeviceServer | None = None
    dc_url: str = ""
    imd: SimIsoCha | None = None
    imd_server: ModbusDeviceServer | None = None
    imd_url: str = ""
    current_a: float = 0.0
    power_w: float = 0.0


class SimHardware:
    """Starts every simulated device of a SimConfig and runs the physics."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.connectors: dict[int, SimConnector] = {}
        self.gpio = GpioPinServer()
        self.gpio_port = 0
        self.rfid: SimRfidReader | SimPn532 | None = None
        self.rfid_path = ""
        self.control = JsonHttpServer()
        self.control_port = 0
        self._servers: list[ModbusDeviceServer] = []
        self._http_meters: list[SimLemDcbm] = []
        self._task: asyncio.Task[None] | None = None
        self._estop_pressed = False

    async def start(self) -> None:
        """Start every device server, the physics loop and the control API."""
        shared: dict[tuple[str, int | str], tuple[ModbusDeviceServer, dict[int, RegisterBank], str]] = {}
        for cc in self.config.connectors:
            ev = EvModel(kind=cc.kind, **self._ev_options(cc))
            if cc.meter.model == LEM_DCBM_MODEL:
                lem = SimLemDcbm(meter_id=f"LEMSIM{cc.id:06d}")
                conn = SimConnector(cc, ev, lem, None, await lem.start("127.0.0.1", cc.meter.port))
                self._http_meters.append(lem)
            else:
                meter = SimMeter(cc.meter.model, cc.meter.device_id)
                meter_server, meter_url = await self._serve(shared, cc.meter, meter.bank)
                conn = SimConnector(cc, ev, meter, meter_server, meter_url)
            if cc.dc is not None:
                protocol = {"chademo": ChargeProtocol.CHADEMO, "ccs": ChargeProtocol.CCS}.get(
                    cc.dc.model.lower(), ChargeProtocol.NONE)
                ev.protocol = protocol
                conn.dc = SimDcController(cc.dc.device_id, protocol=protocol, map_version=cc.dc.map_version)
                conn.dc_server, conn.dc_url = await self._serve(shared, cc.dc, conn.dc.bank)
            if cc.imd is not None:
                conn.imd = SimIsoCha(cc.imd.device_id, float(cc.imd_options.get("self_test_s", 0.5)))
                conn.imd_server, conn.imd_url = await self._serve(shared, cc.imd, conn.imd.bank)
            self.gpio.mirror(cc.contactor_pin, cc.contactor_feedback_pin)
            if cc.lock_pin is not None and cc.lock_feedback_pin is not None:
                self.gpio.mirror(cc.lock_pin, cc.lock_feedback_pin)
            self.connectors[cc.id] = conn
        if self.config.estop_pin is not None:
            self.gpio.set_input(self.config.estop_pin, False)
        self.gpio_port = await self.gpio.start("127.0.0.1", self.config.gpio_port)
        if self.config.rfid:
            self.rfid = SimPn532() if self.config.rfid_model == "pn532" else SimRfidReader()
            self.rfid_path = await self.rfid.start()
        self._routes()
        self.control_port = await self.control.start("127.0.0.1", self.config.control_port)
        self._task = asyncio.create_task(self._run(), name="sim-physics")

    async def _serve(
        self,
        shared: dict[tuple[str, int | str], tuple[ModbusDeviceServer, dict[int, RegisterBank], str]],
        endpoint: ModbusEndpointConfig,
        bank: RegisterBank,
    ) -> tuple[ModbusDeviceServer, str]:
        """Serve a bank; devices configured on the same port share one server (one RS-485 line)."""
        key = (endpoint.transport, endpoint.line or endpoint.port)
        shareable = bool(endpoint.line if endpoint.transport == "rtu" else endpoint.port)
        if shareable and key in shared:
            server, banks, url = shared[key]
            if endpoint.device_id in banks:
                where = f"{endpoint.transport}:{endpoint.line or endpoint.port}"
                raise SimConfigError(f"two devices with id {endpoint.device_id} on {where}")
            banks[endpoint.device_id] = bank
            return server, url
        banks = {endpoint.device_id: bank}
        server = ModbusDeviceServer(banks, Faults())
        if endpoint.transport == "tcp":
            port = await server.start_tcp("127.0.0.1", endpoint.port)
            url = f"tcp://127.0.0.1:{port}"
        else:
            url = await server.start_rtu()
        self._servers.append(server)
        if shareable:
            shared[key] = (server, banks, url)
        return server, url

    @staticmethod
    def _ev_options(cc: SimConnectorConfig) -> dict[str, Any]:
        allowed = {"battery_kwh", "soc_pct", "target_soc_pct", "max_current_a", "max_voltage_v",
                   "pack_voltage_v", "handshake_s"}
        unknown = set(cc.ev) - allowed
        if unknown:
            raise SimConfigError(f"connector {cc.id}: unknown ev keys {sorted(unknown)}; allowed {sorted(allowed)}")
        options = dict(cc.ev)
        if cc.kind == "ac":
            options.setdefault("max_current_a", min(16.0, cc.max_current_a))
            options["ac_phases"] = cc.phases
        return options

    async def stop(self) -> None:
        """Stop everything."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.control.stop()
        for server in self._servers:
            await server.stop()
        for lem in self._http_meters:
            await lem.stop()
        if self.rfid is not None:
            res = self.rfid.stop()
            if asyncio.iscoroutine(res):
                await res
        self.gpio.stop()
        await self.gpio.wait_closed()

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            try:
                self.step(now - last, now)
            except Exception:  # the physics must keep running for the other connectors
                LOGGER.exception("simulation step failed")
            last = now

    def contactor_closed(self, conn: SimConnector) -> bool:
        """The real position of the contactor: the agent's coil command (welding is in the feedback)."""
        return bool(self.gpio.output_level(conn.config.contactor_pin))

    def step(self, dt_s: float, now: float) -> None:
        """Advance the physics of every connector by dt_s."""
        for conn in self.connectors.values():
            closed = self.contactor_closed(conn) and not self._estop_pressed
            ev = conn.ev
            if conn.dc is not None:
                dc = conn.dc
                dc.plug = PlugState.PLUGGED if ev.plugged else PlugState.UNPLUGGED
                dc.ev_state = ev.pilot_state
                dc.chademo_step = ev.chademo_step
                dc.ev_ready = ev.ready
                dc.soc_pct = ev.soc_pct if ev.plugged else None
                dc.ev_max_v = ev.max_voltage_v if ev.plugged else 0.0
                dc.ev_max_a = ev.max_current_a if ev.plugged else 0.0
                if conn.config.kind == "ac":
                    dc.ev_target_v = AC_VOLTAGE_V if ev.plugged else 0.0
                else:
                    dc.ev_target_v = ev.pack_voltage_v + 0.5 * ev.soc_pct if ev.plugged else 0.0
                dc.ev_target_a = ev.requested_current_a()
                dc.detail = ev.detail()
                dc.set_error(DcError.EV_ERROR, bool(ev.faults))  # the controller relays the EV's fault
                if dc.isolation is not Isolation.FAULT:
                    dc.isolation = Isolation.VALID if ev.plugged else Isolation.INVALID
                dc.step(now)
                current = dc.delivered_current_a() if closed else 0.0
                voltage = dc.ev_target_v if current > 0 else 0.0
                dc.present_a = current
                dc.present_v = voltage
                dc.step(now)
                conn.current_a = current
                if conn.config.kind == "ac":
                    n = max(1, min(3, conn.config.phases))
                    phases = [AC_VOLTAGE_V * current if i < n else 0.0 for i in range(3)]
                    conn.power_w = sum(phases)
                else:
                    conn.power_w = voltage * current
                    phases = [conn.power_w / DC_EFFICIENCY / 3.0] * 3
                if isinstance(conn.meter, SimLemDcbm):
                    conn.meter.set_dc(voltage, current)  # it measures the DC output, not the AC input
                    phases = [conn.power_w, 0.0, 0.0]
                else:
                    conn.meter.current_a = [p / AC_VOLTAGE_V for p in phases]
            else:
                current = min(ev.requested_current_a(), conn.config.max_current_a) if closed else 0.0
                conn.current_a = current
                n = max(1, min(3, conn.config.phases))
                phases = [AC_VOLTAGE_V * current if i < n else 0.0 for i in range(3)]
                conn.power_w = sum(phases)
                if isinstance(conn.meter, SimMeter):
                    conn.meter.current_a = [current if i < n else 0.0 for i in range(3)]
            if conn.imd is not None:
                conn.imd.voltage_v = conn.dc.present_v if conn.dc is not None else 0.0
                conn.imd.step(now)
            ev.step(dt_s, conn.power_w)
            conn.meter.add_energy(phases, dt_s)
            conn.meter.update()

    # ---- control API -------------------------------------------------------------------------------

    def _conn(self, body: dict[str, Any]) -> SimConnector:
        cid = int(body.get("connector", 1))
        if cid not in self.connectors:
            raise HttpError(404, f"no connector {cid}; have {sorted(self.connectors)}")
        return self.connectors[cid]

    def _routes(self) -> None:
        r = self.control.route
        r("GET", "/state", self._h_state)
        r("POST", "/plug", self._h_plug)
        r("POST", "/unplug", self._h_unplug)
        r("POST", "/card", self._h_card)
        r("POST", "/estop", self._h_estop)
        r("POST", "/fault", self._h_fault)
        r("POST", "/ev", self._h_ev)

    async def _h_state(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        return self.state()

    async def _h_plug(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        self._conn(body).ev.plug()
        self.step(0.0, time.monotonic())  # into the device registers now, as a real plug; not at the next tick
        return self.state()

    async def _h_unplug(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        self._conn(body).ev.unplug()
        self.step(0.0, time.monotonic())
        return self.state()

    async def _h_card(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        if self.rfid is None:
            raise HttpError(409, "no RFID reader in this simulator config")
        try:
            if isinstance(self.rfid, SimPn532):
                # repeats: the polls the card stays on the reader for (held briefly, then taken away)
                sak, atqa = body.get("sak"), body.get("atqa")
                self.rfid.present(str(body["uid"]), None if sak is None else int(sak),
                                  None if atqa is None else int(atqa), polls=max(1, int(body.get("repeats", 3))))
            else:
                self.rfid.present(str(body["uid"]), int(body.get("repeats", 3)))
        except ValueError as err:
            raise HttpError(400, str(err)) from None
        return {"presented": body["uid"]}

    async def _h_estop(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        if self.config.estop_pin is None:
            raise HttpError(409, "no e-stop in this simulator config")
        self.press_estop(bool(body.get("pressed", True)))
        return self.state()

    async def _h_ev(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        conn = self._conn(body)
        for key in ("soc_pct", "target_soc_pct", "max_current_a", "pack_voltage_v", "max_voltage_v"):
            if key in body:
                setattr(conn.ev, key, float(body[key]))
        return self.state()

    async def _h_fault(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        self.set_fault(body.get("connector", 1), str(body["device"]), str(body["fault"]),
                       bool(body.get("on", True)), body.get("value"))
        return self.state()

    def press_estop(self, pressed: bool) -> None:
        """Press or release the emergency stop (a normally-closed button: pressed = input low)."""
        assert self.config.estop_pin is not None
        self._estop_pressed = pressed
        self.gpio.set_input(self.config.estop_pin, pressed)

    def set_fault(self, connector: int, device: str, fault: str, on: bool, value: Any = None) -> None:
        """Switch a fault on a connector's device: meter, dc, contactor or lock."""
        conn = self._conn({"connector": connector})
        if device == "meter" and isinstance(conn.meter, SimLemDcbm):
            try:
                conn.meter.set_fault(fault, on, value)
            except ValueError as err:
                raise HttpError(400, str(err)) from None
        elif device == "imd":
            self._imd_fault(conn, fault, on, value)
        elif device in ("meter", "dc"):
            server = conn.meter_server if device == "meter" else conn.dc_server
            if server is None:
                raise HttpError(409, f"connector {connector} has no {device}")
            faults = server.faults
            if fault == "silent":
                faults.silent = on
            elif fault == "slow":
                faults.slow_s = float(value or 2.0) if on else 0.0
            elif fault == "crc_error":
                faults.crc_error = on
            elif fault == "garbage":
                faults.garbage = on
            elif fault == "exception":
                faults.exception_code = int(value or 4) if on else None
            elif fault in ("wrong_function", "wrong_unit", "wrong_transaction", "byte_count", "truncate",
                           "close_mid_frame"):
                setattr(faults, fault, on)
            elif fault == "corrupt" and isinstance(conn.meter, SimMeter):
                # value: {"field": "energy_import", "value": 1e30}; off clears every corrupted field
                if on:
                    conn.meter.corrupt[str(value["field"])] = float(value["value"])
                else:
                    conn.meter.corrupt.clear()
            elif fault in ("stuck", "backwards") and isinstance(conn.meter, SimMeter):
                setattr(conn.meter, fault, on)
            elif fault == "isolation" and conn.dc is not None:
                conn.dc.inject_isolation_fault(on)
            elif fault == "over_temperature" and conn.dc is not None:
                conn.dc.set_error(DcError.OVER_TEMPERATURE, on)
            else:
                raise HttpError(400, f"unknown fault {fault!r} for {device}")
        elif device == "contactor":
            if fault == "welded":
                self.gpio.welded(conn.config.contactor_pin, on)
            elif fault == "stuck_open":
                self.gpio.stuck_open(conn.config.contactor_pin, on)
            else:
                raise HttpError(400, f"unknown contactor fault {fault!r}; known: welded, stuck_open")
        elif device == "ev":
            try:
                conn.ev.inject_fault(fault, on)  # a vehicle fault, by its stable code (simulator/ev.py)
            except ValueError as err:
                raise HttpError(400, str(err)) from None
        elif device == "rfid":
            self._rfid_fault(fault, on, value)
        elif device == "lock":
            if conn.config.lock_pin is None:
                raise HttpError(409, f"connector {connector} has no lock")
            self.gpio.stuck_open(conn.config.lock_pin, on)
        else:
            raise HttpError(400, f"unknown device {device!r}; known: meter, dc, imd, contactor, lock, ev, rfid")

    @staticmethod
    def _imd_fault(conn: SimConnector, fault: str, on: bool, value: Any) -> None:
        """IMD faults: the insulation falling to the warning or fault level (or to `value` ohms), the device's
        own error, a failing self-test; on the line: silent, slow, garbage, CRC errors, exception answers."""
        imd, server = conn.imd, conn.imd_server
        if imd is None or server is None:
            raise HttpError(409, f"connector {conn.config.id} has no insulation monitor")
        if fault == "warning":  # between R2 and R1 (or value ohms)
            imd.resistance_ohm = float(value or (imd.warning_ohm + imd.fault_ohm) / 2) if on else HEALTHY_OHM
        elif fault == "fault":  # below R2
            imd.resistance_ohm = float(value or imd.fault_ohm / 2) if on else HEALTHY_OHM
        elif fault == "device_error":
            imd.device_error = on
        elif fault == "self_test_fail":
            imd.fail_self_test = on
        elif fault in ("silent", "crc_error", "garbage"):
            setattr(server.faults, fault, on)
        elif fault == "slow":
            server.faults.slow_s = float(value or 2.0) if on else 0.0
        elif fault == "exception":
            server.faults.exception_code = int(value or 4) if on else None
        else:
            raise HttpError(400, f"unknown fault {fault!r} for imd; known: warning, fault, device_error, "
                                 "self_test_fail, silent, slow, crc_error, garbage, exception")

    def _rfid_fault(self, fault: str, on: bool, value: Any) -> None:
        """The reader's faults: the PN532's switches (value: for that many answers), the RDM6300's noise."""
        if isinstance(self.rfid, SimPn532):
            try:
                self.rfid.set_fault(fault, on, None if value is None else int(value))
            except ValueError as err:
                raise HttpError(400, str(err)) from None
        elif isinstance(self.rfid, SimRfidReader) and fault == "garbage":
            if on:
                self.rfid.send_garbage(int(value or 50))
        else:
            raise HttpError(409 if self.rfid is None else 400, f"no rfid fault {fault!r} in this simulator config")

    def state(self) -> dict[str, Any]:
        """A JSON-able picture of the simulated hardware."""
        connectors = {}
        for cid, conn in self.connectors.items():
            entry: dict[str, Any] = {
                "kind": conn.config.kind,
                "ev": {"phase": conn.ev.phase.value, "soc_pct": round(conn.ev.soc_pct, 2),
                       "energy_in_wh": round(conn.ev.energy_in_wh, 1), "faults": sorted(conn.ev.faults),
                       "chademo_step": conn.ev.chademo_step, "ccs_phase": conn.ev.ccs_phase.name.lower()},
                "contactor_closed": self.contactor_closed(conn),
                "current_a": round(conn.current_a, 2),
                "power_w": round(conn.power_w, 1),
                "meter": {"url": conn.meter_url, "device_id": conn.config.meter.device_id,
                          "model": conn.config.meter.model,
                          "energy_import_wh": round(conn.meter.energy_import_wh, 3),
                          # what the meter's register says (float32 kWh on an SDM630: about 1 Wh steps)
                          "register_wh": conn.meter.register_energy_wh()},
            }
            if isinstance(conn.meter, SimLemDcbm):  # a signing meter: whether a legal transaction runs on it
                entry["meter"]["legal_running"] = conn.meter.running() is not None
            if conn.config.lock_pin is not None:
                entry["locked"] = bool(self.gpio.output_level(conn.config.lock_pin))
            if conn.dc is not None:
                entry["dc"] = {"url": conn.dc_url, "device_id": conn.config.dc.device_id if conn.config.dc else 1,
                               "allowed": conn.dc.charging_allowed, "limit_a": conn.dc.limit_a,
                               "limit_w": conn.dc.limit_w, "emergency": conn.dc.emergency}
            if conn.imd is not None:
                entry["imd"] = {"url": conn.imd_url, "resistance_ohm": conn.imd.resistance_ohm,
                                "warning_ohm": conn.imd.warning_ohm, "fault_ohm": conn.imd.fault_ohm,
                                "enabled": conn.imd.enabled, "self_tests": conn.imd.self_tests,
                                "device_error": conn.imd.device_error}
            connectors[str(cid)] = entry
        return {
            "connectors": connectors,
            "gpio_port": self.gpio_port,
            "rfid": self.rfid_path,
            "rfid_model": self.config.rfid_model if self.rfid is not None else None,
            "estop_pressed": self._estop_pressed,
            "control_port": self.control_port,
        }
