"""The Modbus device simulator against plain pymodbus clients and raw frames, over TCP and RTU on a pty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from simulator.devices.modbus_server import Faults, ModbusDeviceServer, RegisterBank, crc16, rtu_frame

TIMEOUT_S = 0.3


def make_bank() -> RegisterBank:
    bank = RegisterBank()
    bank.set_input(0, [0x4366, 0x0000, 7, 8])  # 230.0 as float32 big-endian, then two plain words
    bank.set_holding(10, [1, 2, 3])
    return bank


@pytest.fixture
async def server() -> AsyncIterator[ModbusDeviceServer]:
    srv = ModbusDeviceServer({1: make_bank(), 2: make_bank()})
    yield srv
    await srv.stop()


async def connect(
    srv: ModbusDeviceServer, kind: str, timeout_s: float = TIMEOUT_S
) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if kind == "tcp":
        port = await srv.start_tcp()
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout_s, retries=0)
    else:
        path = await srv.start_rtu()
        client = AsyncModbusSerialClient(path, framer=FramerType.RTU, timeout=timeout_s, retries=0)
    assert await client.connect()
    return client


async def read_ok(client: AsyncModbusTcpClient | AsyncModbusSerialClient, device_id: int = 1) -> list[int]:
    """Read input registers 0..1, retrying while a TCP client reconnects after a fault."""
    for _ in range(40):
        with contextlib.suppress(ModbusIOException):
            if not client.connected:
                await client.connect()
            rr = await client.read_input_registers(0, count=2, device_id=device_id)
            if not rr.isError():
                return list(rr.registers)
        await asyncio.sleep(0.05)
    raise AssertionError("server never answered again")


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_plain_client_reads_and_writes(server: ModbusDeviceServer, kind: str) -> None:
    writes: list[tuple[int, list[int]]] = []
    server.banks[1].on_write = lambda address, values: writes.append((address, values))
    client = await connect(server, kind)
    try:
        rr = await client.read_input_registers(0, count=4, device_id=1)
        assert rr.registers == [0x4366, 0, 7, 8]
        assert client.convert_from_registers(rr.registers[:2], client.DATATYPE.FLOAT32) == 230.0
        rr = await client.read_holding_registers(10, count=3, device_id=2)
        assert rr.registers == [1, 2, 3]
        rr = await client.write_registers(10, [70, 80], device_id=1)
        assert not rr.isError()
        rr = await client.write_register(12, 90, device_id=1)
        assert not rr.isError()
        assert server.banks[1].get_holding(10, 3) == [70, 80, 90]
        assert server.banks[2].get_holding(10, 3) == [1, 2, 3]
        assert writes == [(10, [70, 80]), (12, [90])]
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_undefined_address_is_exception_2(server: ModbusDeviceServer, kind: str) -> None:
    client = await connect(server, kind)
    try:
        rr = await client.read_input_registers(3, count=2, device_id=1)  # 3 defined, 4 not
        assert rr.isError() and rr.exception_code == 2
        rr = await client.read_holding_registers(0, count=1, device_id=1)
        assert rr.isError() and rr.exception_code == 2
        rr = await client.write_register(20, 1, device_id=1)
        assert rr.isError() and rr.exception_code == 2
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_unknown_device_id_gets_no_answer(server: ModbusDeviceServer, kind: str) -> None:
    client = await connect(server, kind)
    try:
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=2, device_id=3)
        assert await read_ok(client, device_id=2) == [0x4366, 0]  # the line still works for others
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
@pytest.mark.parametrize("fault", ["silent", "slow", "crc_error", "garbage"])
async def test_fault_fails_a_plain_client_then_clears(
    server: ModbusDeviceServer, kind: str, fault: str
) -> None:
    client = await connect(server, kind)
    try:
        if fault == "slow":
            server.faults.slow_s = TIMEOUT_S * 3
        else:
            setattr(server.faults, fault, True)
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=2, device_id=1)
        server.faults = Faults()
        if fault == "slow":
            await asyncio.sleep(TIMEOUT_S * 3)  # let the late answer arrive and be discarded
        assert await read_ok(client) == [0x4366, 0]
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_slow_answer_within_timeout_arrives(kind: str) -> None:
    srv = ModbusDeviceServer({1: make_bank()}, Faults(slow_s=0.1))
    client = await connect(srv, kind, timeout_s=3.0)
    try:
        rr = await client.read_input_registers(0, count=2, device_id=1)
        assert rr.registers == [0x4366, 0]
    finally:
        client.close()
        await srv.stop()


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_exception_fault_answers_that_code(server: ModbusDeviceServer, kind: str) -> None:
    client = await connect(server, kind)
    try:
        server.faults.exception_code = 4
        rr = await client.read_input_registers(0, count=2, device_id=1)
        assert rr.isError() and rr.exception_code == 4
        rr = await client.read_holding_registers(10, count=1, device_id=2)
        assert rr.isError() and rr.exception_code == 4
        server.faults.exception_code = None
        assert await read_ok(client) == [0x4366, 0]
    finally:
        client.close()


# ---------------------------------------------------------------- raw frames


async def rtu_exchange(path: str, request: bytes, want: int, timeout_s: float = 1.0) -> bytes:
    """Write a raw RTU request to the pty and collect up to `want` bytes of answer."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    got = bytearray()
    event = asyncio.Event()

    def on_read() -> None:
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(fd, 256))
        if len(got) >= want:
            event.set()

    loop.add_reader(fd, on_read)
    try:
        os.write(fd, request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return bytes(got)


async def tcp_exchange(port: int, request: bytes, timeout_s: float = 1.0) -> bytes:
    """Send a raw MBAP request and return whatever arrives within the timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        got = b""
        with contextlib.suppress(TimeoutError):
            while len(got) < 256:
                chunk = await asyncio.wait_for(reader.read(256), timeout_s)
                if not chunk:
                    break
                got += chunk
                timeout_s = 0.1  # the rest of a frame follows at once
        return got
    finally:
        writer.close()


READ_2 = bytes((1, 4, 0, 0, 0, 2))  # [addr][fc=4][address:2][count:2]


async def test_rtu_raw_frames(server: ModbusDeviceServer) -> None:
    path = await server.start_rtu()
    good = await rtu_exchange(path, rtu_frame(READ_2), 9)
    assert good == rtu_frame(bytes((1, 4, 4, 0x43, 0x66, 0, 0)))
    server.faults.crc_error = True
    bad = await rtu_exchange(path, rtu_frame(READ_2), 9)
    assert bad[:-2] == good[:-2] and struct.unpack("<H", bad[-2:])[0] != crc16(bad[:-2])
    server.faults = Faults(exception_code=6)
    assert await rtu_exchange(path, rtu_frame(READ_2), 5) == rtu_frame(bytes((1, 0x84, 6)))
    server.faults = Faults(garbage=True)
    garbage = await rtu_exchange(path, rtu_frame(READ_2), 7)
    assert len(garbage) == 7 and garbage[0] == 0xFF
    server.faults = Faults()
    # a request with a broken CRC is ignored, as a real slave ignores line noise
    assert await rtu_exchange(path, READ_2 + b"\x00\x00", 1, timeout_s=0.3) == b""
    assert await rtu_exchange(path, rtu_frame(READ_2), 9) == good


async def test_tcp_raw_frames(server: ModbusDeviceServer) -> None:
    port = await server.start_tcp()
    request = struct.pack(">HHHB", 0x1234, 0, 6, 1) + READ_2[1:]  # [tid][pid][len][uid][pdu]
    good = await tcp_exchange(port, request)
    assert good == struct.pack(">HHHB", 0x1234, 0, 7, 1) + bytes((4, 4, 0x43, 0x66, 0, 0))
    server.faults.exception_code = 4
    assert await tcp_exchange(port, request) == struct.pack(">HHHBBB", 0x1234, 0, 3, 1, 0x84, 4)
    server.faults = Faults(crc_error=True)
    bad = await tcp_exchange(port, request, timeout_s=0.3)
    assert bad[6:] == good[6:] and bad[4:6] != good[4:6]
    server.faults = Faults(silent=True)
    assert await tcp_exchange(port, request, timeout_s=0.3) == b""


# ---------------------------------------------------------------- hostile switches, seen as raw bytes

# read input 0..1 of unit 1: [tid=7][pid=0][len=6][uid=1][fc=4][addr=0][count=2]
TCP_REQUEST = struct.pack(">HHHBBHH", 7, 0, 6, 1, 4, 0, 2)
TCP_HONEST = struct.pack(">HHHBBB", 7, 0, 7, 1, 4, 4) + bytes.fromhex("43660000")


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        ("wrong_function", TCP_HONEST[:7] + b"\x03" + TCP_HONEST[8:]),
        ("wrong_unit", TCP_HONEST[:6] + b"\x02" + TCP_HONEST[7:]),
        ("wrong_transaction", b"\x00\x08" + TCP_HONEST[2:]),
        ("byte_count", TCP_HONEST[:8] + b"\x02" + TCP_HONEST[9:]),
        ("truncate", TCP_HONEST[: len(TCP_HONEST) // 2]),
        ("close_mid_frame", TCP_HONEST[: len(TCP_HONEST) // 2]),
    ],
)
async def test_hostile_tcp_answers_are_well_formed_lies(server: ModbusDeviceServer, switch: str,
                                                        expected: bytes) -> None:
    port = await server.start_tcp()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(TCP_REQUEST)
        assert await asyncio.wait_for(reader.read(64), 2.0) == TCP_HONEST
        setattr(server.faults, switch, True)
        writer.write(TCP_REQUEST)
        await writer.drain()
        got = b""
        with contextlib.suppress(TimeoutError):
            while len(got) < len(expected):
                chunk = await asyncio.wait_for(reader.read(64), 0.5)
                if not chunk:
                    break
                got += chunk
        assert got == expected
        if switch == "close_mid_frame":
            assert await asyncio.wait_for(reader.read(64), 2.0) == b""  # then the connection closes
    finally:
        writer.close()


@pytest.mark.parametrize("switch", ["wrong_function", "wrong_unit", "byte_count"])
async def test_hostile_rtu_answers_keep_a_valid_crc(server: ModbusDeviceServer, switch: str) -> None:
    path = await server.start_rtu()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        setattr(server.faults, switch, True)
        os.write(fd, rtu_frame(bytes.fromhex("010400000002")))
        got = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while len(got) < 9 and loop.time() < deadline:
            with contextlib.suppress(BlockingIOError):
                got += os.read(fd, 64)
            await asyncio.sleep(0.01)
        honest = bytes.fromhex("01040443660000")
        body = {"wrong_function": b"\x01\x03" + honest[2:], "wrong_unit": b"\x02" + honest[1:],
                "byte_count": honest[:2] + b"\x02" + honest[3:]}[switch]
        assert got == rtu_frame(body)
        assert crc16(got[:-2]) == struct.unpack("<H", got[-2:])[0]
    finally:
        os.close(fd)
