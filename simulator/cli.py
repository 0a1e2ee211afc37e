"""`evse-sim`: the simulated charger hardware, the local back office and the end-to-end demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from importlib import resources
from pathlib import Path

LOGGER = logging.getLogger("evse-sim")
OCPP_VERSIONS = ("1.6", "2.0.1")  # what the agent's [backoffice] ocpp_version accepts


def default_scenario() -> Path:
    """The packaged demo charger config."""
    return Path(str(resources.files("simulator") / "scenarios" / "demo.toml"))


async def run_hardware(args: argparse.Namespace) -> int:
    """Start the simulated devices, write the agent config, serve until a signal."""
    from simulator.agentconfig import agent_config_text
    from simulator.hardware import SimConfigError, SimHardware, load_sim_config

    try:
        config = load_sim_config(args.config)
    except (SimConfigError, OSError) as err:
        print(f"evse-sim: {err}", file=sys.stderr)
        return 2
    if args.control_port is not None:
        config.control_port = args.control_port
    if args.rfid_model is not None:
        config.rfid_model = args.rfid_model
    hw = SimHardware(config)
    await hw.start()
    try:
        if args.write_agent_config:
            text = agent_config_text(hw, args.backoffice_url, args.state_dir or config.state_directory,
                                     ocpp_version=args.ocpp_version)
            Path(args.write_agent_config).write_text(text)
        summary = {"control": f"http://127.0.0.1:{hw.control_port}", **hw.state()}
        if args.ready_file:
            # written whole, then renamed: a reader polling for the file never sees it half written
            ready = Path(args.ready_file)
            partial = ready.with_name(ready.name + ".partial")
            partial.write_text(json.dumps(summary))
            partial.replace(ready)
        print_summary(summary, args.json)
        await wait_for_signal()
    finally:
        await hw.stop()
    return 0


def print_summary(summary: dict, as_json: bool) -> None:
    """Print what the simulator serves."""
    if as_json:
        print(json.dumps(summary), flush=True)
        return
    print(f"control API   {summary['control']}")
    print(f"GPIO pins     127.0.0.1:{summary['gpio_port']} (agent: pin_factory = \"evsesim\")")
    if summary.get("rfid"):
        print(f"RFID reader   {summary['rfid']}")
    for cid, conn in summary["connectors"].items():
        meter = conn["meter"]
        print(f"connector {cid} ({conn['kind']}): meter {meter['model']} id {meter['device_id']} at {meter['url']}")
        if "dc" in conn:
            print(f"              controller id {conn['dc']['device_id']} at {conn['dc']['url']}")
    sys.stdout.flush()


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def build_parser() -> argparse.ArgumentParser:
    """The evse-sim command line."""
    parser = argparse.ArgumentParser(prog="evse-sim", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    hw = sub.add_parser("hardware", help="serve simulated meters, controllers, GPIO and RFID")
    hw.add_argument("--config", default=str(default_scenario()), help="simulator config (TOML)")
    hw.add_argument("--write-agent-config", metavar="PATH", help="write the agent config for these devices")
    hw.add_argument("--backoffice-url", default="ws://127.0.0.1:9000/ocpp", help="URL for the agent config")
    hw.add_argument("--state-dir", help="agent state directory for the agent config")
    hw.add_argument("--ocpp-version", default="1.6", choices=OCPP_VERSIONS, help="what the agent config asks for")
    hw.add_argument("--rfid-model", choices=("rdm6300", "pn532"), help="the simulated reader (overrides [rfid] model)")
    hw.add_argument("--control-port", type=int, help="override the control API port")
    hw.add_argument("--ready-file", help="write a JSON summary here once every device listens")
    hw.add_argument("--json", action="store_true", help="print the summary as JSON")

    try:
        from simulator.backoffice import add_cli
    except ImportError:  # pragma: no cover - the back office module is part of the package
        add_cli = None
    if add_cli is not None:
        add_cli(sub)

    demo = sub.add_parser("demo", help="simulator + back office + agent playing one charging session")
    demo.add_argument("--stay", action="store_true", help="keep all three running afterwards")
    demo.add_argument("--workdir", help="where configs, state and logs go (default: a temporary folder)")
    demo.add_argument("--outage-s", type=float, default=6.0, help="back office outage mid-session")
    demo.add_argument("--charge-s", type=float, default=12.0, help="charging time before the stop")
    demo.add_argument("--ocpp", default="1.6", choices=OCPP_VERSIONS,
                      help="the OCPP version the agent and the back office speak (default 1.6)")
    demo.add_argument("--rfid", default="rdm6300", choices=("rdm6300", "pn532"),
                      help="the card reader: the 125 kHz RDM6300 (default) or a PN532 reading ISO 14443A cards")
    demo.add_argument("--signed", action="store_true",
                      help="a DC charger metered by a signing LEM DCBM; the signed data sets verified at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of evse-sim."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the simulator injects faults on purpose
    try:
        if args.command == "hardware":
            return asyncio.run(run_hardware(args))
        if args.command == "demo":
            from simulator.demo import run_demo

            return run_demo(args)
        from simulator.backoffice import run_cli

        return int(run_cli(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
