"""The outbox sender of agent/ocpp/session.py against an in-memory back office, a fake adapter and the real Store:
strictly in order, one call in flight, CALLERRORs counted into dead letters, a timeout never an attempt."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.ocpp.session import ACK_GRACE_S, Session
from agent.security.events import SecurityEventType
from agent.settings import Settings
from agent.store import OutboxMessage, Store
from tests.agent.ocpp_peer import Peer, PeerChargePoint, Reply

RESPONSE_TIMEOUT_S = 0.2


class StoreJournal:
    """The journal's part in the sender: an answered message is deleted; no transaction ids to learn here."""

    protocol = "1.6"

    def __init__(self, store: Store) -> None:
        self.store = store

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        self.store.ack(msg.id)

    def id_when_dead(self, msg: OutboxMessage) -> int | None:
        return None


class FakeAgent:
    """The runtime as the outbox sender sees it: a store, the settings, the journal and the security recorder."""

    def __init__(self, store: Store, retry: dict[str, float]) -> None:
        self.store = store
        self.settings = Settings(message_attempts=int(retry.get("attempts", 3)),
                                 message_retry_interval_s=retry.get("interval_s", 60.0))
        self.journal = StoreJournal(store)
        self.events: list[tuple[SecurityEventType, str]] = []

    def security_manager(self) -> FakeAgent:
        return self

    def event(self, kind: SecurityEventType, text: str) -> None:
        self.events.append((kind, text))


class FakeAdapter:
    """A version adapter that only confirms answered messages."""

    def __init__(self, peer: Peer) -> None:
        self._cp = PeerChargePoint("CP1", peer, response_timeout=RESPONSE_TIMEOUT_S)
        self.confirmed: list[tuple[int, dict[str, Any]]] = []

    @property
    def cp(self) -> PeerChargePoint:
        return self._cp

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        self.confirmed.append((msg.id, answer))


class Rig:
    """A session whose outbox loop and receive loop run until `stop()`."""

    def __init__(self, store: Store, reply: Reply, retry: dict[str, float] | None = None, delay_s: float = 0.0) -> None:
        self.store = store
        self.peer = Peer(reply, delay_s)
        self.agent = FakeAgent(store, retry or {})
        self.adapter = FakeAdapter(self.peer)
        self.session = Session(self.agent, lambda _: self.adapter)  # type: ignore[arg-type, return-value]
        self.tasks: list[asyncio.Task[Any]] = []

    def put(self, message_id: str) -> int:
        msg_id = self.store.enqueue("DataTransfer", {"vendorId": "v", "messageId": message_id},
                                    wall_time=time.time(), monotonic=time.monotonic(), clock_trusted=True)
        self.session.outbox_changed()
        return msg_id

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.session.cp.start()), asyncio.create_task(self.session._outbox_loop())]

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def sent_ids(self) -> list[str]:
        return [f[3]["messageId"] for f in self.peer.calls]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(tmp_path / "agent.db")
    yield opened
    opened.close()


def accept(frame: list[Any]) -> list[Any]:
    return [3, frame[1], {"status": "Accepted", "data": frame[3]["messageId"]}]


async def test_sent_strictly_in_order_with_one_call_in_flight(store: Store) -> None:
    rig = Rig(store, accept, delay_s=0.02)
    ids = [rig.put(f"m{i}") for i in range(5)]
    rig.start()
    rig.put("m5")  # queued while the first ones are in flight
    try:
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    assert rig.sent_ids() == [f"m{i}" for i in range(6)]
    assert rig.peer.max_in_flight == 1
    assert [i for i, _ in rig.adapter.confirmed][:5] == ids
    assert rig.adapter.confirmed[0][1] == {"status": "Accepted", "data": "m0"}


async def test_callerrors_counted_then_dead_letter_and_security_event(store: Store) -> None:
    def refuse_bad(frame: list[Any]) -> list[Any]:
        if frame[3]["messageId"] == "bad":
            return [4, frame[1], "InternalError", "refused", {}]
        return accept(frame)

    rig = Rig(store, refuse_bad, retry={"attempts": 3, "interval_s": 0})
    bad = rig.put("bad")
    rig.put("good")
    rig.start()
    try:
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    assert rig.sent_ids() == ["bad", "bad", "bad", "good"]  # the next one waits until the first is dead
    dead = store.dead_letters()
    assert [(d.id, d.attempts, d.error) for d in dead] == [(bad, 3, "InternalError: refused")]
    assert [kind for kind, _ in rig.agent.events] == [SecurityEventType.INVALID_MESSAGES]
    assert [i for i, _ in rig.adapter.confirmed] == [bad + 1]


async def test_a_callerror_waits_for_the_retry_interval(store: Store) -> None:
    rig = Rig(store, lambda f: [4, f[1], "InternalError", "refused", {}],
              retry={"attempts": 3, "interval_s": 60})
    rig.put("m0")
    rig.start()
    try:
        await rig.until(lambda: len(rig.peer.calls) == 1)
        await asyncio.sleep(0.3)
    finally:
        await rig.stop()
    first = store.peek()
    assert first is not None and first.attempts == 1 and first.last_error == "InternalError: refused"
    assert first.next_attempt_at > time.monotonic() + 55
    assert len(rig.peer.calls) == 1 and store.dead_letters() == []


async def test_a_timeout_is_not_an_attempt(store: Store) -> None:
    silent = 2

    def late(frame: list[Any]) -> list[Any] | None:
        nonlocal silent
        if silent:
            silent -= 1
            return None
        return accept(frame)

    rig = Rig(store, late, retry={"attempts": 1})
    msg_id = rig.put("m0")
    rig.start()
    try:
        await rig.until(lambda: len(rig.peer.calls) == 2)
        pending = store.peek()
        assert pending is not None and pending.id == msg_id and pending.attempts == 0
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    assert rig.sent_ids() == ["m0"] * 3
    assert store.dead_letters() == [] and rig.agent.events == []
    assert [i for i, _ in rig.adapter.confirmed] == [msg_id]


async def test_an_answer_within_the_grace_is_acked_after_the_sender_is_cancelled(store: Store) -> None:
    rig = Rig(store, accept, delay_s=ACK_GRACE_S / 3)
    msg_id = rig.put("m0")
    rig.start()
    await rig.until(lambda: len(rig.peer.calls) == 1)
    sender = rig.tasks[1]
    sender.cancel()  # the socket closed while the answer was on its way
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    await rig.stop()
    assert store.pending_count() == 0
    assert [i for i, _ in rig.adapter.confirmed] == [msg_id]


async def test_a_message_queued_for_another_version_is_kept_as_a_dead_letter_not_sent(store: Store) -> None:
    """A charger switched from 1.6 to 2.0.1 with messages still queued: the old words never go on the wire."""
    rig = Rig(store, accept)
    store.enqueue("TransactionEvent", {"eventType": "Updated"}, wall_time=time.time(),
                  monotonic=time.monotonic(), clock_trusted=True, protocol="2.0.1")
    rig.put("kept")
    rig.start()
    try:
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    assert rig.sent_ids() == ["kept"]
    (dead,) = store.dead_letters()
    assert dead.action == "TransactionEvent" and dead.protocol == "2.0.1"
    assert dead.error == "queued for OCPP 2.0.1; the back office now speaks 1.6"
    assert [kind for kind, _ in rig.agent.events] == [SecurityEventType.INVALID_MESSAGES]
