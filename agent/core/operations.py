"""The operations ledger's accounting: time per state and cause, sessions, energy, power, wear, uptime.

Pure: observations come in with their wall time, counters come out to be committed (`take`). Every counter
is a (connector, key) pair; connector 0 is the station. Time is split at hour boundaries (UTC) so each
counter lands in its hour and its day. Keys (docs/operations.md defines each):

- ``t.<state>`` seconds in a state: ``available``, ``occupied`` (preparing, finishing, reserved),
  ``charging``, ``suspended_ev``, ``suspended_evse``, ``faulted.<cause>``, ``unavailable.<cause>``,
  ``offline`` (station offline and no session could start), ``off.<cause>`` (the agent was not running).
  ``x.plugged_idle`` and ``x.operating`` are overlays (plugged but not charging; contactor closed).
- ``n.<what>`` counts (sessions, contactor operations, plug and lock cycles, faults by cause, reconnects).
- ``e.wh`` energy in Wh; ``max.<what>`` a peak (committed with MAX, not +).
- station: ``t.online``, ``t.offline``, ``t.off.<cause>``, ``rtt.<ms>`` a round-trip histogram,
  ``q.sum``/``q.samples``/``max.queue`` queue depth, ``err.<device>`` device errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.core.events import VEHICLE_FAULT_CODES, ConnectorStatus, Fault

HOUR_S = 3600
DAY_S = 86400
MAX_GAP_S = 450 * DAY_S  # a gap longer than the daily rows are kept is booked for what is kept
UNDER_LOAD_W = 100.0  # a contactor opened above this power breaks a current: it wears the contacts
RTT_BUCKETS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)  # upper bounds

STATION = 0

# outage causes the uptime rule may exclude (23 CFR 680.116(b)), as the agent can tell them apart
CAUSE_POWER_LOSS = "power_loss"  # the system booted without a clean shutdown: the supply was cut
CAUSE_MAINTENANCE = "maintenance"  # a technician's maintenance window or self-test
CAUSE_EV = "ev"  # a fault the vehicle caused (an EV error reported by the charge controller)
DEFAULT_EXCLUDED = frozenset({CAUSE_POWER_LOSS, CAUSE_MAINTENANCE, CAUSE_EV})

_PLAIN = {
    ConnectorStatus.AVAILABLE: "available",
    ConnectorStatus.PREPARING: "occupied",
    ConnectorStatus.FINISHING: "occupied",
    ConnectorStatus.RESERVED: "occupied",
    ConnectorStatus.CHARGING: "charging",
    ConnectorStatus.SUSPENDED_EV: "suspended_ev",
    ConnectorStatus.SUSPENDED_EVSE: "suspended_evse",
}
UP_STATES = frozenset({"available", "occupied", "charging", "suspended_ev", "suspended_evse"})

# the wear counters of each part, and the config name of its service interval
PARTS: Mapping[str, tuple[str, ...]] = {
    "contactor": ("n.contactor_ops", "n.contactor_ops_under_load"),
    "connector": ("n.plug_cycles",),
    "lock": ("n.lock_cycles",),
    "meter": ("e.wh",),
    "station": ("x.operating",),
}
WEAR_KEYS = frozenset(k for keys in PARTS.values() for k in keys)


def fault_cause(fault: Fault | None) -> str:
    """A fault's cause as the ledger names it: the device role and the code (``meter.communication``)."""
    if fault is None:
        return "unknown"
    if fault.code in VEHICLE_FAULT_CODES:  # the DC controller's codes naming the vehicle (CHAdeMO, CCS)
        return CAUSE_EV
    code = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in fault.code[:40]) or "unknown"
    return f"{fault.role.value}.{code}"


def state_of(status: ConnectorStatus, fault: Fault | None, unavailable_cause: str) -> str:
    """The ledger state of a connector status (faulted and unavailable carry their cause)."""
    if status is ConnectorStatus.FAULTED:
        return f"faulted.{fault_cause(fault)}"
    if status is ConnectorStatus.UNAVAILABLE:
        return f"unavailable.{unavailable_cause}"
    return _PLAIN[status]


def rtt_key(seconds: float) -> str:
    """The histogram key of a round-trip time."""
    ms = seconds * 1000.0
    for bound in RTT_BUCKETS_MS:
        if ms <= bound:
            return f"rtt.{bound}"
    return "rtt.inf"


@dataclass
class _Port:
    state: str
    since: float
    plugged: bool = False
    closed: bool = False
    power_w: float = 0.0
    status: ConnectorStatus = ConnectorStatus.AVAILABLE


@dataclass
class Pending:
    """Counters accumulated since the last commit: (period start, connector, key) -> value, per period."""

    hourly: dict[tuple[int, int, str], float] = field(default_factory=dict)
    daily: dict[tuple[int, int, str], float] = field(default_factory=dict)
    wear: dict[tuple[int, str], float] = field(default_factory=dict)  # (connector, key) -> added

    def empty(self) -> bool:
        """Nothing to commit."""
        return not (self.hourly or self.daily or self.wear)


class OperationsLedger:
    """Accounts what happens to each connector and to the station; `take` hands over what to commit."""

    def __init__(self, connectors: Sequence[int], now: float, *, can_start_offline: bool = False) -> None:
        self.ports = {cid: _Port("available", now) for cid in connectors}
        self.online = False
        self.online_since = now
        self.can_start_offline = can_start_offline
        self._pending = Pending()

    # ---- accounting

    def _add(self, at: float, connector_id: int, key: str, value: float) -> None:
        hour = int(at // HOUR_S) * HOUR_S
        day = int(at // DAY_S) * DAY_S
        for table, period in ((self._pending.hourly, hour), (self._pending.daily, day)):
            if key.startswith("max."):
                table[(period, connector_id, key)] = max(table.get((period, connector_id, key), value), value)
            else:
                table[(period, connector_id, key)] = table.get((period, connector_id, key), 0.0) + value
        if key in WEAR_KEYS:
            self._pending.wear[(connector_id, key)] = self._pending.wear.get((connector_id, key), 0.0) + value

    def _span(self, start: float, end: float, connector_id: int, keys: Iterable[str]) -> None:
        """Add the seconds of [start, end) to each key, split at hour boundaries."""
        keys = tuple(keys)
        while start < end:
            boundary = min(end, (math.floor(start / HOUR_S) + 1) * HOUR_S)
            for key in keys:
                self._add(start, connector_id, key, boundary - start)
            start = boundary

    def _port_keys(self, port: _Port) -> list[str]:
        state = port.state
        if state in ("available", "occupied") and not self.online and not self.can_start_offline:
            state = "offline"  # nobody can start a session: down, though the connector itself is fine
        keys = [f"t.{state}"]
        if port.plugged and port.status is not ConnectorStatus.CHARGING and state in UP_STATES:
            keys.append("x.plugged_idle")
        if port.closed:
            keys.append("x.operating")
        return keys

    def advance(self, now: float) -> None:
        """Account the time up to now in the current states (before any change, and before a commit)."""
        for cid, port in self.ports.items():
            if now > port.since:
                self._span(port.since, now, cid, self._port_keys(port))
                port.since = now
        if now > self.online_since:
            self._span(self.online_since, now, STATION, ["t.online" if self.online else "t.offline"])
            self.online_since = now

    def clock_stepped(self, step_s: float) -> None:
        """The wall clock was set by step_s (NTP, the back office): the step is no time spent in any state, so
        every running span moves with it."""
        for port in self.ports.values():
            port.since += step_s
        self.online_since += step_s

    # ---- observations

    def status(self, connector_id: int, status: ConnectorStatus, fault: Fault | None, unavailable_cause: str,
               now: float) -> None:
        """A connector's status changed (the core's StatusChanged), with the cause of an unavailability."""
        port = self.ports.get(connector_id)
        if port is None:
            return
        self.advance(now)
        state = state_of(status, fault, unavailable_cause)
        if state.startswith("faulted.") and not port.state.startswith("faulted."):
            self._add(now, connector_id, f"n.faults.{state.removeprefix('faulted.')}", 1)
        port.state, port.status = state, status

    def link(self, online: bool, now: float) -> None:
        """The back-office connection went up or down."""
        if online == self.online:
            return
        self.advance(now)
        if online:
            self._add(now, STATION, "n.reconnects", 1)
        self.online = online

    def plug(self, connector_id: int, plugged: bool, now: float) -> None:
        """A cable was plugged or unplugged (a mating cycle counts on plug-in)."""
        port = self.ports.get(connector_id)
        if port is None or port.plugged == plugged:
            return
        self.advance(now)
        port.plugged = plugged
        if plugged:
            self._add(now, connector_id, "n.plug_cycles", 1)

    def contactor(self, connector_id: int, closed: bool, now: float) -> None:
        """The contactor was commanded; an opening above UNDER_LOAD_W counts as an operation under load."""
        port = self.ports.get(connector_id)
        if port is None or port.closed == closed:
            return
        self.advance(now)
        port.closed = closed
        self._add(now, connector_id, "n.contactor_ops", 1)
        if not closed and port.power_w > UNDER_LOAD_W:
            self._add(now, connector_id, "n.contactor_ops_under_load", 1)

    def lock(self, connector_id: int, locked: bool, now: float) -> None:
        """A lock operation; a cycle counts on locking."""
        if connector_id in self.ports and locked:
            self._add(now, connector_id, "n.lock_cycles", 1)

    def power(self, connector_id: int, power_w: float | None, now: float) -> None:
        """A meter sample's power: the peak of the hour and day."""
        port = self.ports.get(connector_id)
        if port is None or power_w is None or not math.isfinite(power_w):
            return
        port.power_w = power_w
        if port.closed and power_w > 0:
            self._add(now, connector_id, "max.power_w", power_w)

    def session(self, connector_id: int, energy_wh: float, now: float) -> None:
        """A session ended with this energy (counted in the hour and day it ended)."""
        if connector_id not in self.ports:
            return
        self._add(now, connector_id, "n.sessions", 1)
        if math.isfinite(energy_wh) and energy_wh > 0:
            self._add(now, connector_id, "e.session_wh", energy_wh)

    def energy(self, connector_id: int, energy_wh: float, now: float) -> None:
        """Energy through the connector (the meter register's increase since the last sample)."""
        if connector_id in self.ports and math.isfinite(energy_wh) and energy_wh > 0:
            self._add(now, connector_id, "e.wh", energy_wh)

    def round_trip(self, seconds: float, now: float) -> None:
        """One answered call to the back office."""
        if math.isfinite(seconds) and seconds >= 0:
            self._add(now, STATION, rtt_key(seconds), 1)

    def queue_depth(self, depth: int, now: float) -> None:
        """The outbox depth, sampled at each commit."""
        self._add(now, STATION, "q.sum", depth)
        self._add(now, STATION, "q.samples", 1)
        self._add(now, STATION, "max.queue", depth)

    def device_errors(self, device: str, errors: int, now: float) -> None:
        """New communication errors of a device since the last count."""
        if errors > 0:
            name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in device[:40])
            self._add(now, STATION, f"err.{name}", errors)

    def gap(self, start: float, end: float, cause: str) -> None:
        """The agent was not running from start to end: every port and the station were off, for that cause."""
        if end <= start:
            return
        start = max(start, end - MAX_GAP_S)  # a clock set years forward must not split decades into hours
        for cid in self.ports:
            self._span(start, end, cid, [f"t.off.{cause}"])
        self._span(start, end, STATION, [f"t.off.{cause}"])

    def restore(self, pending: Pending) -> None:
        """Counters a failed commit handed back: merged into what accumulates now, for the next commit."""
        for table, current in ((pending.hourly, self._pending.hourly), (pending.daily, self._pending.daily)):
            for key, value in table.items():
                current[key] = (max(current.get(key, value), value) if key[2].startswith("max.")
                                else current.get(key, 0.0) + value)
        for wkey, value in pending.wear.items():
            self._pending.wear[wkey] = self._pending.wear.get(wkey, 0.0) + value

    def take(self, now: float) -> Pending:
        """Everything accounted up to now, to commit; the ledger starts afresh."""
        self.advance(now)
        pending, self._pending = self._pending, Pending()
        return pending


# ------------------------------------------------------------------------------------------- figures


def percentile_ms(histogram: Mapping[str, float], fraction: float) -> float | None:
    """The round-trip time below which `fraction` of the calls were answered (a bucket's upper bound)."""
    counts = [(float("inf") if k == "rtt.inf" else float(k.removeprefix("rtt.")), v)
              for k, v in histogram.items() if k.startswith("rtt.")]
    total = sum(v for _, v in counts)
    if total <= 0:
        return None
    seen = 0.0
    for bound, count in sorted(counts):
        seen += count
        if seen >= fraction * total:
            return bound
    return None


def outage_cause(state_key: str) -> str | None:
    """The cause of the outage a ``t.<state>`` key counts (None when the port is up in that state)."""
    state = state_key.removeprefix("t.")
    if state in UP_STATES:
        return None
    if state == "offline":
        return "offline"
    kind, _, cause = state.partition(".")
    if kind in ("faulted", "unavailable", "off"):
        return cause or "unknown"
    return None


def port_figures(counters: Mapping[str, float], excluded: frozenset[str] = DEFAULT_EXCLUDED) -> dict[str, Any]:
    """Uptime (23 CFR 680.116(b)) and utilization of a port from its counters over a period."""
    recorded_s = sum(v for k, v in counters.items() if k.startswith("t."))
    outages: dict[str, float] = {}
    for key, value in counters.items():
        if key.startswith("t."):
            cause = outage_cause(key)
            if cause is not None:
                outages[cause] = outages.get(cause, 0.0) + value
    outage_s = sum(outages.values())
    excluded_s = sum(v for cause, v in outages.items() if cause.split(".")[0] in excluded or cause in excluded)
    charging_s = counters.get("t.charging", 0.0)
    energy_wh = counters.get("e.wh", 0.0)
    occupied_s = sum(counters.get(f"t.{s}", 0.0) for s in ("occupied", "charging", "suspended_ev", "suspended_evse"))
    return {
        "recorded_min": recorded_s / 60.0,
        "outage_min": outage_s / 60.0,
        "excluded_min": excluded_s / 60.0,
        "uptime_pct": None if recorded_s <= 0 else 100.0 * (recorded_s - (outage_s - excluded_s)) / recorded_s,
        "raw_uptime_pct": None if recorded_s <= 0 else 100.0 * (recorded_s - outage_s) / recorded_s,
        "outages_min": {cause: v / 60.0 for cause, v in sorted(outages.items())},
        "sessions": counters.get("n.sessions", 0.0),
        "energy_wh": energy_wh,
        "charging_min": charging_s / 60.0,
        "occupied_min": occupied_s / 60.0,
        "plugged_idle_min": counters.get("x.plugged_idle", 0.0) / 60.0,
        "utilization_pct": None if recorded_s <= 0 else 100.0 * occupied_s / recorded_s,
        "peak_power_w": counters.get("max.power_w", 0.0),
        "mean_power_w": energy_wh * 3600.0 / charging_s if charging_s > 0 else None,
    }
