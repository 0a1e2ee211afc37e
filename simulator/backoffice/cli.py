"""Command line of the local back office: `evse-sim backoffice ...` (wired through add_cli/run_cli) or
`python -m simulator.backoffice`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.backoffice.server import BOOT_STATUSES, BackOffice

LOGGER = logging.getLogger(__name__)


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `backoffice` sub-command to an argparse sub-parsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backoffice", help="run the local OCPP 1.6J back office with its HTTP control API"
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_cli)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="OCPP websocket port (0 = any free port)")
    parser.add_argument("--control-port", type=int, default=9001, help="HTTP control API port (0 = any)")
    parser.add_argument("--id-tag", action="append", default=[], metavar="TAG=STATUS", help="known id tag")
    parser.add_argument(
        "--parent-id", action="append", default=[], metavar="TAG=PARENT", help="parent id tag"
    )
    parser.add_argument("--heartbeat-interval", type=int, default=300, help="interval sent when Accepted (s)")
    parser.add_argument("--boot-status", default="Accepted", choices=BOOT_STATUSES)
    parser.add_argument("--pending-boots", type=int, default=0, help="answer Pending to the first N boots")
    parser.add_argument("--boot-retry-interval", type=int, default=10, help="interval sent with Pending (s)")
    parser.add_argument("--vendor-id", action="append", default=None, help="DataTransfer vendor ids accepted")
    parser.add_argument("--password", action="append", default=[], metavar="CP=PASSWORD", help="Basic auth")
    parser.add_argument("--log", type=Path, default=None, help="append every frame as JSON lines here")
    parser.add_argument(
        "--ocpp", action="append", default=None, choices=("1.6", "2.0.1"), dest="ocpp_versions",
        help="an OCPP version served, in the office's order (default both: 1.6, 2.0.1)",
    )
    parser.add_argument(
        "--version-order", default="station", choices=("station", "office"),
        help="who picks when a station offers both versions (default: the station's order)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run the back office until SIGINT/SIGTERM; prints one JSON line with the bound ports first."""
    try:
        return asyncio.run(serve_forever(args))
    except ValueError as err:
        LOGGER.error("%s", err)
        return 2


async def serve_forever(args: argparse.Namespace) -> int:
    """Start the back office and its control API from parsed arguments and run until a signal."""
    office = BackOffice(
        id_tags=_parse_kv(args.id_tag, "--id-tag"),
        parent_ids=_parse_kv(args.parent_id, "--parent-id"),
        heartbeat_interval=args.heartbeat_interval,
        boot_status=args.boot_status,
        pending_boots=args.pending_boots,
        boot_retry_interval=args.boot_retry_interval,
        vendor_ids=args.vendor_id if args.vendor_id is not None else ("evse-agent",),
        passwords=_parse_kv(args.password, "--password") or None,
        log_path=args.log,
        ocpp_versions=args.ocpp_versions or ("1.6", "2.0.1"),
        version_order=args.version_order,
    )
    port = await office.start(args.host, args.port)
    control_port = await office.start_control(args.host, args.control_port)
    print(
        json.dumps(
            {"ocpp_url": f"ws://{args.host}:{port}/ocpp", "ocpp_port": port, "control_port": control_port}
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await office.stop()
    return 0


def main_backoffice(argv: list[str] | None = None) -> int:
    """Entry point for `python -m simulator.backoffice`."""
    from simulator import backoffice  # the package docstring's first line describes the program

    parser = argparse.ArgumentParser(prog="evse-sim backoffice", description=backoffice.__doc__.splitlines()[0])
    _add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cli(parser.parse_args(argv))


def _parse_kv(items: Iterable[str], what: str) -> dict[str, str]:
    """Parse repeated KEY=VALUE command-line items."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        result[key] = value
    return result
