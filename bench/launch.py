"""Run the real daemon (`agent.daemon.main`) with the bench's instruments beside it, in the same process.

Usage: python -m bench.launch [--modules FILE] [--estop FILE] -- EVSE-AGENT-ARGS...

- `--modules FILE`: on SIGUSR1, write the names in the daemon's `sys.modules` to FILE (one per line, in
  import order): the idle RSS baseline imports exactly these.
- `--estop FILE`: on SIGUSR2, press the e-stop `ESTOP_REPS` times from a thread of its own, as a pin library
  delivers an edge, and write the latencies (ms) to FILE as JSON. See `EstopProbe`.

Nothing of the daemon is changed: it runs as `evse-agent` runs it; the handlers only read.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

ESTOP_REPS = 100
EDGE_GAP_S = (0.010, 0.030)  # random wait before each edge: no phase lock with the event loop's work
COIL_TIMEOUT_S = 1.0
RELEASE_SETTLE_S = 0.040  # the driver's debounce is 20 ms by default


def runqueue_wait_s() -> float | None:
    """Seconds this thread has waited for a core since it started (Linux schedstat); None where unavailable."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def write_modules(path: Path) -> None:
    """The module names loaded right now (import order), atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(list(sys.modules)) + "\n")
    tmp.replace(path)


class EstopProbe:
    """Press the agent's e-stop from a separate thread and time the contactor coil going low.

    The edge thread sleeps until a chosen instant (releasing the interpreter lock, as a pin library's C thread
    waits for an interrupt), then drives the e-stop input: the driver's callback runs in that thread, as it
    does with real pins. The edge is taken at the chosen instant, so the wait for the interpreter lock after
    waking counts. The coil's fall is timestamped inside the pin write itself (the callback thread holds the
    lock then): no polling thread competes with the agent.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._fell: float | None = None
        self._fell_runqueue: float | None = None
        self._edge_thread = 0
        self._running = threading.Lock()

    def _objects(self) -> tuple[Any, Any, Any]:
        from drivers.gpio import GpioContactor, GpioEmergencyStop

        estops = [o for o in gc.get_objects() if isinstance(o, GpioEmergencyStop)]
        contactors = [o for o in gc.get_objects() if isinstance(o, GpioContactor) and o in estops[0]._contactors]
        if not estops or not contactors:
            raise RuntimeError("no e-stop bound to a contactor in this agent")
        contactor = contactors[0]
        output = contactor._output
        if output is None:
            raise RuntimeError("the contactor is released")
        return estops[0], contactor, output.pin

    def run(self) -> None:
        """ESTOP_REPS presses; the result file gets {"ms": [...], "skipped": n} or {"error": ...}."""
        if not self._running.acquire(blocking=False):
            return
        try:
            result: dict[str, Any] = self._presses()
        except Exception as err:
            result = {"error": repr(err)[:300]}
        finally:
            self._running.release()
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(self.out)

    def _presses(self) -> dict[str, Any]:
        estop, contactor, coil = self._objects()
        edge_pin = estop._input.pin
        released = bool(edge_pin.state)  # the level now; a press drives the other one, whatever the wiring
        original = coil._change_state

        def timed_change(value: Any) -> Any:
            if not value and self._fell is None:
                self._fell = time.perf_counter()
                # the driver's callback runs in the edge thread: that thread's own wait for a core, else none
                self._fell_runqueue = runqueue_wait_s() if threading.get_ident() == self._edge_thread else None
            return original(value)

        coil._change_state = timed_change  # instance attribute: only this pin, only while probing
        phase = random.Random(11)
        self._edge_thread = threading.get_ident()
        samples: list[float] = []
        runqueue: list[float] = []  # per sample: how long of it the edge thread waited for a core
        skipped = 0
        try:
            for _ in range(ESTOP_REPS):
                contactor.close()
                if not coil.state:
                    skipped += 1  # the agent opened it meanwhile (interlock or its own decision)
                    continue
                self._fell = self._fell_runqueue = None
                edge_at = time.perf_counter() + phase.uniform(*EDGE_GAP_S)
                waited = runqueue_wait_s()  # asleep until edge_at: no wait for a core accrues before the edge
                time.sleep(max(0.0, edge_at - time.perf_counter()))
                edge_pin.drive_low() if released else edge_pin.drive_high()
                deadline = time.perf_counter() + COIL_TIMEOUT_S
                while self._fell is None and time.perf_counter() < deadline:
                    time.sleep(0.001)
                fell = self._fell
                waited_after = self._fell_runqueue
                if fell is None:
                    raise RuntimeError("the coil did not fall within 1 s of the e-stop edge")
                if fell < edge_at:
                    skipped += 1  # fell before the edge: not the e-stop's doing
                else:
                    samples.append((fell - edge_at) * 1000)
                    if waited is not None and waited_after is not None:
                        runqueue.append((waited_after - waited) * 1000)
                edge_pin.drive_high() if released else edge_pin.drive_low()
                time.sleep(RELEASE_SETTLE_S)
        finally:
            del coil._change_state
            contactor.open()
        result: dict[str, Any] = {"ms": samples, "skipped": skipped}
        if len(runqueue) == len(samples):
            result["runqueue_ms"] = runqueue
        return result


def main(argv: list[str] | None = None) -> int:
    """Install the handlers, then run the daemon with the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m bench.launch")
    parser.add_argument("--modules", type=Path)
    parser.add_argument("--estop", type=Path)
    parser.add_argument("agent_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    agent_args = [a for a in args.agent_args if a != "--"]
    if args.modules is not None:
        modules_file: Path = args.modules

        def dump(signum: int, frame: FrameType | None) -> None:
            write_modules(modules_file)

        signal.signal(signal.SIGUSR1, dump)
    if args.estop is not None:
        probe = EstopProbe(args.estop)

        def press(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=probe.run, name="bench-estop", daemon=True).start()

        signal.signal(signal.SIGUSR2, press)
    from agent.daemon import main as agent_main

    return agent_main(agent_args)


if __name__ == "__main__":
    sys.exit(main())
