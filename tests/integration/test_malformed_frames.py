"""Hostile frames over a real websocket: malformed ones answered per OCPP-J 1.6 section 4.2.3, others
dropped, answers to nothing ignored, oversized frames refused with 1009 and a reconnect."""

from __future__ import annotations

import json
from pathlib import Path

from agent.link import MAX_FRAME_BYTES
from agent.redact import LOG_MAX_CHARS
from tests.integration.harness import CP_ID, Rig

ANSWERED = [  # (unique id, raw frame, CALLERROR code)
    ("m-no-action", '[2,"m-no-action",{}]', "FormationViolation"),
    ("m-no-payload", '[2,"m-no-payload","GetLocalListVersion"]', "ProtocolError"),
    ("m-extra", '[2,"m-extra","GetLocalListVersion",{},{}]', "FormationViolation"),
    ("m-type-5", '[5,"m-type-5","GetLocalListVersion",{}]', "NotImplemented"),
    ("m-type-str", '["2","m-type-str","GetLocalListVersion",{}]', "TypeConstraintViolation"),
    ("m-payload-list", '[2,"m-payload-list","GetLocalListVersion",[]]', "TypeConstraintViolation"),
    ("m-payload-str", '[2,"m-payload-str","GetLocalListVersion","{}"]', "TypeConstraintViolation"),
    ("m-not-json", '[2,"m-not-json","GetLocalListVersion",{"a":}', "FormationViolation"),
    ("m-unknown-action", '[2,"m-unknown-action","NoSuchAction",{}]', "NotImplemented"),
]
DROPPED = ['{"a":1}', "[]", "[2]", '[2,17,"GetLocalListVersion",{}]', "not json at all", '["3","r",{}]', '[3,"r"]']
UNKNOWN_RESPONSES = ['[3,"never-sent-1",{"status":"Accepted"}]', '[4,"never-sent-2","GenericError","no",{}]']


def answers_to(rig: Rig, unique_id: str) -> list[list[object]]:
    """Every frame the agent sent answering this unique id."""
    return [f["message"] for f in rig.office.frames(CP_ID) if f["direction"] == "in" and "message" in f
            and f["message"][0] in (3, 4) and f["message"][1] == unique_id]


async def test_malformed_calls_answered_per_ocpp_j_4_2_3(rig: Rig) -> None:
    """Each malformed CALL with a readable unique id: exactly one CALLERROR with the fitting code."""
    for unique_id, raw, code in ANSWERED:
        result = await rig.office.send_raw(CP_ID, raw, unique_id=unique_id, timeout=10)
        assert result["status"] == "answer", f"{raw}: {result}\n{rig.agent_log()[-2000:]}"
        frame = result["frame"]
        assert frame[0] == 4 and frame[1] == unique_id and frame[2] == code, f"{raw}: {frame}"
        assert isinstance(frame[3], str) and frame[4] == {}
    ok = await rig.cs_call("GetLocalListVersion", {}, timeout=10)  # the agent still serves, in order
    assert ok["status"] == "result"
    for unique_id, raw, _ in ANSWERED:
        assert len(answers_to(rig, unique_id)) == 1, raw


async def test_unreadable_frames_and_stray_answers_logged_and_dropped(rig: Rig) -> None:
    """No readable unique id: no answer, a log line; a CALLRESULT/CALLERROR to no call: ignored."""
    boots = len(rig.calls("BootNotification"))
    before = len([f for f in rig.office.frames(CP_ID) if f["direction"] == "in"])
    for raw in DROPPED + UNKNOWN_RESPONSES:
        assert (await rig.office.send_raw(CP_ID, raw))["status"] == "sent"
    # Frames are handled in order: once this call is answered, any answer to the frames above was sent.
    ok = await rig.cs_call("GetLocalListVersion", {}, timeout=10)
    assert ok["status"] == "result"
    after = [f["message"] for f in rig.office.frames(CP_ID) if f["direction"] == "in"][before:]
    assert [m[0] for m in after if m[0] in (3, 4)] == [3], after  # only the GetLocalListVersion answer
    log = rig.agent_log()
    assert log.count("dropped an incoming frame") >= len(DROPPED), log[-3000:]
    assert "ignored an answer to no call in flight (unique id 'never-sent-1')" in log
    assert "ignored an answer to no call in flight (unique id 'never-sent-2')" in log
    assert len(rig.calls("BootNotification")) == boots and rig.office.connected(CP_ID)  # no reconnect
    # The connection still carries the agent's own calls and their answers.
    triggered = await rig.cs_call("TriggerMessage", {"requestedMessage": "Heartbeat"}, timeout=10)
    assert triggered == {"status": "result", "payload": {"status": "Accepted"}}
    await rig.wait_call("Heartbeat")


def _data_transfer_of(size: int, unique_id: str) -> str:
    """A DataTransfer CALL padded to exactly size bytes of UTF-8."""
    head = json.dumps([2, unique_id, "DataTransfer", {"vendorId": "someone-else", "data": ""}],
                      separators=(",", ":"))
    pad = size - len(head.encode())
    assert pad > 0
    return head.replace('"data":""', '"data":"' + "a" * pad + '"')


async def test_frame_size_limit_1009_and_reconnect(rig: Rig) -> None:
    """A frame of MAX_FRAME_BYTES is answered; one byte more closes with 1009, and the agent reconnects."""
    largest = _data_transfer_of(MAX_FRAME_BYTES, "big-ok")
    assert len(largest.encode()) == MAX_FRAME_BYTES
    result = await rig.office.send_raw(CP_ID, largest, unique_id="big-ok", action="DataTransfer", timeout=20)
    assert result == {"status": "answer", "frame": [3, "big-ok", {"status": "UnknownVendorId"}]}, result

    # The frame log keeps the head and the length of the big frame, not the megabyte.
    frame_logs = list(Path(rig.workdir).rglob("ocpp-frames.log"))
    assert frame_logs, "no OCPP frame log"
    # the frame log reaches its file within a second (agent/framelog.py): wait for the answer to be there
    await rig.office.wait_for(lambda: '[3,"big-ok"' in frame_logs[0].read_text(), timeout=10)
    lines = frame_logs[0].read_text().splitlines()
    assert max(len(line) for line in lines) < LOG_MAX_CHARS
    assert any('"big-ok","DataTransfer"' in line and f"[clipped: {MAX_FRAME_BYTES + 3} chars in all]" in line
               for line in lines), lines[-5:]
    assert max(len(line) for line in rig.agent_log().splitlines()) < LOG_MAX_CHARS

    boots = len(rig.calls("BootNotification"))
    too_big = _data_transfer_of(MAX_FRAME_BYTES + 1, "big-too")
    sent = await rig.office.send_raw(CP_ID, too_big)
    assert sent["status"] in ("sent", "not_connected")  # the agent may close before the send completes
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    await rig.wait_connected()
    log = rig.agent_log()
    assert f"closed the connection with 1009: the back office sent a frame over {MAX_FRAME_BYTES} bytes" in log
    assert answers_to(rig, "big-too") == []
