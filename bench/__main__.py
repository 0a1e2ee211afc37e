"""`python -m bench`: run every figure, print the table, write bench/results.json.

Never fails the build on a missed target; exits 1 only when a benchmark itself crashed (its row then has
value None and the error in its note).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import docgen, e2e, estop, meter, outbox, replay
from bench.common import Figure, table, write_results
from bench.rig import ResponderProc, Sim, new_office

LOGGER = logging.getLogger("bench")
HERE = Path(__file__).resolve().parent

Step = Callable[[], Awaitable[list[Figure]]]
STEPS = ["estop", "enqueue", "meter", "idle", "event", "replay", "stall", "estop-load", "queue", "ready"]


async def run(workdir: Path, only: set[str] | None) -> tuple[list[Figure], bool]:
    """Run the selected figures; returns the rows and whether any benchmark crashed."""
    rows: list[Figure] = []
    crashed = False
    office = new_office()
    await office.start()
    responder = ResponderProc()
    await responder.start()
    sim = Sim(workdir)
    shared: dict[str, Any] = {}

    def small() -> Path:  # the replay rounds' queue: Start, 2,998 MeterValues, Stop
        return e2e.make_template(workdir / "template-3k" / "agent.db", replay.COUNT)

    def big() -> Path:
        return e2e.make_template(workdir / "template-100k" / "agent.db", e2e.QUEUE_RSS_COUNT)

    try:
        await sim.start()
        steps: list[tuple[str, str, Step]] = [
            ("estop", "e-stop -> contactor open (driver)", lambda: estop.run()),
            ("enqueue", "durable enqueue", lambda: outbox.enqueue_rate(workdir)),
            ("meter", "meter block reads", lambda: meter.run()),
            ("idle", "idle footprint, e-stop idle, charging CPU and disk",
             lambda: e2e.idle_and_charging(sim, office, workdir, shared)),
            ("event", "event to wire", lambda: e2e.event_to_wire(sim, office)),
            ("replay", "replay vs raw clients, disk per message", lambda: replay.replay(sim, responder, small())),
            ("stall", "event-loop stalls, 100k queued", lambda: replay.stalls(sim, responder, big())),
            ("estop-load", "e-stop during a replay",
             lambda: replay.estop_under_load(sim, responder, big(), shared.get("idle_estop"))),
            ("queue", "RSS with 100k queued", lambda: e2e.queue_memory(sim, workdir, responder, big())),
            ("ready", "start to READY", lambda: e2e.start_to_ready(sim, workdir, big())),
        ]
        for key, title, step in steps:
            if only and key not in only:
                continue
            started = time.monotonic()
            print(f"bench: {title} ...", file=sys.stderr, flush=True)
            try:
                rows.extend(await step())
            except Exception as err:
                crashed = True
                traceback.print_exc()
                rows.append(Figure(title, None, "-", None, None, "-", None, f"benchmark crashed: {err!r}"[:300]))
            print(f"bench: {title} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    finally:
        sim.stop()
        await responder.stop()
        await office.stop()
    crashed = crashed or any(r.note.startswith("benchmark crashed") for r in rows)
    return rows, crashed


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where databases and logs go (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--only", action="append", choices=STEPS,
                        help="run only these figures (repeatable)")
    parser.add_argument("--output", type=Path, default=HERE / "results.json", help="results file")
    parser.add_argument("--doc", type=Path, default=HERE.parent / "docs" / "bench.md",
                        help="the doc whose figures table is regenerated from the results (full runs only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="evse-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        rows, crashed = asyncio.run(run(workdir, set(args.only) if args.only else None))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows))
    write_results(args.output, rows)
    if args.doc is not None and args.only is None:
        docgen.update(args.doc, rows)  # a partial run leaves the doc as the last full run wrote it
    missed = [r.figure for r in rows if r.met is False]
    print(f"\n{len(rows)} figures in {time.monotonic() - started:.0f} s; results in {args.output}"
          + (f"; targets missed: {', '.join(missed)}" if missed else "; every target met"))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
