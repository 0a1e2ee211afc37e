"""`evsectl`: the technician's CLI, talking to the running evse-agent over its Unix socket."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from datetime import datetime
from typing import Any

from agent.diag.text import table as _table

DEFAULT_SOCKET = os.environ.get("EVSECTL_SOCKET", "/run/evse-agent/evsectl.sock")
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_PERMISSION = 0, 1, 2, 3, 4


class CtlError(Exception):
    """A failure with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def request(path: str, command: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
    """Send one command to the daemon and return its result."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
    except FileNotFoundError:
        raise CtlError(f"evse-agent is not running (no socket at {path})", EXIT_NOT_RUNNING) from None
    except PermissionError:
        raise CtlError(f"permission denied on {path}: add yourself to the 'evse' group", EXIT_PERMISSION) from None
    except ConnectionRefusedError:
        raise CtlError(f"evse-agent is not running (stale socket {path})", EXIT_NOT_RUNNING) from None
    with sock:
        sock.sendall(json.dumps({"cmd": command, "args": args or {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise CtlError(str(answer.get("error")), EXIT_PERMISSION if answer.get("permission") else EXIT_ERROR)
    return answer["result"]


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def show_status(s: dict[str, Any]) -> str:
    """The status as a technician reads it."""
    link = "online" if s["link"]["online"] else "OFFLINE"
    q = s["queue"]
    lines = [f"charge point {s['status']}  back office {link}  queue {q['pending']} pending, {q['dead']} dead"
             + ("  E-STOP PRESSED" if s.get("estop") else "")]
    storage = s.get("storage") or {}
    if storage.get("disk_full"):
        lines.append(f"STATE DISK FULL since {storage['disk_full_since']}: {storage['waiting_in_memory']} records "
                     f"waiting in memory, {storage['dropped']} samples dropped; free space on the state directory")
    elif storage.get("last_episode"):
        lines.append(storage["last_episode"])
    rows = [["connector", "status", "error", "plugged", "contactor", "limit A", "power W", "energy Wh", "session"]]
    for cid, c in sorted(s["connectors"].items()):
        tx = c.get("transaction")
        rows.append([cid, c["status"], c["error_code"] if c.get("error_code") not in (None, "NoError") else "-",
                     "yes" if c["plugged"] else "no", "closed" if c["contactor_closed"] else "open",
                     f"{c['limit_a']:.0f}", f"{c['power_w'] or 0:.0f}", f"{c['energy_wh'] or 0:.0f}",
                     f"{tx['id_tag']} #{tx['transaction_id'] or tx['local_tx_id']}" if tx else "-"])
    lines.append(_table(rows))
    drows = [["device", "health", "error"]]
    for name, d in s["devices"].items():
        drows.append([name, "ok" if d["ok"] else "FAULT", d["error"] or "-"])
    if len(drows) > 1:
        lines.append(_table(drows))
    lines += show_dc([d["dc"] for d in s["devices"].values() if isinstance(d.get("dc"), dict)])
    return "\n".join(lines)


def _num(value: Any, fmt: str = ".0f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def show_dc(views: list[dict[str, Any]]) -> list[str]:
    """One line per DC controller, then its CHAdeMO or CCS detail (map version 2) and the vehicle's faults."""
    lines: list[str] = []
    for v in sorted(views, key=lambda view: int(view["connector"])):
        head = (f"dc connector {v['connector']}: {v['protocol']} (map v{v['map_version']})  EV {v['ev_state']}"
                f"{' ready' if v['ev_ready'] else ''}  SoC {_num(v['soc_pct'], '.1f', ' %')}  "
                f"target {_num(v['ev_target_v'])} V {_num(v['ev_target_a'], '.1f')} A  "
                f"present {_num(v['present_v'])} V {_num(v['present_a'], '.1f')} A  isolation {v['isolation']}"
                + ("  STALE" if v["stale"] else ""))
        lines.append(head)
        chademo, ccs = v.get("chademo"), v.get("ccs")
        if chademo:
            lines.append(
                f"  CHAdeMO step {v.get('chademo_step', '-')}  protocol {_num(chademo['protocol_number'], 'd')}  "
                f"charging {'enabled' if chademo['charging_enabled'] else 'not enabled'}  "
                f"flags {','.join(chademo['status_flags']) or '-'}  "
                f"max time {_num(chademo['max_charging_time_s'], 'd', ' s')}  "
                f"estimated {_num(chademo['estimated_charging_time_s'], 'd', ' s')}  "
                f"battery {_num(chademo['battery_capacity_kwh'], '.1f', ' kWh')}")
        if ccs:
            lines.append(
                f"  CCS phase {ccs['phase']}  EV error {ccs['ev_error_code']}  "
                f"full SoC {_num(ccs['full_soc_pct'], '.1f', ' %')}  "
                f"bulk SoC {_num(ccs['bulk_soc_pct'], '.1f', ' %')}  "
                f"EV max {_num(ccs['ev_max_power_w'], '.0f', ' W')}")
        for fault in v["faults"]:
            lines.append(f"  FAULT {fault['code']}" + (f" ({fault['name']})" if fault["name"] != fault["code"] else ""))
    return lines


def show(command: str, result: Any) -> str:
    """Human-readable output of a command."""
    if command == "status":
        return show_status(result)
    if command == "meter":
        rows = [["connector", "energy Wh", "power W", "voltage V", "current A", "age s", "state"]]
        for cid, r in sorted(result.items()):
            if r is None:
                rows.append([cid, "-", "-", "-", "-", "-", "no reading"])
                continue
            rows.append([cid, f"{r['energy_import_wh']:.1f}", f"{r['power_w'] or 0:.0f}",
                         "/".join(f"{v:.0f}" for v in r["voltage_v"] if v is not None),
                         "/".join(f"{v:.1f}" for v in r["current_a"] if v is not None),
                         f"{r['age_s']:.1f}", "STALE" if r["stale"] else "fresh"])
        return _table(rows)
    if command == "sessions":
        rows = [["tx", "bo id", "connector", "id tag", "start", "stop", "energy Wh", "reason"]]
        for t in result:
            rows.append([str(t["tx_local_id"]), str(t["transaction_id"] or "-"), str(t["connector"]), t["id_tag"],
                         _when(t["start"]), "running" if t["running"] else _when(t["stop"]),
                         f"{t['energy_wh']:.0f}", t["reason"] or "-"])
        return _table(rows)
    if command == "queue":
        st = result["stats"]
        out = [f"pending {st['pending']}, dead letters {st['dead']}, {st['bytes']} bytes"]
        for title, items in (("pending", result["pending"]), ("dead letters", result["dead_letters"])):
            if items:
                out.append(f"{title}:")
                out.extend(f"  #{m['id']} {m['action']} attempts {m['attempts']} {m.get('error') or ''}"
                           for m in items)
        return "\n".join(out)
    if command == "config_get":
        return "\n".join(f"{e['key']} = {e.get('value', '')}{' (readonly)' if e['readonly'] else ''}"
                         for e in result["ocpp"])
    if command == "log":
        return "\n".join(result["lines"])
    if command == "bundle":
        return f"{result['path']} ({result['bytes']} bytes)"
    if command == "selftest":
        rows = [["connector", "check", "result", "detail"]]
        for cid, checks in result.items():
            if cid == "estop":
                rows.append(["-", "estop", "ok" if checks["ok"] else "FAIL", checks["detail"]])
                continue
            for name, check in checks.items():
                rows.append([cid, name, "ok" if check["ok"] else "FAIL", check["detail"]])
        return _table(rows)
    if command in ("report", "service", "session_power"):
        from agent.diag import operations

        if command == "session_power":
            return operations.render_power(result)
        return operations.render(result) if command == "report" else operations.render_service(result)
    if command == "report_problem":
        return f"problem report {result['reportId']} recorded"
    if command == "unlock" and isinstance(result, dict) and "status" in result:
        return result["status"] + (f": {result['reason']}" if result.get("reason") else "")
    return json.dumps(result)


def build_parser() -> argparse.ArgumentParser:
    """The evsectl command line."""
    parser = argparse.ArgumentParser(prog="evsectl", description="Technician CLI of the evse-agent daemon.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"daemon socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="connectors, devices, link and queue")
    status.add_argument("--watch", action="store_true", help="refresh every second")
    sub.add_parser("meter", help="live meter readings with their age")
    sessions = sub.add_parser("sessions", help="current and recent sessions")
    sessions.add_argument("--limit", type=int, default=20)
    sessions.add_argument("--plot", type=int, metavar="N",
                          help="draw the power curve of session N (the tx column); with --json: its points")
    sub.add_parser("queue", help="the offline queue: pending messages and dead letters")
    config = sub.add_parser("config", help="OCPP keys and settings (secrets never shown)")
    csub = config.add_subparsers(dest="config_command", required=True)
    get = csub.add_parser("get")
    get.add_argument("key", nargs="?")
    setp = csub.add_parser("set")
    setp.add_argument("key")
    setp.add_argument("value")
    log = sub.add_parser("log", help="recent log lines, OCPP frames included")
    log.add_argument("-n", "--lines", type=int, default=100)
    log.add_argument("--follow", action="store_true")
    card = sub.add_parser("card", help="present an id as if read by the RFID reader; --watch: show cards read")
    card.add_argument("id_tag", nargs="?")
    card.add_argument("--connector", type=int)
    card.add_argument("--watch", action="store_true",
                      help="show each card the reader reads, live, in every id format at once")
    card.add_argument("--since", type=int, help="with --watch: also the kept cards numbered above this (0: all)")
    card.add_argument("--count", type=int, default=0, help="with --watch: stop after this many cards")
    start = sub.add_parser("start", help="start a session on a connector")
    start.add_argument("connector", type=int)
    start.add_argument("--id-tag", default="TECHNICIAN")
    stop = sub.add_parser("stop", help="stop the session on a connector")
    stop.add_argument("connector", type=int)
    unlock = sub.add_parser("unlock", help="unlock a connector")
    unlock.add_argument("connector", type=int)
    sub.add_parser("bundle", help="write the diagnostics archive (the one GetDiagnostics uploads)")
    selftest = sub.add_parser("selftest", help="test meters, contactor, lock, LEDs, e-stop (no session may run)")
    selftest.add_argument("connector", type=int, nargs="?")
    report = sub.add_parser("report", help="uptime per port, utilization per day, faults, connectivity, wear")
    report.add_argument("--days", type=int, default=30, help="the last N days (default 30)")
    report.add_argument("--csv", action="store_true", help="one row per day and port, for a spreadsheet")
    service = sub.add_parser("service", help="wear counters; record a service or a replacement of a part")
    service.add_argument("--connector", type=int)
    service.add_argument("--part", choices=("contactor", "connector", "lock", "meter", "station"))
    service.add_argument("--note", default="")
    service.add_argument("--replaced", action="store_true", help="the part was replaced (not serviced)")
    service.add_argument("--old", help="the replaced part's serial")
    service.add_argument("--new", help="the new part's serial")
    problem = sub.add_parser("report-problem", help="record a problem report with a snapshot, reported upstream")
    problem.add_argument("--connector", type=int, default=0)
    problem.add_argument("--note", default="")
    return parser


def _command(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.command == "config":
        if args.config_command == "get":
            return "config_get", {"key": args.key}
        return "config_set", {"key": args.key, "value": args.value}
    mapping: dict[str, dict[str, Any]] = {
        "sessions": {"limit": getattr(args, "limit", 20)},
        "log": {"lines": getattr(args, "lines", 100)},
        "card": {"id_tag": getattr(args, "id_tag", None), "connector": getattr(args, "connector", None)},
        "start": {"connector": getattr(args, "connector", None), "id_tag": getattr(args, "id_tag", None)},
        "stop": {"connector": getattr(args, "connector", None)},
        "unlock": {"connector": getattr(args, "connector", None)},
        "selftest": {"connector": getattr(args, "connector", None)},
        "report": {"days": getattr(args, "days", 30)},
        "service": {k: getattr(args, k, None) for k in ("connector", "part", "note", "replaced", "old", "new")},
        "report-problem": {"connector": getattr(args, "connector", 0), "note": getattr(args, "note", "")},
    }
    if args.command == "sessions" and args.plot is not None:
        return "session_power", {"tx": args.plot}
    if args.command == "service" and args.part is not None and args.connector is None:
        raise SystemExit("evsectl service: --part needs --connector")
    return args.command.replace("-", "_"), mapping.get(args.command, {})


def show_card(card: dict[str, Any]) -> str:
    """One card read, in every format at once, as an installer compares it with the back office."""
    when = datetime.fromtimestamp(card["wall"]).strftime("%H:%M:%S")
    head = (f"card #{card['seq']} at {when} on {card['reader']}: {card['technology']}"
            f"{' ' + card['card_type'] if card['card_type'] else ''}, {card['uid_bytes']} bytes"
            f"{', SAK ' + card['sak'] if card['sak'] else ''}{', ATQA ' + card['atqa'] if card['atqa'] else ''}")
    sent = (f"{card['id_tag']} ({card['token_type']})" if card["id_tag"] is not None
            else f"nothing: {card['refused']}")
    rows = [["sent as", sent]] + [[name, value] for name, value in card["formats"].items() if name != "configured"]
    return head + "\n" + "\n".join("  " + line for line in _table(rows).splitlines())


def watch_cards(path: str, since: int | None, count: int, as_json: bool) -> int:
    """Print each card read as it comes (Ctrl-C to stop; --count to stop after that many)."""
    result = request(path, "cards", {"since": since or 0})
    print(f"card id format: {result['format']}; waiting for cards (Ctrl-C to stop)", file=sys.stderr, flush=True)
    # live by default: only cards read from now on; --since N also shows the kept ones numbered above N
    last = result["total"] if since is None else since
    shown = 0
    while True:
        for card in result["cards"]:
            if card["seq"] <= last:
                continue
            print(json.dumps(card) if as_json else show_card(card), flush=True)
            last, shown = card["seq"], shown + 1
            if count and shown >= count:
                return EXIT_OK
        time.sleep(0.3)
        result = request(path, "cards", {"since": last})


def follow_log(path: str, cargs: dict[str, Any]) -> int:
    """Print the tail, then new lines as they come (Ctrl-C to stop)."""
    result = request(path, "log", cargs)
    print("\n".join(result["lines"]), flush=True)
    total = result["total"]
    while True:
        time.sleep(0.5)
        result = request(path, "log", {"since": total})
        if result["lines"]:
            print("\n".join(result["lines"]), flush=True)
        total = result["total"]


def _selftest_ok(result: dict[str, Any]) -> bool:
    checks = [c for cid, v in result.items() for c in ([v] if cid == "estop" else v.values())]
    return all(c["ok"] for c in checks)


def main(argv: list[str] | None = None) -> int:
    """Entry point of evsectl."""
    args = build_parser().parse_args(argv)
    command, cargs = _command(args)
    watch = getattr(args, "watch", False)
    try:
        if command == "log" and getattr(args, "follow", False):
            return follow_log(args.socket, cargs)
        if command == "card" and watch:
            return watch_cards(args.socket, args.since, args.count, args.json)
        if command == "card" and not args.id_tag:
            print("evsectl: card needs an id to present, or --watch", file=sys.stderr)
            return EXIT_USAGE
        while True:
            result = request(args.socket, command, cargs, timeout_s=60.0 if command == "selftest" else 10.0)
            if getattr(args, "csv", False):
                from agent.diag.operations import render_csv

                text = render_csv(result)
            else:
                text = json.dumps(result, indent=2, default=str) if args.json else show(command, result)
            if watch and command == "status":
                sys.stdout.write("\033[H\033[2J")  # refresh in place
            print(text, flush=True)
            if command == "selftest" and not _selftest_ok(result):
                return EXIT_ERROR
            if not watch:
                return EXIT_OK
            time.sleep(1.0)
    except CtlError as err:
        print(f"evsectl: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
