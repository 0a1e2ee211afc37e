"""Modbus request and response frames (TCP and RTU) with strict matching of a response to its request.

Shared by the driver transport and the simulator, so the two cannot drift apart. Layouts:

    TCP: [tid:2][protocol=0:2][length:2][unit:1][pdu]        length = 1 + len(pdu)
    RTU: [unit:1][pdu][crc:2]                                  CRC-16/Modbus, low byte first
    pdu of a read (fc 3/4) response:  [fc:1][byte count:1][data:2*N]
    pdu of a write (fc 16) response:  [fc:1][address:2][quantity:2]
    pdu of an exception response:     [fc|0x80:1][exception code:1]

A mismatch raises `FrameMismatch(kind, detail)`; `kind` is one of `KINDS`, the names the transport
counts them under.
"""

from __future__ import annotations

import struct

MBAP_LEN = 7  # [tid:2][pid:2][len:2][uid:1]
MAX_PDU = 253  # Modbus application data unit limit (256 on RTU minus unit and CRC)
READ_FCS = (1, 2, 3, 4)
WRITE_SINGLE_FCS = (5, 6)
WRITE_MULTIPLE_FCS = (15, 16)
MAX_READ_REGS = 125
MAX_WRITE_REGS = 123

# Counter names, in the order evsectl shows them.
KINDS = (
    "timeout",  # no byte of an answer within the request's timeout
    "truncated",  # part of a frame, then silence or the connection closed
    "crc",  # RTU frame whose CRC does not match
    "framing",  # bytes that cannot be a response: bad MBAP header, unknown function, wrong echo
    "wrong_unit",  # a well-formed answer from another unit id
    "wrong_transaction",  # TCP: a well-formed answer to another transaction
    "wrong_function",  # e.g. a read-holding answer to a read-input request
    "byte_count",  # byte count disagrees with the data or with the registers requested
    "exception_code",  # the device answered a Modbus exception (1-6, ...)
    "io_error",  # cannot connect, or the OS reported an error
)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class FrameMismatch(Exception):
    """A response that does not answer the request; the transport turns it into a FrameError."""

    def __init__(self, kind: str, detail: str, exception_code: int | None = None) -> None:
        super().__init__(detail)
        assert kind in KINDS, kind
        self.kind = kind
        self.detail = detail
        self.exception_code = exception_code


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (poly 0xA001, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(body: bytes) -> bytes:
    """Append the CRC, low byte first as RTU sends it."""
    return body + struct.pack("<H", crc16(body))


def crc_ok(frame: bytes) -> bool:
    """True when the last two bytes are the CRC of the rest."""
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def tcp_frame(tid: int, unit: int, pdu: bytes) -> bytes:
    """Wrap a PDU in an MBAP header."""
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def read_request(function: int, address: int, count: int) -> bytes:
    """PDU of a read of `count` registers (fc 3 or 4)."""
    return struct.pack(">BHH", function, address, count)


def write_request(address: int, values: list[int]) -> bytes:
    """PDU of a write multiple registers (fc 16)."""
    return struct.pack(f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values)


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the RTU request at the start of `buf`, or None when it cannot be known yet."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in READ_FCS or fc in WRITE_SINGLE_FCS:
        return 8  # [addr][fc][addr:2][count or value:2][crc:2]
    if fc in WRITE_MULTIPLE_FCS:
        return 9 + buf[6] if len(buf) >= 7 else None  # [addr][fc][addr:2][count:2][bytes:1][data][crc:2]
    if fc == 23:
        return 13 + buf[10] if len(buf) >= 11 else None
    return None


def rtu_response_length(buf: bytes) -> int | None:
    """Length of the RTU response at the start of `buf` from its header; None when not known (yet)."""
    if len(buf) < 3:
        return None
    fc = buf[1]
    if fc & 0x80:
        return 5  # [addr][fc|0x80][code][crc:2]
    if fc in READ_FCS or fc == 23:
        return 5 + buf[2]  # [addr][fc][bytes:1][data][crc:2]
    if fc in WRITE_SINGLE_FCS or fc in WRITE_MULTIPLE_FCS:
        return 8
    return None


def _check_function(pdu: bytes, function: int) -> None:
    """Refuse an empty PDU, an exception response or another function's answer."""
    if not pdu:
        raise FrameMismatch("framing", "empty response")
    fc = pdu[0]
    if fc == function | 0x80:
        if len(pdu) != 2:
            raise FrameMismatch("byte_count", f"exception response of {len(pdu)} bytes, expected 2")
        code = pdu[1]
        name = EXCEPTION_NAMES.get(code, "unknown")
        raise FrameMismatch("exception_code", f"Modbus exception {code} ({name})", exception_code=code)
    if fc != function:
        raise FrameMismatch("wrong_function", f"answer has function code {fc}, request had {function}")


def parse_read_response(pdu: bytes, function: int, count: int) -> list[int]:
    """Registers of a read response PDU that answers `function` for `count` registers."""
    _check_function(pdu, function)
    if len(pdu) < 2:
        raise FrameMismatch("byte_count", "read response without a byte count")
    byte_count = pdu[1]
    data = pdu[2:]
    if byte_count != len(data):
        raise FrameMismatch("byte_count", f"byte count {byte_count} disagrees with {len(data)} data bytes")
    if byte_count != 2 * count:
        raise FrameMismatch("byte_count", f"{byte_count} data bytes for {count} registers requested")
    return list(struct.unpack(f">{count}H", data))


def parse_write_response(pdu: bytes, address: int, count: int) -> None:
    """Check a write-multiple response PDU echoes the request's address and quantity."""
    _check_function(pdu, 16)
    if len(pdu) != 5:
        raise FrameMismatch("byte_count", f"write response of {len(pdu)} bytes, expected 5")
    echo_address, echo_count = struct.unpack(">HH", pdu[1:])
    if (echo_address, echo_count) != (address, count):
        raise FrameMismatch(
            "framing", f"write echo {echo_count} @0x{echo_address:04X}, request was {count} @0x{address:04X}"
        )
