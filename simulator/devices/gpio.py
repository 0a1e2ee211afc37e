"""GPIO between two processes: a gpiozero pin factory in the agent, a pin server in the simulator.

    agent process                                          simulator process (asyncio)
    gpiozero devices -> SimPinFactory (SimPin per pin) <--TCP, JSON lines--> GpioPinServer -> world wiring
                        reader thread applies inputs                         mirror(), welded(), stuck_open()

Wire format, one JSON object per line:
    agent -> sim   {"op": "hello", "outputs": {"17": true}}   full output snapshot after every (re)connect
                   {"op": "out", "pin": 17, "level": true}     an output pin changed level (BCM numbering)
                   {"op": "release", "pin": 17}               an output pin was closed (back to input)
    sim -> agent   {"op": "in", "pin": 4, "level": false}     an input pin's level; all of them on connect

The agent side is thread-based like gpiozero: no event loop is needed, callbacks (`when_pressed`) run in
the factory's reader thread, and a missing simulator never blocks a pin write (writes are queued and
the snapshot is re-sent when the simulator comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero.exc import BadPinFactory
from gpiozero.pins.mock import MockFactory, MockPin

LOGGER = logging.getLogger(__name__)

ENV_ADDRESS = "EVSE_SIM_GPIO"  # "127.0.0.1:PORT" of the simulator's GpioPinServer
CONNECT_TIMEOUT_S = 1.0
IO_TIMEOUT_S = 0.5  # the reader wakes this often to notice close(); a send never blocks longer
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 1.0  # the simulator restarts in well under a second; keep the gap short
MAX_LINE = 4096  # a line longer than this is not ours: drop the connection

Message = dict[str, Any]


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BadPinFactory(f"{ENV_ADDRESS} must be host:port, not {address!r}")
    return host or "127.0.0.1", int(port)


def _encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class SimPin(MockPin):
    """A mock pin whose output levels go to the simulator and whose input level comes from it."""

    factory: SimPinFactory

    def __init__(self, factory: SimPinFactory, info: Any) -> None:
        self.bcm = int(info.name[4:])  # PiPin accepts only "GPIOn" pins, so this always parses
        super().__init__(factory, info)

    def _change_state(self, value: Any) -> bool:
        changed: bool = super()._change_state(value)
        if changed and self._function == "output":
            self.factory._output_changed(self.bcm, bool(value))
        return changed

    def _set_function(self, value: str) -> None:
        previous = self._function
        super()._set_function(value)
        if value == "output":
            self.factory._output_changed(self.bcm, bool(self._state))
        elif previous == "output":
            self.factory._output_released(self.bcm)
        if value == "input":
            self.apply_sim_level()

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        # The wire's real level (from the simulator) wins over the idle level of the pull resistor.
        self.apply_sim_level()

    def apply_sim_level(self) -> None:
        """Drive this input to the level the simulator last sent, firing gpiozero's edge callbacks."""
        level = self.factory.sim_input_level(self.bcm)
        if level is None or self._function != "input":
            return
        if level:
            self.drive_high()
        else:
            self.drive_low()


class SimPinFactory(MockFactory):
    """gpiozero pin factory "evsesim": mock pins mirrored to the simulator over TCP (env EVSE_SIM_GPIO)."""

    def __init__(self, address: str | None = None, revision: str | None = None) -> None:
        address = address or os.environ.get(ENV_ADDRESS)
        if not address:
            raise BadPinFactory(f"pin factory evsesim needs {ENV_ADDRESS}=host:port of the simulator")
        self.address = _parse_address(address)
        super().__init__(revision=revision, pin_class=SimPin)
        self._pin_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._inputs: dict[int, bool] = {}
        self._outputs: dict[int, bool] = {}
        self._seq = 0  # messages up to this sequence number are covered by the last hello snapshot
        self._snapshot_seq = 0
        self._outbox: queue.SimpleQueue[tuple[int, Message] | None] = queue.SimpleQueue()
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.connects = 0
        self._reader = threading.Thread(target=self._read_loop, name="evsesim-gpio-rx", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="evsesim-gpio-tx", daemon=True)
        self._reader.start()
        self._writer.start()

    # -- gpiozero factory API

    def pin(self, name: Any, pin_class: Any = None, **kwargs: Any) -> Any:
        """Create or find a pin; locked because the reader thread looks pins up concurrently."""
        with self._pin_lock:
            return super().pin(name, pin_class=pin_class, **kwargs)

    def reset(self) -> None:
        """Forget the pins (gpiozero's test helper); the connection stays."""
        with self._pin_lock:
            super().reset()

    def close(self) -> None:
        """Release every pin, tell the simulator, and stop the threads."""
        with self._pin_lock:
            super().close()
        self._stop.set()
        self._outbox.put(None)
        self._drop_socket()
        for thread in (self._reader, self._writer):
            if thread is not threading.current_thread():
                thread.join(timeout=2 * IO_TIMEOUT_S)

    # -- state shared with the pins

    def sim_input_level(self, bcm: int) -> bool | None:
        """The level the simulator last sent for an input pin, None if it never did."""
        with self._state_lock:
            return self._inputs.get(bcm)

    def output_levels(self) -> dict[int, bool]:
        """The output pins and their levels as the simulator should see them."""
        with self._state_lock:
            return dict(self._outputs)

    def _output_changed(self, bcm: int, level: bool) -> None:
        with self._state_lock:
            self._outputs[bcm] = level
            self._seq += 1
            self._outbox.put((self._seq, {"op": "out", "pin": bcm, "level": level}))

    def _output_released(self, bcm: int) -> None:
        with self._state_lock:
            self._outputs.pop(bcm, None)
            self._seq += 1
            self._outbox.put((self._seq, {"op": "release", "pin": bcm}))

    # -- connection (threads)

    def _drop_socket(self) -> None:
        with self._send_lock:
            sock, self._sock = self._sock, None
        self.connected.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            return None
        sock.settimeout(IO_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # counted before the hello: the simulator may act on the hello before this thread runs on
        self.connects += 1
        with self._send_lock:
            with self._state_lock:
                snapshot = {str(pin): level for pin, level in self._outputs.items()}
                self._snapshot_seq = self._seq
            try:
                sock.sendall(_encode({"op": "hello", "outputs": snapshot}))
            except OSError:
                sock.close()
                return None
            self._sock = sock
        self.connected.set()
        LOGGER.info("evsesim gpio: connected to %s:%d", *self.address)
        return sock

    def _read_loop(self) -> None:
        backoff = RECONNECT_MIN_S
        while not self._stop.is_set():
            sock = self._connect()
            if sock is None:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
                continue
            backoff = RECONNECT_MIN_S
            self._receive(sock)
            self._drop_socket()
            if not self._stop.is_set():
                LOGGER.warning("evsesim gpio: lost the simulator at %s:%d, reconnecting", *self.address)

    def _receive(self, sock: socket.socket) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_LINE:
                LOGGER.error("evsesim gpio: line too long from the simulator, reconnecting")
                return
            for line in lines:
                if line.strip():
                    self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            op = message["op"]
            if op != "in":
                LOGGER.debug("evsesim gpio: ignoring %r", message)
                return
            bcm, level = int(message["pin"]), bool(message["level"])
        except (ValueError, KeyError, TypeError):
            LOGGER.error("evsesim gpio: bad message %r", line[:200])
            return
        with self._state_lock:
            self._inputs[bcm] = level
        with self._pin_lock:
            pin = next((p for p in self.pins.values() if getattr(p, "bcm", None) == bcm), None)
        if pin is not None:
            try:
                pin.apply_sim_level()  # fires when_pressed & co. in this thread, as gpiozero does
            except Exception:
                LOGGER.exception("evsesim gpio: callback for GPIO%d failed", bcm)

    def _write_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            seq, message = item
            with self._send_lock:
                sock = self._sock
                if sock is None or seq <= self._snapshot_seq:
                    continue  # not connected, or already in the hello snapshot
                try:
                    sock.sendall(_encode(message))
                except OSError:
                    # The reader sees the shutdown and reconnects; the next hello carries this level.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


@dataclass(slots=True)
class _Mirror:
    """A feedback input wired to follow an output (mirror contact, lock feedback)."""

    input_pin: int
    output_active_high: bool
    feedback_active_high: bool
    closed: bool = False


class GpioPinServer:
    """The simulator's end: sees the agent's outputs, drives its inputs, wires feedback to outputs."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._owner: dict[int, asyncio.StreamWriter] = {}
        self._outputs: dict[int, bool] = {}
        self._inputs: dict[int, bool] = {}
        self._callbacks: list[Callable[[int, bool], None]] = []
        self._mirrors: dict[int, list[_Mirror]] = {}
        self._welded: set[int] = set()
        self._stuck_open: set[int] = set()
        self._changed = asyncio.Condition()
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (export it to the agent as EVSE_SIM_GPIO=host:port)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        LOGGER.info("gpio pin server on %s:%d", host, self.port)
        return self.port

    def stop(self) -> None:
        """Stop listening and drop the agents (they reconnect by themselves when a server is back)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def wait_closed(self) -> None:
        """Wait until the connection handlers of a stopped server have finished."""
        handlers = [task for task in self._handlers if task is not asyncio.current_task()]
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)

    @property
    def connections(self) -> int:
        """How many agent processes are connected."""
        return len(self._writers)

    # -- pins

    def output_level(self, pin: int) -> bool | None:
        """The level an agent drives on an output pin, None if no agent drives it."""
        return self._outputs.get(pin)

    def input_level(self, pin: int) -> bool | None:
        """The level this server drives on an input pin, None if never set."""
        return self._inputs.get(pin)

    def set_input(self, pin: int, level: bool) -> None:
        """Drive an agent input pin (pushed now, and to every agent that connects later)."""
        level = bool(level)
        if self._inputs.get(pin) == level:
            return
        self._inputs[pin] = level
        data = _encode({"op": "in", "pin": pin, "level": level})
        for writer in list(self._writers):
            if not writer.is_closing():
                writer.write(data)

    def on_output(self, callback: Callable[[int, bool], None]) -> None:
        """Call `callback(pin, level)` whenever an agent output changes (a released pin reads False)."""
        self._callbacks.append(callback)

    async def wait_output(self, pin: int, level: bool | None, timeout_s: float = 2.0) -> None:
        """Wait until an output reaches `level` (None: released); raises TimeoutError."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self._outputs.get(pin) == level)

    # -- wiring and faults

    def mirror(
        self, output_pin: int, input_pin: int, output_active_high: bool = True,
        feedback_active_high: bool = True,
    ) -> None:
        """Make `input_pin` report whether the switch driven by `output_pin` is closed."""
        self._mirrors.setdefault(output_pin, []).append(
            _Mirror(input_pin, output_active_high, feedback_active_high)
        )
        self._update_mirrors(output_pin)

    def welded(self, output_pin: int, on: bool = True) -> None:
        """Fault: once closed, the switch stays closed whatever the output does."""
        (self._welded.add if on else self._welded.discard)(output_pin)
        self._update_mirrors(output_pin)

    def stuck_open(self, output_pin: int, on: bool = True) -> None:
        """Fault: the switch does not close when the output asks it to."""
        (self._stuck_open.add if on else self._stuck_open.discard)(output_pin)
        self._update_mirrors(output_pin)

    def _update_mirrors(self, output_pin: int) -> None:
        level = self._outputs.get(output_pin)
        for wire in self._mirrors.get(output_pin, []):
            driven = level is not None and level == wire.output_active_high
            if output_pin in self._welded and wire.closed:
                closed = True
            elif output_pin in self._stuck_open:
                closed = False
            else:
                closed = driven
            wire.closed = closed
            self.set_input(wire.input_pin, closed == wire.feedback_active_high)

    def _set_output(self, pin: int, level: bool | None, owner: asyncio.StreamWriter | None) -> None:
        previous = self._outputs.get(pin)
        if level is None:
            self._outputs.pop(pin, None)
            self._owner.pop(pin, None)
        else:
            self._outputs[pin] = level
            if owner is not None:
                self._owner[pin] = owner
        if previous == level:
            return
        self._update_mirrors(pin)
        for callback in list(self._callbacks):
            try:
                callback(pin, bool(level))
            except Exception:
                LOGGER.exception("gpio pin server: output callback failed")
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        for pin, level in self._inputs.items():
            writer.write(_encode({"op": "in", "pin": pin, "level": level}))
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                self._handle(line, writer)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as err:
            LOGGER.warning("gpio pin server: agent connection failed: %s", err)
        except asyncio.CancelledError:
            # Loop shutdown. Returning (not re-raising) because asyncio 3.11's start_server callback
            # calls task.exception() on its handler task, which raises on a cancelled task.
            pass
        finally:
            self._writers.discard(writer)
            # An agent that went away no longer drives its pins.
            for pin in [p for p, w in self._owner.items() if w is writer]:
                self._set_output(pin, None, None)
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            message = json.loads(line)
            op = message["op"]
            if op == "hello":
                outputs = {int(pin): bool(level) for pin, level in message["outputs"].items()}
                for pin in [p for p, w in self._owner.items() if w is writer and p not in outputs]:
                    self._set_output(pin, None, None)
                for pin, level in outputs.items():
                    self._set_output(pin, level, writer)
            elif op == "out":
                self._set_output(int(message["pin"]), bool(message["level"]), writer)
            elif op == "release":
                self._set_output(int(message["pin"]), None, None)
            else:
                LOGGER.debug("gpio pin server: ignoring %r", message)
        except (ValueError, KeyError, TypeError, AttributeError):
            LOGGER.error("gpio pin server: bad message %r", line[:200])
