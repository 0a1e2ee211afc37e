"""The version-neutral connection: boot and its retry, heartbeat, status replay, the outbox sender.

One `Session` per websocket. What differs between OCPP versions (the payloads, reading the answers, what an
answered queued message confirms, the triggered messages, the handlers) is the version's `VersionAdapter`,
in agent/ocpp/vNN/. The session satisfies the runtime's `LinkSession` (agent/runtime.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import OCPPError
from websockets.exceptions import ConnectionClosed

from agent.core import events as ev
from agent.errors import CallRefused
from agent.metering import Sample
from agent.ocpp.library import HookedChargePoint
from agent.ports import SampleTrigger
from agent.security.events import SecurityEventType
from agent.store import OutboxMessage

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

BOOT_RETRY_DEFAULT_S = 10
ACK_GRACE_S = 0.5  # after the socket closed, how long an answered exchange may still commit its ack
WARM_LOOKAHEAD = 32  # queued messages looked at for the schema checks to compile before a replay
OUTBOX_WAIT_STEP_S = 5.0  # a retry wait is slept in steps: the outbox may change under it


@dataclass(frozen=True, slots=True)
class BootAnswer:
    """A BootNotification answer in the session's terms."""

    status: str  # "Accepted", "Pending" or "Rejected": the same words in 1.6 and 2.0.1
    interval_s: int  # heartbeat interval when Accepted, retry wait otherwise; 0 = none given
    current_time: str


class VersionAdapter(Protocol):
    """What the session needs from one OCPP version (1.6: agent/ocpp/v16/connection.py).

    Requests are the library's call dataclasses of that version, sent with its public `call()`; answers are
    its call_result dataclasses.
    """

    @property
    def cp(self) -> HookedChargePoint:
        """The library ChargePoint with this version's handlers, on this session's websocket."""
        ...

    def boot_request(self) -> Any:
        """The BootNotification of this charge point."""
        ...

    def boot_answer(self, result: Any) -> BootAnswer:
        """Read a BootNotification answer (and tell the handlers what they must know of it)."""
        ...

    def heartbeat_request(self) -> Any:
        """A Heartbeat."""
        ...

    def heartbeat_time(self, result: Any) -> str:
        """The back office's current time in a Heartbeat answer."""
        ...

    def status_request(self, status: ev.StatusChanged) -> Any:
        """The status notification of a connector."""
        ...

    def request(self, action: str, payload: dict[str, Any]) -> Any:
        """A request from a wire-form (camelCase) payload, for messages that are not queued."""
        ...

    def authorize_request(self, id_tag: str) -> Any:
        """An Authorize for an id."""
        ...

    def authorize_answer(self, id_tag: str, result: Any) -> ev.AuthResult:
        """Read an Authorize answer (the runtime updates the cache)."""
        ...

    def sample_request(self, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> Any | None:
        """A meter values message outside a transaction (None: the configured measurands give nothing)."""
        ...

    def keep_heartbeat_interval(self, seconds: int) -> None:
        """The boot answer set the heartbeat interval: keep it in the version's configuration."""
        ...

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        """A queued message was answered and acked: act on what the answer confirms."""
        ...

    async def triggered(self, message: str, connector_id: int | None) -> None:
        """Send a message the back office asked for (TriggerMessage)."""
        ...


def _plain(result: Any) -> dict[str, Any]:
    """A call_result dataclass as the camelCase dict that came over the wire."""
    data = dataclasses.asdict(result)
    return {k: v for k, v in snake_to_camel_case(data).items() if v is not None}


class Session:
    """One websocket's session: boot, heartbeat, statuses, the outbox sender, back-office calls."""

    def __init__(self, agent: Agent, build_adapter: Callable[[Session], VersionAdapter],
                 on_accepted: Callable[[], None] | None = None) -> None:
        self.agent = agent
        self.on_accepted = on_accepted  # the link resets its reconnect backoff only for a proven connection
        self.accepted = False
        self.outbox_event = asyncio.Event()
        self.heartbeat_changed = asyncio.Event()
        self.statuses: asyncio.Queue[ev.StatusChanged] = asyncio.Queue()
        self.heartbeat_interval_s = agent.settings.heartbeat_interval_s
        self._tasks: list[asyncio.Task[Any]] = []
        self._drain_stopped = False  # the outbox loop was cancelled: the drain sends no further message
        self._missing_logged = 0  # the message whose missing transaction id was logged
        self._prepared: tuple[OutboxMessage, str] | None = None  # the next message and its checked wire text
        self.adapter = build_adapter(self)
        self.cp = self.adapter.cp

    # ---- what the runtime calls (LinkSession) ------------------------------------------------------

    def status_changed(self, status: ev.StatusChanged) -> None:
        self.statuses.put_nowait(status)

    def outbox_changed(self) -> None:
        self.outbox_event.set()

    async def authorize(self, id_tag: str) -> ev.AuthResult:
        try:
            result = await self.cp.call(self.adapter.authorize_request(id_tag), suppress=False)
        except ConnectionClosed as err:
            raise ConnectionError(f"connection closed during Authorize: {err}") from err
        except OCPPError as err:  # online but no usable answer: the list and the cache decide alone
            raise CallRefused(f"Authorize answered {err.code}") from err
        return self.adapter.authorize_answer(id_tag, result)

    async def notify(self, action: str, payload: dict[str, Any]) -> None:
        await self.send_plain(action, payload)

    def send_sample(self, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> None:
        request = self.adapter.sample_request(connector_id, sample, trigger, at)
        if request is not None:
            self._spawn(self._send_request(request), "meter-values")

    # ---- what the handlers call ----------------------------------------------------------------------

    async def triggered(self, message: str, connector_id: int | None) -> None:
        """Send a message the back office asked for (the adapter knows which)."""
        await self.adapter.triggered(message, connector_id)

    async def send_status(self, status: ev.StatusChanged) -> None:
        """Send one status notification; a failure is logged (the next change or trigger sends it again)."""
        try:
            await self.cp.call(self.adapter.status_request(status), suppress=False)
        except (TimeoutError, OCPPError, ConnectionClosed) as err:
            LOGGER.warning("StatusNotification failed: %r", err)

    async def send_plain(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Send a non-queued message; None when it failed."""
        return await self._send_request(self.adapter.request(action, payload))

    async def _send_request(self, request: Any) -> dict[str, Any] | None:
        try:
            started = time.monotonic()
            result = await self.cp.call(request, suppress=False)
            self._round_trip(time.monotonic() - started)
            return _plain(result)
        except (TimeoutError, OCPPError, ConnectionClosed) as err:  # not queued: the next trigger asks again
            LOGGER.warning("%s failed: %r", type(request).__name__, err)
            return None

    def _round_trip(self, seconds: float) -> None:
        """An answered call's round-trip time, for the operations ledger's p50/p99 (when the agent keeps one)."""
        ledger = getattr(self.agent, "operations", None)
        if ledger is not None:
            ledger.round_trip(seconds)

    # ---- the session ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def run(self) -> None:
        """Serve the connection until it closes."""
        receiver = asyncio.create_task(self.cp.start(), name="ocpp-receive")
        booter = asyncio.create_task(self._boot_then_serve(), name="ocpp-session")
        try:
            done, _ = await asyncio.wait({receiver, booter}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), ConnectionClosed):
                    LOGGER.error("OCPP session ended: %r", task.exception())
        finally:
            for task in (receiver, booter, *self._tasks):
                task.cancel()
            for task in (receiver, booter, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.accepted:
                self.agent.offline()

    async def _boot_then_serve(self) -> None:
        # a replay follows: the schema checks of what it starts with are compiled now, not in an exchange
        await self.cp.warm_checks(self._head_actions())
        await self._boot()
        self.accepted = True
        if self.on_accepted is not None:
            self.on_accepted()
        self.agent.online(self)  # replays the current statuses into status_changed, then outbox_changed
        await asyncio.gather(self._heartbeat_loop(), self._status_loop(), self._outbox_loop())

    async def _boot(self) -> None:
        while True:
            try:
                result = await self.cp.call(self.adapter.boot_request(), suppress=False)
            except TimeoutError:
                LOGGER.warning("BootNotification unanswered; retrying")
                await asyncio.sleep(BOOT_RETRY_DEFAULT_S)
                continue
            except OCPPError as err:
                LOGGER.warning("BootNotification refused with %s; retrying", err)
                await asyncio.sleep(BOOT_RETRY_DEFAULT_S)
                continue
            answer = self.adapter.boot_answer(result)
            self.agent.set_clock(answer.current_time)
            interval = answer.interval_s
            if answer.status == "Accepted":
                if interval > 0:
                    self.heartbeat_interval_s = float(interval)
                    self.adapter.keep_heartbeat_interval(interval)
                LOGGER.info("BootNotification accepted (heartbeat every %d s)", interval)
                return
            wait = interval if interval > 0 else BOOT_RETRY_DEFAULT_S
            LOGGER.warning("BootNotification %s; retrying in %d s", answer.status, wait)
            await asyncio.sleep(wait)

    def _head_actions(self, limit: int = WARM_LOOKAHEAD) -> set[str]:
        """The actions of the first queued messages (from the store's page: no query per message)."""
        store, actions = self.agent.store, set()
        msg = store.peek()
        while msg is not None and limit > 0:
            actions.add(msg.action)
            msg, limit = store.peek_next(msg.id), limit - 1
        return actions

    async def _heartbeat_loop(self) -> None:
        while True:
            interval = self.agent.settings.heartbeat_interval_s or 300.0
            self.heartbeat_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heartbeat_changed.wait(), timeout=interval)
                continue  # the interval changed: restart the wait with the new one
            try:
                result = await self.cp.call(self.adapter.heartbeat_request(), suppress=False)
                self.agent.set_clock(self.adapter.heartbeat_time(result))
            except (TimeoutError, OCPPError) as err:
                LOGGER.warning("Heartbeat failed: %r", err)

    async def _status_loop(self) -> None:
        while True:
            status = await self.statuses.get()
            await self.send_status(status)

    async def _outbox_loop(self) -> None:
        """Drain the outbox strictly in order, one call in flight."""
        while True:
            # The exchanges run in a task of their own that sends message after message while there are any
            # to send now (one task per drain, not per message): if this loop is cancelled (the socket
            # closed) right after an answer arrived, the answer is still committed instead of the message
            # being sent twice, and no new message is sent.
            self._drain_stopped = False
            drainer = asyncio.ensure_future(self._drain())
            try:
                wait = await asyncio.shield(drainer)
            except asyncio.CancelledError:
                self._drain_stopped = True
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(drainer), ACK_GRACE_S)
                if not drainer.done():
                    drainer.cancel()
                raise
            await wait()

    async def _drain(self) -> Callable[[], Awaitable[None]]:
        """Send queued messages until one must wait; returns that wait (run by the caller, cancellable)."""
        store = self.agent.store
        while not self._drain_stopped:
            msg = store.peek()
            if msg is None:
                return self._wait_for_messages
            if msg.protocol != self.agent.journal.protocol:
                self._keep_foreign(msg)
                continue
            if msg.tx_id_missing:
                return functools.partial(self._wait_for_tx_id, msg)
            wait = msg.next_attempt_at - time.monotonic()
            if wait > 0:
                return functools.partial(asyncio.sleep, min(wait, OUTBOX_WAIT_STEP_S))
            await self._deliver(msg)
        return functools.partial(asyncio.sleep, 0)

    async def _wait_for_messages(self) -> None:
        """The outbox is empty: wait until something is queued."""
        self.outbox_event.clear()
        if self.agent.store.peek() is None:
            await self.outbox_event.wait()

    async def _wait_for_tx_id(self, msg: OutboxMessage) -> None:
        """Never sent with the placeholder: the id comes with the answer to the transaction's start, which is
        queued before it (or -1 once that start became a dead letter)."""
        if msg.id != self._missing_logged:  # logged once, not at every step
            self._missing_logged = msg.id
            LOGGER.error("%s %d waits: the back office's id of transaction %s is not known yet",
                         msg.action, msg.id, msg.tx_local_id)
        self.outbox_event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox_event.wait(), OUTBOX_WAIT_STEP_S)

    def _prepare_after(self, msg: OutboxMessage) -> None:
        """While `msg` is answered: check and encode the message queued after it, for the next exchange. Used
        only if the next peek() hands out that very object (the store builds it once per read of the queue; a
        write meanwhile, such as the transaction id a StartTransaction answer brings, makes a new one)."""
        following = self.agent.store.peek_next(msg.id)
        if following is None or following.tx_id_missing or following.protocol != self.agent.journal.protocol:
            return
        text = self.cp.wire_payload(following.action, following.payload)
        if text is not None:
            self._prepared = (following, text)

    def _keep_foreign(self, msg: OutboxMessage) -> None:
        """A message queued for another OCPP version (the charger was switched with messages still queued):
        never sent in the wrong version's words; kept as a dead letter with the reason, for evsectl and the
        bundle, and reported as a security event."""
        version = self.agent.journal.protocol
        reason = f"queued for OCPP {msg.protocol}; the back office now speaks {version}"
        self.agent.store.record_failure(msg.id, reason, max_attempts=1, retry_interval_s=0.0, now=time.monotonic())
        LOGGER.error("%s %d kept as a dead letter: %s", msg.action, msg.id, reason)
        self.agent.security_manager().event(SecurityEventType.INVALID_MESSAGES,
                                            f"{msg.action} {msg.id} {reason}: kept as a dead letter")

    async def _deliver(self, msg: OutboxMessage) -> None:
        """One queued message: send it, then ack, count a CALLERROR, or leave it first (no answer)."""
        store = self.agent.store
        try:
            started = time.monotonic()
            prepared, self._prepared = self._prepared, None
            text = prepared[1] if prepared is not None and prepared[0] is msg else None
            answer = await self.cp.call_raw(msg.action, msg.payload, text=text,
                                            while_waiting=functools.partial(self._prepare_after, msg))
            # counted once the next message is on its way: the replay's exchange does not wait for the ledger
            asyncio.get_running_loop().call_soon(self._round_trip, time.monotonic() - started)
        except TimeoutError:
            LOGGER.warning("%s %d unanswered; it stays first in the queue", msg.action, msg.id)
            return  # not an attempt: retried for ever
        except OCPPError as err:
            dead = store.record_failure(
                msg.id, f"{err.code}: {err.description}",
                max_attempts=self.agent.settings.message_attempts,
                retry_interval_s=self.agent.settings.message_retry_interval_s,
                now=time.monotonic(), dead_tx_id=self.agent.journal.id_when_dead(msg))
            LOGGER.warning("%s %d answered %s%s", msg.action, msg.id, err.code,
                           " (moved to dead letters)" if dead else "")
            if dead:
                self.agent.security_manager().event(
                    SecurityEventType.INVALID_MESSAGES,
                    f"{msg.action} {msg.id} refused {err.code} every time: kept as a dead letter")
            return
        self.agent.journal.confirm(msg, answer)  # deleted, and the back office's ids learned, in one commit
        self.adapter.confirm(msg, answer)
