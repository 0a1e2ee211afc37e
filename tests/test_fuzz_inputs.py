"""Property-based fuzzing of what comes from outside: OCPP frames, RFID serial bytes, the config file.

`make test` runs a fixed, derandomized example budget (a few seconds); `make soak` runs the same
properties with a budget 25 times larger and fresh random examples each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, load_config, parse_config
from agent.hardware import ConnectorDevices, Hardware
from agent.ocpp.library import inline_schema_validation
from agent.ocpp.v16.connection import V16Connection
from agent.store import Store
from drivers.rfid import ETX, MAX_BODY, STX, UID_SIZES, FrameDecoder, encode_frame
from tests.agent.test_runtime_actuation import CountingMeter, RecordingContactor
from tests.agent.test_watchdog import CONFIG
from tests.agent.wiring import agent_for

FAST = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SOAK = settings(max_examples=300 * 25, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BUDGETS = [pytest.param(FAST, id="fast"), pytest.param(SOAK, id="soak", marks=pytest.mark.soak)]

# ---- strategies -----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(
    max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)

# Calls whose handlers have no effect outside the process (no reset, no download or upload).
VALID_CALLS: dict[str, dict[str, Any]] = {
    "ChangeAvailability": {"connectorId": 1, "type": "Inoperative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "60"},
    "ClearCache": {},
    "DataTransfer": {"vendorId": "evse-agent", "messageId": "ping", "data": "x"},
    "GetConfiguration": {"key": ["HeartbeatInterval", "NoSuchKey"]},
    "RemoteStartTransaction": {"idTag": "0F00A1B2C3", "connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 1},
    "UnlockConnector": {"connectorId": 1},
    "GetLocalListVersion": {},
    "SendLocalList": {"listVersion": 2, "updateType": "Full",
                      "localAuthorizationList": [{"idTag": "A1", "idTagInfo": {"status": "Accepted"}}]},
    "ReserveNow": {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "A1", "reservationId": 7},
    "CancelReservation": {"reservationId": 7},
    "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 3, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "chargingRateUnit": "A", "startSchedule": "2024-01-01T00:00:00Z",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}}},
    "ClearChargingProfile": {"id": 3},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 60, "chargingRateUnit": "W"},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "DeleteCertificate": {"certificateHashData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a",
                                                  "issuerKeyHash": "b", "serialNumber": "1"}},
}
actions = st.sampled_from(sorted(VALID_CALLS)) | st.text(max_size=12)
unique_ids = st.text(max_size=36)
type_ids = st.sampled_from([2, 3, 4, "2", 2.0, 0, 5, -1, None]) | json_values

ocpp_shaped = st.lists(st.one_of(type_ids, unique_ids, actions, st.dictionaries(st.text(max_size=10), json_values,
                                                                                 max_size=4), json_values),
                       min_size=0, max_size=6).map(lambda frame: json.dumps(frame))


@st.composite
def mutated_calls(draw: st.DrawFn) -> str:
    """A valid CALL with one mutation of its frame, its payload or its text."""
    action = draw(st.sampled_from(sorted(VALID_CALLS)))
    frame: list[Any] = [2, draw(unique_ids), action, json.loads(json.dumps(VALID_CALLS[action]))]
    payload = frame[3]
    how = draw(st.sampled_from(["none", "element", "drop-element", "add-element", "field", "drop-field",
                                "add-field", "truncate", "insert"]))
    if how == "element":
        frame[draw(st.integers(0, 3))] = draw(json_values)
    elif how == "drop-element":
        del frame[draw(st.integers(0, 3))]
    elif how == "add-element":
        frame.insert(draw(st.integers(0, 4)), draw(json_values))
    elif how == "field" and payload:
        payload[draw(st.sampled_from(sorted(payload)))] = draw(json_values)
    elif how == "drop-field" and payload:
        del payload[draw(st.sampled_from(sorted(payload)))]
    elif how == "add-field":
        payload[draw(st.text(max_size=10))] = draw(json_values)
    text = json.dumps(frame)
    if how == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:]
    return text


frames = st.one_of(json_values.map(json.dumps), ocpp_shaped, mutated_calls(), st.text(max_size=60))

# ---- the frame router -------------------------------------------------------------------------------------


class WireRecorder:
    """The websocket as the router sees it: what the agent sends is kept."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self) -> str:
        await asyncio.Event().wait()
        return ""


class RouterRig:
    """A real agent (fake hardware, real store) and its 1.6 router, driven one frame at a time."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        cfg = parse_config(CONFIG.format(state=tmp_path / "state"))
        self.store = Store(tmp_path / "agent.db")
        contactor = RecordingContactor()
        hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=CountingMeter(contactor),  # type: ignore[arg-type]
                                                      contactor=contactor)})  # type: ignore[arg-type]
        self.agent = agent_for(cfg, self.store, hw)
        self.wire = WireRecorder()
        inline_schema_validation()  # as the daemon does
        self.conn = V16Connection(self.agent, self.wire)

    def route(self, raw: str) -> list[list[Any]]:
        """Route one frame; the answers (CALLRESULT/CALLERROR) the agent sent for it."""
        before = len(self.wire.sent)
        self.loop.run_until_complete(self.conn.cp.route_message(raw))
        sent = [json.loads(m) for m in self.wire.sent[before:]]
        return [m for m in sent if m[0] in (3, 4)]

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.loop.run_until_complete(cancel_all())
        self.loop.close()
        self.store.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[RouterRig]:
    rig = RouterRig(tmp_path)
    yield rig
    rig.close()


class EscapeCatcher(logging.Handler):
    """Records the router's last-resort log lines: an exception that got past every rule."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(("handling a frame failed", "no answer was sent")):
            self.records.append(record.getMessage())


@pytest.fixture
def escapes() -> Iterator[EscapeCatcher]:
    catcher = EscapeCatcher()
    logger = logging.getLogger("agent.ocpp.routing")  # FrameGuard: the frame rules the 1.6 router uses
    logger.addHandler(catcher)
    yield catcher
    logger.removeHandler(catcher)


def expected_answers(raw: str) -> tuple[str | None, bool]:
    """(unique id that must be answered exactly once, or None; whether any answer at all is allowed)."""
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return None, True  # may be answered FormationViolation when the id is readable in the text
    if not (isinstance(frame, list) and len(frame) >= 2 and isinstance(frame[1], str)):
        return None, False
    if type(frame[0]) is int and frame[0] in (3, 4):
        return None, False  # a response is never answered
    if type(frame[0]) is int and frame[0] == 2:
        return frame[1], True
    return None, True


def check_router(router: RouterRig, escapes: EscapeCatcher, raw: str) -> None:
    """No exception escapes; a CALL with a readable id gets exactly one answer; a response none."""
    answers = router.route(raw)
    must, may = expected_answers(raw)
    if must is not None:
        assert len(answers) == 1 and answers[0][1] == must, (raw, answers)
    elif not may:
        assert answers == [], (raw, answers)
    else:
        assert len(answers) <= 1 and all(a[0] == 4 for a in answers), (raw, answers)
    for answer in answers:
        well_formed_error = answer[0] == 4 and len(answer) == 5 and isinstance(answer[4], dict)
        assert (answer[0] == 3 and len(answer) == 3) or well_formed_error, (raw, answer)
    assert escapes.records == [], (raw, escapes.records)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_router_random_frames(router: RouterRig, escapes: EscapeCatcher, budget: settings) -> None:
    """Random JSON, OCPP-shaped arrays, mutated valid calls and random text through the 1.6 router."""
    budget(given(frames)(lambda raw: check_router(router, escapes, raw)))()


def test_router_answers_valid_calls(router: RouterRig, escapes: EscapeCatcher) -> None:
    """The seed calls of the fuzzing are valid: each one is answered with a CALLRESULT."""
    for action, payload in VALID_CALLS.items():
        answers = router.route(json.dumps([2, f"id-{action}", action, payload]))
        assert [a[0] for a in answers] == [3], (action, answers)
    assert escapes.records == []


# ---- the RFID frame decoder -------------------------------------------------------------------------------

uids = st.sampled_from(UID_SIZES).flatmap(lambda n: st.binary(min_size=n, max_size=n))
serial_bytes = st.binary(max_size=80) | st.lists(
    st.sampled_from([bytes([STX]), bytes([ETX]), b"0", b"F", b"a", b"G", b"\xff", b"0F00A1B2C3"]), max_size=30
).map(b"".join)


def decode_in_chunks(stream: bytes, cuts: list[int]) -> tuple[list[bytes], FrameDecoder]:
    decoder = FrameDecoder()
    out: list[bytes] = []
    last = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        out += decoder.feed(stream[last:cut])
        assert len(decoder._buffer) <= MAX_BODY + 2  # a partial frame, never an unbounded buffer
        last = max(last, cut)
    return out, decoder


def check_rfid(garbage: bytes, uid: bytes, tail: bytes, cuts: list[int]) -> None:
    """Any bytes decode without error, in any chunking, and a valid frame after garbage is found."""
    stream = garbage + encode_frame(uid) + tail
    whole, _ = decode_in_chunks(stream, [])
    chunked, _ = decode_in_chunks(stream, cuts)
    assert whole == chunked
    assert uid in whole
    for found in whole:
        assert len(found) in UID_SIZES
    for found in decode_in_chunks(garbage + tail, cuts)[0]:  # what noise decodes to was sent in it
        assert encode_frame(found)[1:-1] in (garbage + tail).upper()


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_rfid_decoder(budget: settings) -> None:
    """The RDM6300 decoder on random serial bytes around a valid frame, cut into random chunks."""
    budget(given(serial_bytes, uids, serial_bytes, st.lists(st.integers(0, 200), max_size=6))(check_rfid))()


# ---- the config loader ------------------------------------------------------------------------------------

VALID_CONFIG = CONFIG.format(state="/tmp/evse-fuzz-state").replace(
    'url = "tcp://127.0.0.1:9"', 'url = "tcp://127.0.0.1:9"\ndevice_id = 1', 1) + '\n[ocpp]\nHeartbeatInterval = 60\n'
toml_scalars = st.sampled_from(['""', "0", "-1", "1e400", "true", "[]", "{}", '"x"', "2024-01-01T00:00:00Z",
                                "inf", "nan", '"tcp://h:1"', "[1, \"a\"]", "{ a = 1 }", '"\\u0000"'])


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    """The valid config with a few lines changed, dropped, duplicated or given random values."""
    lines = VALID_CONFIG.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["value", "drop", "dup", "text", "table"]))
        if how == "value" and "=" in lines[at]:
            lines[at] = lines[at].split("=", 1)[0] + "= " + draw(toml_scalars | st.text(max_size=8))
        elif how == "drop":
            del lines[at]
        elif how == "dup":
            lines.insert(at, lines[at])
        elif how == "text":
            lines.insert(at, draw(st.text(max_size=20)))
        else:
            lines.insert(at, "[" + draw(st.sampled_from(["charge_point", "connectors", "[connectors]", "ocpp",
                                                          "x", "backoffice.tls"])) + "]")
        if not lines:
            break
    return "\n".join(lines) + "\n"


config_texts = st.one_of(mutated_configs(), st.text(max_size=200))


def check_config(text: str) -> None:
    """The loader raises ConfigError or nothing, never another exception; the error names the file."""
    try:
        parse_config(text, "fuzz.toml")
    except ConfigError as err:
        assert all(problem.startswith("fuzz.toml") for problem in err.problems), err.problems


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_config_loader(budget: settings) -> None:
    """Mutated valid configs and random text: only ConfigError, with a FILE:LINE position."""
    found_by_soak = VALID_CONFIG.replace("device_id = 1", "device_id = []")  # was a TypeError, not ConfigError
    budget(example(found_by_soak)(given(config_texts)(check_config)))()


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_config_file_bytes(tmp_path: Path, budget: settings) -> None:
    """Random bytes in the config file (not UTF-8, NUL, truncated): only ConfigError."""
    path = tmp_path / "agent.toml"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        with contextlib.suppress(ConfigError):
            load_config(path)

    budget(given(st.binary(max_size=200) | mutated_configs().map(lambda t: t.encode()[: len(t) // 2]))(check))()

