"""`evsectl report`, `service`, `report-problem` and `sessions --plot`: the operations ledger for a technician and
a spreadsheet. The daemon runs `handle`; the render functions run in evsectl (charts through agent/diag/plots)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.diag.text import table as _table

if TYPE_CHECKING:
    from agent.runtime.operations import Operations

COMMANDS = ("report", "service", "report_problem", "session_power")
MAX_REPORT_DAYS = 450  # the daily rows the ledger keeps


def handle(ops: Operations, command: str, args: dict[str, Any]) -> Any:
    """Run an operations command of the diagnostics socket."""
    if command == "report":
        days = int(args.get("days") or 30)
        if not 1 <= days <= MAX_REPORT_DAYS:
            raise ValueError(f"days must be 1..{MAX_REPORT_DAYS}")
        until = (int(ops.agent.now() // 86400) + 1) * 86400
        return ops.report(until - days * 86400, until)
    if command == "service":
        if args.get("part") is None:
            return {"wear": ops.wear()}
        connector, part, note = int(args["connector"]), str(args["part"]), str(args.get("note") or "")
        if args.get("replaced"):
            return ops.replacement(connector, part, args.get("old"), args.get("new"))
        return ops.service(connector, part, note)
    if command == "report_problem":
        return ops.problem("technician", str(args.get("note") or ""), int(args.get("connector") or 0))
    if command == "session_power":
        return ops.power_curve(int(args["tx"]))
    raise ValueError(f"unknown command {command!r}")


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def render(result: dict[str, Any], chart: tuple[int, bool] | None = None) -> str:
    """The report as a technician reads it: uptime per port, a utilization chart per day, faults, link, wear.

    chart: (width, colour) of the bar chart; by default the terminal's, or 80 columns without colour.
    """
    since = datetime.fromtimestamp(result["period"]["since"], UTC).strftime("%Y-%m-%d")
    until = datetime.fromtimestamp(result["period"]["until"] - 1, UTC).strftime("%Y-%m-%d")
    out = [f"operations report {since} .. {until} (UTC)", ""]
    rows = [["port", "uptime %", "raw %", "recorded min", "outage min", "excluded min", "sessions", "energy kWh",
             "occupied %", "plugged idle min", "peak kW", "mean kW"]]
    for cid, p in sorted(result["ports"].items(), key=lambda kv: int(kv[0])):
        rows.append([cid, _f(p["uptime_pct"], 3), _f(p["raw_uptime_pct"], 3), _f(p["recorded_min"], 0),
                     _f(p["outage_min"]), _f(p["excluded_min"]), f"{p['sessions']:.0f}",
                     _f(p["energy_wh"] / 1000.0, 3), _f(p["utilization_pct"]), _f(p["plugged_idle_min"], 0),
                     _f(p["peak_power_w"] / 1000.0, 2), _f(None if p["mean_power_w"] is None else
                                                            p["mean_power_w"] / 1000.0, 2)])
    out += ["uptime per port (23 CFR 680.116(b); excluded: power loss, maintenance, EV faults)", _table(rows), ""]
    from agent.diag import plots  # plotext: evsectl only, never the daemon

    totals = [(d["date"], sum(v["energy_wh"] for k, v in d.items() if k != "date") / 1000.0) for d in result["days"]]
    width, colour = plots.chart_size() if chart is None else chart
    out.append(plots.energy_per_day([d for d, _ in totals], [t for _, t in totals], width=width, colour=colour))
    out.append("")
    frows = [["port", "cause", "faults", "outage min"]]
    for cid, p in sorted(result["ports"].items(), key=lambda kv: int(kv[0])):
        causes = sorted(set(p["faults"]) | set(p["outages_min"]))
        frows += [[cid, cause, f"{p['faults'].get(cause, 0):.0f}", _f(p["outages_min"].get(cause))]
                  for cause in causes]
    out += ["faults and outages by cause", _table(frows) if len(frows) > 1 else "none", ""]
    s = result["station"]
    off = ", ".join(f"{k} {v:.1f} min" for k, v in sorted(s["off_min"].items())) or "none"
    out += [f"connectivity: online {s['online_min']:.0f} min, offline {s['offline_min']:.0f} min, "
            f"{s['reconnects']:.0f} reconnects, round trip p50 {_f(s['rtt_p50_ms'], 0)} ms p99 "
            f"{_f(s['rtt_p99_ms'], 0)} ms, queue mean {_f(s['queue_mean'])} max {_f(s['queue_max'], 0)}",
            f"agent not running: {off}", ""]
    wrows = [["port", "part", "counters", "since service", "interval", "due"]]
    for w in result["wear"]:
        counters = ", ".join(f"{k.split('.', 1)[1]} {v:.0f}" for k, v in w["counters"].items())
        wrows.append([str(w["connector"]), w["part"], counters,
                      datetime.fromtimestamp(w["since"], UTC).strftime("%Y-%m-%d") if w["since"] else "-",
                      _f(w["interval"], 0), "DUE" if w["due"] else "-"])
    out += ["wear since the last service or replacement", _table(wrows)]
    events = [e for e in result["events"] if e["kind"] in ("replacement", "maintenance_due", "service", "problem")]
    if events:
        out += ["", "recent events"]
        out += [f"{datetime.fromtimestamp(e['at'], UTC).strftime('%Y-%m-%d %H:%M')}  {e['kind']:<16} "
                f"port {e['connector']}  {_brief(e['detail'])}" for e in events[:20]]
    return "\n".join(out)


def _brief(detail: dict[str, Any]) -> str:
    keys = ("part", "old", "new", "value", "interval", "note", "cause", "minutes")
    return ", ".join(f"{k} {detail[k]}" for k in keys if detail.get(k) not in (None, ""))


def render_csv(result: dict[str, Any]) -> str:
    """One row per day and port: the figures a spreadsheet needs."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["date", "port", "uptime_pct", "energy_wh", "sessions", "occupied_min"])
    for day in result["days"]:
        for cid, p in sorted(((k, v) for k, v in day.items() if k != "date"), key=lambda kv: int(kv[0])):
            writer.writerow([day["date"], cid, "" if p["uptime_pct"] is None else f"{p['uptime_pct']:.3f}",
                             f"{p['energy_wh']:.1f}", f"{p['sessions']:.0f}", f"{p['occupied_min']:.1f}"])
    return buf.getvalue().rstrip("\n")


def render_service(result: dict[str, Any]) -> str:
    """The wear list, or what a service or replacement recorded."""
    if "wear" not in result:
        return ", ".join(f"{k} {v}" for k, v in result.items())
    rows = [["port", "part", "counters", "interval", "due", "identity"]]
    for w in result["wear"]:
        counters = ", ".join(f"{k.split('.', 1)[1]} {v:.0f}" for k, v in w["counters"].items())
        rows.append([str(w["connector"]), w["part"], counters, _f(w["interval"], 0), "DUE" if w["due"] else "-",
                     w["identity"] or "-"])
    return _table(rows)


def curve_kw(points: list[dict[str, Any]], start: float) -> tuple[list[float], list[float]]:
    """Minutes since the start and kW of a session's kept points; a point without a power reading (a meter with
    no power register) takes the power its energy increase since the previous point gives."""
    minutes: list[float] = []
    kw: list[float] = []
    previous: dict[str, Any] | None = None
    for point in points:
        power = point.get("power_w")
        if power is None and previous is not None and point["t"] > previous["t"]:
            power = (point["energy_wh"] - previous["energy_wh"]) * 3600.0 / (point["t"] - previous["t"])
        previous = point
        if power is not None:
            minutes.append((point["t"] - start) / 60.0)
            kw.append(power / 1000.0)
    return minutes, kw


def render_power(result: dict[str, Any], chart: tuple[int, bool] | None = None) -> str:
    """`evsectl sessions --plot N`: the session's power curve and its figures."""
    from agent.diag import plots  # plotext: evsectl only, never the daemon

    start = result["start"]
    when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M")
    state = "running" if result["running"] else "ended"
    title = f"session {result['tx_local_id']}, connector {result['connector']}, {when} UTC ({state})"
    width, colour = plots.chart_size() if chart is None else chart
    minutes, kw = curve_kw(result["points"], start)
    summary = (f"{len(result['points'])} points kept, energy {result['energy_wh'] / 1000.0:.3f} kWh, "
               f"peak {_f(max(kw) if kw else None, 2)} kW")
    return plots.power_curve(minutes, kw, width=width, colour=colour, title=title) + "\n" + summary
