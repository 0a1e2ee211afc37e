"""The outbox sender prepares the next message (compiled check and wire text) while the current one is answered,
and uses it only when the queue did not change meanwhile: what goes out is always what the store holds now."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.store import Store
from tests.agent.test_session import Rig

UNTRUSTED = "2020-01-01T00:00:00Z"  # a wall time of a boot whose clock was not synced yet
CORRECTED = "2020-01-01T01:00:00.000Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(tmp_path / "agent.db")
    yield opened
    opened.close()


def put_sample(rig: Rig, n: int, *, trusted: bool) -> int:
    payload = {"connectorId": 1, "meterValue": [{"timestamp": UNTRUSTED, "sampledValue": [{"value": str(n)}]}]}
    msg_id = rig.store.enqueue("MeterValues", payload, wall_time=time.time(), monotonic=time.monotonic(),
                               clock_trusted=trusted)
    rig.session.outbox_changed()
    return msg_id


async def test_a_prepared_message_is_sent_as_prepared_when_nothing_changed(store: Store,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(store, accept_sample)
    encoded: list[str] = []
    real = type(rig.adapter.cp).wire_payload

    def counting(cp: Any, action: str, payload: dict[str, Any]) -> str | None:
        text = real(cp, action, payload)
        encoded.append(str(text))
        return text

    monkeypatch.setattr(type(rig.adapter.cp), "wire_payload", counting)
    for n in range(5):
        put_sample(rig, n, trusted=True)
    rig.start()
    try:
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    assert [f[3]["meterValue"][0]["sampledValue"][0]["value"] for f in rig.peer.calls] == ["0", "1", "2", "3", "4"]
    assert len(encoded) == 5  # each message checked and encoded once: 1 to 4 while the one before was answered


async def test_a_change_while_waiting_is_sent_not_the_prepared_text(store: Store) -> None:
    def correct_clock_then_accept(frame: list[Any]) -> list[Any]:
        if frame[3]["meterValue"][0]["sampledValue"][0]["value"] == "0":
            # the clock becomes trusted while the first message is in flight, after the sender prepared the
            # next one (the peer sees the frame inside the send; the correction runs once the sender waits)
            asyncio.get_running_loop().call_soon(store.correct_untrusted_times, store.boot_id, 3600.0)
        return accept_sample(frame)

    rig = Rig(store, correct_clock_then_accept, delay_s=0.01)
    for n in range(3):
        put_sample(rig, n, trusted=False)
    rig.start()
    try:
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    stamps = [f[3]["meterValue"][0]["timestamp"] for f in rig.peer.calls]
    assert stamps[0] == UNTRUSTED  # sent before the correction
    assert stamps[1:] == [CORRECTED, CORRECTED]  # not the text prepared while the first was in flight


def accept_sample(frame: list[Any]) -> list[Any]:
    return [3, frame[1], {}]


async def test_the_actions_at_the_head_of_the_queue_are_found_for_the_checks_compiled_ahead(store: Store) -> None:
    rig = Rig(store, accept_sample)
    assert rig.session._head_actions() == set()  # nothing queued: nothing to compile at connect
    put_sample(rig, 0, trusted=True)
    store.enqueue("SecurityEventNotification", {"type": "x", "timestamp": UNTRUSTED}, wall_time=time.time(),
                  monotonic=time.monotonic(), clock_trusted=True)
    for n in range(40):
        rig.put(f"d{n}")
    store.enqueue("Heartbeat", {}, wall_time=time.time(), monotonic=time.monotonic(), clock_trusted=True)
    # the first page of the queue (32 messages): what a replay starts with
    assert rig.session._head_actions() == {"MeterValues", "SecurityEventNotification", "DataTransfer"}
