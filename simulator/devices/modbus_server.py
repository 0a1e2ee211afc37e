"""A Modbus device simulator: pymodbus's own server in the slave role, behind fault-injecting transports.

Layout (bellows style: faults are transport wrappers, the protocol server stays honest):

    driver --TCP--> [fault proxy] --TCP--> pymodbus ModbusTcpServer  --\
    driver --pty--> [fault bridge] --pty--> pymodbus ModbusSerialServer --> BankContext -> RegisterBank per id

Both servers share one datastore (`BankContext`) that reads the `RegisterBank`s directly, so a value set
by the simulator is seen by the next request. An address that a bank does not define answers Modbus
exception 2, as a real meter does. A device id without a bank gets no answer at all (RS-485 multi-drop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus_frames import (
    MBAP_LEN,
    READ_FCS,
    crc16,
    rtu_frame,
    rtu_request_length,
    rtu_response_length,
)

LOGGER = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_S = 2.0  # the internal pymodbus server answers in microseconds; this only guards a hang
RTU_GAP_S = 0.02  # a pty delivers a frame in one write; this gap ends a frame of unknown length


class RegisterBank:
    """The registers of one Modbus device id: holding (fc 3/6/16) and input (fc 4) registers."""

    def __init__(self) -> None:
        self.holding: dict[int, int] = {}
        self.input: dict[int, int] = {}
        self.on_write: Callable[[int, list[int]], None] | None = None

    @staticmethod
    def _store(table: dict[int, int], address: int, values: Sequence[int]) -> None:
        for offset, value in enumerate(values):
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"register 0x{address + offset:04X}: {value} is not a 16-bit value")
            table[address + offset] = value

    def set_input(self, address: int, values: Sequence[int]) -> None:
        """Define or update input registers from `address` on."""
        self._store(self.input, address, values)

    def set_holding(self, address: int, values: Sequence[int]) -> None:
        """Define or update holding registers from `address` on."""
        self._store(self.holding, address, values)

    def get_holding(self, address: int, count: int) -> list[int]:
        """Return `count` holding registers; KeyError if one is not defined."""
        return [self.holding[address + i] for i in range(count)]


@dataclass
class Faults:
    """Mutable fault switches, flipped by tests and by the simulator's control API."""

    silent: bool = False  # no answer at all
    slow_s: float = 0.0  # answer after this delay
    crc_error: bool = False  # RTU: bad CRC; TCP: corrupted MBAP length
    garbage: bool = False  # random bytes instead of a frame
    exception_code: int | None = None  # answer every request with this Modbus exception code
    # Hostile answers: well-formed frames (valid CRC, consistent MBAP length) that answer the wrong question.
    wrong_function: bool = False  # a read-holding answer to a read-input request and vice versa
    wrong_unit: bool = False  # the answer carries another unit id
    wrong_transaction: bool = False  # TCP: the answer carries another transaction id
    byte_count: bool = False  # the byte count field says two bytes fewer than the data holds
    truncate: bool = False  # only the first half of the answer, then silence
    close_mid_frame: bool = False  # TCP: half the answer, then the connection closes (RTU: as truncate)


def mutate_pdu(pdu: bytes, faults: Faults) -> bytes:
    """Apply the hostile PDU-level faults to an honest response PDU."""
    if faults.wrong_function and pdu:
        swapped = {3: 4, 4: 3, 16: 6, 6: 16}.get(pdu[0] & 0x7F, pdu[0] & 0x7F)
        pdu = bytes((swapped | (pdu[0] & 0x80),)) + pdu[1:]
    if faults.byte_count and len(pdu) >= 2 and pdu[0] in READ_FCS:
        pdu = pdu[:1] + bytes(((pdu[1] - 2) & 0xFF,)) + pdu[2:]
    return pdu


def other_unit(unit: int) -> int:
    """A unit id that is not `unit` (the next one on the bus)."""
    return unit % 247 + 1


class BankContext:
    """A pymodbus datastore (the interface its PDUs call) backed by RegisterBanks."""

    def __init__(self, banks: dict[int, RegisterBank]) -> None:
        self.banks = banks

    def _bank(self, device_id: int) -> RegisterBank:
        bank = self.banks.get(device_id)
        if bank is None:
            raise NoSuchIdException(f"no device {device_id}")
        return bank

    def device_ids(self) -> list[int]:
        """Return the served device ids."""
        return list(self.banks)

    async def async_getValues(  # pymodbus's name
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        """Return registers, or an exception code for an undefined address."""
        bank = self._bank(device_id)
        if func_code == 4:
            table = bank.input
        elif func_code in (3, 6, 16, 23):
            table = bank.holding
        else:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            return [table[address + i] for i in range(count)]
        except KeyError:
            return ExcCodes.ILLEGAL_ADDRESS

    async def async_setValues(  # pymodbus's name
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Write holding registers the bank defines, then tell the device model."""
        bank = self._bank(device_id)
        if func_code not in (6, 16, 23):
            return ExcCodes.ILLEGAL_FUNCTION
        regs = [int(v) for v in values]
        if any(address + i not in bank.holding for i in range(len(regs))):
            return ExcCodes.ILLEGAL_ADDRESS
        bank.set_holding(address, regs)
        if bank.on_write is not None:
            try:
                bank.on_write(address, regs)
            except Exception:  # a model bug must not kill the server; the master sees exception 4
                LOGGER.exception("on_write handler failed for device %d @0x%04X", device_id, address)
                return ExcCodes.DEVICE_FAILURE
        return None


def _random_garbage(n: int) -> bytes:
    # 0xFF first: never a valid unit id or MBAP start that could accidentally parse as a real frame
    return b"\xff" + os.urandom(n - 1)


class ModbusDeviceServer:
    """Serves RegisterBanks over Modbus TCP and/or RTU on a pty, with fault injection."""

    def __init__(self, banks: dict[int, RegisterBank], faults: Faults | None = None) -> None:
        self.banks = banks
        self.faults = faults if faults is not None else Faults()
        self.context = BankContext(banks)
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self._proxy: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fds: list[int] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._rtu: _RtuBridge | None = None

    def _adopt(self, server: ModbusTcpServer | ModbusSerialServer) -> None:
        # pymodbus insists on a SimDevice at construction; the requests then go to the banks instead.
        server.context = self.context  # type: ignore[assignment]
        self._servers.append(server)

    @staticmethod
    def _placeholder() -> SimDevice:
        return SimDevice(0, simdata=[SimData(0, values=0)])

    # ---------------------------------------------------------------- TCP
    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve Modbus TCP on host:port (0 = ephemeral); return the bound port."""
        inner = ModbusTcpServer(
            self._placeholder(), framer=FramerType.SOCKET, address=("127.0.0.1", 0),
            ignore_missing_devices=True,
        )
        self._adopt(inner)
        await inner.serve_forever(background=True)
        inner_port = inner.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._proxy = await asyncio.start_server(
            lambda r, w: self._proxy_client(r, w, inner_port), host, port
        )
        bound: int = self._proxy.sockets[0].getsockname()[1]
        LOGGER.debug("Modbus TCP simulator on %s:%d (pymodbus on %d)", host, bound, inner_port)
        return bound

    async def _proxy_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            inner_port: int) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", inner_port)
            while True:
                header = await reader.readexactly(MBAP_LEN)
                _tid, _pid, length, uid = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                reply = await self._tcp_reply(header, pdu, up_reader, up_writer, uid)
                if reply:
                    writer.write(reply)
                    await writer.drain()
                if reply and self.faults.close_mid_frame:
                    break  # the connection drops in the middle of the frame
        except (asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the master hung up, or the simulator stops
        finally:
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _tcp_reply(self, header: bytes, pdu: bytes, up_reader: asyncio.StreamReader,
                         up_writer: asyncio.StreamWriter, uid: int) -> bytes | None:
        faults = self.faults
        if faults.silent or uid not in self.banks:
            return None
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.garbage:
            return _random_garbage(9)
        if faults.exception_code is not None:
            # [tid:2][pid:2][len=3][uid][fc|0x80][code]
            return header[:4] + struct.pack(">HBBB", 3, uid, pdu[0] | 0x80, faults.exception_code)
        up_writer.write(header + pdu)
        await up_writer.drain()
        try:
            rheader = await asyncio.wait_for(up_reader.readexactly(MBAP_LEN), UPSTREAM_TIMEOUT_S)
            rlen = struct.unpack(">H", rheader[4:6])[0]
            rpdu = await asyncio.wait_for(up_reader.readexactly(rlen - 1), UPSTREAM_TIMEOUT_S)
        except TimeoutError:
            return None
        if faults.crc_error:
            # TCP has no CRC; a corrupted MBAP length is the nearest equivalent: a wrong-sized frame
            rheader = rheader[:4] + struct.pack(">H", rlen + 7) + rheader[6:]
        tid, pid, length, r_uid = struct.unpack(">HHHB", rheader)
        if faults.wrong_transaction:
            tid = (tid + 1) & 0xFFFF
        if faults.wrong_unit:
            r_uid = other_unit(r_uid)
        mutated = mutate_pdu(rpdu, faults)
        if mutated != rpdu:
            length, rpdu = len(mutated) + 1, mutated
        reply = struct.pack(">HHHB", tid, pid, length, r_uid) + rpdu
        if faults.truncate or faults.close_mid_frame:
            return reply[: len(reply) // 2]
        return reply

    # ---------------------------------------------------------------- RTU
    async def start_rtu(self) -> str:
        """Serve Modbus RTU on a pseudo-terminal; return the path the driver opens as its serial port."""
        outer_master, outer_slave = os.openpty()
        inner_master, inner_slave = os.openpty()
        for fd in (outer_slave, inner_slave):
            tty.setraw(fd)  # no echo, no line discipline: bytes pass through untouched
        # Keep the slave ends open ourselves: a master reads EIO whenever no slave is open.
        self._fds += [outer_master, outer_slave, inner_master, inner_slave]
        for fd in (outer_master, inner_master):
            os.set_blocking(fd, False)
        inner = ModbusSerialServer(
            self._placeholder(), framer=FramerType.RTU, port=os.ttyname(inner_slave),
            baudrate=9600, ignore_missing_devices=True,
        )
        self._adopt(inner)
        await inner.serve_forever(background=True)
        self._rtu = _RtuBridge(self, outer_master, inner_master)
        self._rtu.start()
        path = os.ttyname(outer_slave)
        LOGGER.debug("Modbus RTU simulator on %s", path)
        return path

    async def stop(self) -> None:
        """Stop every transport and the pymodbus servers."""
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._rtu is not None:
            await self._rtu.stop()
            self._rtu = None
        for server in self._servers:
            await server.shutdown()
        self._servers.clear()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


@dataclass
class _RtuBridge:
    """Copies RTU frames between the driver's pty and pymodbus's pty, injecting faults on the way."""

    owner: ModbusDeviceServer
    outer: int  # master fd of the pty the driver opened
    inner: int  # master fd of the pty the pymodbus serial server opened
    _requests: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    _inbuf: bytearray = field(default_factory=bytearray)
    _respbuf: bytearray = field(default_factory=bytearray)
    _resp_event: asyncio.Event = field(default_factory=asyncio.Event)
    _gap_timer: asyncio.TimerHandle | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin copying."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.outer, self._on_outer)
        loop.add_reader(self.inner, self._on_inner)
        self._task = loop.create_task(self._serve())

    async def stop(self) -> None:
        """Stop copying."""
        loop = asyncio.get_running_loop()
        for fd in (self.outer, self.inner):
            loop.remove_reader(fd)
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return b""

    def _on_outer(self) -> None:
        self._inbuf += self._read(self.outer)
        self._split_requests()
        if self._inbuf:
            # bytes that do not make a known frame yet: a line gap ends them (and they are then dropped)
            if self._gap_timer is not None:
                self._gap_timer.cancel()
            self._gap_timer = asyncio.get_running_loop().call_later(RTU_GAP_S, self._flush_partial)

    def _split_requests(self) -> None:
        while True:
            length = rtu_request_length(bytes(self._inbuf))
            if length is None or len(self._inbuf) < length:
                return
            frame = bytes(self._inbuf[:length])
            if crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
                del self._inbuf[0]  # resynchronise one byte at a time, as a slave UART would
                continue
            del self._inbuf[:length]
            self._requests.put_nowait(frame)

    def _flush_partial(self) -> None:
        if self._inbuf:
            LOGGER.debug("dropping %d unframed bytes on the RTU line", len(self._inbuf))
            self._inbuf.clear()

    def _on_inner(self) -> None:
        self._respbuf += self._read(self.inner)
        self._resp_event.set()

    def _write(self, fd: int, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, data)

    async def _serve(self) -> None:
        while True:
            frame = await self._requests.get()
            try:
                reply = await self._answer(frame)
            except Exception:  # the bridge must outlive any single bad frame
                LOGGER.exception("RTU bridge failed on %s", frame.hex())
                reply = None
            if reply:
                self._write(self.outer, reply)

    async def _answer(self, frame: bytes) -> bytes | None:
        faults = self.owner.faults
        addr, fc = frame[0], frame[1]
        if addr not in self.owner.banks or faults.silent:
            return None  # another slave's id on a multi-drop bus, or a dead device: silence
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.garbage:
            return _random_garbage(7)
        if faults.exception_code is not None:
            return rtu_frame(bytes((addr, fc | 0x80, faults.exception_code)))  # [addr][fc|0x80][code][crc]
        reply = await self._forward(frame)
        if reply is None:
            return None
        unit = other_unit(reply[0]) if faults.wrong_unit else reply[0]
        pdu = mutate_pdu(reply[1:-2], faults)
        if (unit, pdu) != (reply[0], reply[1:-2]):
            reply = rtu_frame(bytes((unit,)) + pdu)
        if faults.crc_error:
            reply = reply[:-2] + bytes((reply[-2] ^ 0xFF, reply[-1]))
        if faults.truncate or faults.close_mid_frame:
            reply = reply[: len(reply) // 2]
        return reply

    async def _forward(self, frame: bytes) -> bytes | None:
        self._respbuf.clear()
        self._resp_event.clear()
        self._write(self.inner, frame)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UPSTREAM_TIMEOUT_S
        while True:
            length = rtu_response_length(bytes(self._respbuf))
            if length is not None and len(self._respbuf) >= length:
                reply = bytes(self._respbuf[:length])
                self._respbuf.clear()
                return reply
            remaining = deadline - loop.time()
            if remaining <= 0:
                LOGGER.warning("pymodbus serial server gave no answer to %s", frame.hex())
                return None
            self._resp_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resp_event.wait(), remaining)
