"""The operations ledger at run time: watches what the core is fed and decides, commits once a minute.

Counters accumulate in memory (agent/core/operations.py) and are committed at most once a minute and at
shutdown, so a power cut loses at most that minute; the next start records the time it was off as a gap
with its cause (how the previous run ended: agent/store run_state, the same record boot recovery reads).
Wear counters raise "maintenance due" once per part; services, replacements and problem reports go to the
ledger's event log and, through the `OperationsReporter` the daemon wires, upstream (durably, via the outbox).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.clock import kernel_boot_id
from agent.core import events as ev
from agent.core.connector import indicator_for
from agent.core.operations import (
    DAY_S,
    DEFAULT_EXCLUDED,
    MAX_GAP_S,
    PARTS,
    STATION,
    OperationsLedger,
    percentile_ms,
    port_figures,
)
from drivers.base import CountsCommunicationErrors, IndicatorState

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.core.chargepoint import ChargePointCore
    from agent.hardware import Hardware
    from agent.settings import Settings
    from agent.store import Store

LOGGER = logging.getLogger(__name__)

CLOCK_STEP_S = 30.0  # wall time that ran this much apart from monotonic time since the last look: the clock was set
COMMIT_INTERVAL_S = 60.0  # a power cut loses at most this much accounting; one small commit a minute
ACK_BLINK_S = 1.5  # the indicator shows "off" this long to acknowledge a problem report
SNAPSHOT_LOG_LINES = 200  # log lines kept with a problem report
SNAPSHOT_LINE_CHARS = 300
NOTE_CHARS = 200
BUTTON_HOLDOFF_S = 10.0  # presses closer than this are one report: a driver pressing again and again floods nothing
MAX_SAMPLE_DELTA_WH = 1_000_000.0  # a register step above this between two samples is not energy delivered

# service intervals (config [operations] overrides): the counter that decides, and its default
DEFAULT_INTERVALS: Mapping[str, tuple[str, float]] = {
    "contactor": ("n.contactor_ops", 100_000.0),  # electrical endurance of a typical AC-1 contactor
    "connector": ("n.plug_cycles", 10_000.0),  # IEC 62196-1 mechanical endurance: 10,000 mating cycles
    "lock": ("n.lock_cycles", 50_000.0),
    "station": ("x.operating", 0.0),  # hours of charging before an inspection; 0 = none
}


class AgentView(Protocol):
    """What the ledger reads of the running agent."""

    config: AgentConfig
    store: Store
    hw: Hardware
    core: ChargePointCore
    clock_trusted: bool
    log_lines: Callable[[], list[str]]

    @property
    def connectors(self) -> Mapping[int, object]: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def link_session(self) -> object | None: ...

    def now(self) -> float: ...

    def execute(self, outputs: list[ev.Output]) -> None: ...

    def _outbox_changed(self) -> None: ...


class PushButton(Protocol):
    """A push button whose press callback runs in the pin library's thread (drivers/gpio.py GpioPushButton)."""

    def on_press(self, callback: Callable[[], None]) -> None: ...


class OperationsReporter(Protocol):
    """Reports the ledger's figures upstream (one per protocol; 1.6: DataTransfer through the outbox)."""

    def report(self, kind: str, payload: dict[str, Any], wall: float, clock_trusted: bool) -> None: ...


def _identity(device: object) -> str | None:
    """A device's identity (serial, firmware) where its driver exposes one."""
    ident = getattr(device, "identity", None)
    value = ident() if callable(ident) else getattr(device, "meter_id", None)
    return str(value)[:100] if value else None


def iso_day(period: int) -> str:
    """The UTC date of a day period."""
    return datetime.fromtimestamp(period, UTC).strftime("%Y-%m-%d")


def aggregate(rows: list[tuple[int, int, str, float]]) -> dict[int, dict[str, float]]:
    """Per connector, the counters of the rows summed (``max.*`` keys: the maximum)."""
    result: dict[int, dict[str, float]] = {}
    for _period, cid, key, value in rows:
        counters = result.setdefault(cid, {})
        if key.startswith("max."):
            counters[key] = max(counters.get(key, value), value)
        else:
            counters[key] = counters.get(key, 0.0) + value
    return result


def figures(rows: list[tuple[int, int, str, float]], connectors: list[int],
            excluded: frozenset[str] = DEFAULT_EXCLUDED) -> dict[str, Any]:
    """The report of a period: per port uptime and utilization, faults by cause, station connectivity."""
    agg = aggregate(rows)
    ports = {}
    for cid in connectors:
        counters = agg.get(cid, {})
        port = port_figures(counters, excluded)
        port["faults"] = {k.removeprefix("n.faults."): v for k, v in counters.items() if k.startswith("n.faults.")}
        port["wear"] = {k: v for k, v in counters.items() if k.startswith("n.") and not k.startswith("n.faults.")}
        ports[cid] = port
    station = agg.get(STATION, {})
    samples = station.get("q.samples", 0.0)
    return {
        "ports": ports,
        "station": {
            "online_min": station.get("t.online", 0.0) / 60.0,
            "offline_min": station.get("t.offline", 0.0) / 60.0,
            "off_min": {k.removeprefix("t.off."): v / 60.0 for k, v in station.items() if k.startswith("t.off.")},
            "reconnects": station.get("n.reconnects", 0.0),
            "rtt_p50_ms": percentile_ms(station, 0.5),
            "rtt_p99_ms": percentile_ms(station, 0.99),
            "queue_mean": station.get("q.sum", 0.0) / samples if samples else None,
            "queue_max": station.get("max.queue"),
            "device_errors": {k.removeprefix("err."): v for k, v in station.items() if k.startswith("err.")},
        },
    }


def daily_usage_payload(day: int, report: dict[str, Any]) -> dict[str, Any]:
    """The daily usage report (docs/operations.md, messageId DailyUsageReport)."""
    def r(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    station = report["station"]
    return {
        "date": iso_day(day),
        "connectors": [
            {"connectorId": cid, "uptimePct": r(p["uptime_pct"], 3), "rawUptimePct": r(p["raw_uptime_pct"], 3),
             "recordedMin": r(p["recorded_min"]), "outageMin": r(p["outage_min"]),
             "excludedMin": r(p["excluded_min"]), "outagesMin": {k: r(v) for k, v in p["outages_min"].items()},
             "sessions": int(p["sessions"]), "energyWh": r(p["energy_wh"]), "chargingMin": r(p["charging_min"]),
             "occupiedMin": r(p["occupied_min"]), "pluggedIdleMin": r(p["plugged_idle_min"]),
             "peakPowerW": r(p["peak_power_w"]), "meanPowerW": r(p["mean_power_w"]),
             "faults": {k: int(v) for k, v in p["faults"].items()}}
            for cid, p in sorted(report["ports"].items())
        ],
        "station": {"onlineMin": r(station["online_min"]), "offlineMin": r(station["offline_min"]),
                    "reconnects": int(station["reconnects"]), "rttP50Ms": station["rtt_p50_ms"],
                    "rttP99Ms": station["rtt_p99_ms"], "queueMax": station["queue_max"]},
    }


class Operations:
    """The operations ledger of one running agent."""

    def __init__(self, agent: AgentView) -> None:
        self.agent = agent
        self.store = agent.store
        self.connector_ids = sorted(agent.connectors)
        ops = getattr(agent.config, "operations", None)
        self.intervals: dict[str, tuple[str, float]] = dict(DEFAULT_INTERVALS)
        for part, (key, default) in DEFAULT_INTERVALS.items():
            value = getattr(ops, f"{part}_service_interval", None) if ops is not None else None
            self.intervals[part] = (key, float(value) if value is not None else default)
        self.reporter: OperationsReporter | None = None
        now = agent.now()
        settings = agent.settings
        offline_start = settings.allow_offline_tx_for_unknown_id or settings.local_authorize_offline or any(
            c.free_vend_id_tag for c in agent.config.connectors)
        self.ledger = OperationsLedger(self.connector_ids, now, can_start_offline=bool(offline_start))
        self._last_commit_mono = time.monotonic()
        self._tx_start: dict[int, float] = {}
        self._errors_seen: dict[str, int] = {}
        self._clock_seen: tuple[float, float] | None = None  # (wall, monotonic) at the last look (_watch_clock)
        state = self.store.ops_state()
        self._registers = {int(k.removeprefix("reg.")): float(v) for k, v in state.items() if k.startswith("reg.")}
        self._day = int(float(state.get("day", now // DAY_S * DAY_S)))
        self._identities_checked = False
        self._last_press_mono: float | None = None
        self.gap_note = self._record_gap(state, now)

    # ---- start and gaps

    def _record_gap(self, state: dict[str, str], now: float) -> str | None:
        """The time since the last commit of the previous run, as a gap with the cause the run record gives."""
        last = state.get("last_commit_wall")
        if last is None:
            return None
        start = float(last)
        previous = self.store.previous_run_state()
        if previous.get("clean_shutdown") == "1":
            cause = "reboot"  # stopped on request: systemctl, a reset, an orderly shutdown
        elif previous.get("kernel_boot_id") and previous.get("kernel_boot_id") == kernel_boot_id():
            cause = "crash"  # the process died while the system stayed up
        elif previous.get("kernel_boot_id"):
            cause = "power_loss"  # the system booted without the agent stopping cleanly
        else:
            cause = "unknown"
        if now <= start:
            return None
        self.ledger.gap(start, now, cause)
        minutes = (now - start) / 60.0
        self._event("gap", STATION, {"start": start, "end": now, "cause": cause, "minutes": round(minutes, 2)})
        LOGGER.info("operations ledger: off for %.1f min (%s)", minutes, cause)
        return f"{cause}, {minutes:.1f} min"

    def _event(self, kind: str, connector_id: int, detail: dict[str, Any]) -> int:
        try:
            return self.store.ops_event(kind, connector_id, detail, wall_time=self.agent.now(),
                                        clock_trusted=self.agent.clock_trusted)
        except Exception as err:
            LOGGER.error("operations event %s not recorded: %s", kind, err)
            return 0

    def _report(self, kind: str, payload: dict[str, Any]) -> None:
        if self.reporter is None:
            return
        try:
            self.reporter.report(kind, payload, self.agent.now(), self.agent.clock_trusted)
        except Exception as err:
            LOGGER.error("operations report %s not queued: %s", kind, err)
            return
        self.agent._outbox_changed()  # wake the sender

    # ---- observations (from Agent.feed)

    def _watch_clock(self, now: float) -> None:
        """A wall clock set since the last look (NTP, the back office; a Pi without an RTC boots in 1970) moves
        the ledger's running spans instead of being booked as time in a state."""
        mono = time.monotonic()
        if self._clock_seen is not None:
            wall, seen_mono = self._clock_seen
            step = now - (wall + (mono - seen_mono))
            if abs(step) > CLOCK_STEP_S:
                self.ledger.clock_stepped(step)
                LOGGER.info("operations ledger: the clock was set by %+.0f s; not booked as time", step)
        self._clock_seen = (now, mono)

    def observe_input(self, event: ev.Input) -> None:
        """An input the core is fed (from Agent.feed, before its outputs are executed)."""
        now = self.agent.now()
        self._watch_clock(now)
        ledger = self.ledger
        match event:
            case ev.PlugChanged():
                ledger.plug(event.connector_id, event.plugged, now)
            case ev.MeterSample():
                ledger.power(event.connector_id, event.power_w, now)
                self._energy(event.connector_id, event.energy_wh, now)
            case ev.LinkChanged():
                ledger.link(event.online, now)
            case ev.FaultRaised() if event.code == "meter_replaced":
                self._registers.pop(event.connector_id, None)
                self.replacement(event.connector_id, "meter", None, event.info or None)
            case _:
                pass
        if isinstance(event, ev.Tick):
            self.maybe_commit()

    def observe_outputs(self, outputs: list[ev.Output]) -> None:
        """What the core decided (from Agent.execute)."""
        now = self.agent.now()
        ledger = self.ledger
        for out in outputs:
            match out:
                case ev.StatusChanged():
                    ledger.status(out.connector_id, out.status, out.fault, self._unavailable_cause(out.connector_id),
                                  now)
                case ev.SetContactor():
                    ledger.contactor(out.connector_id, out.closed, now)
                case ev.SetLock():
                    ledger.lock(out.connector_id, out.locked, now)
                case ev.TransactionStarted():
                    self._tx_start[out.local_tx_id] = out.meter_start_wh
                case ev.TransactionStopped():
                    start = self._tx_start.pop(out.local_tx_id, None)
                    ledger.session(out.connector_id, 0.0 if start is None else out.meter_stop_wh - start, now)
                case _:
                    pass

    def _energy(self, connector_id: int, energy_wh: float, now: float) -> None:
        """Energy through the connector: the register's increase between samples (a drop is a new meter)."""
        if not math.isfinite(energy_wh):
            return
        previous = self._registers.get(connector_id)
        self._registers[connector_id] = energy_wh
        if previous is not None and 0 < energy_wh - previous < MAX_SAMPLE_DELTA_WH:
            self.ledger.energy(connector_id, energy_wh - previous, now)

    def _unavailable_cause(self, connector_id: int) -> str:
        """Why a connector is unavailable, as far as the core's state tells."""
        core = self.agent.core
        connector = core.connectors.get(connector_id)
        if connector is None:
            return "unknown"
        if connector.held:
            return "maintenance"  # a technician's self-test holds the charge point out of service
        if not connector.operative or not core.cp_operative:
            return "backoffice"  # only a ChangeAvailability sets a connector inoperative
        if not core.storage_ok:
            return "storage"
        return "other"

    def power_point(self, connector_id: int, tx_local_id: int, power_w: float | None, energy_wh: float,
                    wall: float) -> None:
        """A point of the session's power curve, from the meter pass's periodic sample (the runtime calls this
        inside the pass's Store.one_sync: the point shares the sample's fsync). A failure costs only the point."""
        if not math.isfinite(energy_wh) or (power_w is not None and not math.isfinite(power_w)):
            return
        try:
            self.store.ops_power_point(tx_local_id, connector_id, wall, power_w, energy_wh)
        except Exception as err:
            LOGGER.debug("power curve point of transaction %d not kept: %s", tx_local_id, err)

    def power_curve(self, tx_local_id: int) -> dict[str, Any]:
        """A session's power curve for `evsectl sessions --plot N`: the transaction and its kept points."""
        row = self.store.transaction(tx_local_id)
        if row is None:
            raise ValueError(f"no session {tx_local_id}")
        points = self.store.ops_power_curve(tx_local_id)
        stop = row.meter_stop_wh if row.meter_stop_wh is not None else row.last_energy_wh
        return {"tx_local_id": tx_local_id, "connector": row.connector_id, "start": row.start_wall,
                "stop": row.stop_wall, "running": row.stop_wall is None,
                "energy_wh": round(stop - row.meter_start_wh, 1),
                "points": [{"t": p.wall_time, "power_w": p.power_w, "energy_wh": p.energy_wh} for p in points]}

    def round_trip(self, seconds: float) -> None:
        """An answered call to the back office took this long (from the protocol session)."""
        self.ledger.round_trip(seconds, self.agent.now())

    # ---- commits

    def maybe_commit(self) -> None:
        """Commit if the last commit is COMMIT_INTERVAL_S old; a failure is logged, never raised: its callers
        are the meter pass and the poll's Tick, which the ledger must never stop."""
        if time.monotonic() - self._last_commit_mono >= COMMIT_INTERVAL_S:
            try:
                self.commit()
            except Exception:
                LOGGER.exception("operations ledger commit failed (kept for the next try)")

    def commit(self) -> bool:
        """Write what was accounted since the last commit (once a minute, and at shutdown)."""
        now = self.agent.now()
        self._watch_clock(now)
        self._last_commit_mono = time.monotonic()
        try:
            self.ledger.queue_depth(self.store.pending_count(), now)
        except Exception as err:
            LOGGER.debug("queue depth not read: %s", err)
        for name, total in self._device_errors().items():
            seen = self._errors_seen.get(name, 0)
            self._errors_seen[name] = total
            self.ledger.device_errors(name, total - seen, now)
        pending = self.ledger.take(now)
        state = {f"reg.{cid}": repr(wh) for cid, wh in self._registers.items()}
        try:
            self.store.ops_commit(pending, wall=now, state=state)
        except Exception as err:
            LOGGER.warning("operations ledger not committed (kept for the next try): %s", err)
            self.ledger.restore(pending)
            return False
        if not self._identities_checked and self.agent.hw.first_poll_ok:
            self._identities_checked = True
            self.check_identities()
        self._check_wear()
        self._check_day(now)
        return True

    def _device_errors(self) -> dict[str, int]:
        """Each device's communication errors so far: the driver's own count of failed exchanges where it keeps
        one (every timeout, CRC error, exception answer and retry), else the failed polls the hardware saw."""
        hw = self.agent.hw
        totals = {name: health.failures for name, health in hw.health.items()}
        for devices in hw.connectors.values():
            for device in (devices.meter, devices.dc, devices.imd):
                if isinstance(device, CountsCommunicationErrors):
                    totals[str(getattr(device, "name", type(device).__name__))] = int(device.communication_errors())
        return totals

    def close(self) -> None:
        """At shutdown: the last commit (its time is where the next start's gap begins)."""
        self.commit()

    def _check_day(self, now: float) -> None:
        day = int(now // DAY_S) * DAY_S
        if day == self._day:
            return
        for ended in range(max(self._day, day - MAX_GAP_S), day, DAY_S):  # a clock set years forward: kept days
            rows = self.store.ops_rows("daily", ended, ended + DAY_S)
            if rows:
                self._report("DailyUsageReport", daily_usage_payload(ended, figures(rows, self.connector_ids)))
        self._day = day
        self.store.ops_set_state({"day": str(day)})

    # ---- wear, service, replacement

    def wear(self) -> list[dict[str, Any]]:
        """Every part's counters since its last service or replacement, its interval and whether it is due."""
        totals = self.store.ops_wear()
        state = self.store.ops_state()
        result = []
        for cid in self.connector_ids:
            for part, keys in PARTS.items():
                key, interval = self.intervals.get(part, (keys[0], 0.0))
                values = {k: totals.get((cid, k), (0.0, 0.0))[0] for k in keys}
                if "x.operating" in values:  # seconds on disk, hours for people
                    values = {"x.operating_h": values["x.operating"] / 3600.0}
                since = min((totals[(cid, k)][1] for k in keys if (cid, k) in totals), default=None)
                value = values.get("x.operating_h" if key == "x.operating" else key, 0.0)
                result.append({"connector": cid, "part": part, "counters": values, "since": since,
                               "interval": interval or None, "value": value,
                               "due": state.get(f"due.{cid}.{part}") is not None,
                               "identity": state.get(f"id.{cid}.{part}")})
        return result

    def _check_wear(self) -> None:
        for item in self.wear():
            interval = item["interval"]
            if not interval or item["due"] or item["value"] < interval:
                continue
            cid, part = item["connector"], item["part"]
            self.store.ops_set_state({f"due.{cid}.{part}": repr(self.agent.now())})
            detail = {"connectorId": cid, "part": part, "counter": self.intervals[part][0],
                      "value": round(item["value"], 1), "interval": interval}
            self._event("maintenance_due", cid, detail)
            self._report("MaintenanceDue", detail)
            LOGGER.warning("connector %d: %s maintenance due (%.0f of %.0f)", cid, part, item["value"], interval)

    def service(self, connector_id: int, part: str, note: str = "") -> dict[str, Any]:
        """A technician serviced a part: its counters restart, a due maintenance is cleared."""
        if part not in PARTS or connector_id not in self.connector_ids:
            raise ValueError(f"unknown part {part!r} or connector {connector_id}; parts: {', '.join(PARTS)}")
        self.commit()
        before = next(i for i in self.wear() if i["connector"] == connector_id and i["part"] == part)
        self.store.ops_reset_wear(connector_id, PARTS[part], self.agent.now())
        self.store.ops_set_state({f"due.{connector_id}.{part}": None})
        detail = {"connectorId": connector_id, "part": part, "counters": before["counters"], "note": note[:NOTE_CHARS]}
        self._event("service", connector_id, detail)
        LOGGER.info("connector %d: %s serviced", connector_id, part)
        return detail

    def replacement(self, connector_id: int, part: str, old: str | None, new: str | None) -> dict[str, Any]:
        """A part was replaced (a changed identity, a meter register that restarted, or a technician's record)."""
        now = self.agent.now()
        self.store.ops_reset_wear(connector_id, PARTS.get(part, ()), now)
        changes: dict[str, str | None] = {f"due.{connector_id}.{part}": None}
        if new is not None:
            changes[f"id.{connector_id}.{part}"] = new
        self.store.ops_set_state(changes)
        detail = {"connectorId": connector_id, "part": part, "old": old, "new": new,
                  "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
        self._event("replacement", connector_id, detail)
        self._report("Replacement", detail)
        LOGGER.warning("connector %d: %s replaced (%s -> %s)", connector_id, part, old, new)
        return detail

    def check_identities(self) -> None:
        """Compare each device's identity with the one recorded: a change is a replacement."""
        state = self.store.ops_state()
        for cid in self.connector_ids:
            devices = self.agent.hw.connectors.get(cid)
            if devices is None:
                continue
            for part, device in (("meter", devices.meter), ("controller", devices.dc)):
                new = _identity(device) if device is not None else None
                if new is None:
                    continue
                old = state.get(f"id.{cid}.{part}")
                if old is None:
                    self.store.ops_set_state({f"id.{cid}.{part}": new})
                elif old != new:
                    self.replacement(cid, part, old, new)

    # ---- problem reports

    def problem(self, source: str, note: str = "", connector_id: int = 0) -> dict[str, Any]:
        """A driver's or technician's problem report, with a snapshot; acknowledged on the indicator."""
        status = self.agent.core.snapshot()
        connectors = {str(cid): {"status": view.get("status"), "fault": view.get("fault")}
                      for cid, view in status["connectors"].items()}
        try:
            queue: dict[str, Any] = self.store.outbox_stats()
        except Exception as err:
            queue = {"error": str(err)}
        log_lines = getattr(self.agent, "log_lines", list)
        lines = [str(line)[:SNAPSHOT_LINE_CHARS] for line in log_lines()[-SNAPSHOT_LOG_LINES:]]
        detail = {"source": source[:40], "note": note[:NOTE_CHARS], "connectorId": connector_id,
                  "connectors": connectors, "online": self.agent.link_session is not None,
                  "queue": {"pending": queue.get("pending"), "dead": queue.get("dead")}}
        event_id = self._event("problem", connector_id, {**detail, "log": lines})
        self._report("ProblemReport", {**detail, "reportId": event_id})
        LOGGER.warning("problem reported (%s): %s", source, note[:NOTE_CHARS])
        self._acknowledge(connector_id)
        return {**detail, "reportId": event_id}

    def bind_button(self, button: PushButton, loop: asyncio.AbstractEventLoop) -> None:
        """A driver's "report a problem" button: each press is handed from the GPIO thread to the loop."""
        def from_gpio_thread() -> None:
            loop.call_soon_threadsafe(self.button_pressed)

        button.on_press(from_gpio_thread)

    def button_pressed(self) -> dict[str, Any] | None:
        """A press of the problem button, in the event loop: a report as `evsectl report-problem` makes."""
        mono = time.monotonic()
        if self._last_press_mono is not None and 0 <= mono - self._last_press_mono < BUTTON_HOLDOFF_S:
            LOGGER.info("problem button pressed again within %.0f s: the same report", BUTTON_HOLDOFF_S)
            return None
        self._last_press_mono = mono
        return self.problem("button")

    def _acknowledge(self, connector_id: int) -> None:
        """Blink the indicators off once: the button was heard."""
        ids = [connector_id] if connector_id in self.connector_ids else self.connector_ids
        hw = self.agent.hw
        if not any(hw.connectors[c].indicator is not None for c in ids if c in hw.connectors):
            return
        for cid in ids:
            hw.show(cid, IndicatorState.OFF)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        def restore() -> None:
            self.agent.execute([ev.ShowIndicator(s.connector_id, indicator_for(s.status))
                                for s in self.agent.core.current_statuses(self.agent.now()) if s.connector_id in ids])

        loop.call_later(ACK_BLINK_S, restore)

    # ---- reading

    def report(self, since: float, until: float, table: str = "daily") -> dict[str, Any]:
        """The figures of a period, with per-day rows for the utilization chart, wear and recent events."""
        self.commit()
        rows = self.store.ops_rows(table, since, until)
        days: dict[int, list[tuple[int, int, str, float]]] = {}
        for row in rows:
            days.setdefault(row[0], []).append(row)
        result = figures(rows, self.connector_ids)
        result["period"] = {"since": since, "until": until}
        result["days"] = [{"date": iso_day(day), **{str(cid): {
            "energy_wh": p["energy_wh"], "sessions": p["sessions"], "occupied_min": p["occupied_min"],
            "uptime_pct": p["uptime_pct"]} for cid, p in figures(day_rows, self.connector_ids)["ports"].items()}}
            for day, day_rows in sorted(days.items())]
        result["wear"] = self.wear()
        result["events"] = [{"id": e.id, "kind": e.kind, "connector": e.connector_id, "at": e.wall_time,
                             "detail": {k: v for k, v in e.detail.items() if k != "log"}}
                            for e in self.store.ops_events(50)]
        return json.loads(json.dumps(result))  # int keys become strings, as over the socket
